//! duplicate-resource: an affected Produce request reaches the broker twice, as a network retry
//! would. The copy carries a correlation id of kaos's own and its response is swallowed, so the
//! client sees one response. A non-idempotent producer writes every record twice; an idempotent
//! one is protected by the broker's sequence check.

use kafka_protocol::messages::ApiKey;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::config::Configurable;
use super::{Effect, Fault, FaultConfig, FaultContext};

/// No fields of its own: the shared ones (topics, rate, schedule) say which requests.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DuplicateResource {}

impl Configurable for DuplicateResource {
    fn defaults() -> Value {
        json!({})
    }
}

impl FaultConfig for DuplicateResource {
    const NAME: &'static str = "duplicate-resource";
    const SUMMARY: &'static str = "Delivers Produce requests to the broker twice, as a network retry would.";
    const API_KEYS: &'static [ApiKey] = &[ApiKey::Produce];
}

impl Fault for DuplicateResource {
    fn apply(&self, _context: &mut FaultContext<'_>) -> Option<Effect> {
        Some(Effect::Duplicate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chaos::TopicFilter;
    use crate::chaos::config::parse;

    #[test]
    fn every_affected_request_is_duplicated_and_nothing_else_is_configurable() {
        let fault: DuplicateResource = parse(Default::default()).unwrap();
        let (mut rng, topics) = (fastrand::Rng::with_seed(1), TopicFilter::default());
        let names = |_: &[u8; 16]| None;
        let mut context = FaultContext::new(&mut rng, &topics, &names);
        assert_eq!(fault.apply(&mut context), Some(Effect::Duplicate));
        assert!(!fault.needs_request(), "a duplicate is the request as it came");
        let unknown = json!({"copies": 2});
        let error = parse::<DuplicateResource>(unknown.as_object().unwrap().clone()).unwrap_err();
        assert_eq!(error.field, "config.copies");
    }
}
