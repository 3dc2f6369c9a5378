"""Certificates as Kafka's clients accept them (issue 22 §3): a broker whose certificate comes from
`openssl req -x509` (self-signed, marked CA:TRUE), trusted as it is. librdkafka (confluent-kafka)
and the Java client (Kafka's own tools) reach it directly, and so does kaos
(`--upstream-tls --upstream-ca cert.pem`), with both clients through it. A client's self-signed
certificate under `--tls-client-ca` is accepted the same way; one nobody trusts is not.

The broker is a one-node Apache Kafka of its own (tests/kafka/cluster.py, `--tls-dir`), so that
the shared cluster keeps its CA-signed certificates."""

import os
import shutil
import subprocess
import time
import uuid

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import Kaos, free_port, http_status, kafka_harness, produce_and_consume, wait_until


def openssl(directory, *args):
    result = subprocess.run(["openssl", *args], cwd=directory, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def self_signed(directory, name, common_name):
    """`openssl req -x509` as a staging cluster's admin runs it: NAME.pem and NAME.key (PKCS#8)."""
    openssl(directory, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={common_name}",
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", f"{name}.key", "-out", f"{name}.pem")
    text = subprocess.run(["openssl", "x509", "-noout", "-text", "-in", f"{name}.pem"], cwd=directory,
                          capture_output=True, text=True, check=True).stdout
    assert "CA:TRUE" in text, "openssl req -x509 marks the certificate CA:TRUE, the case webpki refuses"
    return os.path.join(directory, f"{name}.pem"), os.path.join(directory, f"{name}.key")


@pytest.fixture(scope="module")
def self_signed_broker(tmp_path_factory):
    """A one-node Kafka whose TLS listener presents a self-signed certificate."""
    certs = tmp_path_factory.mktemp("self-signed")
    cert, key = self_signed(certs, "server", "localhost")
    shutil.copy(cert, certs / "ca.pem")
    directory = tmp_path_factory.mktemp("self-signed-kafka") / "cluster"
    cluster = kafka_harness.Cluster.create(str(directory), 1, kafka_harness.default_libs(), tls=True,
                                           tls_dir=str(certs))
    try:
        cluster.format()
        cluster.start(120)
        yield cluster, cert
    finally:
        cluster.stop(15)


def java_tool_lists_topics(cluster, bootstrap, properties=None):
    args = ["--bootstrap-server", bootstrap, "--list", *(["--command-config", properties] if properties else [])]
    return cluster.tool("kafka-topics", args, capture=True)


def test_clients_and_kaos_accept_a_self_signed_broker_certificate(self_signed_broker, tmp_path):
    cluster, cert = self_signed_broker
    tls = {"security.protocol": "ssl", "ssl.ca.location": cert}
    # Directly: librdkafka and the Java client accept it.
    direct = AdminClient({"bootstrap.servers": cluster.tls_bootstrap, **tls})
    topic = f"self-signed-{uuid.uuid4().hex}"
    direct.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(30)
    listed = java_tool_lists_topics(cluster, cluster.tls_bootstrap, cluster.info["tls"]["client_properties"])
    assert listed.returncode == 0 and topic in listed.stdout, listed.stderr

    # Through kaos, which trusts the same file.
    with Kaos(cluster.tls_bootstrap, cluster.node_ids, ["--upstream-tls", "--upstream-ca", cert]) as kaos:
        assert produce_and_consume(kaos.bootstrap, topic, 20) == sorted(f"v-{i}" for i in range(20))
        listed = java_tool_lists_topics(cluster, kaos.bootstrap)
        assert listed.returncode == 0 and topic in listed.stdout, listed.stderr
        assert "TLS handshake with the broker failed" not in kaos.process.output()


def test_a_self_signed_broker_certificate_nobody_trusts_is_refused(self_signed_broker, tmp_path):
    cluster, _ = self_signed_broker
    stranger, _ = self_signed(tmp_path, "stranger", "localhost")
    admin = f"127.0.0.1:{free_port()}"
    process = subprocess.Popen(
        [os.environ["KAOS_BIN"], "--bootstrap-servers", cluster.tls_bootstrap, "--upstream-tls",
         "--upstream-ca", stranger, "--port-start", str(free_port()), "--admin-addr", admin],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_until("kaos's admin API", lambda: http_status(f"http://{admin}/ready") != 0)
        time.sleep(3)
        assert http_status(f"http://{admin}/ready") == 503, "a certificate the file does not hold is refused"
    finally:
        process.terminate()
        process.wait(timeout=15)


def test_kaos_accepts_a_self_signed_client_certificate_it_trusts(self_signed_broker, tmp_path):
    cluster, broker_cert = self_signed_broker
    kaos_cert, kaos_key = self_signed(tmp_path, "kaos", "localhost")
    client_cert, client_key = self_signed(tmp_path, "client", "client")
    stranger_cert, stranger_key = self_signed(tmp_path, "stranger", "stranger")
    extra = ["--upstream-tls", "--upstream-ca", broker_cert, "--tls-cert", kaos_cert, "--tls-key", kaos_key,
             "--tls-client-ca", client_cert]
    with Kaos(cluster.tls_bootstrap, cluster.node_ids, extra) as kaos:
        mutual = {"security.protocol": "ssl", "ssl.ca.location": kaos_cert,
                  "ssl.certificate.location": client_cert, "ssl.key.location": client_key}
        topic = f"self-signed-client-{uuid.uuid4().hex}"
        admin = AdminClient({"bootstrap.servers": kaos.bootstrap, **mutual})
        admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(30)
        assert produce_and_consume(kaos.bootstrap, topic, 20, mutual) == sorted(f"v-{i}" for i in range(20))

        # The Java client with the same certificate: a PEM keystore holds its key, then itself.
        keystore = tmp_path / "client-keystore.pem"
        keystore.write_text(open(client_key).read() + open(client_cert).read())
        properties = tmp_path / "client.properties"
        properties.write_text(f"security.protocol=SSL\nssl.truststore.type=PEM\nssl.truststore.location={kaos_cert}\n"
                              f"ssl.keystore.type=PEM\nssl.keystore.location={keystore}\n")
        listed = java_tool_lists_topics(cluster, kaos.bootstrap, str(properties))
        assert listed.returncode == 0 and topic in listed.stdout, listed.stderr

        stranger = {**mutual, "ssl.certificate.location": stranger_cert, "ssl.key.location": stranger_key}
        with pytest.raises(KafkaException):
            AdminClient({"bootstrap.servers": kaos.bootstrap, **stranger}).list_topics(timeout=5)
