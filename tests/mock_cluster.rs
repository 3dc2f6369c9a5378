//! kaos in front of librdkafka's mock cluster: three brokers on loopback whose leaders move on
//! command, and whose ApiVersions v3 answer is malformed (an array count one short, no tag
//! buffers). Clients cope with that body when they talk to the mock directly, so through kaos it
//! must pass as it came, and nothing else may change: no reconnect loop, no address leak.

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{Kaos, assert_exactly, consume, produce, producer, wait_until};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::{MockCluster, MockCoordinator};
use rdkafka::producer::Producer;

#[test]
fn clients_reach_every_mock_broker_through_kaos_while_leaders_move() {
    let mock = MockCluster::new(3).expect("a mock cluster");
    mock.create_topic("moves", 3, 3).expect("topic");
    let kaos = Kaos::start(&mock.bootstrap_servers(), &["--shards", "2"]);

    let metadata_reader: BaseConsumer =
        ClientConfig::new().set("bootstrap.servers", kaos.bootstrap()).create().expect("a client");
    let metadata =
        metadata_reader.fetch_metadata(None, Duration::from_secs(10)).expect("metadata through kaos");
    let mut brokers: Vec<_> =
        metadata.brokers().iter().map(|b| (b.id(), b.host().to_owned(), b.port())).collect();
    brokers.sort();
    let expected: Vec<_> =
        (1..=3).map(|id| (id, "127.0.0.1".to_owned(), i32::from(kaos.broker_port(id)))).collect();
    assert_eq!(brokers, expected, "every broker at its kaos port, no real address");

    let producer = producer(&kaos.bootstrap(), &[("enable.idempotence", "true"), ("acks", "all")]);
    for leader in [1, 2, 3, 1] {
        for partition in 0..3 {
            mock.partition_leader("moves", partition, Some(leader)).expect("leader moves");
        }
        produce(&producer, "moves", &format!("led-by-{leader}"), 100);
    }
    assert_eq!(producer.context().failed.load(Ordering::Relaxed), 0, "{:?}", producer.context().errors);

    let values = consume(&kaos.bootstrap(), "moves", "mock-readers", 400);
    let mut keys: Vec<String> =
        [1, 2, 3].iter().flat_map(|l| (0..100).map(move |i| format!("led-by-{l}-{i}"))).collect();
    keys.extend((0..100).map(|i| format!("led-by-1-{i}")));
    let mut got = values.clone();
    got.sort();
    keys.sort();
    assert_eq!(got, keys, "every record once, through every leader");

    let log = kaos.log();
    let said = log.lines().filter(|line| line.contains("kaos cannot rewrite this broker's response")).count();
    assert!(
        (1..=4).contains(&said),
        "the malformed ApiVersions is noted once per broker, not per connection: {said} lines\n{log}"
    );
    assert!(!log.contains("closing client: the broker sent"), "no connection was closed over it:\n{log}");
}

/// (issue 27) kaos given only the mock's first broker. That broker goes down (its listener
/// closes; the mock leaves leaders and coordinators where they are, so they move first): a
/// brand-new consumer group still bootstraps through kaos, through the brokers kaos learned, and
/// reads every record within seconds.
#[test]
fn a_new_group_reads_through_kaos_while_its_bootstrap_broker_is_down() {
    let mock = MockCluster::new(3).expect("a mock cluster");
    mock.create_topic("survivors", 3, 3).expect("topic");
    let first = mock.bootstrap_servers().split(',').next().unwrap().to_owned();
    let direct: BaseConsumer = ClientConfig::new().set("bootstrap.servers", &first).create().unwrap();
    let metadata = direct.fetch_metadata(None, Duration::from_secs(10)).expect("metadata from the mock");
    let down = metadata
        .brokers()
        .iter()
        .find(|b| format!("{}:{}", b.host(), b.port()) == first)
        .expect("the first bootstrap address is a broker")
        .id();
    let other = if down == 1 { 2 } else { 1 };
    let kaos = Kaos::start(&first, &["--shards", "2"]);
    for partition in 0..3 {
        mock.partition_leader("survivors", partition, Some(other)).expect("leader moves");
    }
    mock.coordinator(MockCoordinator::Group("survivors-readers".into()), other).expect("coordinator moves");
    let producer = producer(&kaos.bootstrap(), &[("acks", "all")]);
    produce(&producer, "survivors", "s", 100);
    assert_eq!(producer.context().failed.load(Ordering::Relaxed), 0, "{:?}", producer.context().errors);

    mock.broker_down(down).expect("broker down");
    wait_until("kaos ready without its bootstrap broker", Duration::from_secs(10), || {
        kaos.get("/ready").0 == 200
    });
    let started = Instant::now();
    let values = consume(&kaos.bootstrap(), "survivors", "survivors-readers", 100);
    let took = started.elapsed();
    assert_exactly(&values, "s", 100);
    assert!(took < Duration::from_secs(15), "a new group read through kaos in {took:?}");
    eprintln!("broker {down} (kaos's only bootstrap address) down: a new group read 100 records in {took:?}");
}
