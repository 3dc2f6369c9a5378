//! `--rules-topic` (issue 13, part 4): several kaos instances share one rule set kept in a topic
//! of the cluster they sit in front of. Against tansu and against the real 3-node Apache Kafka
//! cluster of `make test` (which really compacts the topic):
//!
//! - a rule posted on one instance is in force on the other within 2 s; a delete likewise;
//! - an instance started later starts with the current rules, also after compaction;
//! - a ttl removal is written to the topic as a tombstone and leaves every instance;
//! - with the cluster gone, an instance keeps its rules, says so on `/ready`, refuses changes
//!   with a 503, and catches up when the cluster is back.

mod common;

use std::time::{Duration, Instant};

use common::{
    KafkaCluster, Kaos, RawKafka, TANSU_NODE_ID, Tansu, create_topic, http, path_str, produce_one, wait_until,
};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::{ClientConfig, Message};
use serde_json::Value;

const RULE_PATH: &str = "/tenant/1-1/user/test@conduktor.io/feature/broken-broker";
const RULE_DELETE: &str =
    "/tenant/1-1/user/test@conduktor.io/feature/broken-broker/apiKeys/PRODUCE/direction/REQUEST";
const NOT_ENOUGH_REPLICAS: i16 = 19;
/// How soon a change made on one instance must be in force on another.
const PROPAGATION: Duration = Duration::from_secs(2);

fn broken_produce(extra: &str) -> String {
    format!(r#"{{"config":{{"errors":["NOT_ENOUGH_REPLICAS"]{extra}}},"apiKeys":"PRODUCE"}}"#)
}

fn start(bootstrap: &str, topic: &str) -> Kaos {
    Kaos::start(bootstrap, &["--rules-topic", topic, "--shards", "1"])
}

fn rules(kaos: &Kaos) -> Vec<Value> {
    let (status, body) = kaos.get("/rules");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str::<Value>(&body).unwrap().as_array().unwrap().clone()
}

/// Waits until `kaos` lists `count` rules, at most `PROPAGATION`; answers how long it took.
fn until_rules(kaos: &Kaos, count: usize, what: &str) -> Duration {
    let started = Instant::now();
    wait_until(what, PROPAGATION, || rules(kaos).len() == count);
    started.elapsed()
}

fn call(kaos: &Kaos, method: &str, path: &str, body: &str) -> (u16, String) {
    http(kaos.admin_port, method, path, body).expect("admin API")
}

/// Every record of partition 0 of `topic`, from its start: key and value (`None`: a tombstone).
fn topic_records(bootstrap: &str, topic: &str) -> Vec<(String, Option<String>)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "rules-topic-reader")
        .set("enable.partition.eof", "true")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(topic, 0, Offset::Beginning).unwrap();
    consumer.assign(&assignment).unwrap();
    let mut records = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(message)) => records.push((
                String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned(),
                message.payload().map(|value| String::from_utf8_lossy(value).into_owned()),
            )),
            Some(Err(KafkaError::PartitionEOF(_))) => return records,
            Some(Err(error)) => panic!("reading {topic}: {error}"),
            None => {}
        }
    }
    panic!("{topic} not read to its end within 20 s ({} records so far)", records.len())
}

/// The error a one-record Produce through `kaos` gets.
fn produce_error(kaos: &Kaos, topic: &str) -> i16 {
    produce_one(&mut RawKafka::connect(&format!("127.0.0.1:{}", kaos.broker_port(TANSU_NODE_ID))), topic)
}

#[test]
fn two_instances_share_rules_through_a_tansu_topic_and_ride_out_an_outage() {
    let port = common::free_port();
    let mut tansu = Tansu::start_on(port);
    let a = start(&tansu.address(), "_kaos_rules");
    let b = start(&tansu.address(), "_kaos_rules");
    create_topic(&tansu.address(), "shared", 1);
    assert_eq!(produce_error(&b, "shared"), 0);

    // Posted on A: answered once in the topic, and in force on B within 2 s.
    let (status, body) = call(&a, "POST", RULE_PATH, &broken_produce(""));
    assert_eq!(status, 200, "{body}");
    assert_eq!(rules(&a).len(), 1, "A answers after reading its own write back");
    let took = until_rules(&b, 1, "B to have A's rule");
    assert_eq!(produce_error(&b, "shared"), NOT_ENOUGH_REPLICAS, "the rule acts on B ({took:?})");

    // Deleted on B: gone from A within 2 s.
    let (status, body) = call(&b, "DELETE", RULE_DELETE, "");
    assert_eq!(status, 200, "{body}");
    until_rules(&a, 0, "A to lose the rule B deleted");
    assert_eq!(produce_error(&a, "shared"), 0);
    let (status, _) = call(&b, "DELETE", RULE_DELETE, "");
    assert_eq!(status, 404, "deleted once");

    // An instance started later starts with the current rules: ready means read to the end.
    call(&a, "POST", "/tenant/1-1/user/late@x/feature/broken-broker", &broken_produce(""));
    let c = start(&tansu.address(), "_kaos_rules");
    assert_eq!(rules(&c).len(), 1, "C starts with the rule posted before it started");
    assert_eq!(rules(&c)[0]["user"], "late@x");

    // A ttl ends the rule everywhere, and the removal is in the topic like a DELETE.
    let (status, body) = call(&b, "POST", RULE_PATH, &broken_produce(r#","ttl":1500"#));
    assert_eq!(status, 200, "{body}");
    until_rules(&a, 2, "A to have B's ttl rule");
    std::thread::sleep(Duration::from_millis(1500));
    until_rules(&a, 1, "the ttl rule to leave A");
    until_rules(&c, 1, "the ttl rule to leave C");
    let records = topic_records(&tansu.address(), "_kaos_rules");
    let last_of_rule = records.iter().rev().find(|(key, _)| key.contains("test@conduktor.io")).unwrap();
    assert_eq!(last_of_rule.1, None, "the ttl removal is a tombstone: {records:?}");

    // The cluster goes away: the rules stay in force, /ready says why, changes are refused.
    tansu.kill();
    wait_until("B to see the rules topic unreachable", Duration::from_secs(10), || {
        let (status, body) = b.get("/ready");
        status == 503 && body.contains("rules topic") && body.contains("unreachable")
    });
    assert_eq!(rules(&b).len(), 1, "the last rules stay");
    let (status, body) = call(&b, "POST", RULE_PATH, &broken_produce(""));
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("not applied"), "{body}");
    assert!(b.log().contains("rules topic unreachable"), "the log says so");

    // It comes back (empty: tansu kept it in memory): every instance catches up.
    let tansu = Tansu::start_on(port);
    wait_until("B ready again", Duration::from_secs(15), || b.get("/ready").0 == 200);
    let (status, body) = call(&b, "POST", RULE_PATH, &broken_produce(""));
    assert_eq!(status, 200, "{body}");
    wait_until("A to follow the new topic", Duration::from_secs(15), || {
        rules(&a).iter().map(|rule| rule["user"].clone()).collect::<Vec<_>>() == ["test@conduktor.io"]
    });
    drop(tansu);
}

#[test]
fn instances_in_front_of_kafka_share_rules_through_a_compacted_topic() {
    let cluster = KafkaCluster::shared();
    let topic = cluster.unique_topic("kaos-rules");
    let a = start(cluster.bootstrap(), &topic);
    let b = start(cluster.bootstrap(), &topic);
    let described = cluster.tool_ok(
        "kafka-topics",
        &["--bootstrap-server", cluster.bootstrap(), "--describe", "--topic", &topic],
    );
    assert!(described.contains("PartitionCount: 1"), "{described}");
    assert!(described.contains("cleanup.policy=compact"), "{described}");

    let (status, body) = call(&a, "POST", RULE_PATH, &broken_produce(""));
    assert_eq!(status, 200, "{body}");
    until_rules(&b, 1, "B to have A's rule");
    let mut client = RawKafka::connect(&b.bootstrap());
    assert_eq!(produce_one(&mut client, &topic), NOT_ENOUGH_REPLICAS, "the rule acts through B");
    let (status, body) = call(&b, "DELETE", RULE_DELETE, "");
    assert_eq!(status, 200, "{body}");
    until_rules(&a, 0, "A to lose the rule B deleted");

    // Real compaction: small segments, cleaned at once. Many versions of two rules and a rule
    // that ends deleted, from both instances.
    cluster.tool_ok(
        "kafka-configs",
        &[
            "--bootstrap-server",
            cluster.bootstrap(),
            "--alter",
            "--entity-type",
            "topics",
            "--entity-name",
            &topic,
            "--add-config",
            "segment.ms=100,min.cleanable.dirty.ratio=0.01,delete.retention.ms=100,min.compaction.lag.ms=0",
        ],
    );
    let mut written = 2;
    for round in 0..20 {
        let instance = if round % 2 == 0 { &a } else { &b };
        let latency = format!(r#","minLatencyToAddInMilliseconds":{round}"#);
        for user in ["one@x", "two@x"] {
            let path = format!("/tenant/1-1/user/{user}/feature/broken-broker");
            assert_eq!(call(instance, "POST", &path, &broken_produce(&latency)).0, 200);
            written += 1;
        }
        std::thread::sleep(Duration::from_millis(120));
    }
    assert_eq!(call(&a, "POST", RULE_PATH, &broken_produce("")).0, 200);
    assert_eq!(call(&a, "DELETE", RULE_DELETE, "").0, 200);
    written += 2;
    let compacted = Instant::now();
    let mut kept = written;
    while kept >= written && compacted.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(500));
        // A new record rolls the segment; the cleaner then compacts the ones before it.
        assert_eq!(
            call(&b, "POST", "/tenant/1-1/user/roll@x/feature/broken-broker", &broken_produce("")).0,
            200
        );
        written += 1;
        kept = topic_records(cluster.bootstrap(), &topic).len();
    }
    assert!(kept < written, "Kafka compacted the topic: {kept} of {written} records left");
    eprintln!("compacted to {kept} of {written} records in {:?}", compacted.elapsed());

    // An instance started after compaction has exactly the current rules.
    let c = start(cluster.bootstrap(), &topic);
    let current = |kaos: &Kaos| {
        rules(kaos)
            .iter()
            .map(|rule| {
                (
                    rule["user"].as_str().unwrap().to_owned(),
                    rule["config"]["minLatencyToAddInMilliseconds"].clone(),
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(current(&c), current(&a), "C after compaction ({kept} of {written} records)");
    assert_eq!(current(&c).len(), 3, "one@x, two@x and roll@x: {:?}", current(&c));
    assert_eq!(current(&c)[0].1, Value::from(19), "the latest version of each rule");

    // A ttl removal by the instances reaches the topic and leaves the others.
    let (status, body) = call(&c, "POST", RULE_PATH, &broken_produce(r#","ttl":1000"#));
    assert_eq!(status, 200, "{body}");
    until_rules(&a, 4, "A to have C's ttl rule");
    std::thread::sleep(Duration::from_millis(1000));
    until_rules(&a, 3, "the ttl rule to leave A");
    until_rules(&b, 3, "the ttl rule to leave B");
}

/// The rules topic is reached like the brokers: over TLS, logged in with SCRAM as kaos.
#[test]
fn the_rules_topic_is_reached_over_tls_and_sasl_like_the_brokers() {
    let cluster = KafkaCluster::shared();
    let topic = cluster.unique_topic("kaos-rules-sasl");
    let password = common::temp_file("kaos-password", &format!("{}\n", cluster.sasl_password("kaos")));
    let ca = path_str(&cluster.tls().ca);
    let start = || {
        Kaos::start(
            cluster.sasl_tls_bootstrap(),
            &[
                "--rules-topic",
                &topic,
                "--upstream-tls",
                "--upstream-ca",
                &ca,
                "--upstream-sasl-mechanism",
                "SCRAM-SHA-512",
                "--upstream-sasl-username",
                "kaos",
                "--upstream-sasl-password-file",
                &path_str(&password),
            ],
        )
    };
    let (a, b) = (start(), start());
    let (status, body) = call(&a, "POST", RULE_PATH, &broken_produce(""));
    assert_eq!(status, 200, "{body}");
    until_rules(&b, 1, "B to have A's rule");
    let records = topic_records(cluster.bootstrap(), &topic);
    assert_eq!(records.len(), 1, "the rule is in the topic: {records:?}");
    assert!(records[0].1.as_deref().is_some_and(|rule| rule.contains("NOT_ENOUGH_REPLICAS")), "{records:?}");
    for kaos in [&a, &b] {
        assert!(!kaos.log().contains(&cluster.sasl_password("kaos")), "kaos never logs its password");
    }
}
