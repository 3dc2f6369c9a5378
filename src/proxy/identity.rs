//! Who a client is, as far as kaos can tell, while its SASL passes through to the broker
//! unchanged: the name in its first token (PLAIN's authentication id, SCRAM's `n=`, the
//! OAUTHBEARER token's `sub` claim or the claim `--oauth-principal-claim` names). kaos does not
//! verify it, the broker does: the name becomes the connection's user only once the broker
//! accepts the exchange, and a rejected one leaves the connection as it was.
//!
//! SaslHandshake v1 carries the tokens in SaslAuthenticate requests, which are Kafka frames like
//! any other. SaslHandshake v0 (clients older than Kafka 1.0) sends them raw: length-prefixed
//! bytes with no request header, each answered by one raw frame. kaos follows those rounds so
//! that neither lane mistakes a token for a request; it knows where the exchange ends for PLAIN,
//! SCRAM and OAUTHBEARER, and refuses v0 with any other mechanism rather than lose its framing.

use kafka_protocol::messages::{ApiKey, SaslAuthenticateRequest, SaslAuthenticateResponse};
use kafka_protocol::messages::{SaslHandshakeRequest, SaslHandshakeResponse};

use crate::sasl::{oauth, parse_plain, scram};
use crate::wire::RequestPrefix;
use crate::wire::codec::{decode_request, decode_response};

/// The mechanisms whose exchanges kaos can follow to the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mechanism {
    Plain,
    Scram,
    OAuthBearer,
    /// GSSAPI and anything newer: passed through; kaos learns no name from it.
    Other,
}

impl Mechanism {
    fn named(name: &str) -> Mechanism {
        match name {
            "PLAIN" => Mechanism::Plain,
            "SCRAM-SHA-256" | "SCRAM-SHA-512" => Mechanism::Scram,
            "OAUTHBEARER" => Mechanism::OAuthBearer,
            _ => Mechanism::Other,
        }
    }

    /// Whether the broker's answer to the `tokens`-th client token, accepted, ends the exchange.
    fn completes(self, tokens: u32, answer_is_empty: bool) -> bool {
        match self {
            Mechanism::Plain => tokens >= 1,
            // client-first, then client-final (whose answer is the server's signature).
            Mechanism::Scram => tokens >= 2,
            // Success is an empty answer; a failure is an error challenge the client acknowledges.
            Mechanism::OAuthBearer => answer_is_empty,
            Mechanism::Other => false,
        }
    }
}

/// One authentication under way (a client may authenticate again later: KIP-368).
#[derive(Debug)]
struct Exchange {
    mechanism: Mechanism,
    handshake_version: i16,
    /// Tokens the client has sent.
    tokens: u32,
    /// The name the first token gave; the user once the broker accepts.
    claimed: Option<String>,
    raw: Raw,
}

/// Whose turn it is in a raw (SaslHandshake v0) token exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Raw {
    /// Not raw: SaslAuthenticate frames, or the handshake is still unanswered.
    No,
    Client,
    Broker,
}

/// A raw SASL exchange kaos cannot follow.
#[derive(Debug, thiserror::Error)]
#[error(
    "SaslHandshake v0 with {0}: kaos cannot tell where its raw token exchange ends (clients that speak SaslAuthenticate, Kafka 1.0 and later, can use it)"
)]
pub struct UnfollowableExchange(String);

#[derive(Debug)]
pub struct Identity<'c> {
    principal_claim: &'c str,
    exchange: Option<Exchange>,
    user: Option<String>,
}

impl<'c> Identity<'c> {
    /// `principal_claim`: the OAUTHBEARER token claim that names the user.
    pub fn new(principal_claim: &'c str) -> Identity<'c> {
        Identity { principal_claim, exchange: None, user: None }
    }

    /// The requests (and their responses) that reveal identity.
    pub fn is_revealing(api_key: i16) -> bool {
        api_key == ApiKey::SaslHandshake as i16 || api_key == ApiKey::SaslAuthenticate as i16
    }

    /// The user the broker accepted, if any.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// The client's next frame is a raw SASL token, not a request.
    pub fn client_sends_raw(&self) -> bool {
        self.exchange.as_ref().is_some_and(|e| e.raw == Raw::Client)
    }

    /// The broker's next frame answers a raw SASL token (once every request before it is answered).
    pub fn broker_answers_raw(&self) -> bool {
        self.exchange.as_ref().is_some_and(|e| e.raw == Raw::Broker)
    }

    /// Learns from a SaslHandshake or SaslAuthenticate request. What kaos cannot decode is left
    /// to the broker to judge.
    pub fn on_request(&mut self, request: RequestPrefix, body: &[u8]) {
        let version = request.api_version;
        if request.api_key == ApiKey::SaslHandshake as i16 {
            let mechanism = decode_request::<SaslHandshakeRequest>(ApiKey::SaslHandshake, version, body)
                .map_or(Mechanism::Other, |(_, handshake)| Mechanism::named(handshake.mechanism.as_str()));
            self.exchange = Some(Exchange {
                mechanism,
                handshake_version: version,
                tokens: 0,
                claimed: None,
                raw: Raw::No,
            });
        } else if let Ok((_, authenticate)) =
            decode_request::<SaslAuthenticateRequest>(ApiKey::SaslAuthenticate, version, body)
        {
            self.on_token(&authenticate.auth_bytes);
        }
    }

    /// Learns from the broker's answer to a SaslHandshake or SaslAuthenticate request.
    pub fn on_response(
        &mut self,
        api_key: i16,
        version: i16,
        body: &[u8],
    ) -> Result<(), UnfollowableExchange> {
        if api_key == ApiKey::SaslHandshake as i16 {
            let Ok((_, handshake)) =
                decode_response::<SaslHandshakeResponse>(ApiKey::SaslHandshake, version, body)
            else {
                return Ok(());
            };
            let Some(exchange) = self.exchange.as_mut() else { return Ok(()) };
            if handshake.error_code != 0 {
                self.exchange = None;
            } else if exchange.handshake_version == 0 {
                if exchange.mechanism == Mechanism::Other {
                    return Err(UnfollowableExchange(format!("{:?}", handshake.mechanisms)));
                }
                exchange.raw = Raw::Client;
            }
        } else if let Ok((_, authenticate)) =
            decode_response::<SaslAuthenticateResponse>(ApiKey::SaslAuthenticate, version, body)
        {
            if authenticate.error_code != 0 {
                // Rejected: the broker closes the connection; it never had this user.
                self.exchange = None;
            } else {
                self.on_answer(authenticate.auth_bytes.is_empty());
            }
        }
        Ok(())
    }

    /// A raw token from the client (SaslHandshake v0).
    pub fn on_raw_token(&mut self, token: &[u8]) {
        self.on_token(token);
        if let Some(exchange) = self.exchange.as_mut() {
            exchange.raw = Raw::Broker;
        }
    }

    /// The broker's raw answer to a raw token, `answer_len` bytes long. A rejected raw exchange
    /// ends with the broker closing the connection.
    pub fn on_raw_answer(&mut self, answer_len: usize) {
        if let Some(exchange) = self.exchange.as_mut() {
            exchange.raw = Raw::Client;
        }
        self.on_answer(answer_len == 0);
    }

    fn on_token(&mut self, token: &[u8]) {
        let Some(exchange) = self.exchange.as_mut() else { return };
        exchange.tokens += 1;
        if exchange.tokens == 1 {
            exchange.claimed = match exchange.mechanism {
                Mechanism::Plain => parse_plain(token).map(|(user, _password)| user),
                Mechanism::Scram => scram::client_first_username(token),
                Mechanism::OAuthBearer => oauth::token_principal(token, self.principal_claim),
                Mechanism::Other => None,
            };
        }
    }

    /// An accepted answer: the user is known once it ends the exchange.
    fn on_answer(&mut self, answer_is_empty: bool) {
        let Some(exchange) = self.exchange.as_mut() else { return };
        if exchange.mechanism.completes(exchange.tokens, answer_is_empty) {
            let exchange = self.exchange.take().expect("checked above");
            if let Some(user) = exchange.claimed {
                self.user = Some(user);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use kafka_protocol::protocol::{Encodable, StrBytes};
    use kaos_testkit::frames::{request_body, response_body};

    fn request<T: Encodable>(identity: &mut Identity, api: ApiKey, version: i16, message: &T) {
        let body = request_body(api, version, 3, "", message);
        identity.on_request(RequestPrefix::parse(&body).unwrap(), &body);
    }

    fn respond<T: Encodable>(identity: &mut Identity, api: ApiKey, version: i16, message: &T) {
        let body = response_body(api, version, 3, message);
        identity.on_response(api as i16, version, &body).unwrap();
    }

    fn handshake(identity: &mut Identity, mechanism: &'static str, version: i16) {
        let handshake = SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str(mechanism));
        request(identity, ApiKey::SaslHandshake, version, &handshake);
        respond(identity, ApiKey::SaslHandshake, version, &SaslHandshakeResponse::default());
    }

    fn authenticate(
        identity: &mut Identity,
        version: i16,
        token: &'static [u8],
        answer: &'static [u8],
        error: i16,
    ) {
        let token = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from_static(token));
        request(identity, ApiKey::SaslAuthenticate, version, &token);
        let answer = SaslAuthenticateResponse::default()
            .with_error_code(error)
            .with_auth_bytes(Bytes::from_static(answer));
        respond(identity, ApiKey::SaslAuthenticate, version, &answer);
    }

    #[test]
    fn a_plain_user_is_known_once_the_broker_accepts() {
        for version in 0..=2 {
            let mut identity = Identity::new("sub");
            handshake(&mut identity, "PLAIN", 1);
            let token = SaslAuthenticateRequest::default()
                .with_auth_bytes(Bytes::from_static(b"\0test@conduktor.io\0secret"));
            request(&mut identity, ApiKey::SaslAuthenticate, version, &token);
            assert_eq!(identity.user(), None, "not before the broker answers");
            respond(&mut identity, ApiKey::SaslAuthenticate, version, &SaslAuthenticateResponse::default());
            assert_eq!(identity.user(), Some("test@conduktor.io"), "v{version}");
        }
    }

    #[test]
    fn a_rejected_authentication_names_nobody() {
        let mut identity = Identity::new("sub");
        handshake(&mut identity, "PLAIN", 1);
        authenticate(&mut identity, 2, b"\0mallory\0guess", b"", 58);
        assert_eq!(identity.user(), None);
    }

    #[test]
    fn scram_names_its_user_after_the_final_round() {
        let mut identity = Identity::new("sub");
        handshake(&mut identity, "SCRAM-SHA-512", 1);
        authenticate(&mut identity, 2, b"n,,n=al=2Cice,r=abc", b"r=abcdef,s=c2FsdA==,i=4096", 0);
        assert_eq!(identity.user(), None, "the server-first message accepts nothing yet");
        authenticate(&mut identity, 2, b"c=biws,r=abcdef,p=cHJvb2Y=", b"v=c2lnbmF0dXJl", 0);
        assert_eq!(identity.user(), Some("al,ice"));

        let mut rejected = Identity::new("sub");
        handshake(&mut rejected, "SCRAM-SHA-256", 1);
        authenticate(&mut rejected, 1, b"n,,n=bob,r=abc", b"r=abcdef,s=c2FsdA==,i=4096", 0);
        authenticate(&mut rejected, 1, b"c=biws,r=abcdef,p=d3Jvbmc=", b"", 58);
        assert_eq!(rejected.user(), None);
    }

    #[test]
    fn oauthbearer_names_the_configured_claim() {
        // {"alg":"none"} . {"sub":"alice","app":"billing"}
        const TOKEN: &[u8] =
            b"n,,\x01auth=Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJhbGljZSIsImFwcCI6ImJpbGxpbmcifQ.\x01\x01";
        for (claim, user) in [("sub", "alice"), ("app", "billing")] {
            let mut identity = Identity::new(claim);
            handshake(&mut identity, "OAUTHBEARER", 1);
            authenticate(&mut identity, 1, TOKEN, b"", 0);
            assert_eq!(identity.user(), Some(user));
        }
        // A refused token: an error challenge, the client's acknowledgement, then the error.
        let mut identity = Identity::new("sub");
        handshake(&mut identity, "OAUTHBEARER", 1);
        authenticate(&mut identity, 1, TOKEN, br#"{"status":"invalid_token"}"#, 0);
        assert_eq!(identity.user(), None);
        authenticate(&mut identity, 1, b"\x01", b"", 58);
        assert_eq!(identity.user(), None);
    }

    #[test]
    fn raw_tokens_after_a_v0_handshake_are_followed_to_the_end() {
        let mut identity = Identity::new("sub");
        handshake(&mut identity, "SCRAM-SHA-256", 0);
        assert!(identity.client_sends_raw());
        identity.on_raw_token(b"n,,n=carol,r=abc");
        assert!(identity.broker_answers_raw() && !identity.client_sends_raw());
        identity.on_raw_answer(30);
        assert!(identity.client_sends_raw());
        identity.on_raw_token(b"c=biws,r=abcdef,p=cHJvb2Y=");
        identity.on_raw_answer(40);
        assert!(!identity.client_sends_raw() && !identity.broker_answers_raw(), "requests again");
        assert_eq!(identity.user(), Some("carol"));

        let mut plain = Identity::new("sub");
        handshake(&mut plain, "PLAIN", 0);
        plain.on_raw_token(b"\0dave\0pw");
        plain.on_raw_answer(0);
        assert!(!plain.client_sends_raw());
        assert_eq!(plain.user(), Some("dave"));
    }

    #[test]
    fn a_refused_handshake_or_an_unknown_v0_mechanism_starts_no_raw_exchange() {
        let mut identity = Identity::new("sub");
        let handshake = SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN"));
        request(&mut identity, ApiKey::SaslHandshake, 0, &handshake);
        respond(
            &mut identity,
            ApiKey::SaslHandshake,
            0,
            &SaslHandshakeResponse::default().with_error_code(33),
        );
        assert!(!identity.client_sends_raw());

        let gssapi = SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("GSSAPI"));
        request(&mut identity, ApiKey::SaslHandshake, 0, &gssapi);
        let body = response_body(ApiKey::SaslHandshake, 0, 3, &SaslHandshakeResponse::default());
        assert!(identity.on_response(ApiKey::SaslHandshake as i16, 0, &body).is_err());
    }

    #[test]
    fn garbage_teaches_nothing() {
        let mut identity = Identity::new("sub");
        handshake(&mut identity, "PLAIN", 1);
        let prefix =
            RequestPrefix { api_key: ApiKey::SaslAuthenticate as i16, api_version: 2, correlation_id: 3 };
        identity.on_request(prefix, &[0xff; 9]);
        identity.on_response(ApiKey::SaslAuthenticate as i16, 2, &[0xff; 3]).unwrap();
        assert_eq!(identity.user(), None);
    }
}
