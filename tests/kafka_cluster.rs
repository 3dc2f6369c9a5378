//! The shared Apache Kafka cluster of `make test` (tests/kafka/cluster.py), reached directly with
//! librdkafka: three brokers, a topic replicated on all of them, records that survive a node
//! going down, and the node coming back.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{KafkaCluster, assert_exactly, consume, produce, producer};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::Producer;

/// A partition as Metadata describes it: (leader, replicas, ISR).
type Partition = (i32, Vec<i32>, Vec<i32>);

/// The broker ids, and each partition of `topic`, as the cluster says.
fn metadata(bootstrap: &str, topic: &str) -> (Vec<i32>, Vec<Partition>) {
    let client: BaseConsumer =
        ClientConfig::new().set("bootstrap.servers", bootstrap).create().expect("a client");
    let metadata = client.fetch_metadata(Some(topic), Duration::from_secs(10)).expect("metadata");
    let mut brokers: Vec<i32> = metadata.brokers().iter().map(|b| b.id()).collect();
    brokers.sort();
    let partitions = metadata.topics()[0]
        .partitions()
        .iter()
        .map(|p| (p.leader(), p.replicas().to_vec(), p.isr().to_vec()))
        .collect();
    (brokers, partitions)
}

#[test]
fn records_survive_a_node_going_down_and_it_comes_back() {
    let cluster = KafkaCluster::shared();
    let bootstrap = cluster.bootstrap();
    assert_eq!(cluster.node_ids(), [1, 2, 3]);
    let topic = cluster.unique_topic("smoke");
    cluster.create_topic(&topic, 3, 3);

    let (brokers, partitions) = metadata(bootstrap, &topic);
    assert_eq!(brokers, [1, 2, 3]);
    assert_eq!(partitions.len(), 3);
    for (leader, replicas, isr) in &partitions {
        assert_eq!(replicas.len(), 3, "replicated on every node");
        assert_eq!(isr.len(), 3, "every replica in sync");
        assert!(replicas.contains(leader));
    }
    let described =
        cluster.tool_ok("kafka-topics", &["--bootstrap-server", bootstrap, "--describe", "--topic", &topic]);
    assert!(
        described.contains("PartitionCount: 3") && described.contains("ReplicationFactor: 3"),
        "{described}"
    );

    let idempotent = [("enable.idempotence", "true"), ("acks", "all")];
    let before = producer(bootstrap, &idempotent);
    produce(&before, &topic, "before", 100);
    assert_eq!(before.context().ok.load(Ordering::Relaxed), 100);
    assert_exactly(&consume(bootstrap, &topic, &cluster.unique_topic("group"), 100), "before", 100);

    // Stop the leader of partition 0: its partitions move, and acks=all still succeeds.
    let leader = partitions[0].0;
    let stopped = cluster.stop_node(leader);
    let (brokers, partitions) = metadata(bootstrap, &topic);
    assert_eq!(brokers.len(), 2, "{brokers:?}");
    assert!(!brokers.contains(&leader));
    assert!(partitions.iter().all(|(l, _, _)| *l != leader), "{partitions:?}");
    let during = producer(bootstrap, &idempotent);
    produce(&during, &topic, "during", 100);
    let deliveries = during.context();
    assert_eq!(deliveries.failed.load(Ordering::Relaxed), 0, "{:?}", deliveries.errors.lock().unwrap());
    assert_eq!(deliveries.ok.load(Ordering::Relaxed), 100);

    stopped.start();
    let (brokers, partitions) = metadata(bootstrap, &topic);
    assert_eq!(brokers, [1, 2, 3]);
    assert!(partitions.iter().all(|(_, _, isr)| isr.len() == 3), "{partitions:?}");
    assert!(cluster.log(leader).contains("Kafka Server started"));

    let mut values = consume(bootstrap, &topic, &cluster.unique_topic("group"), 200);
    let during: Vec<String> = values.iter().filter(|v| v.starts_with("during-")).cloned().collect();
    values.retain(|v| v.starts_with("before-"));
    assert_exactly(&values, "before", 100);
    assert_exactly(&during, "during", 100);
}
