//! wrong-leader: Metadata answers name another broker as the leader of the partitions of the
//! rule's topics (every topic without `topics`/`topicPatterns`). The client sends its requests
//! there, gets NOT_LEADER_OR_FOLLOWER from the real broker, refreshes its metadata and comes
//! back: with KIP-951 clients at once, from the error's leader hint.

use kafka_protocol::messages::ApiKey;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::alter::Response;
use super::config::{ConfigError, Configurable};
use super::{Direction, Effect, Fault, FaultConfig, FaultContext};

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WrongLeader {}

impl Configurable for WrongLeader {
    fn defaults() -> Value {
        json!({})
    }

    fn validate(&mut self) -> Result<(), ConfigError> {
        Ok(())
    }
}

impl FaultConfig for WrongLeader {
    const NAME: &'static str = "wrong-leader";
    const SUMMARY: &'static str =
        "Metadata answers name another broker as partition leader: clients get NOT_LEADER_OR_FOLLOWER there and come back.";
    const API_KEYS: &'static [ApiKey] = &[ApiKey::Metadata];
    const DIRECTIONS: &'static [Direction] = &[Direction::Response];
}

impl Fault for WrongLeader {
    /// It acts on answers only.
    fn apply(&self, _context: &mut FaultContext<'_>) -> Option<Effect> {
        None
    }

    fn alters_responses(&self, _api: ApiKey) -> bool {
        true
    }

    /// The next broker of the answer after the real leader, by node id: another broker that
    /// exists, and the same one for every partition the real leader leads.
    fn alter(&self, response: &mut Response<'_>, context: &mut FaultContext<'_>) -> Option<Effect> {
        let topics = context.topics;
        let Response::Metadata(metadata) = response else { return None };
        let mut brokers: Vec<i32> = metadata.brokers.iter().map(|b| b.node_id.0).collect();
        brokers.sort_unstable();
        let mut moved = 0;
        for topic in &mut metadata.topics {
            let name = topic.name.as_ref().map(|name| name.as_str()).unwrap_or_default();
            if !topics.is_empty() && !topics.matches(name) {
                continue;
            }
            for partition in &mut topic.partitions {
                let leader = partition.leader_id.0;
                let Some(at) = brokers.iter().position(|&id| id == leader) else { continue };
                let other = brokers[(at + 1) % brokers.len()];
                if other != leader {
                    partition.leader_id.0 = other;
                    moved += 1;
                }
            }
        }
        (moved > 0).then_some(Effect::Altered(moved))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::metadata_response::{
        MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
    };
    use kafka_protocol::messages::{BrokerId, MetadataResponse, TopicName};
    use crate::chaos::TopicFilter;
    use kafka_protocol::protocol::StrBytes;

    fn topic(name: &'static str, leaders: &[i32]) -> MetadataResponseTopic {
        let partitions = leaders
            .iter()
            .enumerate()
            .map(|(i, &leader)| {
                MetadataResponsePartition::default().with_partition_index(i as i32).with_leader_id(BrokerId(leader))
            })
            .collect();
        MetadataResponseTopic::default()
            .with_name(Some(TopicName(StrBytes::from_static_str(name))))
            .with_partitions(partitions)
    }

    fn leaders(metadata: &MetadataResponse, at: usize) -> Vec<i32> {
        metadata.topics[at].partitions.iter().map(|p| p.leader_id.0).collect()
    }

    #[test]
    fn leaders_of_the_rules_topics_move_to_another_broker() {
        let brokers = [3, 1, 2].map(|id| MetadataResponseBroker::default().with_node_id(BrokerId(id))).to_vec();
        let mut metadata = MetadataResponse::default()
            .with_brokers(brokers)
            .with_topics(vec![topic("orders", &[1, 2, 3, -1]), topic("audit", &[1])]);
        let only_orders = TopicFilter::new(vec!["orders".into()], &[]).unwrap();
        let mut rng = fastrand::Rng::with_seed(1);
        let mut context = FaultContext::new(&mut rng, &only_orders, &|_: &[u8; 16]| None);
        let effect = WrongLeader {}.alter(&mut Response::Metadata(&mut metadata), &mut context);
        assert_eq!(effect, Some(Effect::Altered(3)));
        assert_eq!(leaders(&metadata, 0), vec![2, 3, 1, -1], "leaderless partitions stay leaderless");
        assert_eq!(leaders(&metadata, 1), vec![1], "other topics keep their leader");

        let mut alone = MetadataResponse::default()
            .with_brokers(vec![MetadataResponseBroker::default().with_node_id(BrokerId(1))])
            .with_topics(vec![topic("orders", &[1])]);
        let every_topic = TopicFilter::default();
        let mut context = FaultContext::new(&mut rng, &every_topic, &|_: &[u8; 16]| None);
        let effect = WrongLeader {}.alter(&mut Response::Metadata(&mut alone), &mut context);
        assert_eq!(effect, None, "one broker: nobody else to name");
    }
}
