//! Network faults per broker (issue 12 §5) against tansu: what a client's socket sees (an RST, a
//! black hole, a late close, a cut), what a librdkafka client makes of it, and the Kafka-aware
//! triggers (`afterRequests`, `onApiKeys`) the L4 proxies cannot have.

mod common;

use std::collections::BTreeSet;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{Kaos, RawKafka, TANSU_NODE_ID, Tansu, consume, create_topic, produce, produce_frame, producer};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse, MetadataRequest};
use kaos_testkit::frames::request_frame;
use rdkafka::ClientConfig;
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, Producer};

/// kaos in front of a fresh tansu, with one topic.
fn setup(topic: &str) -> (Tansu, Kaos) {
    let tansu = Tansu::start();
    let kaos = Kaos::start(&tansu.address(), &[]);
    create_topic(&kaos.bootstrap(), topic, 1);
    (tansu, kaos)
}

fn rule(api: &str, direction: &str, config: &str) -> String {
    format!(r#"{{"config":{config},"direction":"{direction}","apiKeys":"{api}"}}"#)
}

/// A plain socket to tansu's kaos port, reads timing out after `read_timeout`.
fn socket_to_broker(kaos: &Kaos, read_timeout: Duration) -> TcpStream {
    let stream = TcpStream::connect(("127.0.0.1", kaos.broker_port(TANSU_NODE_ID))).expect("connect");
    stream.set_read_timeout(Some(read_timeout)).unwrap();
    stream
}

fn metadata_frame(correlation_id: i32) -> Vec<u8> {
    request_frame(ApiKey::Metadata, 12, correlation_id, "raw", &MetadataRequest::default()).to_vec()
}

fn api_versions_frame(correlation_id: i32) -> Vec<u8> {
    request_frame(ApiKey::ApiVersions, 3, correlation_id, "raw", &ApiVersionsRequest::default()).to_vec()
}

/// Reads until the peer closes or `limit` passes: the bytes, and how the stream ended.
fn read_to_end(stream: &mut TcpStream, limit: Duration) -> (Vec<u8>, Option<ErrorKind>) {
    let deadline = Instant::now() + limit;
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        match stream.read(&mut buf) {
            Ok(0) => return (bytes, None),
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(e) => return (bytes, Some(e.kind())),
        }
    }
    panic!("the connection did not end within {limit:?} ({} bytes read)", bytes.len());
}

#[test]
fn reset_peer_resets_the_connection_and_an_idempotent_producer_writes_each_record_once() {
    let (_tansu, kaos) = setup("reset");
    kaos.add_rule("reset-peer", &rule("PRODUCE", "REQUEST", r#"{"timeoutMs":0}"#));
    let mut raw = socket_to_broker(&kaos, Duration::from_millis(200));
    raw.write_all(&produce_frame("reset")).unwrap();
    let (read, ended) = read_to_end(&mut raw, Duration::from_secs(5));
    assert_eq!((read.len(), ended), (0, Some(ErrorKind::ConnectionReset)), "an RST, not a FIN");
    assert!(kaos.metric("kaos_chaos_requests_affected_total", "reset-peer") >= 1.0);

    // Active for 1.5 s, then quiet: librdkafka reconnects and retries until every record is
    // delivered. Whether a reset request was applied, it cannot know: tansu keeps what it wrote,
    // so a record may be there twice (tests/python/test_network_faults.py shows an idempotent
    // producer against Apache Kafka writing each once).
    kaos.delete_rule("reset-peer", "PRODUCE", "REQUEST");
    let phase = r#"{"timeoutMs":50,"duration":1500,"quietPeriod":600000,"timeUnit":"MILLISECONDS"}"#;
    kaos.add_rule("reset-peer", &rule("PRODUCE", "REQUEST", phase));
    let retrying = producer(&kaos.bootstrap(), &[("linger.ms", "20")]);
    produce(&retrying, "reset", "r", 200);
    assert_eq!(retrying.context().failed.load(Ordering::Relaxed), 0, "every record delivered");
    let values: BTreeSet<String> = consume(&kaos.bootstrap(), "reset", "g-reset", 200)
        .into_iter()
        .filter(|value| value.starts_with("r-"))
        .collect();
    assert_eq!(values, (0..200).map(|i| format!("r-{i}")).collect(), "each record at least once");
    assert!(kaos.metric("kaos_chaos_requests_affected_total", "reset-peer") >= 2.0);
}

#[test]
fn timeout_relays_nothing_until_it_closes_or_its_rule_is_deleted() {
    let (_tansu, kaos) = setup("hole");
    kaos.add_rule("timeout", &rule("METADATA", "REQUEST", r#"{"timeoutMs":800}"#));
    let mut closing = socket_to_broker(&kaos, Duration::from_millis(50));
    let started = Instant::now();
    closing.write_all(&metadata_frame(1)).unwrap();
    let (read, ended) = read_to_end(&mut closing, Duration::from_secs(5));
    assert_eq!((read.len(), ended), (0, None), "no answer, then a close");
    assert!(
        started.elapsed() >= Duration::from_millis(700),
        "closed after timeoutMs: {:?}",
        started.elapsed()
    );

    kaos.delete_rule("timeout", "METADATA", "REQUEST");
    kaos.add_rule("timeout", &rule("METADATA", "REQUEST", r#"{"timeoutMs":0}"#));
    let mut held = socket_to_broker(&kaos, Duration::from_millis(500));
    held.write_all(&metadata_frame(1)).unwrap();
    let mut first = [0u8; 4];
    let silent = held.read_exact(&mut first).unwrap_err();
    assert!(matches!(silent.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut), "{silent}");
    held.write_all(&metadata_frame(2)).unwrap();
    kaos.delete_rule("timeout", "METADATA", "REQUEST");
    // Deleting the rule gives the connection its network back: both requests are answered.
    held.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut client = RawKafka::from_stream(held);
    for correlation_id in [1, 2] {
        let mut body = client.read_frame().expect("an answer once the rule is gone");
        assert_eq!(i32::from_be_bytes(body.split_to(4)[..].try_into().unwrap()), correlation_id);
    }
}

#[test]
fn bandwidth_caps_one_direction_and_slicer_delivers_in_pieces() {
    let (_tansu, kaos) = setup("shaped");
    // 20 records of 10 KB at 50 KB/s: at least about 4 s through a capped request lane.
    kaos.add_rule("bandwidth", &rule("PRODUCE", "REQUEST", r#"{"rateKbps":50}"#));
    let shaped = producer(&kaos.bootstrap(), &[("linger.ms", "0")]);
    let big = "x".repeat(10_000);
    let started = Instant::now();
    for i in 0..20 {
        let value = format!("{i}-{big}");
        shaped.send(BaseRecord::<(), str>::to("shaped").payload(&value)).expect("queued");
    }
    shaped.flush(Duration::from_secs(60)).expect("delivered");
    assert!(started.elapsed() >= Duration::from_secs(3), "200 KB at 50 KB/s took {:?}", started.elapsed());
    kaos.delete_rule("bandwidth", "PRODUCE", "REQUEST");

    // Frames cut in pieces of 5 to 15 bytes still make whole requests and answers.
    let slices = r#"{"averageSize":10,"sizeVariation":5,"delayUs":200}"#;
    kaos.add_rule("slicer", &rule("PRODUCE", "REQUEST", slices));
    kaos.add_rule("slicer", &rule("FETCH", "RESPONSE", slices));
    let sliced = producer(&kaos.bootstrap(), &[]);
    produce(&sliced, "shaped", "s", 30);
    let values = consume(&kaos.bootstrap(), "shaped", "g-sliced", 50);
    assert_eq!(values.iter().filter(|v| v.starts_with("s-")).count(), 30, "each sliced record once");
    assert!(kaos.metric("kaos_chaos_requests_affected_total", "slicer") >= 2.0);
}

#[test]
fn slow_close_delays_the_close_and_limit_data_cuts_the_answer() {
    let (_tansu, kaos) = setup("closing");
    kaos.add_rule("slow-close", &rule("API_VERSIONS", "REQUEST", r#"{"delayMs":600}"#));
    let mut client = RawKafka::from_stream(socket_to_broker(&kaos, Duration::from_millis(100)));
    let _: ApiVersionsResponse = client.call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
    let mut stream = client.into_stream();
    stream.shutdown(Shutdown::Write).unwrap();
    let closed = Instant::now();
    assert_eq!(read_to_end(&mut stream, Duration::from_secs(5)), (Vec::new(), None));
    assert!(closed.elapsed() >= Duration::from_millis(500), "closed after {:?}", closed.elapsed());

    kaos.add_rule("limit-data", &rule("METADATA", "RESPONSE", r#"{"bytes":20}"#));
    let mut cut = socket_to_broker(&kaos, Duration::from_millis(100));
    cut.write_all(&metadata_frame(1)).unwrap();
    let (read, _) = read_to_end(&mut cut, Duration::from_secs(5));
    assert_eq!(read.len(), 20, "the answer is cut after 20 bytes");
}

#[test]
fn refuse_connections_closes_new_connections_to_one_broker_only() {
    let (_tansu, kaos) = setup("refused");
    let body = format!(r#"{{"config":{{"brokerIds":[{TANSU_NODE_ID}]}},"apiKeys":"PRODUCE"}}"#);
    kaos.add_rule("refuse-connections", &body);
    let mut refused = socket_to_broker(&kaos, Duration::from_millis(100));
    let (read, _) = read_to_end(&mut refused, Duration::from_secs(5));
    assert!(read.is_empty(), "closed before any request");
    assert!(kaos.metric("kaos_chaos_requests_affected_total", "refuse-connections") >= 1.0);
    // The bootstrap port is no broker's: it still works.
    let mut bootstrap = RawKafka::connect(&kaos.bootstrap());
    let versions: ApiVersionsResponse =
        bootstrap.call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
    assert_eq!(versions.error_code, 0);
    kaos.delete_rule("refuse-connections", "PRODUCE", "REQUEST");
    let mut again = RawKafka::from_stream(socket_to_broker(&kaos, Duration::from_secs(5)));
    let versions: ApiVersionsResponse = again.call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
    assert_eq!(versions.error_code, 0, "the broker's port accepts again once the rule is gone");
}

#[test]
fn after_requests_and_on_api_keys_choose_how_far_into_a_connection_a_fault_starts() {
    let (_tansu, kaos) = setup("triggers");
    let config = r#"{"timeoutMs":0,"afterRequests":2,"onApiKeys":["API_VERSIONS"]}"#;
    kaos.add_rule("reset-peer", &rule("METADATA", "REQUEST", config));

    // No ApiVersions on this connection: every Metadata is answered.
    let mut plain = RawKafka::from_stream(socket_to_broker(&kaos, Duration::from_secs(5)));
    for correlation_id in 1..=4 {
        plain.send_frame(&metadata_frame(correlation_id));
        assert!(plain.read_frame().is_some(), "Metadata {correlation_id} without an ApiVersions before");
    }

    // ApiVersions, then Metadata: the second request is answered (one request before it); the
    // third (two before it) resets the connection.
    let mut versions_first = socket_to_broker(&kaos, Duration::from_millis(200));
    versions_first.write_all(&api_versions_frame(1)).unwrap();
    versions_first.write_all(&metadata_frame(2)).unwrap();
    let mut client = RawKafka::from_stream(versions_first);
    assert!(
        client.read_frame().is_some() && client.read_frame().is_some(),
        "ApiVersions and the first Metadata"
    );
    let mut stream = client.into_stream();
    stream.write_all(&metadata_frame(3)).unwrap();
    assert_eq!(
        read_to_end(&mut stream, Duration::from_secs(5)),
        (Vec::new(), Some(ErrorKind::ConnectionReset))
    );
}

/// A phase of `ms`, then ten quiet minutes: a fault a client must get through on its own.
fn phase(ms: u64, config: &str) -> String {
    let timing = format!(r#""duration":{ms},"quietPeriod":600000,"timeUnit":"MILLISECONDS""#);
    match config.strip_suffix('}') {
        Some(open) if open.trim() == "{" => format!("{{{timing}}}"),
        Some(open) => format!("{open},{timing}}}"),
        None => panic!("not a JSON object: {config}"),
    }
}

#[test]
fn librdkafka_gets_through_refused_connections_and_cut_fetches() {
    let (_tansu, kaos) = setup("cut");
    // The broker's port refuses new connections for 1.5 s: the producer, which must reach it
    // to write, retries until it can.
    let refused = phase(1500, &format!(r#"{{"brokerIds":[{TANSU_NODE_ID}]}}"#));
    kaos.add_rule("refuse-connections", &rule("PRODUCE", "REQUEST", &refused));
    let writer = producer(&kaos.bootstrap(), &[("linger.ms", "5")]);
    produce(&writer, "cut", "c", 50);
    assert_eq!(writer.context().failed.load(Ordering::Relaxed), 0, "every record delivered");
    assert!(kaos.metric("kaos_chaos_requests_affected_total", "refuse-connections") >= 1.0);

    // Each connection's Fetch answers are cut after 300 bytes for 1.5 s: the consumer reconnects
    // and, once the phase is over, reads every record once (it never delivers a cut batch).
    kaos.add_rule("limit-data", &rule("FETCH", "RESPONSE", &phase(1500, r#"{"bytes":300}"#)));
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kaos.bootstrap())
        .set("group.id", "g-cut")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "10")
        .create()
        .expect("consumer");
    consumer.subscribe(&["cut"]).expect("subscribe");
    let (mut values, mut errors) = (Vec::new(), Vec::new());
    let deadline = Instant::now() + Duration::from_secs(60);
    while values.len() < 50 && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => values.push(message.payload().unwrap_or_default().to_vec()),
            // What the client sees of the cuts: its connections go down, and it reconnects.
            Some(Err(error)) => errors.push(error.to_string()),
            None => {}
        }
    }
    let unique: BTreeSet<_> = values.iter().collect();
    assert_eq!((values.len(), unique.len()), (50, 50), "each record once; errors seen: {errors:?}");
    assert!(kaos.metric("kaos_chaos_requests_affected_total", "limit-data") >= 1.0);
}
