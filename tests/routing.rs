//! Port-per-broker routing for a cluster of several brokers, one joining later. tansu is a single
//! node (id 111), so this test stands up minimal Kafka endpoints that answer ApiVersions and
//! Metadata only, each naming itself in `cluster_id`, to see which broker a kaos port reaches.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use common::{Kaos, RawKafka};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::metadata_response::MetadataResponseBroker;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, BrokerId, MetadataRequest, MetadataResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

type Cluster = Arc<Mutex<Vec<(i32, u16)>>>;

/// A Kafka endpoint that answers ApiVersions and Metadata (listing `cluster`) and nothing else.
fn fake_broker(id: i32, cluster: Cluster) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let cluster = cluster.clone();
            thread::spawn(move || serve(id, stream, &cluster));
        }
    });
    port
}

fn serve(id: i32, mut stream: TcpStream, cluster: &Cluster) {
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    loop {
        let mut length = [0u8; 4];
        if stream.read_exact(&mut length).is_err() {
            return;
        }
        let mut body = vec![0u8; i32::from_be_bytes(length) as usize];
        if stream.read_exact(&mut body).is_err() {
            return;
        }
        let mut body = Bytes::from(body);
        let (api, version) = (i16::from_be_bytes([body[0], body[1]]), i16::from_be_bytes([body[2], body[3]]));
        let Ok(api) = ApiKey::try_from(api) else { return };
        let header = RequestHeader::decode(&mut body, api.request_header_version(version)).unwrap();
        let mut out = BytesMut::new();
        out.put_i32(0);
        match api {
            ApiKey::ApiVersions => {
                let entry =
                    |key: ApiKey, max| ApiVersion::default().with_api_key(key as i16).with_max_version(max);
                let response = ApiVersionsResponse::default()
                    .with_api_keys(vec![entry(ApiKey::ApiVersions, 3), entry(ApiKey::Metadata, 12)]);
                ResponseHeader::default()
                    .with_correlation_id(header.correlation_id)
                    .encode(&mut out, 0)
                    .unwrap();
                response.encode(&mut out, version.min(3)).unwrap();
            }
            ApiKey::Metadata => {
                let _ = MetadataRequest::decode(&mut body, version);
                let brokers = cluster
                    .lock()
                    .unwrap()
                    .iter()
                    .map(|&(node, port)| {
                        MetadataResponseBroker::default()
                            .with_node_id(BrokerId(node))
                            .with_host(StrBytes::from_static_str("127.0.0.1"))
                            .with_port(i32::from(port))
                    })
                    .collect();
                let response = MetadataResponse::default()
                    .with_brokers(brokers)
                    .with_cluster_id(Some(StrBytes::from_string(format!("fake-{id}"))))
                    .with_controller_id(BrokerId(1));
                let header_version = api.response_header_version(version);
                ResponseHeader::default()
                    .with_correlation_id(header.correlation_id)
                    .encode(&mut out, header_version)
                    .unwrap();
                response.encode(&mut out, version).unwrap();
            }
            _ => return,
        }
        let length = (out.len() - 4) as i32;
        out[..4].copy_from_slice(&length.to_be_bytes());
        if stream.write_all(&out).is_err() {
            return;
        }
    }
}

fn metadata(address: &str) -> MetadataResponse {
    RawKafka::connect(address).call(ApiKey::Metadata, 12, &MetadataRequest::default())
}

#[test]
fn every_broker_gets_its_own_port_including_one_that_joins_later() {
    let cluster: Cluster = Arc::default();
    let first = fake_broker(1, cluster.clone());
    let second = fake_broker(2, cluster.clone());
    cluster.lock().unwrap().extend([(1, first), (2, second)]);
    let kaos = Kaos::start(&format!("127.0.0.1:{first}"), &[]);

    let seen = metadata(&kaos.bootstrap());
    let ports: Vec<_> = seen.brokers.iter().map(|b| (b.node_id.0, b.host.to_string(), b.port)).collect();
    let kaos_port = |node: i32| i32::from(kaos.broker_port(node));
    assert_eq!(ports, vec![(1, "127.0.0.1".into(), kaos_port(1)), (2, "127.0.0.1".into(), kaos_port(2))]);
    for node in [1, 2] {
        let answered_by = metadata(&format!("127.0.0.1:{}", kaos.broker_port(node))).cluster_id.unwrap();
        assert_eq!(
            answered_by.as_str(),
            format!("fake-{node}"),
            "kaos port of broker {node} leads to broker {node}"
        );
    }

    // A third broker joins: the next Metadata names it, and its kaos port is open before the
    // client even reads that response.
    let third = fake_broker(3, cluster.clone());
    cluster.lock().unwrap().push((3, third));
    let seen = metadata(&kaos.bootstrap());
    assert!(seen.brokers.iter().any(|b| b.node_id.0 == 3 && b.port == kaos_port(3)), "{:?}", seen.brokers);
    let answered_by = metadata(&format!("127.0.0.1:{}", kaos.broker_port(3))).cluster_id.unwrap();
    assert_eq!(answered_by.as_str(), "fake-3");
    common::wait_until("kaos to log the new broker", Duration::from_secs(10), || {
        kaos.log()
            .lines()
            .any(|line| line.contains("broker 3 is served on") && line.contains("address=127.0.0.1:"))
    });
}
