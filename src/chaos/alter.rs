//! Faults that change the broker's answer rather than the request: the answer is decoded after
//! kaos rewrote its addresses, each fault changes what its rule covers, and it is encoded again
//! for the request's version.

use std::sync::Arc;

use bytes::BytesMut;
use kafka_protocol::messages::{ApiKey, MetadataResponse};

use super::{Effect, FaultSpec, Rule};
use crate::wire::CodecError;
use crate::wire::codec::{decode_response, encode_frame};

/// An answer a fault may change, decoded.
#[derive(Debug)]
pub enum Response<'a> {
    Metadata(&'a mut MetadataResponse),
}

/// What the faults made of an answer: the new frame, and each fault's effect for the metrics.
pub type Altered = (BytesMut, Vec<(&'static FaultSpec, Effect)>);

/// Applies `rules` to `frame` (a whole response frame, addresses already kaos's); `None` when
/// no rule changed anything.
pub fn alter(
    api: ApiKey,
    version: i16,
    frame: &[u8],
    rules: &[Arc<Rule>],
) -> Result<Option<Altered>, CodecError> {
    let mut applied = Vec::new();
    match api {
        ApiKey::Metadata => {
            let (header, mut metadata) = decode_response::<MetadataResponse>(api, version, &frame[4..])?;
            for rule in rules {
                let mut response = Response::Metadata(&mut metadata);
                if let Some(effect) = rule.fault.alter(&mut response, &rule.common.topics) {
                    applied.push((rule.spec, effect));
                }
            }
            if applied.is_empty() {
                return Ok(None);
            }
            let frame = encode_frame(api, &header, api.response_header_version(version), &metadata, version)?;
            Ok(Some((frame, applied)))
        }
        _ => Ok(None),
    }
}
