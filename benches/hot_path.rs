//! Micro-benchmarks of the per-frame work on the data path: the header peek every frame pays,
//! and the Metadata rewrite that only address-bearing responses pay.

use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use kafka_protocol::messages::metadata_response::{MetadataResponseBroker, MetadataResponseTopic};
use kafka_protocol::messages::{ApiKey, BrokerId, MetadataResponse, ResponseHeader, TopicName};
use kafka_protocol::protocol::StrBytes;
use kaos::proxy::frame::{RequestPrefix, body_len, produce_acks};
use kaos::proxy::rewrite::{BrokerPorts, Learned, encode_frame, rewrite_response};

fn produce_frame() -> Vec<u8> {
    let mut frame = vec![0, 0, 0x10, 0]; // 4 KiB body
    frame.extend_from_slice(&[0, 0, 0, 9, 0, 0, 0, 42, 0, 8]);
    frame.extend_from_slice(b"producer");
    frame.extend_from_slice(&[0, 0, 0xff, 0xff, 0, 0, 0x75, 0x30]); // tags, null txn id, acks -1, timeout
    frame.resize(4 + 4096, 0);
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
    encode_frame(&header, ApiKey::Metadata.response_header_version(version), &response, version)
        .expect("encodes")
        .freeze()
        .slice(4..)
}

fn frame_header_peek(c: &mut Criterion) {
    let frame = produce_frame();
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
                black_box(rewrite_response(3, 12, body.clone(), &ports, &mut learned).unwrap())
            })
        });
    }
}

criterion_group!(benches, frame_header_peek, metadata_rewrite);
criterion_main!(benches);
