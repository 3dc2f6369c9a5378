//! Command-line and environment configuration: every flag also reads `KAOS_<FLAG>`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::logging::LogFormat;

/// kaos: a thread-per-core Kafka chaos proxy.
///
/// Clients bootstrap on `--port-start`; every upstream broker with node id N is reachable through
/// kaos on port `port-start + 1 + N`. Faults are switched on and off through the REST API on
/// `--admin-addr`.
#[derive(Debug, Clone, Parser)]
#[command(name = "kaos", version, about, long_about)]
pub struct Config {
    /// The real Kafka cluster: one or more HOST:PORT bootstrap addresses, comma-separated.
    #[arg(long, env = "KAOS_BOOTSTRAP_SERVERS", value_delimiter = ',', required = true)]
    pub bootstrap_servers: Vec<String>,

    /// The local address kaos listens on for Kafka clients.
    #[arg(long, env = "KAOS_BIND_HOST", default_value = "127.0.0.1")]
    pub bind_host: String,

    /// The host name kaos tells clients to dial (in Metadata, FindCoordinator, ...).
    /// Defaults to the bind host.
    #[arg(long, env = "KAOS_ADVERTISED_HOST")]
    pub advertised_host: Option<String>,

    /// The bootstrap port. Broker node N is served on port-start + 1 + N.
    #[arg(long, env = "KAOS_PORT_START", default_value_t = 6969)]
    pub port_start: u16,

    /// Address of the REST control plane (health, readiness, metrics, chaos rules).
    #[arg(long, env = "KAOS_ADMIN_ADDR", default_value = "127.0.0.1:8888")]
    pub admin_addr: SocketAddr,

    /// Number of shards: one executor thread each, every one listening on every proxy port.
    /// Defaults to the number of available cores.
    #[arg(long, env = "KAOS_SHARDS")]
    pub shards: Option<usize>,

    /// How long a shard with nothing to do spins before it parks (waits in the kernel), in
    /// microseconds. Spinning saves the park and wake-up on each round trip (lower latency) at
    /// the cost of a busy core: for machines with a core to spare per shard. 0 (the default)
    /// never spins, which is right where kaos shares its cores with clients and brokers.
    #[arg(long, env = "KAOS_SPIN_US", default_value_t = 0, value_name = "MICROSECONDS")]
    pub spin_us: u64,

    /// Largest Kafka frame accepted in either direction; a larger one closes its connection.
    #[arg(long, env = "KAOS_MAX_FRAME_BYTES", default_value_t = 100 * 1024 * 1024)]
    pub max_frame_bytes: usize,

    /// Most requests one client connection may have in flight; beyond it kaos stops reading
    /// from that client until responses come back (backpressure).
    #[arg(long, env = "KAOS_MAX_IN_FLIGHT", default_value_t = 1024)]
    pub max_in_flight: usize,

    /// On SIGINT or SIGTERM, how long to let requests in flight finish before exiting
    /// (for example 10s, 500ms, 1m).
    #[arg(long, env = "KAOS_SHUTDOWN_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,

    /// PEM certificate chain kaos presents to clients; with --tls-key every kaos port speaks
    /// TLS. Re-read on SIGHUP (new connections get it; open ones stay).
    #[arg(long, env = "KAOS_TLS_CERT", requires = "tls_key", value_name = "PEM")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of --tls-cert (PKCS#8, RSA or EC). Re-read on SIGHUP.
    #[arg(long, env = "KAOS_TLS_KEY", requires = "tls_cert", value_name = "PEM")]
    pub tls_key: Option<PathBuf>,

    /// PEM CA bundle: clients must present a certificate it signed (mutual TLS).
    #[arg(long, env = "KAOS_TLS_CLIENT_CA", requires = "tls_cert", value_name = "PEM")]
    pub tls_client_ca: Option<PathBuf>,

    /// Speak TLS to the brokers, verifying each under the host name kaos dials.
    #[arg(long, env = "KAOS_UPSTREAM_TLS")]
    pub upstream_tls: bool,

    /// PEM CA bundle to verify brokers with (default: the system trust store).
    #[arg(long, env = "KAOS_UPSTREAM_CA", requires = "upstream_tls", value_name = "PEM")]
    pub upstream_ca: Option<PathBuf>,

    /// PEM certificate chain kaos presents to brokers (mutual TLS), with --upstream-key.
    #[arg(long, env = "KAOS_UPSTREAM_CERT", requires_all = ["upstream_tls", "upstream_key"], value_name = "PEM")]
    pub upstream_cert: Option<PathBuf>,

    /// PEM private key of --upstream-cert.
    #[arg(long, env = "KAOS_UPSTREAM_KEY", requires_all = ["upstream_tls", "upstream_cert"], value_name = "PEM")]
    pub upstream_key: Option<PathBuf>,

    /// Accept any broker certificate, unverified: for lab clusters only (kaos warns at start).
    #[arg(long, env = "KAOS_UPSTREAM_TLS_INSECURE", requires = "upstream_tls")]
    pub upstream_tls_insecure: bool,

    /// The OAUTHBEARER token claim that names a client whose SASL passes through kaos, for
    /// rules scoped by user. kaos reads it unverified; the broker verifies the token.
    #[arg(long, env = "KAOS_OAUTH_PRINCIPAL_CLAIM", default_value = "sub", value_name = "CLAIM")]
    pub oauth_principal_claim: String,

    /// Authenticate every broker connection as kaos, with this SASL mechanism, before relaying a
    /// client's first request: clients then connect to kaos without credentials. Needs
    /// --upstream-sasl-username and a password (--upstream-sasl-password-file or the
    /// KAOS_UPSTREAM_SASL_PASSWORD environment variable; never a flag).
    #[arg(long, env = "KAOS_UPSTREAM_SASL_MECHANISM", requires = "upstream_sasl_username",
          value_parser = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"], value_name = "MECHANISM")]
    pub upstream_sasl_mechanism: Option<String>,

    /// The user kaos authenticates to the brokers as (with --upstream-sasl-mechanism).
    #[arg(
        long,
        env = "KAOS_UPSTREAM_SASL_USERNAME",
        requires = "upstream_sasl_mechanism",
        value_name = "USER"
    )]
    pub upstream_sasl_username: Option<String>,

    /// A file whose first line is kaos's broker password (with --upstream-sasl-mechanism).
    #[arg(
        long,
        env = "KAOS_UPSTREAM_SASL_PASSWORD_FILE",
        requires = "upstream_sasl_mechanism",
        value_name = "FILE"
    )]
    pub upstream_sasl_password_file: Option<PathBuf>,

    /// Clients must authenticate to kaos with SASL PLAIN or SCRAM-SHA-256/512 as a user of this
    /// file (lines made by `kaos hash-password USER`); their names scope rules. Brokers still
    /// see kaos's own credentials (--upstream-sasl-*), or none.
    #[arg(long, env = "KAOS_CLIENT_USERS", value_name = "FILE")]
    pub client_users: Option<PathBuf>,

    /// Keep chaos rules in this file (JSON lines): loaded at start, saved atomically on every
    /// change, so rules survive a restart.
    #[arg(long, env = "KAOS_RULES_FILE")]
    pub rules_file: Option<PathBuf>,

    /// Keep chaos rules in this topic of the upstream cluster instead, shared by every kaos in
    /// front of it: created compacted with one partition if missing, read from its start, then
    /// followed. A change through any instance's API is answered once this instance has read it
    /// back from the topic. Reached with the same TLS and SASL settings as the brokers.
    #[arg(long, env = "KAOS_RULES_TOPIC", value_name = "NAME", conflicts_with = "rules_file", value_parser = parse_topic_name)]
    pub rules_topic: Option<String>,

    /// Require `Authorization: Bearer TOKEN` on the admin API (all but /health, /ready and the
    /// console's static files).
    #[arg(long, env = "KAOS_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,

    /// How long an admin request body may take to arrive; a later one gets a 408. Bodies are
    /// read beside the control thread, so a slow client never holds it.
    #[arg(long, env = "KAOS_ADMIN_REQUEST_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub admin_request_timeout: Duration,

    /// How many of the most recent injected faults `GET /events` keeps (0: none).
    #[arg(long, env = "KAOS_EVENTS_KEPT", default_value_t = crate::events::DEFAULT_EVENTS)]
    pub events_kept: usize,

    /// Log verbosity: error, warn, info, debug or trace. RUST_LOG, when set, takes precedence and
    /// accepts per-module filters (for example kaos=debug,glommio=warn).
    #[arg(long, env = "KAOS_LOG_LEVEL", default_value = "info", value_parser = ["error", "warn", "info", "debug", "trace"])]
    pub log_level: String,

    /// How log events are written to stderr: text (one readable line each) or json (one JSON
    /// object per line, with timestamp, level, message, target, threadName and the event's
    /// fields at the top level), for log pipelines.
    #[arg(long, env = "KAOS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// For kaos's own tests of crash-only exit: the last shard panics this long after it
    /// started, and the whole process must exit non-zero.
    #[arg(long, env = "KAOS_TEST_PANIC_SHARD_AFTER", hide = true, value_parser = parse_duration)]
    pub test_panic_shard_after: Option<Duration>,
}

impl Config {
    /// Checks what clap cannot: a wildcard bind address is no address a client can dial.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        let wildcard = matches!(self.bind_host.as_str(), "0.0.0.0" | "::" | "[::]");
        if wildcard && self.advertised_host.is_none() {
            return Err(InvalidConfig::WildcardWithoutAdvertisedHost(self.bind_host.clone()));
        }
        Ok(())
    }

    pub fn advertised_host(&self) -> &str {
        self.advertised_host.as_deref().unwrap_or(&self.bind_host)
    }

    pub fn shard_count(&self) -> usize {
        self.shards.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())).max(1)
    }
}

/// Flags that parse but do not make sense together, or values clap cannot check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidConfig {
    #[error("--bind-host {0} needs --advertised-host: the name clients should dial to reach kaos")]
    WildcardWithoutAdvertisedHost(String),
    #[error("'{0}' is not a duration such as 10s or 500ms")]
    NotADuration(String),
    #[error("unknown duration unit '{0}' (use ms, s, m or h)")]
    UnknownUnit(String),
}

/// A name Kafka accepts for a topic: 1 to 249 of `a-z A-Z 0-9 . _ -`, and not `.` or `..`.
pub fn parse_topic_name(text: &str) -> Result<String, String> {
    let legal = text.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if text.is_empty() || text.len() > 249 || !legal || text == "." || text == ".." {
        return Err(format!(
            "'{text}' is not a Kafka topic name: 1 to 249 of a-z, A-Z, 0-9, '.', '_' and '-'"
        ));
    }
    Ok(text.to_owned())
}

/// Parses `10s`, `500ms`, `2m`, `1h` or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, InvalidConfig> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let value: u64 = digits.parse().map_err(|_| InvalidConfig::NotADuration(text.to_owned()))?;
    match unit {
        "ms" => Ok(Duration::from_millis(value)),
        "" | "s" => Ok(Duration::from_secs(value)),
        "m" => Ok(Duration::from_secs(value.saturating_mul(60))),
        "h" => Ok(Duration::from_secs(value.saturating_mul(3600))),
        other => Err(InvalidConfig::UnknownUnit(other.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5 parsecs").is_err());
    }

    #[test]
    fn the_rules_topic_is_a_kafka_topic_name_and_excludes_the_rules_file() {
        let parse =
            |args: &[&str]| Config::try_parse_from([&["kaos", "--bootstrap-servers", "a:1"], args].concat());
        assert_eq!(
            parse(&["--rules-topic", "_kaos.rules-1"]).unwrap().rules_topic.as_deref(),
            Some("_kaos.rules-1")
        );
        for bad in ["", "..", "a b", "rules/x", &"x".repeat(250)] {
            let error = parse(&["--rules-topic", bad]).unwrap_err().to_string();
            assert!(error.contains("not a Kafka topic name"), "{bad}: {error}");
        }
        let error = parse(&["--rules-topic", "r", "--rules-file", "f"]).unwrap_err().to_string();
        assert!(error.contains("cannot be used with"), "{error}");
    }

    #[test]
    fn advertised_host_defaults_to_bind_host() {
        let config =
            Config::parse_from(["kaos", "--bootstrap-servers", "a:1,b:2", "--bind-host", "127.0.0.9"]);
        assert_eq!(config.bootstrap_servers, vec!["a:1", "b:2"]);
        assert_eq!(config.advertised_host(), "127.0.0.9");
        assert_eq!(config.validate(), Ok(()));
    }

    #[test]
    fn wildcard_bind_needs_an_advertised_host() {
        let config = Config::parse_from(["kaos", "--bootstrap-servers", "a:1", "--bind-host", "0.0.0.0"]);
        assert!(config.validate().unwrap_err().to_string().contains("--advertised-host"));
        let config = Config::parse_from([
            "kaos",
            "--bootstrap-servers",
            "a:1",
            "--bind-host",
            "0.0.0.0",
            "--advertised-host",
            "kaos.example",
        ]);
        assert_eq!(config.advertised_host(), "kaos.example");
        assert_eq!(config.validate(), Ok(()));
    }
}
