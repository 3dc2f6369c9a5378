//! `produce_topics`, which names a Produce request's topics from its first bytes.
//!
//! Input: one byte that picks the version the connection would pass (byte % 14), then a
//! Produce request frame body: the request header (api key, version, correlation id, client
//! id, ...) and the message, without the length prefix.
//!
//! Checks: no version 0..=13 panics on any body; partial reads never contradict the whole body;
//! and where kafka-protocol decodes the body, `produce_topics` lists exactly its topics.
#![no_main]

use kafka_protocol::messages::{ApiKey, ProduceRequest};
use kaos::wire::codec::decode_request;
use kaos::wire::frame::{FrameError, ProduceTopics, TopicRef, produce_topics};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else { return };
    let picked = i16::from(selector % 14);
    for version in 0..=13 {
        let whole = produce_topics(body, version);
        if version != picked {
            continue;
        }
        for cut in cuts(body.len()) {
            let part = produce_topics(&body[..cut], version);
            let consistent = match (&part, &whole) {
                (Ok(ProduceTopics::NeedMore), _) => true,
                (Ok(ProduceTopics::BeyondHead), Ok(ProduceTopics::All(topics))) => !topics.is_empty(),
                (Ok(ProduceTopics::BeyondHead), Ok(ProduceTopics::BeyondHead) | Err(_)) => true,
                (part, whole) => part == whole,
            };
            assert!(consistent, "v{version} cut {cut}: {part:?} vs {whole:?}");
        }
        if let Ok((_, request)) = decode_request::<ProduceRequest>(ApiKey::Produce, version, body) {
            let expected: Vec<TopicRef> = request
                .topic_data
                .iter()
                .map(|topic| {
                    if version >= 13 {
                        TopicRef::Id(*topic.topic_id.as_bytes())
                    } else {
                        TopicRef::Name(topic.name.0.to_string())
                    }
                })
                .collect();
            // kaos refuses varints longer than five bytes, as Kafka does; kafka-protocol reads
            // the fifth byte's continuation bit as the end.
            let overlong = whole == Err(FrameError::BadHeader("varint longer than 5 bytes"));
            assert!(
                overlong || whole == Ok(ProduceTopics::All(expected.clone())),
                "v{version}: kaos says {whole:?}, kafka-protocol decodes {expected:?}"
            );
        }
    }
});

/// Where to cut the body for partial reads: every byte of a short head, then a few spread out.
fn cuts(len: usize) -> impl Iterator<Item = usize> {
    let step = (len / 16).max(1);
    (0..len.min(64)).chain((64..len).step_by(step))
}
