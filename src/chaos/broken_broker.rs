//! broken-broker: breaks a broker for a window of time. A request that opens the window, and
//! every request the rule matches on a connection to that broker while it is open, is not
//! forwarded: after a random latency kaos answers it as a broker in trouble would, every partition
//! carrying one of `errors`, and nothing was written. With `topics` or `topicPatterns` only
//! requests for those topics break. See `outage` for how windows open.

use kafka_protocol::messages::ApiKey;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::config::{ConfigError, Configurable};
use super::errors::KafkaError;
use super::outage::{self, WindowScope, Windows};
use super::{Direction, Effect, Fault, FaultConfig, FaultContext};

/// How long a broker stays broken when neither `brokenMs` nor a latency is given.
const DEFAULT_BROKEN_MS: u64 = 3000;

#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BrokenBroker {
    /// Kafka errors to answer with; each request gets one of them, picked at random.
    errors: Vec<KafkaError>,
    /// Least time before kaos answers a broken request, in milliseconds.
    min_latency_to_add_in_milliseconds: u64,
    /// Most time before kaos answers a broken request, in milliseconds (default: the minimum).
    max_latency_to_add_in_milliseconds: Option<u64>,
    /// How long the broker stays broken once it breaks, in milliseconds (default: a pick
    /// between the latencies when they are set, else 3000).
    broken_ms: Option<u64>,
    #[serde(skip)]
    #[schemars(skip)]
    windows: Windows,
}

impl Configurable for BrokenBroker {
    fn defaults() -> Value {
        outage::defaults(&["BROKER_NOT_AVAILABLE"])
    }

    fn validate(&mut self) -> Result<(), ConfigError> {
        let min = self.min_latency_to_add_in_milliseconds;
        outage::check(&self.errors, min, &mut self.max_latency_to_add_in_milliseconds)?;
        let length =
            outage::window_length(self.broken_ms, min, self.max_latency_to_add_in_milliseconds, DEFAULT_BROKEN_MS);
        self.windows = Windows::new(WindowScope::Broker, length);
        Ok(())
    }
}

impl FaultConfig for BrokenBroker {
    const NAME: &'static str = "broken-broker";
    const SUMMARY: &'static str =
        "Breaks a broker for a while: Produce or Fetch requests get broker errors instead of being forwarded.";
    const API_KEYS: &'static [ApiKey] = &[ApiKey::Produce, ApiKey::Fetch];
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
        Some(outage::answer(&self.errors, min, max, context.window, context.rng))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chaos::config::parse;
    use serde_json::json;

    fn broken(config: Value) -> Result<BrokenBroker, ConfigError> {
        parse(config.as_object().unwrap().clone())
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
}
