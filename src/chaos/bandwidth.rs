//! bandwidth: the connection's requests (direction REQUEST) or responses (RESPONSE) are relayed
//! at most `rateKbps` kilobytes per second, as Toxiproxy's bandwidth toxic: large Produce
//! requests or Fetch answers take their time, small ones barely notice.

use kafka_protocol::messages::ApiKey;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::config::{ConfigError, Configurable};
use super::network::{LinkFault, Trigger};
use super::{Direction, Effect, Fault, FaultConfig, FaultContext};

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Bandwidth {
    /// The most kilobytes (1000 bytes) per second relayed in the rule's direction.
    rate_kbps: u64,
    #[serde(flatten)]
    trigger: Trigger,
}

impl Configurable for Bandwidth {
    fn defaults() -> Value {
        Trigger::defaults(json!({}))
    }

    fn validate(&mut self) -> Result<(), ConfigError> {
        if self.rate_kbps == 0 {
            return Err(ConfigError::new("config.rateKbps", "must be at least 1 (use timeout to stop the traffic)"));
        }
        Ok(())
    }
}

impl FaultConfig for Bandwidth {
    const NAME: &'static str = "bandwidth";
    const SUMMARY: &'static str = "Caps the relay rate of requests (REQUEST) or responses (RESPONSE) at rateKbps KB/s.";
    const API_KEYS: &'static [ApiKey] = &[];
    const DIRECTIONS: &'static [Direction] = &[Direction::Request, Direction::Response];
}

impl Fault for Bandwidth {
    fn apply(&self, context: &mut FaultContext<'_>) -> Option<Effect> {
        let link = LinkFault::Bandwidth { bytes_per_second: self.rate_kbps.saturating_mul(1000) };
        self.trigger.arms(&context.connection).then_some(Effect::Network(link))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chaos::network::tests::armed_after;

    #[test]
    fn armed_by_a_matching_request() {
        let (first, later) = armed_after::<Bandwidth>(json!({"rateKbps": 64}), 3);
        assert_eq!(first, Some(Effect::Network(LinkFault::Bandwidth { bytes_per_second: 64_000 })));
        assert_eq!(later, (None, true), "only from the connection's fourth request");
        let error = crate::chaos::config::parse::<Bandwidth>(json!({"rateKbps": 0}).as_object().unwrap().clone()).unwrap_err();
        assert_eq!(error.field, "config.rateKbps");
    }
}
