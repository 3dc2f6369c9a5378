"""Network faults per broker (issue 12 §5) with librdkafka (confluent-kafka) through kaos in front
of the shared 3-node Apache Kafka cluster: one broker's network goes bad, the other two work."""

import time
import uuid

from confluent_kafka import Consumer, KafkaError, Producer
from confluent_kafka.admin import AdminClient, NewTopic

def leaders(bootstrap, topic, partitions):
    """{partition: leader node id}, once every partition of the new topic has a leader."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    deadline = time.monotonic() + 20
    while True:
        metadata = admin.list_topics(topic, timeout=10).topics[topic]
        led_by = {p.id: p.leader for p in metadata.partitions.values() if p.leader >= 0}
        if len(led_by) == partitions:
            return led_by
        assert time.monotonic() < deadline, f"{topic} has leaders for {sorted(led_by)} only"
        time.sleep(0.2)


def produce_to_each(bootstrap, topic, partitions, per_partition=5):
    """Sends records to each partition; {partition: sorted set of delivery error codes or None}."""
    outcome = {p: set() for p in partitions}
    producer = Producer({"bootstrap.servers": bootstrap, "message.timeout.ms": 4000, "linger.ms": 5,
                         "enable.idempotence": False, "acks": "all"})

    def delivered(error, message):
        outcome[message.partition()].add(error.code() if error else None)

    for p in partitions:
        for i in range(per_partition):
            producer.produce(topic, value=f"{p}-{i}", partition=p, on_delivery=delivered)
    producer.flush(30)
    return outcome


def test_a_black_hole_on_one_broker_times_out_its_partitions_only(kafka_cluster, kafka_kaos):
    topic = f"dark-{uuid.uuid4().hex[:10]}"
    admin = AdminClient({"bootstrap.servers": kafka_cluster.bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=6, replication_factor=3)])[topic].result(30)
    led_by = leaders(kafka_cluster.bootstrap, topic, 6)
    dark = led_by[0]
    assert len(set(led_by.values())) > 1, f"the partitions' leaders are spread: {led_by}"

    kafka_kaos.add_rule("timeout", {"brokerIds": [dark]}, api_keys="PRODUCE")
    outcome = produce_to_each(kafka_kaos.bootstrap, topic, sorted(led_by))
    for partition, leader in led_by.items():
        if leader == dark:
            assert outcome[partition] == {KafkaError._MSG_TIMED_OUT}, (partition, leader, outcome)
        else:
            assert outcome[partition] == {None}, (partition, leader, outcome)
    assert kafka_kaos.affected("timeout") >= 1

    kafka_kaos.delete_rule("timeout", api_keys="PRODUCE")
    outcome = produce_to_each(kafka_kaos.bootstrap, topic, sorted(led_by))
    assert all(errors == {None} for errors in outcome.values()), outcome


def test_an_idempotent_producer_writes_each_record_once_through_connection_resets(kafka_cluster, kafka_kaos):
    """Each reset leaves the producer not knowing whether its requests in flight were applied; it
    retries them, and the broker drops the batches it already has."""
    topic = f"reset-{uuid.uuid4().hex[:10]}"
    admin = AdminClient({"bootstrap.servers": kafka_cluster.bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=3)])[topic].result(30)
    kafka_kaos.add_rule("reset-peer", {"timeoutMs": 30, "duration": 2000, "quietPeriod": 600_000,
                                       "timeUnit": "MILLISECONDS"}, api_keys="PRODUCE")
    failures = []
    producer = Producer({"bootstrap.servers": kafka_kaos.bootstrap, "enable.idempotence": True, "linger.ms": 10})
    for i in range(300):
        producer.produce(topic, value=f"r{i}", on_delivery=lambda error, _m: error and failures.append(error))
        producer.poll(0)
    assert producer.flush(60) == 0
    assert failures == []
    assert kafka_kaos.affected("reset-peer") >= 1
    consumer = Consumer({"bootstrap.servers": kafka_cluster.bootstrap, "group.id": f"g-{uuid.uuid4().hex}",
                         "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    values = []
    try:
        deadline = time.monotonic() + 30
        while len(values) < 300 and time.monotonic() < deadline:
            values += [m.value().decode() for m in consumer.consume(100, 0.5) if m.error() is None]
        values += [m.value().decode() for m in consumer.consume(100, 1.0) if m.error() is None]
    finally:
        consumer.close()
    assert sorted(values) == sorted(f"r{i}" for i in range(300)), "each record exactly once"
