"""kafka-python through kaos to the SASL listeners of the shared Apache Kafka cluster (issue 11):
its SASL passes through kaos, which reads the user on the way. With `api_version=(0, 11)`
kafka-python sends SaslHandshake v0 and raw tokens, as clients older than Kafka 1.0 do; by
default SaslHandshake v1 and SaslAuthenticate. Either way a rule for alice fails alice's writes
and not bob's, while both produce."""

import uuid

import pytest
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import KafkaProducer
from kafka.errors import NotEnoughReplicasError

from conftest import Kaos

NOT_ENOUGH_REPLICAS = {"errors": ["NOT_ENOUGH_REPLICAS"]}


@pytest.fixture
def sasl_kaos(kafka_cluster):
    """A kaos in front of the cluster's SASL_PLAINTEXT listeners, passing SASL through."""
    with Kaos(kafka_cluster.sasl_bootstrap, kafka_cluster.node_ids) as proxy:
        yield proxy


def producer(kaos, cluster, mechanism, user, api_version):
    settings = {"api_version": api_version} if api_version else {}
    return KafkaProducer(bootstrap_servers=kaos.bootstrap, security_protocol="SASL_PLAINTEXT",
                         sasl_mechanism=mechanism, sasl_plain_username=user,
                         sasl_plain_password=cluster.sasl_users[user], acks="all", retries=0,
                         request_timeout_ms=10000, **settings)


@pytest.mark.parametrize("api_version", [None, (0, 11)], ids=["sasl-authenticate", "raw-v0"])
@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-512"])
def test_a_rule_for_alice_fails_alice_not_bob(kafka_cluster, sasl_kaos, mechanism, api_version):
    topic = f"py-sasl-{uuid.uuid4().hex}"
    admin = AdminClient({"bootstrap.servers": kafka_cluster.bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=3)])[topic].result(30)
    alice = producer(sasl_kaos, kafka_cluster, mechanism, "alice", api_version)
    bob = producer(sasl_kaos, kafka_cluster, mechanism, "bob", api_version)
    try:
        alice.send(topic, b"warm-up").get(timeout=30)
        bob.send(topic, b"warm-up").get(timeout=30)
        sasl_kaos.add_rule("broken-broker", NOT_ENOUGH_REPLICAS, user="alice")
        for _ in range(3):
            pending = alice.send(topic, b"a"), bob.send(topic, b"b")
            with pytest.raises(NotEnoughReplicasError):
                pending[0].get(timeout=30)
            pending[1].get(timeout=30)
        sasl_kaos.delete_rule("broken-broker", user="alice")
        alice.send(topic, b"after").get(timeout=30)
    finally:
        alice.close(timeout=5)
        bob.close(timeout=5)
