//! reset-peer: the connection is reset (an RST to the client, the broker connection closed)
//! `timeoutMs` after a matching request arms it, as a broker host that crashes or a firewall
//! that drops the flow: the client sees "connection reset by peer" with requests in flight, and
//! does not know which of them the broker applied.

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
pub struct ResetPeer {
    /// How long after arming the connection is reset, in milliseconds (0: at once).
    timeout_ms: u64,
    #[serde(flatten)]
    trigger: Trigger,
}

impl Configurable for ResetPeer {
    fn defaults() -> Value {
        Trigger::defaults(json!({"timeoutMs": 0}))
    }
}

impl FaultConfig for ResetPeer {
    const NAME: &'static str = "reset-peer";
    const SUMMARY: &'static str = "Resets the connection (RST) timeoutMs after a matching request arms it.";
    const API_KEYS: &'static [ApiKey] = &[];
    const DIRECTIONS: &'static [Direction] = &[Direction::Request];
}

impl Fault for ResetPeer {
    fn apply(&self, context: &mut FaultContext<'_>) -> Option<Effect> {
        let link = LinkFault::Reset { after: Duration::from_millis(self.timeout_ms) };
        self.trigger.arms(&context.connection).then_some(Effect::Network(link))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chaos::network::tests::armed_after;

    #[test]
    fn armed_by_a_matching_request() {
        let (first, later) = armed_after::<ResetPeer>(json!({"timeoutMs": 250}), 3);
        assert_eq!(first, Some(Effect::Network(LinkFault::Reset { after: Duration::from_millis(250) })));
        assert_eq!(later, (None, true), "only from the connection's fourth request");
        let error = crate::chaos::config::parse::<ResetPeer>(json!({"timeoutMs": -1}).as_object().unwrap().clone()).unwrap_err();
        assert_eq!(error.field, "config.timeoutMs");
    }
}
