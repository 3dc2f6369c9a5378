//! Who a client is, as far as kaos can tell: the SASL/PLAIN username, read from the
//! SaslHandshake and SaslAuthenticate requests while they pass through to the broker unchanged.

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, RequestHeader, SaslAuthenticateRequest, SaslHandshakeRequest};
use kafka_protocol::protocol::Decodable;

use crate::wire::RequestPrefix;

#[derive(Debug, Default)]
pub struct Identity {
    mechanism: Option<String>,
    user: Option<String>,
}

impl Identity {
    /// The requests that reveal identity.
    pub fn is_revealing(api_key: i16) -> bool {
        api_key == ApiKey::SaslHandshake as i16 || api_key == ApiKey::SaslAuthenticate as i16
    }

    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// Learns from one SaslHandshake or SaslAuthenticate request body. Anything it cannot read
    /// is left to the broker to judge.
    pub fn observe(&mut self, request: RequestPrefix, body: &[u8]) {
        let Ok(api) = ApiKey::try_from(request.api_key) else { return };
        let version = request.api_version;
        let mut bytes = Bytes::copy_from_slice(body);
        if RequestHeader::decode(&mut bytes, api.request_header_version(version)).is_err() {
            return;
        }
        match api {
            ApiKey::SaslHandshake => {
                if let Ok(handshake) = SaslHandshakeRequest::decode(&mut bytes, version) {
                    self.mechanism = Some(handshake.mechanism.to_string());
                }
            }
            ApiKey::SaslAuthenticate if self.mechanism.as_deref() == Some("PLAIN") => {
                if let Ok(authenticate) = SaslAuthenticateRequest::decode(&mut bytes, version) {
                    self.user = plain_username(&authenticate.auth_bytes).or(self.user.take());
                }
            }
            _ => {}
        }
    }
}

/// RFC 4616: `[authzid] NUL authcid NUL passwd`; the user is authcid.
fn plain_username(message: &[u8]) -> Option<String> {
    let mut parts = message.split(|&b| b == 0);
    let (_authzid, authcid, _password) = (parts.next()?, parts.next()?, parts.next()?);
    let user = std::str::from_utf8(authcid).ok()?;
    (!user.is_empty()).then(|| user.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::protocol::{Encodable, StrBytes};
    use kaos_testkit::frames::request_body;

    fn body<T: Encodable>(api: ApiKey, version: i16, message: &T) -> (RequestPrefix, Bytes) {
        let body = request_body(api, version, 3, "", message);
        (RequestPrefix::parse(&body).unwrap(), body)
    }

    #[test]
    fn plain_usernames_are_learned() {
        let mut identity = Identity::default();
        let (prefix, bytes) = body(
            ApiKey::SaslHandshake,
            1,
            &SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN")),
        );
        identity.observe(prefix, &bytes);
        let token = Bytes::from_static(b"\0test@conduktor.io\0secret");
        for version in 0..=2 {
            let (prefix, bytes) = body(
                ApiKey::SaslAuthenticate,
                version,
                &SaslAuthenticateRequest::default().with_auth_bytes(token.clone()),
            );
            identity.observe(prefix, &bytes);
            assert_eq!(identity.user(), Some("test@conduktor.io"), "v{version}");
        }
    }

    #[test]
    fn other_mechanisms_and_garbage_teach_nothing() {
        let mut identity = Identity::default();
        let (prefix, bytes) = body(
            ApiKey::SaslHandshake,
            1,
            &SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("SCRAM-SHA-256")),
        );
        identity.observe(prefix, &bytes);
        let (prefix, bytes) = body(
            ApiKey::SaslAuthenticate,
            2,
            &SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from_static(b"n,,n=user,r=nonce")),
        );
        identity.observe(prefix, &bytes);
        assert_eq!(identity.user(), None);
        identity.observe(prefix, &[0xff; 9]);
        assert_eq!(plain_username(b"no separators"), None);
    }
}
