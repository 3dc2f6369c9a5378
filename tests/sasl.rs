//! SASL through kaos against the SASL listeners of the shared Apache Kafka cluster (issue 11):
//! passed through with the user read on the way (PLAIN, SCRAM, OAUTHBEARER; SaslAuthenticate and
//! raw SaslHandshake v0 tokens; over TLS too), and managed by kaos (kaos logs in to the brokers
//! itself; clients log in to kaos against a users file).

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{KafkaCluster, Kaos, NO_RETRIES, RawKafka, path_str, producer, send_one, wait_until};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, MetadataRequest, MetadataResponse, SaslHandshakeRequest,
    SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;
use kaos::sasl::scram::{ScramClient, ScramHash};
use rdkafka::producer::Producer;

/// librdkafka settings for `user` logging in with `mechanism`, over TLS when `ca` is given.
fn login(mechanism: &str, user: &str, password: &str, ca: Option<&str>) -> Vec<(String, String)> {
    let protocol = if ca.is_some() { "sasl_ssl" } else { "sasl_plaintext" };
    let mut settings =
        vec![("security.protocol", protocol.to_owned()), ("sasl.mechanisms", mechanism.to_owned())];
    if mechanism == "OAUTHBEARER" {
        // Kafka's unsecured JWS tokens: librdkafka makes one whose `sub` is the principal.
        settings.push(("enable.sasl.oauthbearer.unsecure.jwt", "true".into()));
        settings.push(("sasl.oauthbearer.config", format!("principal={user}")));
    } else {
        settings.push(("sasl.username", user.to_owned()));
        settings.push(("sasl.password", password.to_owned()));
    }
    if let Some(ca) = ca {
        settings.push(("ssl.ca.location", ca.to_owned()));
    }
    settings.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

fn with_no_retries(settings: &[(String, String)]) -> Vec<(&str, &str)> {
    NO_RETRIES.iter().copied().chain(settings.iter().map(|(k, v)| (k.as_str(), v.as_str()))).collect()
}

const ALICE_ONLY: &str =
    r#"{"config":{"errors":["NOT_ENOUGH_REPLICAS"]},"direction":"REQUEST","apiKeys":"PRODUCE"}"#;

/// Two users produce through kaos at once; a rule for alice fails alice's records only.
fn a_rule_for_one_user_hits_only_that_user(kaos: &Kaos, mechanism: &str, ca: Option<&str>) {
    let cluster = KafkaCluster::shared();
    let topic = cluster.unique_topic(&format!("sasl-{}", mechanism.to_lowercase()));
    cluster.create_topic(&topic, 1, 3);
    let alice = login(mechanism, "alice", &cluster.sasl_password("alice"), ca);
    let bob = login(mechanism, "bob", &cluster.sasl_password("bob"), ca);
    let alice = producer(&kaos.bootstrap(), &with_no_retries(&alice));
    let bob = producer(&kaos.bootstrap(), &with_no_retries(&bob));
    assert!(send_one(&alice, &topic, b"warm-up").0, "alice produces through kaos with {mechanism}");
    assert!(send_one(&bob, &topic, b"warm-up").0, "bob produces through kaos with {mechanism}");
    kaos.add_rule_for("alice", "broken-broker", ALICE_ONLY);
    for _ in 0..5 {
        assert!(!send_one(&alice, &topic, b"a").0, "alice is in the rule's scope ({mechanism})");
        assert!(send_one(&bob, &topic, b"b").0, "bob is not ({mechanism})");
    }
    kaos.delete_rule_for("alice", "broken-broker", "PRODUCE", "REQUEST");
    assert!(send_one(&alice, &topic, b"after").0, "alice writes again once the rule is gone");
}

#[test]
fn plain_passes_through_and_rules_find_the_user() {
    let kaos = Kaos::start(KafkaCluster::shared().sasl_bootstrap(), &[]);
    a_rule_for_one_user_hits_only_that_user(&kaos, "PLAIN", None);
}

#[test]
fn scram_passes_through_and_rules_find_the_user() {
    let kaos = Kaos::start(KafkaCluster::shared().sasl_bootstrap(), &[]);
    a_rule_for_one_user_hits_only_that_user(&kaos, "SCRAM-SHA-512", None);
}

#[test]
fn oauthbearer_passes_through_and_rules_find_the_user() {
    let kaos = Kaos::start(KafkaCluster::shared().sasl_bootstrap(), &[]);
    a_rule_for_one_user_hits_only_that_user(&kaos, "OAUTHBEARER", None);
}

/// SASL_SSL on both sides: TLS from the client to kaos and from kaos to the broker, SCRAM inside.
#[test]
fn scram_over_tls_on_both_sides_passes_through() {
    let cluster = KafkaCluster::shared();
    let (kaos, certs) = cluster.kaos_with_tls_to_sasl_ssl();
    a_rule_for_one_user_hits_only_that_user(&kaos, "SCRAM-SHA-256", Some(&path_str(&certs.ca)));
}

/// A wrong password through kaos is the broker's to refuse, and it names nobody.
#[test]
fn a_refused_login_passes_the_brokers_refusal_through() {
    let cluster = KafkaCluster::shared();
    let kaos = Kaos::start(cluster.sasl_bootstrap(), &[]);
    for mechanism in ["PLAIN", "SCRAM-SHA-512"] {
        let settings = login(mechanism, "alice", "not-the-password", None);
        let client = producer(&kaos.bootstrap(), &with_no_retries(&settings));
        let outcome = client.client().fetch_metadata(None, Duration::from_secs(5));
        assert!(outcome.is_err(), "{mechanism} with a wrong password gets no metadata");
    }
    assert!(!kaos.log().contains("not-the-password"), "kaos never logs a password");
}

fn raw_frame(token: &[u8]) -> Vec<u8> {
    let mut frame = (token.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(token);
    frame
}

/// Clients older than Kafka 1.0 send SASL tokens raw after SaslHandshake v0 (Kafka 4.1 still
/// takes them): kaos relays them without mistaking them for requests, learns the user, and
/// speaks Kafka again once the exchange is over.
#[test]
fn raw_tokens_after_a_v0_handshake_pass_through() {
    let cluster = KafkaCluster::shared();
    let kaos = Kaos::start(cluster.sasl_bootstrap(), &[]);
    let topic = cluster.unique_topic("sasl-v0");
    cluster.create_topic(&topic, 1, 3);
    kaos.add_rule_for("alice", "broken-broker", ALICE_ONLY);
    for (mechanism, user) in [("SCRAM-SHA-512", "alice"), ("PLAIN", "bob"), ("PLAIN", "alice")] {
        let password = cluster.sasl_password(user);
        let mut client = RawKafka::connect(&kaos.bootstrap());
        log_in_raw(&mut client, mechanism, user, &password);
        // Kafka requests again: Metadata comes back rewritten to kaos's ports.
        let metadata: MetadataResponse =
            client.call(ApiKey::Metadata, 9, &MetadataRequest::default().with_topics(None));
        for broker in &metadata.brokers {
            assert_eq!(broker.port, i32::from(kaos.broker_port(broker.node_id.0)), "{mechanism}");
        }
        let leader = metadata
            .topics
            .iter()
            .find(|t| t.name.as_ref().is_some_and(|name| name.as_str() == topic))
            .map(|t| t.partitions[0].leader_id.0)
            .expect("the topic's leader");
        let mut client = RawKafka::connect(&format!("127.0.0.1:{}", kaos.broker_port(leader)));
        log_in_raw(&mut client, mechanism, user, &password);
        let expected = if user == "alice" { 19 } else { 0 };
        assert_eq!(
            common::produce_one(&mut client, &topic),
            expected,
            "{user} over raw {mechanism}: alice's rule"
        );
    }
}

/// SaslHandshake v0, then the raw token rounds of `mechanism`.
fn log_in_raw(client: &mut RawKafka, mechanism: &'static str, user: &str, password: &str) {
    let handshake = SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str(mechanism));
    let answer: SaslHandshakeResponse = client.call(ApiKey::SaslHandshake, 0, &handshake);
    assert_eq!(answer.error_code, 0, "{mechanism} offered: {:?}", answer.mechanisms);
    if mechanism == "PLAIN" {
        client.send_frame(&raw_frame(format!("\0{user}\0{password}").as_bytes()));
        assert_eq!(client.read_frame().expect("the broker's raw answer"), Bytes::new());
    } else {
        let mut scram = ScramClient::new(ScramHash::Sha512, user, password);
        client.send_frame(&raw_frame(&scram.client_first()));
        let server_first = client.read_frame().expect("server-first");
        client.send_frame(&raw_frame(&scram.client_final(&server_first).expect("client-final")));
        let server_final = client.read_frame().expect("server-final");
        scram.verify_server_final(&server_final).expect("the broker's signature");
    }
}

/// kaos logs in to the brokers itself (SCRAM from a password file, PLAIN from the environment):
/// clients without credentials produce and consume through it, and kaos never logs the password.
#[test]
fn kaos_logs_in_for_clients_without_credentials() {
    let cluster = KafkaCluster::shared();
    let password = common::temp_file("kaos-password", &format!("{}\n", cluster.sasl_password("kaos")));
    let scram = Kaos::start(
        cluster.sasl_bootstrap(),
        &[
            "--upstream-sasl-mechanism",
            "SCRAM-SHA-512",
            "--upstream-sasl-username",
            "kaos",
            "--upstream-sasl-password-file",
            &path_str(&password),
        ],
    );
    let plain = Kaos::start_with_env(
        cluster.sasl_bootstrap(),
        &["--upstream-sasl-mechanism", "PLAIN", "--upstream-sasl-username", "kaos"],
        &[("KAOS_UPSTREAM_SASL_PASSWORD", &cluster.sasl_password("kaos"))],
    );
    for (kaos, name) in [(&scram, "scram"), (&plain, "plain")] {
        let topic = cluster.unique_topic(&format!("managed-{name}"));
        cluster.create_topic(&topic, 3, 3);
        common::produce(&producer(&kaos.bootstrap(), &[]), &topic, &topic, 30);
        let values = common::consume(&kaos.bootstrap(), &topic, &format!("{topic}-group"), 30);
        common::assert_exactly(&values, &topic, 30);
        assert!(!kaos.log().contains(&cluster.sasl_password("kaos")), "kaos never logs its password");
    }
}

/// Wrong credentials for kaos: said once per broker, `/ready` says why, and a client gets an
/// authentication error at once instead of a hang.
#[test]
fn wrong_upstream_credentials_are_reported_not_hung() {
    let cluster = KafkaCluster::shared();
    let password = common::temp_file("wrong-password", "wrong-password\n");
    let kaos = Kaos::spawn(
        cluster.sasl_bootstrap(),
        &[
            "--upstream-sasl-mechanism",
            "SCRAM-SHA-256",
            "--upstream-sasl-username",
            "kaos",
            "--upstream-sasl-password-file",
            &path_str(&password),
        ],
    );
    wait_until("/ready to say why", Duration::from_secs(20), || {
        let (status, body) = kaos.get("/ready");
        status == 503 && body.contains("cannot log in") && body.contains("SCRAM-SHA-256")
    });
    for _ in 0..3 {
        let started = Instant::now();
        let mut client = RawKafka::connect(&kaos.bootstrap());
        let answer: ApiVersionsResponse = client.call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
        assert_eq!(answer.error_code, 58, "SASL_AUTHENTICATION_FAILED");
        assert!(client.read_frame().is_none(), "then the connection closes");
        assert!(started.elapsed() < Duration::from_secs(5), "no hang");
    }
    let log = kaos.log();
    let said: Vec<&str> =
        log.lines().filter(|line| line.contains("kaos cannot log in to the broker")).collect();
    assert!(!said.is_empty(), "the failure is logged:\n{log}");
    for broker in cluster.sasl_bootstrap().split(',') {
        let lines = said.iter().filter(|line| line.contains(&format!("broker=\"{broker}\""))).count();
        assert!(lines <= 1, "said once per broker, {broker} {lines} times:\n{log}");
    }
    assert!(!log.contains("wrong-password"), "kaos never logs a password");
}

#[test]
fn the_password_is_never_a_flag_and_must_come_from_somewhere() {
    let (status, output) = common::kaos_refusing_to_start(&[
        "--upstream-sasl-mechanism",
        "PLAIN",
        "--upstream-sasl-username",
        "kaos",
    ]);
    assert!(!status.success());
    assert!(output.contains("KAOS_UPSTREAM_SASL_PASSWORD"), "{output}");
    let (status, output) = common::kaos_refusing_to_start(&["--upstream-sasl-password", "secret"]);
    assert!(!status.success() && output.contains("unexpected argument"), "{output}");
}

/// Lines of a `--client-users` file for `user`, made the documented way.
fn hash_password(user: &str, password: &str) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kaos"))
        .args(["hash-password", user])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("kaos hash-password runs");
    child.stdin.take().expect("piped").write_all(format!("{password}\n").as_bytes()).unwrap();
    let output = child.wait_with_output().expect("kaos hash-password ends");
    assert!(output.status.success());
    let lines = String::from_utf8(output.stdout).expect("text");
    assert!(!lines.contains(password), "the file holds no password");
    lines
}

/// Clients log in to kaos (PLAIN and SCRAM against `--client-users`), kaos logs in to the
/// brokers as itself; the clients' names scope rules; a wrong password or none gets nowhere.
#[test]
fn clients_log_in_to_kaos_and_their_names_scope_rules() {
    let cluster = KafkaCluster::shared();
    let users = format!(
        "# made by kaos hash-password\n{}{}",
        hash_password("alice", "a-pw"),
        hash_password("bob", "b-pw")
    );
    let users = common::temp_file("client-users", &users);
    let kaos = Kaos::start_with_env(
        cluster.sasl_bootstrap(),
        &[
            "--client-users",
            &path_str(&users),
            "--upstream-sasl-mechanism",
            "PLAIN",
            "--upstream-sasl-username",
            "kaos",
        ],
        &[("KAOS_UPSTREAM_SASL_PASSWORD", &cluster.sasl_password("kaos"))],
    );
    let topic = cluster.unique_topic("client-users");
    cluster.create_topic(&topic, 1, 3);
    let alice = producer(&kaos.bootstrap(), &with_no_retries(&login("PLAIN", "alice", "a-pw", None)));
    let bob = producer(&kaos.bootstrap(), &with_no_retries(&login("SCRAM-SHA-256", "bob", "b-pw", None)));
    assert!(send_one(&alice, &topic, b"warm-up").0, "alice logs in to kaos with PLAIN");
    assert!(send_one(&bob, &topic, b"warm-up").0, "bob logs in to kaos with SCRAM-SHA-256");
    kaos.add_rule_for("alice", "broken-broker", ALICE_ONLY);
    for _ in 0..3 {
        assert!(!send_one(&alice, &topic, b"a").0, "alice is in the rule's scope");
        assert!(send_one(&bob, &topic, b"b").0, "bob is not");
    }

    for settings in
        [login("SCRAM-SHA-512", "bob", "wrong", None), login("PLAIN", "eve", "b-pw", None), Vec::new()]
    {
        let client = producer(&kaos.bootstrap(), &with_no_retries(&settings));
        let outcome = client.client().fetch_metadata(None, Duration::from_secs(3));
        assert!(outcome.is_err(), "{settings:?} gets no metadata");
    }
    assert!(kaos.metric("kaos_client_login_failures_total", "") >= 2.0);
    assert!(kaos.log().contains("before the client logged in"), "the client without credentials is closed");
}
