"""confluent-kafka through kaos to the TLS-only listeners of the shared Apache Kafka cluster (issue
10 §3): clients speak plaintext to kaos, kaos speaks TLS to Kafka (`--upstream-tls --upstream-ca`
with the cluster's CA; Kafka serves PEM stores, see tests/kafka/cluster.py)."""

import time
import uuid

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

RECORDS = 50


def test_confluent_kafka_through_kaos_to_the_tls_listeners(kafka_cluster, kafka_tls_kaos):
    kaos = kafka_tls_kaos
    admin = AdminClient({"bootstrap.servers": kaos.bootstrap})
    # Metadata through kaos lists kaos's ports, one per node, never a cluster port.
    brokers = admin.list_topics(timeout=10).brokers
    assert {b.id: (b.host, b.port) for b in brokers.values()} == \
        {node: ("127.0.0.1", port) for node, port in kaos.broker_ports.items()}
    cluster_ports = {node[key] for node in kafka_cluster.info["nodes"] for key in ("port", "tls_port")}
    assert not cluster_ports & {b.port for b in brokers.values()}

    topic, group = f"py-kafka-tls-{uuid.uuid4().hex}", f"py-kafka-tls-group-{uuid.uuid4().hex}"
    admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=3)])[topic].result(30)

    failures = []
    producer = Producer({"bootstrap.servers": kaos.bootstrap, "enable.idempotence": True, "acks": "all",
                         "linger.ms": 5, "message.timeout.ms": 30000})
    for i in range(RECORDS):
        producer.produce(topic, key=str(i), value=f"{topic}-{i}",
                         on_delivery=lambda err, _msg: err and failures.append(err))
        producer.poll(0)
    assert producer.flush(45) == 0
    assert failures == []

    consumer = Consumer({"bootstrap.servers": kaos.bootstrap, "group.id": group, "auto.offset.reset": "earliest",
                         "fetch.wait.max.ms": 10})
    consumer.subscribe([topic])
    values = []
    try:
        deadline = time.monotonic() + 45
        while len(values) < RECORDS and time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is not None:
                assert message.error() is None, message.error()
                values.append(message.value().decode())
        # A short grace period shows any duplicate beyond the records sent.
        grace = time.monotonic() + 0.5
        while time.monotonic() < grace:
            message = consumer.poll(0.1)
            if message is not None and message.error() is None:
                values.append(message.value().decode())
    finally:
        consumer.close()
    assert sorted(values) == sorted(f"{topic}-{i}" for i in range(RECORDS))
    assert "TLS handshake with the broker failed" not in kaos.process.output()
