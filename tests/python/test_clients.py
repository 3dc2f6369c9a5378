"""Real Python clients through kaos: confluent-kafka (librdkafka) and kafka-python (pure Python).
Each produces, consumes in a group, and administers topics and groups, and never sees a real
broker address: in plaintext, and over TLS to kaos (--tls-cert, --tls-key) with the client
verifying kaos's certificate against the test CA and the address it dials (127.0.0.1)."""

import time
import uuid

import pytest

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic as KafkaPythonNewTopic

RECORDS = 1000


def unique(name):
    return f"{name}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(params=["plaintext", "tls"])
def through(request):
    """kaos, and the settings each client needs to reach it: (kaos, librdkafka's, kafka-python's)."""
    if request.param == "plaintext":
        return request.getfixturevalue("kaos"), {}, {}
    kaos, certs = request.getfixturevalue("tls_kaos"), request.getfixturevalue("tls_certs")
    return (kaos, {"security.protocol": "SSL", "ssl.ca.location": certs.ca},
            {"security_protocol": "SSL", "ssl_cafile": certs.ca})


def test_confluent_kafka_produce_consume_and_admin(through):
    kaos, settings, _ = through
    config = {"bootstrap.servers": kaos.bootstrap, **settings}
    admin = AdminClient(config)
    topic, group = unique("ck-topic"), unique("ck-group")
    admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])[topic].result(timeout=10)

    brokers = admin.list_topics(timeout=10).brokers.values()
    assert {(b.host, b.port) for b in brokers} <= kaos.addresses()

    failures = []
    producer = Producer({**config, "enable.idempotence": True, "linger.ms": 5})
    for i in range(RECORDS):
        producer.produce(topic, key=str(i), value=f"ck-{i}",
                         on_delivery=lambda err, _msg: err and failures.append(err))
        producer.poll(0)
    assert producer.flush(30) == 0
    assert failures == []

    consumer = Consumer({**config, "group.id": group, "auto.offset.reset": "earliest", "fetch.wait.max.ms": 10})
    consumer.subscribe([topic])
    values = []
    deadline = time.monotonic() + 60
    while len(values) < RECORDS and time.monotonic() < deadline:
        message = consumer.poll(0.2)
        if message is not None:
            assert message.error() is None, message.error()
            values.append(message.value().decode())
    consumer.commit(asynchronous=False)
    assert sorted(values) == sorted(f"ck-{i}" for i in range(RECORDS))

    groups = admin.list_consumer_groups().result(timeout=10)
    assert group in {g.group_id for g in groups.valid}
    consumer.close()

    admin.delete_topics([topic])[topic].result(timeout=10)
    deadline = time.monotonic() + 10
    while topic in admin.list_topics(timeout=10).topics and time.monotonic() < deadline:
        time.sleep(0.1)
    assert topic not in admin.list_topics(timeout=10).topics


def test_kafka_python_produce_consume_and_admin(through):
    kaos, _, settings = through
    config = {"bootstrap_servers": kaos.bootstrap, **settings}
    topic, group = unique("kp-topic"), unique("kp-group")
    admin = KafkaAdminClient(request_timeout_ms=10000, **config)
    admin.create_topics([KafkaPythonNewTopic(topic, num_partitions=2, replication_factor=1)])

    producer = KafkaProducer(linger_ms=5, acks="all", **config)
    futures = [producer.send(topic, key=str(i).encode(), value=f"kp-{i}".encode()) for i in range(RECORDS)]
    producer.flush(timeout=30)
    assert all(f.get(timeout=10) for f in futures)
    producer.close()

    consumer = KafkaConsumer(topic, group_id=group, auto_offset_reset="earliest", fetch_max_wait_ms=10,
                             consumer_timeout_ms=200, **config)
    values = []
    deadline = time.monotonic() + 60
    while len(values) < RECORDS and time.monotonic() < deadline:
        values.extend(record.value.decode() for record in consumer)
    consumer.commit()
    assert sorted(values) == sorted(f"kp-{i}" for i in range(RECORDS))

    # Every broker and the group coordinator the client learned are kaos addresses.
    cluster = consumer._client.cluster
    assert {(b.host, b.port) for b in cluster.brokers()} <= kaos.addresses()
    coordinator = cluster.broker_metadata(consumer._coordinator.coordinator_id)
    assert (coordinator.host, coordinator.port) in kaos.addresses()
    consumer.close()

    listed = admin.list_groups()
    assert group in {g["group_id"] for g in listed}, listed
    admin.delete_topics([topic])
    deadline = time.monotonic() + 10
    while topic in admin.list_topics() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert topic not in admin.list_topics()
    admin.close()
