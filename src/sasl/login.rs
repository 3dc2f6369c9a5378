//! kaos logging in to a broker as itself (`--upstream-sasl-*`): SaslHandshake v1, then one
//! SaslAuthenticate round for PLAIN or two for SCRAM (KIP-152). The exchange is a state machine
//! over whole frames, so the shards (async) and the cluster watcher (blocking) drive the same one.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, RequestHeader, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
    SaslHandshakeResponse,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use super::scram::{ScramClient, ScramError};
use super::{Mechanism, plain_message};
use crate::wire::CodecError;
use crate::wire::codec::{decode_response, encode_frame};

/// The environment variable that may hold kaos's broker password (never a flag: flags show up
/// in `ps`).
pub const PASSWORD_ENV: &str = "KAOS_UPSTREAM_SASL_PASSWORD";
/// SaslAuthenticate v1 (Kafka 2.0+) reports the session lifetime; v0 does not.
const AUTHENTICATE_VERSION: i16 = 1;
const HANDSHAKE_VERSION: i16 = 1;
/// The largest SASL answer a broker sends is a SCRAM server-first message: well under this.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Who kaos is to the brokers.
pub struct Credentials {
    pub mechanism: Mechanism,
    pub username: String,
    password: String,
}

/// Never prints the password.
impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// Why kaos has no password to log in with.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("--upstream-sasl-password-file {}: {source}", .path.display())]
    File { path: PathBuf, source: std::io::Error },
    #[error("--upstream-sasl-password-file {}: the first line is empty", .0.display())]
    EmptyFile(PathBuf),
    #[error(
        "--upstream-sasl-mechanism needs a password: --upstream-sasl-password-file FILE or {PASSWORD_ENV}"
    )]
    Missing,
}

impl Credentials {
    #[cfg(test)]
    pub fn for_test(mechanism: Mechanism, username: &str, password: &str) -> Credentials {
        Credentials { mechanism, username: username.to_owned(), password: password.to_owned() }
    }
    /// What `/ready` and the logs say when `broker` refuses this login.
    pub fn refused_by(&self, broker: &str, why: impl std::fmt::Display) -> String {
        format!(
            "kaos cannot log in to broker {broker} as {} with {}: {why}",
            self.username,
            self.mechanism.name()
        )
    }

    /// The password comes from `password_file` (its first line) or, without one, from
    /// `KAOS_UPSTREAM_SASL_PASSWORD`.
    pub fn load(
        mechanism: Mechanism,
        username: &str,
        password_file: Option<&Path>,
    ) -> Result<Credentials, CredentialsError> {
        let password = match password_file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|source| CredentialsError::File { path: path.to_owned(), source })?;
                let line = text.lines().next().unwrap_or("").to_owned();
                if line.is_empty() {
                    return Err(CredentialsError::EmptyFile(path.to_owned()));
                }
                line
            }
            None => {
                std::env::var(PASSWORD_ENV).ok().filter(|p| !p.is_empty()).ok_or(CredentialsError::Missing)?
            }
        };
        Ok(Credentials { mechanism, username: username.to_owned(), password })
    }
}

/// Why a broker did not accept kaos.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("the broker does not offer {mechanism} (it offers {offered:?})")]
    Mechanism { mechanism: &'static str, offered: Vec<String> },
    #[error("the broker rejected kaos's credentials: {0}")]
    Rejected(String),
    #[error("SCRAM: {0}")]
    Scram(#[from] ScramError),
    #[error("the broker's answer is not what SASL expects: {0}")]
    Malformed(#[from] CodecError),
    #[error("the broker answered correlation id {got}, not {expected}")]
    OutOfOrder { got: i32, expected: i32 },
    #[error("a SASL answer of {0} bytes is implausible")]
    TooLarge(usize),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

enum Step {
    Start,
    Handshake,
    FirstToken(Option<ScramClient>),
    ScramFinal(ScramClient),
    Done,
}

/// One login, step by step: hand it each response body, send what it returns.
pub struct Login<'c> {
    credentials: &'c Credentials,
    step: Step,
    correlation_id: i32,
    session_lifetime: Option<Duration>,
}

impl<'c> Login<'c> {
    pub fn new(credentials: &'c Credentials) -> Login<'c> {
        Login { credentials, step: Step::Start, correlation_id: 0, session_lifetime: None }
    }

    /// How long the broker lets the session live before it must authenticate again (KIP-368),
    /// once the login is done; `None` when the broker sets no limit.
    pub fn session_lifetime(&self) -> Option<Duration> {
        self.session_lifetime
    }

    /// Takes the body of the broker's answer to the previous frame (`None` at first) and
    /// returns the next frame to send, or `None` once the broker has accepted kaos.
    pub fn step(&mut self, answer: Option<&[u8]>) -> Result<Option<BytesMut>, LoginError> {
        let credentials = self.credentials;
        let step = std::mem::replace(&mut self.step, Step::Done);
        let (next, frame) = match (step, answer) {
            (Step::Start, _) => {
                let handshake = SaslHandshakeRequest::default()
                    .with_mechanism(StrBytes::from_static_str(credentials.mechanism.name()));
                (Step::Handshake, Some(self.frame(ApiKey::SaslHandshake, HANDSHAKE_VERSION, &handshake)?))
            }
            (Step::Handshake, Some(body)) => {
                let handshake: SaslHandshakeResponse =
                    self.answer(ApiKey::SaslHandshake, HANDSHAKE_VERSION, body)?;
                if handshake.error_code != 0 {
                    let offered = handshake.mechanisms.iter().map(ToString::to_string).collect();
                    return Err(LoginError::Mechanism { mechanism: credentials.mechanism.name(), offered });
                }
                let (token, scram) = match credentials.mechanism.scram_hash() {
                    None => (plain_message("", &credentials.username, &credentials.password), None),
                    Some(hash) => {
                        let client = ScramClient::new(hash, &credentials.username, &credentials.password);
                        (client.client_first(), Some(client))
                    }
                };
                (Step::FirstToken(scram), Some(self.token(token)?))
            }
            (Step::FirstToken(scram), Some(body)) => {
                let answer = self.accepted(body)?;
                match scram {
                    None => (Step::Done, None),
                    Some(mut client) => {
                        let token = client.client_final(&answer)?;
                        (Step::ScramFinal(client), Some(self.token(token)?))
                    }
                }
            }
            (Step::ScramFinal(client), Some(body)) => {
                let answer = self.accepted(body)?;
                client.verify_server_final(&answer)?;
                (Step::Done, None)
            }
            (_, _) => (Step::Done, None),
        };
        self.step = next;
        Ok(frame)
    }

    fn frame<T: Encodable>(
        &mut self,
        api: ApiKey,
        version: i16,
        message: &T,
    ) -> Result<BytesMut, LoginError> {
        self.correlation_id += 1;
        let header = RequestHeader::default()
            .with_request_api_key(api as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("kaos")));
        Ok(encode_frame(api, &header, api.request_header_version(version), message, version)?)
    }

    fn token(&mut self, token: Vec<u8>) -> Result<BytesMut, LoginError> {
        let request = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(token));
        self.frame(ApiKey::SaslAuthenticate, AUTHENTICATE_VERSION, &request)
    }

    fn answer<T: Decodable>(&self, api: ApiKey, version: i16, body: &[u8]) -> Result<T, LoginError> {
        let (header, message) = decode_response::<T>(api, version, body)?;
        if header.correlation_id != self.correlation_id {
            return Err(LoginError::OutOfOrder { got: header.correlation_id, expected: self.correlation_id });
        }
        Ok(message)
    }

    /// The broker's token from an accepted SaslAuthenticate answer.
    fn accepted(&mut self, body: &[u8]) -> Result<Bytes, LoginError> {
        let answer: SaslAuthenticateResponse =
            self.answer(ApiKey::SaslAuthenticate, AUTHENTICATE_VERSION, body)?;
        if answer.error_code != 0 {
            let message = answer
                .error_message
                .map_or_else(|| format!("error {}", answer.error_code), |m| m.to_string());
            return Err(LoginError::Rejected(message));
        }
        self.session_lifetime =
            u64::try_from(answer.session_lifetime_ms).ok().filter(|&ms| ms > 0).map(Duration::from_millis);
        Ok(answer.auth_bytes)
    }
}

/// Reads a frame's length prefix: the body length, if plausible for a SASL answer.
pub fn answer_len(prefix: [u8; 4]) -> Result<usize, LoginError> {
    let length = i32::from_be_bytes(prefix);
    match usize::try_from(length) {
        Ok(length) if length <= MAX_ANSWER_BYTES => Ok(length),
        _ => Err(LoginError::TooLarge(length.unsigned_abs() as usize)),
    }
}

/// Logs in over a blocking stream (the cluster watcher's).
pub fn login_blocking<S: std::io::Read + std::io::Write>(
    stream: &mut S,
    credentials: &Credentials,
) -> Result<Option<Duration>, LoginError> {
    let mut login = Login::new(credentials);
    let mut next = login.step(None)?;
    while let Some(frame) = next {
        stream.write_all(&frame)?;
        let mut prefix = [0u8; 4];
        stream.read_exact(&mut prefix)?;
        let mut body = vec![0u8; answer_len(prefix)?];
        stream.read_exact(&mut body)?;
        next = login.step(Some(&body))?;
    }
    Ok(login.session_lifetime())
}

/// Logs in over an async stream (a shard's broker connection).
pub async fn login<S: futures_lite::AsyncRead + futures_lite::AsyncWrite + Unpin>(
    stream: &mut S,
    credentials: &Credentials,
) -> Result<Option<Duration>, LoginError> {
    use futures_lite::{AsyncReadExt, AsyncWriteExt};
    let mut login = Login::new(credentials);
    let mut next = login.step(None)?;
    while let Some(frame) = next {
        stream.write_all(&frame).await?;
        stream.flush().await?;
        let mut prefix = [0u8; 4];
        stream.read_exact(&mut prefix).await?;
        let mut body = vec![0u8; answer_len(prefix)?];
        stream.read_exact(&mut body).await?;
        next = login.step(Some(&body))?;
    }
    Ok(login.session_lifetime())
}
