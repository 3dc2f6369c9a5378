//! Kafka frames for any message kafka-protocol encodes: a header, then the message. A *body* is
//! what follows the 4-byte length prefix; a *frame* is the prefix and the body, as on the wire.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Encodable, StrBytes};

/// Bytes of the big-endian length that prefixes every Kafka frame.
pub const LENGTH_PREFIX: usize = 4;

/// A request frame: `message` at `version` of `api`, behind a request header of the header
/// version `api` uses at `version`.
///
/// Panics if kafka-protocol cannot encode the header or the message at that version.
pub fn request_frame<T: Encodable>(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    client_id: &str,
    message: &T,
) -> Bytes {
    let header = RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_string(client_id.to_owned())));
    framed(|out| {
        encode(out, &header, api.request_header_version(version), "request header", api);
        encode(out, message, version, "request", api);
    })
}

/// [`request_frame`] without its length prefix.
pub fn request_body<T: Encodable>(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    client_id: &str,
    message: &T,
) -> Bytes {
    request_frame(api, version, correlation_id, client_id, message).slice(LENGTH_PREFIX..)
}

/// A response frame: `message` at `version` of `api`, behind a response header of the version
/// brokers send: the one `api` uses at `version`, except ApiVersions, always answered with
/// header v0 so that a client that sent a newer version than the broker knows can read it.
///
/// Panics if kafka-protocol cannot encode the message at that version.
pub fn response_frame<T: Encodable>(api: ApiKey, version: i16, correlation_id: i32, message: &T) -> Bytes {
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let header_version = if api == ApiKey::ApiVersions { 0 } else { api.response_header_version(version) };
    framed(|out| {
        encode(out, &header, header_version, "response header", api);
        encode(out, message, version, "response", api);
    })
}

/// [`response_frame`] without its length prefix.
pub fn response_body<T: Encodable>(api: ApiKey, version: i16, correlation_id: i32, message: &T) -> Bytes {
    response_frame(api, version, correlation_id, message).slice(LENGTH_PREFIX..)
}

/// What `write` puts in a buffer, behind its length prefix.
pub(crate) fn framed(write: impl FnOnce(&mut BytesMut)) -> Bytes {
    let mut frame = BytesMut::new();
    frame.put_i32(0);
    write(&mut frame);
    let length = i32::try_from(frame.len() - LENGTH_PREFIX).expect("a frame under 2 GiB");
    frame[..LENGTH_PREFIX].copy_from_slice(&length.to_be_bytes());
    frame.freeze()
}

/// Encodes `message` at `version` onto `out`; panics, naming `what` of `api`, if it cannot.
pub(crate) fn encode<T: Encodable>(out: &mut BytesMut, message: &T, version: i16, what: &str, api: ApiKey) {
    message.encode(out, version).unwrap_or_else(|e| panic!("cannot encode {api:?} {what} v{version}: {e}"));
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Buf;
    use kafka_protocol::messages::{
        ApiVersionsRequest, ApiVersionsResponse, MetadataRequest, MetadataResponse,
    };
    use kafka_protocol::protocol::Decodable;

    #[test]
    fn requests_carry_their_header_and_message() {
        for version in [0, 9, 12] {
            let frame = request_frame(ApiKey::Metadata, version, 5, "me", &MetadataRequest::default());
            assert_eq!(frame.len() - LENGTH_PREFIX, (&frame[..4]).get_i32() as usize, "length prefix");
            let mut body = request_body(ApiKey::Metadata, version, 5, "me", &MetadataRequest::default());
            assert_eq!(body, frame.slice(LENGTH_PREFIX..));
            let header =
                RequestHeader::decode(&mut body, ApiKey::Metadata.request_header_version(version)).unwrap();
            assert_eq!(
                (header.request_api_key, header.request_api_version, header.correlation_id),
                (ApiKey::Metadata as i16, version, 5)
            );
            assert_eq!(header.client_id.as_deref(), Some("me"));
            MetadataRequest::decode(&mut body, version).unwrap();
            assert!(!body.has_remaining(), "v{version}");
        }
        let body = request_body(ApiKey::ApiVersions, 3, 1, "", &ApiVersionsRequest::default());
        assert_eq!(&body[8..10], &[0, 0], "an empty client id is a string of length 0, not null");
    }

    #[test]
    fn responses_use_the_header_brokers_send() {
        let mut body = response_body(ApiKey::Metadata, 12, 42, &MetadataResponse::default());
        assert_eq!(ResponseHeader::decode(&mut body, 1).unwrap().correlation_id, 42);
        MetadataResponse::decode(&mut body, 12).unwrap();
        assert!(!body.has_remaining());

        let frame = response_frame(ApiKey::ApiVersions, 3, 7, &ApiVersionsResponse::default());
        let mut body = frame.slice(LENGTH_PREFIX..);
        assert_eq!(ResponseHeader::decode(&mut body, 0).unwrap().correlation_id, 7);
        ApiVersionsResponse::decode(&mut body, 3).unwrap();
        assert!(!body.has_remaining(), "ApiVersions answers with header v0 even at v3");
    }

    #[test]
    #[should_panic(expected = "cannot encode Metadata request v99")]
    fn unencodable_versions_panic_with_the_api_and_version() {
        request_frame(ApiKey::Metadata, 99, 1, "", &MetadataRequest::default());
    }
}
