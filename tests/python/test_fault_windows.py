"""Issue 9: idempotent producers through leader-election and broken-broker windows.

An idempotent producer pipelines several Produce requests per partition; each batch carries a
sequence number and the broker accepts only the next one. kaos used to flip a coin per request,
failing request N for a partition while forwarding N+1 behind it: the broker saw a gap
(OutOfOrderSequenceNumber), the producer bumped its epoch, tansu fenced it (ProducerFenced) and
records were lost. Now a fault that fires fails its partition (leader-election) or its broker
(broken-broker) for a window, on every connection, so a producer sees a run of retriable errors,
retries, and gets everything through once and in order.

Each test runs one idempotent client through one fault: several thousand keyed records over
several partitions, paced so that requests are in flight while windows open and close. Then the
rule is deleted and everything is read back: each record exactly once, each key's records in the
order they were produced, and tansu never rejected a batch as out of order or from a fenced
producer. confluent-kafka (librdkafka) pipelines up to 5 requests per partition: against the
per-request coin flip (the same rules without `electionMs`/`brokenMs`) it failed every time,
tansu fencing it and most records failing with PRODUCER_FENCED. kafka-python keeps one batch per
partition in flight (it mutes a partition while its batch is out), so the coin flip could never
open a gap for it: its tests guard the windows (a client that retries through them gets through).

The errors are ones both clients retry: kafka-python's idempotent producer treats
BROKER_NOT_AVAILABLE (a default of both faults) as fatal.
"""

import collections
import time
import uuid

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import KafkaProducer

PARTITIONS = 4
KEYS = [f"key-{k}" for k in range(8)]
RECORDS = 4000
# Records sent between two short sleeps: about 2 s of producing, a request every few ms.
BURST, PAUSE_S = 20, 0.01
DELIVERY_TIMEOUT_S = 60

FAULTS = {
    "leader-election": {"rateInPercent": 30, "electionMs": 500, "errors": ["NOT_LEADER_OR_FOLLOWER"]},
    "broken-broker": {"rateInPercent": 30, "brokenMs": 500, "errors": ["NOT_ENOUGH_REPLICAS"]},
}

# What tansu logs when it rejects a Produce batch for these reasons.
REJECTIONS = ("OutOfOrderSequenceNumber", "ProducerFenced")


def new_topic(kaos):
    topic = f"windows-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": kaos.bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)])[topic].result(timeout=10)
    return topic


def records():
    """(key, value) in the order they are produced; the value names its key and its place."""
    sent = collections.Counter()
    for i in range(RECORDS):
        key = KEYS[i % len(KEYS)]
        yield key, f"{key}:{sent[key]}"
        sent[key] += 1


def produce_with_confluent_kafka(kaos, topic):
    """Returns how many records were acknowledged, the delivery errors, and the fatal errors the
    client reported."""
    acknowledged, failures, fatal = 0, [], []

    def delivered(error, _message):
        nonlocal acknowledged
        if error is None:
            acknowledged += 1
        else:
            failures.append(str(error))

    def client_error(error):
        if error.fatal():
            fatal.append(str(error))

    producer = Producer({
        "bootstrap.servers": kaos.bootstrap,
        "enable.idempotence": True,
        "linger.ms": 5,
        "retry.backoff.ms": 20,
        "retry.backoff.max.ms": 200,
        "message.timeout.ms": DELIVERY_TIMEOUT_S * 1000,
        "error_cb": client_error,
    })

    for i, (key, value) in enumerate(records()):
        for _ in range(1000):  # a full local queue: wait for deliveries, a bounded number of times
            try:
                producer.produce(topic, key=key, value=value, on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.01)
        else:
            pytest.fail(f"the producer's queue stayed full at record {i}")
        producer.poll(0)
        if i % BURST == BURST - 1:
            time.sleep(PAUSE_S)
        if fatal:
            break
    left = producer.flush(DELIVERY_TIMEOUT_S + 10)
    assert left == 0, f"{left} records still undelivered after the delivery timeout"
    return acknowledged, failures, fatal


def produce_with_kafka_python(kaos, topic):
    """Returns how many records were acknowledged and the delivery errors (kafka-python reports a
    fatal error as every later record's)."""
    producer = KafkaProducer(bootstrap_servers=kaos.bootstrap, enable_idempotence=True, acks="all", linger_ms=5,
                             retries=10_000, retry_backoff_ms=20, delivery_timeout_ms=DELIVERY_TIMEOUT_S * 1000,
                             request_timeout_ms=10_000)
    futures = []
    for i, (key, value) in enumerate(records()):
        futures.append(producer.send(topic, key=key.encode(), value=value.encode()))
        if i % BURST == BURST - 1:
            time.sleep(PAUSE_S)
    producer.flush(timeout=DELIVERY_TIMEOUT_S + 10)
    failures = [f"{type(f.exception).__name__}: {f.exception}" if f.is_done else "not delivered after the flush"
                for f in futures if not f.succeeded()]
    producer.close(timeout=10)
    return len(futures) - len(failures), failures, []


def read_everything(kaos, topic, expected, timeout=30):
    """(key, value) of every record in the topic: until `expected` arrive, then for half a second
    more (anything beyond the expected count)."""
    consumer = Consumer({"bootstrap.servers": kaos.bootstrap, "group.id": f"g-{topic}",
                         "enable.auto.commit": False, "fetch.wait.max.ms": 10, "check.crcs": True})
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
    read = []
    deadline = time.monotonic() + timeout
    while len(read) < expected and time.monotonic() < deadline:
        for message in consumer.consume(num_messages=1000, timeout=0.2):
            assert message.error() is None, message.error()
            read.append((message.key().decode(), message.value().decode()))
    grace = time.monotonic() + 0.5
    while time.monotonic() < grace:
        read.extend((m.key().decode(), m.value().decode()) for m in consumer.consume(1000, timeout=0.1)
                    if m.error() is None)
    consumer.close()
    return read


PRODUCERS = {"confluent-kafka": produce_with_confluent_kafka, "kafka-python": produce_with_kafka_python}


@pytest.mark.parametrize("feature", FAULTS)
@pytest.mark.parametrize("client", PRODUCERS)
def test_an_idempotent_producer_gets_everything_through_once_and_in_order(kaos, tansu_broker, client, feature):
    topic = new_topic(kaos)
    before = kaos.affected(feature)
    kaos.add_rule(feature, FAULTS[feature])
    try:
        acknowledged, failures, fatal = PRODUCERS[client](kaos, topic)
    finally:
        kaos.delete_rule(feature)
    assert kaos.affected(feature) > before, f"{feature} failed no request"

    # Everything wrong, together: a rejection in tansu's log explains the client's failures.
    problems = []
    log = tansu_broker.log()
    problems += [f"tansu rejected {log.count(r)} batches with {r}" for r in REJECTIONS if r in log]
    if fatal:
        problems.append(f"{client} died: {fatal[0]}")
    if failures:
        common = "; ".join(f"{n} x {e}" for e, n in collections.Counter(failures).most_common(3))
        problems.append(f"{len(failures)} of {RECORDS} records failed: {common}")
    sent = list(records())
    read = read_everything(kaos, topic, acknowledged)
    missing = collections.Counter(sent) - collections.Counter(read)
    extra = collections.Counter(read) - collections.Counter(sent)
    if missing or extra:
        problems.append(f"read {len(read)} records of {len(sent)} sent: {sum(missing.values())} missing, "
                        f"{sum(extra.values())} duplicated or foreign")
    by_key = collections.defaultdict(list)
    for key, value in read:
        by_key[key].append(int(value.rsplit(":", 1)[1]))
    problems += [f"{key}'s records out of order" for key, places in by_key.items() if places != sorted(places)]
    assert problems == [], "\n".join(problems)
