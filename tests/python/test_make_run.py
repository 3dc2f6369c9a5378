"""`make run`'s script (demo/run.sh) as a newcomer meets it, on a terminal: a one-node Apache Kafka
from the test jars and kaos in front of it, listening within 30 s of the build; it prints where
everything listens, and Ctrl-C stops everything with exit 0."""

import fcntl
import os
import pathlib
import pty
import re
import select
import signal
import subprocess
import termios
import time

from confluent_kafka.admin import AdminClient

from conftest import free_port, http_status, listening, port_is_free

ROOT = pathlib.Path(__file__).resolve().parents[2]


def read_until(fd, pattern, seconds):
    seen = b""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
            if re.search(pattern, seen):
                return seen.decode(errors="replace")
    raise AssertionError(f"no {pattern!r} within {seconds} s:\n{seen.decode(errors='replace')}")


def take_terminal():
    """In the child, after setsid: its stdin (the pty) becomes its controlling terminal."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def test_make_run_listens_within_30_s_and_stops_on_ctrl_c():
    kafka_port, port_start = free_port(), free_port()
    while not (port_start + 2 < 65000 and port_is_free(port_start + 2)):
        port_start = free_port()
    admin = f"127.0.0.1:{free_port()}"
    env = {**os.environ, "KAOS": os.environ["KAOS_BIN"], "KAFKA_PORT": str(kafka_port),
           "PORT_START": str(port_start), "ADMIN": admin, "RUN_BROKER": "kafka"}
    controller, terminal = pty.openpty()
    started = time.monotonic()
    run = subprocess.Popen([str(ROOT / "demo/run.sh")], stdin=terminal, stdout=terminal, stderr=terminal,
                           env=env, start_new_session=True, preexec_fn=take_terminal)
    os.close(terminal)
    try:
        shown = read_until(controller, rb"Ctrl-C stops kaos and the broker", 60)
        took = time.monotonic() - started
        assert took < 30, f"listening after {took:.1f} s"
        assert f"127.0.0.1:{kafka_port}" in shown and f"bootstrap.servers=127.0.0.1:{port_start}" in shown, shown
        assert http_status(f"http://{admin}/ready") == 200
        brokers = AdminClient({"bootstrap.servers": f"127.0.0.1:{port_start}"}).list_topics(timeout=10).brokers
        assert [(b.id, b.port) for b in brokers.values()] == [(1, port_start + 2)], "node 1 at kaos's port"

        os.write(controller, b"\x03")  # Ctrl-C, as the terminal sends it to its foreground job
        read_until(controller, rb"stopping the broker", 30)
        assert run.wait(timeout=30) == 0
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
        os.close(controller)
    assert not listening(kafka_port) and not listening(port_start), "the broker and kaos are gone"
