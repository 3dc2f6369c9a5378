//! kaos in front of the TLS-only listeners of the shared Apache Kafka cluster (issue 10 §3):
//! Kafka serves TLS from PEM stores (tests/kafka/cluster.py), kaos dials it with `--upstream-tls`,
//! and the Java client (the console producer and consumer, security.protocol=SSL) talks TLS to
//! kaos; a kaos that trusts another CA refuses the cluster.

mod common;

use std::time::{Duration, Instant};

use common::{Certs, KafkaCluster, Kaos, path_str};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

const RECORDS: usize = 20;

/// The broker addresses a librdkafka client with `settings` learns from `bootstrap`, sorted.
fn brokers(bootstrap: &str, settings: &[(&str, &str)], timeout: Duration) -> Result<Vec<String>, String> {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap);
    for (key, value) in settings {
        config.set(*key, *value);
    }
    let client: BaseConsumer = config.create().expect("a client (rdkafka with its `ssl` feature)");
    let metadata = client.fetch_metadata(None, timeout).map_err(|e| e.to_string())?;
    let mut brokers: Vec<String> =
        metadata.brokers().iter().map(|b| format!("{}:{}", b.host(), b.port())).collect();
    brokers.sort();
    Ok(brokers)
}

/// Java client properties for TLS to kaos, trusting `ca` (PEM); the client verifies the host it
/// dials (127.0.0.1) against kaos's certificate.
fn java_ssl(ca: &str) -> Vec<String> {
    vec![
        "security.protocol=SSL".into(),
        "ssl.truststore.type=PEM".into(),
        format!("ssl.truststore.location={ca}"),
    ]
}

/// `flag` (`--producer-property`, `--consumer-property`) before each property.
fn flags(flag: &str, properties: &[String]) -> Vec<String> {
    properties.iter().flat_map(|property| [flag.to_owned(), property.clone()]).collect()
}

fn text(output: &std::process::Output) -> String {
    format!(
        "{}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn java_console_clients_over_tls_through_kaos_to_the_tls_listeners() {
    let cluster = KafkaCluster::shared();
    let tls = cluster.tls();
    let certs = Certs::generate(); // kaos's own certificate, from a CA other than the cluster's
    let (cert, key, kaos_ca) =
        (path_str(&certs.server_cert), path_str(&certs.server_key), path_str(&certs.ca));
    let kaos = Kaos::start(
        &tls.bootstrap,
        &["--tls-cert", &cert, "--tls-key", &key, "--upstream-tls", "--upstream-ca", &path_str(&tls.ca)],
    );

    // Metadata through kaos lists kaos's ports only, one per node.
    let mut expected: Vec<String> =
        cluster.node_ids().iter().map(|id| format!("127.0.0.1:{}", kaos.broker_port(*id))).collect();
    expected.sort();
    let ssl = [("security.protocol", "ssl"), ("ssl.ca.location", kaos_ca.as_str())];
    assert_eq!(brokers(&kaos.bootstrap(), &ssl, Duration::from_secs(10)), Ok(expected));

    java_console_round_trip(cluster, &kaos, "java-tls", &java_ssl(&kaos_ca));

    // Every broker connection kaos made was TLS, to the TLS listeners (no handshake failed).
    assert!(!kaos.log().contains("TLS handshake with the broker failed"), "{}", kaos.log());
}

/// SASL_SSL on both sides with the Java client: SCRAM-SHA-512 passes through kaos's TLS to the
/// cluster's SASL_SSL listeners (issue 11).
#[test]
fn java_console_clients_with_scram_over_sasl_ssl_through_kaos() {
    let cluster = KafkaCluster::shared();
    let (kaos, certs) = cluster.kaos_with_tls_to_sasl_ssl();
    let mut properties = java_ssl(&path_str(&certs.ca));
    properties[0] = "security.protocol=SASL_SSL".into();
    properties.push("sasl.mechanism=SCRAM-SHA-512".into());
    properties.push(format!(
        "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username=\"alice\" password=\"{}\";",
        cluster.sasl_password("alice")
    ));
    java_console_round_trip(cluster, &kaos, "java-sasl-ssl", &properties);
}

/// The console producer writes RECORDS records through kaos and the console consumer reads them
/// back, both with `properties`.
fn java_console_round_trip(cluster: &KafkaCluster, kaos: &Kaos, name: &str, properties: &[String]) {
    let topic = cluster.unique_topic(name);
    cluster.create_topic(&topic, 3, 3);
    let input: String = (0..RECORDS).map(|i| format!("{topic}-{i}\n")).collect();
    let mut args =
        vec!["--bootstrap-server".to_owned(), kaos.bootstrap(), "--topic".to_owned(), topic.clone()];
    args.extend(flags("--producer-property", properties));
    // Bounded: a producer that cannot reach kaos gives up instead of waiting for minutes.
    for property in
        ["acks=all", "max.block.ms=30000", "delivery.timeout.ms=45000", "request.timeout.ms=15000"]
    {
        args.extend(["--producer-property".to_owned(), property.to_owned()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let begin = Instant::now();
    let produced = cluster.tool_with_input("kafka-console-producer", &args, &input, Duration::from_secs(90));
    assert!(produced.status.success(), "console producer: {}", text(&produced));
    let produce_time = begin.elapsed();

    let group = cluster.unique_topic(&format!("{name}-group"));
    let mut args =
        vec!["--bootstrap-server".to_owned(), kaos.bootstrap(), "--topic".to_owned(), topic.clone()];
    args.extend(
        ["--group", &group, "--from-beginning", "--max-messages", "20", "--timeout-ms", "45000"]
            .map(String::from),
    );
    args.extend(flags("--consumer-property", properties));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let begin = Instant::now();
    let consumed = cluster.tool_with_input("kafka-console-consumer", &args, "", Duration::from_secs(90));
    assert!(consumed.status.success(), "console consumer: {}", text(&consumed));
    let mut values: Vec<String> =
        String::from_utf8_lossy(&consumed.stdout).lines().map(str::to_owned).collect();
    values.sort();
    let mut sent: Vec<String> = (0..RECORDS).map(|i| format!("{topic}-{i}")).collect();
    sent.sort();
    assert_eq!(values, sent, "console consumer: {}", text(&consumed));
    eprintln!("console producer {produce_time:?}, console consumer {:?}", begin.elapsed());
}

#[test]
fn a_kaos_that_trusts_another_ca_refuses_the_tls_listeners() {
    let cluster = KafkaCluster::shared();
    let tls = cluster.tls();
    let certs = Certs::generate(); // a CA that never signed the cluster's certificate
    let kaos = Kaos::spawn(&tls.bootstrap, &["--upstream-tls", "--upstream-ca", &path_str(&certs.ca)]);

    let line = kaos.wait_for_log_line(
        "naming the broker's certificate as issued by an unknown CA",
        Duration::from_secs(15),
        |line| line.contains("UnknownIssuer") || line.to_lowercase().contains("unknown issuer"),
    );
    assert!(line.contains("WARN") && line.contains("certificate"), "{line}");
    // Never ready, for a few Metadata rounds (kaos asks every second).
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        assert_ne!(kaos.get("/ready").0, 200, "ready behind a cluster it cannot verify:\n{}", kaos.log());
        std::thread::sleep(Duration::from_millis(200));
    }
    // A client gets no broker list through it.
    let refused = brokers(&kaos.bootstrap(), &[], Duration::from_secs(3));
    assert!(refused.as_ref().map_or(true, |listed| listed.is_empty()), "{refused:?}");
}
