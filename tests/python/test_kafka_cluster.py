"""The shared Apache Kafka cluster of `make test` (the `kafka_cluster` fixture), reached directly
with confluent-kafka: three brokers, a topic on all of them, records through a node restart."""

import uuid

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic


def produce(bootstrap, topic, prefix, count):
    failures = []
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
                         "linger.ms": 5})
    for i in range(count):
        producer.produce(topic, key=str(i), value=f"{prefix}-{i}",
                         on_delivery=lambda err, _msg: err and failures.append(err))
    assert producer.flush(60) == 0
    assert failures == []


def consume(bootstrap, topic, count):
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"g-{uuid.uuid4().hex}",
                         "auto.offset.reset": "earliest", "fetch.wait.max.ms": 10})
    consumer.subscribe([topic])
    values = []
    try:
        for _ in range(600):
            if len(values) >= count:
                break
            message = consumer.poll(0.2)
            if message is not None:
                assert message.error() is None, message.error()
                values.append(message.value().decode())
    finally:
        consumer.close()
    return values


def test_three_brokers_and_a_node_restart(kafka_cluster):
    bootstrap = kafka_cluster.bootstrap
    admin = AdminClient({"bootstrap.servers": bootstrap})
    assert sorted(admin.list_topics(timeout=10).brokers) == kafka_cluster.node_ids == [1, 2, 3]
    topic = f"py-smoke-{uuid.uuid4().hex}"
    admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=3)])[topic].result(30)

    produce(bootstrap, topic, "before", 50)
    with kafka_cluster.stopped_node(2):
        assert sorted(admin.list_topics(timeout=10).brokers) == [1, 3]
        produce(bootstrap, topic, "during", 50)
    described = kafka_cluster.tool("kafka-topics", ["--bootstrap-server", bootstrap, "--describe", "--topic", topic],
                                   capture=True)
    assert described.returncode == 0, described.stderr
    assert described.stdout.count("Isr: ") == 3 and "ReplicationFactor: 3" in described.stdout

    values = consume(bootstrap, topic, 100)
    assert sorted(values) == sorted([f"before-{i}" for i in range(50)] + [f"during-{i}" for i in range(50)])
