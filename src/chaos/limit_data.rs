//! limit-data: the connection closes once `bytes` more bytes of requests (REQUEST) or responses
//! (RESPONSE) have been relayed after arming, as Toxiproxy's limit_data toxic: a frame can be cut
//! in the middle, the way a connection dies mid-transfer.

use kafka_protocol::messages::ApiKey;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::config::{Configurable};
use super::network::{LinkFault, Trigger};
use super::{Direction, Effect, Fault, FaultConfig, FaultContext};

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LimitData {
    /// How many bytes are relayed in the rule's direction after arming before the connection
    /// closes.
    bytes: u64,
    #[serde(flatten)]
    trigger: Trigger,
}

impl Configurable for LimitData {
    fn defaults() -> Value {
        Trigger::defaults(json!({}))
    }
}

impl FaultConfig for LimitData {
    const NAME: &'static str = "limit-data";
    const SUMMARY: &'static str = "Closes the connection after bytes more bytes in the rule's direction.";
    const API_KEYS: &'static [ApiKey] = &[];
    const DIRECTIONS: &'static [Direction] = &[Direction::Request, Direction::Response];
}

impl Fault for LimitData {
    fn apply(&self, context: &mut FaultContext<'_>) -> Option<Effect> {
        let link = LinkFault::LimitData { bytes: self.bytes };
        self.trigger.arms(&context.connection).then_some(Effect::Network(link))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chaos::network::tests::armed_after;

    #[test]
    fn armed_by_a_matching_request() {
        let (first, later) = armed_after::<LimitData>(json!({"bytes": 1000}), 3);
        assert_eq!(first, Some(Effect::Network(LinkFault::LimitData { bytes: 1000 })));
        assert_eq!(later, (None, true), "only from the connection's fourth request");
        let error = crate::chaos::config::parse::<LimitData>(json!({}).as_object().unwrap().clone()).unwrap_err();
        assert_eq!(error.field, "config.bytes");
    }
}
