//! OAUTHBEARER (RFC 7628, KIP-255): who a client's token says it is. kaos never verifies the
//! token (the broker does); it reads one claim of the JWT's payload so that rules can be scoped
//! to the principal the broker will see.

use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

/// JWTs are base64url without padding, but some issuers pad: accept both.
const BASE64URL: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The claim Kafka takes as the principal unless configured otherwise.
pub const DEFAULT_PRINCIPAL_CLAIM: &str = "sub";

/// The `claim` of the bearer token in a client's first OAUTHBEARER message:
/// `gs2-header %x01 auth=Bearer <token> %x01 [key=value %x01]... %x01`.
pub fn token_principal(client_first: &[u8], claim: &str) -> Option<String> {
    let token = client_first.split(|&b| b == 0x01).find_map(|pair| pair.strip_prefix(b"auth="))?;
    let (scheme, token) = token.split_at_checked(7)?;
    if !scheme.eq_ignore_ascii_case(b"Bearer ") {
        return None;
    }
    let mut parts = token.split(|&b| b == b'.');
    let (_header, payload) = (parts.next()?, parts.next()?);
    let payload = BASE64URL.decode(payload).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&payload).ok()?;
    match claims.get(claim)? {
        serde_json::Value::String(principal) if !principal.is_empty() => Some(principal.clone()),
        serde_json::Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An unsecured JWS as Kafka's OAuthBearerUnsecuredLoginCallbackHandler makes it.
    fn first_message(payload: &str) -> Vec<u8> {
        let header = BASE64URL.encode(br#"{"alg":"none"}"#);
        let payload = BASE64URL.encode(payload.as_bytes());
        format!("n,,\x01auth=Bearer {header}.{payload}.\x01\x01").into_bytes()
    }

    #[test]
    fn the_principal_is_the_named_claim() {
        let message = first_message(r#"{"sub":"alice","iat":1,"client":"billing","n":7}"#);
        assert_eq!(token_principal(&message, "sub").as_deref(), Some("alice"));
        assert_eq!(token_principal(&message, "client").as_deref(), Some("billing"));
        assert_eq!(token_principal(&message, "n").as_deref(), Some("7"));
        assert_eq!(token_principal(&message, "missing"), None);
    }

    #[test]
    fn anything_else_names_nobody() {
        assert_eq!(token_principal(b"n,,\x01auth=Basic abc\x01\x01", "sub"), None);
        assert_eq!(token_principal(b"n,,\x01auth=Bearer not-a-jwt\x01\x01", "sub"), None);
        assert_eq!(token_principal(b"n,,\x01auth=Bearer a.!!!.\x01\x01", "sub"), None);
        assert_eq!(token_principal(&first_message(r#"{"sub":""}"#), "sub"), None);
        assert_eq!(token_principal(b"\x01", "sub"), None);
        assert_eq!(token_principal(b"", "sub"), None);
    }
}
