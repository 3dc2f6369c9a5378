"""Python clients over TLS to kaos (--tls-cert, --tls-key) in front of a plaintext tansu:
confluent-kafka (librdkafka with OpenSSL) and kafka-python (Python's ssl module). Both verify
kaos's certificate against the test CA and the address they dial (127.0.0.1)."""

import time
import uuid

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic as KafkaPythonNewTopic

RECORDS = 100


def unique(name):
    return f"{name}-{uuid.uuid4().hex[:8]}"


def test_confluent_kafka_over_tls(tls_kaos, tls_certs):
    ssl = {"bootstrap.servers": tls_kaos.bootstrap, "security.protocol": "SSL", "ssl.ca.location": tls_certs.ca}
    topic, group = unique("ck-tls"), unique("ck-tls-group")
    admin = AdminClient(ssl)
    admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])[topic].result(timeout=10)
    brokers = admin.list_topics(timeout=10).brokers.values()
    assert {(b.host, b.port) for b in brokers} <= tls_kaos.addresses()

    failures = []
    producer = Producer({**ssl, "linger.ms": 5})
    for i in range(RECORDS):
        producer.produce(topic, key=str(i), value=f"ck-{i}",
                         on_delivery=lambda err, _msg: err and failures.append(err))
        producer.poll(0)
    assert producer.flush(30) == 0
    assert failures == []

    consumer = Consumer({**ssl, "group.id": group, "auto.offset.reset": "earliest", "fetch.wait.max.ms": 10})
    consumer.subscribe([topic])
    values = []
    deadline = time.monotonic() + 30
    while len(values) < RECORDS and time.monotonic() < deadline:
        message = consumer.poll(0.2)
        if message is not None:
            assert message.error() is None, message.error()
            values.append(message.value().decode())
    consumer.close()
    assert sorted(values) == sorted(f"ck-{i}" for i in range(RECORDS))


def test_kafka_python_over_tls(tls_kaos, tls_certs):
    ssl = {"bootstrap_servers": tls_kaos.bootstrap, "security_protocol": "SSL", "ssl_cafile": tls_certs.ca}
    topic, group = unique("kp-tls"), unique("kp-tls-group")
    admin = KafkaAdminClient(request_timeout_ms=10000, **ssl)
    admin.create_topics([KafkaPythonNewTopic(topic, num_partitions=2, replication_factor=1)])
    admin.close()

    producer = KafkaProducer(linger_ms=5, acks="all", **ssl)
    futures = [producer.send(topic, key=str(i).encode(), value=f"kp-{i}".encode()) for i in range(RECORDS)]
    producer.flush(timeout=30)
    assert all(f.get(timeout=10) for f in futures)
    producer.close()

    consumer = KafkaConsumer(topic, group_id=group, auto_offset_reset="earliest", fetch_max_wait_ms=10,
                             consumer_timeout_ms=200, **ssl)
    values = []
    deadline = time.monotonic() + 30
    while len(values) < RECORDS and time.monotonic() < deadline:
        values.extend(record.value.decode() for record in consumer)
    consumer.close()
    assert sorted(values) == sorted(f"kp-{i}" for i in range(RECORDS))
