"""kaos as a process its supervisor can trust: a shard that cannot start fails the start at once
with the reason, a shard that dies later takes the process down (crash-only), and
`--log-format json` writes one JSON object per event."""

import json
import os
import socket
import subprocess
import time

from conftest import Process, free_port, http_status, wait_until

REQUIRED_JSON_FIELDS = {"timestamp", "level", "message", "target", "threadName"}


def kaos_args(bootstrap, admin, *extra, port_start=None):
    return [os.environ["KAOS_BIN"], "--bootstrap-servers", bootstrap, "--port-start", str(port_start or free_port()),
            "--admin-addr", admin, "--shards", "2", *extra]


def wait_exit(process, seconds):
    try:
        return process.popen.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        process.stop()
        raise AssertionError(f"kaos still runs after {seconds} s:\n{process.output()}") from None


def test_a_shard_that_panics_after_start_ends_the_process(tansu):
    admin = f"127.0.0.1:{free_port()}"
    kaos = Process("kaos", kaos_args(tansu, admin, "--test-panic-shard-after", "2s"))
    try:
        wait_until("kaos healthy", lambda: http_status(f"http://{admin}/health") == 200, timeout=10)
        status = wait_exit(kaos, 15)
    finally:
        kaos.stop()
    assert status == 70, kaos.output()
    panics = [line for line in kaos.output().splitlines() if "kaos panicked" in line]
    assert len(panics) == 1 and "shard-1" in panics[0] and "--test-panic-shard-after" in panics[0], kaos.output()
    assert http_status(f"http://{admin}/health") == 0, "nothing answers for a process that is gone"


def test_a_port_taken_fails_the_start_at_once_with_the_port_named(tansu):
    admin = f"127.0.0.1:{free_port()}"
    with socket.socket() as taken:
        # No SO_REUSEPORT: kaos's shards, which set it, cannot share this port.
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        started = time.monotonic()
        kaos = Process("kaos", kaos_args(tansu, admin, port_start=port))
        status = wait_exit(kaos, 10)
        took = time.monotonic() - started
    assert status != 0, kaos.output()
    assert took < 3, f"{took:.1f} s"
    errors = [line for line in kaos.output().splitlines() if "ERROR" in line]
    assert len(errors) == 1, kaos.output()
    assert f"cannot listen on 127.0.0.1:{port}" in errors[0] and "cannot start" in errors[0], errors
    assert "kaos is proxying" not in kaos.output(), "nothing reported it up"


def test_json_logs_are_one_object_per_event(tansu):
    admin = f"127.0.0.1:{free_port()}"
    port_start = free_port()
    kaos = Process("kaos", kaos_args(tansu, admin, "--log-format", "json", port_start=port_start))
    try:
        wait_until("kaos ready", lambda: http_status(f"http://{admin}/ready") == 200)
        # A frame longer than --max-frame-bytes: kaos closes the connection and logs why, with fields.
        with socket.create_connection(("127.0.0.1", port_start), timeout=5) as client:
            client.sendall((0x7FFFFFFF).to_bytes(4, "big") + b"\x00" * 8)
            client.recv(1)
        wait_until("the malformed frame's log line", lambda: "peer" in kaos.output(), timeout=10)
    finally:
        kaos.stop()
    assert kaos.popen.returncode == 0, kaos.output()
    events = []
    for line in kaos.output().splitlines():
        event = json.loads(line)
        assert REQUIRED_JSON_FIELDS <= event.keys(), event
        events.append(event)
    messages = [event["message"] for event in events]
    assert "kaos is proxying" in messages and "shutdown complete" in messages, messages
    closed = [event for event in events if "peer" in event]
    assert closed and closed[0]["level"] in ("WARN", "INFO") and closed[0]["threadName"].startswith("shard-"), closed
