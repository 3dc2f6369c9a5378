//! Address rewrite: every broker address in a response is replaced by the kaos port that serves
//! that broker, so a client that bootstrapped through kaos never dials the real cluster.
//!
//! Rewritten APIs: Metadata, FindCoordinator (v0-3 fields and the v4+ list), DescribeCluster, and
//! the KIP-951 `node_endpoints` of Produce v10+ and Fetch v16+. ApiVersions is relayed with the
//! versions of those APIs capped at what kaos can decode.
//!
//! Transparent where it can be, closed where it must be ([`relay_response`]): an ApiVersions body
//! kaos cannot decode carries no address, so it goes to the client as it came (the client copes
//! with its broker's quirks as it would directly). A response that carries addresses and cannot
//! be rewritten never reaches the client; it gets a valid answer for its version without any
//! address instead, one it retries (no brokers, coordinator not available), never a closed
//! connection it would redial forever. A broker kaos has no port for is left out of responses.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, BrokerId, DescribeClusterResponse, FetchResponse, FindCoordinatorResponse,
    MetadataResponse, ProduceResponse, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use crate::wire::{CodecError, decodable, encode_frame, with_length_prefix};

/// Fetch v16+ may carry `node_endpoints` after megabytes of records, so finding them means
/// decoding every fetch response. kaos advertises Fetch up to v15 (KIP-951 is only a shortcut
/// for leader changes; clients fall back to a Metadata refresh) and decodes v16+ only from
/// clients that ignore the advertised range.
pub const FETCH_MAX_ADVERTISED: i16 = 15;

const UNSUPPORTED_VERSION: i16 = 35;

/// Where kaos serves each broker: `advertised_host:(port_start + 1 + node_id)`.
#[derive(Debug, Clone)]
pub struct BrokerPorts {
    pub advertised_host: StrBytes,
    pub port_start: u16,
}

impl BrokerPorts {
    pub fn new(advertised_host: &str, port_start: u16) -> BrokerPorts {
        BrokerPorts { advertised_host: StrBytes::from_string(advertised_host.to_owned()), port_start }
    }

    /// The kaos port for broker `node_id`, or `None` when it falls outside 1..=65535.
    pub fn port_for(&self, node_id: i32) -> Option<u16> {
        let port = i64::from(self.port_start) + 1 + i64::from(node_id);
        u16::try_from(port).ok().filter(|_| node_id >= 0)
    }
}

/// What a rewritten response taught kaos about the cluster.
#[derive(Debug, Default)]
pub struct Learned {
    /// Real broker addresses, before they were rewritten.
    pub brokers: Vec<SeenBroker>,
    /// Topic ids and names (Metadata v10+), to apply topic rules to requests that use ids.
    pub topics: Vec<([u8; 16], String)>,
    /// Brokers left out because they have no kaos port (port-start + 1 + id > 65535).
    pub unmappable: Vec<i32>,
}

/// A real broker address seen in a response, before it was rewritten.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenBroker {
    pub node_id: i32,
    pub address: String,
}

/// Why a response could not be rewritten.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RewriteError {
    #[error("response: {0}")]
    Codec(#[from] CodecError),
    #[error("{api:?} v{version} carries broker addresses kaos cannot decode; refusing to leak them")]
    UnsupportedVersion { api: ApiKey, version: i16 },
}

/// A response on its way to the client.
#[derive(Debug)]
pub struct Relayed {
    pub frame: BytesMut,
    /// Why it is not the rewritten response: relayed as it came (ApiVersions), or replaced by an
    /// answer without addresses. Worth a log line once per broker.
    pub not_rewritten: Option<RewriteError>,
}

/// Rewrites one response body (after the length prefix) for the client; a body that cannot be
/// rewritten is relayed as it came when it carries no address (ApiVersions), else replaced by a
/// valid answer for its version that carries none. Errs only when even that cannot be encoded.
pub fn relay_response(
    api_key: i16,
    api_version: i16,
    body: Bytes,
    ports: &BrokerPorts,
    learned: &mut Learned,
) -> Result<Relayed, RewriteError> {
    let why = match rewrite_response(api_key, api_version, body.clone(), ports, learned) {
        Ok(frame) => return Ok(Relayed { frame, not_rewritten: None }),
        Err(why) => why,
    };
    let frame = match ApiKey::try_from(api_key) {
        Ok(ApiKey::ApiVersions) | Err(_) => with_length_prefix(&body),
        Ok(api) => {
            let correlation_id = crate::wire::frame::response_correlation_id(&body).unwrap_or(0);
            without_addresses(api, api_version, correlation_id)?
        }
    };
    Ok(Relayed { frame, not_rewritten: Some(why) })
}

/// The answer a client gets in place of a response whose addresses kaos cannot rewrite: valid
/// for the request's version, with no address, and an error or emptiness the client retries.
fn without_addresses(api: ApiKey, version: i16, correlation_id: i32) -> Result<BytesMut, RewriteError> {
    const UNKNOWN_SERVER_ERROR: i16 = -1;
    const COORDINATOR_NOT_AVAILABLE: i16 = 15;
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let header_version = api.response_header_version(version);
    let why =
        || Some(StrBytes::from_static_str("kaos could not rewrite the broker addresses in this response"));
    let frame = match api {
        // No brokers and no topics: the client refreshes its metadata again after its backoff.
        ApiKey::Metadata => {
            let response = MetadataResponse::default().with_controller_id(BrokerId(-1));
            encode_frame(api, &header, header_version, &response, version)
        }
        // v0-3: one coordinator, not available; v4+ lists coordinators by key, and an empty
        // list has none for the key the client asked about.
        ApiKey::FindCoordinator if version < 4 => {
            let response = FindCoordinatorResponse::default()
                .with_error_code(COORDINATOR_NOT_AVAILABLE)
                .with_error_message(why())
                .with_node_id(BrokerId(-1))
                .with_port(-1);
            encode_frame(api, &header, header_version, &response, version)
        }
        ApiKey::FindCoordinator => {
            encode_frame(api, &header, header_version, &FindCoordinatorResponse::default(), version)
        }
        ApiKey::DescribeCluster => {
            let response = DescribeClusterResponse::default()
                .with_error_code(UNKNOWN_SERVER_ERROR)
                .with_error_message(why())
                .with_controller_id(BrokerId(-1));
            encode_frame(api, &header, header_version, &response, version)
        }
        // No partition answered: the client retries the ones it is missing.
        ApiKey::Produce => encode_frame(api, &header, header_version, &ProduceResponse::default(), version),
        ApiKey::Fetch => {
            let response = FetchResponse::default().with_error_code(UNKNOWN_SERVER_ERROR);
            encode_frame(api, &header, header_version, &response, version)
        }
        _ => return Err(RewriteError::UnsupportedVersion { api, version }),
    };
    Ok(frame?)
}

/// Whether responses to this request must be decoded and rewritten.
pub fn needs_rewrite(api_key: i16, api_version: i16) -> bool {
    match ApiKey::try_from(api_key) {
        Ok(ApiKey::Metadata | ApiKey::FindCoordinator | ApiKey::DescribeCluster | ApiKey::ApiVersions) => {
            true
        }
        Ok(ApiKey::Produce) => api_version >= 10,
        Ok(ApiKey::Fetch) => api_version >= 16,
        _ => false,
    }
}

/// Rewrites one response body (after the length prefix). Returns the new frame with its length
/// prefix, and reports the broker addresses it replaced and the topic ids it saw in `learned`.
fn rewrite_response(
    api_key: i16,
    api_version: i16,
    body: Bytes,
    ports: &BrokerPorts,
    learned: &mut Learned,
) -> Result<BytesMut, RewriteError> {
    let Ok(api) = ApiKey::try_from(api_key) else {
        return Ok(with_length_prefix(&body));
    };
    let mut mapper = Mapper { ports, seen: &mut learned.brokers, unmappable: &mut learned.unmappable };
    let topics = &mut learned.topics;
    if api == ApiKey::ApiVersions {
        return cap_api_versions(api_version, body);
    }
    if !decodable(api, api_version) {
        return Err(RewriteError::UnsupportedVersion { api, version: api_version });
    }
    match api {
        ApiKey::Metadata => reencode(api, api_version, body, |m: &mut MetadataResponse| {
            for topic in &m.topics {
                if let Some(name) = topic.name.as_ref().filter(|_| !topic.topic_id.is_nil()) {
                    topics.push((*topic.topic_id.as_bytes(), name.0.to_string()));
                }
            }
            m.brokers.retain_mut(|b| mapper.map(&mut b.node_id.0, &mut b.host, &mut b.port));
        }),
        ApiKey::FindCoordinator => {
            reencode(api, api_version, body, |m: &mut FindCoordinatorResponse| {
                // v0-3 carry one coordinator in top-level fields; v4+ a list (top level unused).
                if api_version < 4 && !mapper.map(&mut m.node_id.0, &mut m.host, &mut m.port) {
                    (m.error_code, m.node_id.0, m.host, m.port) = coordinator_not_available();
                }
                for c in &mut m.coordinators {
                    if !mapper.map(&mut c.node_id.0, &mut c.host, &mut c.port) {
                        (c.error_code, c.node_id.0, c.host, c.port) = coordinator_not_available();
                    }
                }
            })
        }
        ApiKey::DescribeCluster => reencode(api, api_version, body, |m: &mut DescribeClusterResponse| {
            m.brokers.retain_mut(|b| mapper.map(&mut b.broker_id.0, &mut b.host, &mut b.port));
        }),
        ApiKey::Produce => reencode(api, api_version, body, |m: &mut ProduceResponse| {
            m.node_endpoints.retain_mut(|e| mapper.map(&mut e.node_id.0, &mut e.host, &mut e.port));
        }),
        ApiKey::Fetch => reencode(api, api_version, body, |m: &mut FetchResponse| {
            m.node_endpoints.retain_mut(|e| mapper.map(&mut e.node_id.0, &mut e.host, &mut e.port));
        }),
        _ => Ok(with_length_prefix(&body)),
    }
}

/// A coordinator kaos cannot point at itself: (error, node id, host, port) of one not available,
/// which the client looks up again.
fn coordinator_not_available() -> (i16, i32, StrBytes, i32) {
    (15, -1, StrBytes::default(), -1)
}

struct Mapper<'a> {
    ports: &'a BrokerPorts,
    seen: &'a mut Vec<SeenBroker>,
    unmappable: &'a mut Vec<i32>,
}

impl Mapper<'_> {
    /// Points one (node id, host, port) triple at kaos; false for a broker kaos has no port for,
    /// which must be left out. Negative ids mean "no broker" (for example a coordinator that is
    /// not available yet) and are left alone.
    fn map(&mut self, node_id: &mut i32, host: &mut StrBytes, port: &mut i32) -> bool {
        if *node_id < 0 {
            return true;
        }
        let Some(kaos_port) = self.ports.port_for(*node_id) else {
            self.unmappable.push(*node_id);
            return false;
        };
        self.seen.push(SeenBroker { node_id: *node_id, address: format!("{}:{}", host.as_str(), port) });
        *host = self.ports.advertised_host.clone();
        *port = i32::from(kaos_port);
        true
    }
}

fn reencode<T: Decodable + Encodable>(
    api: ApiKey,
    version: i16,
    mut body: Bytes,
    edit: impl FnOnce(&mut T),
) -> Result<BytesMut, RewriteError> {
    let decode_error = decode_error(api, version);
    let header_version = api.response_header_version(version);
    let header = ResponseHeader::decode(&mut body, header_version).map_err(decode_error)?;
    let mut message = T::decode(&mut body, version).map_err(decode_error)?;
    edit(&mut message);
    Ok(encode_frame(api, &header, header_version, &message, version)?)
}

fn decode_error<E: std::fmt::Display>(api: ApiKey, version: i16) -> impl Fn(E) -> RewriteError + Copy {
    move |e| RewriteError::Codec(CodecError::Decode { api, version, why: e.to_string() })
}

/// Relays ApiVersions with each rewritten API capped at the highest version kaos decodes; a body
/// that needs no cap goes out byte for byte. Brokers answer an unsupported ApiVersions request
/// with a v0 body, whatever was asked.
fn cap_api_versions(version: i16, body: Bytes) -> Result<BytesMut, RewriteError> {
    let api = ApiKey::ApiVersions;
    if !decodable(api, version) && body.get(4..6) != Some(&UNSUPPORTED_VERSION.to_be_bytes()) {
        // Newer than kaos decodes: relay as is. It carries no addresses and caps nothing we
        // could enforce; the capped APIs are re-checked on every response.
        return Ok(with_length_prefix(&body));
    }
    let decode_error = decode_error(api, version);
    let mut rest = body.clone();
    let header = ResponseHeader::decode(&mut rest, 0).map_err(decode_error)?;
    let body_version = if rest.get(..2) == Some(&UNSUPPORTED_VERSION.to_be_bytes()) { 0 } else { version };
    let mut message = ApiVersionsResponse::decode(&mut rest, body_version).map_err(decode_error)?;
    if !rest.is_empty() {
        let why = format!("{} bytes after the body", rest.len());
        return Err(RewriteError::Codec(CodecError::Decode { api, version, why }));
    }
    let mut capped = false;
    for entry in &mut message.api_keys {
        if let Some(cap) = decode_cap(entry.api_key).filter(|&cap| entry.max_version > cap) {
            entry.max_version = cap;
            capped = true;
        }
    }
    if !capped {
        return Ok(with_length_prefix(&body));
    }
    Ok(encode_frame(api, &header, 0, &message, body_version)?)
}

/// The highest version kaos advertises for an API whose responses it decodes.
pub fn decode_cap(api_key: i16) -> Option<i16> {
    let api = ApiKey::try_from(api_key).ok()?;
    match api {
        ApiKey::Fetch => Some(FETCH_MAX_ADVERTISED),
        ApiKey::Metadata
        | ApiKey::FindCoordinator
        | ApiKey::DescribeCluster
        | ApiKey::ApiVersions
        | ApiKey::Produce => Some(api.valid_versions().max),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::api_versions_response::ApiVersion;
    use kafka_protocol::messages::find_coordinator_response::Coordinator;
    use kafka_protocol::messages::metadata_response::MetadataResponseBroker;
    use kafka_protocol::messages::{BrokerId, produce_response};
    use kaos_testkit::frames::response_body;

    fn ports() -> BrokerPorts {
        BrokerPorts::new("kaos.local", 6969)
    }

    fn body_of<T: Encodable>(api: ApiKey, version: i16, message: &T) -> Bytes {
        response_body(api, version, 42, message)
    }

    fn decode<T: Decodable>(api: ApiKey, version: i16, frame: BytesMut) -> T {
        let mut body = frame.freeze();
        let declared = i32::from_be_bytes(body[..4].try_into().unwrap()) as usize;
        assert_eq!(declared, body.len() - 4, "length prefix");
        let _ = body.split_to(4);
        let header = ResponseHeader::decode(&mut body, api.response_header_version(version)).unwrap();
        assert_eq!(header.correlation_id, 42);
        T::decode(&mut body, version).unwrap()
    }

    fn broker(id: i32, host: &str, port: i32) -> MetadataResponseBroker {
        MetadataResponseBroker::default()
            .with_node_id(BrokerId(id))
            .with_host(StrBytes::from_string(host.into()))
            .with_port(port)
    }

    #[test]
    fn port_mapping_is_deterministic_and_bounded() {
        let p = ports();
        assert_eq!(p.port_for(0), Some(6970));
        assert_eq!(p.port_for(1), Some(6971));
        assert_eq!(p.port_for(111), Some(7081));
        assert_eq!(p.port_for(-1), None);
        assert_eq!(p.port_for(70_000), None);
    }

    #[test]
    fn metadata_brokers_point_at_kaos_in_every_version() {
        for version in 0..=13 {
            let response = MetadataResponse::default()
                .with_brokers(vec![broker(1, "kafka-1", 9092), broker(2, "kafka-2", 9093)]);
            let mut learned = Learned::default();
            let frame = rewrite_response(
                3,
                version,
                body_of(ApiKey::Metadata, version, &response),
                &ports(),
                &mut learned,
            )
            .unwrap();
            let seen = learned.brokers;
            let out: MetadataResponse = decode(ApiKey::Metadata, version, frame);
            let addresses: Vec<_> =
                out.brokers.iter().map(|b| (b.node_id.0, b.host.to_string(), b.port)).collect();
            assert_eq!(
                addresses,
                vec![(1, "kaos.local".into(), 6971), (2, "kaos.local".into(), 6972)],
                "v{version}"
            );
            assert_eq!(seen[1], SeenBroker { node_id: 2, address: "kafka-2:9093".into() });
        }
    }

    #[test]
    fn metadata_teaches_topic_ids() {
        use kafka_protocol::messages::TopicName;
        use kafka_protocol::messages::metadata_response::MetadataResponseTopic;
        let id = uuid::Uuid::from_bytes([7; 16]);
        let topic = MetadataResponseTopic::default()
            .with_name(Some(TopicName(StrBytes::from_static_str("orders"))))
            .with_topic_id(id);
        let response = MetadataResponse::default().with_topics(vec![topic]);
        let mut learned = Learned::default();
        rewrite_response(3, 12, body_of(ApiKey::Metadata, 12, &response), &ports(), &mut learned).unwrap();
        assert_eq!(learned.topics, vec![([7; 16], "orders".to_owned())]);
    }

    #[test]
    fn find_coordinator_rewrites_both_layouts_and_keeps_errors() {
        for version in 0..=6 {
            let mut response = FindCoordinatorResponse::default();
            if version < 4 {
                response.node_id = BrokerId(3);
                response.host = StrBytes::from_static_str("kafka-3");
                response.port = 9094;
            } else {
                let found = Coordinator::default()
                    .with_key(StrBytes::from_static_str("group-a"))
                    .with_node_id(BrokerId(3))
                    .with_host(StrBytes::from_static_str("kafka-3"))
                    .with_port(9094);
                let missing = Coordinator::default()
                    .with_key(StrBytes::from_static_str("group-b"))
                    .with_node_id(BrokerId(-1))
                    .with_error_code(15)
                    .with_port(-1);
                response.coordinators = vec![found, missing];
            }
            let frame = rewrite_response(
                10,
                version,
                body_of(ApiKey::FindCoordinator, version, &response),
                &ports(),
                &mut Learned::default(),
            )
            .unwrap();
            let out: FindCoordinatorResponse = decode(ApiKey::FindCoordinator, version, frame);
            if version < 4 {
                assert_eq!((out.host.as_str(), out.port), ("kaos.local", 6973));
            } else {
                assert_eq!(
                    (out.coordinators[0].host.as_str(), out.coordinators[0].port),
                    ("kaos.local", 6973)
                );
                assert_eq!((out.coordinators[1].node_id.0, out.coordinators[1].port), (-1, -1));
            }
        }
    }

    #[test]
    fn kip951_node_endpoints_are_rewritten() {
        let endpoint = produce_response::NodeEndpoint::default()
            .with_node_id(BrokerId(5))
            .with_host(StrBytes::from_static_str("kafka-5"))
            .with_port(9099);
        let response = ProduceResponse::default().with_node_endpoints(vec![endpoint]);
        let frame = rewrite_response(
            0,
            10,
            body_of(ApiKey::Produce, 10, &response),
            &ports(),
            &mut Learned::default(),
        )
        .unwrap();
        let out: ProduceResponse = decode(ApiKey::Produce, 10, frame);
        assert_eq!((out.node_endpoints[0].host.as_str(), out.node_endpoints[0].port), ("kaos.local", 6975));
        assert!(
            needs_rewrite(0, 10) && !needs_rewrite(0, 9) && needs_rewrite(1, 16) && !needs_rewrite(1, 15)
        );
    }

    #[test]
    fn api_versions_are_capped_at_what_kaos_decodes() {
        let entry = |key: ApiKey, max| ApiVersion::default().with_api_key(key as i16).with_max_version(max);
        let response = ApiVersionsResponse::default().with_api_keys(vec![
            entry(ApiKey::Fetch, 17),
            entry(ApiKey::Metadata, 40),
            entry(ApiKey::JoinGroup, 40),
        ]);
        let body = body_of(ApiKey::ApiVersions, 3, &response); // header v0, as ApiVersions always is
        let frame = rewrite_response(18, 3, body, &ports(), &mut Learned::default()).unwrap();
        let mut body = frame.freeze().slice(4..);
        ResponseHeader::decode(&mut body, 0).unwrap();
        let out = ApiVersionsResponse::decode(&mut body, 3).unwrap();
        let maxes: Vec<_> = out.api_keys.iter().map(|k| k.max_version).collect();
        assert_eq!(maxes, vec![15, 13, 40]);
    }

    /// Found by fuzz/fuzz_targets/response_rewrite.rs: kafka-protocol keeps a tagged field
    /// numbered 2^31 or above under a negative key, counted and sized it but never wrote it, so
    /// the rewritten frame's length prefix promised bytes that never came (see
    /// vendor/kafka-protocol/KAOS-PATCH.md).
    #[test]
    fn tags_above_i32_max_survive_the_rewrite() {
        let mut entry = ApiVersion::default().with_api_key(ApiKey::Metadata as i16).with_max_version(13);
        entry.unknown_tagged_fields.insert(-1, Bytes::from_static(b"tag 2^32-1"));
        let response = ApiVersionsResponse::default().with_api_keys(vec![entry]);
        let header = ResponseHeader::default().with_correlation_id(42);
        let body = encode_frame(ApiKey::ApiVersions, &header, 0, &response, 3).unwrap().freeze().slice(4..);
        assert!(body.windows(5).any(|w| w == [0xff, 0xff, 0xff, 0xff, 0x0f]), "tag 2^32-1 on the wire");
        let frame = rewrite_response(18, 3, body, &ports(), &mut Learned::default()).unwrap();
        let mut out = frame.freeze();
        assert_eq!(i32::from_be_bytes(out[..4].try_into().unwrap()) as usize, out.len() - 4, "length prefix");
        let _ = out.split_to(4);
        ResponseHeader::decode(&mut out, 0).unwrap();
        let decoded = ApiVersionsResponse::decode(&mut out, 3).unwrap();
        assert_eq!(decoded.api_keys[0].unknown_tagged_fields[&-1], Bytes::from_static(b"tag 2^32-1"));
        assert!(out.is_empty());
    }

    #[test]
    fn brokers_without_a_kaos_port_are_left_out_not_leaked() {
        let response = MetadataResponse::default()
            .with_brokers(vec![broker(1, "kafka-1", 9092), broker(90_000, "big", 1)]);
        let mut learned = Learned::default();
        let frame = rewrite_response(3, 12, body_of(ApiKey::Metadata, 12, &response), &ports(), &mut learned)
            .unwrap();
        let out: MetadataResponse = decode(ApiKey::Metadata, 12, frame);
        assert_eq!(out.brokers.iter().map(|b| b.node_id.0).collect::<Vec<_>>(), vec![1]);
        assert_eq!(learned.unmappable, vec![90_000]);

        let response = FindCoordinatorResponse::default()
            .with_node_id(BrokerId(90_000))
            .with_host(StrBytes::from_static_str("big"))
            .with_port(1);
        let frame =
            rewrite_response(10, 3, body_of(ApiKey::FindCoordinator, 3, &response), &ports(), &mut learned)
                .unwrap();
        let out: FindCoordinatorResponse = decode(ApiKey::FindCoordinator, 3, frame);
        assert_eq!((out.error_code, out.node_id.0, out.host.as_str(), out.port), (15, -1, "", -1));
    }

    /// What a client gets when a response with addresses cannot be rewritten: a valid answer for
    /// its version, with its correlation id and no address, that it retries.
    #[test]
    fn responses_with_addresses_kaos_cannot_decode_get_an_answer_without_them() {
        let garbage = Bytes::from_static(&[0, 0, 0, 42, 0xff, 0xff, 0xff]);
        for (api, version) in [
            (ApiKey::Metadata, 12),
            (ApiKey::Metadata, 0),
            (ApiKey::FindCoordinator, 2),
            (ApiKey::FindCoordinator, 5),
            (ApiKey::DescribeCluster, 0),
            (ApiKey::Produce, 10),
            (ApiKey::Fetch, 16),
        ] {
            let relayed =
                relay_response(api as i16, version, garbage.clone(), &ports(), &mut Learned::default())
                    .unwrap_or_else(|e| panic!("{api:?} v{version}: {e}"));
            assert!(relayed.not_rewritten.is_some(), "{api:?} v{version}");
            match api {
                ApiKey::Metadata => {
                    assert!(decode::<MetadataResponse>(api, version, relayed.frame).brokers.is_empty())
                }
                ApiKey::FindCoordinator => {
                    let out: FindCoordinatorResponse = decode(api, version, relayed.frame);
                    assert!(out.coordinators.is_empty(), "{api:?} v{version}");
                    if version < 4 {
                        assert_eq!((out.error_code, out.port), (15, -1), "COORDINATOR_NOT_AVAILABLE");
                    }
                }
                ApiKey::DescribeCluster => {
                    let out: DescribeClusterResponse = decode(api, version, relayed.frame);
                    assert!(out.brokers.is_empty() && out.error_code != 0);
                }
                ApiKey::Produce => {
                    assert!(decode::<ProduceResponse>(api, version, relayed.frame).responses.is_empty())
                }
                _ => assert!(decode::<FetchResponse>(api, version, relayed.frame).responses.is_empty()),
            }
        }
        let unknown_version = relay_response(3, 99, garbage, &ports(), &mut Learned::default());
        assert!(unknown_version.is_err(), "a version kaos cannot even encode closes the connection");
    }

    /// librdkafka's mock cluster answers ApiVersions v3 with an array count of N instead of N+1
    /// and no tag buffer after each entry; clients cope, so kaos must pass it on as it came.
    #[test]
    fn an_api_versions_body_kaos_cannot_decode_is_relayed_byte_for_byte() {
        let mut body = vec![0, 0, 0, 42, 0, 0, 3]; // correlation id, no error, "3" entries
        for (key, max) in [(0i16, 10i16), (1, 16), (3, 12)] {
            body.extend_from_slice(&key.to_be_bytes());
            body.extend_from_slice(&0i16.to_be_bytes());
            body.extend_from_slice(&max.to_be_bytes());
        }
        body.extend_from_slice(&[0, 0, 0, 0, 0]); // throttle time, tag buffer
        let body = Bytes::from(body);
        let relayed = relay_response(18, 3, body.clone(), &ports(), &mut Learned::default()).unwrap();
        assert!(relayed.not_rewritten.is_some());
        assert_eq!(&relayed.frame[4..], &body[..]);
        assert_eq!(i32::from_be_bytes(relayed.frame[..4].try_into().unwrap()) as usize, body.len());
    }

    #[test]
    fn api_versions_that_need_no_cap_go_out_byte_for_byte() {
        let entry = |key: ApiKey, max| ApiVersion::default().with_api_key(key as i16).with_max_version(max);
        let response = ApiVersionsResponse::default()
            .with_api_keys(vec![entry(ApiKey::Fetch, 12), entry(ApiKey::JoinGroup, 40)]);
        let body = body_of(ApiKey::ApiVersions, 3, &response);
        let relayed = relay_response(18, 3, body.clone(), &ports(), &mut Learned::default()).unwrap();
        assert!(relayed.not_rewritten.is_none());
        assert_eq!(&relayed.frame[4..], &body[..]);
    }

    #[test]
    fn truncated_and_random_bodies_error_without_panicking() {
        let response = MetadataResponse::default().with_brokers(vec![broker(1, "kafka-1", 9092)]);
        let body = body_of(ApiKey::Metadata, 12, &response);
        for cut in 0..body.len() {
            assert!(
                rewrite_response(3, 12, body.slice(..cut), &ports(), &mut Learned::default()).is_err(),
                "cut {cut}"
            );
        }
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..5_000 {
            let bytes: Vec<u8> = (0..rng.usize(0..80)).map(|_| rng.u8(..)).collect();
            for (key, version) in [(3, 12), (3, 0), (10, 4), (60, 1), (18, 3), (0, 10)] {
                let _ = rewrite_response(
                    key,
                    version,
                    Bytes::from(bytes.clone()),
                    &ports(),
                    &mut Learned::default(),
                );
            }
        }
    }
}
