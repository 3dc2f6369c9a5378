//! The upstream cluster as kaos knows it: which brokers exist and whether the cluster answers.
//!
//! A plain thread asks the bootstrap servers for Metadata every second, logged in as kaos where
//! `--upstream-sasl-*` asks for it. It publishes the broker list through arc-swap (the shards
//! open a port for each new broker) and drives `/ready`. A cluster that wants a SASL login kaos
//! does not have (the clients' own SASL passes through) still answers ApiVersions: it counts as
//! up, and the shards learn its brokers from the clients' Metadata responses instead.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::BytesMut;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, MetadataRequest, MetadataResponse, RequestHeader,
};
use kafka_protocol::protocol::{Encodable, StrBytes};
use rustls::ClientConfig;

use crate::sasl::login::{Credentials, LoginError, login_blocking};
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
        let mut said_login_required = false;
        while !shared.shutting_down.load(Ordering::Relaxed) {
            let upstream = Upstream { tls: shared.tls.upstream.as_ref(), sasl: shared.upstream_sasl.as_ref() };
            match fetch_brokers(&bootstrap, upstream) {
                Ok(brokers) => {
                    if shared.upstream_sasl.is_some() {
                        shared.upstream_login_failure.store(None);
                    }
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
                Err(why) if why.wants_login() => {
                    if !std::mem::replace(&mut said_login_required, true) {
                        info!(error = %why, "the cluster wants a SASL login: it is up (it answers ApiVersions), and kaos learns its brokers from the Metadata responses its clients receive (--upstream-sasl-* lets kaos log in and watch it itself)");
                    }
                    shared.upstream_ready.store(true, Ordering::Relaxed);
                }
                Err(why) => {
                    if let (Some((server, login)), Some(credentials)) = (why.login_failure(), &shared.upstream_sasl) {
                        let failure = credentials.refused_by(server, login);
                        shared.upstream_login_failure.store(Some(Arc::new(failure)));
                    }
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
    #[error("{server}: closed the connection at Metadata after answering ApiVersions: it wants a SASL login")]
    LoginRequired { server: String },
    #[error("{server}: SASL login: {source}")]
    Login { server: String, source: LoginError },
    #[error("no bootstrap server answered: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    NoneAnswered(Vec<MetadataError>),
}

impl MetadataError {
    /// Why the brokers refused kaos's login (`--upstream-sasl-*`), if that is what went wrong.
    fn login_failure(&self) -> Option<(&str, &LoginError)> {
        match self {
            MetadataError::Login { server, source } => Some((server, source)),
            MetadataError::NoneAnswered(failures) => failures.iter().find_map(MetadataError::login_failure),
            _ => None,
        }
    }

    /// Every server that answered wants a SASL login kaos does not have.
    fn wants_login(&self) -> bool {
        match self {
            MetadataError::LoginRequired { .. } => true,
            MetadataError::NoneAnswered(failures) => {
                !failures.is_empty() && failures.iter().all(MetadataError::wants_login)
            }
            _ => false,
        }
    }
}

/// How the watcher reaches the brokers: over TLS, logged in, or neither.
#[derive(Debug, Clone, Copy, Default)]
pub struct Upstream<'a> {
    pub tls: Option<&'a Arc<ClientConfig>>,
    pub sasl: Option<&'a Credentials>,
}

/// Asks each bootstrap server in turn for the broker list until one answers.
pub fn fetch_brokers(
    bootstrap: &[String],
    upstream: Upstream,
) -> Result<BTreeMap<i32, String>, MetadataError> {
    let mut failures = Vec::new();
    for server in bootstrap {
        match metadata_from(server, upstream) {
            Ok(brokers) => return Ok(brokers),
            Err(why) => failures.push(why),
        }
    }
    Err(MetadataError::NoneAnswered(failures))
}

fn metadata_from(server: &str, upstream: Upstream) -> Result<BTreeMap<i32, String>, MetadataError> {
    let io = |source| MetadataError::Io { server: server.to_owned(), source };
    let address = server
        .to_socket_addrs()
        .map_err(io)?
        .next()
        .ok_or(MetadataError::NoAddress { server: server.to_owned() })?;
    let tcp = TcpStream::connect_timeout(&address, IO_TIMEOUT).map_err(io)?;
    tcp.set_read_timeout(Some(IO_TIMEOUT)).map_err(io)?;
    tcp.set_write_timeout(Some(IO_TIMEOUT)).map_err(io)?;
    let mut stream: Box<dyn ReadWrite> = match upstream.tls {
        None => Box::new(tcp),
        Some(config) => {
            let tls_error = |why: String| MetadataError::Tls { server: server.to_owned(), why };
            let name = crate::tls::server_name(server).map_err(|e| tls_error(e.to_string()))?;
            let session =
                rustls::ClientConnection::new(config.clone(), name).map_err(|e| tls_error(e.to_string()))?;
            Box::new(rustls::StreamOwned::new(session, tcp))
        }
    };
    match upstream.sasl {
        Some(credentials) => login_blocking(&mut stream, credentials)
            .map(drop)
            .map_err(|source| MetadataError::Login { server: server.to_owned(), source })?,
        // Every broker answers ApiVersions before a login, so a broker that then closes at
        // Metadata is one that wants a login.
        None => {
            stream.write_all(&api_versions_request()).map_err(io)?;
            read_frame(&mut *stream, server)?;
        }
    }
    stream.write_all(&metadata_request()).map_err(io)?;
    let body = match read_frame(&mut *stream, server) {
        Err(MetadataError::Io { source, .. })
            if upstream.sasl.is_none()
                && matches!(
                    source.kind(),
                    std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset
                ) =>
        {
            return Err(MetadataError::LoginRequired { server: server.to_owned() });
        }
        other => other?,
    };
    let (_, response): (_, MetadataResponse) = decode_response(ApiKey::Metadata, METADATA_VERSION, &body)
        .map_err(|source| MetadataError::Decode { server: server.to_owned(), source })?;
    Ok(response.brokers.iter().map(|b| (b.node_id.0, format!("{}:{}", b.host.as_str(), b.port))).collect())
}

fn read_frame(stream: &mut dyn ReadWrite, server: &str) -> Result<Vec<u8>, MetadataError> {
    let io = |source| MetadataError::Io { server: server.to_owned(), source };
    let mut length = [0u8; 4];
    stream.read_exact(&mut length).map_err(io)?;
    let length = i32::from_be_bytes(length);
    if !(0..=64 << 20).contains(&length) {
        return Err(MetadataError::Implausible { server: server.to_owned(), length: length.into() });
    }
    let mut body = vec![0u8; length as usize];
    stream.read_exact(&mut body).map_err(io)?;
    Ok(body)
}

/// A blocking stream to a broker, plain or TLS.
trait ReadWrite: std::io::Read + std::io::Write {}
impl<T: std::io::Read + std::io::Write> ReadWrite for T {}

fn api_versions_request() -> BytesMut {
    request(ApiKey::ApiVersions, 0, &ApiVersionsRequest::default())
}

fn metadata_request() -> BytesMut {
    // An empty topic list asks for brokers only.
    request(ApiKey::Metadata, METADATA_VERSION, &MetadataRequest::default().with_topics(Some(vec![])))
}

fn request<T: Encodable>(api: ApiKey, version: i16, message: &T) -> BytesMut {
    let header = RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(version)
        .with_correlation_id(1)
        .with_client_id(Some(StrBytes::from_static_str("kaos-cluster-watcher")));
    encode_frame(api, &header, api.request_header_version(version), message, version)
        .expect("a static request encodes")
}
