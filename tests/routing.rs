//! Port-per-broker routing in front of the real 3-node Apache Kafka cluster `make test` starts:
//! every broker gets its own kaos port, that port leads to that broker and no other, and a broker
//! kaos has never seen gets its port the moment it first appears in a response.

mod common;

use std::time::Duration;

use common::{KafkaCluster, Kaos, RawKafka};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{ApiKey, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::Decodable;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::Compression;

/// A broker as Metadata lists it: (node id, host, port).
type Listed = (i32, String, i32);

/// Metadata for `topic` through `address`: the brokers, and each (partition, leader).
fn metadata(address: &str, topic: &str) -> (Vec<Listed>, Vec<(i32, i32)>) {
    let request = MetadataRequest::default().with_topics(Some(vec![
        MetadataRequestTopic::default().with_name(Some(TopicName(StrBytes::from_string(topic.to_owned())))),
    ]));
    let response: MetadataResponse = RawKafka::connect(address).call(ApiKey::Metadata, 12, &request);
    let mut brokers: Vec<_> =
        response.brokers.iter().map(|b| (b.node_id.0, b.host.to_string(), b.port)).collect();
    brokers.sort();
    let leaders =
        response.topics.iter().flat_map(|t| t.partitions.iter().map(|p| (p.partition_index, p.leader_id.0)));
    (brokers, leaders.collect())
}

/// Produces one record to `partition` of `topic` through `address`: the partition's error code
/// (0, or 6 NOT_LEADER_OR_FOLLOWER from a broker that does not lead it).
fn produce_one(address: &str, topic: &str, partition: i32) -> i16 {
    let mut client = RawKafka::connect(address);
    let frame = kaos_testkit::Produce::new(9)
        .correlation_id(1)
        .client_id("routing")
        .acks(1)
        .timeout_ms(5000)
        .topic(
            kaos_testkit::Topic::new(topic, [0; 16])
                .partition(partition, kaos_testkit::batch(Compression::None, &[b"routed"], -1, -1)),
        )
        .frame();
    client.send_frame(&frame);
    let mut body = client.read_frame().expect("a Produce response");
    kafka_protocol::messages::ResponseHeader::decode(&mut body, 1).unwrap();
    let response = kafka_protocol::messages::ProduceResponse::decode(&mut body, 9).unwrap();
    response.responses[0].partition_responses[0].error_code
}

/// Each kaos broker port reaches its own broker: Produce to a partition through the port of its
/// leader is written, through any other broker's port it is refused as not the leader.
fn assert_ports_lead_to_their_brokers(kaos: &Kaos, topic: &str, nodes: &[i32]) {
    let (_, leaders) = metadata(&kaos.bootstrap(), topic);
    for &(partition, leader) in &leaders {
        for &node in nodes {
            let through = format!("127.0.0.1:{}", kaos.broker_port(node));
            let expected = if node == leader { 0 } else { 6 };
            assert_eq!(
                produce_one(&through, topic, partition),
                expected,
                "partition {partition} (leader {leader}) through broker {node}'s port"
            );
        }
    }
}

#[test]
fn every_broker_gets_its_own_port_including_one_that_joins_later() {
    let cluster = KafkaCluster::shared();
    let topic = cluster.unique_topic("routing");
    cluster.create_topic(&topic, 3, 3);
    let stopped = cluster.stop_node(3);
    let kaos = Kaos::start(&cluster.address(1), &[]);
    let kaos_port = |node: i32| i32::from(kaos.broker_port(node));
    let listed =
        |nodes: &[i32]| nodes.iter().map(|&n| (n, "127.0.0.1".to_owned(), kaos_port(n))).collect::<Vec<_>>();

    let (brokers, _) = metadata(&kaos.bootstrap(), &topic);
    assert_eq!(brokers, listed(&[1, 2]), "the running brokers, at kaos ports only");
    assert_ports_lead_to_their_brokers(&kaos, &topic, &[1, 2]);

    // Broker 3 joins a cluster kaos has only seen without it: the next Metadata names it, and its
    // kaos port is open before the client even reads that response.
    stopped.start();
    common::wait_until("Metadata through kaos to list broker 3", Duration::from_secs(30), || {
        metadata(&kaos.bootstrap(), &topic).0 == listed(&[1, 2, 3])
    });
    assert_ports_lead_to_their_brokers(&kaos, &topic, &[1, 2, 3]);
    assert!(kaos.log().lines().any(|line| line.contains("broker 3 is served on")), "{}", kaos.log());
}
