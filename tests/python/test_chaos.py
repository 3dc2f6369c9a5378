"""Chaos features seen by Python clients: kafka-python (pure Python) and confluent-kafka with a
schema-aware JSON deserializer. Each test sees the fault, deletes the rule, and sees clean
behaviour again."""

import time
import uuid

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.schema_registry.json_schema import JSONDeserializer, JSONSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError

SCHEMA = '{"title":"someSchema","type":"object","properties":{"some-valid":{"type":"string"}}}'


def new_topic(kaos, partitions=1):
    topic = f"py-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": kaos.bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])[topic].result(timeout=10)
    return topic


def read_all(kaos, topic, expected, timeout=30, partition=0):
    consumer = KafkaConsumer(bootstrap_servers=kaos.bootstrap, fetch_max_wait_ms=10, check_crcs=True,
                             consumer_timeout_ms=500, auto_offset_reset="earliest")
    partition = TopicPartition(topic, partition)
    consumer.assign([partition])
    consumer.seek_to_beginning(partition)
    values = []
    deadline = time.monotonic() + timeout
    while len(values) < expected and time.monotonic() < deadline:
        values.extend(record.value for record in consumer)
    values.extend(record.value for record in consumer)  # anything beyond the expected count
    consumer.close()
    return values


def kafka_python_producer(kaos, **settings):
    defaults = {"acks": "all", "linger_ms": 0, "enable_idempotence": False}
    return KafkaProducer(bootstrap_servers=kaos.bootstrap, **{**defaults, **settings})


def test_kafka_python_sees_broken_broker_errors_and_nothing_is_written(kaos):
    topic = new_topic(kaos)
    kaos.add_rule("broken-broker", {"errors": ["NOT_ENOUGH_REPLICAS"], "minLatencyToAddInMilliseconds": 50,
                                    "maxLatencyToAddInMilliseconds": 80})
    producer = kafka_python_producer(kaos, retries=0)
    with pytest.raises(KafkaError) as failure:
        producer.send(topic, b"lost").get(timeout=10)
    assert "NotEnoughReplicas" in type(failure.value).__name__
    kaos.delete_rule("broken-broker")
    producer.send(topic, b"kept").get(timeout=10)
    producer.close()
    assert read_all(kaos, topic, 1) == [b"kept"]


@pytest.mark.parametrize("direction, written", [("REQUEST", [0, 2]), ("RESPONSE", [0, 1, 2])])
def test_partitions_narrow_a_broken_broker_to_those_partitions(kaos, direction, written):
    """kafka-python sends one Produce per broker for all partitions: partition 1 fails, 0 and 2
    are written by the same request. With REQUEST kaos takes partition 1 out of the request, so it
    is not written; with RESPONSE the broker writes it and the client is told it failed."""
    topic = new_topic(kaos, partitions=3)
    kaos.add_rule("broken-broker", {"errors": ["NOT_ENOUGH_REPLICAS"], "partitions": [1]}, direction=direction)
    producer = kafka_python_producer(kaos, retries=0, linger_ms=200)
    sent = {p: [producer.send(topic, f"{p}-{i}".encode(), partition=p) for i in range(5)] for p in range(3)}
    producer.flush(timeout=10)
    producer.close()
    failed = {p: sorted({type(f.exception).__name__ for f in futures if f.failed()}) for p, futures in sent.items()}
    assert failed == {0: [], 1: ["NotEnoughReplicasError"], 2: []}
    assert kaos.affected("broken-broker") >= 1
    kaos.delete_rule("broken-broker", direction=direction)
    for p in range(3):
        expected = [f"{p}-{i}".encode() for i in range(5)] if p in written else []
        assert read_all(kaos, topic, len(expected), partition=p) == expected, f"partition {p}"


def test_kafka_python_retries_through_leader_election_and_loses_nothing(kaos):
    topic = new_topic(kaos)
    # kafka-python's idempotent producer treats BROKER_NOT_AVAILABLE (a default) as fatal.
    kaos.add_rule("leader-election", {"duration": 300, "quietPeriod": 300, "timeUnit": "MILLISECONDS",
                                      "errors": ["LEADER_NOT_AVAILABLE", "NOT_LEADER_OR_FOLLOWER"]})
    producer = kafka_python_producer(kaos, retries=1000, retry_backoff_ms=20, enable_idempotence=True)
    futures = []
    for i in range(200):
        futures.append(producer.send(topic, f"r-{i}".encode()))
        time.sleep(0.005)
    producer.flush(timeout=60)
    assert all(f.get(timeout=30) for f in futures)
    producer.close()
    kaos.delete_rule("leader-election")
    values = read_all(kaos, topic, 200)
    assert sorted(values) == sorted(f"r-{i}".encode() for i in range(200))


def test_kafka_python_writes_twice_under_duplicate_resource(kaos):
    topic = new_topic(kaos)
    kaos.add_rule("duplicate-resource", {"topics": [topic], "rateInPercent": 100})
    producer = kafka_python_producer(kaos)
    for i in range(10):
        producer.send(topic, f"d-{i}".encode()).get(timeout=10)
    kaos.delete_rule("duplicate-resource")
    producer.send(topic, b"single").get(timeout=10)
    producer.close()
    values = read_all(kaos, topic, 21)
    assert sorted(values) == sorted([f"d-{i}".encode() for i in range(10)] * 2 + [b"single"])


def test_kafka_python_reads_random_bytes_with_crc_checks(kaos):
    topic = new_topic(kaos)
    kaos.add_rule("random-bytes", {"topics": [topic], "nbMessages": 1, "sizeInBytes": 10})
    producer = kafka_python_producer(kaos, compression_type="gzip")
    original = b"x" * 100
    for _ in range(3):
        producer.send(topic, original).get(timeout=10)
    kaos.delete_rule("random-bytes")
    producer.send(topic, original).get(timeout=10)
    producer.close()
    values = read_all(kaos, topic, 4)
    assert [len(v) for v in values] == [110, 110, 110, 100]
    assert all(v.startswith(original) for v in values)


def test_kafka_python_feels_a_slow_broker(kaos):
    topic = new_topic(kaos)
    producer = kafka_python_producer(kaos)
    producer.send(topic, b"warm-up").get(timeout=10)
    kaos.add_rule("slow-broker", {"minLatencyToAddInMilliseconds": 600, "maxLatencyToAddInMilliseconds": 700})
    started = time.monotonic()
    producer.send(topic, b"slow").get(timeout=10)
    assert time.monotonic() - started >= 0.6
    kaos.delete_rule("slow-broker")
    started = time.monotonic()
    producer.send(topic, b"fast").get(timeout=10)
    assert time.monotonic() - started < 0.6
    producer.close()


def test_invalid_schema_breaks_a_schema_aware_consumer(kaos):
    topic = new_topic(kaos)
    status, _ = kaos.call("POST", "/tenant", {"tenant": "1-1", "topic": topic, "messageFormat": "JSON"})
    assert status == 200
    kaos.add_rule("invalid-schema", {"topics": [topic], "fakeSchemaId": 999})
    registry = SchemaRegistryClient.new_client({"url": "mock://kaos-test"})
    serialize = JSONSerializer(SCHEMA, registry)
    deserialize = JSONDeserializer(None, schema_registry_client=registry)
    context = SerializationContext(topic, MessageField.VALUE)
    producer = Producer({"bootstrap.servers": kaos.bootstrap, "linger.ms": 0})
    producer.produce(topic, serialize({"some-valid": "chaos"}, context))
    assert producer.flush(10) == 0
    kaos.delete_rule("invalid-schema")
    producer.produce(topic, serialize({"some-valid": "clean"}, context))
    assert producer.flush(10) == 0

    consumer = Consumer({"bootstrap.servers": kaos.bootstrap, "group.id": f"g-{topic}",
                         "auto.offset.reset": "earliest", "fetch.wait.max.ms": 10})
    consumer.subscribe([topic])
    raw = []
    deadline = time.monotonic() + 30
    while len(raw) < 2 and time.monotonic() < deadline:
        message = consumer.poll(0.2)
        if message is not None and message.error() is None:
            raw.append(message.value())
    consumer.close()
    assert len(raw) == 2
    assert raw[0][1:5] == (999).to_bytes(4, "big"), "the schema id was overwritten"
    with pytest.raises(SchemaRegistryError, match="Not Found"):
        deserialize(raw[0], context)
    assert deserialize(raw[1], context) == {"some-valid": "clean"}


def test_kafka_python_feels_a_slow_topic_and_not_the_others(kaos):
    slow_topic, fast_topic = new_topic(kaos), new_topic(kaos)
    slow, fast = kafka_python_producer(kaos), kafka_python_producer(kaos)
    slow.send(slow_topic, b"warm-up").get(timeout=10)
    fast.send(fast_topic, b"warm-up").get(timeout=10)
    kaos.add_rule("slow-topic", {"topicPatterns": [slow_topic], "minLatencyToAddInMilliseconds": 600,
                                 "maxLatencyToAddInMilliseconds": 700})

    def round_trip(producer, topic):
        started = time.monotonic()
        producer.send(topic, b"probe").get(timeout=10)
        return time.monotonic() - started

    slowed, unaffected = round_trip(slow, slow_topic), round_trip(fast, fast_topic)
    assert slowed >= 0.6
    assert unaffected * 5 < slowed, (unaffected, slowed)
    kaos.delete_rule("slow-topic")
    assert round_trip(slow, slow_topic) < 0.6
    slow.close()
    fast.close()


def test_kafka_python_reads_the_fake_schema_id(kaos):
    topic = new_topic(kaos)
    kaos.add_rule("invalid-schema", {"topics": [topic], "fakeSchemaId": 999})
    producer = kafka_python_producer(kaos)
    framed = b"\x00" + (1).to_bytes(4, "big") + b'{"some-valid":"x"}'
    producer.send(topic, framed).get(timeout=10)
    producer.send(topic, b"not framed").get(timeout=10)
    kaos.delete_rule("invalid-schema")
    producer.send(topic, framed).get(timeout=10)
    producer.close()
    values = read_all(kaos, topic, 3)
    assert values == [b"\x00" + (999).to_bytes(4, "big") + b'{"some-valid":"x"}', b"not framed", framed]
