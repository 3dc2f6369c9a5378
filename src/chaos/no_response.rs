//! no-response: a request that is never answered. With direction REQUEST the broker never sees
//! it; with RESPONSE the broker applies it and kaos swallows the answer, the ambiguous outcome
//! of a write whose acknowledgement was lost. Either way the client waits out its
//! `request.timeout.ms`, and every later response on that connection waits behind the missing
//! one, as behind a hung broker. `closeAfterMs` closes the connection that long after the
//! request arrived.

use std::time::Duration;

use kafka_protocol::messages::ApiKey;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::config::{ConfigError, Configurable};
use super::{Direction, Effect, Fault, FaultConfig, FaultContext};

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NoResponse {
    /// Close the connection this long after the unanswered request arrived, in milliseconds;
    /// absent: keep it open until the client gives up on it.
    close_after_ms: Option<u64>,
}

impl Configurable for NoResponse {
    fn defaults() -> Value {
        json!({})
    }

    fn validate(&mut self) -> Result<(), ConfigError> {
        Ok(())
    }
}

impl FaultConfig for NoResponse {
    const NAME: &'static str = "no-response";
    const SUMMARY: &'static str =
        "Never answers: the request is dropped (REQUEST) or applied and its answer swallowed (RESPONSE); later answers wait behind it.";
    const API_KEYS: &'static [ApiKey] = &[];
    const DIRECTIONS: &'static [Direction] = &[Direction::Request, Direction::Response];
}

impl Fault for NoResponse {
    fn apply(&self, _context: &mut FaultContext<'_>) -> Option<Effect> {
        Some(Effect::NoResponse { close_after: self.close_after_ms.map(Duration::from_millis) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chaos::TopicFilter;
    use crate::chaos::config::parse;

    #[test]
    fn it_never_answers_and_may_close() {
        let topics = TopicFilter::default();
        let mut rng = fastrand::Rng::with_seed(1);
        for (config, close_after) in [(json!({}), None), (json!({"closeAfterMs": 250}), Some(Duration::from_millis(250)))] {
            let fault: NoResponse = parse(config.as_object().unwrap().clone()).unwrap();
            let mut context = FaultContext::new(&mut rng, &topics, &|_: &[u8; 16]| None);
            assert_eq!(fault.apply(&mut context), Some(Effect::NoResponse { close_after }));
        }
        let refused = parse::<NoResponse>(json!({"closeAfterMs": -1}).as_object().unwrap().clone());
        assert!(refused.is_err());
    }
}
