//! broken-broker: an affected Produce or Fetch request is not forwarded. After a random latency
//! kaos answers it as a broker in trouble would: every partition carries one of `errors`, picked
//! at random per request, and nothing was written.

use kafka_protocol::messages::ApiKey;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::config::{ConfigError, Configurable, pick_latency, settle_latency};
use super::errors::KafkaError;
use super::{Effect, Fault, FaultConfig, FaultContext};

/// A local answer in the request's place: its errors and latency. leader-election is the same
/// fault with other default errors.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Failure {
    /// Kafka errors to answer with; each request gets one of them, picked at random.
    errors: Vec<KafkaError>,
    /// Least time before kaos answers, in milliseconds.
    min_latency_to_add_in_milliseconds: u64,
    /// Most time before kaos answers, in milliseconds (default: the minimum).
    max_latency_to_add_in_milliseconds: Option<u64>,
}

impl Failure {
    pub fn defaults(errors: &[&str]) -> Value {
        json!({"errors": errors, "minLatencyToAddInMilliseconds": 0})
    }

    pub fn validate(&mut self) -> Result<(), ConfigError> {
        if self.errors.is_empty() {
            return Err(ConfigError::new("config.errors", "needs at least one Kafka error name"));
        }
        settle_latency(self.min_latency_to_add_in_milliseconds, &mut self.max_latency_to_add_in_milliseconds)
    }

    pub fn answer(&self, rng: &mut fastrand::Rng) -> Effect {
        let error = self.errors[rng.usize(..self.errors.len())].0;
        let after = pick_latency(
            self.min_latency_to_add_in_milliseconds,
            self.max_latency_to_add_in_milliseconds,
            rng,
        );
        Effect::Fail { error, after }
    }
}

#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(transparent)]
pub struct BrokenBroker(Failure);

impl Configurable for BrokenBroker {
    fn defaults() -> Value {
        Failure::defaults(&["BROKER_NOT_AVAILABLE"])
    }

    fn validate(&mut self) -> Result<(), ConfigError> {
        self.0.validate()
    }
}

impl FaultConfig for BrokenBroker {
    const NAME: &'static str = "broken-broker";
    const SUMMARY: &'static str =
        "Answers Produce or Fetch requests with broker errors instead of forwarding them.";
    const API_KEYS: &'static [ApiKey] = &[ApiKey::Produce, ApiKey::Fetch];
}

impl Fault for BrokenBroker {
    /// The local answer lists the request's partitions.
    fn needs_request(&self) -> bool {
        true
    }

    fn apply(&self, context: &mut FaultContext<'_>) -> Option<Effect> {
        Some(self.0.answer(context.rng))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chaos::config::parse;

    #[test]
    fn answers_with_one_of_its_errors_after_its_latency() {
        let config = json!({"errors": ["NOT_ENOUGH_REPLICAS", "REQUEST_TIMED_OUT"], "minLatencyToAddInMilliseconds": 3});
        let fault: BrokenBroker = parse(config.as_object().unwrap().clone()).unwrap();
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..20 {
            let Effect::Fail { error, after } = fault.0.answer(&mut rng) else { panic!("a failure") };
            assert!(error == 19 || error == 7, "{error}");
            assert_eq!(after.as_millis(), 3);
        }
    }

    #[test]
    fn defaults_and_bad_errors() {
        let fault: BrokenBroker = parse(Default::default()).unwrap();
        assert_eq!(serde_json::to_value(&fault).unwrap()["errors"], json!(["BROKER_NOT_AVAILABLE"]));
        let bad = json!({"errors": ["BROKER_NOT_AVAILABLE", "OOPS"]});
        let error = parse::<BrokenBroker>(bad.as_object().unwrap().clone()).unwrap_err();
        assert_eq!(error.field, "config.errors[1]");
        let none = json!({"errors": []});
        assert_eq!(
            parse::<BrokenBroker>(none.as_object().unwrap().clone()).unwrap_err().field,
            "config.errors"
        );
    }
}
