//! Ambiguous outcomes (issue 12 §1) against the shared Apache Kafka cluster: the broker applies a
//! write and the client does not learn it. An error in place of the broker's answer makes a
//! retrying plain producer write duplicates and an idempotent one none; an answer that never
//! comes leaves the client waiting out its timeout, with every later answer behind it.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::{KafkaCluster, Kaos, NO_RETRIES, RawKafka, consume, producer, send_one};
use kafka_protocol::messages::{ApiKey, MetadataRequest};
use rdkafka::producer::{BaseRecord, Producer};

/// Every Produce is applied by the broker, and answered NOT_ENOUGH_REPLICAS (retriable).
const ERROR_IN_PLACE_OF_THE_ANSWER: &str = r#"{"config":{"errors":["NOT_ENOUGH_REPLICAS"],"brokenMs":60000},"direction":"RESPONSE","apiKeys":"PRODUCE"}"#;

/// Sends `count` records while every answer is an error, lets the producer retry for a while,
/// then lifts the rule and waits for every delivery; returns what the topic holds.
fn write_through_lost_answers(idempotent: bool, count: usize) -> Vec<String> {
    let cluster = KafkaCluster::shared();
    let kaos = Kaos::start(cluster.bootstrap(), &[]);
    let topic = cluster.unique_topic(if idempotent { "ambiguous-idempotent" } else { "ambiguous-plain" });
    cluster.create_topic(&topic, 1, 3);
    let settings = [
        ("enable.idempotence", if idempotent { "true" } else { "false" }),
        ("acks", "all"),
        ("retry.backoff.ms", "100"),
        ("retry.backoff.max.ms", "200"),
        ("message.timeout.ms", "60000"),
    ];
    let producer = producer(&kaos.bootstrap(), &settings);
    assert!(send_one(&producer, &topic, b"warm-up").0);
    kaos.add_rule("broken-broker", ERROR_IN_PLACE_OF_THE_ANSWER);
    for i in 0..count {
        let value = format!("{topic}-{i}");
        producer.send(BaseRecord::<(), str>::to(&topic).payload(&value)).expect("queued");
    }
    let retrying = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < retrying {
        producer.poll(Duration::from_millis(50));
    }
    kaos.delete_rule("broken-broker", "PRODUCE", "RESPONSE");
    producer.flush(Duration::from_secs(60)).expect("every record delivered once the answers come back");
    let context = producer.context();
    assert_eq!(context.failed.load(std::sync::atomic::Ordering::Relaxed), 0, "{:?}", context.errors);
    // What the broker holds, read directly.
    let held = consume(cluster.bootstrap(), &topic, &format!("{topic}-check"), count + 1);
    held.into_iter().filter(|value| value != "warm-up").collect()
}

#[test]
fn lost_answers_make_a_plain_producer_write_duplicates() {
    let held = write_through_lost_answers(false, 10);
    let distinct: HashSet<&String> = held.iter().collect();
    assert_eq!(distinct.len(), 10, "every record is there");
    assert!(held.len() > 10, "a retried write the broker had applied is written again: {held:?}");
}

#[test]
fn lost_answers_leave_an_idempotent_producer_exactly_once() {
    let held = write_through_lost_answers(true, 10);
    let distinct: HashSet<&String> = held.iter().collect();
    assert_eq!((held.len(), distinct.len()), (10, 10), "the broker drops the retried copies: {held:?}");
}

/// no-response: REQUEST never reaches the broker, RESPONSE reaches it and the answer is lost;
/// either way the producer waits out request.timeout.ms.
#[test]
fn an_unanswered_request_is_waited_out_and_only_a_forwarded_one_is_written() {
    let cluster = KafkaCluster::shared();
    let kaos = Kaos::start(cluster.bootstrap(), &[]);
    let topic = cluster.unique_topic("no-response");
    cluster.create_topic(&topic, 1, 3);
    let settings = [NO_RETRIES, &[("request.timeout.ms", "1500"), ("message.timeout.ms", "5000")]].concat();
    for (direction, value) in [("REQUEST", "dropped"), ("RESPONSE", "applied")] {
        let producer = producer(&kaos.bootstrap(), &settings);
        assert!(send_one(&producer, &topic, b"warm-up").0);
        let rule = format!(r#"{{"config":{{}},"direction":"{direction}","apiKeys":"PRODUCE"}}"#);
        kaos.add_rule("no-response", &rule);
        let (delivered, waited) = send_one(&producer, &topic, value.as_bytes());
        assert!(!delivered, "{direction}: no answer, no delivery report but a timeout");
        assert!(
            waited >= Duration::from_millis(1400),
            "{direction}: waited out request.timeout.ms, not {waited:?}"
        );
        kaos.delete_rule("no-response", "PRODUCE", direction);
    }
    let held = consume(cluster.bootstrap(), &topic, &format!("{topic}-check"), 3);
    assert_eq!(
        held.iter().filter(|v| *v == "applied").count(),
        1,
        "RESPONSE: the broker applied it: {held:?}"
    );
    assert!(!held.iter().any(|v| v == "dropped"), "REQUEST: the broker never saw it: {held:?}");
}

/// Later answers on the connection wait behind the missing one, until closeAfterMs closes it.
#[test]
fn later_answers_wait_behind_an_unanswered_request_until_close_after() {
    let cluster = KafkaCluster::shared();
    let kaos = Kaos::start(cluster.bootstrap(), &[]);
    let topic = cluster.unique_topic("hung");
    cluster.create_topic(&topic, 1, 3);
    kaos.add_rule(
        "no-response",
        r#"{"config":{"closeAfterMs":1500},"direction":"REQUEST","apiKeys":"PRODUCE"}"#,
    );
    let mut client = RawKafka::connect(&kaos.bootstrap());
    let started = Instant::now();
    client.send_frame(&common::produce_frame(&topic));
    client.send(ApiKey::Metadata, 9, 2, &MetadataRequest::default());
    assert_eq!(client.read_frame(), None, "neither the Produce nor the Metadata behind it is answered");
    let closed = started.elapsed();
    assert!(
        (Duration::from_millis(1400)..Duration::from_secs(8)).contains(&closed),
        "closed by closeAfterMs, after {closed:?}"
    );
    assert!(kaos.log().contains("closed by a no-response rule"));
}
