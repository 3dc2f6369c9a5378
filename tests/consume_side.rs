//! Consume-side faults (issue 12 §2) against the shared Apache Kafka cluster with librdkafka
//! consumers: what kaos changes in Fetch answers reaches the consumer, while the broker's data
//! stays intact (a consumer reading the cluster directly sees the records as written).

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::{KafkaCluster, Kaos, assert_exactly, consume, produce, producer};
use rdkafka::ClientConfig;
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};

const RECORDS: usize = 10;

/// A topic holding RECORDS records `{topic}-{i}`, written directly, and a kaos in front.
fn topic_with_records(prefix: &str) -> (&'static KafkaCluster, Kaos, String) {
    let cluster = KafkaCluster::shared();
    let kaos = Kaos::start(cluster.bootstrap(), &[]);
    let topic = cluster.unique_topic(prefix);
    cluster.create_topic(&topic, 1, 3);
    produce(&producer(cluster.bootstrap(), &[("acks", "all")]), &topic, &topic, RECORDS);
    (cluster, kaos, topic)
}

fn rule(config: &str, topic: &str) -> String {
    let config = config.replacen('{', &format!(r#"{{"topics":["{topic}"],"#), 1).replace(",}", "}");
    format!(r#"{{"config":{config},"direction":"REQUEST","apiKeys":"FETCH"}}"#)
}

/// Everything one consumer with `settings` gets from `topic` through `bootstrap` in `within`:
/// record values and errors.
fn poll_for(
    bootstrap: &str,
    topic: &str,
    settings: &[(&str, &str)],
    within: Duration,
) -> (Vec<Vec<u8>>, Vec<String>) {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("{topic}-{}", fastrand::u64(..)))
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "10");
    for (key, value) in settings {
        config.set(*key, *value);
    }
    let consumer: BaseConsumer = config.create().expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let (mut values, mut errors) = (Vec::new(), Vec::new());
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => values.push(message.payload().unwrap_or_default().to_vec()),
            Some(Err(e)) => errors.push(e.to_string()),
            None => {}
        }
    }
    (values, errors)
}

#[test]
fn duplicated_fetch_answers_repeat_records_the_broker_holds_once() {
    let (cluster, kaos, topic) = topic_with_records("fetch-duplicate");
    kaos.add_rule("duplicate-resource", &rule("{}", &topic));
    let seen = consume(&kaos.bootstrap(), &topic, &format!("{topic}-through"), RECORDS * 2);
    let distinct: HashSet<&String> = seen.iter().collect();
    assert_eq!(distinct.len(), RECORDS, "every record");
    assert!(seen.len() > RECORDS, "repeats through kaos: {} records", seen.len());
    let held = consume(cluster.bootstrap(), &topic, &format!("{topic}-direct"), RECORDS);
    assert_exactly(&held, &topic, RECORDS);
}

#[test]
fn random_bytes_on_fetch_change_what_consumers_see_not_what_the_broker_holds() {
    let (cluster, kaos, topic) = topic_with_records("fetch-random");
    kaos.add_rule("random-bytes", &rule(r#"{"nbMessages":1000,"sizeInBytes":4}"#, &topic));
    let (seen, errors) =
        poll_for(&kaos.bootstrap(), &topic, &[("check.crcs", "true")], Duration::from_secs(5));
    assert!(errors.is_empty(), "a valid CRC: {errors:?}");
    assert_eq!(seen.len(), RECORDS);
    for (i, value) in seen.iter().enumerate() {
        let original = format!("{topic}-{i}");
        assert_eq!(value.len(), original.len() + 4, "4 bytes appended");
        assert!(value.starts_with(original.as_bytes()));
    }
    assert!(kaos.metric("kaos_chaos_records_changed_total", "random-bytes") >= RECORDS as f64);
    let held = consume(cluster.bootstrap(), &topic, &format!("{topic}-direct"), RECORDS);
    assert_exactly(&held, &topic, RECORDS);
}

#[test]
fn a_corrupt_crc_on_fetch_is_rejected_by_a_consumer_that_checks_crcs() {
    let (_cluster, kaos, topic) = topic_with_records("fetch-crc");
    kaos.add_rule("random-bytes", &rule(r#"{"corruptCrc":true}"#, &topic));
    let (seen, errors) =
        poll_for(&kaos.bootstrap(), &topic, &[("check.crcs", "true")], Duration::from_secs(5));
    assert!(seen.is_empty(), "no record of a batch with a wrong CRC is delivered: {} were", seen.len());
    assert!(errors.iter().any(|e| e.contains("BadMessage")), "librdkafka's CRC failure: {errors:?}");
    // The CRC is why: a consumer that does not check it takes the same batches.
    let (seen, _) = poll_for(&kaos.bootstrap(), &topic, &[("check.crcs", "false")], Duration::from_secs(5));
    assert_eq!(seen.len(), RECORDS, "delivered without the CRC check");
}

#[test]
fn offset_out_of_range_on_fetch_makes_the_consumer_apply_its_reset_policy() {
    let (_cluster, kaos, topic) = topic_with_records("fetch-out-of-range");
    kaos.add_rule("broken-broker", &rule(r#"{"errors":["OFFSET_OUT_OF_RANGE"],"brokenMs":60000}"#, &topic));
    // auto.offset.reset=error: the consumer reports the reset it would have made.
    let settings = [("auto.offset.reset", "error")];
    let (seen, errors) = poll_for(&kaos.bootstrap(), &topic, &settings, Duration::from_secs(5));
    assert!(seen.is_empty());
    assert!(
        errors
            .iter()
            .any(|e| e.contains("out of range") || e.contains("OFFSET_OUT_OF_RANGE") || e.contains("reset")),
        "{errors:?}"
    );
}
