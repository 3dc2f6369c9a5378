//! slow-broker: affected requests wait a random latency before they are forwarded (direction
//! REQUEST) or before their response is returned (RESPONSE). With `latencyModel` network (the
//! default) each waits from its own arrival, so pipelined requests overlap as on a slow network;
//! with processing, one at a time, as a broker that works through a connection's requests in
//! turn. Either way responses keep request order, and other connections are not touched.

use kafka_protocol::messages::ApiKey;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::config::{ConfigError, Configurable, pick_latency, settle_latency};
use super::{Direction, Effect, Fault, FaultConfig, FaultContext, Latency, LatencyModel};

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SlowBroker {
    /// Least latency added to each affected request, in milliseconds.
    min_latency_to_add_in_milliseconds: u64,
    /// Most latency added to each affected request, in milliseconds (default: the minimum).
    max_latency_to_add_in_milliseconds: Option<u64>,
    /// network: each request (or answer) waits from its own arrival, pipelined ones overlapping;
    /// processing: each waits from when the one held before it on the connection was let go.
    #[serde(default)]
    latency_model: LatencyModel,
}

impl Configurable for SlowBroker {
    fn defaults() -> Value {
        json!({"minLatencyToAddInMilliseconds": 0, "latencyModel": "network"})
    }

    fn validate(&mut self) -> Result<(), ConfigError> {
        settle_latency(self.min_latency_to_add_in_milliseconds, &mut self.max_latency_to_add_in_milliseconds)
    }
}

impl FaultConfig for SlowBroker {
    const NAME: &'static str = "slow-broker";
    const SUMMARY: &'static str = "Holds requests, or their responses, for a random latency.";
    const API_KEYS: &'static [ApiKey] = &[];
    const DIRECTIONS: &'static [Direction] = &[Direction::Request, Direction::Response];
}

impl Fault for SlowBroker {
    fn apply(&self, context: &mut FaultContext<'_>) -> Option<Effect> {
        let delay = pick_latency(
            self.min_latency_to_add_in_milliseconds,
            self.max_latency_to_add_in_milliseconds,
            context.rng,
        );
        Some(Effect::Delay(Latency { delay, model: self.latency_model }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chaos::TopicFilter;
    use crate::chaos::config::parse;

    #[test]
    fn delays_stay_in_their_range() {
        let config = json!({"minLatencyToAddInMilliseconds": 5, "maxLatencyToAddInMilliseconds": 9});
        let fault: SlowBroker = parse(config.as_object().unwrap().clone()).unwrap();
        let mut rng = fastrand::Rng::with_seed(2);
        let topics = TopicFilter::default();
        let names = |_: &[u8; 16]| None;
        for _ in 0..100 {
            let mut context =
                FaultContext::new(&mut rng, &topics, &names);
            let Some(Effect::Delay(Latency { delay, model })) = fault.apply(&mut context) else { panic!("a delay") };
            assert_eq!(model, LatencyModel::Network, "the default");
            assert!((5..=9).contains(&delay.as_millis()), "{delay:?}");
        }
        let upside_down = json!({"minLatencyToAddInMilliseconds": 9, "maxLatencyToAddInMilliseconds": 5});
        let error = parse::<SlowBroker>(upside_down.as_object().unwrap().clone()).unwrap_err();
        assert_eq!(error.field, "config.minLatencyToAddInMilliseconds");
    }
}
