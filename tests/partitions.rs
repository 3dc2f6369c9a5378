//! `partitions` (issue 12 §3) against tansu with an idempotent librdkafka producer: short
//! elections on one partition of three fail only that partition's batches, the others are written
//! by the same requests, and the producer writes every record exactly once (tansu would fence it
//! after a sequence gap).

mod common;

use std::sync::atomic::Ordering;

use common::{Kaos, Tansu, assert_exactly, consume, create_topic, produce, producer};
use rdkafka::producer::Producer;

#[test]
fn elections_on_one_partition_leave_the_others_written_and_each_record_once() {
    let tansu = Tansu::start();
    let kaos = Kaos::start(&tansu.address(), &[]);
    create_topic(&kaos.bootstrap(), "narrowed", 3);
    let elections = r#"{"config":{"partitions":[1],"electionMs":30,"errors":["NOT_LEADER_OR_FOLLOWER"],
        "duration":2000,"quietPeriod":600000,"timeUnit":"MILLISECONDS"},"apiKeys":"PRODUCE"}"#;
    kaos.add_rule("leader-election", elections);
    let idempotent = producer(&kaos.bootstrap(), &[("enable.idempotence", "true"), ("linger.ms", "0")]);
    produce(&idempotent, "narrowed", "n", 3000);
    let context = idempotent.context();
    assert_eq!(context.failed.load(Ordering::Relaxed), 0, "{:?}", context.errors.lock().unwrap());
    assert!(kaos.metric("kaos_chaos_requests_affected_total", "leader-election") >= 1.0);
    assert_exactly(&consume(&kaos.bootstrap(), "narrowed", "g-narrowed", 3000), "n", 3000);
}
