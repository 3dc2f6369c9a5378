//! The upstream cluster as kaos knows it: which brokers exist and whether the cluster answers.
//!
//! A plain thread asks the bootstrap servers for Metadata every second. It publishes the broker
//! list through arc-swap (the shards open a port for each new broker) and drives `/ready`.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::BytesMut;
use kafka_protocol::messages::{ApiKey, MetadataRequest, MetadataResponse, RequestHeader};
use kafka_protocol::protocol::StrBytes;
use rustls::ClientConfig;

use crate::shared::Shared;
use crate::wire::CodecError;
use crate::wire::codec::{decode_response, encode_frame};
use tracing::{info, warn};

const METADATA_VERSION: i16 = 1;
const POLL_INTERVAL: Duration = Duration::from_secs(1);
const IO_TIMEOUT: Duration = Duration::from_secs(2);

/// Real broker addresses by node id, with a generation that changes whenever they do.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Topology {
    pub generation: u64,
    pub brokers: BTreeMap<i32, String>,
}

pub fn spawn_watcher(
    bootstrap: Vec<String>,
    shared: Arc<Shared>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name("cluster-watcher".into()).spawn(move || {
        let mut first_attempt = true;
        while !shared.shutting_down.load(Ordering::Relaxed) {
            match fetch_brokers(&bootstrap, shared.tls.upstream.as_ref()) {
                Ok(brokers) => {
                    if !shared.upstream_ready.swap(true, Ordering::Relaxed) {
                        info!(?brokers, "upstream cluster answered Metadata");
                    }
                    let current = shared.topology.load();
                    if current.brokers != brokers {
                        shared
                            .topology
                            .store(Arc::new(Topology { generation: current.generation + 1, brokers }));
                    }
                }
                Err(why) => {
                    if shared.upstream_ready.swap(false, Ordering::Relaxed) {
                        warn!(error = %why, "upstream cluster stopped answering Metadata");
                    } else if first_attempt {
                        warn!(error = %why, "upstream cluster not answering Metadata yet (retrying every second)");
                    }
                }
            }
            first_attempt = false;
            shared.sleep_unless_shutting_down(POLL_INTERVAL);
        }
    })
}

/// Why a bootstrap server gave no broker list.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error("{server}: {source}")]
    Io { server: String, source: std::io::Error },
    #[error("{server}: the name resolves to no address")]
    NoAddress { server: String },
    #[error("{server}: Metadata response of {length} bytes is implausible")]
    Implausible { server: String, length: i64 },
    #[error("{server}: {source}")]
    Decode { server: String, source: CodecError },
    #[error("{server}: TLS: {why}")]
    Tls { server: String, why: String },
    #[error("no bootstrap server answered: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    NoneAnswered(Vec<MetadataError>),
}

/// Asks each bootstrap server in turn for the broker list until one answers, over TLS when
/// `tls` is given.
pub fn fetch_brokers(
    bootstrap: &[String],
    tls: Option<&Arc<ClientConfig>>,
) -> Result<BTreeMap<i32, String>, MetadataError> {
    let mut failures = Vec::new();
    for server in bootstrap {
        match metadata_from(server, tls) {
            Ok(brokers) => return Ok(brokers),
            Err(why) => failures.push(why),
        }
    }
    Err(MetadataError::NoneAnswered(failures))
}

fn metadata_from(
    server: &str,
    tls: Option<&Arc<ClientConfig>>,
) -> Result<BTreeMap<i32, String>, MetadataError> {
    let io = |source| MetadataError::Io { server: server.to_owned(), source };
    let address = server
        .to_socket_addrs()
        .map_err(io)?
        .next()
        .ok_or(MetadataError::NoAddress { server: server.to_owned() })?;
    let tcp = TcpStream::connect_timeout(&address, IO_TIMEOUT).map_err(io)?;
    tcp.set_read_timeout(Some(IO_TIMEOUT)).map_err(io)?;
    tcp.set_write_timeout(Some(IO_TIMEOUT)).map_err(io)?;
    let mut stream: Box<dyn ReadWrite> = match tls {
        None => Box::new(tcp),
        Some(config) => {
            let tls_error = |why: String| MetadataError::Tls { server: server.to_owned(), why };
            let name = crate::tls::server_name(server).map_err(|e| tls_error(e.to_string()))?;
            let session =
                rustls::ClientConnection::new(config.clone(), name).map_err(|e| tls_error(e.to_string()))?;
            Box::new(rustls::StreamOwned::new(session, tcp))
        }
    };
    stream.write_all(&metadata_request()).map_err(io)?;

    let mut length = [0u8; 4];
    stream.read_exact(&mut length).map_err(io)?;
    let length = i32::from_be_bytes(length);
    if !(0..=64 << 20).contains(&length) {
        return Err(MetadataError::Implausible { server: server.to_owned(), length: length.into() });
    }
    let mut body = vec![0u8; length as usize];
    stream.read_exact(&mut body).map_err(io)?;
    let (_, response): (_, MetadataResponse) = decode_response(ApiKey::Metadata, METADATA_VERSION, &body)
        .map_err(|source| MetadataError::Decode { server: server.to_owned(), source })?;
    Ok(response.brokers.iter().map(|b| (b.node_id.0, format!("{}:{}", b.host.as_str(), b.port))).collect())
}

/// A blocking stream to a broker, plain or TLS.
trait ReadWrite: std::io::Read + std::io::Write {}
impl<T: std::io::Read + std::io::Write> ReadWrite for T {}

fn metadata_request() -> BytesMut {
    let header = RequestHeader::default()
        .with_request_api_key(ApiKey::Metadata as i16)
        .with_request_api_version(METADATA_VERSION)
        .with_correlation_id(1)
        .with_client_id(Some(StrBytes::from_static_str("kaos-cluster-watcher")));
    // An empty topic list asks for brokers only.
    let request = MetadataRequest::default().with_topics(Some(vec![]));
    let header_version = ApiKey::Metadata.request_header_version(METADATA_VERSION);
    encode_frame(ApiKey::Metadata, &header, header_version, &request, METADATA_VERSION)
        .expect("a static Metadata request encodes")
}
