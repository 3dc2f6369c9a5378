//! slicer: requests (REQUEST) or responses (RESPONSE) are delivered in pieces of `averageSize`
//! ± `sizeVariation` bytes, `delayUs` apart, as Toxiproxy's slicer toxic: frames arrive split
//! across many reads, which tests how a client or broker reassembles them.

use std::time::Duration;

use kafka_protocol::messages::ApiKey;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::config::{ConfigError, Configurable};
use super::network::{LinkFault, Trigger};
use super::{Direction, Effect, Fault, FaultConfig, FaultContext};

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Slicer {
    /// The average size of a piece, in bytes.
    average_size: usize,
    /// How much a piece's size may differ from the average, in bytes (less than averageSize).
    size_variation: usize,
    /// The pause between pieces, in microseconds.
    delay_us: u64,
    #[serde(flatten)]
    trigger: Trigger,
}

impl Configurable for Slicer {
    fn defaults() -> Value {
        Trigger::defaults(json!({"averageSize": 64, "sizeVariation": 32, "delayUs": 100}))
    }

    fn validate(&mut self) -> Result<(), ConfigError> {
        if self.average_size == 0 {
            return Err(ConfigError::new("config.averageSize", "must be at least 1 byte"));
        }
        if self.size_variation >= self.average_size {
            return Err(ConfigError::new("config.sizeVariation", "must be less than averageSize"));
        }
        Ok(())
    }
}

impl FaultConfig for Slicer {
    const NAME: &'static str = "slicer";
    const SUMMARY: &'static str = "Delivers bytes in pieces of averageSize ± sizeVariation, delayUs apart.";
    const API_KEYS: &'static [ApiKey] = &[];
    const DIRECTIONS: &'static [Direction] = &[Direction::Request, Direction::Response];
}

impl Fault for Slicer {
    fn apply(&self, context: &mut FaultContext<'_>) -> Option<Effect> {
        let link = LinkFault::Slices { average: self.average_size, variation: self.size_variation, gap: Duration::from_micros(self.delay_us) };
        self.trigger.arms(&context.connection).then_some(Effect::Network(link))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chaos::network::tests::armed_after;

    #[test]
    fn armed_by_a_matching_request() {
        let (first, later) = armed_after::<Slicer>(json!({"averageSize": 10, "sizeVariation": 3, "delayUs": 50}), 3);
        assert_eq!(first, Some(Effect::Network(LinkFault::Slices { average: 10, variation: 3, gap: Duration::from_micros(50) })));
        assert_eq!(later, (None, true), "only from the connection's fourth request");
        let error = crate::chaos::config::parse::<Slicer>(json!({"averageSize": 4, "sizeVariation": 4}).as_object().unwrap().clone()).unwrap_err();
        assert_eq!(error.field, "config.sizeVariation");
    }
}
