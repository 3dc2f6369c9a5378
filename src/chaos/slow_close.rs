//! slow-close: when either side of an armed connection closes, kaos closes the other `delayMs`
//! later and keeps relaying until then, as Toxiproxy's slow_close toxic: a client that waits for
//! the close sees it late.

use std::time::Duration;

use kafka_protocol::messages::ApiKey;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::config::{Configurable};
use super::network::{LinkFault, Trigger};
use super::{Direction, Effect, Fault, FaultConfig, FaultContext};

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SlowClose {
    /// How long the close is delayed, in milliseconds.
    delay_ms: u64,
    #[serde(flatten)]
    trigger: Trigger,
}

impl Configurable for SlowClose {
    fn defaults() -> Value {
        Trigger::defaults(json!({"delayMs": 1000}))
    }
}

impl FaultConfig for SlowClose {
    const NAME: &'static str = "slow-close";
    const SUMMARY: &'static str = "Delays the close of the connection by delayMs once either side closes.";
    const API_KEYS: &'static [ApiKey] = &[];
    const DIRECTIONS: &'static [Direction] = &[Direction::Request];
}

impl Fault for SlowClose {
    fn apply(&self, context: &mut FaultContext<'_>) -> Option<Effect> {
        let link = LinkFault::SlowClose { delay: Duration::from_millis(self.delay_ms) };
        self.trigger.arms(&context.connection).then_some(Effect::Network(link))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chaos::network::tests::armed_after;

    #[test]
    fn armed_by_a_matching_request() {
        let (first, later) = armed_after::<SlowClose>(json!({"delayMs": 300}), 3);
        assert_eq!(first, Some(Effect::Network(LinkFault::SlowClose { delay: Duration::from_millis(300) })));
        assert_eq!(later, (None, true), "only from the connection's fourth request");
        let error = crate::chaos::config::parse::<SlowClose>(json!({"delayMs": -5}).as_object().unwrap().clone()).unwrap_err();
        assert_eq!(error.field, "config.delayMs");
    }
}
