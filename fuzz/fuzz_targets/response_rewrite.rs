//! `relay_response`, which points every broker address in a response at kaos.
//!
//! Input: one byte that picks the API (Metadata, FindCoordinator, DescribeCluster, ApiVersions,
//! Produce, Fetch), one byte of version (as i8, modulo 20), one byte that picks kaos's port
//! start, then the response frame body (header and message, no length prefix).
//!
//! Checks: it never panics; what it returns is a length-prefixed frame whose prefix is its
//! length; an ApiVersions body it could not rewrite is relayed byte for byte; any other frame
//! decodes again; every broker in it with a node id points at kaos; and a rewritten ApiVersions
//! never advertises a version kaos cannot decode.
#![no_main]

use bytes::Bytes;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, DescribeClusterResponse, FetchResponse, FindCoordinatorResponse,
    MetadataResponse, ProduceResponse, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, StrBytes};
use kaos::proxy::rewrite::{BrokerPorts, Learned, decode_cap, relay_response};
use kaos::wire::decodable;
use kaos_fuzz::{REWRITTEN_APIS, Reader};
use libfuzzer_sys::fuzz_target;

const UNSUPPORTED_VERSION: i16 = 35;

fuzz_target!(|data: &[u8]| {
    let mut input = Reader::new(data);
    let api = REWRITTEN_APIS[usize::from(input.u8()) % REWRITTEN_APIS.len()];
    let version = i16::from(input.u8() as i8) % 20;
    let port_start = [6969, 0, 65_534, 9000][usize::from(input.u8() % 4)];
    let body = Bytes::copy_from_slice(input.rest());
    let ports = BrokerPorts::new("kaos.local", port_start);
    let mut learned = Learned::default();

    let Ok(relayed) = relay_response(api as i16, version, body.clone(), &ports, &mut learned) else {
        return;
    };
    let frame = relayed.frame;
    let declared = frame.first_chunk::<4>().map(|b| i32::from_be_bytes(*b));
    assert_eq!(declared.map(i64::from), Some(frame.len() as i64 - 4), "length prefix");
    let mut out = frame.freeze().slice(4..);

    if api == ApiKey::ApiVersions {
        let error_at = |b: &Bytes| b.get(4..6).map(|e| i16::from_be_bytes([e[0], e[1]]));
        let undecodable = !decodable(api, version) && error_at(&body) != Some(UNSUPPORTED_VERSION);
        if undecodable || relayed.not_rewritten.is_some() {
            assert_eq!(out, body, "relayed as is");
            return;
        }
        let body_version = if error_at(&out) == Some(UNSUPPORTED_VERSION) { 0 } else { version };
        ResponseHeader::decode(&mut out, 0).expect("the header decodes again");
        let message = ApiVersionsResponse::decode(&mut out, body_version).expect("it decodes again");
        for entry in &message.api_keys {
            if let Some(cap) = decode_cap(entry.api_key) {
                assert!(entry.max_version <= cap, "{entry:?} above {cap}");
            }
        }
        return;
    }

    assert!(decodable(api, version), "{api:?} v{version} relayed without decoding");
    let header_version = api.response_header_version(version);
    ResponseHeader::decode(&mut out, header_version).expect("the header decodes again");
    let brokers: Vec<(i32, StrBytes, i32)> = match api {
        ApiKey::Metadata => {
            let m = MetadataResponse::decode(&mut out, version).expect("it decodes again");
            m.brokers.iter().map(|b| (b.node_id.0, b.host.clone(), b.port)).collect()
        }
        ApiKey::FindCoordinator => {
            let m = FindCoordinatorResponse::decode(&mut out, version).expect("it decodes again");
            let mut all: Vec<_> =
                m.coordinators.iter().map(|c| (c.node_id.0, c.host.clone(), c.port)).collect();
            if version < 4 {
                all.push((m.node_id.0, m.host.clone(), m.port));
            }
            all
        }
        ApiKey::DescribeCluster => {
            let m = DescribeClusterResponse::decode(&mut out, version).expect("it decodes again");
            m.brokers.iter().map(|b| (b.broker_id.0, b.host.clone(), b.port)).collect()
        }
        ApiKey::Produce => {
            let m = ProduceResponse::decode(&mut out, version).expect("it decodes again");
            m.node_endpoints.iter().map(|e| (e.node_id.0, e.host.clone(), e.port)).collect()
        }
        ApiKey::Fetch => {
            let m = FetchResponse::decode(&mut out, version).expect("it decodes again");
            m.node_endpoints.iter().map(|e| (e.node_id.0, e.host.clone(), e.port)).collect()
        }
        other => unreachable!("{other:?} is not fuzzed"),
    };
    for (node_id, host, port) in brokers.into_iter().filter(|(node_id, ..)| *node_id >= 0) {
        let kaos_port = ports.port_for(node_id).map(i32::from);
        assert_eq!(
            (host.as_str(), Some(port)),
            ("kaos.local", kaos_port),
            "broker {node_id} leaks past kaos"
        );
    }
    assert!(learned.brokers.iter().all(|b| b.node_id >= 0 && ports.port_for(b.node_id).is_some()));
});
