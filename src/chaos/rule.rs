//! Rules: which fault applies to which requests, parsed from the REST API's JSON, and the
//! immutable `RuleSet` snapshot the shards read.

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use kafka_protocol::messages::ApiKey;
use serde_json::{Map, Value, json};

use super::config::{ConfigError, ConfigReader, Schedule, TopicFilter};
use super::errors::screaming_snake;
use super::{Fault, broken_broker, duplicate_resource, invalid_schema, leader_election, random_bytes};
use super::{slow_broker, slow_topic};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Feature {
    BrokenBroker,
    DuplicateResource,
    LeaderElection,
    RandomBytes,
    SlowBroker,
    SlowTopic,
    InvalidSchema,
}

impl Feature {
    pub const ALL: [Feature; 7] = [
        Feature::BrokenBroker,
        Feature::DuplicateResource,
        Feature::LeaderElection,
        Feature::RandomBytes,
        Feature::SlowBroker,
        Feature::SlowTopic,
        Feature::InvalidSchema,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Feature::BrokenBroker => "broken-broker",
            Feature::DuplicateResource => "duplicate-resource",
            Feature::LeaderElection => "leader-election",
            Feature::RandomBytes => "random-bytes",
            Feature::SlowBroker => "slow-broker",
            Feature::SlowTopic => "slow-topic",
            Feature::InvalidSchema => "invalid-schema",
        }
    }

    pub fn parse(name: &str) -> Option<Feature> {
        Feature::ALL.into_iter().find(|f| f.name() == name)
    }

    pub fn index(self) -> usize {
        self as usize
    }

    /// The APIs the feature acts on; `None`: any API.
    fn api_keys(self) -> Option<&'static [ApiKey]> {
        match self {
            Feature::BrokenBroker | Feature::LeaderElection | Feature::SlowTopic => {
                Some(&[ApiKey::Produce, ApiKey::Fetch])
            }
            Feature::DuplicateResource | Feature::RandomBytes | Feature::InvalidSchema => {
                Some(&[ApiKey::Produce])
            }
            Feature::SlowBroker => None,
        }
    }

    fn directions(self) -> &'static [Direction] {
        match self {
            Feature::SlowBroker | Feature::SlowTopic => &[Direction::Request, Direction::Response],
            _ => &[Direction::Request],
        }
    }

    /// Reads the feature's own fields; returns the fault and the names of those fields.
    fn build(
        self,
        config: &mut ConfigReader,
    ) -> Result<(Box<dyn Fault>, &'static [&'static str]), ConfigError> {
        Ok(match self {
            Feature::BrokenBroker => (Box::new(broken_broker::read(config)?), broken_broker::FIELDS),
            Feature::DuplicateResource => {
                (Box::new(duplicate_resource::DuplicateResource::read(config)?), duplicate_resource::FIELDS)
            }
            Feature::LeaderElection => (Box::new(leader_election::read(config)?), leader_election::FIELDS),
            Feature::RandomBytes => {
                (Box::new(random_bytes::RandomBytes::read(config)?), random_bytes::FIELDS)
            }
            Feature::SlowBroker => (Box::new(slow_broker::SlowBroker::read(config)?), slow_broker::FIELDS),
            Feature::SlowTopic => (Box::new(slow_topic::read(config)?), slow_topic::FIELDS),
            Feature::InvalidSchema => {
                (Box::new(invalid_schema::InvalidSchema::read(config)?), invalid_schema::FIELDS)
            }
        })
    }

    /// Whether the fault only makes sense with a topic filter.
    fn requires_topics(self) -> bool {
        self == Feature::SlowTopic
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
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

pub fn parse_api_key(name: &str) -> Option<ApiKey> {
    (0..200).find_map(|key| ApiKey::try_from(key).ok().filter(|&api| api_key_name(api) == name))
}

/// What identifies a rule: creating one with the same key replaces it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RuleKey {
    pub tenant: String,
    pub user: String,
    pub feature: Feature,
    pub api_key: i16,
    pub direction: Direction,
}

#[derive(Debug)]
pub struct Rule {
    pub key: RuleKey,
    pub schedule: Schedule,
    pub rate_percent: u32,
    pub broker_ids: Vec<i32>,
    pub topics: TopicFilter,
    pub fault: Box<dyn Fault>,
    pub created: Instant,
    created_unix_ms: u64,
}

const COMMON_FIELDS: [&str; 2] = ["rateInPercent", "brokerIds"];

impl Rule {
    /// Parses the body of `POST /tenant/{tenant}/user/{user}/feature/{feature}`.
    pub fn from_request(tenant: &str, user: &str, feature: &str, body: &[u8]) -> Result<Rule, ConfigError> {
        let feature = Feature::parse(feature).ok_or_else(|| {
            let known: Vec<_> = Feature::ALL.iter().map(|f| f.name()).collect();
            ConfigError::new(
                "feature",
                format!("unknown feature '{feature}'; known features: {}", known.join(", ")),
            )
        })?;
        let body: Value = serde_json::from_slice(body)
            .map_err(|e| ConfigError::new("body", format!("malformed JSON: {e}")))?;
        let Value::Object(mut body) = body else {
            return Err(ConfigError::new("body", "must be a JSON object"));
        };
        let direction = match body.remove("direction") {
            None => Direction::Request,
            Some(Value::String(name)) => Direction::parse(&name).ok_or_else(|| {
                ConfigError::new("direction", format!("unknown direction '{name}'; use REQUEST or RESPONSE"))
            })?,
            Some(other) => {
                return Err(ConfigError::new("direction", format!("must be a string, got {other}")));
            }
        };
        let api_key = match body.remove("apiKeys") {
            Some(Value::String(name)) => parse_api_key(&name).ok_or_else(|| {
                ConfigError::new(
                    "apiKeys",
                    format!("unknown Kafka API '{name}' (for example PRODUCE or FETCH)"),
                )
            })?,
            Some(other) => return Err(ConfigError::new("apiKeys", format!("must be a string, got {other}"))),
            None => return Err(ConfigError::new("apiKeys", "is required (for example \"PRODUCE\")")),
        };
        let config = match body.remove("config") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(config)) => config,
            Some(other) => return Err(ConfigError::new("config", format!("must be an object, got {other}"))),
        };
        if let Some(unknown) = body.keys().next() {
            return Err(ConfigError::new(
                unknown.clone(),
                "unknown field; expected config, direction and apiKeys",
            ));
        }
        if let Some(allowed) = feature.api_keys().filter(|allowed| !allowed.contains(&api_key)) {
            let names: Vec<_> = allowed.iter().map(|&a| api_key_name(a)).collect();
            return Err(ConfigError::new(
                "apiKeys",
                format!(
                    "{} applies to {}, not {}",
                    feature.name(),
                    names.join(" or "),
                    api_key_name(api_key)
                ),
            ));
        }
        if !feature.directions().contains(&direction) {
            return Err(ConfigError::new(
                "direction",
                format!("{} applies in direction REQUEST only", feature.name()),
            ));
        }

        let mut reader = ConfigReader::new(config);
        let schedule = Schedule::read(&mut reader)?;
        let rate_percent = reader.u64("rateInPercent")?.unwrap_or(100);
        if rate_percent > 100 {
            return Err(ConfigError::new(
                "config.rateInPercent",
                format!("must be 0-100, got {rate_percent}"),
            ));
        }
        let broker_ids = reader.i32s("brokerIds")?;
        let topics = TopicFilter::read(&mut reader)?;
        if feature.requires_topics() && topics.is_empty() {
            return Err(ConfigError::new(
                "config.topicPatterns",
                format!("{} needs topics or topicPatterns", feature.name()),
            ));
        }
        let (fault, own_fields) = feature.build(&mut reader)?;
        let known: Vec<&str> = Schedule::FIELDS
            .iter()
            .chain(&COMMON_FIELDS)
            .chain(&TopicFilter::FIELDS)
            .chain(own_fields)
            .copied()
            .collect();
        reader.finish(&known)?;

        let key =
            RuleKey { tenant: tenant.into(), user: user.into(), feature, api_key: api_key as i16, direction };
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        Ok(Rule {
            key,
            schedule,
            rate_percent: rate_percent as u32,
            broker_ids,
            topics,
            fault,
            created: Instant::now(),
            created_unix_ms: now.as_millis() as u64,
        })
    }

    pub fn feature(&self) -> Feature {
        self.key.feature
    }

    pub fn is_active(&self, now: Instant) -> bool {
        self.schedule.is_active(now.saturating_duration_since(self.created))
    }

    /// Whether the rule applies to a connection of `user` (None: unauthenticated) to broker `node`.
    pub fn applies_to(&self, user: Option<&str>, node: Option<i32>) -> bool {
        let user_matches = match user {
            None => true,
            Some(user) => self.key.user == "*" || self.key.user == user,
        };
        let broker_matches = self.broker_ids.is_empty() || node.is_some_and(|n| self.broker_ids.contains(&n));
        user_matches && broker_matches
    }

    /// Rolls `rateInPercent`.
    pub fn fires(&self, rng: &mut fastrand::Rng) -> bool {
        self.rate_percent >= 100 || rng.u32(0..100) < self.rate_percent
    }

    /// Whether the request must be decoded before this rule can act.
    pub fn needs_body(&self) -> bool {
        !self.topics.is_empty() || self.fault.needs_request()
    }

    pub fn to_json(&self) -> Value {
        let mut config = Map::new();
        self.schedule.to_json(&mut config);
        config.insert("rateInPercent".into(), Value::from(self.rate_percent));
        config.insert("brokerIds".into(), Value::from(self.broker_ids.clone()));
        self.topics.to_json(&mut config);
        self.fault.config_json(&mut config);
        let api = ApiKey::try_from(self.key.api_key).map(api_key_name).unwrap_or_default();
        json!({
            "tenant": self.key.tenant,
            "user": self.key.user,
            "feature": self.key.feature.name(),
            "apiKeys": api,
            "direction": self.key.direction.name(),
            "config": config,
            "active": self.is_active(Instant::now()),
            "createdAtMs": self.created_unix_ms,
        })
    }
}

/// API keys 0..API_SLOTS are indexed; rules on others never match (no such API is decoded).
const API_SLOTS: usize = 128;

/// One immutable snapshot of the rules, indexed by API key for the data path.
#[derive(Debug, Default)]
pub struct RuleSet {
    rules: Vec<Arc<Rule>>,
    by_api: Vec<Vec<Arc<Rule>>>,
}

impl RuleSet {
    pub fn new(rules: Vec<Arc<Rule>>) -> RuleSet {
        let mut by_api = vec![Vec::new(); API_SLOTS];
        for rule in &rules {
            if let Some(slot) = usize::try_from(rule.key.api_key).ok().and_then(|k| by_api.get_mut(k)) {
                slot.push(rule.clone());
            }
        }
        RuleSet { rules, by_api }
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
        assert_eq!(field("random-bytes", r#"{"apiKeys":"FETCH","config":{}}"#), "apiKeys");
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
