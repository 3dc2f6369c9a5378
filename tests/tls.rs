//! TLS on either side of kaos (issue 10 §3) with real clients: librdkafka (`rdkafka`, built with
//! its `ssl` feature) towards kaos, and tansu behind Debian's stunnel4 where the broker must speak
//! TLS. Every certificate is made by the test with the openssl CLI (`common::Certs`).

mod common;

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{
    Certs, Kaos, Signer, Stunnel, TANSU_NODE_ID, Tansu, assert_exactly, consume_with, create_topic_with,
    free_port, path_str, produce, producer, wait_until,
};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::Producer;

const RECORDS: usize = 100;

/// librdkafka settings for TLS to kaos, trusting `ca` (it verifies the host it dials, 127.0.0.1).
fn ssl(ca: &str) -> [(&'static str, &str); 2] {
    [("security.protocol", "ssl"), ("ssl.ca.location", ca)]
}

/// The brokers a client with `settings` learns from kaos's bootstrap port, as `host:port`.
fn brokers(bootstrap: &str, settings: &[(&str, &str)], timeout: Duration) -> Result<Vec<String>, String> {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap);
    for (key, value) in settings {
        config.set(*key, *value);
    }
    // A client that cannot be made is a broken test, never the refusal a test looks for.
    let consumer: BaseConsumer = config.create().unwrap_or_else(|e| {
        panic!("client {settings:?}: {e} (TLS needs rdkafka's `ssl` feature, a dev-dependency in Cargo.toml)")
    });
    let metadata = consumer.fetch_metadata(None, timeout).map_err(|e| e.to_string())?;
    Ok(metadata.brokers().iter().map(|b| format!("{}:{}", b.host(), b.port())).collect())
}

/// Creates `topic` (2 partitions) through kaos, produces 100 records and reads them back in a
/// group, every client with `settings`.
fn round_trip(kaos: &Kaos, settings: &[(&str, &str)], topic: &str) {
    create_topic_with(&kaos.bootstrap(), settings, topic, 2);
    let producer = producer(&kaos.bootstrap(), &[settings, &[("message.timeout.ms", "30000")]].concat());
    produce(&producer, topic, topic, RECORDS);
    let deliveries = producer.context();
    assert_eq!(deliveries.failed.load(Ordering::Relaxed), 0, "{:?}", deliveries.errors.lock().unwrap());
    assert_eq!(deliveries.ok.load(Ordering::Relaxed), RECORDS as u64);
    let values = consume_with(
        &kaos.bootstrap(),
        settings,
        topic,
        &format!("{topic}-readers"),
        RECORDS,
        Duration::from_secs(30),
    );
    assert_exactly(&values, topic, RECORDS);
}

/// tansu behind stunnel: TLS with `cert` on a port of its own, which tansu advertises as
/// `localhost:PORT`. Returns them and that bootstrap address (kaos verifies the name localhost).
fn tls_tansu(cert: &Path, key: &Path) -> (Tansu, Stunnel, String) {
    let port = free_port();
    let tansu = Tansu::start_advertising(&format!("tcp://localhost:{port}"));
    let stunnel = Stunnel::start(port, tansu.port, cert, key);
    (tansu, stunnel, format!("localhost:{port}"))
}

/// A kaos log line about a TLS handshake with a client (its peer address in it) for one of `reasons`.
fn client_handshake_failure(kaos: &Kaos, reasons: &[&str]) -> String {
    kaos.wait_for_log_line(
        "naming a failed client handshake, its peer and reason",
        Duration::from_secs(10),
        |line| {
            let lower = line.to_lowercase();
            lower.contains("handshake")
                && line.contains("127.0.0.1:")
                && reasons.iter().any(|reason| lower.contains(&reason.to_lowercase()))
        },
    )
}

#[test]
fn tls_clients_produce_and_consume_through_kaos_to_a_plaintext_broker() {
    let certs = Certs::generate();
    let tansu = Tansu::start();
    let (cert, key, ca) = (path_str(&certs.server_cert), path_str(&certs.server_key), path_str(&certs.ca));
    let kaos = Kaos::start(&tansu.address(), &["--tls-cert", &cert, "--tls-key", &key]);

    let kaos_broker = format!("127.0.0.1:{}", kaos.broker_port(TANSU_NODE_ID));
    assert_eq!(brokers(&kaos.bootstrap(), &ssl(&ca), Duration::from_secs(10)), Ok(vec![kaos_broker.clone()]));
    // The broker port speaks TLS too.
    assert_eq!(brokers(&kaos_broker, &ssl(&ca), Duration::from_secs(10)), Ok(vec![kaos_broker]));
    round_trip(&kaos, &ssl(&ca), "tls-clients");
}

#[test]
fn plaintext_clients_through_kaos_to_a_tls_broker() {
    let certs = Certs::generate();
    let (_tansu, stunnel, bootstrap) = tls_tansu(&certs.server_cert, &certs.server_key);
    let ca = path_str(&certs.ca);
    let kaos = Kaos::start(&bootstrap, &["--upstream-tls", "--upstream-ca", &ca]);

    round_trip(&kaos, &[], "tls-upstream");
    assert!(stunnel.log().contains("accepted"), "kaos never went through stunnel:\n{}", stunnel.log());
}

#[test]
fn tls_on_both_sides() {
    let certs = Certs::generate();
    let (_tansu, _stunnel, bootstrap) = tls_tansu(&certs.server_cert, &certs.server_key);
    let (cert, key, ca) = (path_str(&certs.server_cert), path_str(&certs.server_key), path_str(&certs.ca));
    let kaos = Kaos::start(
        &bootstrap,
        &["--tls-cert", &cert, "--tls-key", &key, "--upstream-tls", "--upstream-ca", &ca],
    );

    let kaos_broker = format!("127.0.0.1:{}", kaos.broker_port(TANSU_NODE_ID));
    assert_eq!(brokers(&kaos.bootstrap(), &ssl(&ca), Duration::from_secs(10)), Ok(vec![kaos_broker]));
    round_trip(&kaos, &ssl(&ca), "tls-both");
}

#[test]
fn a_client_that_does_not_trust_kaos_certificate_is_refused_and_kaos_logs_it() {
    let certs = Certs::generate();
    let tansu = Tansu::start();
    let (cert, key) = (path_str(&certs.server_cert), path_str(&certs.server_key));
    let kaos = Kaos::start(&tansu.address(), &["--tls-cert", &cert, "--tls-key", &key]);

    let wrong_ca = path_str(&certs.wrong_ca);
    let refused = brokers(&kaos.bootstrap(), &ssl(&wrong_ca), Duration::from_secs(5));
    assert!(refused.is_err(), "a client trusting another CA got metadata: {refused:?}");
    // The client rejects kaos's certificate and says so with an alert, which kaos logs.
    client_handshake_failure(&kaos, &["UnknownCA", "unknown ca", "BadCertificate", "bad certificate"]);

    // A plaintext client on a TLS port gets nothing either.
    assert!(brokers(&kaos.bootstrap(), &[], Duration::from_secs(3)).is_err());
    // A client that trusts the right CA still works.
    assert!(brokers(&kaos.bootstrap(), &ssl(&path_str(&certs.ca)), Duration::from_secs(10)).is_ok());
}

#[test]
fn mutual_tls_takes_clients_with_a_certificate_and_refuses_the_others() {
    let certs = Certs::generate();
    let tansu = Tansu::start();
    let (cert, key, ca) = (path_str(&certs.server_cert), path_str(&certs.server_key), path_str(&certs.ca));
    let kaos =
        Kaos::start(&tansu.address(), &["--tls-cert", &cert, "--tls-key", &key, "--tls-client-ca", &ca]);

    let (client_cert, client_key) = (path_str(&certs.client_cert), path_str(&certs.client_key));
    let with_certificate = [
        ("security.protocol", "ssl"),
        ("ssl.ca.location", &ca),
        ("ssl.certificate.location", &client_cert),
        ("ssl.key.location", &client_key),
    ];
    round_trip(&kaos, &with_certificate, "mtls");

    let refused = brokers(&kaos.bootstrap(), &ssl(&ca), Duration::from_secs(5));
    assert!(refused.is_err(), "a client without a certificate got metadata: {refused:?}");
    client_handshake_failure(&kaos, &["no certificate", "NoCertificatesPresented", "CertificateRequired"]);
}

#[test]
fn a_broker_whose_certificate_does_not_match_its_name_is_refused() {
    let certs = Certs::generate();
    let (_tansu, _stunnel, bootstrap) = tls_tansu(&certs.wrong_name_cert, &certs.wrong_name_key);
    let ca = path_str(&certs.ca);
    let kaos = Kaos::spawn(&bootstrap, &["--upstream-tls", "--upstream-ca", &ca]);

    kaos.wait_for_log_line(
        "naming the broker's certificate as not valid for its name",
        Duration::from_secs(10),
        |line| {
            line.contains("wrong.example")
                || line.contains("NotValidForName")
                || line.contains("not valid for name")
        },
    );
    let producer = producer(&kaos.bootstrap(), &[("message.timeout.ms", "3000")]);
    produce(&producer, "refused", "refused", 1);
    assert_eq!(
        producer.context().ok.load(Ordering::Relaxed),
        0,
        "a record went through an unverified broker"
    );
    assert_ne!(kaos.get("/ready").0, 200, "ready behind a broker it cannot verify");
}

#[test]
fn upstream_tls_insecure_accepts_any_broker_certificate_and_warns() {
    let certs = Certs::generate();
    let (_tansu, _stunnel, bootstrap) = tls_tansu(&certs.wrong_name_cert, &certs.wrong_name_key);
    let kaos = Kaos::start(&bootstrap, &["--upstream-tls", "--upstream-tls-insecure"]);

    kaos.wait_for_log_line("warning about --upstream-tls-insecure", Duration::from_secs(5), |line| {
        line.contains("WARN") && line.to_lowercase().contains("insecure")
    });
    round_trip(&kaos, &[], "insecure");
}

#[test]
fn kaos_presents_its_certificate_to_a_broker_that_requires_one() {
    let certs = Certs::generate();
    let port = free_port();
    let tansu = Tansu::start_advertising(&format!("tcp://localhost:{port}"));
    let _stunnel =
        Stunnel::start_verifying(port, tansu.port, &certs.server_cert, &certs.server_key, &certs.ca);
    let (ca, cert, key) = (path_str(&certs.ca), path_str(&certs.client_cert), path_str(&certs.client_key));
    let kaos = Kaos::start(
        &format!("localhost:{port}"),
        &["--upstream-tls", "--upstream-ca", &ca, "--upstream-cert", &cert, "--upstream-key", &key],
    );
    round_trip(&kaos, &[], "upstream-mtls");
}

#[test]
fn a_missing_certificate_file_stops_start_up_naming_its_path() {
    let certs = Certs::generate();
    let (cert, key) = (path_str(&certs.server_cert), path_str(&certs.server_key));
    let missing = "/nonexistent/kaos-test/missing.pem";
    let cases: [&[&str]; 5] = [
        &["--tls-cert", missing, "--tls-key", &key],
        &["--tls-cert", &cert, "--tls-key", missing],
        &["--tls-cert", &cert, "--tls-key", &key, "--tls-client-ca", missing],
        &["--upstream-tls", "--upstream-ca", missing],
        &["--upstream-tls", "--upstream-cert", missing, "--upstream-key", &key],
    ];
    for args in cases {
        let (status, output) = common::kaos_refusing_to_start(args);
        assert!(!status.success(), "kaos {args:?}: {status}");
        assert!(output.contains(missing), "kaos {args:?} does not name {missing}:\n{output}");
    }
}

/// Copies the certificate and key kaos serves from into `live.pem` and `live.key`.
fn live_files(certs: &Certs, cert: &Path, key: &Path) -> (String, String) {
    let (live_cert, live_key) = (certs.dir.join("live.pem"), certs.dir.join("live.key"));
    replace(cert, &live_cert);
    replace(key, &live_key);
    (path_str(&live_cert), path_str(&live_key))
}

/// Replaces `to` with a copy of `from` in one rename, as a deployment tool would.
fn replace(from: &Path, to: &Path) {
    let temporary = to.with_extension("new");
    std::fs::copy(from, &temporary).unwrap();
    std::fs::rename(&temporary, to).unwrap();
}

#[test]
fn sighup_reloads_the_certificate_and_keeps_open_connections() {
    let certs = Certs::generate();
    let tansu = Tansu::start();
    let (live_cert, live_key) = live_files(&certs, &certs.server_cert, &certs.server_key);
    let kaos = Kaos::start(&tansu.address(), &["--tls-cert", &live_cert, "--tls-key", &live_key]);
    // kaos opens the broker port just after it is ready (it learns the broker first).
    let kaos_broker = format!("127.0.0.1:{}", kaos.broker_port(TANSU_NODE_ID));
    let old_serial = Certs::serial(&certs.server_cert);
    wait_until("kaos to serve its certificate on the broker port", Duration::from_secs(10), || {
        Certs::served_serial(&kaos_broker).as_ref() == Some(&old_serial)
    });

    let ca = path_str(&certs.ca);
    create_topic_with(&kaos.bootstrap(), &ssl(&ca), "reloaded", 1);
    // Trusts only the first CA: after the reload it could not connect again, so its records
    // after the reload prove that its connections stayed open.
    let old_client =
        producer(&kaos.bootstrap(), &[&ssl(&ca)[..], &[("message.timeout.ms", "10000")]].concat());
    produce(&old_client, "reloaded", "before", 10);

    // The new certificate comes from the other CA, so only a client trusting that CA takes it.
    let (new_cert, new_key) = certs.server("next", "DNS:localhost,IP:127.0.0.1", Signer::WrongCa);
    replace(&new_cert, Path::new(&live_cert));
    replace(&new_key, Path::new(&live_key));
    kaos.signal("HUP");
    let new_serial = Certs::serial(&new_cert);
    wait_until("kaos to serve the new certificate", Duration::from_secs(10), || {
        Certs::served_serial(&kaos_broker).as_ref() == Some(&new_serial)
    });
    assert_eq!(Certs::served_serial(&kaos.bootstrap()), Some(new_serial));

    produce(&old_client, "reloaded", "after", 10);
    let deliveries = old_client.context();
    assert_eq!(deliveries.failed.load(Ordering::Relaxed), 0, "{:?}", deliveries.errors.lock().unwrap());
    assert_eq!(deliveries.ok.load(Ordering::Relaxed), 20);

    let new_ca = path_str(&certs.wrong_ca);
    let mut values = consume_with(
        &kaos.bootstrap(),
        &ssl(&new_ca),
        "reloaded",
        "after-reload",
        20,
        Duration::from_secs(30),
    );
    values.sort();
    let mut expected: Vec<String> =
        (0..10).flat_map(|i| [format!("before-{i}"), format!("after-{i}")]).collect();
    expected.sort();
    assert_eq!(values, expected);
    assert!(
        brokers(&kaos.bootstrap(), &ssl(&ca), Duration::from_secs(3)).is_err(),
        "the old certificate is still served"
    );
}

#[test]
fn sighup_with_an_unreadable_key_keeps_the_certificate_in_use() {
    let certs = Certs::generate();
    let tansu = Tansu::start();
    let (live_cert, live_key) = live_files(&certs, &certs.server_cert, &certs.server_key);
    let kaos = Kaos::start(&tansu.address(), &["--tls-cert", &live_cert, "--tls-key", &live_key]);
    let old_serial = Certs::serial(&certs.server_cert);

    std::fs::write(&live_key, "not a key\n").unwrap();
    kaos.signal("HUP");
    kaos.wait_for_log_line("naming the key it could not reload", Duration::from_secs(10), |line| {
        line.contains(&live_key)
    });
    assert_eq!(kaos.get("/health").0, 200, "kaos died on a bad reload:\n{}", kaos.log());
    assert_eq!(Certs::served_serial(&kaos.bootstrap()), Some(old_serial));
    let kaos_broker = format!("127.0.0.1:{}", kaos.broker_port(TANSU_NODE_ID));
    let ca = path_str(&certs.ca);
    assert_eq!(brokers(&kaos.bootstrap(), &ssl(&ca), Duration::from_secs(10)), Ok(vec![kaos_broker]));
}
