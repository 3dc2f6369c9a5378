//! Metadata that lies (issue 12 §6) against the shared Apache Kafka cluster: a hidden broker
//! leaves the clients' view while its port keeps working; a wrong leader sends a producer to a
//! broker that answers NOT_LEADER_OR_FOLLOWER, and the producer finds its way back.

mod common;

use common::{KafkaCluster, Kaos, RawKafka, assert_exactly, consume, produce, producer};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, MetadataRequest, MetadataResponse,
};

fn metadata(address: &str) -> MetadataResponse {
    RawKafka::connect(address).call(ApiKey::Metadata, 12, &MetadataRequest::default().with_topics(None))
}

fn leader_of(metadata: &MetadataResponse, topic: &str) -> i32 {
    let topic = metadata.topics.iter().find(|t| t.name.as_ref().is_some_and(|n| n.as_str() == topic));
    topic.expect("the topic is listed").partitions[0].leader_id.0
}

#[test]
fn a_hidden_broker_leaves_metadata_while_its_port_keeps_working() {
    let cluster = KafkaCluster::shared();
    let kaos = Kaos::start(cluster.bootstrap(), &[]);
    kaos.add_rule("hide-broker", r#"{"config":{"nodeIds":[2]},"direction":"RESPONSE","apiKeys":"METADATA"}"#);
    let listed: Vec<i32> = metadata(&kaos.bootstrap()).brokers.iter().map(|b| b.node_id.0).collect();
    assert_eq!(listed, vec![1, 3], "broker 2 is hidden");
    let mut hidden = RawKafka::connect(&format!("127.0.0.1:{}", kaos.broker_port(2)));
    let versions: ApiVersionsResponse = hidden.call(ApiKey::ApiVersions, 2, &ApiVersionsRequest::default());
    assert_eq!(versions.error_code, 0, "its port still leads to broker 2");
    assert!(kaos.metric("kaos_chaos_requests_affected_total", "hide-broker") >= 1.0);

    kaos.delete_rule("hide-broker", "METADATA", "RESPONSE");
    let listed: Vec<i32> = metadata(&kaos.bootstrap()).brokers.iter().map(|b| b.node_id.0).collect();
    assert_eq!(listed, vec![1, 2, 3], "back once the rule is gone");
}

#[test]
fn a_producer_sent_to_a_wrong_leader_finds_its_way_back() {
    let cluster = KafkaCluster::shared();
    let kaos = Kaos::start(cluster.bootstrap(), &[]);
    let topic = cluster.unique_topic("wrong-leader");
    cluster.create_topic(&topic, 1, 3);
    let first_node = cluster.bootstrap().split(',').next().expect("a node").to_owned();
    let real = leader_of(&metadata(&first_node), &topic);
    let rule =
        format!(r#"{{"config":{{"topics":["{topic}"]}},"direction":"RESPONSE","apiKeys":"METADATA"}}"#);
    kaos.add_rule("wrong-leader", &rule);
    let told = leader_of(&metadata(&kaos.bootstrap()), &topic);
    assert_ne!(told, real, "kaos names another leader");
    assert!((1..=3).contains(&told), "one that exists");
    let mut wrong = RawKafka::connect(&format!("127.0.0.1:{}", kaos.broker_port(told)));
    assert_eq!(common::produce_one(&mut wrong, &topic), 6, "NOT_LEADER_OR_FOLLOWER from the broker named");

    // NOT_LEADER_OR_FOLLOWER from the broker it was sent to; then the real leader.
    produce(&producer(&kaos.bootstrap(), &[("acks", "all")]), &topic, &topic, 20);
    let values = consume(cluster.bootstrap(), &topic, &format!("{topic}-check"), 20);
    assert_exactly(&values, &topic, 20);
    assert!(kaos.metric("kaos_chaos_requests_affected_total", "wrong-leader") >= 1.0);
}
