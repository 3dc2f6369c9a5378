"""The web console in a real headless Chromium: add a broken-broker rule through the form, see it
listed and its counter rise while a producer runs, delete it."""

import pathlib
import shutil
import subprocess
import threading
import time
import uuid

from confluent_kafka.admin import AdminClient, NewTopic
from kafka import KafkaProducer

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_console_adds_watches_and_deletes_a_rule(kaos, tmp_path):
    node = shutil.which("node")
    assert node, "node is required for the browser test"
    topic = f"console-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": kaos.bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(timeout=10)

    stop = threading.Event()
    outcomes = {"ok": 0, "failed": 0}

    def produce():
        producer = KafkaProducer(bootstrap_servers=kaos.bootstrap, retries=0, linger_ms=0, acks="all",
                                 enable_idempotence=False)
        deadline = time.monotonic() + 90
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                producer.send(topic, b"tick").get(timeout=5)
                outcomes["ok"] += 1
            except Exception:
                outcomes["failed"] += 1
            time.sleep(0.05)
        producer.close()

    producer = threading.Thread(target=produce)
    producer.start()
    screenshot = tmp_path / "console.png"
    try:
        result = subprocess.run([node, str(ROOT / "tests/console/console.test.mjs"), f"http://{kaos.admin}/",
                                 str(screenshot)], capture_output=True, text=True, timeout=120)
    finally:
        stop.set()
        producer.join(timeout=30)
    steps = result.stdout.split()
    assert result.returncode == 0, result.stdout + result.stderr
    assert steps == ["CONSOLE_LOADED", "VALIDATION_SHOWN", "RULE_ADDED", "COUNTER_ROSE", "EVENT_SHOWN",
                     "RULE_DELETED"], steps
    assert screenshot.stat().st_size > 0
    assert outcomes["failed"] > 0, "the rule broke some produce requests"
    status, rules = kaos.call("GET", "/rules")
    assert (status, rules) == (200, [])
