//! throttle: answers carry `throttleTimeMs`, as from a broker enforcing a quota, and kaos holds
//! the connection's next requests that long, as the broker mutes a throttled channel (KIP-219).
//! Clients report the throttle (librdkafka's statistics and throttle callback) and slow down.

use std::time::Duration;

use kafka_protocol::messages::ApiKey;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::alter::{Response, THROTTLED_APIS};
use super::config::{ConfigError, Configurable};
use super::{Direction, Effect, Fault, FaultConfig, FaultContext};

/// A quota longer than this is a typo, not a test.
const MAX_THROTTLE_MS: u32 = 5 * 60 * 1000;

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Throttle {
    /// The throttle time each affected answer carries, in milliseconds.
    #[schemars(range(max = 300_000))]
    throttle_time_ms: u32,
}

impl Configurable for Throttle {
    fn defaults() -> Value {
        json!({"throttleTimeMs": 1000})
    }

    fn validate(&mut self) -> Result<(), ConfigError> {
        if self.throttle_time_ms > MAX_THROTTLE_MS {
            return Err(ConfigError::new("config.throttleTimeMs", format!("at most {MAX_THROTTLE_MS} ms")));
        }
        Ok(())
    }
}

impl FaultConfig for Throttle {
    const NAME: &'static str = "throttle";
    const SUMMARY: &'static str =
        "Answers carry a throttle time and the connection's next requests wait it out, as under a broker quota.";
    const API_KEYS: &'static [ApiKey] = THROTTLED_APIS;
    const DIRECTIONS: &'static [Direction] = &[Direction::Request, Direction::Response];
}

impl Fault for Throttle {
    /// It acts on answers only.
    fn apply(&self, _context: &mut FaultContext<'_>) -> Option<Effect> {
        None
    }

    fn alters_responses(&self, _api: ApiKey) -> bool {
        true
    }

    fn alter(&self, response: &mut Response<'_>, _context: &mut FaultContext<'_>) -> Option<Effect> {
        let throttle = response.throttle_time_ms();
        let ms = (*throttle).max(self.throttle_time_ms as i32);
        *throttle = ms;
        Some(Effect::Throttled(Duration::from_millis(ms as u64)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chaos::TopicFilter;
    use crate::chaos::config::parse;

    #[test]
    fn answers_carry_the_longer_of_the_brokers_and_the_rules_throttle() {
        let fault: Throttle = parse(json!({"throttleTimeMs": 300}).as_object().unwrap().clone()).unwrap();
        let (mut rng, topics) = (fastrand::Rng::with_seed(1), TopicFilter::default());
        let mut context = FaultContext::new(&mut rng, &topics, &|_: &[u8; 16]| None);
        for (broker, expected) in [(0, 300), (900, 900)] {
            let mut throttle_time_ms = broker;
            let effect = fault.alter(&mut Response::Other { throttle_time_ms: &mut throttle_time_ms }, &mut context);
            assert_eq!((throttle_time_ms, effect), (expected, Some(Effect::Throttled(Duration::from_millis(expected as u64)))));
        }
        let refused = parse::<Throttle>(json!({"throttleTimeMs": 300_001}).as_object().unwrap().clone());
        assert_eq!(refused.unwrap_err().field, "config.throttleTimeMs");
    }
}
