//! Test harness: a real tansu broker and a real kaos process per test, on free loopback ports,
//! stopped (by PID) when the test ends, pass or fail.

#![allow(dead_code)] // each test binary uses a different part of the harness

use std::collections::{BTreeSet, HashSet};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use kafka_protocol::messages::{ApiKey, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable};
use kaos_testkit::frames::request_frame;
use rdkafka::ClientConfig;
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};

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
        // The shards bind the bootstrap port after the admin API is up.
        wait_until("kaos bootstrap port", Duration::from_secs(20), || {
            TcpStream::connect(("127.0.0.1", port_start)).is_ok()
        });
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
        let path = format!("/tenant/1-1/user/test@conduktor.io/feature/{feature}");
        let (status, answer) = http(self.admin_port, "POST", &path, body).expect("admin API");
        assert_eq!(status, 200, "POST {path}: {answer}");
        serde_json::from_str(&answer).expect("JSON answer")
    }

    /// Deletes a rule; panics unless it existed.
    pub fn delete_rule(&self, feature: &str, api: &str, direction: &str) {
        let path = format!(
            "/tenant/1-1/user/test@conduktor.io/feature/{feature}/apiKeys/{api}/direction/{direction}"
        );
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
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "10")
        .set("check.crcs", "true")
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut values = Vec::with_capacity(expected);
    let deadline = Instant::now() + Duration::from_secs(90);
    while values.len() < expected && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(message)) => {
                values.push(String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned())
            }
            Some(Err(e)) => panic!("consumer error: {e}"),
            None => {}
        }
    }
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
