//! Test harness: a real tansu broker and a real kaos process per test, on free loopback ports,
//! stopped (by PID) when the test ends, pass or fail.

#![allow(dead_code)] // each test binary uses a different part of the harness

use std::collections::{BTreeSet, HashSet};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use kafka_protocol::messages::{ApiKey, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable};
use kaos_testkit::frames::request_frame;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientConfig, ClientContext, Message};

/// tansu always reports this node id.
pub const TANSU_NODE_ID: i32 = 111;

pub fn cache_dir() -> PathBuf {
    std::env::var_os("KAOS_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").expect("HOME is set")).join(".cache/kaos"))
}

fn tansu_bin() -> PathBuf {
    std::env::var_os("TANSU_BIN").map(PathBuf::from).unwrap_or_else(|| cache_dir().join("tansu/bin/tansu"))
}

fn log_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("logs");
    std::fs::create_dir_all(&dir).expect("log dir");
    dir
}

/// Ports handed out to this test binary's tests (they run in parallel): a port is given once,
/// and the broker ports a kaos will open later are held back from everyone else.
static RESERVED: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// A loopback port that nothing listens on right now and no other test was given.
pub fn free_port() -> u16 {
    loop {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        if RESERVED.lock().unwrap().insert(port) {
            return port;
        }
    }
}

/// Reserves all of `ports` if every one is free and unreserved.
fn reserve_all(ports: &[u16]) -> bool {
    let mut reserved = RESERVED.lock().unwrap();
    if ports.iter().any(|p| reserved.contains(p) || !port_is_free(*p)) {
        return false;
    }
    reserved.extend(ports);
    true
}

fn port_is_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

pub fn wait_until(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A child process killed when dropped.
struct Process {
    child: Child,
    name: String,
}

impl Process {
    fn spawn(name: &str, command: &mut Command) -> Process {
        let log =
            std::fs::File::create(log_dir().join(format!("{name}-{}.log", std::process::id()))).unwrap();
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({command:?}): {e}"));
        Process { child, name: name.to_owned() }
    }

    fn signal(&self, signal: &str) {
        let _ = Command::new("kill").arg(format!("-{signal}")).arg(self.child.id().to_string()).status();
    }

    fn stop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop();
        let _ = &self.name;
    }
}

/// A tansu broker with in-memory storage.
pub struct Tansu {
    process: Process,
    pub port: u16,
}

impl Tansu {
    pub fn start() -> Tansu {
        Tansu::start_on(free_port())
    }

    pub fn start_on(port: u16) -> Tansu {
        let url = format!("tcp://127.0.0.1:{port}");
        let process = Process::spawn(
            &format!("tansu-{port}"),
            Command::new(tansu_bin())
                .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
                .args(["--storage-engine", "memory://tansu/"]),
        );
        wait_until("tansu to listen", Duration::from_secs(20), || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        Tansu { process, port }
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// What tansu wrote so far (stdout and stderr, with its ANSI colours): it logs a Produce it
    /// rejects as, for example, `err=Api(OutOfOrderSequenceNumber)` or `err=Api(ProducerFenced)`.
    pub fn log(&self) -> String {
        std::fs::read_to_string(log_dir().join(format!("tansu-{}-{}.log", self.port, std::process::id())))
            .unwrap_or_default()
    }

    pub fn kill(&mut self) {
        self.process.stop();
    }
}

/// A kaos process in front of `bootstrap`.
pub struct Kaos {
    process: Process,
    pub port_start: u16,
    pub admin_port: u16,
}

impl Kaos {
    pub fn start(bootstrap: &str, extra: &[&str]) -> Kaos {
        let kaos = Kaos::spawn(bootstrap, extra);
        wait_until("kaos to be ready", Duration::from_secs(20), || kaos.get("/ready").0 == 200);
        kaos
    }

    /// Starts kaos with environment variables of its own (secrets are never flags) and waits
    /// until it is ready.
    pub fn start_with_env(bootstrap: &str, extra: &[&str], env: &[(&str, &str)]) -> Kaos {
        let mut command = Command::new(env!("CARGO_BIN_EXE_kaos"));
        command.envs(env.iter().copied());
        let kaos = Kaos::spawn_with(command, bootstrap, extra);
        wait_until("kaos to be ready", Duration::from_secs(20), || kaos.get("/ready").0 == 200);
        kaos
    }

    /// Starts kaos without waiting for the upstream cluster.
    pub fn spawn(bootstrap: &str, extra: &[&str]) -> Kaos {
        Kaos::spawn_with(Command::new(env!("CARGO_BIN_EXE_kaos")), bootstrap, extra)
    }

    /// Starts kaos allowed only `open_files` file descriptors (`ulimit -n`).
    pub fn spawn_with_open_files(open_files: u32, bootstrap: &str, extra: &[&str]) -> Kaos {
        let mut shell = Command::new("sh");
        shell.args([
            "-c",
            &format!("ulimit -n {open_files} && exec \"$0\" \"$@\""),
            env!("CARGO_BIN_EXE_kaos"),
        ]);
        Kaos::spawn_with(shell, bootstrap, extra)
    }

    /// Starts kaos in a mount namespace of its own whose /etc/hosts is `hosts` (needs root), so that
    /// a test decides what names resolve to without touching the machine's file; waits until ready.
    pub fn start_with_hosts(hosts: &Path, bootstrap: &str, extra: &[&str]) -> Kaos {
        let mut command = Command::new("unshare");
        command.args(["--mount", "sh", "-c", "mount --bind \"$0\" /etc/hosts && exec \"$@\""]);
        command.arg(hosts).arg(env!("CARGO_BIN_EXE_kaos"));
        let kaos = Kaos::spawn_with(command, bootstrap, extra);
        wait_until("kaos to be ready", Duration::from_secs(20), || kaos.get("/ready").0 == 200);
        kaos
    }

    /// Starts `command` (kaos, or what execs it) with kaos's arguments appended.
    fn spawn_with(mut command: Command, bootstrap: &str, extra: &[&str]) -> Kaos {
        // Hold back the ports kaos will open for brokers: tansu's node 111, and nodes 1-3.
        let (port_start, admin_port) = loop {
            let port = free_port();
            let broker_ports: Vec<u16> = [1, 2, 3, TANSU_NODE_ID]
                .iter()
                .filter_map(|node| u16::try_from(u32::from(port) + 1 + *node as u32).ok())
                .filter(|p| *p < 65_000)
                .collect();
            if broker_ports.len() == 4 && reserve_all(&broker_ports) {
                break (port, free_port());
            }
        };
        let process = Process::spawn(
            &format!("kaos-{port_start}"),
            command
                .args(["--bootstrap-servers", bootstrap, "--port-start", &port_start.to_string()])
                .args(["--admin-addr", &format!("127.0.0.1:{admin_port}"), "--log-level", "debug"])
                .args(extra),
        );
        wait_until("kaos admin API", Duration::from_secs(20), || {
            TcpStream::connect(("127.0.0.1", admin_port)).is_ok()
        });
        // The admin API comes up once every shard listens on the bootstrap port.
        assert!(TcpStream::connect(("127.0.0.1", port_start)).is_ok(), "the bootstrap port listens");
        Kaos { process, port_start, admin_port }
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port_start)
    }

    pub fn broker_port(&self, node_id: i32) -> u16 {
        (i32::from(self.port_start) + 1 + node_id) as u16
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(log_dir().join(format!(
            "kaos-{}-{}.log",
            self.port_start,
            std::process::id()
        )))
        .unwrap_or_default()
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        http_get(self.admin_port, path).unwrap_or((0, String::new()))
    }

    /// Creates a rule for the seed's tenant and user; panics unless kaos accepts it.
    pub fn add_rule(&self, feature: &str, body: &str) -> serde_json::Value {
        self.add_rule_for("test@conduktor.io", feature, body)
    }

    /// Creates a rule for `user` (of the seed's tenant); panics unless kaos accepts it.
    pub fn add_rule_for(&self, user: &str, feature: &str, body: &str) -> serde_json::Value {
        let path = format!("/tenant/1-1/user/{user}/feature/{feature}");
        let (status, answer) = http(self.admin_port, "POST", &path, body).expect("admin API");
        assert_eq!(status, 200, "POST {path}: {answer}");
        serde_json::from_str(&answer).expect("JSON answer")
    }

    /// Deletes a rule; panics unless it existed.
    pub fn delete_rule(&self, feature: &str, api: &str, direction: &str) {
        self.delete_rule_for("test@conduktor.io", feature, api, direction)
    }

    /// Deletes a rule of `user`; panics unless it existed.
    pub fn delete_rule_for(&self, user: &str, feature: &str, api: &str, direction: &str) {
        let path = format!("/tenant/1-1/user/{user}/feature/{feature}/apiKeys/{api}/direction/{direction}");
        let (status, answer) = http(self.admin_port, "DELETE", &path, "").expect("admin API");
        assert_eq!(status, 200, "DELETE {path}: {answer}");
    }

    /// Sums a metric over its label sets whose labels contain `label_filter`.
    pub fn metric(&self, name: &str, label_filter: &str) -> f64 {
        let (_, body) = self.get("/metrics");
        body.lines()
            .filter(|line| line.starts_with(&format!("{name}{{")) && line.contains(label_filter))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        self.process.signal("TERM");
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.process.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

/// A minimal HTTP/1.0 GET: (status, body).
/// Runs kaos with `args` (towards an address nothing listens on) where it must refuse to start:
/// its exit status and everything it printed. Panics if it is still running after 10 s.
pub fn kaos_refusing_to_start(args: &[&str]) -> (std::process::ExitStatus, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kaos"))
        .args(["--bootstrap-servers", "127.0.0.1:1", "--port-start", &free_port().to_string()])
        .args(["--admin-addr", &format!("127.0.0.1:{}", free_port())])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kaos runs");
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().expect("kaos's status") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("kaos {args:?} kept running");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut output = String::new();
    let _ = child.stdout.take().expect("piped").read_to_string(&mut output);
    let _ = child.stderr.take().expect("piped").read_to_string(&mut output);
    (status, output)
}

pub fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    http(port, "GET", path, "")
}

/// A minimal HTTP/1.0 request to a local port: (status, body).
pub fn http(port: u16, method: &str, path: &str, body: &str) -> std::io::Result<(u16, String)> {
    kaos_testkit::http::request(&format!("127.0.0.1:{port}"), method, path, body)
}

/// A raw Kafka connection for checks no client library exposes.
pub struct RawKafka {
    stream: TcpStream,
    next_correlation_id: i32,
}

impl RawKafka {
    pub fn connect(address: &str) -> RawKafka {
        let stream = TcpStream::connect(address).unwrap_or_else(|e| panic!("connect {address}: {e}"));
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        RawKafka { stream, next_correlation_id: 1 }
    }

    /// Speaks Kafka over a stream the test connected itself.
    pub fn from_stream(stream: TcpStream) -> RawKafka {
        RawKafka { stream, next_correlation_id: 1 }
    }

    /// The stream back, for tests that watch how it ends.
    pub fn into_stream(self) -> TcpStream {
        self.stream
    }

    /// Connects from a chosen local address (any of 127.0.0.0/8 works on loopback).
    pub fn connect_from(source: std::net::IpAddr, address: std::net::SocketAddr) -> RawKafka {
        let socket = socket2::Socket::new(socket2::Domain::for_address(address), socket2::Type::STREAM, None)
            .expect("a socket");
        socket
            .bind(&std::net::SocketAddr::new(source, 0).into())
            .unwrap_or_else(|e| panic!("bind {source}: {e}"));
        socket.connect(&address.into()).unwrap_or_else(|e| panic!("connect {address} from {source}: {e}"));
        let stream: TcpStream = socket.into();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        RawKafka { stream, next_correlation_id: 1 }
    }

    /// Sends one request and decodes its response.
    pub fn call<Req: Encodable, Resp: Decodable>(
        &mut self,
        api: ApiKey,
        version: i16,
        request: &Req,
    ) -> Resp {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id += 1;
        self.send(api, version, correlation_id, request);
        let mut body = self.read_frame().expect("a response");
        let header_version =
            if api == ApiKey::ApiVersions { 0 } else { api.response_header_version(version) };
        let header = ResponseHeader::decode(&mut body, header_version).unwrap();
        assert_eq!(header.correlation_id, correlation_id);
        let response = Resp::decode(&mut body, version).unwrap();
        assert!(!body.has_remaining(), "{api:?} v{version}: {} trailing bytes", body.remaining());
        response
    }

    /// Sends one request without waiting for a response.
    pub fn send<Req: Encodable>(&mut self, api: ApiKey, version: i16, correlation_id: i32, request: &Req) {
        self.send_frame(&request_frame(api, version, correlation_id, "kaos-test", request));
    }

    /// Writes one whole frame, length prefix included, as it is.
    pub fn send_frame(&mut self, frame: &[u8]) {
        self.stream.write_all(frame).unwrap();
    }

    pub fn read_frame(&mut self) -> Option<Bytes> {
        let mut length = [0u8; 4];
        self.stream.read_exact(&mut length).ok()?;
        let mut body = vec![0u8; i32::from_be_bytes(length) as usize];
        self.stream.read_exact(&mut body).ok()?;
        Some(Bytes::from(body))
    }
}

/// Writes a one-record Produce (v9, acks=all) to partition 0 of `topic` and returns the
/// partition's error code.
pub fn produce_one(client: &mut RawKafka, topic: &str) -> i16 {
    client.send_frame(&produce_frame(topic));
    let mut body = client.read_frame().expect("a Produce response");
    ResponseHeader::decode(&mut body, 1).unwrap();
    let response = kafka_protocol::messages::ProduceResponse::decode(&mut body, 9).unwrap();
    response.responses[0].partition_responses[0].error_code
}

/// A one-record Produce (v9, acks=all, correlation id 1) to partition 0 of `topic`.
pub fn produce_frame(topic: &str) -> Bytes {
    kaos_testkit::Produce::new(9)
        .correlation_id(1)
        .client_id("raw")
        .acks(-1)
        .timeout_ms(5000)
        .topic(
            kaos_testkit::Topic::new(topic, [0; 16]).partition(
                0,
                kaos_testkit::batch(kafka_protocol::records::Compression::None, &[b"raw"], -1, -1),
            ),
        )
        .frame()
}

/// A file of the test run's own with `content` (for secrets and users files, which kaos takes
/// only from files), under the log directory.
pub fn temp_file(name: &str, content: &str) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let path =
        log_dir().join(format!("{name}-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed)));
    std::fs::write(&path, content).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    path
}

pub fn create_topic(bootstrap: &str, name: &str, partitions: i32) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> =
        rdkafka::ClientConfig::new().set("bootstrap.servers", bootstrap).create().expect("admin client");
    let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = block_on(admin.create_topics([&topic], &options)).expect("create_topics");
    for result in results {
        result.unwrap_or_else(|(topic, code)| panic!("create {topic}: {code:?}"));
    }
}

/// Runs a future to completion on this thread (rdkafka's admin API is async).
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    futures_lite::future::block_on(future)
}

#[derive(Default)]
pub struct Deliveries {
    pub ok: AtomicU64,
    pub failed: AtomicU64,
    /// The error of each failed delivery, as librdkafka names it.
    pub errors: Mutex<Vec<String>>,
}

impl rdkafka::ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => self.ok.fetch_add(1, Ordering::Relaxed),
            Err((error, _)) => {
                self.errors.lock().unwrap().push(error.to_string());
                self.failed.fetch_add(1, Ordering::Relaxed)
            }
        };
    }
}

/// Producer settings under which a failed delivery is reported at once: no retries, no batching.
pub const NO_RETRIES: &[(&str, &str)] =
    &[("acks", "all"), ("retries", "0"), ("linger.ms", "0"), ("enable.idempotence", "false")];

/// Sends one record and waits for its delivery report: (delivered?, round trip).
pub fn send_one(producer: &BaseProducer<Deliveries>, topic: &str, value: &[u8]) -> (bool, Duration) {
    let context = producer.context();
    let (ok, failed) = (context.ok.load(Ordering::Relaxed), context.failed.load(Ordering::Relaxed));
    let started = Instant::now();
    producer.send(BaseRecord::<(), [u8]>::to(topic).payload(value)).expect("queued");
    // Poll in small steps: flush() wakes only every 100 ms, which would hide the round trip.
    let reported =
        || context.ok.load(Ordering::Relaxed) > ok || context.failed.load(Ordering::Relaxed) > failed;
    while !reported() {
        assert!(started.elapsed() < Duration::from_secs(30), "no delivery report for {topic}");
        producer.poll(Duration::from_millis(1));
    }
    (context.ok.load(Ordering::Relaxed) > ok, started.elapsed())
}

pub fn producer(bootstrap: &str, settings: &[(&str, &str)]) -> BaseProducer<Deliveries> {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap).set("linger.ms", "5");
    for (key, value) in settings {
        config.set(*key, *value);
    }
    config.create_with_context(Deliveries::default()).expect("producer")
}

/// Sends `count` records with values `{prefix}-{i}` and waits for every delivery report.
pub fn produce(producer: &BaseProducer<Deliveries>, topic: &str, prefix: &str, count: usize) {
    for i in 0..count {
        let value = format!("{prefix}-{i}");
        let mut record = BaseRecord::to(topic).key(&value).payload(&value);
        let deadline = Instant::now() + Duration::from_secs(60);
        while let Err((error, unsent)) = producer.send(record) {
            assert!(Instant::now() < deadline, "producer stuck: {error}");
            producer.poll(Duration::from_millis(10));
            record = unsent;
        }
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(60)).expect("flush");
}

/// Reads values from `topic` in a consumer group until `expected` arrive or 90 s pass.
pub fn consume(bootstrap: &str, topic: &str, group: &str, expected: usize) -> Vec<String> {
    let (consumer, mut values) =
        consume_from(bootstrap, &[], topic, group, expected, Duration::from_secs(90));
    // A short grace period shows any duplicates beyond the expected count.
    let grace = Instant::now() + Duration::from_millis(500);
    while Instant::now() < grace {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
            values.push(String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned());
        }
    }
    values
}

pub fn assert_exactly(values: &[String], prefix: &str, count: usize) {
    let unique: HashSet<&String> = values.iter().collect();
    assert_eq!(unique.len(), values.len(), "duplicates among {} records", values.len());
    let expected: HashSet<String> = (0..count).map(|i| format!("{prefix}-{i}")).collect();
    let got: HashSet<String> = values.iter().cloned().collect();
    assert_eq!(got.len(), count, "records received");
    assert!(got == expected, "received records differ from those sent");
}

/// The environment variable `make test` sets to the shared Apache Kafka cluster's cluster.json.
pub const KAFKA_CLUSTER_ENV: &str = "KAOS_KAFKA_CLUSTER";

/// The real Apache Kafka cluster of the test run: 3 nodes in KRaft combined mode on loopback,
/// started once by `make test` (tests/kafka/cluster.py) before the Rust and Python tests and
/// stopped after them. Tests share it, so each makes its own topics (`unique_topic`). A test that
/// stops a node holds the `StoppedNode` guard, which starts the node again when dropped (even on
/// panic); one node at a time is stopped in this process (cargo runs test binaries one by one).
pub struct KafkaCluster {
    dir: PathBuf,
    bootstrap: String,
    /// (node id, client port), by node id.
    nodes: Vec<(i32, u16)>,
    /// The SASL listeners (`sasl_bootstrap`, `sasl_tls_bootstrap`, `sasl`); None for a
    /// cluster.json of an older cluster.py, and the TLS one for a cluster without TLS.
    sasl_bootstrap: Option<String>,
    sasl_tls_bootstrap: Option<String>,
    sasl: serde_json::Value,
}

/// Held while a test has a node down: two nodes of three down would be no quorum.
static KAFKA_NODE_DOWN: Mutex<()> = Mutex::new(());

impl KafkaCluster {
    /// The cluster `make test` started; panics when this run has none.
    pub fn shared() -> &'static KafkaCluster {
        static CLUSTER: std::sync::OnceLock<KafkaCluster> = std::sync::OnceLock::new();
        CLUSTER.get_or_init(|| {
            let path = std::env::var_os(KAFKA_CLUSTER_ENV).map(PathBuf::from).unwrap_or_else(|| {
                panic!(
                    "{KAFKA_CLUSTER_ENV} is not set: this test needs the Apache Kafka cluster that `make test` \
                     starts. Run `make test`, or start one yourself (`make kafka && python3 \
                     tests/kafka/cluster.py start --dir DIR`) and set {KAFKA_CLUSTER_ENV}=DIR/cluster.json"
                )
            });
            KafkaCluster::load(&path)
        })
    }

    /// Reads a cluster.json written by `tests/kafka/cluster.py start`.
    pub fn load(path: &std::path::Path) -> KafkaCluster {
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| {
            panic!("{KAFKA_CLUSTER_ENV}={}: {e} (is the cluster of `make test` still up?)", path.display())
        });
        let info: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let nodes = info["nodes"]
            .as_array()
            .expect("nodes in cluster.json")
            .iter()
            .map(|node| (node["id"].as_i64().unwrap() as i32, node["port"].as_u64().unwrap() as u16))
            .collect();
        KafkaCluster {
            dir: PathBuf::from(info["dir"].as_str().expect("dir in cluster.json")),
            bootstrap: info["bootstrap"].as_str().expect("bootstrap in cluster.json").to_owned(),
            nodes,
            sasl_bootstrap: info["sasl_bootstrap"].as_str().map(str::to_owned),
            sasl_tls_bootstrap: info["sasl_tls_bootstrap"].as_str().map(str::to_owned),
            sasl: info["sasl"].clone(),
        }
    }

    /// Every node's client listener, `127.0.0.1:P1,127.0.0.1:P2,...`.
    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    pub fn node_ids(&self) -> Vec<i32> {
        self.nodes.iter().map(|(id, _)| *id).collect()
    }

    /// The client port of node `id` (what Metadata advertises for it).
    pub fn port(&self, id: i32) -> u16 {
        self.nodes
            .iter()
            .find(|(node, _)| *node == id)
            .unwrap_or_else(|| panic!("no Kafka node {id} (nodes: {:?})", self.node_ids()))
            .1
    }

    pub fn address(&self, id: i32) -> String {
        format!("127.0.0.1:{}", self.port(id))
    }

    /// What node `id` logged so far (INFO and up, every start of it).
    pub fn log(&self, id: i32) -> String {
        std::fs::read_to_string(self.dir.join(format!("node-{id}/server.log"))).unwrap_or_default()
    }

    /// A topic (or group) name no other test of this run uses.
    pub fn unique_topic(&self, prefix: &str) -> String {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        format!("{prefix}-{}-{nanos}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
    }

    /// Creates a topic through rdkafka's admin API; panics unless the cluster accepts it. While
    /// another test has a node down, a replication the live nodes cannot hold is refused
    /// (INVALID_REPLICATION_FACTOR): it is asked again until the node is back (up to 90 s).
    pub fn create_topic(&self, name: &str, partitions: i32, replication: i32) {
        self.create_topic_with(name, partitions, replication, &[]);
    }

    /// `create_topic` with topic configs, such as `min.insync.replicas`.
    pub fn create_topic_with(&self, name: &str, partitions: i32, replication: i32, configs: &[(&str, &str)]) {
        use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
        use rdkafka::client::DefaultClientContext;
        use rdkafka::types::RDKafkaErrorCode;
        let admin: AdminClient<DefaultClientContext> =
            ClientConfig::new().set("bootstrap.servers", self.bootstrap()).create().expect("admin client");
        let mut topic = NewTopic::new(name, partitions, TopicReplication::Fixed(replication));
        for (key, value) in configs {
            topic = topic.set(key, value);
        }
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let results = block_on(admin.create_topics([&topic], &options)).expect("create_topics");
            match results.into_iter().next().expect("one result") {
                Ok(_) => return,
                Err((_, RDKafkaErrorCode::InvalidReplicationFactor)) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(500));
                }
                Err((topic, code)) => panic!("create {topic}: {code:?}"),
            }
        }
    }

    /// Stops node `id` (SIGTERM: a controlled shutdown that moves its leaders) and returns when
    /// the others no longer list it. The node starts again when the guard is dropped, or with
    /// `StoppedNode::start`. Waits while another test of this process has a node down.
    pub fn stop_node(&self, id: i32) -> StoppedNode<'_> {
        let lock = KAFKA_NODE_DOWN.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        self.harness(&["stop-node", "--id", &id.to_string()]).unwrap_or_else(|e| panic!("{e}"));
        StoppedNode { cluster: self, id, started: false, _lock: lock }
    }

    /// Starts a stopped node `id` with its config and data and waits (up to 2 minutes) until it
    /// serves, every node lists it, it is back in the ISR of its partitions and leads those it
    /// prefers. `StoppedNode` calls this; call it directly only for a node stopped otherwise.
    pub fn start_node(&self, id: i32) {
        self.harness(&["start-node", "--id", &id.to_string()]).unwrap_or_else(|e| panic!("{e}"));
    }

    /// The harness's arguments (after `python3`) that run tool `name` with `args`.
    fn tool_args(&self, name: &str, args: &[&str]) -> Vec<std::ffi::OsString> {
        let mut all =
            vec![Self::script().into_os_string(), "tool".into(), "--dir".into(), self.dir.clone().into()];
        all.extend([name, "--"].iter().chain(args).map(|arg| std::ffi::OsString::from(*arg)));
        all
    }

    /// Runs a Kafka tool with the cluster's jars: a main class, or a bin/*.sh name
    /// (kafka-topics, kafka-leader-election, kafka-console-producer, kafka-console-consumer,
    /// kafka-producer-perf-test, kafka-consumer-perf-test, kafka-configs, kafka-consumer-groups,
    /// kafka-metadata-quorum; see TOOLS in tests/kafka/cluster.py). Pass `--bootstrap-server`
    /// yourself (`self.bootstrap()`). Stdin is empty.
    pub fn tool(&self, name: &str, args: &[&str]) -> std::process::Output {
        Command::new("python3")
            .args(self.tool_args(name, args))
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run python3 {}: {e}", Self::script().display()))
    }

    /// `tool`, panicking unless it exits 0; returns its stdout.
    pub fn tool_ok(&self, name: &str, args: &[&str]) -> String {
        let output = self.tool(name, args);
        assert!(
            output.status.success(),
            "{name} {args:?}: {}\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn script() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/kafka/cluster.py")
    }

    fn harness(&self, args: &[&str]) -> Result<(), String> {
        let output = Command::new("python3")
            .arg(Self::script())
            .arg(args[0])
            .arg("--dir")
            .arg(&self.dir)
            .args(&args[1..])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run python3 {}: {e}", Self::script().display()))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "cluster.py {}: {}\n{}{}",
                args.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    }
}

/// A node of the shared Kafka cluster that a test stopped; started again on drop.
pub struct StoppedNode<'a> {
    cluster: &'a KafkaCluster,
    pub id: i32,
    started: bool,
    _lock: std::sync::MutexGuard<'static, ()>,
}

impl StoppedNode<'_> {
    /// Starts the node again and waits until it is back (see `KafkaCluster::start_node`).
    pub fn start(mut self) {
        self.started = true;
        self.cluster.start_node(self.id);
    }
}

impl Drop for StoppedNode<'_> {
    fn drop(&mut self) {
        if self.started {
            return;
        }
        if let Err(e) = self.cluster.harness(&["start-node", "--id", &self.id.to_string()]) {
            if std::thread::panicking() {
                eprintln!("{e}");
            } else {
                panic!("{e}");
            }
        }
    }
}

// TLS: certificates made by the tests with the openssl CLI, Debian's stunnel4 in front of a
// broker, and the rdkafka calls of the harness with client settings (`security.protocol`, ...).

/// Certificates for the TLS tests, made with the `openssl` CLI into a directory of their own under
/// CARGO_TARGET_TMPDIR and removed with it on drop (no key is ever committed). Every key is RSA in
/// unencrypted PKCS#8 PEM (`BEGIN PRIVATE KEY`); certificates last two days.
pub struct Certs {
    pub dir: PathBuf,
    /// The CA that signs the server, client and wrong-name certificates.
    pub ca: PathBuf,
    ca_key: PathBuf,
    /// For `DNS:localhost,IP:127.0.0.1`, signed by `ca`.
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    /// A client certificate (CN=kaos-test-client), signed by `ca`.
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// A CA unrelated to `ca`.
    pub wrong_ca: PathBuf,
    wrong_ca_key: PathBuf,
    /// A server certificate for `DNS:wrong.example` only, signed by `ca`.
    pub wrong_name_cert: PathBuf,
    pub wrong_name_key: PathBuf,
}

/// Which CA of a `Certs` signs a certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signer {
    Ca,
    WrongCa,
}

/// Certificate serial numbers (and `Certs` directories): unique in this test binary.
static CERT_SERIAL: AtomicU64 = AtomicU64::new(1000);

impl Certs {
    pub fn generate() -> Certs {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "certs-{}-{}",
            std::process::id(),
            CERT_SERIAL.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("certificate dir");
        let (ca, ca_key) = Certs::make_ca(&dir, "ca", "kaos-test-ca");
        let (wrong_ca, wrong_ca_key) = Certs::make_ca(&dir, "wrong-ca", "kaos-test-wrong-ca");
        let mut certs = Certs {
            dir,
            ca,
            ca_key,
            server_cert: PathBuf::new(),
            server_key: PathBuf::new(),
            client_cert: PathBuf::new(),
            client_key: PathBuf::new(),
            wrong_ca,
            wrong_ca_key,
            wrong_name_cert: PathBuf::new(),
            wrong_name_key: PathBuf::new(),
        };
        (certs.server_cert, certs.server_key) =
            certs.server("server", "DNS:localhost,IP:127.0.0.1", Signer::Ca);
        (certs.client_cert, certs.client_key) = certs.issue("client", "kaos-test-client", None, Signer::Ca);
        (certs.wrong_name_cert, certs.wrong_name_key) =
            certs.server("wrong-name", "DNS:wrong.example", Signer::Ca);
        certs
    }

    /// Issues `NAME.pem` and `NAME.key` in `dir`: a server certificate for `alt_names`
    /// (`DNS:host,IP:address,...`) signed by `signer`, with a serial of its own.
    pub fn server(&self, name: &str, alt_names: &str, signer: Signer) -> (PathBuf, PathBuf) {
        self.issue(name, "localhost", Some(alt_names), signer)
    }

    /// The serial number of a PEM certificate, as `openssl x509 -serial` prints it (`serial=...`).
    pub fn serial(cert: &std::path::Path) -> String {
        let output =
            openssl_in(std::path::Path::new("."), &["x509", "-noout", "-serial", "-in", &path_str(cert)]);
        String::from_utf8_lossy(&output).trim().to_owned()
    }

    /// The serial number of the certificate the TLS server at `address` presents to a new
    /// connection now (`openssl s_client`, bounded to 10 s), or None without a TLS answer.
    pub fn served_serial(address: &str) -> Option<String> {
        let client = Command::new("timeout")
            .args(["10", "openssl", "s_client", "-connect", address, "-servername", "localhost"])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .expect("openssl s_client");
        if !String::from_utf8_lossy(&client.stdout).contains("-----BEGIN CERTIFICATE-----") {
            return None;
        }
        let mut x509 = Command::new("openssl")
            .args(["x509", "-noout", "-serial"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("openssl x509");
        x509.stdin.take().unwrap().write_all(&client.stdout).unwrap();
        let output = x509.wait_with_output().unwrap();
        output.status.success().then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }

    fn make_ca(dir: &std::path::Path, name: &str, common_name: &str) -> (PathBuf, PathBuf) {
        let config = dir.join(format!("{name}.cnf"));
        std::fs::write(
            &config,
            "[req]\ndistinguished_name = dn\n[dn]\n[v3_ca]\nbasicConstraints = critical,CA:TRUE\n\
             keyUsage = critical,keyCertSign,cRLSign\nsubjectKeyIdentifier = hash\n",
        )
        .unwrap();
        let (cert, key) = (dir.join(format!("{name}.pem")), dir.join(format!("{name}.key")));
        let (subject, config, key_path, cert_path) =
            (format!("/CN={common_name}"), path_str(&config), path_str(&key), path_str(&cert));
        let mut args: Vec<&str> =
            "req -x509 -new -newkey rsa:2048 -nodes -days 2 -extensions v3_ca".split(' ').collect();
        args.extend(["-subj", &subject, "-config", &config, "-keyout", &key_path, "-out", &cert_path]);
        openssl_in(dir, &args);
        (cert, key)
    }

    /// A leaf certificate: a server one when `alt_names` is given, else a client one.
    fn issue(
        &self,
        name: &str,
        common_name: &str,
        alt_names: Option<&str>,
        signer: Signer,
    ) -> (PathBuf, PathBuf) {
        let dir = &self.dir;
        let (ca, ca_key) = match signer {
            Signer::Ca => (&self.ca, &self.ca_key),
            Signer::WrongCa => (&self.wrong_ca, &self.wrong_ca_key),
        };
        let (cert, key, csr, extensions, config) = (
            dir.join(format!("{name}.pem")),
            dir.join(format!("{name}.key")),
            dir.join(format!("{name}.csr")),
            dir.join(format!("{name}.ext")),
            dir.join(format!("{name}.cnf")),
        );
        std::fs::write(&config, "[req]\ndistinguished_name = dn\n[dn]\n").unwrap();
        let mut ext = String::from(
            "basicConstraints = critical,CA:FALSE\nkeyUsage = critical,digitalSignature,keyEncipherment\n\
             subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid\n",
        );
        match alt_names {
            Some(names) => {
                ext.push_str(&format!("extendedKeyUsage = serverAuth\nsubjectAltName = {names}\n"))
            }
            None => ext.push_str("extendedKeyUsage = clientAuth\n"),
        }
        std::fs::write(&extensions, ext).unwrap();
        let (subject, config, key_path, csr, cert_path) = (
            format!("/CN={common_name}"),
            path_str(&config),
            path_str(&key),
            path_str(&csr),
            path_str(&cert),
        );
        let mut args: Vec<&str> = "req -new -newkey rsa:2048 -nodes".split(' ').collect();
        args.extend(["-subj", &subject, "-config", &config, "-keyout", &key_path, "-out", &csr]);
        openssl_in(dir, &args);
        let (serial, ca, ca_key, extensions) = (
            CERT_SERIAL.fetch_add(1, Ordering::Relaxed).to_string(),
            path_str(ca),
            path_str(ca_key),
            path_str(&extensions),
        );
        let mut args: Vec<&str> = "x509 -req -days 2".split(' ').collect();
        args.extend(["-in", &csr, "-CA", &ca, "-CAkey", &ca_key, "-set_serial", &serial]);
        args.extend(["-extfile", &extensions, "-out", &cert_path]);
        openssl_in(dir, &args);
        (cert, key)
    }
}

impl Drop for Certs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn path_str(path: &std::path::Path) -> String {
    path.to_str().expect("a UTF-8 path").to_owned()
}

/// Runs the openssl CLI in `dir`; panics with its stderr unless it succeeds. Returns its stdout.
fn openssl_in(dir: &std::path::Path, args: &[&str]) -> Vec<u8> {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run openssl ({e}): install it (apt-get install openssl)"));
    assert!(output.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    output.stdout
}

/// Debian's stunnel4: terminates TLS on 127.0.0.1:`port` with a certificate and relays plaintext
/// to 127.0.0.1:`connect`. Runs in the foreground with a generated config; killed (by PID) on drop.
/// `make deps` installs it (apt) when missing.
pub struct Stunnel {
    process: Process,
    pub port: u16,
    config: PathBuf,
}

impl Stunnel {
    pub fn start(port: u16, connect: u16, cert: &std::path::Path, key: &std::path::Path) -> Stunnel {
        Stunnel::launch(port, connect, cert, key, None)
    }

    /// `start`, requiring of every client a certificate that `client_ca` signed (mutual TLS).
    pub fn start_verifying(
        port: u16,
        connect: u16,
        cert: &std::path::Path,
        key: &std::path::Path,
        client_ca: &std::path::Path,
    ) -> Stunnel {
        Stunnel::launch(port, connect, cert, key, Some(client_ca))
    }

    fn launch(
        port: u16,
        connect: u16,
        cert: &std::path::Path,
        key: &std::path::Path,
        client_ca: Option<&std::path::Path>,
    ) -> Stunnel {
        let found = Command::new("sh").args(["-c", "command -v stunnel4"]).output().expect("sh");
        assert!(
            found.status.success(),
            "stunnel4 is not installed: `make deps` installs it (apt-get install stunnel4)"
        );
        let config = log_dir().join(format!("stunnel-{port}-{}.conf", std::process::id()));
        let mut text = format!(
            "foreground = yes\npid =\ndebug = info\n[kafka]\naccept = 127.0.0.1:{port}\n\
             connect = 127.0.0.1:{connect}\ncert = {}\nkey = {}\n",
            cert.display(),
            key.display()
        );
        if let Some(ca) = client_ca {
            text.push_str(&format!("CAfile = {}\nrequireCert = yes\nverifyChain = yes\n", ca.display()));
        }
        std::fs::write(&config, text).unwrap();
        let mut process = Process::spawn(&format!("stunnel-{port}"), Command::new("stunnel4").arg(&config));
        wait_until("stunnel to listen", Duration::from_secs(20), || {
            if let Ok(Some(status)) = process.child.try_wait() {
                panic!(
                    "stunnel4 exited ({status}): {}",
                    std::fs::read_to_string(
                        log_dir().join(format!("stunnel-{port}-{}.log", std::process::id()))
                    )
                    .unwrap_or_default()
                );
            }
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        Stunnel { process, port, config }
    }

    /// What stunnel logged so far (each connection it accepted, each handshake that failed).
    pub fn log(&self) -> String {
        std::fs::read_to_string(log_dir().join(format!("stunnel-{}-{}.log", self.port, std::process::id())))
            .unwrap_or_default()
    }
}

impl Drop for Stunnel {
    fn drop(&mut self) {
        self.process.stop();
        let _ = std::fs::remove_file(&self.config);
    }
}

impl Tansu {
    /// A tansu on a free port that advertises `advertised_url` (e.g. `tcp://localhost:P`, a
    /// stunnel in front of it) instead of its own address.
    pub fn start_advertising(advertised_url: &str) -> Tansu {
        let port = free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let process = Process::spawn(
            &format!("tansu-{port}"),
            Command::new(tansu_bin())
                .args(["broker", "--listener-url", &url, "--advertised-listener-url", advertised_url])
                .args(["--storage-engine", "memory://tansu/"]),
        );
        wait_until("tansu to listen", Duration::from_secs(20), || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        Tansu { process, port }
    }
}

impl Kaos {
    /// Sends `signal` (`HUP`, `TERM`, ...) to the kaos process.
    pub fn signal(&self, signal: &str) {
        self.process.signal(signal);
    }

    /// Waits (up to `timeout`) until a line of kaos's log satisfies `matches`, and returns it.
    pub fn wait_for_log_line(&self, what: &str, timeout: Duration, matches: impl Fn(&str) -> bool) -> String {
        let mut found = None;
        let deadline = Instant::now() + timeout;
        while found.is_none() && Instant::now() < deadline {
            found = self.log().lines().find(|line| matches(line)).map(str::to_owned);
            if found.is_none() {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        found.unwrap_or_else(|| panic!("no line of kaos's log {what} after {timeout:?}:\n{}", self.log()))
    }
}

/// `create_topic` for a client with `settings` (TLS, ...).
pub fn create_topic_with(bootstrap: &str, settings: &[(&str, &str)], name: &str, partitions: i32) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap);
    for (key, value) in settings {
        config.set(*key, *value);
    }
    let admin: AdminClient<DefaultClientContext> = config.create().expect("admin client");
    let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = block_on(admin.create_topics([&topic], &options)).expect("create_topics");
    for result in results {
        result.unwrap_or_else(|(topic, code)| panic!("create {topic}: {code:?}"));
    }
}

/// `consume` for a client with `settings` (TLS, ...), giving up after `timeout`.
pub fn consume_with(
    bootstrap: &str,
    settings: &[(&str, &str)],
    topic: &str,
    group: &str,
    expected: usize,
    timeout: Duration,
) -> Vec<String> {
    consume_from(bootstrap, settings, topic, group, expected, timeout).1
}

/// A group consumer of `topic` with `settings`, and the values it read until `expected` arrived
/// or `timeout` passed.
fn consume_from(
    bootstrap: &str,
    settings: &[(&str, &str)],
    topic: &str,
    group: &str,
    expected: usize,
    timeout: Duration,
) -> (BaseConsumer, Vec<String>) {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "10")
        .set("check.crcs", "true");
    for (key, value) in settings {
        config.set(*key, *value);
    }
    let consumer: BaseConsumer = config.create().expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut values = Vec::with_capacity(expected);
    let deadline = Instant::now() + timeout;
    while values.len() < expected && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(message)) => {
                values.push(String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned())
            }
            Some(Err(e)) => panic!("consumer error: {e}"),
            None => {}
        }
    }
    (consumer, values)
}

// The TLS-only client listeners of the Kafka cluster (tests/kafka/cluster.py makes one per node
// unless started with --no-tls), and Kafka tools fed on stdin.

/// A Kafka cluster's TLS listeners, from its cluster.json.
pub struct KafkaTls {
    /// Every node's TLS listener, `127.0.0.1:P1,127.0.0.1:P2,...`.
    pub bootstrap: String,
    /// The CA (PEM) that signed the listeners' certificate (for IP:127.0.0.1 and DNS:localhost).
    pub ca: PathBuf,
    /// A Java client config for the TLS listeners (security.protocol=SSL, a PEM truststore).
    pub client_properties: PathBuf,
    /// (node id, TLS port), by node id.
    pub ports: Vec<(i32, u16)>,
}

impl KafkaCluster {
    /// The TLS listeners; panics for a cluster started with --no-tls (or by an older cluster.py).
    pub fn tls(&self) -> KafkaTls {
        let path = self.dir.join("cluster.json");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let info: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let bootstrap = info["tls_bootstrap"].as_str().unwrap_or_else(|| {
            panic!(
                "{} has no tls_bootstrap: this cluster has no TLS listeners (started with --no-tls?)",
                path.display()
            )
        });
        let file = |key: &str| {
            PathBuf::from(
                info["tls"][key].as_str().unwrap_or_else(|| panic!("tls.{key} in {}", path.display())),
            )
        };
        let ports = info["nodes"]
            .as_array()
            .expect("nodes in cluster.json")
            .iter()
            .map(|node| {
                (node["id"].as_i64().unwrap() as i32, node["tls_port"].as_u64().expect("tls_port") as u16)
            })
            .collect();
        KafkaTls {
            bootstrap: bootstrap.to_owned(),
            ca: file("ca"),
            client_properties: file("client_properties"),
            ports,
        }
    }

    /// `tool` with `input` on its stdin, killed (the tool's JVM too: `timeout` signals its whole
    /// process group) after `limit`.
    pub fn tool_with_input(
        &self,
        name: &str,
        args: &[&str],
        input: &str,
        limit: Duration,
    ) -> std::process::Output {
        let mut child = Command::new("timeout")
            .args(["-k", "5", &format!("{}", limit.as_secs().max(1))])
            .arg("python3")
            .args(self.tool_args(name, args))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run python3 {}: {e}", Self::script().display()));
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(input.as_bytes()).expect("the tool's stdin");
        drop(stdin);
        child.wait_with_output().expect("the tool's output")
    }
}

// The SASL client listeners of the Kafka cluster (tests/kafka/cluster.py): SASL (SASL_PLAINTEXT)
// on every node, and SASLTLS (SASL_SSL, the TLS listeners' certificate: `tls().ca`) unless started
// with --no-tls. Mechanisms PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 and OAUTHBEARER (Kafka's unsecured
// tokens: any `sub`, no password); users alice, bob and kaos log in with PLAIN and both SCRAMs;
// no authorizer.

impl KafkaCluster {
    fn no_sasl(&self) -> String {
        format!(
            "{}/cluster.json has no SASL listeners: started by an older tests/kafka/cluster.py? \
             Stop it and start a new one",
            self.dir.display()
        )
    }

    /// Every node's SASL_PLAINTEXT listener, `127.0.0.1:P1,127.0.0.1:P2,...`.
    pub fn sasl_bootstrap(&self) -> &str {
        self.sasl_bootstrap.as_deref().unwrap_or_else(|| panic!("{}", self.no_sasl()))
    }

    /// Every node's SASL_SSL listener; panics for a cluster started with --no-tls.
    pub fn sasl_tls_bootstrap(&self) -> &str {
        self.sasl_bootstrap();
        self.sasl_tls_bootstrap.as_deref().unwrap_or_else(|| {
            panic!(
                "{}/cluster.json has no sasl_tls_bootstrap: this cluster has no TLS listeners \
                 (started with --no-tls?)",
                self.dir.display()
            )
        })
    }

    /// The password of SASL user `user` (alice, bob or kaos) for PLAIN and SCRAM.
    /// A kaos that speaks TLS to its clients (its certificate from the returned `Certs`) and
    /// TLS to the SASL_SSL listeners, passing SASL through.
    pub fn kaos_with_tls_to_sasl_ssl(&self) -> (Kaos, Certs) {
        let certs = Certs::generate();
        let (cert, key, ca) =
            (path_str(&certs.server_cert), path_str(&certs.server_key), path_str(&self.tls().ca));
        let kaos = Kaos::start(
            self.sasl_tls_bootstrap(),
            &["--tls-cert", &cert, "--tls-key", &key, "--upstream-tls", "--upstream-ca", &ca],
        );
        (kaos, certs)
    }

    pub fn sasl_password(&self, user: &str) -> String {
        self.sasl_bootstrap();
        self.sasl["users"][user]
            .as_str()
            .unwrap_or_else(|| panic!("no SASL user {user} in cluster.json (users: {})", self.sasl["users"]))
            .to_owned()
    }

    /// A Java client config (for a tool's --command-config) logging in as alice with `mechanism`
    /// (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER) over SASL_PLAINTEXT, or SASL_SSL with
    /// `tls` (a PEM truststore of the cluster's CA).
    pub fn sasl_client_properties(&self, mechanism: &str, tls: bool) -> PathBuf {
        if tls {
            self.sasl_tls_bootstrap();
        } else {
            self.sasl_bootstrap();
        }
        let key = if tls { "tls_client_properties" } else { "client_properties" };
        PathBuf::from(self.sasl[key][mechanism].as_str().unwrap_or_else(|| {
            panic!("no sasl.{key}.{mechanism} in cluster.json (mechanisms: {})", self.sasl["mechanisms"])
        }))
    }
}

/// Held while a test needs every node of the shared Kafka cluster up (all brokers listed, leaders
/// where they prefer to be): no other test of this process stops a node meanwhile.
pub struct NodesUp {
    _lock: std::sync::MutexGuard<'static, ()>,
}

impl KafkaCluster {
    /// Waits while another test of this process has a node down, then keeps every node up until
    /// the returned guard is dropped (or handed to `stop_node_held`).
    pub fn hold_nodes_up(&self) -> NodesUp {
        NodesUp { _lock: KAFKA_NODE_DOWN.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) }
    }

    /// `stop_node` for a test that already holds every node up: it stops node `id` at once,
    /// without letting another test stop one in between.
    pub fn stop_node_held(&self, held: NodesUp, id: i32) -> StoppedNode<'_> {
        self.harness(&["stop-node", "--id", &id.to_string()]).unwrap_or_else(|e| panic!("{e}"));
        StoppedNode { cluster: self, id, started: false, _lock: held._lock }
    }
}

// --- librdkafka clients that report what they saw (the Kafka cluster tests) -----------------

/// A client context that counts deliveries and remembers every broker address librdkafka
/// reports in its statistics: (node id, host:port).
#[derive(Default)]
pub struct Observed {
    pub ok: AtomicU64,
    pub failed: AtomicU64,
    pub errors: Mutex<Vec<String>>,
    pub brokers: Mutex<BTreeSet<(i32, String)>>,
}

impl ClientContext for Observed {
    fn stats(&self, statistics: Statistics) {
        let mut brokers = self.brokers.lock().unwrap();
        for broker in statistics.brokers.values() {
            if !broker.nodename.is_empty() {
                brokers.insert((broker.nodeid, broker.nodename.clone()));
            }
        }
    }
}

impl ProducerContext for Observed {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => self.ok.fetch_add(1, Ordering::Relaxed),
            Err((error, _)) => {
                self.errors.lock().unwrap().push(error.to_string());
                self.failed.fetch_add(1, Ordering::Relaxed)
            }
        };
    }
}

impl ConsumerContext for Observed {}

pub fn config(bootstrap: &str, settings: &[(&str, &str)]) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap);
    for (key, value) in settings {
        config.set(*key, *value);
    }
    config
}

pub fn consumer(bootstrap: &str, group: &str, settings: &[(&str, &str)]) -> BaseConsumer<Observed> {
    let mut config = config(bootstrap, settings);
    config
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "10")
        .set("check.crcs", "true");
    config.create_with_context(Observed::default()).expect("consumer")
}

/// Sends `{prefix}-0`, `{prefix}-1`, ... (keyed by value; spread over `partitions` in turn, or
/// as the partitioner likes) every 2 ms until `stop` or `limit`, then flushes: how many it sent.
pub fn produce_until_stopped(
    producer: Arc<BaseProducer<Observed>>,
    topic: String,
    prefix: &'static str,
    partitions: Option<i32>,
    stop: Arc<AtomicBool>,
    limit: Duration,
) -> thread::JoinHandle<u64> {
    thread::spawn(move || {
        let mut sent = 0u64;
        let deadline = Instant::now() + limit;
        while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
            let value = format!("{prefix}-{sent}");
            let mut record = BaseRecord::to(&topic).key(&value).payload(&value);
            if let Some(partitions) = partitions {
                record = record.partition((sent % partitions as u64) as i32);
            }
            while let Err((_, unsent)) = producer.send(record) {
                producer.poll(Duration::from_millis(10));
                record = unsent;
            }
            sent += 1;
            producer.poll(Duration::ZERO);
            thread::sleep(Duration::from_millis(2));
        }
        producer.flush(Duration::from_secs(60)).expect("flush");
        sent
    })
}

/// A fresh client's first Metadata through kaos: how long it took, and the brokers it was told.
pub fn bootstrap_once(kaos: &Kaos) -> Result<(Duration, Vec<i32>), KafkaError> {
    let started = Instant::now();
    let client: BaseConsumer = config(&kaos.bootstrap(), &[]).create()?;
    let metadata = client.fetch_metadata(None, Duration::from_secs(15))?;
    let mut brokers: Vec<i32> = metadata.brokers().iter().map(|b| b.id()).collect();
    brokers.sort();
    Ok((started.elapsed(), brokers))
}
