//! broken-broker: breaks a broker for a window of time. A request that opens the window, and
//! every request the rule matches on a connection to that broker while it is open, is not
//! forwarded: after a random latency kaos answers it as a broker in trouble would, every error
//! slot of the answer (each partition, topic, group or the whole answer) carrying one of
//! `errors`, and nothing was written. With `topics` or `topicPatterns` only requests for those
//! topics break. See `outage` for how windows open.
//!
//! It acts on every API whose answer carries an error (`errors::APIS_WITH_ERRORS`): the data
//! path, the group coordinator's and the transaction coordinator's APIs. On Metadata the topics
//! carry the error and the brokers stay, so the answer still tells the client where to go.

use kafka_protocol::messages::ApiKey;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::alter::Response;
use super::config::{ConfigError, Configurable, settle_latency};
use super::errors::{APIS_WITH_ERRORS, KafkaError};
use super::outage::{self, WindowScope, Windows};
use super::{Direction, Effect, Fault, FaultConfig, FaultContext};

/// How long a broker stays broken when neither `brokenMs` nor a latency is given.
const DEFAULT_BROKEN_MS: u64 = 3000;

#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BrokenBroker {
    /// Kafka errors to answer with; each request gets one of them, picked at random. Only errors
    /// Kafka answers the rule's API with are accepted (default: BROKER_NOT_AVAILABLE on Produce
    /// and Fetch, LEADER_NOT_AVAILABLE on Metadata and ListOffsets, REQUEST_TIMED_OUT on
    /// CreateTopics, COORDINATOR_NOT_AVAILABLE on the group and transaction APIs).
    errors: Option<Vec<KafkaError>>,
    /// Least time before kaos answers a broken request, in milliseconds.
    min_latency_to_add_in_milliseconds: u64,
    /// Most time before kaos answers a broken request, in milliseconds (default: the minimum).
    max_latency_to_add_in_milliseconds: Option<u64>,
    /// Only these partitions of a Produce or Fetch fail; the request's others go to the broker
    /// and are answered by it, in the same answer (default: every partition).
    partitions: Option<Vec<i32>>,
    /// How long the broker stays broken once it breaks, in milliseconds (default: a pick
    /// between the latencies when they are set, else 3000).
    broken_ms: Option<u64>,
    #[serde(skip)]
    #[schemars(skip)]
    windows: Windows,
}

impl Configurable for BrokenBroker {
    fn defaults() -> Value {
        outage::defaults()
    }

    fn validate(&mut self) -> Result<(), ConfigError> {
        let min = self.min_latency_to_add_in_milliseconds;
        settle_latency(min, &mut self.max_latency_to_add_in_milliseconds)?;
        let length =
            outage::window_length(self.broken_ms, min, self.max_latency_to_add_in_milliseconds, DEFAULT_BROKEN_MS);
        self.windows = Windows::new(WindowScope::Broker, length);
        Ok(())
    }

    fn settle_for(&mut self, api: ApiKey) -> Result<(), ConfigError> {
        let defaults: &[&str] = match api {
            ApiKey::Produce | ApiKey::Fetch => &["BROKER_NOT_AVAILABLE"],
            ApiKey::Metadata | ApiKey::ListOffsets => &["LEADER_NOT_AVAILABLE"],
            ApiKey::CreateTopics => &["REQUEST_TIMED_OUT"],
            _ => &["COORDINATOR_NOT_AVAILABLE"],
        };
        outage::check_partitions(&self.partitions, api)?;
        outage::settle_errors(&mut self.errors, api, defaults)
    }
}

impl FaultConfig for BrokenBroker {
    const NAME: &'static str = "broken-broker";
    const SUMMARY: &'static str =
        "Breaks a broker for a while: its requests (data, group, transaction) get errors instead of being forwarded.";
    const API_KEYS: &'static [ApiKey] = APIS_WITH_ERRORS;
    /// RESPONSE: the broker applies the request and the client gets the error instead.
    const DIRECTIONS: &'static [Direction] = &[Direction::Request, Direction::Response];
}

impl Fault for BrokenBroker {
    /// The local answer lists the request's partitions.
    fn needs_request(&self) -> bool {
        true
    }

    fn windows(&self) -> Option<&Windows> {
        Some(&self.windows)
    }

    fn apply(&self, context: &mut FaultContext<'_>) -> Option<Effect> {
        let max = self.max_latency_to_add_in_milliseconds;
        let min = self.min_latency_to_add_in_milliseconds;
        Some(outage::answer(self.errors(), min, max, context.window, context.rng))
    }

    fn partitions(&self) -> Option<&[i32]> {
        self.partitions.as_deref()
    }

    fn alters_responses(&self, api: ApiKey) -> bool {
        api == ApiKey::Metadata
    }

    fn alter(&self, response: &mut Response<'_>, context: &mut FaultContext<'_>) -> Option<Effect> {
        outage::fail_topics(response, self.errors(), context)
    }
}

impl BrokenBroker {
    /// The errors, settled for the rule's API.
    fn errors(&self) -> &[KafkaError] {
        self.errors.as_deref().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chaos::config::parse;
    use serde_json::json;

    fn broken_on(api: ApiKey, config: Value) -> Result<BrokenBroker, ConfigError> {
        let mut fault: BrokenBroker = parse(config.as_object().unwrap().clone())?;
        fault.settle_for(api)?;
        Ok(fault)
    }

    fn broken(config: Value) -> Result<BrokenBroker, ConfigError> {
        broken_on(ApiKey::Produce, config)
    }

    #[test]
    fn answers_with_one_of_its_errors_after_its_latency() {
        let fault =
            broken(json!({"errors": ["NOT_ENOUGH_REPLICAS", "REQUEST_TIMED_OUT"], "minLatencyToAddInMilliseconds": 3}))
                .unwrap();
        let mut rng = fastrand::Rng::with_seed(7);
        let topics = Default::default();
        for _ in 0..20 {
            let mut context =
                FaultContext::new(&mut rng, &topics, &|_: &[u8; 16]| None);
            let Some(Effect::Fail { error, after }) = fault.apply(&mut context) else { panic!("a failure") };
            assert!(error == 19 || error == 7, "{error}");
            assert_eq!(after.as_millis(), 3);
        }
    }

    #[test]
    fn breaks_a_whole_broker_for_its_window() {
        let windows = |config: Value| {
            let fault = broken(config).unwrap();
            (fault.windows().unwrap().scope(), serde_json::to_value(&fault).unwrap()["brokenMs"].clone())
        };
        assert_eq!(windows(json!({})), (WindowScope::Broker, Value::Null), "brokenMs is optional");
        assert_eq!(windows(json!({"brokenMs": 250})).1, 250);
    }

    #[test]
    fn defaults_and_bad_errors() {
        let fault = broken(json!({})).unwrap();
        assert_eq!(serde_json::to_value(&fault).unwrap()["errors"], json!(["BROKER_NOT_AVAILABLE"]));
        let error = broken(json!({"errors": ["BROKER_NOT_AVAILABLE", "OOPS"]})).unwrap_err();
        assert_eq!(error.field, "config.errors[1]");
        assert_eq!(broken(json!({"errors": []})).unwrap_err().field, "config.errors");
        assert_eq!(broken(json!({"brokenMs": -1})).unwrap_err().field, "config.brokenMs");
    }

    #[test]
    fn errors_default_by_api_and_must_be_ones_kafka_answers_it_with() {
        let errors = |api| serde_json::to_value(broken_on(api, json!({})).unwrap()).unwrap()["errors"].clone();
        assert_eq!(errors(ApiKey::Heartbeat), json!(["COORDINATOR_NOT_AVAILABLE"]));
        assert_eq!(errors(ApiKey::EndTxn), json!(["COORDINATOR_NOT_AVAILABLE"]));
        assert_eq!(errors(ApiKey::Metadata), json!(["LEADER_NOT_AVAILABLE"]));
        assert_eq!(errors(ApiKey::Fetch), json!(["BROKER_NOT_AVAILABLE"]));
        let on_heartbeat = broken_on(ApiKey::Heartbeat, json!({"errors": ["REBALANCE_IN_PROGRESS", "NOT_ENOUGH_REPLICAS"]}));
        assert_eq!(on_heartbeat.unwrap_err().field, "config.errors[1]");
        assert!(broken_on(ApiKey::AddPartitionsToTxn, json!({"errors": ["CONCURRENT_TRANSACTIONS"]})).is_ok());
    }
}
