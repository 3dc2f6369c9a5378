//! Chaos as an experiment (issue 13) against tansu: a seeded rule replays, so two identical runs
//! see the same requests hit in the event log and another seed sees others.

mod common;

use bytes::Bytes;
use common::{Kaos, RawKafka, TANSU_NODE_ID, Tansu, create_topic};
use kafka_protocol::records::Compression;
use serde_json::Value;

/// A one-record Produce (v9, acks=all) to partition 0 of `topic` with its own correlation id.
fn produce(topic: &str, correlation_id: i32) -> Bytes {
    let records = kaos_testkit::batch(Compression::None, &[b"r"], -1, -1);
    kaos_testkit::Produce::new(9)
        .correlation_id(correlation_id)
        .client_id("replay")
        .acks(-1)
        .timeout_ms(5000)
        .topic(kaos_testkit::Topic::new(topic, [0; 16]).partition(0, records))
        .frame()
}

fn events(kaos: &Kaos, since: u64) -> Vec<Value> {
    let (status, body) = kaos.get(&format!("/events?since={since}&limit=1000"));
    assert_eq!(status, 200, "{body}");
    serde_json::from_str::<Value>(&body).unwrap().as_array().unwrap().clone()
}

/// One run: a new connection sends 30 Produce requests, one at a time; what the event log says
/// the rule did to each, by correlation id.
fn run(kaos: &Kaos, topic: &str) -> Vec<(i64, Value)> {
    let since = events(kaos, 0).last().map_or(0, |event| event["seq"].as_u64().unwrap());
    let mut client = RawKafka::connect(&format!("127.0.0.1:{}", kaos.broker_port(TANSU_NODE_ID)));
    for correlation_id in 1..=30 {
        client.send_frame(&produce(topic, correlation_id));
        assert!(client.read_frame().is_some(), "an answer to request {correlation_id}");
    }
    events(kaos, since)
        .iter()
        .map(|event| (event["correlationId"].as_i64().unwrap(), event["did"].clone()))
        .collect()
}

fn rule(seed: u64) -> String {
    format!(
        r#"{{"config":{{"seed":{seed},"rateInPercent":40,"minLatencyToAddInMilliseconds":1,"maxLatencyToAddInMilliseconds":9}},"apiKeys":"PRODUCE"}}"#
    )
}

#[test]
fn a_seeded_rule_replays_and_another_seed_does_not() {
    let tansu = Tansu::start();
    let kaos = Kaos::start(&tansu.address(), &[]);
    create_topic(&kaos.bootstrap(), "replayed", 1);
    kaos.add_rule("slow-broker", &rule(7));
    let first = run(&kaos, "replayed");
    assert!((3..28).contains(&first.len()), "about 40% of 30 requests hit: {first:?}");
    assert_eq!(run(&kaos, "replayed"), first, "the same requests get the same latency on a new connection");
    kaos.add_rule("slow-broker", &rule(8));
    assert_ne!(run(&kaos, "replayed"), first, "another seed hits other requests");
}
