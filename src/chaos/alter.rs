//! Faults that change the broker's answer rather than the request: the answer is decoded after
//! kaos rewrote its addresses, each fault changes what its rule covers, and it is encoded again
//! for the request's version.

use std::sync::Arc;

use bytes::BytesMut;
use kafka_protocol::messages::fetch_response::FetchableTopicResponse;
use kafka_protocol::messages::produce_response::TopicProduceResponse;
use kafka_protocol::messages::{
    self, ApiKey, FetchResponse, MetadataResponse, ProduceResponse, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable};

use super::{Effect, FaultContext, Rule, respond};
use uuid::Uuid;

use crate::wire::batches::PartitionKey;
use crate::wire::codec::{decode_response, encode_frame};
use crate::wire::{CodecError, TopicNames};

/// An answer a fault may change, decoded.
#[derive(Debug)]
pub enum Response<'a> {
    Metadata(&'a mut MetadataResponse),
    Fetch(&'a mut FetchResponse),
    /// Another answer of [`THROTTLED_APIS`]: only its throttle time.
    Other {
        throttle_time_ms: &'a mut i32,
    },
}

impl Response<'_> {
    /// How long the broker asks the client to wait before its next request (KIP-219).
    pub fn throttle_time_ms(&mut self) -> &mut i32 {
        match self {
            Response::Metadata(metadata) => &mut metadata.throttle_time_ms,
            Response::Fetch(fetch) => &mut fetch.throttle_time_ms,
            Response::Other { throttle_time_ms } => throttle_time_ms,
        }
    }
}

/// The APIs whose answers carry `throttle_time_ms` that kaos can change: the data path and the
/// consumer group's.
pub const THROTTLED_APIS: &[ApiKey] = &[
    ApiKey::Produce,
    ApiKey::Fetch,
    ApiKey::Metadata,
    ApiKey::ListOffsets,
    ApiKey::OffsetCommit,
    ApiKey::OffsetFetch,
    ApiKey::FindCoordinator,
    ApiKey::JoinGroup,
    ApiKey::Heartbeat,
    ApiKey::SyncGroup,
    ApiKey::LeaveGroup,
];

/// Alters an answer of a type whose only changeable field is its throttle time.
macro_rules! alter_throttled {
    ($api:expr, $version:expr, $body:expr, $rules:expr, $names:expr, $rng:expr, $($key:ident => $ty:ty),* $(,)?) => {
        match $api {
            $(ApiKey::$key => alter_as::<$ty>($api, $version, $body, $rules, $names, $rng, |m| Response::Other {
                throttle_time_ms: &mut m.throttle_time_ms,
            }),)*
            _ => Ok(None),
        }
    };
}

/// Partitions kaos fails inside the broker's answer: a fault narrowed by `partitions` fired on a
/// Produce or Fetch that named others too. On Produce with direction REQUEST they were taken out
/// of the request, so the broker wrote only the others; elsewhere the broker answered them too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionFailures {
    pub error: i16,
    /// Each failed partition: its topic as the request named it (name, or id from v13 of
    /// Produce and v13 of Fetch) and its number.
    pub partitions: Vec<(TopicName, Uuid, i32)>,
}

impl PartitionFailures {
    /// The answer `body` (after its length prefix) with these partitions carrying the error and
    /// no data, added where the broker's answer does not list them; the whole new frame.
    pub fn merge_into(&self, api: ApiKey, version: i16, body: &[u8]) -> Result<BytesMut, CodecError> {
        match api {
            ApiKey::Produce => {
                let (header, mut answer): (ResponseHeader, ProduceResponse) =
                    decode_response(api, version, body)?;
                for (name, id, index) in &self.partitions {
                    let topic = match answer
                        .responses
                        .iter()
                        .position(|t| same_topic(&t.name, &t.topic_id, name, id))
                    {
                        Some(at) => &mut answer.responses[at],
                        None => {
                            let topic =
                                TopicProduceResponse::default().with_name(name.clone()).with_topic_id(*id);
                            answer.responses.push(topic);
                            answer.responses.last_mut().expect("just pushed")
                        }
                    };
                    topic.partition_responses.retain(|p| p.index != *index);
                    topic.partition_responses.push(respond::failed_produce_partition(*index, self.error));
                }
                encode_frame(api, &header, api.response_header_version(version), &answer, version)
            }
            ApiKey::Fetch => {
                let (header, mut answer): (ResponseHeader, FetchResponse) =
                    decode_response(api, version, body)?;
                for (name, id, index) in &self.partitions {
                    let topic = match answer
                        .responses
                        .iter()
                        .position(|t| same_topic(&t.topic, &t.topic_id, name, id))
                    {
                        Some(at) => &mut answer.responses[at],
                        None => {
                            let topic =
                                FetchableTopicResponse::default().with_topic(name.clone()).with_topic_id(*id);
                            answer.responses.push(topic);
                            answer.responses.last_mut().expect("just pushed")
                        }
                    };
                    topic.partitions.retain(|p| p.partition_index != *index);
                    topic.partitions.push(respond::failed_fetch_partition(*index, self.error));
                }
                encode_frame(api, &header, api.response_header_version(version), &answer, version)
            }
            _ => Err(CodecError::UnsupportedVersion { api, version }),
        }
    }
}

/// What kaos changes in one broker answer: partitions it fails, then its rules' faults.
#[derive(Debug, Default)]
pub struct AnswerChanges {
    pub failures: Option<PartitionFailures>,
    pub rules: Vec<Arc<Rule>>,
    /// The failed partitions kaos holds until this answer leaves (see `proxy::inflight`).
    pub held: Vec<PartitionKey>,
}

impl AnswerChanges {
    pub fn is_empty(&self) -> bool {
        self.failures.is_none() && self.rules.is_empty()
    }
}

/// Whether an answer's topic is the request's: by name, or by id where versions use ids.
fn same_topic(name: &TopicName, id: &Uuid, request_name: &TopicName, request_id: &Uuid) -> bool {
    if request_name.0.is_empty() { id == request_id } else { name == request_name }
}

/// What the faults made of an answer: the new frame (`None` when only dry runs acted), and each
/// fault's rule and effect, for the metrics and the event log.
pub type Altered = (Option<BytesMut>, Vec<(Arc<Rule>, Effect)>);

/// Applies `rules` to `body` (a response after its length prefix, addresses already kaos's) and
/// returns the whole new frame; `None` when no rule changed anything or the answer is not one
/// faults change.
pub fn alter(
    api: ApiKey,
    version: i16,
    body: &[u8],
    rules: &[Arc<Rule>],
    names: &dyn TopicNames,
    rng: &mut fastrand::Rng,
) -> Result<Option<Altered>, CodecError> {
    if rules.is_empty() {
        return Ok(None);
    }
    match api {
        ApiKey::Metadata => {
            alter_as::<MetadataResponse>(api, version, body, rules, names, rng, |m| Response::Metadata(m))
        }
        ApiKey::Fetch => {
            alter_as::<FetchResponse>(api, version, body, rules, names, rng, |f| Response::Fetch(f))
        }
        _ => alter_throttled!(api, version, body, rules, names, rng,
            Produce => messages::ProduceResponse,
            ListOffsets => messages::ListOffsetsResponse,
            OffsetCommit => messages::OffsetCommitResponse,
            OffsetFetch => messages::OffsetFetchResponse,
            FindCoordinator => messages::FindCoordinatorResponse,
            JoinGroup => messages::JoinGroupResponse,
            Heartbeat => messages::HeartbeatResponse,
            SyncGroup => messages::SyncGroupResponse,
            LeaveGroup => messages::LeaveGroupResponse,
        ),
    }
}

fn alter_as<T: Decodable + Encodable + Clone>(
    api: ApiKey,
    version: i16,
    body: &[u8],
    rules: &[Arc<Rule>],
    names: &dyn TopicNames,
    rng: &mut fastrand::Rng,
    wrap: fn(&mut T) -> Response<'_>,
) -> Result<Option<Altered>, CodecError> {
    let (header, mut message): (ResponseHeader, T) = decode_response(api, version, body)?;
    let mut applied = Vec::new();
    for rule in rules {
        let mut context = FaultContext::new(rng, &rule.common.topics, names);
        // A dry run alters a copy: what it would do is recorded, the answer goes on unchanged.
        let mut copy = rule.common.dry_run.then(|| message.clone());
        let target = copy.as_mut().unwrap_or(&mut message);
        if let Some(effect) = rule.fault.alter(&mut wrap(target), &mut context) {
            applied.push((rule.clone(), effect));
        }
    }
    if applied.is_empty() {
        return Ok(None);
    }
    if applied.iter().all(|(rule, _)| rule.common.dry_run) {
        return Ok(Some((None, applied)));
    }
    let frame = encode_frame(api, &header, api.response_header_version(version), &message, version)?;
    Ok(Some((Some(frame), applied)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn failed_partitions_join_the_brokers_answer() {
        let topic = |name: &str| TopicName(kafka_protocol::protocol::StrBytes::from_string(name.to_owned()));
        let written = messages::produce_response::PartitionProduceResponse::default()
            .with_index(0)
            .with_base_offset(41);
        let answer = ProduceResponse::default().with_responses(vec![
            TopicProduceResponse::default()
                .with_name(topic("orders"))
                .with_partition_responses(vec![written]),
        ]);
        let header = ResponseHeader::default().with_correlation_id(8);
        let frame = encode_frame(ApiKey::Produce, &header, 1, &answer, 9).unwrap();
        let failures = PartitionFailures {
            error: 19,
            partitions: vec![(topic("orders"), Uuid::nil(), 1), (topic("payments"), Uuid::nil(), 0)],
        };
        let merged = failures.merge_into(ApiKey::Produce, 9, &frame[4..]).unwrap();
        let (header, merged): (ResponseHeader, ProduceResponse) =
            decode_response(ApiKey::Produce, 9, &merged[4..]).unwrap();
        assert_eq!(header.correlation_id, 8);
        let codes: Vec<(String, i32, i16, i64)> = merged
            .responses
            .iter()
            .flat_map(|t| {
                t.partition_responses
                    .iter()
                    .map(move |p| (t.name.0.to_string(), p.index, p.error_code, p.base_offset))
            })
            .collect();
        assert_eq!(
            codes,
            vec![("orders".into(), 0, 0, 41), ("orders".into(), 1, 19, -1), ("payments".into(), 0, 19, -1)],
            "the broker's partition stays, the failed ones are added"
        );

        let fetched =
            messages::fetch_response::PartitionData::default().with_partition_index(1).with_high_watermark(9);
        let answer = FetchResponse::default().with_responses(vec![
            FetchableTopicResponse::default().with_topic(topic("orders")).with_partitions(vec![fetched]),
        ]);
        let frame = encode_frame(ApiKey::Fetch, &header, 1, &answer, 12).unwrap();
        let failures = PartitionFailures { error: 6, partitions: vec![(topic("orders"), Uuid::nil(), 1)] };
        let merged = failures.merge_into(ApiKey::Fetch, 12, &frame[4..]).unwrap();
        let (_, merged): (ResponseHeader, FetchResponse) =
            decode_response(ApiKey::Fetch, 12, &merged[4..]).unwrap();
        let partition = &merged.responses[0].partitions[0];
        assert_eq!(
            (
                merged.responses[0].partitions.len(),
                partition.error_code,
                partition.records.as_ref().is_none_or(|r| r.is_empty())
            ),
            (1, 6, true)
        );
    }

    /// tansu answers Fetch v15 with tag 0, which Kafka defines from v16 (node_endpoints): kaos
    /// skips the field, as Kafka's decoder does, instead of failing the answer.
    #[test]
    fn a_tag_the_version_does_not_define_is_skipped() {
        let header = ResponseHeader::default().with_correlation_id(4);
        let frame = encode_frame(ApiKey::Fetch, &header, 1, &FetchResponse::default(), 15).unwrap();
        let mut body = frame[4..].to_vec();
        assert_eq!(body.pop(), Some(0), "no tagged fields");
        body.extend_from_slice(&[1, 0, 1, 1]); // one field: tag 0, one byte, an empty array
        let (header, response) = decode_response::<FetchResponse>(ApiKey::Fetch, 15, &body).unwrap();
        assert_eq!(header.correlation_id, 4);
        assert!(response.unknown_tagged_fields.is_empty());
        let again = encode_frame(ApiKey::Fetch, &header, 1, &response, 15).unwrap();
        assert_eq!(Bytes::from(again), frame.freeze(), "written again without it");
    }
}
