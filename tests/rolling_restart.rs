//! kaos outlives the brokers it bootstrapped from (issue 27), on the real 3-node Apache Kafka
//! cluster of `make test`. A test binary of its own: it stops every node in turn, for a minute
//! in all, which the tests of `kafka_through_kaos.rs` (run in parallel with each other, and
//! expecting deliveries to flow between their own node stops) must not meet.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::{
    KafkaCluster, Kaos, Observed, assert_exactly, bootstrap_once, config, consumer, produce_until_stopped,
    wait_until,
};
use rdkafka::Message;
use rdkafka::consumer::Consumer;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, Producer};

/// (issue 27) kaos started with one bootstrap address, node 1's, as many people write it. Every
/// node is stopped and started again in turn, as in a rolling restart, under an idempotent
/// producer and a consumer group through kaos: nothing lost, nothing twice, and while each node
/// is down a brand-new client bootstraps through kaos within seconds (through the brokers kaos
/// learned when the one it was given is the one down), and `/ready` stays true.
#[test]
fn a_rolling_restart_never_cuts_new_clients_off() {
    let cluster = KafkaCluster::shared();
    let kaos = Kaos::start(&cluster.address(1), &["--shards", "2"]);
    let topic = cluster.unique_topic("rolling");
    // As a staging cluster runs it: acks=all then means two replicas, so that a leader's controlled
    // shutdown neither loses nor truncates what it acknowledged. With the broker default of one,
    // Kafka itself may truncate records a consumer already read, and the producer writes them
    // again (seen here once, with the high watermark moving back).
    cluster.create_topic_with(&topic, 3, 3, &[("min.insync.replicas", "2")]);

    let stop = Arc::new(AtomicBool::new(false));
    let producer: Arc<BaseProducer<Observed>> = Arc::new(
        config(&kaos.bootstrap(), &[("enable.idempotence", "true"), ("acks", "all"), ("linger.ms", "5")])
            .create_with_context(Observed::default())
            .unwrap(),
    );
    let producing = produce_until_stopped(
        producer.clone(),
        topic.clone(),
        "r",
        None,
        stop.clone(),
        Duration::from_secs(300),
    );
    let delivered = || producer.context().ok.load(Ordering::Relaxed);
    let target = Arc::new(AtomicU64::new(u64::MAX));
    let consuming = {
        let (target, topic, bootstrap) = (target.clone(), topic.clone(), kaos.bootstrap());
        let group = cluster.unique_topic("rolling-group");
        thread::spawn(move || {
            let consumer = consumer(&bootstrap, &group, &[("auto.commit.interval.ms", "200")]);
            consumer.subscribe(&[&topic]).unwrap();
            let mut at: BTreeMap<(i32, i64), String> = BTreeMap::new();
            let deadline = Instant::now() + Duration::from_secs(360);
            while (at.len() as u64) < target.load(Ordering::Relaxed) && Instant::now() < deadline {
                match consumer.poll(Duration::from_millis(100)) {
                    Some(Ok(m)) => {
                        let value = String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned();
                        if let Some(earlier) = at.insert((m.partition(), m.offset()), value.clone()) {
                            assert_eq!(earlier, value, "offset {}/{} changed", m.partition(), m.offset());
                        }
                    }
                    // A stopped node's connections drop: librdkafka says so and goes on.
                    Some(Err(KafkaError::MessageConsumption(
                        RDKafkaErrorCode::BrokerTransportFailure | RDKafkaErrorCode::AllBrokersDown,
                    ))) => {}
                    Some(Err(e)) => panic!("consumer error: {e}"),
                    None => {}
                }
            }
            at.into_values().collect::<Vec<String>>()
        })
    };
    wait_until("the producer to get going", Duration::from_secs(30), || delivered() >= 200);

    let mut timings = Vec::new();
    for node in cluster.node_ids() {
        let stopped = cluster.stop_node(node);
        let down_since = Instant::now();
        let (took, brokers) = bootstrap_once(&kaos).unwrap_or_else(|e| {
            panic!("a new client could not bootstrap through kaos with node {node} down: {e}\n{}", kaos.log())
        });
        assert!(took < Duration::from_secs(5), "bootstrap with node {node} down took {took:?}");
        assert!(!brokers.contains(&node) && !brokers.is_empty(), "node {node} down, brokers {brokers:?}");
        wait_until("kaos ready with a node down", Duration::from_secs(5), || kaos.get("/ready").0 == 200);
        let before = delivered();
        wait_until("deliveries while the node is down", Duration::from_secs(30), || {
            delivered() > before + 100
        });
        timings.push((node, took, down_since.elapsed()));
        stopped.start();
    }
    let (took, brokers) = bootstrap_once(&kaos).expect("bootstrap with every node back");
    assert_eq!(brokers, cluster.node_ids(), "every node listed again ({took:?})");

    stop.store(true, Ordering::Relaxed);
    let sent = producing.join().expect("the producer thread");
    let deliveries = producer.context();
    assert_eq!(deliveries.failed.load(Ordering::Relaxed), 0, "{:?}", deliveries.errors.lock().unwrap());
    assert_eq!(deliveries.ok.load(Ordering::Relaxed), sent, "every record acknowledged");
    target.store(sent, Ordering::Relaxed);
    let logged = consuming.join().expect("the consumer thread");
    assert_exactly(&logged, "r", sent as usize);
    let log = kaos.log();
    let cut_off: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("upstream unreachable") && line.contains("target=Bootstrap"))
        .collect();
    assert!(
        cut_off.is_empty(),
        "no client of the bootstrap port was closed for want of a broker: {cut_off:?}"
    );
    eprintln!(
        "rolling restart: {sent} records exactly once; a new client's bootstrap through kaos with each node \
         down (node, bootstrap, node down for): {timings:?}"
    );
}
