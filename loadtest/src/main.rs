//! kaos-loadtest: drives real Kafka producers and consumers (librdkafka) at a set rate or flat out,
//! through kaos or straight to a cluster, and checks what the application saw. Every record
//! carries its producer and sequence; the consumers report lost, duplicated and reordered
//! records per partition, with produce and end-to-end latency and a once-a-second timeline. An
//! optional chaos schedule switches kaos rules on and off during the run.
//!
//! Exit status: 0 when every acknowledged record was consumed, 1 when data was lost (or, with
//! `--fail-on-duplicates`, duplicated), 2 when the run itself could not be carried out.

mod chaos;
mod record;
mod verify;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use clap::Parser;
use hdrhistogram::Histogram;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientConfig, ClientContext};
use serde_json::json;

use chaos::ChaosWindow;
use record::{Stamp, now_micros};
use verify::{SequenceSet, Verifier};

#[derive(Debug, Parser)]
#[command(name = "kaos-loadtest", version, about, long_about)]
struct Args {
    /// Where clients bootstrap: kaos (for example 127.0.0.1:6969) or the cluster itself.
    #[arg(long, env = "KAOS_LOADTEST_BOOTSTRAP_SERVERS")]
    bootstrap_servers: String,
    /// Topic to write and read; created (with --partitions) when missing.
    #[arg(long, default_value = "kaos-loadtest")]
    topic: String,
    #[arg(long, default_value_t = 3)]
    partitions: i32,
    /// Producer instances, each with its own connection.
    #[arg(long, default_value_t = 1)]
    producers: u32,
    /// Consumers in one consumer group; 0 only produces (no loss check).
    #[arg(long, default_value_t = 1)]
    consumers: u32,
    /// Instead of a load run: one producer with one request in flight (linger.ms=0, acks=1)
    /// sends this many records, each after the previous one was acknowledged, and reports the
    /// round-trip percentiles.
    #[arg(long, value_name = "RECORDS")]
    closed_loop: Option<u64>,
    /// Records per second over all producers; 0 sends flat out.
    #[arg(long, default_value_t = 1000.0)]
    rate: f64,
    /// How long to produce, in seconds.
    #[arg(long, default_value_t = 30.0)]
    duration: f64,
    /// Bytes per record value (at least 24, the stamp).
    #[arg(long, default_value_t = 100)]
    record_size: usize,
    /// librdkafka producer setting KEY=VALUE, repeatable (for example enable.idempotence=true).
    #[arg(long = "producer-config", value_name = "KEY=VALUE")]
    producer_config: Vec<String>,
    /// librdkafka consumer setting KEY=VALUE, repeatable.
    #[arg(long = "consumer-config", value_name = "KEY=VALUE")]
    consumer_config: Vec<String>,
    /// A chaos window AT:FOR:FEATURE:BODY (seconds from start, seconds on, kaos feature, JSON body
    /// of kaos's POST), repeatable. Example:
    /// 10:5:broken-broker:{"config":{"errors":["NOT_ENOUGH_REPLICAS"]},"apiKeys":"PRODUCE","direction":"REQUEST"}
    #[arg(long = "chaos", value_name = "AT:FOR:FEATURE:BODY")]
    chaos: Vec<String>,
    /// kaos's admin API, for --chaos.
    #[arg(long, default_value = "127.0.0.1:8888")]
    admin_addr: String,
    /// Tenant and user of the chaos rules.
    #[arg(long, default_value = "loadtest")]
    tenant: String,
    #[arg(long, default_value = "loadtest")]
    user: String,
    /// After producing, how long consumers may take to read every acknowledged record.
    #[arg(long, default_value_t = 60.0)]
    drain_timeout: f64,
    /// Exit 1 when duplicates were read, not only when records were lost.
    #[arg(long)]
    fail_on_duplicates: bool,
    /// Also write the summary as JSON to this file.
    #[arg(long)]
    summary_json: Option<PathBuf>,
}

/// Counters the timeline reads while the run goes on.
#[derive(Default)]
struct Live {
    sent: AtomicU64,
    acked: AtomicU64,
    failed: AtomicU64,
    consumed: AtomicU64,
    errors: Mutex<BTreeMap<String, u64>>,
    /// Producers that hit a fatal error (fenced, an unrecoverable sequence gap, ...), by id.
    fatal: Mutex<BTreeMap<u32, String>>,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("static bounds are valid")
}

/// Delivery reports of one producer: which sequences the broker acknowledged, and how fast.
struct Deliveries {
    live: Arc<Live>,
    acked: Mutex<SequenceSet>,
    latency: Mutex<Histogram<u64>>,
    /// The first error after which a producer cannot go on (fenced, a sequence gap, not
    /// authorized), and whether anything was acknowledged after it: if not, the producer died.
    lasting_error: Mutex<Option<String>>,
    acked_after_lasting_error: AtomicBool,
}

impl Deliveries {
    fn new(live: Arc<Live>) -> Deliveries {
        Deliveries {
            live,
            acked: Mutex::default(),
            latency: Mutex::new(histogram()),
            lasting_error: Mutex::default(),
            acked_after_lasting_error: AtomicBool::new(false),
        }
    }

    /// Why the producer died, if it did: librdkafka's fatal error, or an error a producer does not
    /// come back from, with no acknowledgement after it.
    fn death(&self, client: &rdkafka::client::Client<Deliveries>) -> Option<String> {
        if let Some((code, reason)) = client.fatal_error() {
            return Some(format!("{code:?}: {reason}"));
        }
        let lasting = self.lasting_error.lock().expect("not poisoned").clone();
        lasting.filter(|_| !self.acked_after_lasting_error.load(Ordering::Relaxed))
    }
}

/// Errors after which a producer's later records cannot succeed without a new producer.
fn is_lasting(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::ProducerFenced
            | RDKafkaErrorCode::InvalidProducerEpoch
            | RDKafkaErrorCode::OutOfOrderSequenceNumber
            | RDKafkaErrorCode::UnknownProducerId
            | RDKafkaErrorCode::TopicAuthorizationFailed
            | RDKafkaErrorCode::ClusterAuthorizationFailed
            | RDKafkaErrorCode::TransactionalIdAuthorizationFailed
            | RDKafkaErrorCode::Fatal
    )
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(message) => {
                if let Some(stamp) = message.payload().and_then(Stamp::decode) {
                    self.acked.lock().expect("not poisoned").insert(stamp.sequence);
                    let micros = now_micros().saturating_sub(stamp.sent_micros).max(1);
                    let _ = self.latency.lock().expect("not poisoned").record(micros);
                }
                self.live.acked.fetch_add(1, Ordering::Relaxed);
                if self.lasting_error.lock().expect("not poisoned").is_some() {
                    self.acked_after_lasting_error.store(true, Ordering::Relaxed);
                }
            }
            Err((error, _)) => {
                if error.rdkafka_error_code().is_some_and(is_lasting) {
                    self.lasting_error.lock().expect("not poisoned").get_or_insert_with(|| error.to_string());
                }
                self.live.failed.fetch_add(1, Ordering::Relaxed);
                *self.live.errors.lock().expect("not poisoned").entry(error.to_string()).or_default() += 1;
            }
        }
    }
}

fn client_config(bootstrap: &str, settings: &[String]) -> Result<ClientConfig, String> {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap);
    for setting in settings {
        let (key, value) = setting.split_once('=').ok_or_else(|| format!("'{setting}' is not KEY=VALUE"))?;
        config.set(key, value);
    }
    Ok(config)
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(why) => {
            eprintln!("kaos-loadtest: {why}");
            ExitCode::from(2)
        }
    }
}

fn run(args: &Args) -> Result<bool, String> {
    if let Some(records) = args.closed_loop {
        return closed_loop(args, records);
    }
    let windows = args.chaos.iter().map(|w| ChaosWindow::parse(w)).collect::<Result<Vec<_>, _>>()?;
    let producer_config = client_config(&args.bootstrap_servers, &args.producer_config)?;
    let consumer_config = client_config(&args.bootstrap_servers, &args.consumer_config)?;
    ensure_topic(&args.bootstrap_servers, &args.topic, args.partitions)?;

    let live = Arc::new(Live::default());
    let verifier = Arc::new(Mutex::new(Verifier::default()));
    let end_to_end = Arc::new(Mutex::new(histogram()));
    let consuming = Arc::new(AtomicBool::new(true));
    let group = format!("kaos-loadtest-{}", now_micros());
    let consumers: Vec<_> = (0..args.consumers)
        .map(|_| {
            let mut config = consumer_config.clone();
            config
                .set("group.id", &group)
                .set("auto.offset.reset", "earliest")
                .set("enable.partition.eof", "false");
            let (live, verifier, end_to_end, consuming) =
                (live.clone(), verifier.clone(), end_to_end.clone(), consuming.clone());
            let topic = args.topic.clone();
            thread::spawn(move || consume(config, &topic, &live, &verifier, &end_to_end, &consuming))
        })
        .collect();

    let started = Instant::now();
    let duration = Duration::from_secs_f64(args.duration);
    let per_producer_rate = args.rate / f64::from(args.producers.max(1));
    let producers: Vec<_> = (0..args.producers.max(1))
        .map(|id| {
            let (config, live, topic) = (producer_config.clone(), live.clone(), args.topic.clone());
            let (partitions, size) = (args.partitions.max(1), args.record_size);
            thread::spawn(move || {
                produce(id, config, &topic, partitions, size, per_producer_rate, started + duration, live)
            })
        })
        .collect();

    let chaos_log = run_timeline_and_chaos(args, &windows, &live, started, duration);

    let mut acked: HashMap<u32, SequenceSet> = HashMap::new();
    let mut produce_latency = histogram();
    for (id, handle) in producers.into_iter().enumerate() {
        let (set, latency) = handle.join().map_err(|_| "a producer thread panicked")??;
        acked.insert(id as u32, set);
        let _ = produce_latency.add(&latency);
    }

    // Drain: let consumers catch up with everything the producers saw acknowledged.
    let total_acked: u64 = acked.values().map(SequenceSet::len).sum();
    let drain_deadline = Instant::now() + Duration::from_secs_f64(args.drain_timeout);
    let caught_up = || {
        let verifier = verifier.lock().expect("not poisoned");
        acked.iter().all(|(&p, set)| set.iter().all(|s| verifier.has_seen(p, s)))
    };
    if args.consumers > 0 {
        while !caught_up() && Instant::now() < drain_deadline {
            thread::sleep(Duration::from_millis(200));
        }
        thread::sleep(Duration::from_millis(500)); // late duplicates
    }
    consuming.store(false, Ordering::Relaxed);
    for handle in consumers {
        handle.join().map_err(|_| "a consumer thread panicked")??;
    }

    let mut verifier = Arc::try_unwrap(verifier)
        .map_err(|_| "consumers still hold results")?
        .into_inner()
        .expect("not poisoned");
    let partitions = args.partitions.max(1);
    let lost = if args.consumers > 0 {
        verifier.settle_losses(&acked, |sequence| (sequence % partitions as u64) as i32)
    } else {
        0
    };
    let end_to_end = end_to_end.lock().expect("not poisoned").clone();
    let summary = summarize(
        args,
        &live,
        &verifier,
        total_acked,
        lost,
        &produce_latency,
        &end_to_end,
        started,
        chaos_log,
    );
    print_summary(&summary);
    if let Some(path) = &args.summary_json {
        std::fs::write(path, serde_json::to_string_pretty(&summary).expect("JSON"))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    let duplicates = summary["consumed"]["duplicates"].as_u64().unwrap_or(0);
    let producers_died = !live.fatal.lock().expect("not poisoned").is_empty();
    Ok(lost == 0 && !producers_died && !(args.fail_on_duplicates && duplicates > 0))
}

/// Sends `records` one at a time, each after the previous delivery report, and reports latency.
fn closed_loop(args: &Args, records: u64) -> Result<bool, String> {
    ensure_topic(&args.bootstrap_servers, &args.topic, args.partitions)?;
    let mut config = client_config(&args.bootstrap_servers, &args.producer_config)?;
    config.set("linger.ms", "0").set("acks", "1");
    let live = Arc::new(Live::default());
    let context = Deliveries::new(live.clone());
    let producer: BaseProducer<Deliveries> =
        config.create_with_context(context).map_err(|e| e.to_string())?;
    let mut value = Vec::with_capacity(args.record_size);
    let mut round_trips = histogram();
    let warm_up = records / 10;
    for sequence in 0..records + warm_up {
        Stamp { producer: 0, sequence, sent_micros: now_micros() }.encode_into(&mut value, args.record_size);
        let before = live.acked.load(Ordering::Relaxed) + live.failed.load(Ordering::Relaxed);
        let started = Instant::now();
        producer
            .send(BaseRecord::<[u8], [u8]>::to(&args.topic).partition(0).payload(&value[..]))
            .map_err(|(e, _)| e.to_string())?;
        while live.acked.load(Ordering::Relaxed) + live.failed.load(Ordering::Relaxed) == before {
            producer.poll(Duration::ZERO);
            if started.elapsed() > Duration::from_secs(30) {
                return Err(format!("record {sequence} got no delivery report in 30 s"));
            }
        }
        if sequence >= warm_up {
            let _ = round_trips.record(started.elapsed().as_micros().max(1) as u64);
        }
    }
    let us = |q: f64| round_trips.value_at_quantile(q);
    let summary = json!({
        "bootstrap_servers": args.bootstrap_servers,
        "records": records,
        "failed": live.failed.load(Ordering::Relaxed),
        "round_trip_us": {"p50": us(0.5), "p99": us(0.99), "p999": us(0.999), "max": round_trips.max(), "mean": round_trips.mean()},
    });
    println!(
        "closed loop, {records} records: p50 {} µs, p99 {} µs, p99.9 {} µs, max {} µs",
        us(0.5),
        us(0.99),
        us(0.999),
        round_trips.max()
    );
    if let Some(path) = &args.summary_json {
        std::fs::write(path, serde_json::to_string_pretty(&summary).expect("JSON"))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(live.failed.load(Ordering::Relaxed) == 0)
}

fn ensure_topic(bootstrap: &str, topic: &str, partitions: i32) -> Result<(), String> {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", bootstrap).create().map_err(|e| e.to_string())?;
    let new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = futures_lite::future::block_on(admin.create_topics([&new_topic], &options))
        .map_err(|e| format!("cannot create topic {topic}: {e}"))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => return Err(format!("cannot create topic {name}: {code:?}")),
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)] // one thread's whole job; a struct would only rename them
fn produce(
    id: u32,
    config: ClientConfig,
    topic: &str,
    partitions: i32,
    size: usize,
    rate: f64,
    until: Instant,
    live: Arc<Live>,
) -> Result<(SequenceSet, Histogram<u64>), String> {
    let context = Deliveries::new(live.clone());
    let producer: BaseProducer<Deliveries> =
        config.create_with_context(context).map_err(|e| format!("producer {id}: {e}"))?;
    let key = id.to_be_bytes();
    let mut value = Vec::with_capacity(size);
    let started = Instant::now();
    let mut sequence = 0u64;
    while Instant::now() < until {
        if rate > 0.0 {
            let due = started + Duration::from_secs_f64(sequence as f64 / rate);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                producer.poll(wait.min(Duration::from_millis(5)));
                continue;
            }
        }
        Stamp { producer: id, sequence, sent_micros: now_micros() }.encode_into(&mut value, size);
        let partition = (sequence % partitions as u64) as i32;
        let mut record = BaseRecord::to(topic).partition(partition).key(&key[..]).payload(&value[..]);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), unsent)) => {
                    producer.poll(Duration::from_millis(1));
                    record = unsent;
                }
                Err(_) if producer.client().fatal_error().is_some() => break,
                Err((error, _)) => return Err(format!("producer {id}: {error}")),
            }
        }
        // A producer with a fatal error can send nothing more: stop, and report it.
        if producer.client().fatal_error().is_some() {
            break;
        }
        live.sent.fetch_add(1, Ordering::Relaxed);
        sequence += 1;
        producer.poll(Duration::ZERO);
    }
    let _ = producer.flush(Duration::from_secs(60));
    if let Some(death) = producer.context().death(producer.client()) {
        live.fatal.lock().expect("not poisoned").insert(id, death);
    }
    let context = producer.context();
    let acked = std::mem::take(&mut *context.acked.lock().expect("not poisoned"));
    let latency = context.latency.lock().expect("not poisoned").clone();
    Ok((acked, latency))
}

fn consume(
    config: ClientConfig,
    topic: &str,
    live: &Live,
    verifier: &Mutex<Verifier>,
    end_to_end: &Mutex<Histogram<u64>>,
    consuming: &AtomicBool,
) -> Result<(), String> {
    let consumer: BaseConsumer = config.create().map_err(|e| format!("consumer: {e}"))?;
    consumer.subscribe(&[topic]).map_err(|e| format!("subscribe {topic}: {e}"))?;
    let mut batch = Vec::with_capacity(512);
    while consuming.load(Ordering::Relaxed) {
        for _ in 0..512 {
            match consumer.poll(Duration::from_millis(50)) {
                Some(Ok(message)) => {
                    let stamp = message.payload().and_then(Stamp::decode);
                    batch.push((message.partition(), stamp, now_micros()));
                }
                Some(Err(error)) => {
                    *live
                        .errors
                        .lock()
                        .expect("not poisoned")
                        .entry(format!("consumer: {error}"))
                        .or_default() += 1;
                }
                None => break,
            }
        }
        if batch.is_empty() {
            continue;
        }
        live.consumed.fetch_add(batch.len() as u64, Ordering::Relaxed);
        let mut verifier = verifier.lock().expect("not poisoned");
        let mut latency = end_to_end.lock().expect("not poisoned");
        for (partition, stamp, received) in batch.drain(..) {
            match stamp {
                Some(stamp) => {
                    verifier.observe(partition, stamp.producer, stamp.sequence);
                    let _ = latency.record(received.saturating_sub(stamp.sent_micros).max(1));
                }
                None => verifier.foreign += 1,
            }
        }
    }
    Ok(())
}

/// Prints a line a second, and switches chaos windows on and off, until the producers are done.
fn run_timeline_and_chaos(
    args: &Args,
    windows: &[ChaosWindow],
    live: &Live,
    started: Instant,
    duration: Duration,
) -> Vec<serde_json::Value> {
    let mut on = vec![false; windows.len()];
    let mut done = vec![false; windows.len()];
    let mut log = Vec::new();
    let mut last = (0, 0, 0, 0);
    let mut second = 1;
    println!("{:>5}  {:>9}  {:>9}  {:>8}  {:>9}  chaos", "t (s)", "sent/s", "acked/s", "failed/s", "read/s");
    while started.elapsed() < duration + Duration::from_millis(500) {
        let elapsed = started.elapsed();
        for (i, window) in windows.iter().enumerate() {
            let (switch_on, switch_off) =
                (!on[i] && !done[i] && elapsed >= window.at, on[i] && elapsed >= window.at + window.lasts);
            if switch_on || switch_off {
                let result = if switch_on {
                    window.switch_on(&args.admin_addr, &args.tenant, &args.user)
                } else {
                    window.switch_off(&args.admin_addr, &args.tenant, &args.user)
                };
                let action = if switch_on { "on" } else { "off" };
                if let Err(why) = &result {
                    eprintln!("kaos-loadtest: chaos {} {action}: {why}", window.feature);
                }
                log.push(json!({"at_s": elapsed.as_secs_f64(), "feature": window.feature, "switched": action, "ok": result.is_ok()}));
                on[i] = switch_on;
                done[i] |= switch_off;
            }
        }
        if elapsed >= Duration::from_secs(second) {
            let now = (
                live.sent.load(Ordering::Relaxed),
                live.acked.load(Ordering::Relaxed),
                live.failed.load(Ordering::Relaxed),
                live.consumed.load(Ordering::Relaxed),
            );
            let active: Vec<&str> =
                windows.iter().zip(&on).filter(|(_, on)| **on).map(|(w, _)| w.feature.as_str()).collect();
            println!(
                "{second:>5}  {:>9}  {:>9}  {:>8}  {:>9}  {}",
                now.0 - last.0,
                now.1 - last.1,
                now.2 - last.2,
                now.3 - last.3,
                active.join(",")
            );
            last = now;
            second += 1;
        }
        thread::sleep(Duration::from_millis(20));
    }
    // Whatever is still on is switched off, so the run leaves kaos clean.
    for (window, on) in windows.iter().zip(on) {
        if on {
            let result = window.switch_off(&args.admin_addr, &args.tenant, &args.user);
            log.push(json!({"at_s": started.elapsed().as_secs_f64(), "feature": window.feature, "switched": "off", "ok": result.is_ok()}));
        }
    }
    log
}

fn latency_json(histogram: &Histogram<u64>) -> serde_json::Value {
    let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
    json!({"count": histogram.len(), "p50_ms": ms(0.5), "p99_ms": ms(0.99), "p999_ms": ms(0.999), "max_ms": histogram.max() as f64 / 1000.0})
}

#[allow(clippy::too_many_arguments)] // the summary gathers every result of the run
fn summarize(
    args: &Args,
    live: &Live,
    verifier: &Verifier,
    acked: u64,
    lost: u64,
    produce_latency: &Histogram<u64>,
    end_to_end: &Histogram<u64>,
    started: Instant,
    chaos: Vec<serde_json::Value>,
) -> serde_json::Value {
    let mut partitions: Vec<_> = verifier.partitions.iter().collect();
    partitions.sort_by_key(|(p, _)| **p);
    let totals = partitions
        .iter()
        .fold((0, 0, 0), |t, (_, r)| (t.0 + r.consumed, t.1 + r.duplicates, t.2 + r.reordered));
    json!({
        "bootstrap_servers": args.bootstrap_servers,
        "topic": args.topic,
        "seconds": started.elapsed().as_secs_f64(),
        "produced": {
            "sent": live.sent.load(Ordering::Relaxed),
            "acked": acked,
            "failed": live.failed.load(Ordering::Relaxed),
            "errors": *live.errors.lock().expect("not poisoned"),
            "fatal": *live.fatal.lock().expect("not poisoned"),
        },
        "consumed": {
            "records": totals.0,
            "unique": verifier.unique(),
            "duplicates": totals.1,
            "reordered": totals.2,
            "foreign": verifier.foreign,
        },
        "lost": lost,
        "loss_checked": args.consumers > 0,
        "partitions": partitions.iter().map(|(p, r)| json!({"partition": p, "consumed": r.consumed, "duplicates": r.duplicates, "reordered": r.reordered, "lost": r.lost})).collect::<Vec<_>>(),
        "produce_latency": latency_json(produce_latency),
        "end_to_end_latency": latency_json(end_to_end),
        "chaos": chaos,
    })
}

fn print_summary(summary: &serde_json::Value) {
    let produced = &summary["produced"];
    let consumed = &summary["consumed"];
    println!(
        "\nkaos-loadtest summary ({:.1} s against {})",
        summary["seconds"].as_f64().unwrap_or(0.0),
        summary["bootstrap_servers"]
    );
    println!(
        "  produced: {} sent, {} acknowledged, {} failed",
        produced["sent"], produced["acked"], produced["failed"]
    );
    if let Some(errors) = produced["errors"].as_object().filter(|e| !e.is_empty()) {
        for (error, count) in errors {
            println!("    {count} × {error}");
        }
    }
    println!(
        "  consumed: {} records, {} unique, {} duplicates, {} reordered, {} foreign",
        consumed["records"],
        consumed["unique"],
        consumed["duplicates"],
        consumed["reordered"],
        consumed["foreign"]
    );
    for partition in summary["partitions"].as_array().into_iter().flatten() {
        println!(
            "    partition {}: {} consumed, {} duplicates, {} reordered, {} lost",
            partition["partition"],
            partition["consumed"],
            partition["duplicates"],
            partition["reordered"],
            partition["lost"]
        );
    }
    for (name, key) in [("produce", "produce_latency"), ("end-to-end", "end_to_end_latency")] {
        let latency = &summary[key];
        println!(
            "  {name} latency: p50 {} ms, p99 {} ms, p99.9 {} ms, max {} ms ({} samples)",
            latency["p50_ms"], latency["p99_ms"], latency["p999_ms"], latency["max_ms"], latency["count"]
        );
    }
    for event in summary["chaos"].as_array().into_iter().flatten() {
        println!(
            "  chaos {} switched {} at {:.1} s",
            event["feature"],
            event["switched"],
            event["at_s"].as_f64().unwrap_or(0.0)
        );
    }
    for (producer, error) in produced["fatal"].as_object().into_iter().flatten() {
        println!("  producer {producer} died: {error}");
    }
    let lost = summary["lost"].as_u64().unwrap_or(0);
    if let Some(dead) = produced["fatal"].as_object().filter(|dead| !dead.is_empty()) {
        println!(
            "RESULT: PRODUCERS DIED ({} producer(s) hit a fatal error; {} records failed, {} acknowledged, {} acknowledged records lost)",
            dead.len(),
            produced["failed"],
            produced["acked"],
            lost
        );
        return;
    }
    let (failed, sent) = (produced["failed"].as_u64().unwrap_or(0), produced["sent"].as_u64().unwrap_or(0));
    if summary["loss_checked"] == false {
        println!(
            "RESULT: produce only ({} acknowledged; no consumers, so loss was not checked)",
            produced["acked"]
        );
        return;
    }
    let verdict = match (lost, failed.saturating_mul(2) > sent) {
        (0, false) => "NO LOSS",
        (0, true) => "NO ACKNOWLEDGED RECORD LOST, BUT MOST RECORDS FAILED",
        _ => "DATA LOST",
    };
    println!(
        "RESULT: {verdict} ({lost} acknowledged records lost, {} duplicates read, {failed} of {sent} records failed)",
        consumed["duplicates"]
    );
}
