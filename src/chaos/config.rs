//! A rule's `config` object. Every config type (the fields all faults share, and each fault's own)
//! is a serde struct with a JSON Schema and a table of defaults: a field a body leaves out takes
//! its default, a field the struct does not know is rejected, and every error names the field with
//! its path (`config.errors[1]`).

use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use kafka_protocol::messages::ApiKey;
use regex::Regex;
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// A bad REST body: the field at fault, with its path, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct ConfigError {
    pub field: String,
    pub reason: String,
}

impl ConfigError {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> ConfigError {
        ConfigError { field: field.into(), reason: reason.into() }
    }

    /// A serde error inside the object at `prefix` (`config`, or `` for a whole body).
    pub fn from_serde(prefix: &str, error: serde_path_to_error::Error<serde_json::Error>) -> ConfigError {
        let path = error.path().to_string();
        let reason = error.inner().to_string();
        // serde reports a missing field at its parent; name the field itself.
        let missing = reason.strip_prefix("missing field `").and_then(|rest| rest.split('`').next());
        let field = match (path.as_str(), missing) {
            (".", Some(name)) => name.to_owned(),
            (".", None) => String::new(),
            (path, Some(name)) => format!("{path}.{name}"),
            (path, None) => path.to_owned(),
        };
        let field = match (prefix, field.as_str()) {
            ("", "") => "body".to_owned(),
            ("", field) => field.to_owned(),
            (prefix, "") => prefix.to_owned(),
            (prefix, field) => format!("{prefix}.{field}"),
        };
        let reason = match missing {
            Some(_) => "is required".to_owned(),
            None => reason,
        };
        ConfigError { field, reason }
    }
}

/// A config object: its fields, their defaults, and the checks types cannot express.
pub trait Configurable: Serialize + DeserializeOwned + JsonSchema {
    /// The value of every field a body may leave out, as a JSON object. Fields absent here (and
    /// not `Option`) are required.
    fn defaults() -> Value;

    /// Checks what the types cannot say (a minimum above its maximum) and settles fields whose
    /// default depends on another. Errors name the field as `config.<name>`.
    fn validate(&mut self) -> Result<(), ConfigError> {
        Ok(())
    }

    /// Settles what depends on the API the rule is for, such as which errors a fault answers
    /// with: Kafka answers each API with its own. Errors name the field.
    fn settle_for(&mut self, _api: ApiKey) -> Result<(), ConfigError> {
        Ok(())
    }
}

/// Reads a config object: `given` over the type's defaults, unknown fields rejected by name.
pub fn parse<T: Configurable>(given: Map<String, Value>) -> Result<T, ConfigError> {
    let known = field_names::<T>();
    if let Some(unknown) = given.keys().find(|key| !known.contains(key)) {
        return Err(ConfigError::new(
            format!("config.{unknown}"),
            format!(
                "unknown field for this feature; its own fields are {} (besides those every feature takes)",
                if known.is_empty() { "none".to_owned() } else { known.join(", ") }
            ),
        ));
    }
    let Value::Object(mut merged) = T::defaults() else {
        unreachable!("defaults are a JSON object (checked by the registry's tests)")
    };
    merged.extend(given.into_iter().filter(|(_, value)| !value.is_null()));
    let mut config: T = serde_path_to_error::deserialize(Value::Object(merged))
        .map_err(|error| ConfigError::from_serde("config", error))?;
    config.validate()?;
    Ok(config)
}

/// The schema of a config type as OpenAPI 3.0 writes schemas, with every sub-schema inline.
pub fn schema_of<T: JsonSchema>() -> Value {
    let generator = schemars::generate::SchemaSettings::openapi3()
        .with(|settings| settings.inline_subschemas = true)
        .into_generator();
    let mut schema = generator.into_root_schema_for::<T>().to_value();
    if let Some(schema) = schema.as_object_mut() {
        for key in ["$schema", "title", "description"] {
            schema.remove(key);
        }
    }
    schema
}

/// The fields a config type knows, in declaration order.
pub fn field_names<T: JsonSchema>() -> Vec<String> {
    schema_of::<T>()["properties"]
        .as_object()
        .map(|fields| fields.keys().cloned().collect())
        .unwrap_or_default()
}

/// A config type's fields as `GET /features` describes them, for forms and documentation:
/// name, type, description, default, whether required, and the allowed values or range.
pub fn field_docs(schema: &Value, defaults: &Value) -> Vec<Value> {
    let required: Vec<&str> =
        schema["required"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    let Some(properties) = schema["properties"].as_object() else { return Vec::new() };
    properties
        .iter()
        .map(|(name, property)| {
            let mut doc = Map::new();
            doc.insert("name".into(), name.as_str().into());
            doc.insert("type".into(), property["type"].clone());
            for key in ["items", "enum", "minimum", "maximum"] {
                if let Some(value) = property.get(key) {
                    doc.insert(key.into(), value.clone());
                }
            }
            if let Some(Value::Array(allowed)) = doc.get_mut("enum") {
                allowed.retain(|value| !value.is_null());
            }
            doc.insert("description".into(), property.get("description").cloned().unwrap_or_default());
            let default = defaults.get(name);
            doc.insert("required".into(), (required.contains(&name.as_str()) && default.is_none()).into());
            if let Some(default) = default {
                doc.insert("default".into(), default.clone());
            }
            Value::Object(doc)
        })
        .collect()
}

/// One `config` object made of several config types' fields (the shared ones and a fault's
/// own), as an OpenAPI schema: unknown fields refused, fields with a default optional.
pub fn merged_schema(parts: &[(Value, Value)]) -> Value {
    let mut properties = Map::new();
    let mut required = Vec::new();
    for (schema, defaults) in parts {
        if let Some(fields) = schema["properties"].as_object() {
            properties.extend(fields.clone());
        }
        let needed = schema["required"].as_array().into_iter().flatten();
        required
            .extend(needed.filter(|name| name.as_str().is_some_and(|n| defaults.get(n).is_none())).cloned());
    }
    let mut merged = json!({"type": "object", "additionalProperties": false, "properties": properties});
    if !required.is_empty() {
        merged["required"] = Value::from(required);
    }
    merged
}

/// Units accepted by `durationUnit`, `quietPeriodUnit` and `timeUnit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TimeUnit {
    Milliseconds,
    Seconds,
    Minutes,
    Hours,
}

impl TimeUnit {
    fn millis(self) -> u64 {
        match self {
            TimeUnit::Milliseconds => 1,
            TimeUnit::Seconds => 1_000,
            TimeUnit::Minutes => 60_000,
            TimeUnit::Hours => 3_600_000,
        }
    }
}

/// The fields every fault shares, as the REST API takes them.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CommonConfig {
    /// How long the rule acts in each cycle; absent or 0: always.
    duration: Option<u64>,
    /// Unit of `duration` (default: `timeUnit`).
    duration_unit: Option<TimeUnit>,
    /// How long the rule rests after each active `duration`.
    quiet_period: Option<u64>,
    /// Unit of `quietPeriod` (default: `timeUnit`).
    quiet_period_unit: Option<TimeUnit>,
    /// Unit of `duration`, `quietPeriod` and `ttl` where theirs is not given (default:
    /// MILLISECONDS).
    time_unit: Option<TimeUnit>,
    /// The rule removes itself this long after it was created, and the removal is saved like a
    /// DELETE (also across restarts); absent: it stays until deleted.
    ttl: Option<u64>,
    /// Unit of `ttl` (default: `timeUnit`).
    ttl_unit: Option<TimeUnit>,
    /// Let this many matching requests through first (counted across the whole kaos), for
    /// exact scenarios.
    skip_requests: u64,
    /// Act on at most this many matching requests after the skipped ones, then stop; absent:
    /// no limit.
    max_requests: Option<u64>,
    /// Match and count, and log in the event log what the fault would have done, but change
    /// nothing.
    dry_run: bool,
    /// Make the rule's random choices (whether a request is hit, which error, how much latency,
    /// which records) replayable: they come from this seed, the rule and the order of its
    /// matching requests on the connection, so the same client doing the same requests gets the
    /// same faults.
    seed: Option<u64>,
    /// Share of matching requests the rule acts on, in percent.
    #[schemars(range(max = 100))]
    rate_in_percent: u32,
    /// Only connections to these broker node ids; empty: every broker.
    broker_ids: Vec<i32>,
    /// Only requests touching these topics (exact names); empty with `topicPatterns`: every topic.
    topics: Vec<String>,
    /// Only requests touching a topic whose whole name matches one of these regexes.
    topic_patterns: Vec<String>,
    /// Only clients whose whole `client.id` matches one of these regexes; empty: every client.
    client_ids: Vec<String>,
    /// Only clients connecting from one of these addresses or CIDR blocks (127.0.0.2,
    /// 10.0.0.0/8, ::1/128); empty: every address.
    client_addresses: Vec<String>,
}

impl Configurable for CommonConfig {
    fn defaults() -> Value {
        json!({"rateInPercent": 100, "brokerIds": [], "topics": [], "topicPatterns": [], "clientIds": [], "clientAddresses": [], "skipRequests": 0, "dryRun": false})
    }

    fn validate(&mut self) -> Result<(), ConfigError> {
        if self.rate_in_percent > 100 {
            return Err(ConfigError::new(
                "config.rateInPercent",
                format!("must be 0-100, got {}", self.rate_in_percent),
            ));
        }
        Ok(())
    }
}

/// The shared fields of a rule, ready for the data path.
#[derive(Debug, Clone)]
pub struct Common {
    pub schedule: Schedule,
    /// How long after its creation the rule ends (`ttl`).
    pub ttl: Option<Duration>,
    /// Matching requests let through before the rule acts (`skipRequests`).
    pub skip_requests: u64,
    /// Matching requests it acts on after those, at most (`maxRequests`).
    pub max_requests: Option<u64>,
    /// Only record what it would do (`dryRun`).
    pub dry_run: bool,
    /// Where its random choices come from (`seed`); `None`: the connection's generator.
    pub seed: Option<u64>,
    pub rate_percent: u32,
    pub broker_ids: Vec<i32>,
    pub topics: TopicFilter,
    pub clients: ClientFilter,
}

impl Common {
    /// Takes the shared fields out of `config`, leaving the fault's own.
    pub fn take(config: &mut Map<String, Value>) -> Result<Common, ConfigError> {
        let shared: Map<String, Value> = field_names::<CommonConfig>()
            .into_iter()
            .filter_map(|name| config.remove(&name).map(|value| (name, value)))
            .collect();
        let parsed: CommonConfig = parse(shared)?;
        let time_unit = parsed.time_unit.unwrap_or(TimeUnit::Milliseconds);
        // In whole milliseconds, as `to_json` reports them, so that a saved rule reads back the same.
        let timed = |amount: Option<u64>, unit: Option<TimeUnit>| {
            amount.map(|n| Duration::from_millis(n.saturating_mul(unit.unwrap_or(time_unit).millis())))
        };
        Ok(Common {
            schedule: Schedule {
                duration: timed(parsed.duration, parsed.duration_unit),
                quiet: timed(parsed.quiet_period, parsed.quiet_period_unit),
            },
            ttl: timed(parsed.ttl, parsed.ttl_unit),
            skip_requests: parsed.skip_requests,
            max_requests: parsed.max_requests,
            dry_run: parsed.dry_run,
            seed: parsed.seed,
            rate_percent: parsed.rate_in_percent,
            broker_ids: parsed.broker_ids,
            topics: TopicFilter::new(parsed.topics, &parsed.topic_patterns)?,
            clients: ClientFilter::new(parsed.client_ids, parsed.client_addresses)?,
        })
    }

    /// The shared fields as the REST API reports them (durations in milliseconds).
    pub fn to_json(&self, config: &mut Map<String, Value>) {
        self.schedule.to_json(config);
        if let Some(ttl) = self.ttl {
            config.insert("ttl".into(), Value::from(ttl.as_millis() as u64));
            config.insert("ttlUnit".into(), Value::from("MILLISECONDS"));
        }
        config.insert("rateInPercent".into(), Value::from(self.rate_percent));
        if self.skip_requests > 0 {
            config.insert("skipRequests".into(), Value::from(self.skip_requests));
        }
        if let Some(max) = self.max_requests {
            config.insert("maxRequests".into(), Value::from(max));
        }
        if self.dry_run {
            config.insert("dryRun".into(), Value::from(true));
        }
        if let Some(seed) = self.seed {
            config.insert("seed".into(), Value::from(seed));
        }
        config.insert("brokerIds".into(), Value::from(self.broker_ids.clone()));
        self.topics.to_json(config);
        self.clients.to_json(config);
    }
}

/// When a rule fires: active for `duration`, then quiet for `quiet`, repeating from creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    pub duration: Option<Duration>,
    pub quiet: Option<Duration>,
}

impl Schedule {
    /// Whether a rule created `age` ago is in its active phase.
    pub fn is_active(&self, age: Duration) -> bool {
        self.active_left(age).is_none_or(|left| !left.is_zero())
    }

    /// How much of the active phase is left for a rule created `age` ago: zero while it is
    /// quiet, `None` when it never goes quiet.
    pub fn active_left(&self, age: Duration) -> Option<Duration> {
        let (active, quiet) = match (self.duration, self.quiet) {
            (Some(active), Some(quiet)) if !active.is_zero() && !quiet.is_zero() => (active, quiet),
            _ => return None,
        };
        let into_cycle = age.as_nanos() % (active + quiet).as_nanos();
        let left = active.as_nanos().saturating_sub(into_cycle);
        Some(Duration::from_nanos(u64::try_from(left).unwrap_or(u64::MAX)))
    }

    fn to_json(self, config: &mut Map<String, Value>) {
        let millis = |d: Duration| Value::from(d.as_millis() as u64);
        if let Some(duration) = self.duration {
            config.insert("duration".into(), millis(duration));
        }
        if let Some(quiet) = self.quiet {
            config.insert("quietPeriod".into(), millis(quiet));
        }
        if self.duration.is_some() || self.quiet.is_some() {
            config.insert("timeUnit".into(), Value::from("MILLISECONDS"));
        }
    }
}

/// Which clients a rule is for, by what every client has: its `client.id` (whole-id regexes)
/// and its source address (CIDR blocks). Empty: every client. Connections decide it once per
/// rules snapshot and client id (see `chaos::scope`), not per request.
#[derive(Debug, Clone, Default)]
pub struct ClientFilter {
    ids: Vec<(String, Regex)>,
    addresses: Vec<(String, IpNet)>,
}

impl ClientFilter {
    pub fn new(ids: Vec<String>, addresses: Vec<String>) -> Result<ClientFilter, ConfigError> {
        let ids = ids
            .into_iter()
            .enumerate()
            .map(|(i, id)| match Regex::new(&format!("^(?:{id})$")) {
                Ok(regex) => Ok((id, regex)),
                Err(e) => Err(ConfigError::new(format!("config.clientIds[{i}]"), format!("bad regex: {e}"))),
            })
            .collect::<Result<_, _>>()?;
        let addresses = addresses
            .into_iter()
            .enumerate()
            .map(|(i, text)| {
                let net = text.parse::<IpNet>().or_else(|_| text.parse::<IpAddr>().map(IpNet::from));
                match net {
                    Ok(net) => Ok((text, net)),
                    Err(_) => Err(ConfigError::new(
                        format!("config.clientAddresses[{i}]"),
                        format!("'{text}' is not an address or CIDR block (such as 127.0.0.2 or 10.0.0.0/8)"),
                    )),
                }
            })
            .collect::<Result<_, _>>()?;
        Ok(ClientFilter { ids, addresses })
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty() && self.addresses.is_empty()
    }

    /// Whether the rule narrows by `client.id`, so connections must watch the id of requests.
    pub fn by_client_id(&self) -> bool {
        !self.ids.is_empty()
    }

    /// Whether a client with this source address and `client.id` is in scope (an unknown one is
    /// not, where the filter asks for one).
    pub fn matches(&self, address: Option<IpAddr>, client_id: Option<&str>) -> bool {
        let id_matches = self.ids.is_empty()
            || client_id.is_some_and(|id| self.ids.iter().any(|(_, regex)| regex.is_match(id)));
        let address_matches = self.addresses.is_empty()
            || address.is_some_and(|address| self.addresses.iter().any(|(_, net)| net.contains(&address)));
        id_matches && address_matches
    }

    fn to_json(&self, config: &mut Map<String, Value>) {
        if !self.ids.is_empty() {
            config.insert("clientIds".into(), self.ids.iter().map(|(text, _)| text.as_str()).collect());
        }
        if !self.addresses.is_empty() {
            config.insert(
                "clientAddresses".into(),
                self.addresses.iter().map(|(text, _)| text.as_str()).collect(),
            );
        }
    }
}

/// Which topics a rule touches: exact names and whole-name regexes. Empty: every topic.
#[derive(Debug, Clone, Default)]
pub struct TopicFilter {
    pub names: Vec<String>,
    pub patterns: Vec<Regex>,
}

impl TopicFilter {
    pub fn new(names: Vec<String>, patterns: &[String]) -> Result<TopicFilter, ConfigError> {
        let patterns = patterns
            .iter()
            .enumerate()
            .map(|(i, pattern)| {
                Regex::new(&format!("^(?:{pattern})$")).map_err(|e| {
                    ConfigError::new(format!("config.topicPatterns[{i}]"), format!("bad regex: {e}"))
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(TopicFilter { names, patterns })
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty() && self.patterns.is_empty()
    }

    pub fn matches(&self, topic: &str) -> bool {
        self.is_empty()
            || self.names.iter().any(|n| n == topic)
            || self.patterns.iter().any(|p| p.is_match(topic))
    }

    fn to_json(&self, config: &mut Map<String, Value>) {
        if !self.names.is_empty() {
            config.insert("topics".into(), Value::from(self.names.clone()));
        }
        if !self.patterns.is_empty() {
            // Stored anchored as ^(?:p)$; report what the user sent (strip one anchor each side:
            // `p` may itself start with `^(?:` or end with `)$`).
            let sources: Vec<_> = self
                .patterns
                .iter()
                .map(|p| {
                    let anchored = p.as_str();
                    anchored
                        .strip_prefix("^(?:")
                        .and_then(|p| p.strip_suffix(")$"))
                        .unwrap_or(anchored)
                        .to_owned()
                })
                .collect();
            config.insert("topicPatterns".into(), Value::from(sources));
        }
    }
}

/// Checks a latency range in milliseconds; an absent maximum is the minimum.
pub fn settle_latency(min_ms: u64, max_ms: &mut Option<u64>) -> Result<(), ConfigError> {
    let max = *max_ms.get_or_insert(min_ms);
    if min_ms > max {
        return Err(ConfigError::new(
            "config.minLatencyToAddInMilliseconds",
            format!("minimum {min_ms} ms is above the maximum {max} ms"),
        ));
    }
    Ok(())
}

/// A random latency in `[min_ms, max_ms]` (an absent maximum is the minimum).
pub fn pick_latency(min_ms: u64, max_ms: Option<u64>, rng: &mut fastrand::Rng) -> Duration {
    Duration::from_millis(rng.u64(min_ms..=max_ms.unwrap_or(min_ms).max(min_ms)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn common(value: Value) -> Result<Common, ConfigError> {
        let mut config = value.as_object().unwrap().clone();
        let common = Common::take(&mut config)?;
        assert!(config.is_empty(), "only the fault's own fields are left");
        Ok(common)
    }

    #[test]
    fn schedules_use_their_units() {
        let schedule =
            common(json!({"duration": 1, "quietPeriod": 2, "timeUnit": "MINUTES"})).unwrap().schedule;
        assert_eq!(schedule.duration, Some(Duration::from_secs(60)));
        assert_eq!(schedule.quiet, Some(Duration::from_secs(120)));
        let schedule = common(
            json!({"duration": 6000, "durationUnit": "MILLISECONDS", "quietPeriod": 20, "quietPeriodUnit": "SECONDS"}),
        )
        .unwrap()
        .schedule;
        assert_eq!(schedule.quiet, Some(Duration::from_secs(20)));
        assert!(schedule.is_active(Duration::from_millis(5999)));
        assert!(!schedule.is_active(Duration::from_millis(6000)));
        assert!(!schedule.is_active(Duration::from_millis(25_999)));
        assert!(schedule.is_active(Duration::from_millis(26_000)));
        assert_eq!(
            common(json!({"duration": 5, "durationUnit": "WEEKS"})).unwrap_err().field,
            "config.durationUnit"
        );
        assert_eq!(common(json!({"duration": -5})).unwrap_err().field, "config.duration");
    }

    #[test]
    fn schedules_without_a_quiet_period_are_always_active() {
        let always = Schedule { duration: Some(Duration::from_secs(1)), quiet: None };
        assert!(always.is_active(Duration::from_secs(10)));
        assert!(Schedule { duration: None, quiet: None }.is_active(Duration::from_secs(10)));
    }

    #[test]
    fn topic_patterns_match_whole_names() {
        let filter = common(json!({"topics": ["exact"], "topicPatterns": ["orders-.*"]})).unwrap().topics;
        assert!(filter.matches("exact") && filter.matches("orders-eu"));
        assert!(!filter.matches("old-orders-eu") && !filter.matches("exactly"));
        let error = common(json!({"topicPatterns": ["ok", "(unclosed"]})).unwrap_err();
        assert_eq!(error.field, "config.topicPatterns[1]");
        assert_eq!(common(json!({"topics": ["a", 3]})).unwrap_err().field, "config.topics[1]");
    }

    /// Caught by the round trip of fuzz/fuzz_targets/rule_json.rs: a duration counted at most
    /// u32::MAX of its unit, so 4294968 SECONDS was reported as 4294968000 ms, which the rules
    /// file read back as 4294967295 ms.
    #[test]
    fn durations_read_back_as_reported() {
        let schedule = common(json!({"duration": 4_294_968, "timeUnit": "SECONDS"})).unwrap().schedule;
        assert_eq!(schedule.duration, Some(Duration::from_millis(4_294_968_000)));
        let mut reported = Map::new();
        schedule.to_json(&mut reported);
        assert_eq!(reported["duration"], 4_294_968_000u64);
        assert_eq!(common(Value::Object(reported)).unwrap().schedule, schedule);
        let huge = common(json!({"duration": u64::MAX, "quietPeriod": u64::MAX, "timeUnit": "HOURS"}))
            .unwrap()
            .schedule;
        assert_eq!(huge.duration, Some(Duration::from_millis(u64::MAX)), "saturates");
        assert!(huge.is_active(Duration::from_secs(1)));
    }

    /// Caught by fuzz/fuzz_targets/rule_json.rs: trimming the anchors greedily reported `(a)$` as
    /// `(a`, a pattern the saved rules file could not read back.
    #[test]
    fn topic_patterns_are_reported_as_given() {
        for pattern in ["(a)$", "(?:a)$", "^(?:a)$", "(?:b)", "t.*"] {
            let filter = common(json!({"topicPatterns": [pattern]})).unwrap().topics;
            let mut reported = Map::new();
            filter.to_json(&mut reported);
            assert_eq!(reported["topicPatterns"], json!([pattern]));
        }
    }

    #[test]
    fn client_scopes_take_regexes_and_cidr_blocks_and_name_bad_ones() {
        let clients =
            common(json!({"clientIds": ["billing-.*"], "clientAddresses": ["127.0.0.2", "10.0.0.0/8"]}))
                .unwrap()
                .clients;
        let local: IpAddr = "127.0.0.2".parse().unwrap();
        let far: IpAddr = "10.1.2.3".parse().unwrap();
        assert!(clients.matches(Some(local), Some("billing-eu")));
        assert!(clients.matches(Some(far), Some("billing-us")));
        assert!(!clients.matches(Some("127.0.0.1".parse().unwrap()), Some("billing-eu")), "another address");
        assert!(!clients.matches(Some(local), Some("old-billing-eu")), "the whole id must match");
        assert!(!clients.matches(Some(local), None) && !clients.matches(None, Some("billing-eu")), "unknown");
        assert!(ClientFilter::default().matches(None, None));
        let mut reported = Map::new();
        clients.to_json(&mut reported);
        assert_eq!(reported["clientAddresses"], json!(["127.0.0.2", "10.0.0.0/8"]), "as given");
        assert_eq!(common(json!({"clientIds": ["ok", "("]})).unwrap_err().field, "config.clientIds[1]");
        assert_eq!(
            common(json!({"clientAddresses": ["10.0.0.0/8", "10.0.0.0/99"]})).unwrap_err().field,
            "config.clientAddresses[1]"
        );
    }

    #[test]
    fn latency_bounds_are_checked() {
        let mut max = Some(5);
        assert_eq!(settle_latency(10, &mut max).unwrap_err().field, "config.minLatencyToAddInMilliseconds");
        let mut max = None;
        settle_latency(7, &mut max).unwrap();
        assert_eq!(max, Some(7), "an absent maximum is the minimum");
    }

    #[test]
    fn rates_above_100_are_refused() {
        assert_eq!(common(json!({"rateInPercent": 101})).unwrap_err().field, "config.rateInPercent");
        assert_eq!(common(json!({})).unwrap().rate_percent, 100);
    }

    #[test]
    fn field_docs_carry_types_defaults_and_descriptions() {
        let docs = field_docs(&schema_of::<CommonConfig>(), &CommonConfig::defaults());
        let rate = docs.iter().find(|d| d["name"] == "rateInPercent").unwrap();
        assert_eq!(rate["type"], "integer");
        assert_eq!(rate["default"], 100);
        assert_eq!(rate["maximum"], 100);
        assert!(rate["description"].as_str().unwrap().contains("percent"));
        let unit = docs.iter().find(|d| d["name"] == "timeUnit").unwrap();
        assert_eq!(unit["type"], "string");
        assert_eq!(unit["required"], false);
        assert!(unit["enum"].as_array().unwrap().contains(&json!("MINUTES")));
    }
}
