//! SASL, the two ways kaos speaks it.
//!
//! - Passing through: a client authenticates to the broker itself and kaos relays the exchange
//!   untouched, only reading who the client says it is (`parse_plain`,
//!   `scram::client_first_username`, `oauth`) so that rules can be scoped to the user.
//! - Managed: kaos authenticates to the brokers as itself (`login`), and may make clients
//!   authenticate to kaos as users of a `--client-users` file (`users`, `scram::ScramServer`).
//!
//! Everything here is sans-IO: functions and state machines over whole SASL messages; the
//! callers read and write the bytes.

pub mod login;
pub mod oauth;
pub mod scram;
pub mod users;

use std::str::FromStr;

use scram::ScramHash;

/// The SASL mechanisms kaos can log in with and serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    Plain,
    ScramSha256,
    ScramSha512,
}

impl Mechanism {
    pub const ALL: [Mechanism; 3] = [Mechanism::Plain, Mechanism::ScramSha256, Mechanism::ScramSha512];

    /// The name Kafka's SaslHandshake uses.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }

    /// The hash of a SCRAM mechanism; `None` for PLAIN.
    pub fn scram_hash(self) -> Option<ScramHash> {
        match self {
            Mechanism::Plain => None,
            Mechanism::ScramSha256 => Some(ScramHash::Sha256),
            Mechanism::ScramSha512 => Some(ScramHash::Sha512),
        }
    }
}

/// A mechanism name kaos does not speak.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown SASL mechanism {0:?}: expected PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512")]
pub struct UnknownMechanism(pub String);

/// Exact names only: Kafka's brokers and clients compare mechanism names case-sensitively.
impl FromStr for Mechanism {
    type Err = UnknownMechanism;

    fn from_str(name: &str) -> Result<Mechanism, UnknownMechanism> {
        Mechanism::ALL.into_iter().find(|m| m.name() == name).ok_or_else(|| UnknownMechanism(name.to_owned()))
    }
}

/// A PLAIN message (RFC 4616): `[authzid] NUL authcid NUL passwd`.
pub fn plain_message(authzid: &str, user: &str, password: &str) -> Vec<u8> {
    [authzid.as_bytes(), user.as_bytes(), password.as_bytes()].join(&0u8)
}

/// The user (the authcid) and password of a PLAIN message.
///
/// `None` for what a broker refuses too: not three NUL-separated parts, an empty user or
/// password, text that is not UTF-8, or an authzid other than the user (Kafka's PLAIN server
/// refuses to act for someone else).
pub fn parse_plain(message: &[u8]) -> Option<(String, String)> {
    let mut parts = message.split(|&b| b == 0);
    let (authzid, user, password) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || user.is_empty() || password.is_empty() {
        return None;
    }
    if !authzid.is_empty() && authzid != user {
        return None;
    }
    let user = String::from_utf8(user.to_vec()).ok()?;
    let password = String::from_utf8(password.to_vec()).ok()?;
    Some((user, password))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mechanism_names_round_trip() {
        for mechanism in Mechanism::ALL {
            assert_eq!(mechanism.name().parse::<Mechanism>(), Ok(mechanism));
        }
        assert_eq!(Mechanism::Plain.scram_hash(), None);
        assert_eq!(Mechanism::ScramSha256.scram_hash(), Some(ScramHash::Sha256));
        assert_eq!(Mechanism::ScramSha512.scram_hash(), Some(ScramHash::Sha512));
    }

    #[test]
    fn an_unknown_mechanism_names_the_accepted_ones() {
        for name in ["plain", "SCRAM-SHA-1", "OAUTHBEARER", "GSSAPI", ""] {
            let error = name.parse::<Mechanism>().unwrap_err();
            assert_eq!(error, UnknownMechanism(name.to_owned()));
            let message = error.to_string();
            for mechanism in Mechanism::ALL {
                assert!(message.contains(mechanism.name()), "{message}");
            }
        }
    }

    #[test]
    fn plain_messages_round_trip() {
        assert_eq!(plain_message("", "alice", "s3cret"), b"\0alice\0s3cret");
        assert_eq!(
            parse_plain(&plain_message("", "alice", "s3cret")),
            Some(("alice".into(), "s3cret".into()))
        );
        let acting_as_self = plain_message("al ice", "al ice", "pass\u{e9}");
        assert_eq!(parse_plain(&acting_as_self), Some(("al ice".into(), "pass\u{e9}".into())));
    }

    #[test]
    fn malformed_plain_messages_name_nobody() {
        for message in [
            &b""[..],
            b"alice",
            b"\0alice",
            b"\0alice\0",
            b"\0\0secret",
            b"\0alice\0secret\0",
            b"bob\0alice\0secret",
            b"\0al\xffice\0secret",
            b"\0alice\0sec\xffret",
        ] {
            assert_eq!(parse_plain(message), None, "{message:?}");
        }
    }
}
