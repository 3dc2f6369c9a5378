//! One shard: a glommio executor pinned to nothing but its own thread. It binds every proxy port
//! (SO_REUSEPORT lets the kernel spread connections over the shards), opens an upstream
//! connection for each client it accepts, and owns everything on that path: no cross-shard
//! hand-off, no locks.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use futures_lite::{AsyncRead, AsyncWrite};
use futures_rustls::{TlsAcceptor, TlsConnector};
use glommio::net::{TcpListener, TcpStream};
use glommio::sync::Gate;
use glommio::timer::{sleep, timeout};

use crate::chaos::network::LinkFault;
use crate::chaos::{Effect, Rule};
use crate::cluster::dial;
use crate::config::Config;
use crate::events::{Event, Origin};
use crate::logging::Burst;
use crate::metrics::{LatencyRecorder, ShardMetrics};
use crate::proxy::authenticator;
use crate::proxy::connection::{ClientSocket, Connection, End, peer_name};
use crate::proxy::rewrite::{BrokerPorts, Learned, SeenBroker};
use crate::sasl::login::Credentials;
use crate::shared::Shared;
use crate::wire::TopicNames;
use crate::{sasl, tls};
use tracing::{debug, error, info, warn};

const HOUSEKEEPING_EVERY: Duration = Duration::from_millis(100);
const PUBLISH_LATENCY_EVERY: u32 = 10;
const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a broker address that refused a connection is tried after the others.
const DIAL_BACKOFF: Duration = Duration::from_secs(5);
/// A peer that has not finished its TLS handshake by then is dropped.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A broker that has not accepted kaos's SASL login by then is taken as refusing it.
const UPSTREAM_LOGIN_TIMEOUT: Duration = Duration::from_secs(10);
/// The first request of a client kaos refuses is read whole up to this size (an ApiVersions
/// request is about 50 bytes).
const MAX_REFUSED_REQUEST: usize = 64 * 1024;

/// Which upstream a proxy port leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Bootstrap,
    Broker(i32),
}

pub struct Shard {
    pub id: usize,
    pub config: Arc<Config>,
    pub shared: Arc<Shared>,
    pub metrics: Arc<ShardMetrics>,
    pub latency: LatencyRecorder,
    pub ports: BrokerPorts,
    pub drain: Drain,
    /// Every served connection holds a pass; closing the gate waits for them all.
    connections: Gate,
    /// Real broker addresses by node id, as this shard last learned them.
    brokers: RefCell<BTreeMap<i32, String>>,
    /// Node ids this shard has a listener for.
    listening: RefCell<BTreeMap<i32, u16>>,
    topology_generation: Cell<u64>,
    next_bootstrap: Cell<usize>,
    /// When a broker address last refused this shard: tried after the others for a while.
    recently_refused: RefCell<HashMap<String, Instant>>,
    /// Failures that come in floods (out of file descriptors, a broker down), logged once a burst.
    accept_failures: RefCell<Burst>,
    upstream_failures: RefCell<Burst>,
    handshake_failures: RefCell<Burst>,
}

/// How long a burst of the same failure is counted before its count is logged.
const BURST_WINDOW: Duration = Duration::from_secs(1);

/// Why a shard could not serve.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {host}:{port}: {source}")]
pub struct ListenError {
    host: String,
    port: u16,
    source: std::io::Error,
}

/// Why no upstream connection could be opened for a client.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("broker {0} has no known address")]
    UnknownBroker(i32),
    #[error("{}", .0.iter().map(|(address, e)| format!("{address}: {e}")).collect::<Vec<_>>().join("; "))]
    Unreachable(Vec<(String, std::io::Error)>),
}

/// Runs one shard until shutdown has drained its connections. `started` is called once the
/// shard listens on the bootstrap port, so that kaos reports ready only with every shard serving.
pub async fn run(
    id: usize,
    config: Arc<Config>,
    shared: Arc<Shared>,
    started: impl FnOnce(),
) -> Result<(), ListenError> {
    let shard = Rc::new(Shard {
        id,
        metrics: shared.shard_metrics[id].clone(),
        ports: BrokerPorts::new(config.advertised_host(), config.port_start),
        config,
        shared,
        latency: LatencyRecorder::default(),
        drain: Drain::default(),
        connections: Gate::new(),
        brokers: RefCell::default(),
        listening: RefCell::default(),
        topology_generation: Cell::new(u64::MAX),
        next_bootstrap: Cell::new(0),
        recently_refused: RefCell::default(),
        accept_failures: RefCell::new(Burst::new(BURST_WINDOW)),
        handshake_failures: RefCell::new(Burst::new(BURST_WINDOW)),
        upstream_failures: RefCell::new(Burst::new(BURST_WINDOW)),
    });
    shard.listen(Target::Bootstrap, shard.config.port_start).map_err(|source| ListenError {
        host: shard.config.bind_host.clone(),
        port: shard.config.port_start,
        source,
    })?;
    glommio::spawn_local(housekeeping(shard.clone())).detach();
    started();
    if let Some(after) = shard.config.test_panic_shard_after
        && id + 1 == shard.shared.shard_metrics.len()
    {
        glommio::spawn_local(async move {
            sleep(after).await;
            panic!("shard {id} panics as --test-panic-shard-after asked");
        })
        .detach();
    }
    shard.drain.wait_started(shard.drain.key()).await;
    shard.finish_drain().await;
    Ok(())
}

/// The shard's topic names are those its connections' Metadata responses showed.
impl TopicNames for Shard {
    fn name_by_id(&self, id: &[u8; 16]) -> Option<String> {
        self.shared.topic_names.load().get(id).cloned()
    }
}

/// Follows the cluster topology, publishes latency, and notices shutdown.
async fn housekeeping(shard: Rc<Shard>) {
    let mut ticks = 0u32;
    while !shard.drain.started() {
        if shard.shared.shutting_down.load(Ordering::Relaxed) {
            shard.drain.start();
            break;
        }
        let topology = shard.shared.topology.load_full();
        if topology.generation != shard.topology_generation.get() {
            shard.topology_generation.set(topology.generation);
            let seen: Vec<_> = topology
                .brokers
                .iter()
                .map(|(&node_id, address)| SeenBroker { node_id, address: address.clone() })
                .collect();
            shard.learn_brokers(&seen);
        }
        shard.report_bursts();
        shard.shared.liveness.beat(shard.id);
        ticks += 1;
        if ticks.is_multiple_of(PUBLISH_LATENCY_EVERY) {
            shard.latency.publish(&shard.metrics);
        }
        sleep(HOUSEKEEPING_EVERY).await;
    }
    shard.latency.publish(&shard.metrics);
}

impl Shard {
    /// A fault acted (or, in a dry run, would have): counted in the metrics, unless a dry run,
    /// and handed to the event log.
    pub fn record_effect(&self, rule: &Rule, effect: &Effect, origin: Origin<'_>) {
        if !rule.common.dry_run {
            self.metrics.count_effect(rule.spec, effect);
        }
        self.shared.events.record(Event::new(rule, effect.clone(), origin));
    }

    /// Takes in what a rewritten response revealed about the cluster.
    pub fn learn(self: &Rc<Shard>, learned: &Learned) {
        self.learn_brokers(&learned.brokers);
        // Shared by every shard: a client's Metadata and its Produce requests often travel on
        // connections that different shards accepted. Metadata is rare; copying the map is fine.
        let known = self.shared.topic_names.load();
        if learned.topics.iter().any(|(id, name)| known.get(id) != Some(name)) {
            self.shared.topic_names.rcu(|names| {
                let mut names = HashMap::clone(names);
                names.extend(learned.topics.iter().cloned());
                names
            });
        }
    }

    /// Logs how often a failure repeated once its burst is over.
    fn report_bursts(&self) {
        let now = Instant::now();
        if let Some(repeats) = self.accept_failures.borrow_mut().closed(now) {
            warn!(repeats, "accepting connections failed {repeats} more times in the last second");
        }
        if let Some(repeats) = self.upstream_failures.borrow_mut().closed(now) {
            warn!(repeats, "{repeats} more clients closed in the last second: upstream unreachable");
        }
        if let Some(repeats) = self.handshake_failures.borrow_mut().closed(now) {
            warn!(repeats, "{repeats} more TLS handshakes failed in the last second");
        }
    }

    /// The node id of the broker at `address`, if this shard knows it.
    fn node_at(&self, address: &str) -> Option<i32> {
        self.brokers.borrow().iter().find(|(_, known)| known.as_str() == address).map(|(&id, _)| id)
    }

    /// Records real broker addresses and opens a port for each broker this shard has not served
    /// yet. Runs before a rewritten response leaves, so a client never dials a port that is not
    /// open.
    pub fn learn_brokers(self: &Rc<Shard>, seen: &[SeenBroker]) {
        for broker in seen {
            let known = self.brokers.borrow_mut().insert(broker.node_id, broker.address.clone());
            if known.as_deref() != Some(broker.address.as_str()) {
                debug!(node = broker.node_id, address = %broker.address, "broker address learned");
            }
            if self.listening.borrow().contains_key(&broker.node_id) {
                continue;
            }
            let Some(port) = self.ports.port_for(broker.node_id) else {
                error!(
                    node = broker.node_id,
                    port_start = self.config.port_start,
                    "broker cannot be given a kaos port (port-start + 1 + node id > 65535)"
                );
                continue;
            };
            match self.listen(Target::Broker(broker.node_id), port) {
                Ok(()) => {
                    self.listening.borrow_mut().insert(broker.node_id, port);
                    if self.id == 0 {
                        info!(
                            node = broker.node_id,
                            address = %broker.address,
                            "broker {} is served on {}:{port}",
                            broker.node_id,
                            self.ports.advertised_host.as_str()
                        );
                    }
                }
                Err(e) => error!(node = broker.node_id, port, error = %e, "cannot listen for broker"),
            }
        }
    }

    fn listen(self: &Rc<Shard>, target: Target, port: u16) -> std::io::Result<()> {
        let listener = TcpListener::bind((self.config.bind_host.as_str(), port))?;
        let shard = self.clone();
        glommio::spawn_local(async move {
            let drain_key = shard.drain.key();
            loop {
                let accepted = futures_lite::future::or(async { Some(listener.accept().await) }, async {
                    shard.drain.wait_started(drain_key).await;
                    None
                })
                .await;
                match accepted {
                    None => break,
                    Some(Ok(client)) => {
                        glommio::spawn_local(serve(shard.clone(), client, target)).detach();
                    }
                    Some(Err(e)) => {
                        if let Some(before) = shard.accept_failures.borrow_mut().occur(Instant::now()) {
                            warn!(
                                port,
                                error = %e,
                                repeats_since_last_line = before,
                                "accept failed (repeats within a second are counted)"
                            );
                        }
                        sleep(Duration::from_millis(10)).await;
                    }
                }
            }
        })
        .detach();
        Ok(())
    }

    /// Connects to the broker behind `target`; returns the stream, the broker's node id, and the
    /// address dialled (whose host a TLS broker is verified under).
    async fn connect_upstream(
        &self,
        target: Target,
    ) -> Result<(TcpStream, Option<i32>, String), UpstreamError> {
        let candidates: Vec<String> = match target {
            Target::Broker(node_id) => {
                let known = self.brokers.borrow().get(&node_id).cloned();
                vec![known.ok_or(UpstreamError::UnknownBroker(node_id))?]
            }
            // Any live broker will do: the bootstrap servers first, then the brokers learned,
            // those that failed recently (here, or for the cluster watcher) last.
            Target::Bootstrap => {
                let first = self.next_bootstrap.get();
                self.next_bootstrap.set(first.wrapping_add(1));
                let topology = self.shared.topology.load();
                let now = Instant::now();
                let refused = self.recently_refused.borrow();
                let is_down = |server: &str| {
                    topology.is_unreachable(server)
                        || refused.get(server).is_some_and(|at| now.duration_since(*at) < DIAL_BACKOFF)
                };
                dial::any_broker(&self.config.bootstrap_servers, first, &self.brokers.borrow(), is_down)
            }
        };
        let mut failures = Vec::new();
        for address in candidates {
            match connect_any_address(&address).await {
                Err(e) => {
                    self.recently_refused.borrow_mut().insert(address.clone(), Instant::now());
                    failures.push((address, e));
                }
                Ok(stream) => {
                    self.recently_refused.borrow_mut().remove(&address);
                    let node = match target {
                        Target::Broker(node_id) => Some(node_id),
                        Target::Bootstrap => self.node_at(&address),
                    };
                    return Ok((stream, node, address));
                }
            }
        }
        Err(UpstreamError::Unreachable(failures))
    }

    /// Waits, up to `--shutdown-timeout`, for every connection to finish its requests in flight.
    async fn finish_drain(&self) {
        if timeout(self.config.shutdown_timeout, self.connections.close()).await.is_err() {
            let open =
                self.metrics.connections_opened.get().saturating_sub(self.metrics.connections_closed.get());
            warn!(connections = open, "shutdown timeout: closing connections with requests in flight");
        }
    }
}

/// Connects to the first address `server` (`host:port`) resolves to now that accepts. A name is
/// looked up on glommio's blocking thread, never on the shard's reactor.
async fn connect_any_address(server: &str) -> std::io::Result<TcpStream> {
    let addresses = match server.parse::<SocketAddr>() {
        Ok(address) => vec![address],
        Err(_) => {
            let name = server.to_owned();
            glommio::executor().spawn_blocking(move || dial::resolve(&name)).await?
        }
    };
    let mut refused = None;
    for address in addresses {
        match TcpStream::connect_timeout(address, UPSTREAM_CONNECT_TIMEOUT).await {
            Ok(stream) => return Ok(stream),
            Err(why) => refused = Some(std::io::Error::from(why)),
        }
    }
    Err(refused.unwrap_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no address")))
}

async fn serve(shard: Rc<Shard>, client: TcpStream, target: Target) {
    // A client that connects once the drain has begun is closed at once.
    let Ok(_open) = shard.connections.enter() else { return };
    shard.metrics.connections_opened.add(1);
    let peer = peer_name(&client);
    let socket =
        ClientSocket { address: client.peer_addr().ok().map(|address| address.ip()), fd: client.as_raw_fd() };
    let node = match target {
        Target::Broker(node_id) => Some(node_id),
        Target::Bootstrap => None,
    };
    if let Some(rule) = shard.shared.rules.load().refusing(node, socket.address, &mut fastrand::Rng::new()) {
        let origin = Origin { client: socket.address, broker: node, ..Origin::default() };
        shard.record_effect(rule, &Effect::Network(LinkFault::Refuse), origin);
        if !rule.common.dry_run {
            debug!(%peer, ?target, "refused by a refuse-connections rule");
            shard.metrics.connections_closed.add(1);
            return;
        }
    }
    let _ = client.set_nodelay(true);
    // The client's handshake comes first: a peer that never completes it (a wrong CA, no
    // certificate under mutual TLS, a port scan) costs no broker connection.
    match shard.shared.tls.clients.as_ref().map(|clients| TlsAcceptor::from(clients.current())) {
        None => Box::pin(relay_to_broker(&shard, (client, socket), target, &peer)).await,
        Some(acceptor) => {
            if let Some(client) = Box::pin(handshake(&shard, "client", &peer, acceptor.accept(client))).await
            {
                Box::pin(relay_to_broker(&shard, (client, socket), target, &peer)).await;
            }
        }
    }
    shard.metrics.connections_closed.add(1);
}

/// Connects the client to its broker, over TLS where the flags ask for it, and relays until one
/// side ends. Each combination of plain and TLS streams is its own instance of the generic
/// connection, so a plaintext one runs no TLS code.
async fn relay_to_broker<C: AsyncRead + AsyncWrite + Unpin>(
    shard: &Rc<Shard>,
    (client, socket): (C, ClientSocket),
    target: Target,
    peer: &str,
) {
    let (broker, node, address) = match shard.connect_upstream(target).await {
        Ok(connected) => connected,
        Err(why) => {
            shard.metrics.upstream_connect_failures.add(1);
            if let Some(before) = shard.upstream_failures.borrow_mut().occur(Instant::now()) {
                warn!(%peer, ?target, error = %why, repeats_since_last_line = before, "closing client: upstream unreachable");
            }
            return;
        }
    };
    let _ = broker.set_nodelay(true);
    let upstream = peer_name(&broker);
    let client = (client, socket);
    // Each combination of streams, and each TLS handshake, is boxed on its own: inline, the
    // largest (TLS on both sides) would set the size of every connection's task, plaintext
    // ones included.
    let end = match shard.shared.tls.upstream.clone().map(TlsConnector::from) {
        None => Box::pin(relay(shard, client, (broker, node), &address)).await,
        Some(connector) => {
            let Some(broker) = Box::pin(connect_tls(shard, connector, broker, &address)).await else {
                return;
            };
            Box::pin(relay(shard, client, (broker, node), &address)).await
        }
    };
    log_end(&shard.metrics, end, peer, &upstream);
}

/// Logs kaos in to the broker where the flags ask for it, then relays.
async fn relay<C, B>(
    shard: &Rc<Shard>,
    (client, socket): (C, ClientSocket),
    (mut broker, node): (B, Option<i32>),
    address: &str,
) -> End
where
    C: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    if let Some(credentials) = &shard.shared.upstream_sasl
        && let Err(why) = log_in(shard, &mut broker, credentials, address).await
    {
        refuse_client(client).await;
        return End::UpstreamLoginFailed(why);
    }
    Connection::new(shard, client, socket, broker, node, shard.drain.key()).run().await
}

/// Logs kaos in to one broker connection. A failure is logged once per broker and shown by
/// `/ready` until a login succeeds again.
async fn log_in<B: AsyncRead + AsyncWrite + Unpin>(
    shard: &Rc<Shard>,
    broker: &mut B,
    credentials: &Credentials,
    address: &str,
) -> Result<(), String> {
    let shared = &shard.shared;
    let outcome =
        timeout(UPSTREAM_LOGIN_TIMEOUT, async { Ok(sasl::login::login(broker, credentials).await) }).await;
    let why = match outcome {
        Ok(Ok(lifetime)) => {
            if shared.upstream_login_failure.load().is_some() {
                shared.upstream_login_failure.store(None);
                info!(broker = address, "kaos logged in to the broker again");
            }
            if let Some(lifetime) = lifetime
                && shared.said_once.first(format!("session lifetime {address}"))
            {
                warn!(
                    broker = address,
                    ?lifetime,
                    "the broker ends kaos's SASL sessions after {lifetime:?} (connections.max.reauth.ms); kaos does not authenticate again, so the broker closes each connection then and its client reconnects"
                );
            }
            return Ok(());
        }
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!("no login within {UPSTREAM_LOGIN_TIMEOUT:?}"),
    };
    shard.metrics.upstream_login_failures.add(1);
    let failure = credentials.refused_by(address, &why);
    if shared.said_once.first(format!("login {address}")) {
        error!(broker = address, user = %credentials.username, mechanism = credentials.mechanism.name(), error = %why, "kaos cannot log in to the broker: its clients get SASL_AUTHENTICATION_FAILED (said once per broker)");
    }
    shared.upstream_login_failure.store(Some(Arc::new(failure.clone())));
    Err(failure)
}

/// Answers a client whose broker would not accept kaos: an ApiVersions request gets
/// SASL_AUTHENTICATION_FAILED (which clients log and report), anything else a closed connection.
async fn refuse_client<C: AsyncRead + AsyncWrite + Unpin>(mut client: C) {
    use futures_lite::{AsyncReadExt, AsyncWriteExt};
    let first_request = timeout(UPSTREAM_LOGIN_TIMEOUT, async {
        let mut prefix = [0u8; 4];
        client.read_exact(&mut prefix).await?;
        let length = usize::try_from(i32::from_be_bytes(prefix)).unwrap_or(0).min(MAX_REFUSED_REQUEST);
        let mut body = vec![0u8; length];
        client.read_exact(&mut body).await?;
        Ok(body)
    })
    .await;
    let Ok(body) = first_request else { return };
    if let Some(answer) = authenticator::login_refused(&body) {
        let _ = client.write_all(&answer).await;
        let _ = client.flush().await;
    }
    let _ = client.close().await;
}

async fn connect_tls(
    shard: &Rc<Shard>,
    connector: TlsConnector,
    broker: TcpStream,
    address: &str,
) -> Option<futures_rustls::client::TlsStream<TcpStream>> {
    let name = match tls::server_name(address) {
        Ok(name) => name,
        Err(why) => {
            shard.metrics.connections_rejected.add(1);
            warn!(broker = address, error = %why, "closing client: cannot verify the broker's TLS certificate");
            return None;
        }
    };
    handshake(shard, "broker", address, connector.connect(name, broker)).await
}

/// Runs one TLS handshake, bounded in time; a failure closes the connection with a log line that
/// names the peer and the reason.
async fn handshake<S>(
    shard: &Rc<Shard>,
    side: &'static str,
    peer: &str,
    handshake: impl std::future::Future<Output = std::io::Result<S>>,
) -> Option<S> {
    let outcome = timeout(TLS_HANDSHAKE_TIMEOUT, async { Ok(handshake.await) }).await;
    let why = match outcome {
        Ok(Ok(stream)) => return Some(stream),
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!("no handshake within {TLS_HANDSHAKE_TIMEOUT:?}"),
    };
    shard.metrics.connections_rejected.add(1);
    // A client that trusts the wrong CA retries every few milliseconds: a line per burst.
    if let Some(before) = shard.handshake_failures.borrow_mut().occur(Instant::now()) {
        warn!(side, peer, error = %why, repeats_since_last_line = before, "closing connection: TLS handshake with the {side} failed");
    }
    None
}

fn log_end(metrics: &ShardMetrics, end: End, peer: &str, upstream: &str) {
    match end {
        End::ClientClosed => debug!(%peer, %upstream, "client closed; broker side closed"),
        End::Drained => debug!(%peer, %upstream, "drained for shutdown"),
        End::ClosedByFault(fault) => debug!(%peer, %upstream, "closed by a {fault} rule"),
        End::ResetByFault => debug!(%peer, %upstream, "reset by a reset-peer rule"),
        End::BrokerClosed => info!(%peer, %upstream, "broker closed the connection; client closed"),
        End::ClientMalformed(why) => {
            metrics.connections_rejected.add(1);
            warn!(%peer, %upstream, error = %why, "closing client: it sent a malformed frame");
        }
        End::BrokerMalformed(why) => {
            metrics.connections_rejected.add(1);
            warn!(%peer, %upstream, error = %why, "closing client: the broker sent a response kaos cannot relay");
        }
        End::Io(e) => debug!(%peer, %upstream, error = %e, "connection ended"),
        End::UpstreamLoginFailed(why) => {
            debug!(%peer, %upstream, error = %why, "client refused: the broker did not accept kaos's login")
        }
    }
}

/// Graceful shutdown on one shard: a flag, and the tasks to wake when it goes up (the gate in
/// `Shard::connections` counts the connections still open).
#[derive(Debug, Default)]
pub struct Drain {
    started: Cell<bool>,
    watchers: RefCell<HashMap<u64, Waker>>,
    next_key: Cell<u64>,
}

impl Drain {
    /// A key for `watch`, unique on this shard.
    pub fn key(&self) -> u64 {
        let key = self.next_key.get();
        self.next_key.set(key + 1);
        key
    }

    pub fn started(&self) -> bool {
        self.started.get()
    }

    pub fn start(&self) {
        self.started.set(true);
        for (_, waker) in self.watchers.borrow_mut().drain() {
            waker.wake();
        }
    }

    /// Wakes this task when the drain starts.
    pub fn watch(&self, key: u64, waker: &Waker) {
        self.watchers.borrow_mut().insert(key, waker.clone());
    }

    pub fn unwatch(&self, key: u64) {
        self.watchers.borrow_mut().remove(&key);
    }

    async fn wait_started(&self, key: u64) {
        std::future::poll_fn(|cx| {
            if self.started() {
                self.unwatch(key);
                Poll::Ready(())
            } else {
                self.watch(key, cx.waker());
                Poll::Pending
            }
        })
        .await
    }
}
