//! Rules: which fault applies to which requests, parsed from the REST API's JSON, and the
//! immutable `RuleSet` snapshot the shards read.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kafka_protocol::messages::ApiKey;
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value, json};

use super::config::{Common, ConfigError};
use super::errors::screaming_snake;
use super::{Fault, FaultSpec};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum Direction {
    Request,
    Response,
}

impl Direction {
    pub fn name(self) -> &'static str {
        match self {
            Direction::Request => "REQUEST",
            Direction::Response => "RESPONSE",
        }
    }

    pub fn parse(name: &str) -> Option<Direction> {
        [Direction::Request, Direction::Response].into_iter().find(|d| d.name() == name)
    }
}

/// `PRODUCE`, `FIND_COORDINATOR`, ... as the REST API spells API keys.
pub fn api_key_name(api: ApiKey) -> String {
    screaming_snake(&format!("{api:?}"))
}

/// The REST name of API key `key`; empty for a key Kafka does not define.
pub fn api_key_name_of(key: i16) -> String {
    ApiKey::try_from(key).map(api_key_name).unwrap_or_default()
}

pub fn parse_api_key(name: &str) -> Option<ApiKey> {
    (0..200).find_map(|key| ApiKey::try_from(key).ok().filter(|&api| api_key_name(api) == name))
}

/// An API key as a rule body names it (`PRODUCE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiName(pub ApiKey);

impl<'de> Deserialize<'de> for ApiName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        parse_api_key(&name).map(ApiName).ok_or_else(|| {
            serde::de::Error::custom(format!("unknown Kafka API '{name}' (for example PRODUCE or FETCH)"))
        })
    }
}

impl Serialize for ApiName {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&api_key_name(self.0))
    }
}

impl JsonSchema for ApiName {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ApiName".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let names: Vec<String> =
            (0..200).filter_map(|key| ApiKey::try_from(key).ok()).map(api_key_name).collect();
        schemars::json_schema!({ "type": "string", "enum": names })
    }
}

/// The body of `POST /tenant/{tenant}/user/{user}/feature/{feature}`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RuleBody {
    config: Option<Map<String, Value>>,
    direction: Option<Direction>,
    api_keys: ApiName,
}

/// What identifies a rule: creating one with the same key replaces it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RuleKey {
    pub tenant: String,
    pub user: String,
    /// The fault's name, as [`FaultSpec::name`].
    pub feature: &'static str,
    pub api_key: i16,
    pub direction: Direction,
}

impl RuleKey {
    /// The key a DELETE path or a rules-topic key names, checked.
    pub fn parse(
        tenant: &str,
        user: &str,
        feature: &str,
        api: &str,
        direction: &str,
    ) -> Result<RuleKey, ConfigError> {
        let feature = FaultSpec::named(feature)
            .ok_or_else(|| ConfigError::new("feature", format!("unknown feature '{feature}'")))?
            .name;
        let api_key = parse_api_key(api)
            .ok_or_else(|| ConfigError::new("apiKeys", format!("unknown Kafka API '{api}'")))?;
        let direction = Direction::parse(direction).ok_or_else(|| {
            ConfigError::new("direction", format!("unknown direction '{direction}'; use REQUEST or RESPONSE"))
        })?;
        Ok(RuleKey { tenant: tenant.into(), user: user.into(), feature, api_key: api_key as i16, direction })
    }
}

#[derive(Debug)]
pub struct Rule {
    pub key: RuleKey,
    pub spec: &'static FaultSpec,
    pub common: Common,
    pub fault: Box<dyn Fault>,
    /// The fault's own config, as the API reports it (defaults filled in).
    fault_config: Map<String, Value>,
    pub created: Instant,
    created_unix_ms: u64,
    /// Matching requests seen so far, for counted rules (`skipRequests`, `maxRequests`); shared by
    /// every shard, touched only by those rules.
    matched: AtomicU64,
}

impl Rule {
    /// Parses the body of `POST /tenant/{tenant}/user/{user}/feature/{feature}`.
    pub fn from_request(tenant: &str, user: &str, feature: &str, body: &[u8]) -> Result<Rule, ConfigError> {
        let spec = FaultSpec::named(feature).ok_or_else(|| {
            let known: Vec<_> = super::FAULTS.iter().map(|spec| spec.name).collect();
            ConfigError::new(
                "feature",
                format!("unknown feature '{feature}'; known features: {}", known.join(", ")),
            )
        })?;
        let body: Value = serde_json::from_slice(body)
            .map_err(|e| ConfigError::new("body", format!("malformed JSON: {e}")))?;
        if !body.is_object() {
            return Err(ConfigError::new("body", "must be a JSON object"));
        }
        let body: RuleBody =
            serde_path_to_error::deserialize(body).map_err(|error| ConfigError::from_serde("", error))?;
        let api_key = body.api_keys.0;
        let direction = body.direction.unwrap_or(Direction::Request);
        if !spec.acts_on(api_key) {
            let names: Vec<_> = spec.api_keys.iter().map(|&a| api_key_name(a)).collect();
            return Err(ConfigError::new(
                "apiKeys",
                format!("{} applies to {}, not {}", spec.name, names.join(" or "), api_key_name(api_key)),
            ));
        }
        if !spec.directions.contains(&direction) {
            let names: Vec<_> = spec.directions.iter().map(|d| d.name()).collect();
            return Err(ConfigError::new(
                "direction",
                format!("{} applies in direction {} only", spec.name, names.join(" or ")),
            ));
        }

        let mut config = body.config.unwrap_or_default();
        let common = Common::take(&mut config)?;
        if spec.requires_topics && common.topics.is_empty() {
            return Err(ConfigError::new(
                "config.topicPatterns",
                format!("{} needs topics or topicPatterns", spec.name),
            ));
        }
        let built = spec.build(config, api_key)?;

        let key = RuleKey {
            tenant: tenant.into(),
            user: user.into(),
            feature: spec.name,
            api_key: api_key as i16,
            direction,
        };
        Ok(Rule {
            key,
            spec,
            common,
            fault: built.fault,
            fault_config: built.config,
            created: Instant::now(),
            created_unix_ms: unix_ms(),
            matched: AtomicU64::new(0),
        })
    }

    /// Reads a rule as `GET /rules` lists it and the rules file keeps it: a body's fields plus
    /// its tenant, user and feature (`active` and `createdAtMs` report, and are ignored).
    pub fn from_entry(entry: &Value) -> Result<Rule, ConfigError> {
        if !entry.is_object() {
            return Err(ConfigError::new("body", "a rule must be a JSON object"));
        }
        let text = |key: &str| {
            entry
                .get(key)
                .and_then(Value::as_str)
                .ok_or_else(|| ConfigError::new(key, "is required and must be a string"))
        };
        let body: Map<String, Value> = ["config", "direction", "apiKeys"]
            .into_iter()
            .filter_map(|key| entry.get(key).map(|value| (key.to_owned(), value.clone())))
            .collect();
        let body = Value::Object(body).to_string();
        let mut rule = Rule::from_request(text("tenant")?, text("user")?, text("feature")?, body.as_bytes())?;
        // A saved rule keeps its age, so that its ttl and its duty cycle go on across restarts.
        if let Some(created_unix_ms) = entry.get("createdAtMs").and_then(Value::as_u64) {
            let age = unix_ms().saturating_sub(created_unix_ms);
            rule.created = Instant::now().checked_sub(Duration::from_millis(age)).unwrap_or(rule.created);
            rule.created_unix_ms = created_unix_ms;
        }
        Ok(rule)
    }

    pub fn is_active(&self, now: Instant) -> bool {
        let age = now.saturating_duration_since(self.created);
        self.common.ttl.is_none_or(|ttl| age < ttl) && self.common.schedule.is_active(age)
    }

    /// When the rule was created, in milliseconds since the Unix epoch.
    pub fn created_unix_ms(&self) -> u64 {
        self.created_unix_ms
    }

    /// When the rule's `ttl` ends it, in milliseconds since the Unix epoch.
    pub fn expires_unix_ms(&self) -> Option<u64> {
        self.common.ttl.map(|ttl| self.created_unix_ms.saturating_add(ttl.as_millis() as u64))
    }

    /// When the rule's current active phase ends; `None` when it never goes quiet (or not
    /// within the clock's range).
    pub fn active_until(&self, now: Instant) -> Option<Instant> {
        let left = self.common.schedule.active_left(now.saturating_duration_since(self.created))?;
        now.checked_add(left)
    }

    /// Whether the rule applies to a connection of `user` (None: unauthenticated) to broker `node`.
    pub fn applies_to(&self, user: Option<&str>, node: Option<i32>) -> bool {
        let user_matches = match user {
            None => true,
            Some(user) => self.key.user == "*" || self.key.user == user,
        };
        let brokers = &self.common.broker_ids;
        let broker_matches = brokers.is_empty() || node.is_some_and(|n| brokers.contains(&n));
        user_matches && broker_matches
    }

    /// Counts a request the rule matches and says whether it is one the rule may act on:
    /// requests `skipRequests`+1 to `skipRequests`+`maxRequests`. Rules without a count: always,
    /// at no cost.
    pub fn takes_turn(&self) -> bool {
        let (skip, max) = (self.common.skip_requests, self.common.max_requests);
        if skip == 0 && max.is_none() {
            return true;
        }
        let seen = self.matched.fetch_add(1, Ordering::Relaxed);
        seen >= skip && max.is_none_or(|max| seen - skip < max)
    }

    /// Rolls `rateInPercent`.
    pub fn fires(&self, rng: &mut fastrand::Rng) -> bool {
        self.common.rate_percent >= 100 || rng.u32(0..100) < self.common.rate_percent
    }

    /// Whether the request must be decoded before this rule can act.
    pub fn needs_body(&self) -> bool {
        // A fault that alters answers filters topics in the answer, not in the request.
        let alters = ApiKey::try_from(self.key.api_key).is_ok_and(|api| self.fault.alters_responses(api));
        !alters && (!self.common.topics.is_empty() || self.fault.needs_request())
    }

    /// The body that creates this rule again: what the rules file keeps.
    pub fn body(&self) -> Value {
        let mut config = Map::new();
        self.common.to_json(&mut config);
        config.extend(self.fault_config.clone());
        let api = api_key_name_of(self.key.api_key);
        json!({"config": config, "direction": self.key.direction.name(), "apiKeys": api})
    }

    /// What the rules file and the rules topic keep: the body plus tenant, user, feature and
    /// `createdAtMs`, which `from_entry` reads back.
    pub fn entry(&self) -> Value {
        let mut entry = json!({"tenant": self.key.tenant, "user": self.key.user, "feature": self.key.feature,
            "createdAtMs": self.created_unix_ms});
        if let (Value::Object(entry), Value::Object(body)) = (&mut entry, self.body()) {
            entry.extend(body);
        }
        entry
    }

    pub fn to_json(&self) -> Value {
        let mut rule = json!({
            "tenant": self.key.tenant,
            "user": self.key.user,
            "feature": self.key.feature,
            "active": self.is_active(Instant::now()),
            "createdAtMs": self.created_unix_ms,
        });
        if let (Value::Object(rule), Value::Object(body)) = (&mut rule, self.body()) {
            rule.extend(body);
        }
        if let Some(expires) = self.expires_unix_ms() {
            rule["expiresAtMs"] = Value::from(expires);
        }
        if self.common.skip_requests > 0 || self.common.max_requests.is_some() {
            rule["matchedRequests"] = Value::from(self.matched.load(Ordering::Relaxed));
        }
        rule
    }
}

/// Now, in milliseconds since the Unix epoch.
pub fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64
}

/// API keys 0..API_SLOTS are indexed; rules on others never match (no such API is decoded).
const API_SLOTS: usize = 128;

/// One immutable snapshot of the rules, indexed by API key for the data path.
#[derive(Debug, Default)]
pub struct RuleSet {
    rules: Vec<Arc<Rule>>,
    by_api: Vec<Vec<Arc<Rule>>>,
    /// Whether some rule is for some `client.id`s only, so connections must watch request ids.
    scopes_by_client_id: bool,
    /// The rules asked when a connection is accepted (refuse-connections).
    on_accept: Vec<Arc<Rule>>,
}

impl RuleSet {
    pub fn new(rules: Vec<Arc<Rule>>) -> RuleSet {
        let mut by_api = vec![Vec::new(); API_SLOTS];
        for rule in &rules {
            if let Some(slot) = usize::try_from(rule.key.api_key).ok().and_then(|k| by_api.get_mut(k)) {
                slot.push(rule.clone());
            }
        }
        let scopes_by_client_id = rules.iter().any(|rule| rule.common.clients.by_client_id());
        let on_accept = rules.iter().filter(|rule| rule.fault.refuses_connections()).cloned().collect();
        RuleSet { rules, by_api, scopes_by_client_id, on_accept }
    }

    /// The rule that refuses a new connection from `client` to broker `node`, if one is active
    /// and fires: an empty list for almost every accept.
    pub fn refusing(
        &self,
        node: Option<i32>,
        client: Option<IpAddr>,
        rng: &mut fastrand::Rng,
    ) -> Option<&Arc<Rule>> {
        let now = Instant::now();
        self.on_accept.iter().find(|rule| {
            let clients = &rule.common.clients;
            (clients.is_empty() || clients.matches(client, None))
                && rule.applies_to(None, node)
                && rule.is_active(now)
                && rule.fires(rng)
        })
    }

    pub fn scopes_by_client_id(&self) -> bool {
        self.scopes_by_client_id
    }

    pub fn rules(&self) -> &[Arc<Rule>] {
        &self.rules
    }

    /// The rules on one API: empty for almost every request, so the check costs an index.
    pub fn for_api(&self, api_key: i16) -> &[Arc<Rule>] {
        usize::try_from(api_key).ok().and_then(|k| self.by_api.get(k)).map_or(&[], Vec::as_slice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn post(feature: &str, body: &str) -> Result<Rule, ConfigError> {
        Rule::from_request("1-1", "test@conduktor.io", feature, body.as_bytes())
    }

    #[test]
    fn the_seed_bodies_parse() {
        let rule = post(
            "broken-broker",
            r#"{"config":{"brokerIds":[],"duration":6000,"durationUnit":"MILLISECONDS","quietPeriod":20000,
            "quietPeriodUnit":"MILLISECONDS","minLatencyToAddInMilliseconds":6000,"maxLatencyToAddInMilliseconds":7000,
            "errors":["REQUEST_TIMED_OUT","BROKER_NOT_AVAILABLE","OFFSET_OUT_OF_RANGE","NOT_ENOUGH_REPLICAS","INVALID_REQUIRED_ACKS"]},
            "direction":"REQUEST","apiKeys":"PRODUCE"}"#,
        )
        .unwrap();
        assert_eq!(rule.key.api_key, 0);
        let json = rule.to_json();
        assert_eq!(json["config"]["maxLatencyToAddInMilliseconds"], 7000);
        assert_eq!(json["config"]["errors"][4], "INVALID_REQUIRED_ACKS");

        let rule = post(
            "duplicate-resource",
            r#"{"config":{"topics":["conduktor_topic_duplicate"],"duration":1,"rateInPercent":100,"quietPeriod":1,"timeUnit":"MINUTES"},
            "direction":"REQUEST","apiKeys":"PRODUCE"}"#,
        )
        .unwrap();
        assert_eq!(rule.to_json()["config"]["duration"], 60_000);
        post("random-bytes", r#"{"config":{"topics":["t"],"nbMessages":1,"sizeInBytes":10},"direction":"REQUEST","apiKeys":"PRODUCE"}"#)
            .unwrap();
        post(
            "invalid-schema",
            r#"{"config":{"topics":["t"],"fakeSchemaId":999},"direction":"REQUEST","apiKeys":"PRODUCE"}"#,
        )
        .unwrap();
        post("slow-topic", r#"{"config":{"topicPatterns":["t.*"],"minLatencyToAddInMilliseconds":6000,"maxLatencyToAddInMilliseconds":7000},"direction":"REQUEST","apiKeys":"PRODUCE"}"#)
            .unwrap();
        post("leader-election", r#"{"config":{"rateInPercent":100,"duration":6000,"quietPeriod":20000,"timeUnit":"MILLISECONDS","errors":["LEADER_NOT_AVAILABLE","NOT_LEADER_OR_FOLLOWER","BROKER_NOT_AVAILABLE"]},"direction":"REQUEST","apiKeys":"PRODUCE"}"#)
            .unwrap();
        post("slow-broker", r#"{"config":{"brokerIds":[],"minLatencyToAddInMilliseconds":6000,"maxLatencyToAddInMilliseconds":7000},"direction":"RESPONSE","apiKeys":"FETCH"}"#)
            .unwrap();
    }

    #[test]
    fn bad_bodies_name_the_field() {
        let field = |feature: &str, body: &str| post(feature, body).unwrap_err().field;
        assert_eq!(field("chaos-monkey", "{}"), "feature");
        assert!(post("chaos-monkey", "{}").unwrap_err().reason.contains("broken-broker"));
        assert_eq!(field("broken-broker", "{not json"), "body");
        assert_eq!(
            field("broken-broker", r#"{"apiKeys":"PRODUCE","config":{"errors":["NOPE"]}}"#),
            "config.errors[0]"
        );
        assert_eq!(field("broken-broker", r#"{"apiKeys":"PRODUCE_IT"}"#), "apiKeys");
        assert_eq!(field("broken-broker", r#"{"apiKeys":"PRODUCE","direction":"SIDEWAYS"}"#), "direction");
        assert_eq!(
            field(
                "broken-broker",
                r#"{"apiKeys":"PRODUCE","config":{"minLatencyToAddInMilliseconds":9,"maxLatencyToAddInMilliseconds":1}}"#
            ),
            "config.minLatencyToAddInMilliseconds"
        );
        assert_eq!(
            field("slow-topic", r#"{"apiKeys":"PRODUCE","config":{"topicPatterns":["("]}}"#),
            "config.topicPatterns[0]"
        );
        assert_eq!(
            field("slow-broker", r#"{"apiKeys":"PRODUCE","config":{"duration":-1}}"#),
            "config.duration"
        );
        assert_eq!(field("slow-broker", r#"{"apiKeys":"PRODUCE","config":{"latency":5}}"#), "config.latency");
        assert_eq!(field("random-bytes", r#"{"apiKeys":"METADATA","config":{}}"#), "apiKeys");
        assert_eq!(field("random-bytes", r#"{"apiKeys":"PRODUCE","direction":"RESPONSE"}"#), "direction");
        assert_eq!(field("slow-topic", r#"{"apiKeys":"PRODUCE","config":{}}"#), "config.topicPatterns");
        assert_eq!(
            field("slow-broker", r#"{"apiKeys":"PRODUCE","config":{"rateInPercent":101}}"#),
            "config.rateInPercent"
        );
        assert_eq!(field("slow-broker", r#"{"apiKeys":"PRODUCE","extra":1}"#), "extra");
    }

    #[test]
    fn scope_and_brokers_narrow_a_rule() {
        let rule = post("slow-broker", r#"{"apiKeys":"PRODUCE","config":{"brokerIds":[2]}}"#).unwrap();
        assert!(rule.applies_to(None, Some(2)));
        assert!(!rule.applies_to(None, Some(1)));
        assert!(!rule.applies_to(None, None));
        assert!(rule.applies_to(Some("test@conduktor.io"), Some(2)));
        assert!(!rule.applies_to(Some("someone-else"), Some(2)));
    }

    #[test]
    fn api_key_names_round_trip() {
        assert_eq!(parse_api_key("PRODUCE"), Some(ApiKey::Produce));
        assert_eq!(parse_api_key("FIND_COORDINATOR"), Some(ApiKey::FindCoordinator));
        assert_eq!(parse_api_key("produce"), None);
    }
}
