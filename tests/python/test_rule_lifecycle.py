"""Rules as an experiment (issue 13 §1-2) with kafka-python against tansu: counted triggers act on
exactly the requests they name, a ttl removes its rule, PUT /rules replaces the set whole or not
at all, DELETE /rules resets."""

import time
import uuid

from confluent_kafka.admin import AdminClient, NewTopic
from kafka import KafkaProducer
from kafka.errors import KafkaError

FAIL = {"errors": ["NOT_ENOUGH_REPLICAS"]}


def new_topic(kaos):
    topic = f"life-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": kaos.bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(timeout=10)
    return topic


def outcomes(kaos, topic, count):
    """Sends `count` records one at a time without retries: True for each one written."""
    producer = KafkaProducer(bootstrap_servers=kaos.bootstrap, acks="all", retries=0, linger_ms=0)
    written = []
    for i in range(count):
        try:
            producer.send(topic, f"r{i}".encode()).get(timeout=10)
            written.append(True)
        except KafkaError:
            written.append(False)
    producer.close()
    return written


def test_counted_rules_fail_exactly_the_requests_they_name(kaos):
    topic = new_topic(kaos)
    kaos.add_rule("broken-broker", {**FAIL, "skipRequests": 2, "maxRequests": 2, "brokenMs": 1})
    assert outcomes(kaos, topic, 6) == [True, True, False, False, True, True]
    rule = kaos.call("GET", "/rules")[1][0]
    assert rule["matchedRequests"] == 6 and rule["config"]["maxRequests"] == 2


def test_a_ttl_removes_the_rule_and_writes_work_again(kaos):
    topic = new_topic(kaos)
    rule = kaos.add_rule("broken-broker", {**FAIL, "ttl": 1, "ttlUnit": "SECONDS"})
    assert rule["expiresAtMs"] == rule["createdAtMs"] + 1000
    assert outcomes(kaos, topic, 1) == [False]
    deadline = time.monotonic() + 10
    while kaos.call("GET", "/rules")[1]:
        assert time.monotonic() < deadline, "the rule outlived its ttl"
        time.sleep(0.1)
    assert outcomes(kaos, topic, 1) == [True]


def test_put_replaces_the_set_whole_or_not_at_all_and_delete_resets(kaos):
    topic = new_topic(kaos)
    kaos.add_rule("slow-broker", {"minLatencyToAddInMilliseconds": 1})
    wanted = [{"tenant": "1-1", "user": "test@conduktor.io", "feature": "broken-broker", "apiKeys": "PRODUCE",
               "direction": "REQUEST", "config": FAIL}]
    status, applied = kaos.call("PUT", "/rules", wanted)
    assert status == 200 and [r["feature"] for r in applied] == ["broken-broker"], applied
    assert outcomes(kaos, topic, 1) == [False]

    bad = wanted + [{"tenant": "1-1", "user": "x", "feature": "broken-broker", "apiKeys": "HEARTBEAT",
                     "config": FAIL}]
    status, error = kaos.call("PUT", "/rules", bad)
    assert (status, error["field"]) == (400, "[1].config.errors[0]"), error
    assert [r["feature"] for r in kaos.call("GET", "/rules")[1]] == ["broken-broker"], "nothing applied"

    assert kaos.call("DELETE", "/rules") == (200, [])
    assert outcomes(kaos, topic, 1) == [True]


def test_the_event_log_shows_each_fault_and_a_dry_run_changes_nothing(kaos):
    topic = new_topic(kaos)
    kaos.add_rule("broken-broker", {**FAIL, "dryRun": True})
    assert outcomes(kaos, topic, 3) == [True, True, True], "a dry run fails nothing"
    assert kaos.affected("broken-broker") == 0, "nor counts as injected"
    status, events = kaos.call("GET", "/events")
    assert status == 200 and len(events) == 3, events
    event = events[-1]
    assert event["dryRun"] is True and event["feature"] == "broken-broker"
    assert event["did"]["error"] == "NOT_ENOUGH_REPLICAS" and event["did"]["errorCode"] == 19
    assert (event["apiKey"], event["brokerId"], event["clientAddress"]) == ("PRODUCE", 111, "127.0.0.1")
    assert event["clientId"] and event["correlationId"] is not None
    assert event["topicPartitions"] == [{"topic": topic, "partition": 0}]

    kaos.add_rule("broken-broker", FAIL)
    assert outcomes(kaos, topic, 1) == [False]
    status, newer = kaos.call("GET", f"/events?since={event['seq']}")
    assert status == 200 and [e["dryRun"] for e in newer] == [False], newer
    assert newer[0]["seq"] > event["seq"]
    assert kaos.call("GET", "/events?limit=0")[0] == 400

    # A fault on the answer names the client too.
    kaos.call("DELETE", "/rules")
    kaos.add_rule("broken-broker", FAIL, direction="RESPONSE")
    assert outcomes(kaos, topic, 1) == [False]
    status, answered = kaos.call("GET", f"/events?since={newer[-1]['seq']}")
    assert status == 200 and [e["direction"] for e in answered] == ["RESPONSE"], answered
    assert (answered[0]["clientAddress"], answered[0]["brokerId"]) == ("127.0.0.1", 111), answered
