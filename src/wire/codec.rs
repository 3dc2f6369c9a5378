//! Whole frames: encoding a header and a message with their length prefix, decoding a request
//! kaos must look inside, and the version range kafka-protocol can decode.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable};

/// A message kaos could not encode or decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("API key {0} is unknown to kaos")]
    UnknownApi(i16),
    #[error("{api:?} v{version} is outside the versions kaos decodes")]
    UnsupportedVersion { api: ApiKey, version: i16 },
    #[error("cannot decode {api:?} v{version}: {why}")]
    Decode { api: ApiKey, version: i16, why: String },
    #[error("cannot encode {api:?} v{version}: {why}")]
    Encode { api: ApiKey, version: i16, why: String },
}

/// Whether kafka-protocol can decode `version` of `api`.
pub fn decodable(api: ApiKey, version: i16) -> bool {
    let range = api.valid_versions();
    (range.min..=range.max).contains(&version)
}

/// Encodes a header (request or response) and the `version` of `api`'s message as one
/// length-prefixed frame.
pub fn encode_frame<H: Encodable, T: Encodable>(
    api: ApiKey,
    header: &H,
    header_version: i16,
    message: &T,
    version: i16,
) -> Result<BytesMut, CodecError> {
    let failed = |e| CodecError::Encode { api, version, why: text(e) };
    let size = header.compute_size(header_version).map_err(failed)?
        + message.compute_size(version).map_err(failed)?;
    let mut out = BytesMut::with_capacity(4 + size);
    out.put_i32(size as i32);
    header.encode(&mut out, header_version).map_err(failed)?;
    message.encode(&mut out, version).map_err(failed)?;
    // The length prefix was written from the computed size: a message that encodes to another
    // size (a kafka-protocol bug, as the fuzzer once found) must not leave with a lying prefix.
    if out.len() != 4 + size {
        let why = format!("encoded {} bytes after computing {size}", out.len() - 4);
        return Err(CodecError::Encode { api, version, why });
    }
    Ok(out)
}

/// Decodes a request body (the frame after its length prefix): its header and message.
pub fn decode_request<T: Decodable>(
    api: ApiKey,
    version: i16,
    body: &[u8],
) -> Result<(RequestHeader, T), CodecError> {
    decode_message(api, version, api.request_header_version(version), body)
}

/// Decodes a response body (the frame after its length prefix): its header and message.
pub fn decode_response<T: Decodable>(
    api: ApiKey,
    version: i16,
    body: &[u8],
) -> Result<(ResponseHeader, T), CodecError> {
    decode_message(api, version, api.response_header_version(version), body)
}

fn decode_message<H: Decodable, T: Decodable>(
    api: ApiKey,
    version: i16,
    header_version: i16,
    body: &[u8],
) -> Result<(H, T), CodecError> {
    if !decodable(api, version) {
        return Err(CodecError::UnsupportedVersion { api, version });
    }
    let failed = |e| CodecError::Decode { api, version, why: text(e) };
    let mut bytes = Bytes::copy_from_slice(body);
    let header = H::decode(&mut bytes, header_version).map_err(failed)?;
    let message = T::decode(&mut bytes, version).map_err(failed)?;
    Ok((header, message))
}

/// kafka-protocol's errors are `anyhow::Error`s; kaos keeps only their text.
fn text(error: impl std::fmt::Display) -> String {
    error.to_string()
}

/// Copies a frame body back into a frame.
pub fn with_length_prefix(body: &[u8]) -> BytesMut {
    let mut out = BytesMut::with_capacity(4 + body.len());
    out.put_i32(body.len() as i32);
    out.put_slice(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::protocol::buf::ByteBufMut;

    /// A message whose computed size is one byte short of what it writes.
    struct Lying;

    impl Encodable for Lying {
        fn encode<B: ByteBufMut>(&self, buf: &mut B, _version: i16) -> anyhow::Result<()> {
            buf.put_slice(&[1, 2, 3]);
            Ok(())
        }

        fn compute_size(&self, _version: i16) -> anyhow::Result<usize> {
            Ok(2)
        }
    }

    #[test]
    fn a_frame_never_leaves_with_a_length_prefix_that_lies() {
        let header = ResponseHeader::default().with_correlation_id(1);
        let error = encode_frame(ApiKey::Metadata, &header, 0, &Lying, 12).unwrap_err();
        assert!(matches!(error, CodecError::Encode { api: ApiKey::Metadata, .. }), "{error}");
        assert!(error.to_string().contains("encoded 7 bytes after computing 6"), "{error}");
    }

    #[test]
    fn versions_outside_the_decodable_range_are_refused() {
        let error =
            decode_request::<kafka_protocol::messages::ProduceRequest>(ApiKey::Produce, 2, &[]).unwrap_err();
        assert_eq!(error, CodecError::UnsupportedVersion { api: ApiKey::Produce, version: 2 });
        let truncated =
            decode_response::<kafka_protocol::messages::MetadataResponse>(ApiKey::Metadata, 12, &[0, 0]);
        assert!(matches!(truncated, Err(CodecError::Decode { .. })));
    }
}
