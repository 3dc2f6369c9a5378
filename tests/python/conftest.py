"""Fixtures: a real tansu broker and a real kaos in front of it, on free loopback ports, stopped
by PID when the test ends."""

import importlib.util
import json
import os
import socket
import subprocess
import tempfile
import time
import urllib.request

import kaos_client
import pytest
from confluent_kafka import Consumer, Producer

# The Kafka cluster harness (stdlib only): its Cluster for the kafka_cluster fixture, and its port check.
_spec = importlib.util.spec_from_file_location(
    "kaos_kafka_cluster", os.path.join(os.path.dirname(__file__), "..", "kafka", "cluster.py"))
kafka_harness = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(kafka_harness)
port_is_free = kafka_harness.port_is_free

TANSU_NODE_ID = 111


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(what, condition, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.05)


def produce_and_consume(bootstrap, topic, count, settings=None, timeout=60):
    """Produces `count` records (values v-0 ... v-N-1, acks=all) with confluent-kafka, checks every
    delivery, then reads the topic from its start in a new group: the values read, sorted.
    `settings` go to both clients (TLS, for example)."""
    settings = settings or {}
    failures = []
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5, **settings})
    for i in range(count):
        producer.produce(topic, key=str(i), value=f"v-{i}", on_delivery=lambda err, _m: err and failures.append(err))
    assert producer.flush(timeout) == 0 and failures == []
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"g-{time.time_ns()}",
                         "auto.offset.reset": "earliest", "fetch.wait.max.ms": 10, **settings})
    consumer.subscribe([topic])
    values = []
    try:
        deadline = time.monotonic() + timeout
        while len(values) < count and time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is not None:
                assert message.error() is None, message.error()
                values.append(message.value().decode())
    finally:
        consumer.close()
    return sorted(values)


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
    """A kaos in front of the brokers `node_ids` (tansu's one node by default) at `bootstrap`, with
    `extra` arguments (e.g. `--upstream-tls --upstream-ca CA`); waits until /ready says 200. kaos
    serves node N on port_start + 1 + N (`broker_ports`)."""

    def __init__(self, bootstrap, node_ids=(TANSU_NODE_ID,), extra=()):
        for _ in range(100):
            self.port_start = free_port()
            self.broker_ports = {node: self.port_start + 1 + node for node in node_ids}
            if max(self.broker_ports.values()) < 65000 and all(map(port_is_free, self.broker_ports.values())):
                break
        else:
            raise RuntimeError("no free port range for kaos's broker ports")
        self.broker_port = self.broker_ports[min(node_ids)]
        self.admin = f"127.0.0.1:{free_port()}"
        self.process = Process("kaos", [os.environ["KAOS_BIN"], "--bootstrap-servers", bootstrap,
                                        "--port-start", str(self.port_start), "--admin-addr", self.admin,
                                        "--shards", "2", *extra])
        try:
            wait_until("kaos to be ready", lambda: http_status(f"http://{self.admin}/ready") == 200)
        except TimeoutError:
            self.process.stop()
            raise TimeoutError(f"kaos not ready; its log:\n{self.process.output()}") from None

    def __enter__(self):
        return self

    def __exit__(self, *_exc):
        self.process.stop()

    @property
    def bootstrap(self):
        return f"127.0.0.1:{self.port_start}"

    def addresses(self):
        """Every address a client may legitimately dial."""
        return {("127.0.0.1", self.port_start)} | {("127.0.0.1", port) for port in self.broker_ports.values()}

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

    @property
    def client(self):
        """The project's own Python client (clients/python) for this kaos."""
        return kaos_client.Kaos(f"http://{self.admin}", user="test@conduktor.io")

    def add_rule(self, feature, config, api_keys="PRODUCE", direction="REQUEST", user="test@conduktor.io"):
        return self.client.add_rule(feature, api_keys, direction, user=user, **config)

    def delete_rule(self, feature, api_keys="PRODUCE", direction="REQUEST", user="test@conduktor.io"):
        self.client.delete_rule(feature, api_keys, direction, user=user)

    def affected(self, feature):
        """How many requests the feature acted on, from /metrics."""
        with urllib.request.urlopen(f"http://{self.admin}/metrics", timeout=5) as response:
            body = response.read().decode()
        prefix = f'kaos_chaos_requests_affected_total{{feature="{feature}"}} '
        return sum(float(line[len(prefix):]) for line in body.splitlines() if line.startswith(prefix))


@pytest.fixture
def kaos(tansu):
    with Kaos(tansu) as proxy:
        yield proxy


@pytest.fixture(scope="module")
def module_kaos():
    """A tansu and a kaos of its own for a whole test module, for modules of many short tests
    that share one kaos (test_api_schema.py)."""
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    broker = Process("tansu", [os.environ["TANSU_BIN"], "broker", "--listener-url", url,
                               "--advertised-listener-url", url, "--storage-engine", "memory://tansu/"])
    try:
        wait_until("tansu", lambda: listening(port))
        with Kaos(f"127.0.0.1:{port}") as proxy:
            yield proxy
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def kafka_cluster():
    """The real Apache Kafka cluster `make test` starts once for the whole run (3 nodes in KRaft
    combined mode on loopback, tests/kafka/cluster.py), found through $KAOS_KAFKA_CLUSTER (its
    cluster.json). Shared by every test: make your own topics. It offers `bootstrap`, `node_ids`,
    `port(id)`, `tool(name, args, capture=True)`, and `with kafka_cluster.stopped_node(id):`,
    which starts the node again when the block ends. Its SASL listeners (PLAIN, SCRAM-SHA-256,
    SCRAM-SHA-512, OAUTHBEARER with unsecured tokens; no authorizer): `sasl_bootstrap`,
    `sasl_tls_bootstrap` (SASL_SSL, trusting `tls_ca`; None without TLS), `sasl_users` ({name:
    password}: alice, bob, kaos), `sasl_port(id, tls=False)`, `sasl_client_properties(mechanism,
    tls=False)` (a Java client config as alice) and `add_scram_user(name, password, mechanism=None)`
    (kafka-configs; returns once the user logs in on every node)."""
    path = os.environ.get("KAOS_KAFKA_CLUSTER")
    if not path:
        pytest.fail("KAOS_KAFKA_CLUSTER is not set: this test needs the Apache Kafka cluster that `make test` "
                    "starts. Run `make test`, or `make kafka && python3 tests/kafka/cluster.py start --dir DIR` "
                    "and set KAOS_KAFKA_CLUSTER=DIR/cluster.json", pytrace=False)
    return kafka_harness.Cluster.load(os.path.dirname(os.path.abspath(path)))


class Certs:
    """Certificates for TLS tests, made with the openssl CLI into `directory` (never committed): a CA
    (`ca`) and a server certificate for localhost and 127.0.0.1 signed by it (`server_cert`, and
    `server_key` in PKCS#8 PEM)."""

    def __init__(self, directory):
        self.dir = str(directory)
        self.ca, self._ca_key = self._path("ca.pem"), self._path("ca.key")
        self._write("ca.cnf", "[req]\ndistinguished_name = dn\n[dn]\n[v3_ca]\n"
                              "basicConstraints = critical,CA:TRUE\nkeyUsage = critical,keyCertSign,cRLSign\n")
        self._openssl("req", "-x509", "-new", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                      "-subj", "/CN=kaos-test-ca", "-config", "ca.cnf", "-extensions", "v3_ca",
                      "-keyout", self._ca_key, "-out", self.ca)
        self.server_cert, self.server_key = self._path("server.pem"), self._path("server.key")
        self._write("server.cnf", "[req]\ndistinguished_name = dn\n[dn]\n")
        self._write("server.ext", "basicConstraints = critical,CA:FALSE\nextendedKeyUsage = serverAuth\n"
                                  "subjectAltName = DNS:localhost,IP:127.0.0.1\n")
        self._openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
                      "-config", "server.cnf", "-keyout", self.server_key, "-out", "server.csr")
        self._openssl("x509", "-req", "-in", "server.csr", "-CA", self.ca, "-CAkey", self._ca_key,
                      "-set_serial", "1001", "-days", "2", "-extfile", "server.ext", "-out", self.server_cert)

    def _path(self, name):
        return os.path.join(self.dir, name)

    def _write(self, name, text):
        with open(self._path(name), "w", encoding="utf-8") as f:
            f.write(text)

    def _openssl(self, *args):
        result = subprocess.run(["openssl", *args], cwd=self.dir, stdin=subprocess.DEVNULL, capture_output=True)
        assert result.returncode == 0, f"openssl {args}: {result.stderr.decode(errors='replace')}"


@pytest.fixture(scope="session")
def tls_certs(tmp_path_factory):
    return Certs(tmp_path_factory.mktemp("certs"))


def tls_kaos_args(certs):
    """kaos's arguments for TLS towards clients with `certs.server_cert`: clients trust `certs.ca`."""
    return ["--tls-cert", certs.server_cert, "--tls-key", certs.server_key]


@pytest.fixture
def tls_kaos(tansu, tls_certs):
    """kaos with TLS towards clients in front of a plaintext tansu."""
    with Kaos(tansu, extra=tls_kaos_args(tls_certs)) as proxy:
        yield proxy


@pytest.fixture
def kafka_kaos(kafka_cluster):
    """A plaintext kaos in front of the shared Kafka cluster's plaintext listeners."""
    with Kaos(kafka_cluster.bootstrap, kafka_cluster.node_ids) as proxy:
        yield proxy


@pytest.fixture
def kafka_tls_kaos(kafka_cluster):
    """A plaintext kaos in front of the TLS-only listeners of the shared Kafka cluster
    (`kafka_cluster.tls_bootstrap`), trusting the cluster's CA (`--upstream-tls --upstream-ca`)."""
    if not kafka_cluster.tls_bootstrap:
        pytest.fail(f"the Kafka cluster in {kafka_cluster.dir} has no TLS listeners (started with --no-tls?)",
                    pytrace=False)
    with Kaos(kafka_cluster.tls_bootstrap, kafka_cluster.node_ids,
                 ["--upstream-tls", "--upstream-ca", kafka_cluster.tls_ca]) as proxy:
        yield proxy
