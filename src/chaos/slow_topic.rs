//! slow-topic: as slow-broker, but only for requests that touch a topic the rule names
//! (`topicPatterns` or `topics`, one of which the rule must have); other topics on the same
//! connection are not slowed unless they queue behind a slowed request.

use kafka_protocol::messages::ApiKey;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::config::{ConfigError, Configurable};
use super::slow_broker::SlowBroker;
use super::{Direction, Effect, Fault, FaultConfig, FaultContext};

#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(transparent)]
pub struct SlowTopic(SlowBroker);

impl Configurable for SlowTopic {
    fn defaults() -> Value {
        SlowBroker::defaults()
    }

    fn validate(&mut self) -> Result<(), ConfigError> {
        self.0.validate()
    }
}

impl FaultConfig for SlowTopic {
    const NAME: &'static str = "slow-topic";
    const SUMMARY: &'static str =
        "Holds requests for the named topics, or their responses, for a random latency.";
    const API_KEYS: &'static [ApiKey] = &[ApiKey::Produce, ApiKey::Fetch];
    const DIRECTIONS: &'static [Direction] = &[Direction::Request, Direction::Response];
    const REQUIRES_TOPICS: bool = true;
}

impl Fault for SlowTopic {
    fn apply(&self, context: &mut FaultContext<'_>) -> Option<Effect> {
        self.0.apply(context)
    }
}

#[cfg(test)]
mod tests {
    use crate::chaos::Rule;

    fn post(config: &str, api: &str) -> Result<Rule, crate::chaos::ConfigError> {
        let body = format!(r#"{{"config":{config},"apiKeys":"{api}","direction":"RESPONSE"}}"#);
        Rule::from_request("t", "u", "slow-topic", body.as_bytes())
    }

    #[test]
    fn needs_topics_and_acts_on_produce_and_fetch_only() {
        assert_eq!(post("{}", "FETCH").unwrap_err().field, "config.topicPatterns");
        let rule =
            post(r#"{"topicPatterns":["orders-.*"],"minLatencyToAddInMilliseconds":5}"#, "FETCH").unwrap();
        assert!(rule.common.topics.matches("orders-eu") && !rule.common.topics.matches("payments"));
        assert!(rule.needs_body(), "the request's topics decide");
        assert_eq!(rule.to_json()["config"]["maxLatencyToAddInMilliseconds"], 5);
        assert_eq!(post(r#"{"topics":["t"]}"#, "METADATA").unwrap_err().field, "apiKeys");
    }
}
