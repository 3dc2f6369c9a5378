"""Errors on the group and transaction APIs (issue 12 §3), seen by real librdkafka clients
(confluent-kafka) through kaos in front of the shared 3-node Apache Kafka cluster.

Each rule is active for a short phase and then quiet for minutes (`duration`, `quietPeriod`), as a
coordinator that moves or loads for a moment: the client must get through it on its own, and
every record must arrive exactly once.
"""

import time
import uuid

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

RECORDS = 20


def phase(active_ms, **config):
    """A rule config active for `active_ms` from its creation, then quiet for ten minutes."""
    return {"rateInPercent": 100, "duration": active_ms, "quietPeriod": 600_000, "timeUnit": "MILLISECONDS",
            **config}


def new_topic(kafka_cluster, partitions=2):
    topic = f"coordinator-{uuid.uuid4().hex[:12]}"
    admin = AdminClient({"bootstrap.servers": kafka_cluster.bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=3)])[topic].result(30)
    return topic


def produce(bootstrap, topic, values):
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for value in values:
        producer.produce(topic, value=value)
    assert producer.flush(30) == 0


def consumer_for(kaos, group, **extra):
    return Consumer({"bootstrap.servers": kaos.bootstrap, "group.id": group, "auto.offset.reset": "earliest",
                     "enable.auto.commit": False, "fetch.wait.max.ms": 10, "session.timeout.ms": 6000,
                     "heartbeat.interval.ms": 200, **extra})


def poll_until(consumer, condition, what, seconds=30):
    """Polls `consumer` until `condition(values)` holds; returns the values it read."""
    values = []
    deadline = time.monotonic() + seconds
    while not condition(values):
        assert time.monotonic() < deadline, f"timed out waiting for {what}; read {len(values)} records"
        message = consumer.poll(0.1)
        if message is not None and message.error() is None:
            values.append(message.value().decode())
    return values


def test_rebalance_in_progress_on_heartbeat_makes_the_consumer_rejoin(kafka_cluster, kafka_kaos):
    topic = new_topic(kafka_cluster)
    produce(kafka_cluster.bootstrap, topic, [f"r{i}" for i in range(RECORDS)])
    assignments = []
    consumer = consumer_for(kafka_kaos, f"g-{uuid.uuid4().hex}")
    consumer.subscribe([topic], on_assign=lambda _c, partitions: assignments.append(len(partitions)))
    try:
        values = poll_until(consumer, lambda v: len(v) >= RECORDS, "the first records")
        assert assignments == [2]
        consumer.commit(asynchronous=False)
        kafka_kaos.add_rule("broken-broker", phase(1500, errors=["REBALANCE_IN_PROGRESS"]), api_keys="HEARTBEAT")
        produce(kafka_cluster.bootstrap, topic, [f"s{i}" for i in range(RECORDS)])
        # After the rejoin the member starts from the committed offsets: nothing is read twice.
        values += poll_until(consumer, lambda v: len(v) >= RECORDS and len(assignments) >= 2, "a rejoin", 20)
        assert len(assignments) >= 2, "REBALANCE_IN_PROGRESS on Heartbeat makes the member rejoin"
        assert kafka_kaos.affected("broken-broker") >= 1
        assert sorted(values) == sorted([f"r{i}" for i in range(RECORDS)] + [f"s{i}" for i in range(RECORDS)])
    finally:
        consumer.close()


def test_not_coordinator_on_offset_commit_sends_the_consumer_back_to_find_it(kafka_cluster, kafka_kaos):
    topic = new_topic(kafka_cluster)
    produce(kafka_cluster.bootstrap, topic, [f"r{i}" for i in range(RECORDS)])
    group = f"g-{uuid.uuid4().hex}"
    consumer = consumer_for(kafka_kaos, group)
    consumer.subscribe([topic])
    try:
        poll_until(consumer, lambda v: len(v) >= RECORDS, "the records")
        kafka_kaos.add_rule("leader-election", phase(1500), api_keys="OFFSET_COMMIT")
        failures = []
        deadline = time.monotonic() + 20
        while True:
            try:
                committed = consumer.commit(asynchronous=False)
                break
            except KafkaException as error:
                failures.append(error.args[0].code())
                assert time.monotonic() < deadline, f"never committed: {failures}"
                time.sleep(0.2)
        assert KafkaError.NOT_COORDINATOR in failures, failures
        assert all(p.error is None for p in committed)
        # A partition the records did not go to has no offset to commit (OFFSET_INVALID, -1001).
        assert sum(max(p.offset, 0) for p in committed) == RECORDS
    finally:
        consumer.close()
    # The offsets are on the broker: a new member of the group starts after them.
    checker = Consumer({"bootstrap.servers": kafka_cluster.bootstrap, "group.id": group})
    try:
        stored = checker.committed([TopicPartition(topic, p) for p in range(2)], timeout=10)
        assert sum(max(p.offset, 0) for p in stored) == RECORDS
    finally:
        checker.close()


def test_coordinator_load_in_progress_on_find_coordinator_delays_the_join(kafka_cluster, kafka_kaos):
    topic = new_topic(kafka_cluster)
    produce(kafka_cluster.bootstrap, topic, [f"r{i}" for i in range(RECORDS)])
    kafka_kaos.add_rule("leader-election", phase(2000), api_keys="FIND_COORDINATOR")
    started = time.monotonic()
    consumer = consumer_for(kafka_kaos, f"g-{uuid.uuid4().hex}")
    consumer.subscribe([topic])
    try:
        values = poll_until(consumer, lambda v: len(v) >= RECORDS, "the records once the coordinator loaded")
        # The group cannot form before the coordinator answers: a lower bound, not a timing.
        assert time.monotonic() - started >= 1.5
        assert kafka_kaos.affected("leader-election") >= 1
        assert sorted(values) == sorted(f"r{i}" for i in range(RECORDS))
    finally:
        consumer.close()


def test_concurrent_transactions_on_add_partitions_to_txn_is_retried_to_one_commit(kafka_cluster, kafka_kaos):
    topic = new_topic(kafka_cluster)
    producer = Producer({"bootstrap.servers": kafka_kaos.bootstrap, "transactional.id": f"tx-{uuid.uuid4().hex}"})
    producer.init_transactions(30)
    kafka_kaos.add_rule("broken-broker", phase(1500, errors=["CONCURRENT_TRANSACTIONS"]),
                        api_keys="ADD_PARTITIONS_TO_TXN")
    producer.begin_transaction()
    for i in range(RECORDS):
        producer.produce(topic, value=f"t{i}", partition=i % 2)
    producer.commit_transaction(30)
    assert kafka_kaos.affected("broken-broker") >= 1
    consumer = Consumer({"bootstrap.servers": kafka_cluster.bootstrap, "group.id": f"g-{uuid.uuid4().hex}",
                         "auto.offset.reset": "earliest", "isolation.level": "read_committed"})
    consumer.subscribe([topic])
    try:
        values = poll_until(consumer, lambda v: len(v) >= RECORDS, "the committed records")
        values += [m.value().decode() for m in consumer.consume(100, 1.0) if m.error() is None]
        assert sorted(values) == sorted(f"t{i}" for i in range(RECORDS)), "each record once"
    finally:
        consumer.close()


def test_errors_kafka_never_answers_an_api_with_are_refused(kafka_kaos):
    status, answer = kafka_kaos.call("POST", "/tenant/1-1/user/u/feature/broken-broker", {
        "config": {"errors": ["REBALANCE_IN_PROGRESS", "NOT_ENOUGH_REPLICAS"]}, "apiKeys": "HEARTBEAT"})
    assert status == 400
    assert "config.errors[1]" in str(answer) and "HEARTBEAT" in str(answer), answer
