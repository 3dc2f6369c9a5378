"""Fixtures: a real tansu broker and a real kaos in front of it, on free loopback ports, stopped
by PID when the test ends."""

import json
import os
import socket
import subprocess
import tempfile
import time
import urllib.request

import pytest

TANSU_NODE_ID = 111


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_is_free(port):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def wait_until(what, condition, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.05)


def listening(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def http_status(url):
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return 0


class Process:
    def __init__(self, name, args):
        self.log = tempfile.NamedTemporaryFile(prefix=f"{name}-", suffix=".log", delete=False)
        self.popen = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT)

    def stop(self):
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()

    def output(self):
        with open(self.log.name, encoding="utf-8", errors="replace") as f:
            return f.read()


class Tansu:
    """A tansu broker with in-memory storage."""

    def __init__(self):
        port = free_port()
        url = f"tcp://127.0.0.1:{port}"
        self.address = f"127.0.0.1:{port}"
        self.port = port
        self.process = Process("tansu", [os.environ["TANSU_BIN"], "broker", "--listener-url", url,
                                         "--advertised-listener-url", url, "--storage-engine", "memory://tansu/"])

    def log(self):
        """What tansu wrote so far, ANSI colours included: it logs a Produce it rejects as, for
        example, `err=Api(OutOfOrderSequenceNumber)` or `err=Api(ProducerFenced)`."""
        return self.process.output()


@pytest.fixture
def tansu_broker():
    """The broker behind `tansu` (and so behind `kaos`), for tests that read its log."""
    broker = Tansu()
    try:
        wait_until("tansu", lambda: listening(broker.port))
        yield broker
    finally:
        broker.process.stop()


@pytest.fixture
def tansu(tansu_broker):
    return tansu_broker.address


class Kaos:
    def __init__(self, bootstrap):
        while True:
            self.port_start = free_port()
            self.broker_port = self.port_start + 1 + TANSU_NODE_ID
            if self.broker_port < 65000 and port_is_free(self.broker_port):
                break
        self.admin = f"127.0.0.1:{free_port()}"
        self.process = Process("kaos", [os.environ["KAOS_BIN"], "--bootstrap-servers", bootstrap,
                                        "--port-start", str(self.port_start), "--admin-addr", self.admin,
                                        "--shards", "2"])
        wait_until("kaos to be ready", lambda: http_status(f"http://{self.admin}/ready") == 200)

    @property
    def bootstrap(self):
        return f"127.0.0.1:{self.port_start}"

    def addresses(self):
        """Every address a client may legitimately dial."""
        return {("127.0.0.1", self.port_start), ("127.0.0.1", self.broker_port)}

    def call(self, method, path, body=None):
        """An admin API call: (status, parsed JSON answer)."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"http://{self.admin}{path}", data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    def add_rule(self, feature, config, api_keys="PRODUCE", direction="REQUEST"):
        status, answer = self.call("POST", f"/tenant/1-1/user/test@conduktor.io/feature/{feature}",
                                   {"config": config, "direction": direction, "apiKeys": api_keys})
        assert status == 200, answer
        return answer

    def delete_rule(self, feature, api_keys="PRODUCE", direction="REQUEST"):
        path = f"/tenant/1-1/user/test@conduktor.io/feature/{feature}/apiKeys/{api_keys}/direction/{direction}"
        status, answer = self.call("DELETE", path)
        assert status == 200, answer


@pytest.fixture
def kaos(tansu):
    proxy = Kaos(tansu)
    try:
        yield proxy
    finally:
        proxy.process.stop()


@pytest.fixture(scope="module")
def module_kaos():
    """A tansu and a kaos of its own for a whole test module, for modules of many short tests
    that share one kaos (test_api_schema.py)."""
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    broker = Process("tansu", [os.environ["TANSU_BIN"], "broker", "--listener-url", url,
                               "--advertised-listener-url", url, "--storage-engine", "memory://tansu/"])
    proxy = None
    try:
        wait_until("tansu", lambda: listening(port))
        proxy = Kaos(f"127.0.0.1:{port}")
        yield proxy
    finally:
        if proxy is not None:
            proxy.process.stop()
        broker.stop()
