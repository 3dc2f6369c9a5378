//! hide-broker: the brokers `nodeIds` disappear from Metadata answers while their kaos ports
//! keep working, as when a broker drops out of the cluster's view but is still reachable.
//! Clients stop sending it requests; partitions it leads look leaderless to them.

use kafka_protocol::messages::ApiKey;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::alter::Response;
use super::config::{ConfigError, Configurable};
use super::{Direction, Effect, Fault, FaultConfig, FaultContext};

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HideBroker {
    /// The node ids of the brokers to leave out of Metadata answers.
    node_ids: Vec<i32>,
}

impl Configurable for HideBroker {
    fn defaults() -> Value {
        json!({})
    }

    fn validate(&mut self) -> Result<(), ConfigError> {
        if self.node_ids.is_empty() {
            return Err(ConfigError::new("config.nodeIds", "name at least one broker to hide"));
        }
        Ok(())
    }
}

impl FaultConfig for HideBroker {
    const NAME: &'static str = "hide-broker";
    const SUMMARY: &'static str = "Leaves brokers out of Metadata answers while their ports keep working.";
    const API_KEYS: &'static [ApiKey] = &[ApiKey::Metadata];
    const DIRECTIONS: &'static [Direction] = &[Direction::Response];
}

impl Fault for HideBroker {
    /// It acts on answers only.
    fn apply(&self, _context: &mut FaultContext<'_>) -> Option<Effect> {
        None
    }

    fn alters_responses(&self, _api: ApiKey) -> bool {
        true
    }

    fn alter(&self, response: &mut Response<'_>, _context: &mut FaultContext<'_>) -> Option<Effect> {
        let Response::Metadata(metadata) = response else { return None };
        let before = metadata.brokers.len();
        metadata.brokers.retain(|broker| !self.node_ids.contains(&broker.node_id.0));
        let hidden = (before - metadata.brokers.len()) as u64;
        (hidden > 0).then_some(Effect::Altered(hidden))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chaos::config::parse;
    use kafka_protocol::messages::metadata_response::MetadataResponseBroker;
    use kafka_protocol::messages::{BrokerId, MetadataResponse};

    #[test]
    fn hides_only_the_named_brokers() {
        let fault: HideBroker = parse(json!({"nodeIds": [2, 7]}).as_object().unwrap().clone()).unwrap();
        let brokers = (1..=3).map(|id| MetadataResponseBroker::default().with_node_id(BrokerId(id))).collect();
        let mut metadata = MetadataResponse::default().with_brokers(brokers);
        let (mut rng, topics) = (fastrand::Rng::with_seed(1), crate::chaos::TopicFilter::default());
        let mut context = FaultContext::new(&mut rng, &topics, &|_: &[u8; 16]| None);
        let effect = fault.alter(&mut Response::Metadata(&mut metadata), &mut context);
        assert_eq!(effect, Some(Effect::Altered(1)));
        let left: Vec<i32> = metadata.brokers.iter().map(|b| b.node_id.0).collect();
        assert_eq!(left, vec![1, 3]);
        assert_eq!(fault.alter(&mut Response::Metadata(&mut metadata), &mut context), None);
        let error = parse::<HideBroker>(json!({"nodeIds": []}).as_object().unwrap().clone()).unwrap_err();
        assert_eq!(error.field, "config.nodeIds");
    }
}
