"""The project's Python client (clients/python, issue 13 §5) against a real kaos and tansu: faults as
context managers (removed even on error), the event log, reset, refused rules, and its pytest
fixture, run in a pytest of its own."""

import textwrap
import uuid

import pytest
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import KafkaProducer
from kafka.errors import KafkaError
from kaos_client import Kaos, KaosError

pytest_plugins = ["pytester"]


def new_topic(kaos):
    topic = f"client-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": kaos.bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(timeout=10)
    return topic


def written(kaos, topic):
    producer = KafkaProducer(bootstrap_servers=kaos.bootstrap, acks="all", retries=0)
    try:
        producer.send(topic, b"x").get(timeout=10)
        return True
    except KafkaError:
        return False
    finally:
        producer.close()


def test_a_fault_lasts_for_its_block_even_when_the_block_fails(kaos):
    client = Kaos(f"http://{kaos.admin}")
    topic = new_topic(kaos)
    with client.fault("broken-broker", errors=["NOT_ENOUGH_REPLICAS"], rate_in_percent=100, seed=7) as rule:
        assert rule["config"]["seed"] == 7 and rule["config"]["rateInPercent"] == 100
        assert not written(kaos, topic)
    assert client.rules() == [] and written(kaos, topic)

    with pytest.raises(RuntimeError):
        with client.fault("slow-broker", min_latency_to_add_in_milliseconds=1):
            raise RuntimeError("the test failed")
    assert client.rules() == [], "removed even so"

    events = client.events()
    assert [e["did"]["error"] for e in events] == ["NOT_ENOUGH_REPLICAS"], events
    assert client.events(since=events[-1]["seq"]) == []


def test_refused_rules_name_the_field_and_reset_removes_everything(kaos):
    client = Kaos(f"http://{kaos.admin}", tenant="t", user="u")
    with pytest.raises(KaosError) as refused:
        client.add_rule("broken-broker", api_keys="HEARTBEAT", errors=["NOT_ENOUGH_REPLICAS"])
    assert (refused.value.status, refused.value.field) == (400, "config.errors[0]")
    client.add_rule("slow-broker")
    client.add_rule("no-response", api_keys="FETCH")
    assert len(client.rules()) == 2
    client.reset()
    assert client.rules() == []


def test_the_pytest_fixture_removes_what_the_test_created(kaos, pytester, monkeypatch):
    monkeypatch.setenv("KAOS_ADMIN_URL", f"http://{kaos.admin}")
    kept = Kaos(f"http://{kaos.admin}").add_rule("slow-broker", user="someone-else")
    pytester.makepyfile(textwrap.dedent("""
        def test_uses_the_fixture(kaos_client):
            kaos_client.add_rule("no-response", api_keys="FETCH", close_after_ms=100)
            assert any(r["feature"] == "no-response" for r in kaos_client.rules())
    """))
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)
    assert [(r["feature"], r["user"]) for r in Kaos(f"http://{kaos.admin}").rules()] == [("slow-broker", kept["user"])]
