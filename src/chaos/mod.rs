//! Chaos: the faults of the Conduktor chaos demo, the rules that switch them on, and the snapshot
//! the control thread publishes for the shards to read without locks.
//!
//! A fault is one file, as Toxiproxy's toxics are: a config struct (serde + JSON Schema) that says
//! what the fault is ([`FaultConfig`]: name, APIs, directions, defaults) and what it does to one
//! request ([`Fault`]: delay it, fail it, duplicate it, or rewrite its records). `registry!`
//! lists them in [`FAULTS`]; the REST API, `GET /features`, the web console and the OpenAPI
//! document all read that list, so adding a fault is one new file and one line there.
//!
//! The data path turns effects into frames in `proxy::connection`, keeping responses in request
//! order.

pub mod alter;
pub mod config;
pub mod errors;
pub mod network;
pub mod outage;
pub mod plan;
pub mod records;
pub mod respond;
pub mod rule;
pub mod scope;
pub mod stable_hash;

use std::fmt::Debug;
use std::time::{Duration, Instant};

use kafka_protocol::messages::{ApiKey, ProduceRequest};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

pub use config::{ConfigError, Configurable, TopicFilter};
use network::{ConnectionSoFar, LinkFault};
pub use rule::{Direction, Rule, RuleSet};

use crate::wire::TopicNames;

/// Declares each fault's module and lists its config type in [`FAULTS`], so that a fault is one
/// line here.
macro_rules! registry {
    ($($module:ident::$config:ident),* $(,)?) => {
        $(mod $module;)*

        /// Every fault kaos offers, in the order the API lists them.
        pub const FAULTS: &[FaultSpec] = &[$(FaultSpec::of::<$module::$config>()),*];
    };
}

registry! {
    broken_broker::BrokenBroker,
    duplicate_resource::DuplicateResource,
    leader_election::LeaderElection,
    no_response::NoResponse,
    hide_broker::HideBroker,
    wrong_leader::WrongLeader,
    throttle::Throttle,
    random_bytes::RandomBytes,
    slow_broker::SlowBroker,
    slow_topic::SlowTopic,
    invalid_schema::InvalidSchema,
    reset_peer::ResetPeer,
    timeout::Timeout,
    bandwidth::Bandwidth,
    slicer::Slicer,
    slow_close::SlowClose,
    limit_data::LimitData,
    refuse_connections::RefuseConnections,
}

/// How the delays a latency fault adds to one connection relate to each other (`latencyModel`).
/// `Network`: each request (or answer) waits its delay from its own arrival, so pipelined
/// requests overlap as on a slow network; answers still leave in request order, each waiting
/// only for the ones before it. `Processing`: one request of a connection at a time, as a broker
/// works through a muted channel: each waits its delay from when the one held before it was let
/// go. (No doc comment per variant: the JSON Schema then stays a plain string enum.)
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LatencyModel {
    #[default]
    Network,
    Processing,
}

/// A hold on a request or on its answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Latency {
    pub delay: Duration,
    pub model: LatencyModel,
}

impl Latency {
    /// A hold of the network model, as the `after` of an error answer.
    pub fn network(delay: Duration) -> Latency {
        Latency { delay, model: LatencyModel::Network }
    }

    /// The longer of two holds.
    pub fn max(self, other: Latency) -> Latency {
        if other.delay > self.delay { other } else { self }
    }

    /// When what arrived at `arrived` may go, the hold before it on its lane having let go at
    /// `previous` (`None`: nothing held before it).
    pub fn release(&self, arrived: Instant, previous: Option<Instant>) -> Instant {
        let start = match (self.model, previous) {
            (LatencyModel::Processing, Some(previous)) => previous.max(arrived),
            _ => arrived,
        };
        start + self.delay
    }
}

/// What a fault does to one request it fires on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Hold the request (direction REQUEST) or its response (RESPONSE).
    Delay(Latency),
    /// Answer every partition with `error` after `after`: instead of forwarding the request
    /// (direction REQUEST), or in place of the broker's answer to it (RESPONSE: the broker
    /// applied it, the client does not learn so).
    Fail { error: i16, after: Duration },
    /// Deliver the request to the broker twice.
    Duplicate,
    /// This many records of the decoded request were changed.
    Rewrote(u64),
    /// Never answer the request (direction REQUEST: nor forward it); close the connection this
    /// long after it arrived, when set.
    NoResponse { close_after: Option<Duration> },
    /// The broker's answer was changed in this many places (brokers, partitions, batches).
    Altered(u64),
    /// The answer asks the client to wait this long, and kaos holds the connection's next
    /// requests as long, as a broker mutes a throttled channel (KIP-219).
    Throttled(Duration),
    /// The connection's network goes bad (see `network`).
    Network(LinkFault),
}

impl Effect {
    /// The effect as the event log reports it.
    pub fn to_json(&self) -> Value {
        let millis = |d: &Duration| d.as_millis() as u64;
        match self {
            Effect::Delay(Latency { delay, model }) => {
                json!({"kind": "delay", "ms": millis(delay), "model": model})
            }
            Effect::Fail { error, after } => {
                json!({"kind": "error", "error": errors::KafkaError(*error), "errorCode": error, "afterMs": millis(after)})
            }
            Effect::Duplicate => json!({"kind": "duplicate"}),
            Effect::Rewrote(records) => json!({"kind": "records-changed", "records": records}),
            Effect::NoResponse { close_after } => {
                json!({"kind": "no-response", "closeAfterMs": close_after.as_ref().map(millis)})
            }
            Effect::Altered(changes) => json!({"kind": "answer-changed", "changes": changes}),
            Effect::Throttled(wait) => json!({"kind": "throttle", "ms": millis(wait)}),
            Effect::Network(link) => json!({"kind": "network", "fault": format!("{link:?}")}),
        }
    }
}

/// What a fault may look at and change.
pub struct FaultContext<'a> {
    pub rng: &'a mut fastrand::Rng,
    /// The topics the rule is limited to.
    pub topics: &'a TopicFilter,
    /// The decoded Produce request, for faults that rewrite records.
    pub produce: Option<&'a mut ProduceRequest>,
    /// Topic names, for request versions that name topics by id.
    pub topic_names: &'a dyn TopicNames,
    /// For an outage, the window the request falls in (the same on every shard): one election or
    /// breakdown has one cause, so every request in it gets the same error.
    pub window: Option<u64>,
    /// What the request's connection carried before it, for network faults' triggers.
    pub connection: ConnectionSoFar,
}

impl<'a> FaultContext<'a> {
    /// A context with no decoded request and no window.
    pub fn new(rng: &'a mut fastrand::Rng, topics: &'a TopicFilter, topic_names: &'a dyn TopicNames) -> Self {
        FaultContext {
            rng,
            topics,
            produce: None,
            topic_names,
            window: None,
            connection: ConnectionSoFar::default(),
        }
    }
}

/// A configured fault acting on requests. Defaults: it needs no decoded request.
pub trait Fault: Send + Sync + Debug {
    /// Whether it changes records, so the request must be decoded and re-encoded.
    fn rewrites_records(&self) -> bool {
        false
    }

    /// Whether it must see the decoded request at all (to rewrite it, or to answer it).
    fn needs_request(&self) -> bool {
        self.rewrites_records()
    }

    /// For a fault that acts over windows of time (an outage) rather than per request: its
    /// windows. Its rule then sees every request in scope, `rateInPercent` is the chance that one
    /// opens a window, and `apply` is asked only for requests inside a window.
    fn windows(&self) -> Option<&outage::Windows> {
        None
    }

    /// Applies the fault to one request; `None` when it had nothing to act on.
    fn apply(&self, context: &mut FaultContext<'_>) -> Option<Effect>;

    /// The partition numbers it is narrowed to, on Produce and Fetch: the request's other
    /// partitions go to the broker, and its answer carries the fault's error for these
    /// (`alter::PartitionFailures`). `None`: every partition of a request it fires on.
    fn partitions(&self) -> Option<&[i32]> {
        None
    }

    /// Whether it closes new connections as soon as they are accepted (refuse-connections): its
    /// rule is then asked at accept time, not per request.
    fn refuses_connections(&self) -> bool {
        false
    }

    /// Whether, on requests of `api`, it changes the broker's answer (with `alter`) rather than
    /// the request (with `apply`). Its rule's topics then filter the answer, and the request is
    /// not decoded for it.
    fn alters_responses(&self, _api: ApiKey) -> bool {
        false
    }

    /// Changes the broker's answer, and says how (`Effect::Altered`, `Effect::Rewrote`); `None`
    /// when it found nothing to change. `context.topics` are the rule's.
    fn alter(&self, _response: &mut alter::Response<'_>, _context: &mut FaultContext<'_>) -> Option<Effect> {
        None
    }
}

/// A fault's declaration: its config type says what the fault is called, where it acts, and what
/// its fields default to.
pub trait FaultConfig: Configurable + Fault + 'static {
    /// The name in REST paths and rules files, as the Conduktor demo spells it.
    const NAME: &'static str;
    /// One line for `GET /features` and the console.
    const SUMMARY: &'static str;
    /// The APIs it acts on; empty: any API.
    const API_KEYS: &'static [ApiKey];
    /// The directions it acts in.
    const DIRECTIONS: &'static [Direction] = &[Direction::Request];
    /// Whether a rule must name topics (`topics` or `topicPatterns`).
    const REQUIRES_TOPICS: bool = false;
}

/// A fault read from a rule's config: the fault, and its config as the API reports it (with
/// defaults filled in).
#[derive(Debug)]
pub struct Built {
    pub fault: Box<dyn Fault>,
    pub config: Map<String, Value>,
}

/// One entry of the registry: a fault's declaration, with its config type erased.
#[derive(Debug)]
pub struct FaultSpec {
    pub name: &'static str,
    pub summary: &'static str,
    pub api_keys: &'static [ApiKey],
    pub directions: &'static [Direction],
    pub requires_topics: bool,
    /// Reads the fault's own config fields.
    build: fn(Map<String, Value>, ApiKey) -> Result<Built, ConfigError>,
    /// The schema of the fault's own fields.
    schema: fn() -> Value,
    /// The defaults of the fault's own fields.
    defaults: fn() -> Value,
}

impl FaultSpec {
    pub const fn of<T: FaultConfig>() -> FaultSpec {
        FaultSpec {
            name: T::NAME,
            summary: T::SUMMARY,
            api_keys: T::API_KEYS,
            directions: T::DIRECTIONS,
            requires_topics: T::REQUIRES_TOPICS,
            build: build::<T>,
            schema: config::schema_of::<T>,
            defaults: T::defaults,
        }
    }

    /// The fault called `name`.
    pub fn named(name: &str) -> Option<&'static FaultSpec> {
        FAULTS.iter().find(|spec| spec.name == name)
    }

    /// Its place in [`FAULTS`], for per-fault counters.
    pub fn index(&self) -> usize {
        // By name: a `const` slice may exist more than once in the binary, so addresses differ.
        FAULTS.iter().position(|spec| spec.name == self.name).unwrap_or(0)
    }

    pub fn acts_on(&self, api: ApiKey) -> bool {
        self.api_keys.is_empty() || self.api_keys.contains(&api)
    }

    /// Reads a rule's config for requests of `api`.
    pub fn build(&self, config: Map<String, Value>, api: ApiKey) -> Result<Built, ConfigError> {
        (self.build)(config, api)
    }

    /// The whole `config` object a rule of this fault takes: the shared fields and its own.
    pub fn config_schema(&self) -> Value {
        config::merged_schema(&[common_parts(), ((self.schema)(), (self.defaults)())])
    }

    /// The fault as `GET /features` describes it.
    pub fn describe(&self) -> Value {
        let common = common_parts();
        let api_keys: Vec<_> = self.api_keys.iter().map(|&api| rule::api_key_name(api)).collect();
        let directions: Vec<_> = self.directions.iter().map(|d| d.name()).collect();
        json!({
            "name": self.name,
            "summary": self.summary,
            "apiKeys": api_keys,
            "anyApiKey": self.api_keys.is_empty(),
            "directions": directions,
            "requiresTopics": self.requires_topics,
            "fields": config::field_docs(&(self.schema)(), &(self.defaults)()),
            "commonFields": config::field_docs(&common.0, &common.1),
        })
    }
}

/// The shared fields' schema and defaults.
fn common_parts() -> (Value, Value) {
    (config::schema_of::<config::CommonConfig>(), config::CommonConfig::defaults())
}

fn build<T: FaultConfig>(given: Map<String, Value>, api: ApiKey) -> Result<Built, ConfigError> {
    let mut fault: T = config::parse(given)?;
    fault.settle_for(api)?;
    let reported = match serde_json::to_value(&fault) {
        Ok(Value::Object(fields)) => fields,
        _ => Map::new(),
    };
    Ok(Built { fault: Box::new(fault), config: reported })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fault_declares_itself_consistently() {
        for (index, spec) in FAULTS.iter().enumerate() {
            assert_eq!(FaultSpec::named(spec.name).map(FaultSpec::index), Some(index), "{}", spec.name);
            assert!(!spec.summary.is_empty() && !spec.directions.is_empty(), "{}", spec.name);
            let described = spec.describe();
            for field in described["fields"].as_array().unwrap() {
                assert!(
                    field["description"].as_str().is_some_and(|d| !d.is_empty()),
                    "{}: {field}",
                    spec.name
                );
                assert!(field["type"].is_string(), "{}: {field}", spec.name);
            }
            let schema = spec.config_schema();
            assert_eq!(schema["additionalProperties"], false, "{}", spec.name);
            assert!(schema["properties"]["rateInPercent"].is_object(), "{}: shared fields", spec.name);
        }
        let names: std::collections::BTreeSet<_> = FAULTS.iter().map(|spec| spec.name).collect();
        assert_eq!(names.len(), FAULTS.len(), "names are unique");
    }

    #[test]
    fn every_fault_builds_from_its_defaults_and_reports_them() {
        for spec in FAULTS {
            let fields = spec.describe()["fields"].as_array().unwrap().clone();
            let mut given = Map::new();
            for field in fields.iter().filter(|f| f["required"] == true) {
                let sample = match field["type"].as_str() {
                    Some("integer") => json!(1),
                    Some("array") => json!([1]),
                    _ => json!("x"),
                };
                given.insert(field["name"].as_str().unwrap().to_owned(), sample);
            }
            let api = spec.api_keys.first().copied().unwrap_or(ApiKey::Produce);
            let reported = spec.build(given, api).unwrap_or_else(|e| panic!("{}: {e}", spec.name)).config;
            for field in fields.iter().filter(|f| f.get("default").is_some()) {
                let name = field["name"].as_str().unwrap();
                assert_eq!(reported.get(name), Some(&field["default"]), "{}.{name}", spec.name);
            }
        }
    }
}
