//! Micro-benchmarks of the per-frame work on the data path: the header peek every frame pays,
//! and the Metadata rewrite that only address-bearing responses pay.

use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use kafka_protocol::messages::metadata_response::{MetadataResponseBroker, MetadataResponseTopic};
use kafka_protocol::messages::{
    ApiKey, BrokerId, MetadataResponse, ProduceRequest, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, StrBytes};
use std::sync::Arc;

use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
use kaos::chaos::plan::{Plan, Scope};
use kaos::chaos::records::rewrite_batches;
use kaos::chaos::{Rule, RuleSet};
use kaos::proxy::rewrite::{BrokerPorts, Learned, relay_response};
use kaos::wire::encode_frame;
use kaos::wire::frame::{ProduceTopics, RequestPrefix, TopicRef, body_len, produce_acks, produce_topics};
use kaos_testkit::{Produce, Topic};

/// A Produce v9 request for one topic with 4 KiB of opaque records: the shape the benches have
/// always measured. Checked to decode before any bench uses it.
fn produce_frame(topic: &str) -> Bytes {
    let frame = Produce::new(9)
        .correlation_id(42)
        .client_id("producer")
        .acks(-1)
        .timeout_ms(30_000)
        .topic(Topic::new(topic, [0; 16]).partition(0, vec![0u8; 4096]))
        .frame();
    let mut body = frame.slice(4..);
    let header = RequestHeader::decode(&mut body, ApiKey::Produce.request_header_version(9)).expect("header");
    assert_eq!((header.request_api_key, header.request_api_version), (ApiKey::Produce as i16, 9));
    let request = ProduceRequest::decode(&mut body, 9).expect("a Produce v9 request");
    assert!(body.is_empty(), "nothing after the request");
    let [data] = &request.topic_data[..] else { panic!("one topic") };
    assert_eq!(data.name.0.as_str(), topic);
    assert_eq!(data.partition_data[0].records.as_ref().map(Bytes::len), Some(4096));
    frame
}

fn metadata_body(brokers: i32, topics: usize) -> Bytes {
    let response = MetadataResponse::default()
        .with_brokers(
            (0..brokers)
                .map(|id| {
                    MetadataResponseBroker::default()
                        .with_node_id(BrokerId(id))
                        .with_host(StrBytes::from_string(format!("kafka-{id}.internal")))
                        .with_port(9092)
                })
                .collect(),
        )
        .with_topics(
            (0..topics)
                .map(|i| {
                    MetadataResponseTopic::default()
                        .with_name(Some(TopicName(StrBytes::from_string(format!("topic-{i}")))))
                })
                .collect(),
        );
    let version = 12;
    let header = ResponseHeader::default().with_correlation_id(1);
    encode_frame(
        ApiKey::Metadata,
        &header,
        ApiKey::Metadata.response_header_version(version),
        &response,
        version,
    )
    .expect("encodes")
    .freeze()
    .slice(4..)
}

fn frame_header_peek(c: &mut Criterion) {
    let frame = produce_frame("bench");
    c.bench_function("frame header peek (length + prefix + produce acks)", |b| {
        b.iter(|| {
            let len = body_len(black_box(&frame), 8, 100 << 20).unwrap().unwrap();
            let body = &frame[4..4 + len];
            let prefix = RequestPrefix::parse(body).unwrap();
            black_box(produce_acks(body, prefix.api_version).unwrap())
        })
    });
}

fn metadata_rewrite(c: &mut Criterion) {
    let ports = BrokerPorts::new("kaos.local", 6969);
    for (brokers, topics) in [(3, 10), (30, 1000)] {
        let body = metadata_body(brokers, topics);
        c.bench_function(&format!("metadata rewrite ({brokers} brokers, {topics} topics)"), |b| {
            b.iter(|| {
                let mut learned = Learned::default();
                black_box(relay_response(3, 12, body.clone(), &ports, &mut learned).unwrap().frame)
            })
        });
    }
}

/// `n` rules that never match a Produce to "bench": other topics, other brokers.
fn non_matching_rules(n: usize) -> RuleSet {
    let rules = (0..n)
        .map(|i| {
            let (feature, config) = match i % 3 {
                0 => ("slow-topic", format!(r#"{{"topicPatterns":["nomatch-{i}-.*"]}}"#)),
                1 => ("random-bytes", format!(r#"{{"topics":["absent-{i}"]}}"#)),
                _ => ("broken-broker", r#"{"brokerIds":[9999]}"#.to_owned()),
            };
            let body = format!(r#"{{"config":{config},"direction":"REQUEST","apiKeys":"PRODUCE"}}"#);
            Arc::new(Rule::from_request("t", "u", feature, body.as_bytes()).expect("valid rule"))
        })
        .collect();
    RuleSet::new(rules)
}

fn rule_matching(c: &mut Criterion) {
    let frame = produce_frame("bench");
    let body = &frame[4..];
    let mut rng = fastrand::Rng::with_seed(1);
    for n in [0, 1, 20, 200] {
        let rules = non_matching_rules(n);
        c.bench_function(&format!("rule matching per Produce request ({n} non-matching rules)"), |b| {
            b.iter(|| {
                let prefix = RequestPrefix::parse(body).unwrap();
                let candidates = rules.for_api(prefix.api_key);
                if candidates.is_empty() {
                    return black_box(None);
                }
                let ProduceTopics::All(topics) = produce_topics(body, prefix.api_version).unwrap() else {
                    panic!("single-topic request")
                };
                let names: Vec<String> = topics
                    .into_iter()
                    .filter_map(|t| if let TopicRef::Name(n) = t { Some(n) } else { None })
                    .collect();
                black_box(Plan::decide(candidates, Scope::default(), Some(&names), &mut rng))
            })
        });
    }
}

/// A batch of 100 records of 100 bytes, as librdkafka would send it.
fn batch(compression: Compression) -> Bytes {
    let records: Vec<Record> = (0..100)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i,
            sequence: -1 + i as i32,
            timestamp: 1_700_000_000_000 + i,
            key: None,
            value: Some(Bytes::from(format!("{i:03}{}", "x".repeat(97)))),
            headers: Default::default(),
        })
        .collect();
    let mut out = bytes::BytesMut::new();
    RecordBatchEncoder::encode(&mut out, records.iter(), &RecordEncodeOptions { version: 2, compression })
        .unwrap();
    out.freeze()
}

fn record_batch_rewrite(c: &mut Criterion) {
    for (name, compression) in [
        ("none", Compression::None),
        ("gzip", Compression::Gzip),
        ("snappy", Compression::Snappy),
        ("lz4", Compression::Lz4),
        ("zstd", Compression::Zstd),
    ] {
        let records = batch(compression);
        c.bench_function(&format!("record batch rewrite, 100 x 100 B, {name}"), |b| {
            b.iter(|| {
                black_box(rewrite_batches(&records, kaos::chaos::records::Crc::Valid, &mut |batch| {
                    let value = batch[0].value.clone().unwrap();
                    batch[0].value = Some(Bytes::from([&value[..], b"0123456789"].concat()));
                    1
                }))
                .unwrap()
            })
        });
    }
}

criterion_group!(benches, frame_header_peek, metadata_rewrite, rule_matching, record_batch_rewrite);
criterion_main!(benches);
