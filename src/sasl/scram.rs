//! SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677) as Kafka speaks them (KIP-84): the
//! client kaos logs in to brokers with, the server clients of `--client-users` log in to, the
//! stored form of a password, and the user name of a client-first message for SASL that passes
//! through.
//!
//! Like Kafka, passwords are used as their UTF-8 bytes without SASLprep, so a password logs in to
//! kaos exactly as it would to a broker. Neither side supports channel binding (Kafka does not).

use std::num::NonZeroU32;
use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use ring::rand::{SecureRandom, SystemRandom};
use ring::{digest, hmac, pbkdf2};

use super::Mechanism;

/// Kafka's default and least iteration count: its Java client refuses a server that asks for
/// fewer, so credentials kaos makes and serves have at least this many.
pub const MIN_ITERATIONS: u32 = 4096;
/// More is not a stronger password but a denial of service: a million PBKDF2 rounds already
/// take on the order of a second, per login.
pub const MAX_ITERATIONS: u32 = 1_000_000;
/// What a decoy asks for: Kafka's default, and `kaos hash-password`'s.
const DECOY_ITERATIONS: NonZeroU32 = NonZeroU32::new(MIN_ITERATIONS).unwrap();
/// 24 random bytes, 32 base64 characters: well past RFC 5802's need for unguessable nonces.
const NONCE_BYTES: usize = 24;
const SALT_BYTES: usize = 16;
/// The GS2 header of a client without channel binding and without an authorization id.
const GS2_HEADER: &str = "n,,";

/// The hash function a SCRAM mechanism is built on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScramHash {
    Sha256,
    Sha512,
}

impl ScramHash {
    pub fn mechanism(self) -> Mechanism {
        match self {
            ScramHash::Sha256 => Mechanism::ScramSha256,
            ScramHash::Sha512 => Mechanism::ScramSha512,
        }
    }

    /// Bytes in a digest, and so in a stored key, server key and proof.
    pub fn output_len(self) -> usize {
        self.digest().output_len()
    }

    fn digest(self) -> &'static digest::Algorithm {
        match self {
            ScramHash::Sha256 => &digest::SHA256,
            ScramHash::Sha512 => &digest::SHA512,
        }
    }

    fn hmac(self) -> hmac::Algorithm {
        match self {
            ScramHash::Sha256 => hmac::HMAC_SHA256,
            ScramHash::Sha512 => hmac::HMAC_SHA512,
        }
    }

    fn pbkdf2(self) -> pbkdf2::Algorithm {
        match self {
            ScramHash::Sha256 => pbkdf2::PBKDF2_HMAC_SHA256,
            ScramHash::Sha512 => pbkdf2::PBKDF2_HMAC_SHA512,
        }
    }

    fn h(self, data: &[u8]) -> Vec<u8> {
        digest::digest(self.digest(), data).as_ref().to_vec()
    }

    fn hmac_sign(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        hmac::sign(&hmac::Key::new(self.hmac(), key), data).as_ref().to_vec()
    }

    /// RFC 5802's SaltedPassword: Hi(password, salt, i), which is PBKDF2 with HMAC.
    fn salted_password(self, password: &str, salt: &[u8], iterations: NonZeroU32) -> Vec<u8> {
        let mut salted = vec![0u8; self.output_len()];
        pbkdf2::derive(self.pbkdf2(), iterations, salt, password.as_bytes(), &mut salted);
        salted
    }
}

/// Why a SCRAM exchange failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    #[error("malformed client-first message: {0}")]
    MalformedClientFirst(&'static str),
    #[error("malformed server-first message: {0}")]
    MalformedServerFirst(&'static str),
    #[error("malformed client-final message: {0}")]
    MalformedClientFinal(&'static str),
    #[error("malformed server-final message: {0}")]
    MalformedServerFinal(&'static str),
    #[error("channel binding is not supported, and the client asked for it")]
    ChannelBinding,
    #[error("delegation tokens (tokenauth=true) are not supported")]
    DelegationToken,
    #[error("an authorization id other than the user name is not supported")]
    AuthorizationId,
    #[error("the nonce does not continue this exchange")]
    Nonce,
    #[error("{0} iterations is implausible (at most {MAX_ITERATIONS})")]
    Iterations(u64),
    #[error("the server refused: {0}")]
    Server(String),
    #[error("wrong password or unknown user")]
    Authentication,
    #[error("the server's signature is wrong: it does not know the password")]
    ServerSignature,
    #[error("a server-final message before the client-final message was made")]
    OutOfOrder,
}

/// The server's stored form of a password (RFC 5802 section 3): enough to verify a client, not
/// to log in as one.
#[derive(Clone)]
pub struct StoredCredential {
    pub hash: ScramHash,
    pub salt: Vec<u8>,
    pub iterations: NonZeroU32,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

/// Never prints the keys.
impl std::fmt::Debug for StoredCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredCredential")
            .field("hash", &self.hash)
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

impl StoredCredential {
    pub fn derive(hash: ScramHash, password: &str, salt: &[u8], iterations: NonZeroU32) -> StoredCredential {
        let keys = Keys::new(hash, &hash.salted_password(password, salt, iterations));
        StoredCredential {
            hash,
            salt: salt.to_vec(),
            iterations,
            stored_key: keys.stored_key,
            server_key: keys.server_key,
        }
    }

    /// A credential under a fresh random salt.
    pub fn generate(hash: ScramHash, password: &str, iterations: NonZeroU32) -> StoredCredential {
        StoredCredential::derive(hash, password, &random_bytes::<SALT_BYTES>(), iterations)
    }

    /// Whether `password` is the one this was made from (for PLAIN logins against SCRAM
    /// credentials). Compares in constant time.
    pub fn verify_password(&self, password: &str) -> bool {
        let keys = Keys::new(self.hash, &self.hash.salted_password(password, &self.salt, self.iterations));
        constant_time_eq(&keys.stored_key, &self.stored_key)
    }

    /// What an unknown user is served instead of a credential, so that kaos's answers do not
    /// tell who exists: a salt and keys that look random but are the same for the same name
    /// for the life of the process, and Kafka's default iteration count. No password matches it
    /// but by breaking SHA-2, and the server refuses it even then.
    pub(super) fn decoy(hash: ScramHash, user: &str) -> StoredCredential {
        let secret = process_secret();
        let derive =
            |purpose: &str| hash.hmac_sign(secret, format!("kaos decoy {purpose}\0{user}").as_bytes());
        let mut salt = derive("salt");
        salt.truncate(SALT_BYTES);
        StoredCredential {
            hash,
            salt,
            iterations: DECOY_ITERATIONS,
            stored_key: derive("stored key"),
            server_key: derive("server key"),
        }
    }
}

/// The keys RFC 5802 derives from a salted password.
struct Keys {
    client_key: Vec<u8>,
    stored_key: Vec<u8>,
    server_key: Vec<u8>,
}

impl Keys {
    fn new(hash: ScramHash, salted_password: &[u8]) -> Keys {
        let client_key = hash.hmac_sign(salted_password, b"Client Key");
        let stored_key = hash.h(&client_key);
        let server_key = hash.hmac_sign(salted_password, b"Server Key");
        Keys { client_key, stored_key, server_key }
    }
}

/// kaos logging in to a broker: `client_first`, then `client_final` with the broker's answer,
/// then `verify_server_final` with the broker's last answer.
pub struct ScramClient {
    hash: ScramHash,
    password: String,
    nonce: String,
    /// `n=<user>,r=<nonce>`: the client-first message without its GS2 header.
    first_bare: String,
    /// The server signature a broker that knows the password sends last; known once the
    /// client-final message is made.
    server_signature: Option<Vec<u8>>,
}

impl ScramClient {
    pub fn new(hash: ScramHash, username: &str, password: &str) -> ScramClient {
        ScramClient::with_nonce(hash, username, password, random_nonce())
    }

    fn with_nonce(hash: ScramHash, username: &str, password: &str, nonce: String) -> ScramClient {
        let first_bare = format!("n={},r={nonce}", encode_name(username));
        ScramClient { hash, password: password.to_owned(), nonce, first_bare, server_signature: None }
    }

    pub fn client_first(&self) -> Vec<u8> {
        format!("{GS2_HEADER}{}", self.first_bare).into_bytes()
    }

    /// The client-final message answering the broker's server-first message.
    pub fn client_final(&mut self, server_first: &[u8]) -> Result<Vec<u8>, ScramError> {
        use ScramError::MalformedServerFirst as Malformed;
        let text = std::str::from_utf8(server_first).map_err(|_| Malformed("not UTF-8"))?;
        if let Some(error) = text.strip_prefix("e=") {
            return Err(ScramError::Server(error.to_owned()));
        }
        let mut attributes = text.split(',');
        let nonce = attributes.next().unwrap_or_default();
        if nonce.starts_with("m=") {
            return Err(Malformed("it demands an extension kaos does not know"));
        }
        let nonce = nonce.strip_prefix("r=").ok_or(Malformed("no nonce (r=) first"))?;
        if !valid_nonce(nonce) {
            return Err(Malformed("the nonce has characters RFC 5802 does not allow"));
        }
        // The server's nonce is ours with its own appended: anything else is not an answer to
        // this client-first message.
        if nonce.len() <= self.nonce.len() || !nonce.starts_with(&self.nonce) {
            return Err(ScramError::Nonce);
        }
        let salt =
            attributes.next().and_then(|s| s.strip_prefix("s=")).ok_or(Malformed("no salt (s=) second"))?;
        let salt = BASE64.decode(salt).map_err(|_| Malformed("the salt is not base64"))?;
        let iterations = attributes
            .next()
            .and_then(|i| i.strip_prefix("i="))
            .ok_or(Malformed("no iteration count (i=) third"))?;
        let iterations = parse_iterations(iterations)?;

        let without_proof = format!("c={},r={nonce}", BASE64.encode(GS2_HEADER));
        let auth_message = format!("{},{text},{without_proof}", self.first_bare);
        let keys = Keys::new(self.hash, &self.hash.salted_password(&self.password, &salt, iterations));
        let client_signature = self.hash.hmac_sign(&keys.stored_key, auth_message.as_bytes());
        let proof = xor(&keys.client_key, &client_signature);
        self.server_signature = Some(self.hash.hmac_sign(&keys.server_key, auth_message.as_bytes()));
        Ok(format!("{without_proof},p={}", BASE64.encode(proof)).into_bytes())
    }

    /// Checks the broker's server-final message: it proves the broker knows the password.
    pub fn verify_server_final(&self, server_final: &[u8]) -> Result<(), ScramError> {
        use ScramError::MalformedServerFinal as Malformed;
        let expected = self.server_signature.as_ref().ok_or(ScramError::OutOfOrder)?;
        let text = std::str::from_utf8(server_final).map_err(|_| Malformed("not UTF-8"))?;
        if let Some(error) = text.strip_prefix("e=") {
            return Err(ScramError::Server(error.to_owned()));
        }
        let verifier = text.split(',').next().unwrap_or_default();
        let signature = verifier.strip_prefix("v=").ok_or(Malformed("no verifier (v=)"))?;
        let signature = BASE64.decode(signature).map_err(|_| Malformed("the verifier is not base64"))?;
        if !constant_time_eq(&signature, expected) {
            return Err(ScramError::ServerSignature);
        }
        Ok(())
    }
}

/// kaos as the server of a client logging in: `start` with the client-first message, then
/// `finish` with the client-final one.
pub struct ScramServer {
    hash: ScramHash,
    user: String,
    credential: StoredCredential,
    /// False when `credential` is a decoy: the exchange runs to its end and then fails.
    known: bool,
    /// The client's GS2 header, which its client-final message must echo (base64) in `c=`.
    gs2_header: String,
    /// The client's nonce and ours after it.
    nonce: String,
    /// The client-first message without its GS2 header, a comma, the server-first message.
    auth_prefix: String,
}

impl ScramServer {
    /// Reads the client-first message, looks its user up, and returns the server-first message.
    /// An unknown user is answered as a known one would be (see `StoredCredential::decoy`) and
    /// refused only by `finish`, with the error a wrong password gets.
    pub fn start(
        hash: ScramHash,
        client_first: &[u8],
        lookup: impl FnOnce(&str) -> Option<StoredCredential>,
    ) -> Result<(ScramServer, Vec<u8>), ScramError> {
        ScramServer::start_with_nonce(hash, client_first, lookup, random_nonce())
    }

    fn start_with_nonce(
        hash: ScramHash,
        client_first: &[u8],
        lookup: impl FnOnce(&str) -> Option<StoredCredential>,
        server_nonce: String,
    ) -> Result<(ScramServer, Vec<u8>), ScramError> {
        let first = ClientFirst::parse(client_first)?;
        if first.channel_binding {
            return Err(ScramError::ChannelBinding);
        }
        if first.token_auth {
            return Err(ScramError::DelegationToken);
        }
        if first.authzid.as_ref().is_some_and(|authzid| *authzid != first.user) {
            return Err(ScramError::AuthorizationId);
        }
        let (credential, known) = match lookup(&first.user) {
            Some(credential) if credential.hash == hash => (credential, true),
            _ => (StoredCredential::decoy(hash, &first.user), false),
        };
        let nonce = format!("{}{server_nonce}", first.nonce);
        let server_first =
            format!("r={nonce},s={},i={}", BASE64.encode(&credential.salt), credential.iterations);
        let server = ScramServer {
            hash,
            auth_prefix: format!("{},{server_first}", first.bare),
            user: first.user,
            credential,
            known,
            gs2_header: first.gs2_header.to_owned(),
            nonce,
        };
        Ok((server, server_first.into_bytes()))
    }

    /// The user the client-first message named (logged in only once `finish` succeeds).
    pub fn user(&self) -> &str {
        &self.user
    }

    /// Verifies the client's proof and returns the server-final message.
    pub fn finish(&self, client_final: &[u8]) -> Result<Vec<u8>, ScramError> {
        use ScramError::MalformedClientFinal as Malformed;
        let text = std::str::from_utf8(client_final).map_err(|_| Malformed("not UTF-8"))?;
        // The proof is the last attribute and is signed over everything before it.
        let (without_proof, proof) = text.rsplit_once(",p=").ok_or(Malformed("no proof (p=) last"))?;
        let proof = BASE64.decode(proof).map_err(|_| Malformed("the proof is not base64"))?;
        if proof.len() != self.hash.output_len() {
            return Err(Malformed("the proof is not as long as the mechanism's digest"));
        }
        let mut attributes = without_proof.split(',');
        let binding = attributes
            .next()
            .and_then(|c| c.strip_prefix("c="))
            .ok_or(Malformed("no channel binding (c=) first"))?;
        let binding = BASE64.decode(binding).map_err(|_| Malformed("the channel binding is not base64"))?;
        if binding != self.gs2_header.as_bytes() {
            return Err(Malformed("the channel binding (c=) does not echo the client-first GS2 header"));
        }
        let nonce =
            attributes.next().and_then(|r| r.strip_prefix("r=")).ok_or(Malformed("no nonce (r=) second"))?;
        if nonce != self.nonce {
            return Err(ScramError::Nonce);
        }

        let auth_message = format!("{},{without_proof}", self.auth_prefix);
        let credential = &self.credential;
        let client_signature = self.hash.hmac_sign(&credential.stored_key, auth_message.as_bytes());
        let client_key = xor(&proof, &client_signature);
        let proven = constant_time_eq(&self.hash.h(&client_key), &credential.stored_key);
        if !(proven && self.known) {
            return Err(ScramError::Authentication);
        }
        let server_signature = self.hash.hmac_sign(&credential.server_key, auth_message.as_bytes());
        Ok(format!("v={}", BASE64.encode(server_signature)).into_bytes())
    }
}

/// The user a client-first message names, or `None` if it is malformed or names a delegation
/// token rather than a user (the token's owner, whom the broker sees, is not in the message).
pub fn client_first_username(message: &[u8]) -> Option<String> {
    ClientFirst::parse(message).ok().filter(|first| !first.token_auth).map(|first| first.user)
}

/// A client-first message: `gs2-header client-first-bare`, where the GS2 header is
/// `(n | y | p=<cb-name>) , [a=<authzid>] ,` and the bare part `n=<user>,r=<nonce>[,ext...]`.
struct ClientFirst<'m> {
    gs2_header: &'m str,
    channel_binding: bool,
    authzid: Option<String>,
    user: String,
    nonce: &'m str,
    bare: &'m str,
    /// KIP-48's `tokenauth=true` extension: the user is a delegation token id.
    token_auth: bool,
}

impl<'m> ClientFirst<'m> {
    fn parse(message: &'m [u8]) -> Result<ClientFirst<'m>, ScramError> {
        use ScramError::MalformedClientFirst as Malformed;
        let text = std::str::from_utf8(message).map_err(|_| Malformed("not UTF-8"))?;
        let (flag, rest) = text.split_once(',').ok_or(Malformed("no GS2 header"))?;
        let channel_binding = match flag {
            "n" | "y" => false,
            _ if flag.starts_with("p=") => true,
            _ => return Err(Malformed("the GS2 header does not start with n, y or p=")),
        };
        let (authzid, bare) = rest.split_once(',').ok_or(Malformed("the GS2 header does not end"))?;
        let authzid = match authzid {
            "" => None,
            _ => {
                let authzid =
                    authzid.strip_prefix("a=").ok_or(Malformed("the authorization id has no a="))?;
                Some(decode_name(authzid).ok_or(Malformed("the authorization id is not a valid saslname"))?)
            }
        };
        let gs2_header = &text[..text.len() - bare.len()];
        let mut attributes = bare.split(',');
        let user = attributes.next().unwrap_or_default();
        if user.starts_with("m=") {
            return Err(Malformed("it demands an extension kaos does not know"));
        }
        let user = user.strip_prefix("n=").ok_or(Malformed("no user name (n=) first"))?;
        let user = decode_name(user).ok_or(Malformed("the user name is empty or badly escaped"))?;
        let nonce =
            attributes.next().and_then(|r| r.strip_prefix("r=")).ok_or(Malformed("no nonce (r=) second"))?;
        if !valid_nonce(nonce) {
            return Err(Malformed("the nonce is empty or has characters RFC 5802 does not allow"));
        }
        let token_auth = attributes.any(|extension| extension == "tokenauth=true");
        Ok(ClientFirst { gs2_header, channel_binding, authzid, user, nonce, bare, token_auth })
    }
}

/// A saslname: `,` and `=` are written `=2C` and `=3D`.
fn encode_name(name: &str) -> String {
    name.replace('=', "=3D").replace(',', "=2C")
}

/// The inverse of `encode_name`; `None` for an empty name or any other use of `=`.
fn decode_name(saslname: &str) -> Option<String> {
    let mut name = String::with_capacity(saslname.len());
    let mut rest = saslname;
    while let Some((before, after)) = rest.split_once('=') {
        name.push_str(before);
        let (escaped, after) = after.split_at_checked(2)?;
        name.push(match escaped {
            "2C" => ',',
            "3D" => '=',
            _ => return None,
        });
        rest = after;
    }
    name.push_str(rest);
    (!name.is_empty()).then_some(name)
}

/// RFC 5802: a nonce is printable ASCII but `,`.
fn valid_nonce(nonce: &str) -> bool {
    !nonce.is_empty() && nonce.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b',')
}

fn parse_iterations(text: &str) -> Result<NonZeroU32, ScramError> {
    use ScramError::MalformedServerFirst as Malformed;
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Malformed("the iteration count is not a number"));
    }
    // Digits beyond u64 are as implausible as any count over the limit.
    let count = text.parse::<u64>().unwrap_or(u64::MAX);
    if count > u64::from(MAX_ITERATIONS) {
        return Err(ScramError::Iterations(count));
    }
    u32::try_from(count).ok().and_then(NonZeroU32::new).ok_or(Malformed("the iteration count is zero"))
}

fn xor(a: &[u8], b: &[u8]) -> Vec<u8> {
    a.iter().zip(b).map(|(x, y)| x ^ y).collect()
}

/// Compares secrets without leaking through timing where they differ. ring's own constant-time
/// comparison is deprecated for outside use, so this compares HMACs of both under a per-process
/// key with `hmac::verify`, which is constant time: the comparison then runs over values an
/// attacker cannot steer byte by byte either way.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let key = hmac::Key::new(hmac::HMAC_SHA256, process_secret());
    hmac::verify(&key, a, hmac::sign(&key, b).as_ref()).is_ok()
}

/// A random key for this process: it keys decoys (stable while kaos runs, unpredictable from
/// outside) and the constant-time comparison.
fn process_secret() -> &'static [u8] {
    static SECRET: OnceLock<[u8; 32]> = OnceLock::new();
    SECRET.get_or_init(random_bytes)
}

fn random_nonce() -> String {
    BASE64.encode(random_bytes::<NONCE_BYTES>())
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    // SystemRandom is getrandom(2), which fails only on a system with no entropy source at all;
    // no SCRAM exchange or salt is safe there.
    SystemRandom::new().fill(&mut bytes).expect("the system random number generator failed");
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    const RFC_NONCE: &str = "rOprNGfwEbeRWgbNEkqO";
    const RFC_SERVER_NONCE: &str = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
    const RFC_SALT: &str = "W22ZaJ0SNY7soEsUEjb6gQ==";
    const RFC_SERVER_FIRST: &str =
        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
    const RFC_CLIENT_FINAL: &str = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
    const RFC_SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

    fn iterations(count: u32) -> NonZeroU32 {
        NonZeroU32::new(count).unwrap()
    }

    fn rfc_credential() -> StoredCredential {
        StoredCredential::derive(
            ScramHash::Sha256,
            "pencil",
            &BASE64.decode(RFC_SALT).unwrap(),
            iterations(4096),
        )
    }

    /// A whole exchange; the server knows `stored`'s user by `user`.
    fn log_in(
        hash: ScramHash,
        user: &str,
        password: &str,
        stored: Option<StoredCredential>,
    ) -> Result<String, ScramError> {
        let mut client = ScramClient::new(hash, user, password);
        let (server, server_first) = ScramServer::start(hash, &client.client_first(), |_| stored)?;
        let client_final = client.client_final(&server_first)?;
        let server_final = server.finish(&client_final)?;
        client.verify_server_final(&server_final)?;
        Ok(server.user().to_owned())
    }

    #[test]
    fn the_client_speaks_the_rfc_7677_example() {
        let mut client = ScramClient::with_nonce(ScramHash::Sha256, "user", "pencil", RFC_NONCE.into());
        assert_eq!(client.client_first(), b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
        let client_final = client.client_final(RFC_SERVER_FIRST.as_bytes()).unwrap();
        assert_eq!(String::from_utf8(client_final).unwrap(), RFC_CLIENT_FINAL);
        client.verify_server_final(RFC_SERVER_FINAL.as_bytes()).unwrap();
    }

    #[test]
    fn the_server_speaks_the_rfc_7677_example() {
        let client_first = b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
        let (server, server_first) = ScramServer::start_with_nonce(
            ScramHash::Sha256,
            client_first,
            |user| (user == "user").then(rfc_credential),
            RFC_SERVER_NONCE.into(),
        )
        .unwrap();
        assert_eq!(String::from_utf8(server_first).unwrap(), RFC_SERVER_FIRST);
        assert_eq!(server.user(), "user");
        let server_final = server.finish(RFC_CLIENT_FINAL.as_bytes()).unwrap();
        assert_eq!(String::from_utf8(server_final).unwrap(), RFC_SERVER_FINAL);
    }

    /// Expected values from an independent RFC 5802 implementation (Python's hashlib.pbkdf2_hmac
    /// and hmac), with a user name that needs escaping and a non-ASCII password.
    #[test]
    fn scram_sha512_matches_an_independent_implementation() {
        let (user, password) = ("kaos,admin=1", "wonder land\u{e9}");
        let server_first = "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096";
        let client_final = "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,\
            p=iB32DKeCUePqQ7SGJZ3NSJh9HiReSlUnh70V7FdgNf1uKfdrcQkqT7ICZGq0bw8lqm3cf7IRufbZ4CePI72Qtg==";
        let server_final =
            "v=0MwDaK1lnHYn040Nm5l1T+mxsm/kviSqIxM1onPl5fyhRC7FsnFi3ULEj+jKg4oLe9s63OzIfNq7vcT6KaxWtQ==";

        let mut client =
            ScramClient::with_nonce(ScramHash::Sha512, user, password, "fyko+d2lbbFgONRv9qkxdawL".into());
        assert_eq!(client.client_first(), b"n,,n=kaos=2Cadmin=3D1,r=fyko+d2lbbFgONRv9qkxdawL");
        assert_eq!(
            String::from_utf8(client.client_final(server_first.as_bytes()).unwrap()).unwrap(),
            client_final
        );
        client.verify_server_final(server_final.as_bytes()).unwrap();

        let stored = StoredCredential::derive(
            ScramHash::Sha512,
            password,
            &BASE64.decode("QSXCR+Q6sek8bf92").unwrap(),
            iterations(4096),
        );
        assert_eq!(
            BASE64.encode(&stored.stored_key),
            "hjqNoCgkpfSg6wgd9llIK2WSQGz3bMdFX8YVYylym8ASWCpwgpp791aNdXUr9Xon9HaTaxML8oQ7O9MeVVSV/g=="
        );
        assert_eq!(
            BASE64.encode(&stored.server_key),
            "5Db+HfXM6aZGvxYNx7x7kKlFIMf5+L6e89HKtYRG3Gkpxcad6BM03PvY+9b+V4daRRiNuRbz9VBwWB7wus+rNg=="
        );
        let (server, first) = ScramServer::start_with_nonce(
            ScramHash::Sha512,
            &client.client_first(),
            |name| (name == user).then_some(stored),
            "3rfcNHYJY1ZVvWVs7j".into(),
        )
        .unwrap();
        assert_eq!(first, server_first.as_bytes());
        assert_eq!(server.finish(client_final.as_bytes()).unwrap(), server_final.as_bytes());
    }

    #[test]
    fn a_client_and_the_server_agree_under_both_hashes() {
        for hash in [ScramHash::Sha256, ScramHash::Sha512] {
            let stored = StoredCredential::generate(hash, "s3cret", iterations(4096));
            assert_eq!(stored.stored_key.len(), hash.output_len());
            assert_eq!(log_in(hash, "alice", "s3cret", Some(stored)), Ok("alice".into()));
        }
    }

    #[test]
    fn a_wrong_password_fails() {
        for hash in [ScramHash::Sha256, ScramHash::Sha512] {
            let stored = StoredCredential::generate(hash, "s3cret", iterations(4096));
            assert_eq!(log_in(hash, "alice", "guess", Some(stored)), Err(ScramError::Authentication));
        }
    }

    #[test]
    fn a_credential_of_the_other_hash_is_no_credential() {
        let stored = StoredCredential::generate(ScramHash::Sha256, "s3cret", iterations(4096));
        assert_eq!(
            log_in(ScramHash::Sha512, "alice", "s3cret", Some(stored)),
            Err(ScramError::Authentication)
        );
    }

    #[test]
    fn an_unknown_user_fails_at_the_final_step_like_a_wrong_password() {
        let client = ScramClient::new(ScramHash::Sha512, "mallory", "guess");
        let (server, server_first) =
            ScramServer::start(ScramHash::Sha512, &client.client_first(), |_| None).unwrap();
        assert_eq!(server.user(), "mallory");
        let server_first = String::from_utf8(server_first).unwrap();
        // Shaped like a real user's: a 16-byte salt and Kafka's default iteration count.
        let salt = server_first.split(',').nth(1).unwrap().strip_prefix("s=").unwrap();
        assert_eq!(BASE64.decode(salt).unwrap().len(), SALT_BYTES);
        assert!(server_first.ends_with(",i=4096"), "{server_first}");
        // The same salt every time for the same name (a fresh one per attempt would give the
        // game away), another for another name.
        let again = ScramServer::start(ScramHash::Sha512, &client.client_first(), |_| None).unwrap().1;
        assert!(String::from_utf8(again).unwrap().contains(&format!(",s={salt},")));
        let other = ScramClient::new(ScramHash::Sha512, "trudy", "guess");
        let other = ScramServer::start(ScramHash::Sha512, &other.client_first(), |_| None).unwrap().1;
        assert!(!String::from_utf8(other).unwrap().contains(&format!(",s={salt},")));

        assert_eq!(log_in(ScramHash::Sha512, "mallory", "guess", None), Err(ScramError::Authentication));
        let wrong = StoredCredential::generate(ScramHash::Sha512, "s3cret", iterations(4096));
        assert_eq!(log_in(ScramHash::Sha512, "alice", "guess", Some(wrong)), Err(ScramError::Authentication));
    }

    #[test]
    fn names_with_commas_and_equals_round_trip() {
        for name in ["a,b", "a=b", "=2C", ",=,", "x=3D,y", "caf\u{e9} au lait"] {
            let client = ScramClient::new(ScramHash::Sha256, name, "pw");
            assert_eq!(client_first_username(&client.client_first()).as_deref(), Some(name));
            let stored = StoredCredential::generate(ScramHash::Sha256, "pw", iterations(4096));
            assert_eq!(log_in(ScramHash::Sha256, name, "pw", Some(stored)).as_deref(), Ok(name));
        }
    }

    #[test]
    fn client_first_username_reads_past_every_gs2_header() {
        for (message, name) in [
            (&b"n,,n=alice,r=abc"[..], Some("alice")),
            (b"y,,n=alice,r=abc", Some("alice")),
            (b"p=tls-unique,,n=alice,r=abc", Some("alice")),
            (b"n,a=alice,n=alice,r=abc", Some("alice")),
            (b"n,a=admin,n=al=2Cice,r=abc,ext=1", Some("al,ice")),
            (b"n,,n=al=3Dice,r=abc", Some("al=ice")),
            // A delegation token's id is not the user the broker sees.
            (b"n,,n=tokenid,r=abc,tokenauth=true", None),
            (b"n,,n=al=ice,r=abc", None),
            (b"n,,n=alice=2,r=abc", None),
            (b"n,,n=,r=abc", None),
            (b"n,,r=abc,n=alice", None),
            (b"n,,n=alice", None),
            (b"n,,n=alice,r=", None),
            (b"x,,n=alice,r=abc", None),
            (b"n,b=x,n=alice,r=abc", None),
            (b"n,,m=ext,n=alice,r=abc", None),
            (b"n,,n=al\xffice,r=abc", None),
        ] {
            assert_eq!(
                client_first_username(message).as_deref(),
                name,
                "{:?}",
                String::from_utf8_lossy(message)
            );
        }
    }

    #[test]
    fn the_server_refuses_what_it_does_not_support() {
        let start = |message: &[u8]| {
            ScramServer::start(ScramHash::Sha256, message, |_| Some(rfc_credential()))
                .map(|(server, _)| server.user)
        };
        assert_eq!(start(b"p=tls-unique,,n=user,r=abc"), Err(ScramError::ChannelBinding));
        assert_eq!(start(b"n,,n=user,r=abc,tokenauth=true"), Err(ScramError::DelegationToken));
        assert_eq!(start(b"n,a=admin,n=user,r=abc"), Err(ScramError::AuthorizationId));
        assert_eq!(start(b"n,a=user,n=user,r=abc"), Ok("user".into()));
        // A client that could bind channels but believes kaos cannot: nothing was downgraded.
        assert_eq!(start(b"y,,n=user,r=abc,ext=ignored"), Ok("user".into()));
    }

    #[test]
    fn the_server_checks_the_nonce_the_gs2_echo_and_the_proof_length() {
        let start = |client_first: &[u8]| {
            ScramServer::start_with_nonce(
                ScramHash::Sha256,
                client_first,
                |_| Some(rfc_credential()),
                RFC_SERVER_NONCE.into(),
            )
            .unwrap()
            .0
        };
        let server = start(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
        let other_nonce = RFC_CLIENT_FINAL.replace("hNlF$k0", "hNlF$k1");
        assert_eq!(server.finish(other_nonce.as_bytes()), Err(ScramError::Nonce));
        let other_header = RFC_CLIENT_FINAL.replace("c=biws", "c=eSws");
        assert!(matches!(server.finish(other_header.as_bytes()), Err(ScramError::MalformedClientFinal(_))));
        let short_proof =
            RFC_CLIENT_FINAL.replace("p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=", "p=dHzb");
        assert!(matches!(server.finish(short_proof.as_bytes()), Err(ScramError::MalformedClientFinal(_))));
        let flipped = RFC_CLIENT_FINAL.replace("p=dHzb", "p=dHzc");
        assert_eq!(server.finish(flipped.as_bytes()), Err(ScramError::Authentication));
        assert!(server.finish(RFC_CLIENT_FINAL.as_bytes()).is_ok(), "failed attempts change nothing");

        // A client-first message with an authorization id must be echoed with it.
        let server = start(b"n,a=user,n=user,r=rOprNGfwEbeRWgbNEkqO");
        assert!(matches!(
            server.finish(RFC_CLIENT_FINAL.as_bytes()),
            Err(ScramError::MalformedClientFinal(_))
        ));
    }

    #[test]
    fn the_client_checks_the_server_first_message() {
        let client_final = |server_first: &str| {
            ScramClient::with_nonce(ScramHash::Sha256, "user", "pencil", RFC_NONCE.into())
                .client_final(server_first.as_bytes())
        };
        assert_eq!(client_final("e=unknown-user"), Err(ScramError::Server("unknown-user".into())));
        assert_eq!(
            client_final("r=someoneElse123,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"),
            Err(ScramError::Nonce)
        );
        assert_eq!(
            client_final("r=rOprNGfwEbeRWgbNEkqO,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"),
            Err(ScramError::Nonce)
        );
        assert_eq!(
            client_final("r=rOprNGfwEbeRWgbNEkqOx,s=c2FsdA==,i=1000001"),
            Err(ScramError::Iterations(1_000_001))
        );
        assert_eq!(
            client_final("r=rOprNGfwEbeRWgbNEkqOx,s=c2FsdA==,i=99999999999999999999999"),
            Err(ScramError::Iterations(u64::MAX))
        );
        for malformed in [
            "r=rOprNGfwEbeRWgbNEkqOx,s=c2FsdA==,i=0",
            "r=rOprNGfwEbeRWgbNEkqOx,s=c2FsdA==,i=-1",
            "r=rOprNGfwEbeRWgbNEkqOx,s=c2FsdA==,i=+4096",
            "r=rOprNGfwEbeRWgbNEkqOx,s=c2FsdA==,i=",
            "r=rOprNGfwEbeRWgbNEkqOx,s=c2FsdA==",
            "r=rOprNGfwEbeRWgbNEkqOx,s=not base64!,i=4096",
            "r=rOprNGfwEbeRWgbNEkqOx,i=4096,s=c2FsdA==",
            "r=rOprNGfwEbeRWgbNEkqO\u{7f},s=c2FsdA==,i=4096",
            "m=must-understand,r=rOprNGfwEbeRWgbNEkqOx,s=c2FsdA==,i=4096",
            "s=c2FsdA==,i=4096",
            "",
        ] {
            assert!(
                matches!(client_final(malformed), Err(ScramError::MalformedServerFirst(_))),
                "{malformed:?}"
            );
        }
        // A small count is the broker's business; the exchange goes on.
        assert!(client_final("r=rOprNGfwEbeRWgbNEkqOx,s=c2FsdA==,i=1").is_ok());
    }

    #[test]
    fn the_client_checks_the_server_signature() {
        let mut client = ScramClient::with_nonce(ScramHash::Sha256, "user", "pencil", RFC_NONCE.into());
        assert_eq!(client.verify_server_final(RFC_SERVER_FINAL.as_bytes()), Err(ScramError::OutOfOrder));
        client.client_final(RFC_SERVER_FIRST.as_bytes()).unwrap();
        assert_eq!(
            client.verify_server_final(b"v=7rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="),
            Err(ScramError::ServerSignature)
        );
        assert_eq!(client.verify_server_final(b"v="), Err(ScramError::ServerSignature));
        assert_eq!(
            client.verify_server_final(b"e=invalid-proof"),
            Err(ScramError::Server("invalid-proof".into()))
        );
        for malformed in [&b""[..], b"x=abc", b"v=!!", b"\xff"] {
            assert!(matches!(
                client.verify_server_final(malformed),
                Err(ScramError::MalformedServerFinal(_))
            ));
        }
        let with_extension = format!("{RFC_SERVER_FINAL},ext=1");
        assert_eq!(client.verify_server_final(with_extension.as_bytes()), Ok(()));
    }

    #[test]
    fn stored_credentials_verify_passwords() {
        assert!(rfc_credential().verify_password("pencil"));
        assert!(!rfc_credential().verify_password("pencil "));
        assert!(!rfc_credential().verify_password(""));
        assert_eq!(
            BASE64.encode(rfc_credential().stored_key),
            "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY="
        );
        assert_eq!(
            BASE64.encode(rfc_credential().server_key),
            "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="
        );
        let one = StoredCredential::generate(ScramHash::Sha512, "pw", iterations(4096));
        let two = StoredCredential::generate(ScramHash::Sha512, "pw", iterations(4096));
        assert!(one.salt.len() >= 16 && one.salt != two.salt, "a fresh salt each time");
        assert!(one.verify_password("pw") && two.verify_password("pw"));
        assert!(!StoredCredential::decoy(ScramHash::Sha256, "user").verify_password("pencil"));
        let printed = format!("{one:?}");
        assert!(!printed.contains(&format!("{:?}", one.stored_key)), "{printed}");
    }

    #[test]
    fn constant_time_eq_compares() {
        assert!(constant_time_eq(b"", b""));
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(!constant_time_eq(b"", b"a"));
    }

    /// Every prefix and every one-byte corruption of real messages, at every step: errors, not
    /// panics.
    #[test]
    fn malformed_messages_are_errors_not_panics() {
        let credential = rfc_credential();
        let mut mangled = Vec::new();
        for message in [
            &b"n,a=user,n=user,r=rOprNGfwEbeRWgbNEkqO,ext=1"[..],
            // One iteration: mangling never asks for many PBKDF2 rounds.
            b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=1",
            RFC_CLIENT_FINAL.as_bytes(),
            RFC_SERVER_FINAL.as_bytes(),
        ] {
            for end in 0..=message.len() {
                mangled.push(message[..end].to_vec());
            }
            for at in 0..message.len() {
                for byte in [b',', b'=', b'\0', 0xff, b'A'] {
                    let mut copy = message.to_vec();
                    copy[at] = byte;
                    mangled.push(copy);
                }
            }
        }
        for message in &mangled {
            let _ = client_first_username(message);
            if let Ok((server, _)) = ScramServer::start_with_nonce(
                ScramHash::Sha256,
                message,
                |_| Some(credential.clone()),
                RFC_SERVER_NONCE.into(),
            ) {
                let _ = server.user();
            }
            let (server, _) = ScramServer::start_with_nonce(
                ScramHash::Sha256,
                b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
                |_| Some(credential.clone()),
                RFC_SERVER_NONCE.into(),
            )
            .unwrap();
            let _ = server.finish(message);
            let mut client = ScramClient::with_nonce(ScramHash::Sha256, "user", "pencil", RFC_NONCE.into());
            let _ = client.client_final(message);
            let _ = client.verify_server_final(message);
        }
    }
}
