//! Faults that change the broker's answer rather than the request: the answer is decoded after
//! kaos rewrote its addresses, each fault changes what its rule covers, and it is encoded again
//! for the request's version.

use std::sync::Arc;

use bytes::BytesMut;
use kafka_protocol::messages::{self, ApiKey, FetchResponse, MetadataResponse, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable};

use super::{Effect, FaultContext, FaultSpec, Rule};
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

/// What the faults made of an answer: the new frame, and each fault's effect for the metrics.
pub type Altered = (BytesMut, Vec<(&'static FaultSpec, Effect)>);

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

fn alter_as<T: Decodable + Encodable>(
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
        if let Some(effect) = rule.fault.alter(&mut wrap(&mut message), &mut context) {
            applied.push((rule.spec, effect));
        }
    }
    if applied.is_empty() {
        return Ok(None);
    }
    let frame = encode_frame(api, &header, api.response_header_version(version), &message, version)?;
    Ok(Some((frame, applied)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

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
