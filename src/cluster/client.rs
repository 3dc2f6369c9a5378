//! A blocking connection to one broker, for the threads beside the shards (the cluster watcher
//! and the rules topic): TCP, then TLS and kaos's own SASL login where the flags ask for them,
//! then request after request. The shards never use it: their broker connections are async.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, RequestHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use rustls::ClientConfig;

use super::dial;
use crate::sasl::login::{Credentials, LoginError, login_blocking};
use crate::wire::CodecError;
use crate::wire::codec::{decode_response, encode_frame};

/// How a thread reaches the brokers: over TLS, logged in, or neither.
#[derive(Debug, Clone, Copy, Default)]
pub struct Upstream<'a> {
    pub tls: Option<&'a Arc<ClientConfig>>,
    pub sasl: Option<&'a Credentials>,
}

/// Why a broker gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("{server}: {source}")]
    Io { server: String, source: std::io::Error },
    #[error("{server}: the name resolves to no address")]
    NoAddress { server: String },
    #[error("{server}: an answer of {length} bytes is implausible")]
    Implausible { server: String, length: i64 },
    #[error("{server}: {source}")]
    Codec { server: String, source: CodecError },
    #[error("{server}: answered correlation id {got} to request {sent}")]
    OutOfOrder { server: String, sent: i32, got: i32 },
    #[error("{server}: TLS: {why}")]
    Tls { server: String, why: String },
    #[error("{server}: closed the connection after answering ApiVersions: it wants a SASL login")]
    LoginRequired { server: String },
    #[error("{server}: SASL login: {source}")]
    Login { server: String, source: LoginError },
    #[error("no bootstrap server answered: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    NoneAnswered(Vec<UpstreamError>),
}

impl UpstreamError {
    /// Why the brokers refused kaos's login (`--upstream-sasl-*`), if that is what went wrong.
    pub fn login_failure(&self) -> Option<(&str, &LoginError)> {
        match self {
            UpstreamError::Login { server, source } => Some((server, source)),
            UpstreamError::NoneAnswered(failures) => failures.iter().find_map(UpstreamError::login_failure),
            _ => None,
        }
    }

    /// Every server that answered wants a SASL login kaos does not have.
    pub fn wants_login(&self) -> bool {
        match self {
            UpstreamError::LoginRequired { .. } => true,
            UpstreamError::NoneAnswered(failures) => {
                !failures.is_empty() && failures.iter().all(UpstreamError::wants_login)
            }
            _ => false,
        }
    }
}

/// A blocking stream to a broker, plain or TLS.
trait ReadWrite: Read + Write + Send {}
impl<T: Read + Write + Send> ReadWrite for T {}

/// One broker, connected and (where `--upstream-sasl-*` asks) logged in.
pub struct BrokerClient {
    server: String,
    stream: Box<dyn ReadWrite>,
    client_id: &'static str,
    correlation_id: i32,
    /// Not logged in, and nothing but ApiVersions answered yet: a close now means "log in first".
    may_want_login: bool,
}

impl BrokerClient {
    /// Connects to `server` (at the first of the addresses its name resolves to now that
    /// accepts) and logs in as kaos, or, without credentials, asks ApiVersions (which every
    /// broker answers before a login) so that a broker that then closes the connection is known
    /// to want one. `timeout` bounds each connect and every read and write.
    pub fn connect(
        server: &str,
        upstream: Upstream,
        client_id: &'static str,
        timeout: Duration,
    ) -> Result<BrokerClient, UpstreamError> {
        let io = |source| UpstreamError::Io { server: server.to_owned(), source };
        let mut refused = None;
        let mut connected = None;
        for address in dial::resolve(server).map_err(io)? {
            match TcpStream::connect_timeout(&address, timeout) {
                Ok(tcp) => {
                    connected = Some(tcp);
                    break;
                }
                Err(why) => refused = Some(why),
            }
        }
        let tcp = match (connected, refused) {
            (Some(tcp), _) => tcp,
            (None, Some(why)) => return Err(io(why)),
            (None, None) => return Err(UpstreamError::NoAddress { server: server.to_owned() }),
        };
        tcp.set_read_timeout(Some(timeout)).map_err(io)?;
        tcp.set_write_timeout(Some(timeout)).map_err(io)?;
        tcp.set_nodelay(true).map_err(io)?;
        let stream: Box<dyn ReadWrite> = match upstream.tls {
            None => Box::new(tcp),
            Some(config) => {
                let tls_error = |why: String| UpstreamError::Tls { server: server.to_owned(), why };
                let name = crate::tls::server_name(server).map_err(|e| tls_error(e.to_string()))?;
                let session = rustls::ClientConnection::new(config.clone(), name)
                    .map_err(|e| tls_error(e.to_string()))?;
                Box::new(rustls::StreamOwned::new(session, tcp))
            }
        };
        let mut client = BrokerClient {
            server: server.to_owned(),
            stream,
            client_id,
            correlation_id: 0,
            may_want_login: upstream.sasl.is_none(),
        };
        match upstream.sasl {
            Some(credentials) => login_blocking(&mut client.stream, credentials)
                .map(drop)
                .map_err(|source| UpstreamError::Login { server: server.to_owned(), source })?,
            None => {
                client.call::<_, kafka_protocol::messages::ApiVersionsResponse>(
                    ApiKey::ApiVersions,
                    0,
                    &ApiVersionsRequest::default(),
                )?;
            }
        }
        Ok(client)
    }

    /// The `host:port` this client talks to.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// Sends one request and reads its answer. A broker that closes the connection instead of
    /// answering, when kaos has not logged in, wants a login: `LoginRequired`.
    pub fn call<Req: Encodable, Resp: Decodable>(
        &mut self,
        api: ApiKey,
        version: i16,
        request: &Req,
    ) -> Result<Resp, UpstreamError> {
        self.correlation_id = self.correlation_id.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(api as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_static_str(self.client_id)));
        let frame = encode_frame(api, &header, api.request_header_version(version), request, version)
            .map_err(|source| UpstreamError::Codec { server: self.server.clone(), source })?;
        let io = |source| UpstreamError::Io { server: self.server.clone(), source };
        self.stream.write_all(&frame).map_err(io)?;
        self.stream.flush().map_err(io)?;
        let body = match self.read_frame() {
            Err(UpstreamError::Io { source, .. })
                if self.may_want_login
                    && api != ApiKey::ApiVersions
                    && matches!(
                        source.kind(),
                        std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset
                    ) =>
            {
                return Err(UpstreamError::LoginRequired { server: self.server.clone() });
            }
            other => other?,
        };
        if api != ApiKey::ApiVersions {
            self.may_want_login = false;
        }
        let (header, response) = decode_response(api, version, &body)
            .map_err(|source| UpstreamError::Codec { server: self.server.clone(), source })?;
        if header.correlation_id != self.correlation_id {
            let (sent, got) = (self.correlation_id, header.correlation_id);
            return Err(UpstreamError::OutOfOrder { server: self.server.clone(), sent, got });
        }
        Ok(response)
    }

    fn read_frame(&mut self) -> Result<Vec<u8>, UpstreamError> {
        let io = |source| UpstreamError::Io { server: self.server.clone(), source };
        let mut length = [0u8; 4];
        self.stream.read_exact(&mut length).map_err(io)?;
        let length = i32::from_be_bytes(length);
        if !(0..=64 << 20).contains(&length) {
            return Err(UpstreamError::Implausible { server: self.server.clone(), length: length.into() });
        }
        let mut body = vec![0u8; length as usize];
        self.stream.read_exact(&mut body).map_err(io)?;
        Ok(body)
    }
}
