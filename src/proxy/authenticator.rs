//! kaos as the SASL server of its clients (`--client-users`): a client must log in with PLAIN,
//! SCRAM-SHA-256 or SCRAM-SHA-512 as a user of the file before any request but ApiVersions goes
//! to the broker, as a broker's SASL listener demands. kaos answers the SaslHandshake and
//! SaslAuthenticate requests itself; the name the client logged in with scopes rules.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, ResponseHeader, SaslAuthenticateRequest, SaslAuthenticateResponse,
    SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::{Encodable, StrBytes};

use crate::sasl::scram::ScramServer;
use crate::sasl::users::ClientUsers;
use crate::sasl::{Mechanism, parse_plain};
use crate::wire::codec::{decodable, decode_request, encode_frame};
use crate::wire::{CodecError, RequestPrefix};

const UNSUPPORTED_SASL_MECHANISM: i16 = 33;
const ILLEGAL_SASL_STATE: i16 = 34;
const UNSUPPORTED_VERSION: i16 = 35;
const SASL_AUTHENTICATION_FAILED: i16 = 58;

/// What a client may do with a request before and after it logs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Relay it to the broker.
    Pass,
    /// kaos answers it (SaslHandshake, SaslAuthenticate).
    Answer,
    /// Close the connection, as a broker does for a request before authentication.
    Refuse,
}

enum State {
    AwaitingHandshake,
    AwaitingToken(Mechanism),
    AwaitingScramFinal(Box<ScramServer>),
    LoggedIn(String),
    /// The client failed to log in; it has been told and must go.
    Failed,
}

pub struct ClientLogin<'u> {
    users: &'u ClientUsers,
    state: State,
}

impl<'u> ClientLogin<'u> {
    pub fn new(users: &'u ClientUsers) -> ClientLogin<'u> {
        ClientLogin { users, state: State::AwaitingHandshake }
    }

    /// The name the client logged in with.
    pub fn user(&self) -> Option<&str> {
        match &self.state {
            State::LoggedIn(user) => Some(user),
            _ => None,
        }
    }

    /// The client failed to log in: it has its answer and is closed at its next request.
    pub fn failed(&self) -> bool {
        matches!(self.state, State::Failed)
    }

    pub fn gate(&self, api_key: i16) -> Gate {
        if api_key == ApiKey::SaslHandshake as i16 || api_key == ApiKey::SaslAuthenticate as i16 {
            return match self.state {
                State::Failed => Gate::Refuse,
                _ => Gate::Answer,
            };
        }
        match self.state {
            State::LoggedIn(_) => Gate::Pass,
            _ if api_key == ApiKey::ApiVersions as i16 => Gate::Pass,
            _ => Gate::Refuse,
        }
    }

    /// kaos's answer (a whole frame) to a SaslHandshake or SaslAuthenticate request.
    pub fn answer(&mut self, request: RequestPrefix, body: &[u8]) -> Result<BytesMut, CodecError> {
        let (api, version, correlation_id) = (request.api_key, request.api_version, request.correlation_id);
        if api == ApiKey::SaslHandshake as i16 {
            let (_, handshake) =
                decode_request::<SaslHandshakeRequest>(ApiKey::SaslHandshake, version, body)?;
            let offered = Mechanism::ALL.iter().map(|m| StrBytes::from_static_str(m.name())).collect();
            let mut response = SaslHandshakeResponse::default().with_mechanisms(offered);
            // v0 sends the tokens raw, which kaos does not serve: clients since Kafka 1.0 use v1.
            let error = match handshake.mechanism.parse::<Mechanism>() {
                _ if version == 0 => UNSUPPORTED_VERSION,
                Ok(mechanism) => {
                    self.state = State::AwaitingToken(mechanism);
                    0
                }
                Err(_) => UNSUPPORTED_SASL_MECHANISM,
            };
            response.error_code = error;
            return respond(ApiKey::SaslHandshake, version, correlation_id, &response);
        }
        let (_, authenticate) =
            decode_request::<SaslAuthenticateRequest>(ApiKey::SaslAuthenticate, version, body)?;
        let outcome = self.take_token(&authenticate.auth_bytes);
        let response = match outcome {
            Ok(token) => SaslAuthenticateResponse::default().with_auth_bytes(Bytes::from(token)),
            Err((error, message)) => {
                self.state = State::Failed;
                SaslAuthenticateResponse::default()
                    .with_error_code(error)
                    .with_error_message(Some(StrBytes::from_string(message)))
            }
        };
        respond(ApiKey::SaslAuthenticate, version, correlation_id, &response)
    }

    /// Moves the exchange on by one client token: the token to answer with, or an error code
    /// and the message the client shows its user.
    fn take_token(&mut self, token: &[u8]) -> Result<Vec<u8>, (i16, String)> {
        let failed = |why: String| (SASL_AUTHENTICATION_FAILED, format!("Authentication failed: {why}"));
        match std::mem::replace(&mut self.state, State::Failed) {
            State::AwaitingToken(Mechanism::Plain) => {
                let (user, password) =
                    parse_plain(token).ok_or_else(|| failed("malformed PLAIN message".into()))?;
                if !self.users.verify_plain(&user, &password) {
                    return Err(failed("invalid username or password".into()));
                }
                self.state = State::LoggedIn(user);
                Ok(Vec::new())
            }
            State::AwaitingToken(mechanism) => {
                let hash = mechanism.scram_hash().ok_or_else(|| failed("no such mechanism".into()))?;
                let users = self.users;
                let (server, server_first) =
                    ScramServer::start(hash, token, |user| users.credential(user, hash).cloned())
                        .map_err(|e| failed(e.to_string()))?;
                self.state = State::AwaitingScramFinal(Box::new(server));
                Ok(server_first)
            }
            State::AwaitingScramFinal(server) => {
                let server_final = server.finish(token).map_err(|e| failed(e.to_string()))?;
                self.state = State::LoggedIn(server.user().to_owned());
                Ok(server_final)
            }
            State::LoggedIn(_) | State::AwaitingHandshake | State::Failed => {
                Err((ILLEGAL_SASL_STATE, "SaslAuthenticate without a SaslHandshake before it".into()))
            }
        }
    }
}

/// kaos's answer to the first request of a client whose broker refused kaos's own login: an
/// ApiVersions request gets SASL_AUTHENTICATION_FAILED, which clients report (the Java client
/// logs it and retries; librdkafka raises it as an error); for anything else there is no
/// answer a client would act on, and the connection just closes.
pub fn login_refused(request_body: &[u8]) -> Option<BytesMut> {
    let request = RequestPrefix::parse(request_body)?;
    if request.api_key != ApiKey::ApiVersions as i16 {
        return None;
    }
    // A version kaos cannot encode gets the v0 answer, as brokers answer versions they lack.
    let version = if decodable(ApiKey::ApiVersions, request.api_version) { request.api_version } else { 0 };
    let response = ApiVersionsResponse::default().with_error_code(SASL_AUTHENTICATION_FAILED);
    respond(ApiKey::ApiVersions, version, request.correlation_id, &response).ok()
}

fn respond<T: Encodable>(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    message: &T,
) -> Result<BytesMut, CodecError> {
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    encode_frame(api, &header, api.response_header_version(version), message, version)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sasl::login::{Credentials, Login, LoginError};
    use crate::sasl::users::hash_password_lines;
    use kafka_protocol::messages::ApiVersionsRequest;

    fn users() -> ClientUsers {
        let lines = hash_password_lines("alice", "a-pw", 4096).unwrap()
            + &hash_password_lines("bob", "b-pw", 4096).unwrap();
        ClientUsers::parse(&lines).unwrap()
    }

    /// kaos's own broker login, as a client of kaos's SASL server: every request frame Login
    /// sends is answered by ClientLogin.
    fn log_in(users: &ClientUsers, credentials: &Credentials) -> (Result<(), LoginError>, Option<String>) {
        let mut server = ClientLogin::new(users);
        let mut login = Login::new(credentials);
        let mut next = login.step(None);
        while let Ok(Some(frame)) = next {
            let body = &frame[4..];
            let request = RequestPrefix::parse(body).unwrap();
            assert_eq!(server.gate(request.api_key), Gate::Answer);
            let answer = server.answer(request, body).unwrap();
            next = login.step(Some(&answer[4..]));
        }
        (next.map(drop), server.user().map(str::to_owned))
    }

    #[test]
    fn users_log_in_with_every_mechanism() {
        let users = users();
        for mechanism in Mechanism::ALL {
            let credentials = Credentials::for_test(mechanism, "alice", "a-pw");
            let (outcome, user) = log_in(&users, &credentials);
            assert!(outcome.is_ok(), "{mechanism:?}: {outcome:?}");
            assert_eq!(user.as_deref(), Some("alice"), "{mechanism:?}");
        }
    }

    #[test]
    fn a_wrong_password_or_an_unknown_user_is_refused_with_the_brokers_error() {
        let users = users();
        for mechanism in Mechanism::ALL {
            for (user, password) in [("alice", "b-pw"), ("eve", "a-pw")] {
                let credentials = Credentials::for_test(mechanism, user, password);
                let (outcome, logged_in) = log_in(&users, &credentials);
                assert!(
                    matches!(&outcome, Err(LoginError::Rejected(message)) if message.starts_with("Authentication failed")),
                    "{mechanism:?} {user}: {outcome:?}"
                );
                assert_eq!(logged_in, None);
            }
        }
    }

    #[test]
    fn only_api_versions_and_sasl_pass_before_a_login() {
        let users = users();
        let mut login = ClientLogin::new(&users);
        assert_eq!(login.gate(ApiKey::ApiVersions as i16), Gate::Pass);
        assert_eq!(login.gate(ApiKey::Metadata as i16), Gate::Refuse);
        assert_eq!(login.gate(ApiKey::SaslHandshake as i16), Gate::Answer);
        // SaslAuthenticate before any handshake: ILLEGAL_SASL_STATE, and the client must go.
        let token = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from_static(b"\0alice\0a-pw"));
        let body = kaos_testkit::frames::request_body(ApiKey::SaslAuthenticate, 2, 7, "c", &token);
        login.answer(RequestPrefix::parse(&body).unwrap(), &body).unwrap();
        assert!(login.failed());
        assert_eq!(login.gate(ApiKey::SaslHandshake as i16), Gate::Refuse);
    }

    #[test]
    fn a_refused_client_learns_why_from_api_versions() {
        let future_version: &[u8] = &[0, 18, 0, 99, 0, 0, 0, 5, 0, 0];
        for version in [0, 3, 4, 99] {
            let body = match version {
                99 => Bytes::from_static(future_version),
                _ => kaos_testkit::frames::request_body(
                    ApiKey::ApiVersions,
                    version,
                    5,
                    "c",
                    &ApiVersionsRequest::default(),
                ),
            };
            let answer = login_refused(&body).expect("an answer");
            let decoded = if version > 4 { 0 } else { version };
            let (header, response) = crate::wire::codec::decode_response::<ApiVersionsResponse>(
                ApiKey::ApiVersions,
                decoded,
                &answer[4..],
            )
            .unwrap();
            assert_eq!((header.correlation_id, response.error_code), (5, SASL_AUTHENTICATION_FAILED));
        }
        let metadata = kaos_testkit::frames::request_body(
            ApiKey::Metadata,
            9,
            5,
            "c",
            &kafka_protocol::messages::MetadataRequest::default(),
        );
        assert!(login_refused(&metadata).is_none());
    }
}
