//! throttle (issue 12 §4) against tansu with a librdkafka producer: Produce answers carry a
//! throttle time, librdkafka reports it in its statistics, and the producer slows down because
//! kaos holds the connection's next requests for as long (KIP-219).

mod common;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{Kaos, Tansu, create_topic};
use rdkafka::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use rdkafka::statistics::Statistics;

/// Remembers the largest throttle time librdkafka's statistics showed for any broker.
#[derive(Default)]
struct ThrottleSeen(Mutex<i64>);

impl rdkafka::ClientContext for ThrottleSeen {
    fn stats(&self, statistics: Statistics) {
        let most = statistics.brokers.values().filter_map(|b| b.throttle.as_ref().map(|w| w.max)).max();
        if let Some(most) = most {
            let mut seen = self.0.lock().unwrap();
            *seen = (*seen).max(most);
        }
    }
}

impl ProducerContext for ThrottleSeen {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &rdkafka::message::DeliveryResult<'_>, _: ()) {}
}

/// Sends `count` records one after another, each waited for; how long they took.
fn send_each(producer: &BaseProducer<ThrottleSeen>, topic: &str, count: usize) -> Duration {
    let started = Instant::now();
    for i in 0..count {
        producer.send(BaseRecord::<(), str>::to(topic).payload(&format!("r{i}"))).expect("queued");
        producer.flush(Duration::from_secs(30)).expect("delivered");
    }
    started.elapsed()
}

#[test]
fn a_throttled_producer_reports_the_throttle_and_slows_down() {
    let tansu = Tansu::start();
    let kaos = Kaos::start(&tansu.address(), &[]);
    create_topic(&kaos.bootstrap(), "throttled", 1);
    let producer: BaseProducer<ThrottleSeen> = ClientConfig::new()
        .set("bootstrap.servers", kaos.bootstrap())
        .set("statistics.interval.ms", "100")
        .set("linger.ms", "0")
        .create_with_context(ThrottleSeen::default())
        .expect("producer");
    let free = send_each(&producer, "throttled", 5);
    kaos.add_rule(
        "throttle",
        r#"{"config":{"throttleTimeMs":400},"direction":"RESPONSE","apiKeys":"PRODUCE"}"#,
    );
    let throttled = send_each(&producer, "throttled", 5);
    assert!(
        throttled >= Duration::from_millis(1600),
        "5 sends, each held 400 ms behind the last: {throttled:?} (free: {free:?})"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while *producer.context().0.lock().unwrap() < 400 && Instant::now() < deadline {
        producer.poll(Duration::from_millis(100));
    }
    assert!(*producer.context().0.lock().unwrap() >= 400, "librdkafka's statistics show the throttle");
    assert!(kaos.metric("kaos_chaos_latency_added_ms_total", "throttle") >= 2000.0);
}
