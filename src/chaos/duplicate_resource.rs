//! duplicate-resource: an affected Produce request reaches the broker twice, as a network retry
//! would. The copy carries a correlation id of kaos's own and its response is swallowed, so the
//! client sees one response. A non-idempotent producer writes every record twice; an idempotent
//! one is protected by the broker's sequence check.
//!
//! On Fetch, the answer delivers each record batch of a matching topic twice: a consumer sees
//! repeats, while the broker keeps one copy (a fresh consumer reading later sees none).

use kafka_protocol::messages::ApiKey;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::config::Configurable;
use super::alter::Response;
use super::{Effect, Fault, FaultConfig, FaultContext, records};
use bytes::BytesMut;

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
    const SUMMARY: &'static str =
        "Delivers Produce requests to the broker twice, as a network retry would, or Fetch answers' records twice.";
    const API_KEYS: &'static [ApiKey] = &[ApiKey::Produce, ApiKey::Fetch];
}

impl Fault for DuplicateResource {
    fn apply(&self, _context: &mut FaultContext<'_>) -> Option<Effect> {
        Some(Effect::Duplicate)
    }

    fn alters_responses(&self, api: ApiKey) -> bool {
        api == ApiKey::Fetch
    }

    /// Each matching partition's records, twice over: the batches keep their offsets, so the
    /// copy repeats records the consumer has just been given.
    fn alter(&self, response: &mut Response<'_>, context: &mut FaultContext<'_>) -> Option<Effect> {
        let Response::Fetch(fetch) = response else { return None };
        let mut doubled = 0;
        for slot in records::fetch_records(fetch, context.topics, context.topic_names) {
            if let Some(records) = slot.as_ref().filter(|r| !r.is_empty()) {
                let mut twice = BytesMut::with_capacity(records.len() * 2);
                twice.extend_from_slice(records);
                twice.extend_from_slice(records);
                *slot = Some(twice.freeze());
                doubled += 1;
            }
        }
        (doubled > 0).then_some(Effect::Altered(doubled))
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
