//! The `--client-users` file: the users clients log in to kaos as.
//!
//! One SCRAM credential per line, as `kaos hash-password USER` prints them:
//!
//! ```text
//! # user  mechanism      iterations  salt (base64)  stored key (base64)  server key (base64)
//! alice   SCRAM-SHA-256  4096        ...            ...                  ...
//! alice   SCRAM-SHA-512  4096        ...            ...                  ...
//! ```
//!
//! Fields are separated by whitespace; `#` starts a comment line. A user may have one line per
//! SCRAM mechanism and logs in with that mechanism, or with PLAIN against any of its lines. The
//! file holds no passwords, only what RFC 5802 lets a server keep: a stolen file lets nobody
//! log in without first guessing the passwords.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::Mechanism;
use super::scram::{MAX_ITERATIONS, MIN_ITERATIONS, ScramHash, StoredCredential};

/// The users of a `--client-users` file.
pub struct ClientUsers {
    users: HashMap<String, Vec<StoredCredential>>,
}

/// Names no user and prints no key.
impl std::fmt::Debug for ClientUsers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientUsers").field("users", &self.users.len()).finish()
    }
}

/// Why a `--client-users` file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum UsersFileError {
    #[error("--client-users {}: {source}", .path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("--client-users {}: {source}", .path.display())]
    Invalid { path: PathBuf, source: ParseError },
}

/// What is wrong with the text of a users file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("line {line}: {problem}")]
    Line { line: usize, problem: LineError },
    #[error("no users in it; add lines made by `kaos hash-password USER`")]
    Empty,
}

/// What is wrong with one line of a users file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    #[error("expected `<user> <mechanism> <iterations> <salt> <stored_key> <server_key>`, found {0} fields")]
    Fields(usize),
    #[error("the user name {0:?} has whitespace in it, which this file cannot hold")]
    UserWhitespace(String),
    #[error(
        "unknown mechanism {0:?}: expected SCRAM-SHA-256 or SCRAM-SHA-512 (PLAIN logins are checked against these)"
    )]
    Mechanism(String),
    #[error("iterations {0:?}: expected a whole number from {MIN_ITERATIONS} to {MAX_ITERATIONS}")]
    Iterations(String),
    #[error("the {0} is not valid base64")]
    Base64(&'static str),
    #[error("the salt is empty")]
    EmptySalt,
    #[error("the {field} is {got} bytes long; {mechanism} keys are {expected}")]
    KeyLength { field: &'static str, got: usize, expected: usize, mechanism: &'static str },
    #[error("a second {mechanism} line for {user:?} (the first is line {first})")]
    Duplicate { user: String, mechanism: &'static str, first: usize },
}

/// Why `hash_password_lines` cannot make lines.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HashPasswordError {
    #[error("the user name {0:?} cannot be used: {1}")]
    UserName(String, &'static str),
    #[error("the password is empty")]
    EmptyPassword,
    #[error("--iterations {0}: expected {MIN_ITERATIONS} to {MAX_ITERATIONS}")]
    Iterations(u32),
}

impl ClientUsers {
    pub fn load(path: &Path) -> Result<ClientUsers, UsersFileError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| UsersFileError::Read { path: path.to_owned(), source })?;
        ClientUsers::parse(&text).map_err(|source| UsersFileError::Invalid { path: path.to_owned(), source })
    }

    pub fn parse(text: &str) -> Result<ClientUsers, ParseError> {
        let mut users: HashMap<String, Vec<StoredCredential>> = HashMap::new();
        // The line each user's credential for each hash came from, to name it in a duplicate.
        let mut lines: HashMap<(String, ScramHash), usize> = HashMap::new();
        for (index, line) in text.lines().enumerate() {
            let number = index + 1;
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let at = |problem| ParseError::Line { line: number, problem };
            let (user, credential) = parse_line(line).map_err(at)?;
            match lines.entry((user.to_owned(), credential.hash)) {
                Entry::Occupied(first) => {
                    let mechanism = credential.hash.mechanism().name();
                    return Err(at(LineError::Duplicate {
                        user: user.to_owned(),
                        mechanism,
                        first: *first.get(),
                    }));
                }
                Entry::Vacant(slot) => slot.insert(number),
            };
            users.entry(user.to_owned()).or_default().push(credential);
        }
        // A file nobody can log in with is a mistake, not a configuration.
        if users.is_empty() {
            return Err(ParseError::Empty);
        }
        Ok(ClientUsers { users })
    }

    /// `user`'s credential for `hash`, if the file has one.
    pub fn credential(&self, user: &str, hash: ScramHash) -> Option<&StoredCredential> {
        self.users.get(user)?.iter().find(|credential| credential.hash == hash)
    }

    /// Whether `password` is `user`'s, by any of the user's credentials (a PLAIN login).
    ///
    /// Takes about as long for an unknown user as for a known one with a wrong password, so
    /// that timing does not tell who exists: it checks the password against decoys instead.
    pub fn verify_plain(&self, user: &str, password: &str) -> bool {
        let decoys;
        let (credentials, known) = match self.users.get(user) {
            Some(credentials) => (credentials.as_slice(), true),
            None => {
                decoys =
                    [ScramHash::Sha256, ScramHash::Sha512].map(|hash| StoredCredential::decoy(hash, user));
                (decoys.as_slice(), false)
            }
        };
        // Every credential, not the first that matches: the time spent then depends on the
        // number of lines, not on which one holds.
        let matched = credentials
            .iter()
            .fold(false, |matched, credential| credential.verify_password(password) | matched);
        matched && known
    }

    /// How many users the file has.
    #[expect(clippy::len_without_is_empty, reason = "a loaded file always has users")]
    pub fn len(&self) -> usize {
        self.users.len()
    }
}

fn parse_line(line: &str) -> Result<(&str, StoredCredential), LineError> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let [user, mechanism, iterations, salt, stored_key, server_key] = fields[..] else {
        // A name with a space in it shows as more fields, with the mechanism five from the end.
        if fields.len() > 6 && fields[fields.len() - 5].parse::<Mechanism>().is_ok() {
            return Err(LineError::UserWhitespace(fields[..fields.len() - 5].join(" ")));
        }
        return Err(LineError::Fields(fields.len()));
    };
    let hash = mechanism
        .parse::<Mechanism>()
        .ok()
        .and_then(Mechanism::scram_hash)
        .ok_or_else(|| LineError::Mechanism(mechanism.to_owned()))?;
    let iterations = iterations
        .parse::<u32>()
        .ok()
        .filter(|count| (MIN_ITERATIONS..=MAX_ITERATIONS).contains(count))
        .and_then(NonZeroU32::new)
        .ok_or_else(|| LineError::Iterations(iterations.to_owned()))?;
    let salt = BASE64.decode(salt).map_err(|_| LineError::Base64("salt"))?;
    if salt.is_empty() {
        return Err(LineError::EmptySalt);
    }
    let key = |field: &'static str, text: &str| {
        let key = BASE64.decode(text).map_err(|_| LineError::Base64(field))?;
        if key.len() != hash.output_len() {
            let mechanism = hash.mechanism().name();
            return Err(LineError::KeyLength {
                field,
                got: key.len(),
                expected: hash.output_len(),
                mechanism,
            });
        }
        Ok(key)
    };
    let stored_key = key("stored key", stored_key)?;
    let server_key = key("server key", server_key)?;
    Ok((user, StoredCredential { hash, salt, iterations, stored_key, server_key }))
}

/// `user`'s lines for a users file, SCRAM-SHA-256 then SCRAM-SHA-512, each under its own fresh
/// salt; each line ends with a newline.
pub fn hash_password_lines(user: &str, password: &str, iterations: u32) -> Result<String, HashPasswordError> {
    let refuse = |why| Err(HashPasswordError::UserName(user.to_owned(), why));
    if user.is_empty() {
        return refuse("it is empty");
    }
    if user.chars().any(char::is_whitespace) {
        return refuse("it has whitespace in it, which the users file cannot hold");
    }
    if user.chars().any(char::is_control) {
        return refuse("it has control characters in it");
    }
    if user.starts_with('#') {
        return refuse("its line would start with #, which makes a comment");
    }
    if password.is_empty() {
        return Err(HashPasswordError::EmptyPassword);
    }
    let iterations = Some(iterations)
        .filter(|count| (MIN_ITERATIONS..=MAX_ITERATIONS).contains(count))
        .and_then(NonZeroU32::new)
        .ok_or(HashPasswordError::Iterations(iterations))?;
    let lines = [ScramHash::Sha256, ScramHash::Sha512].map(|hash| {
        let credential = StoredCredential::generate(hash, password, iterations);
        format!(
            "{user} {} {iterations} {} {} {}\n",
            hash.mechanism().name(),
            BASE64.encode(&credential.salt),
            BASE64.encode(&credential.stored_key),
            BASE64.encode(&credential.server_key),
        )
    });
    Ok(lines.concat())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sasl::scram::{ScramClient, ScramError, ScramServer};

    /// A whole SCRAM exchange against `users`.
    fn scram_log_in(
        users: &ClientUsers,
        hash: ScramHash,
        user: &str,
        password: &str,
    ) -> Result<String, ScramError> {
        let mut client = ScramClient::new(hash, user, password);
        let (server, server_first) =
            ScramServer::start(hash, &client.client_first(), |name| users.credential(name, hash).cloned())?;
        let server_final = server.finish(&client.client_final(&server_first)?)?;
        client.verify_server_final(&server_final)?;
        Ok(server.user().to_owned())
    }

    #[test]
    fn hashed_lines_log_in_with_plain_and_scram() {
        let alice = hash_password_lines("alice", "s3cret", 4096).unwrap();
        let bob = hash_password_lines("b=o,b", "hunter2", 5000).unwrap();
        let lines: Vec<&str> = alice.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("alice SCRAM-SHA-256 4096 "), "{}", lines[0]);
        assert!(lines[1].starts_with("alice SCRAM-SHA-512 4096 "), "{}", lines[1]);
        assert!(!alice.contains("s3cret"));

        let users = ClientUsers::parse(&format!("{alice}{bob}")).unwrap();
        assert_eq!(users.len(), 2);
        assert!(users.verify_plain("alice", "s3cret"));
        assert!(users.verify_plain("b=o,b", "hunter2"));
        assert!(!users.verify_plain("alice", "hunter2"));
        assert!(!users.verify_plain("alice", ""));
        assert!(!users.verify_plain("carol", "s3cret"));
        for hash in [ScramHash::Sha256, ScramHash::Sha512] {
            assert_eq!(users.credential("alice", hash).map(|c| c.hash), Some(hash));
            assert_eq!(users.credential("b=o,b", hash).map(|c| c.iterations.get()), Some(5000));
            assert_eq!(scram_log_in(&users, hash, "alice", "s3cret"), Ok("alice".into()));
            assert_eq!(scram_log_in(&users, hash, "b=o,b", "hunter2"), Ok("b=o,b".into()));
            assert_eq!(scram_log_in(&users, hash, "alice", "hunter2"), Err(ScramError::Authentication));
            assert_eq!(scram_log_in(&users, hash, "carol", "s3cret"), Err(ScramError::Authentication));
        }
        assert_eq!(format!("{users:?}"), "ClientUsers { users: 2 }");
    }

    #[test]
    fn a_user_may_have_one_mechanism_and_comments_and_blank_lines_are_skipped() {
        let alice = hash_password_lines("alice", "s3cret", 4096).unwrap();
        let only_512 = alice.lines().nth(1).unwrap();
        let text = format!("# kaos users\n\n   \n  {only_512}  \r\n\t# the end\n");
        let users = ClientUsers::parse(&text).unwrap();
        assert_eq!(users.len(), 1);
        assert!(users.credential("alice", ScramHash::Sha256).is_none());
        assert!(users.credential("alice", ScramHash::Sha512).is_some());
        assert!(users.verify_plain("alice", "s3cret"));
        assert_eq!(
            scram_log_in(&users, ScramHash::Sha256, "alice", "s3cret"),
            Err(ScramError::Authentication)
        );
    }

    #[test]
    fn each_bad_line_names_its_problem_and_line() {
        // A SHA-256 line with 32-byte keys, then the same keys under SHA-512 (64 bytes wanted).
        let good = hash_password_lines("alice", "s3cret", 4096).unwrap();
        let good = good.lines().next().unwrap();
        let fields: Vec<&str> = good.split(' ').collect();
        let with = |index: usize, value: &str| {
            let mut fields = fields.clone();
            fields[index] = value;
            fields.join(" ")
        };
        let cases = [
            (with(1, "SCRAM-SHA-1"), LineError::Mechanism("SCRAM-SHA-1".into())),
            (with(1, "PLAIN"), LineError::Mechanism("PLAIN".into())),
            (with(1, "scram-sha-256"), LineError::Mechanism("scram-sha-256".into())),
            (with(2, "4095"), LineError::Iterations("4095".into())),
            (with(2, "1000001"), LineError::Iterations("1000001".into())),
            (with(2, "many"), LineError::Iterations("many".into())),
            (with(3, "not*base64"), LineError::Base64("salt")),
            (with(3, "===="), LineError::Base64("salt")),
            (with(3, ""), LineError::Fields(5)),
            (
                with(4, "c2hvcnQ="),
                LineError::KeyLength {
                    field: "stored key",
                    got: 5,
                    expected: 32,
                    mechanism: "SCRAM-SHA-256",
                },
            ),
            (with(5, "!"), LineError::Base64("server key")),
            (
                with(1, "SCRAM-SHA-512"),
                LineError::KeyLength {
                    field: "stored key",
                    got: 32,
                    expected: 64,
                    mechanism: "SCRAM-SHA-512",
                },
            ),
            (with(0, "al ice"), LineError::UserWhitespace("al ice".into())),
            (with(0, "a l i ce"), LineError::UserWhitespace("a l i ce".into())),
            (format!("{good} extra"), LineError::Fields(7)),
            ("alice".into(), LineError::Fields(1)),
            (
                good.to_owned(),
                LineError::Duplicate { user: "alice".into(), mechanism: "SCRAM-SHA-256", first: 2 },
            ),
        ];
        for (bad, problem) in cases {
            let text = format!("# users\n{good}\n\n{bad}\n");
            assert_eq!(
                ClientUsers::parse(&text).unwrap_err(),
                ParseError::Line { line: 4, problem },
                "{bad}"
            );
        }
        let error = ClientUsers::parse(&format!("{good}\n{}\n", with(1, "MD5"))).unwrap_err();
        assert_eq!(
            error.to_string(),
            "line 2: unknown mechanism \"MD5\": expected SCRAM-SHA-256 or SCRAM-SHA-512 (PLAIN logins are checked against these)"
        );
    }

    #[test]
    fn a_file_without_users_is_refused() {
        assert_eq!(ClientUsers::parse("").unwrap_err(), ParseError::Empty);
        assert_eq!(ClientUsers::parse("# nobody yet\n\n").unwrap_err(), ParseError::Empty);
    }

    #[test]
    fn load_names_the_file() {
        let dir = std::env::temp_dir().join(format!("kaos-users-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("users");
        std::fs::write(
            &path,
            format!("{}alice SCRAM-SHA-256\n", hash_password_lines("bob", "pw", 4096).unwrap()),
        )
        .unwrap();
        let error = ClientUsers::load(&path).unwrap_err().to_string();
        assert!(
            error.starts_with(&format!("--client-users {}: line 3: expected `<user>", path.display())),
            "{error}"
        );

        std::fs::write(&path, hash_password_lines("bob", "pw", 4096).unwrap()).unwrap();
        assert!(ClientUsers::load(&path).unwrap().verify_plain("bob", "pw"));

        let missing = dir.join("missing");
        let error = ClientUsers::load(&missing).unwrap_err();
        assert!(matches!(error, UsersFileError::Read { .. }));
        assert!(error.to_string().starts_with(&format!("--client-users {}: ", missing.display())), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn hash_password_refuses_what_the_file_cannot_hold() {
        let refused = |user: &str, password: &str, iterations: u32| {
            hash_password_lines(user, password, iterations).unwrap_err()
        };
        assert!(matches!(refused("", "pw", 4096), HashPasswordError::UserName(..)));
        assert!(matches!(refused("al ice", "pw", 4096), HashPasswordError::UserName(..)));
        assert!(matches!(refused("al\tice", "pw", 4096), HashPasswordError::UserName(..)));
        assert!(matches!(refused("al\0ice", "pw", 4096), HashPasswordError::UserName(..)));
        assert!(matches!(refused("#alice", "pw", 4096), HashPasswordError::UserName(..)));
        assert_eq!(refused("alice", "", 4096), HashPasswordError::EmptyPassword);
        assert_eq!(refused("alice", "pw", 4095), HashPasswordError::Iterations(4095));
        assert_eq!(refused("alice", "pw", 1_000_001), HashPasswordError::Iterations(1_000_001));
        // A password may hold spaces and anything else but a line break (stdin's first line).
        let lines = hash_password_lines("alice", " pass word\u{e9} ", 4096).unwrap();
        assert!(ClientUsers::parse(&lines).unwrap().verify_plain("alice", " pass word\u{e9} "));
    }
}
