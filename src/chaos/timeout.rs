//! timeout: a black hole. Once a matching request arms it, nothing is relayed either way and
//! both sockets stay open, as behind a network partition: the client's requests time out
//! (`request.timeout.ms`) and it must give up on the connection itself. With `timeoutMs` not 0
//! kaos closes the connection that long after arming.

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
pub struct Timeout {
    /// How long after arming the connection is closed, in milliseconds; 0: never (the client
    /// must give up on it).
    timeout_ms: u64,
    #[serde(flatten)]
    trigger: Trigger,
}

impl Configurable for Timeout {
    fn defaults() -> Value {
        Trigger::defaults(json!({"timeoutMs": 0}))
    }
}

impl FaultConfig for Timeout {
    const NAME: &'static str = "timeout";
    const SUMMARY: &'static str = "A black hole: relays nothing either way and keeps the sockets open; closes after timeoutMs unless 0.";
    const API_KEYS: &'static [ApiKey] = &[];
    const DIRECTIONS: &'static [Direction] = &[Direction::Request];
}

impl Fault for Timeout {
    fn apply(&self, context: &mut FaultContext<'_>) -> Option<Effect> {
        let link = LinkFault::BlackHole { close_after: (self.timeout_ms > 0).then(|| Duration::from_millis(self.timeout_ms)) };
        self.trigger.arms(&context.connection).then_some(Effect::Network(link))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chaos::network::tests::armed_after;

    #[test]
    fn armed_by_a_matching_request() {
        let (first, later) = armed_after::<Timeout>(json!({"timeoutMs": 250}), 3);
        assert_eq!(first, Some(Effect::Network(LinkFault::BlackHole { close_after: Some(Duration::from_millis(250)) })));
        assert_eq!(later, (None, true), "only from the connection's fourth request");
        let error = crate::chaos::config::parse::<Timeout>(json!({"timeoutMs": "soon"}).as_object().unwrap().clone()).unwrap_err();
        assert_eq!(error.field, "config.timeoutMs");
    }
}
