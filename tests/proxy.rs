//! The core proxy against a real tansu broker and real Kafka clients (librdkafka via `rdkafka`,
//! and raw protocol calls for what no client exposes).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{
    Kaos, RawKafka, TANSU_NODE_ID, Tansu, assert_exactly, consume, create_topic, produce, producer,
    wait_until,
};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, DescribeClusterRequest, DescribeClusterResponse,
    FindCoordinatorRequest, FindCoordinatorResponse, MetadataRequest, MetadataResponse,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::Producer;

#[test]
fn idempotent_producer_and_consumer_group_round_trip_100k_records() {
    let tansu = Tansu::start();
    let kaos = Kaos::start(&tansu.address(), &["--shards", "2"]);
    create_topic(&kaos.bootstrap(), "orders", 3);

    let producer = producer(&kaos.bootstrap(), &[("enable.idempotence", "true"), ("acks", "all")]);
    produce(&producer, "orders", "order", 100_000);
    assert_eq!(producer.context().failed.load(Ordering::Relaxed), 0);
    assert_eq!(producer.context().ok.load(Ordering::Relaxed), 100_000);

    let values = consume(&kaos.bootstrap(), "orders", "orders-readers", 100_000);
    assert_exactly(&values, "order", 100_000);
    assert!(kaos.metric("kaos_requests_total", "api=\"Produce\"") > 0.0);
    assert!(kaos.metric("kaos_request_latency_seconds_count", "api=\"Produce\"") > 0.0);
}

#[test]
fn acks_zero_produce_gets_no_response_and_keeps_the_connection_in_order() {
    let tansu = Tansu::start();
    let kaos = Kaos::start(&tansu.address(), &[]);
    create_topic(&kaos.bootstrap(), "fire-and-forget", 1);
    let producer = producer(&kaos.bootstrap(), &[("acks", "0")]);
    produce(&producer, "fire-and-forget", "f", 20_000);
    let values = consume(&kaos.bootstrap(), "fire-and-forget", "ff", 20_000);
    assert_exactly(&values, "f", 20_000);
    assert_eq!(kaos.metric("kaos_connections_rejected_total", ""), 0.0, "{}", kaos.log());
}

#[test]
fn every_broker_and_coordinator_address_a_client_sees_is_kaos() {
    let tansu = Tansu::start();
    let kaos = Kaos::start(&tansu.address(), &[]);
    create_topic(&kaos.bootstrap(), "seen", 2);
    let kaos_broker = format!("127.0.0.1:{}", kaos.broker_port(TANSU_NODE_ID));

    // librdkafka's view of the cluster.
    let consumer: BaseConsumer =
        ClientConfig::new().set("bootstrap.servers", kaos.bootstrap()).create().unwrap();
    let metadata = consumer.fetch_metadata(None, Duration::from_secs(10)).expect("metadata");
    let brokers: Vec<_> = metadata.brokers().iter().map(|b| format!("{}:{}", b.host(), b.port())).collect();
    assert_eq!(brokers, vec![kaos_broker.clone()]);

    // Every version of every address-bearing API, on the bootstrap port and the broker port.
    for address in [kaos.bootstrap(), kaos_broker.clone()] {
        let mut raw = RawKafka::connect(&address);
        for version in 0..=12 {
            let request =
                MetadataRequest::default().with_topics(if version == 0 { Some(vec![]) } else { None });
            let response: MetadataResponse = raw.call(ApiKey::Metadata, version, &request);
            for broker in &response.brokers {
                assert_eq!(
                    format!("{}:{}", broker.host.as_str(), broker.port),
                    kaos_broker,
                    "Metadata v{version}"
                );
            }
        }
        for version in 0..=6 {
            let mut request = FindCoordinatorRequest::default();
            if version < 4 {
                request.key = StrBytes::from_static_str("some-group");
            } else {
                request.coordinator_keys = vec![StrBytes::from_static_str("some-group")];
            }
            let response: FindCoordinatorResponse = raw.call(ApiKey::FindCoordinator, version, &request);
            let found: Vec<_> = if version < 4 {
                vec![format!("{}:{}", response.host.as_str(), response.port)]
            } else {
                response.coordinators.iter().map(|c| format!("{}:{}", c.host.as_str(), c.port)).collect()
            };
            assert_eq!(found, vec![kaos_broker.clone()], "FindCoordinator v{version}");
        }
        for version in 0..=1 {
            let response: DescribeClusterResponse =
                raw.call(ApiKey::DescribeCluster, version, &DescribeClusterRequest::default());
            let found: Vec<_> =
                response.brokers.iter().map(|b| format!("{}:{}", b.host.as_str(), b.port)).collect();
            assert_eq!(found, vec![kaos_broker.clone()], "DescribeCluster v{version}");
        }
    }
}

#[test]
fn relayed_api_versions_are_capped_at_what_kaos_decodes() {
    let tansu = Tansu::start();
    let kaos = Kaos::start(&tansu.address(), &[]);
    let max_of = |response: &ApiVersionsResponse, api: ApiKey| {
        response.api_keys.iter().find(|k| k.api_key == api as i16).map(|k| k.max_version)
    };
    let request = ApiVersionsRequest::default()
        .with_client_software_name(StrBytes::from_static_str("kaos-test"))
        .with_client_software_version(StrBytes::from_static_str("1"));
    let direct: ApiVersionsResponse =
        RawKafka::connect(&tansu.address()).call(ApiKey::ApiVersions, 3, &request);
    let proxied: ApiVersionsResponse =
        RawKafka::connect(&kaos.bootstrap()).call(ApiKey::ApiVersions, 3, &request);

    assert!(max_of(&direct, ApiKey::Fetch).unwrap() > 15, "tansu offers Fetch v16+");
    assert_eq!(max_of(&proxied, ApiKey::Fetch), Some(15));
    for api in [ApiKey::Metadata, ApiKey::FindCoordinator, ApiKey::DescribeCluster, ApiKey::Produce] {
        let cap = api.valid_versions().max;
        assert_eq!(max_of(&proxied, api), max_of(&direct, api).map(|v| v.min(cap)), "{api:?}");
    }
    // APIs kaos does not decode keep the broker's range.
    assert_eq!(max_of(&proxied, ApiKey::JoinGroup), max_of(&direct, ApiKey::JoinGroup));
    assert_eq!(proxied.api_keys.len(), direct.api_keys.len());
}

#[test]
fn connections_spread_over_shards() {
    let tansu = Tansu::start();
    let kaos = Kaos::start(&tansu.address(), &["--shards", "2"]);
    let request = ApiVersionsRequest::default();
    let connections: Vec<_> = (0..32)
        .map(|_| {
            let mut raw = RawKafka::connect(&kaos.bootstrap());
            let _: ApiVersionsResponse = raw.call(ApiKey::ApiVersions, 0, &request);
            raw
        })
        .collect();
    for shard in ["shard=\"0\"", "shard=\"1\""] {
        assert!(kaos.metric("kaos_connections_total", shard) >= 1.0, "no connection on {shard}");
    }
    assert_eq!(kaos.metric("kaos_connections_open", ""), 32.0);
    drop(connections);
    wait_until("connections to close", Duration::from_secs(10), || {
        kaos.metric("kaos_connections_open", "") == 0.0
    });
}

/// Reads until the peer closes; true when it closed within `timeout`.
fn closed_within(stream: &mut TcpStream, timeout: Duration) -> bool {
    stream.set_read_timeout(Some(timeout)).unwrap();
    let mut sink = [0u8; 1024];
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        match stream.read(&mut sink) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return false;
            }
            Err(_) => return true,
        }
    }
    false
}

#[test]
fn garbage_and_oversized_frames_close_only_their_connection() {
    let tansu = Tansu::start();
    let kaos = Kaos::start(&tansu.address(), &["--max-frame-bytes", "1048576"]);
    create_topic(&kaos.bootstrap(), "steady", 1);
    let producer = producer(&kaos.bootstrap(), &[("acks", "all")]);
    produce(&producer, "steady", "before", 1_000);

    let mut rng = fastrand::Rng::with_seed(1);
    let mut attacks: Vec<Vec<u8>> = vec![
        vec![0x7f, 0xff, 0xff, 0xff],                     // 2 GiB frame
        vec![0xff, 0xff, 0xff, 0xf0],                     // negative length
        vec![0, 0, 0, 2, 0, 1],                           // shorter than a request header
        b"GET / HTTP/1.1\r\nHost: kaos\r\n\r\n".to_vec(), // not Kafka at all
    ];
    attacks.push((0..4096).map(|_| rng.u8(..)).collect());
    for attack in &attacks {
        let mut stream = TcpStream::connect(kaos.bootstrap()).unwrap();
        stream.write_all(attack).unwrap();
        assert!(
            closed_within(&mut stream, Duration::from_secs(5)),
            "kaos kept a connection sending {attack:02x?}"
        );
        produce(&producer, "steady", "during", 100);
    }
    produce(&producer, "steady", "after", 1_000);
    assert_eq!(producer.context().failed.load(Ordering::Relaxed), 0);
    assert!(kaos.metric("kaos_connections_rejected_total", "") >= 4.0);
    let log = kaos.log();
    assert!(log.contains("exceeds --max-frame-bytes"), "{log}");
    assert!(log.contains("negative frame length"), "{log}");
    assert_eq!(kaos.get("/health").0, 200);
}

#[test]
fn unreachable_broker_closes_the_client_promptly() {
    let closed_port = common::free_port();
    let kaos = Kaos::spawn(&format!("127.0.0.1:{closed_port}"), &[]);
    assert_eq!(kaos.get("/ready").0, 503);
    let mut stream = TcpStream::connect(kaos.bootstrap()).unwrap();
    let started = Instant::now();
    assert!(closed_within(&mut stream, Duration::from_secs(3)));
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(kaos.metric("kaos_upstream_connect_failures_total", "") >= 1.0);
    wait_until("a log line", Duration::from_secs(5), || kaos.log().contains("unreachable"));
}

#[test]
fn a_broker_that_dies_makes_kaos_unready_and_it_serves_again_when_back() {
    let mut tansu = Tansu::start();
    let port = tansu.port;
    let kaos = Kaos::start(&tansu.address(), &[]);
    create_topic(&kaos.bootstrap(), "phoenix", 1);
    let mut client = RawKafka::connect(&kaos.bootstrap());
    let _: ApiVersionsResponse = client.call(ApiKey::ApiVersions, 0, &ApiVersionsRequest::default());

    tansu.kill();
    assert!(client.read_frame().is_none(), "kaos closes clients of a dead broker");
    wait_until("kaos to report not ready", Duration::from_secs(10), || kaos.get("/ready").0 == 503);
    assert_eq!(kaos.get("/health").0, 200);
    wait_until("a log line", Duration::from_secs(5), || kaos.log().contains("stopped answering Metadata"));

    let _tansu = Tansu::start_on(port);
    wait_until("kaos to be ready again", Duration::from_secs(15), || kaos.get("/ready").0 == 200);
    create_topic(&kaos.bootstrap(), "phoenix", 1);
    let producer = producer(&kaos.bootstrap(), &[("acks", "all")]);
    produce(&producer, "phoenix", "reborn", 500);
    assert_eq!(producer.context().failed.load(Ordering::Relaxed), 0);
    assert_exactly(&consume(&kaos.bootstrap(), "phoenix", "p", 500), "reborn", 500);
}

#[test]
fn sigterm_drains_and_exits_zero() {
    let tansu = Tansu::start();
    let mut kaos = Kaos::start(&tansu.address(), &["--shutdown-timeout", "3s"]);
    let mut idle = RawKafka::connect(&kaos.bootstrap());
    let _: ApiVersionsResponse = idle.call(ApiKey::ApiVersions, 0, &ApiVersionsRequest::default());
    let started = Instant::now();
    let status = kaos.terminate().expect("kaos exits after SIGTERM");
    assert!(status.success(), "exit status {status:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(idle.read_frame().is_none(), "the idle connection is closed");
    assert!(kaos.log().contains("shutdown complete"));
}

#[test]
fn a_stray_response_to_acks_zero_never_reaches_the_client() {
    use kaos_testkit::Produce;
    let tansu = Tansu::start();
    let kaos = Kaos::start(&tansu.address(), &[]);
    let silent_produce =
        Produce::new(9).correlation_id(1).client_id("kaos-test").acks(0).timeout_ms(1000).frame();
    for address in [tansu.address(), kaos.bootstrap()] {
        let mut raw = RawKafka::connect(&address);
        raw.send_frame(&silent_produce);
        raw.send(ApiKey::ApiVersions, 0, 2, &ApiVersionsRequest::default());
        let first = raw.read_frame().expect("a response");
        let correlation_id = i32::from_be_bytes(first[..4].try_into().unwrap());
        if address == kaos.bootstrap() {
            assert_eq!(correlation_id, 2, "through kaos the first response answers ApiVersions");
        } else {
            // tansu answers acks=0 anyway; kaos exists to hide exactly this.
            assert_eq!(correlation_id, 1, "tansu quirk: a response to acks=0");
        }
    }
}

#[test]
fn sigterm_lets_a_request_in_flight_finish_before_closing() {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::{FetchRequest, FetchResponse, TopicName};
    let tansu = Tansu::start();
    let mut kaos = Kaos::start(&tansu.address(), &["--shutdown-timeout", "10s"]);
    create_topic(&kaos.bootstrap(), "quiet", 1);
    let partition = FetchPartition::default().with_partition(0).with_partition_max_bytes(1 << 20);
    let topic = FetchTopic::default()
        .with_topic(TopicName(StrBytes::from_static_str("quiet")))
        .with_partitions(vec![partition]);
    // An empty partition: tansu holds this fetch for about max_wait_ms.
    let fetch = FetchRequest::default()
        .with_replica_id(kafka_protocol::messages::BrokerId(-1))
        .with_max_wait_ms(1500)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_topics(vec![topic]);
    let mut raw = RawKafka::connect(&format!("127.0.0.1:{}", kaos.broker_port(TANSU_NODE_ID)));
    raw.send(ApiKey::Fetch, 4, 77, &fetch);
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    let bootstrap = kaos.bootstrap();
    let stopping = std::thread::spawn(move || {
        let status = kaos.terminate();
        (status, kaos.log())
    });
    // While the fetch is still held, kaos has stopped accepting (its listeners close within a
    // housekeeping tick of the signal).
    std::thread::sleep(Duration::from_millis(400));
    assert!(TcpStream::connect(&bootstrap).is_err(), "no new connections while draining");
    let mut response = raw.read_frame().expect("the fetch in flight is answered during shutdown");
    assert_eq!(i32::from_be_bytes(response[..4].try_into().unwrap()), 77);
    let _ = bytes::Buf::copy_to_bytes(&mut response, 4);
    let decoded = <FetchResponse as kafka_protocol::protocol::Decodable>::decode(&mut response, 4).unwrap();
    assert_eq!(decoded.responses.len(), 1);
    assert!(raw.read_frame().is_none(), "then the connection closes");
    let (status, log) = stopping.join().unwrap();
    assert!(status.expect("kaos exits").success());
    assert!(started.elapsed() < Duration::from_secs(8), "drained well before the timeout: {log}");
}

#[test]
fn running_out_of_file_descriptors_is_logged_once_a_second_with_a_count() {
    let tansu = Tansu::start();
    let kaos = Kaos::spawn_with_open_files(64, &tansu.address(), &["--shards", "1"]);
    // Far more clients than descriptors: accepting them, or connecting upstream for them, fails
    // about a hundred times a second.
    let mut clients = Vec::new();
    let started = Instant::now();
    while clients.len() < 120 && started.elapsed() < Duration::from_secs(5) {
        match std::net::TcpStream::connect(("127.0.0.1", kaos.port_start)) {
            Ok(client) => clients.push(client),
            Err(_) => break,
        }
    }
    std::thread::sleep(Duration::from_millis(2500));
    drop(clients);
    // Accepting, or connecting upstream: either failure's burst ends with a count.
    wait_until("the burst's count", Duration::from_secs(5), || kaos.log().contains("in the last second"));
    let log = kaos.log();
    let failure = |line: &&str| line.contains("accept failed") || line.contains("upstream unreachable");
    let lines = log.lines().filter(failure).count();
    assert!((1..=8).contains(&lines), "{lines} failure lines for hundreds of failures in ~3 s:\n{log}");
    assert!(log.contains("Too many open files"), "{log}");
    assert!(!log.contains("panicked"), "{log}");
    // The admin API went through the same shortage and still answers.
    wait_until("the admin API after the shortage", Duration::from_secs(5), || kaos.get("/health").0 == 200);
}
