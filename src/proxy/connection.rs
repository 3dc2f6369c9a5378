//! One proxied client connection: a single task drives both lanes (client to broker, broker to
//! client) from one `poll`, so the in-flight queue needs no sharing and a frame costs no wake-up
//! of a second task. Chaos enters here: the request router asks the rules what to do with each
//! request, and the in-flight queue keeps every response, local or relayed, in request order.

use std::cell::RefCell;
use std::future::{Future, poll_fn};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::RawFd;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, Cache};
use bytes::{Bytes, BytesMut};
use futures_lite::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;
use glommio::timer::Timer;
use kafka_protocol::messages::{ApiKey, ProduceRequest};

use super::authenticator::{ClientLogin, Gate};
use super::identity::Identity;
use super::inflight::{Answer, InFlight, InFlightQueue, Reply};
use super::lane::{Emit, Lane, LaneError, ProtocolError, Router, Verdict};
use super::link::LinkFaults;
use super::pace::Pacer;
use super::rewrite::{self, Learned};
use crate::chaos::alter::AnswerChanges;
use crate::chaos::network::ConnectionSoFar;
use crate::chaos::plan::{Plan, Scope, SeededTurns};
use crate::chaos::scope::ClientScopes;
use crate::chaos::{Effect, Latency, RuleSet, alter, respond};
use crate::events::Origin;
use crate::shard::Shard;
use crate::wire::batches::produce_batches;
use crate::wire::codec::decode_request;
use crate::wire::frame::{self, LENGTH_PREFIX, ProduceTopics, REQUEST_PREFIX, RESPONSE_PREFIX};
use crate::wire::{RequestPrefix, TopicNames, with_length_prefix};
use socket2_04::SockRef;
use tracing::warn;

/// Iterations of the connection loop before it yields to other tasks on the shard.
const BUDGET: usize = 32;

/// How often a black-holed connection (timeout), which no traffic wakes, looks whether its rule
/// is still there.
const RULE_RECHECK: Duration = Duration::from_millis(100);
/// How far into a Produce request kaos reads for its first topic before gathering it whole.
const TOPIC_PEEK_LIMIT: usize = 64 * 1024;

/// Why a connection ended.
#[derive(Debug)]
pub enum End {
    ClientClosed,
    BrokerClosed,
    Drained,
    /// A fault closed it: no-response's `closeAfterMs`, timeout, limit-data or slow-close.
    ClosedByFault(&'static str),
    /// A fault reset it (reset-peer): the client got an RST.
    ResetByFault,
    /// The client sent something that is not Kafka, or a frame over the limit.
    ClientMalformed(LaneError),
    /// The broker sent something kaos cannot relay safely.
    BrokerMalformed(LaneError),
    /// The broker refused kaos's SASL login, so the client was refused too.
    UpstreamLoginFailed(String),
    Io(std::io::Error),
}

/// The client's TCP socket, beyond its stream: where it connects from, and its descriptor, for
/// the socket options a fault needs (reset-peer's RST).
#[derive(Debug, Clone, Copy)]
pub struct ClientSocket {
    pub address: Option<IpAddr>,
    pub fd: RawFd,
}

/// `C` and `B` are the client and broker streams: plain TCP or TLS over it, each combination its
/// own instance, so that plaintext carries no TLS code.
pub struct Connection<'a, C, B> {
    shard: &'a Rc<Shard>,
    client: C,
    client_fd: RawFd,
    broker: B,
    requests: Lane,
    responses: Lane,
    in_flight: InFlightQueue,
    request_side: RequestSide<'a>,
    identity: Identity<'a>,
    gathering: Option<Gathering>,
    timer: Option<(Instant, Timer)>,
    drain_key: u64,
    watching_drain: bool,
}

/// What the request router keeps between frames.
struct RequestSide<'a> {
    rules: Cache<&'a ArcSwap<RuleSet>, Arc<RuleSet>>,
    /// Which client-scoped rules this client is in, decided once per snapshot and client id.
    clients: ClientScopes,
    /// How far each seeded rule got on this connection, so that its choices replay.
    turns: RefCell<SeededTurns>,
    /// The client's login to kaos, where `--client-users` asks for one.
    login: Option<ClientLogin<'a>>,
    node: Option<i32>,
    rng: fastrand::Rng,
    /// The request being gathered whole, and why.
    pending: Option<Pending>,
    /// Correlation ids for duplicates: negative, apart from the client's.
    next_copy_id: i32,
    /// When a fault closes the connection (no-response's `closeAfterMs`).
    close_at: Option<Instant>,
    /// When a connection one side closed is closed (slow-close).
    slow_close_at: Option<Instant>,
    /// Requests wait until then: a throttled answer mutes the connection (KIP-219).
    muted_until: Option<Instant>,
    /// When the latest request, and the latest answer, that a latency fault held was let go:
    /// where a delay of the processing model starts.
    request_released_at: Option<Instant>,
    answer_released_at: Option<Instant>,
    /// What the connection carried so far, for network faults' triggers.
    so_far: ConnectionSoFar,
    /// The network faults armed on the connection.
    links: LinkFaults,
}

struct Pending {
    request: RequestPrefix,
    expects_response: bool,
    plan: Option<Plan>,
    /// A Produce to check against the partitions kaos holds after failing one (see `inflight`).
    check_gaps: bool,
    /// When it was read: delays count from here, so a request queued behind a delayed one waits
    /// its own latency, not the sum of both (it still never overtakes).
    arrived: Instant,
    /// What the connection carried before it.
    so_far: ConnectionSoFar,
}

/// Why a response is being gathered whole.
enum Gathering {
    /// The client must not see it.
    Drop,
    /// The client gets `frame` in its place, not before `release`.
    Replace { frame: BytesMut, release: Instant },
    /// Relay it, rewritten if it carries addresses and altered by `alter`'s faults, not before
    /// `release`.
    Relay { request: InFlight, release: Option<Instant>, alter: AnswerChanges },
}

impl<'a, C: AsyncRead + AsyncWrite + Unpin, B: AsyncRead + AsyncWrite + Unpin> Connection<'a, C, B> {
    pub fn new(
        shard: &'a Rc<Shard>,
        client: C,
        socket: ClientSocket,
        broker: B,
        node: Option<i32>,
        drain_key: u64,
    ) -> Connection<'a, C, B> {
        let config = &shard.config;
        Connection {
            shard,
            client,
            client_fd: socket.fd,
            broker,
            requests: Lane::new(config.max_frame_bytes),
            responses: Lane::new(config.max_frame_bytes),
            in_flight: InFlightQueue::new(config.max_in_flight),
            request_side: RequestSide {
                rules: Cache::new(&shard.shared.rules),
                clients: ClientScopes::new(socket.address),
                turns: RefCell::default(),
                login: shard.shared.client_users.as_ref().map(ClientLogin::new),
                node,
                rng: fastrand::Rng::new(),
                pending: None,
                next_copy_id: i32::MIN,
                close_at: None,
                slow_close_at: None,
                muted_until: None,
                request_released_at: None,
                answer_released_at: None,
                so_far: ConnectionSoFar::default(),
                links: LinkFaults::default(),
            },
            identity: Identity::new(&config.oauth_principal_claim),
            gathering: None,
            timer: None,
            drain_key,
            watching_drain: false,
        }
    }

    pub async fn run(mut self) -> End {
        let end = poll_fn(|cx| self.poll(cx)).await;
        self.shard.drain.unwatch(self.drain_key);
        end
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<End> {
        if !self.watching_drain {
            self.shard.drain.watch(self.drain_key, cx.waker());
            self.watching_drain = true;
        }
        let metrics = &self.shard.metrics;
        for _ in 0..BUDGET {
            if let Some(end) = self.network_end() {
                return Poll::Ready(end);
            }
            if self.request_side.links.black_hole() {
                // timeout: nothing moves either way until it closes or its rule goes.
                if self.timer_fired(cx) {
                    continue;
                }
                return Poll::Pending;
            }
            let mut router = RequestRouter {
                shard: self.shard,
                in_flight: &mut self.in_flight,
                side: &mut self.request_side,
                identity: &mut self.identity,
            };
            let up = match self.requests.step(&mut self.client, &mut self.broker, &mut router, cx) {
                Ok(progress) => progress,
                Err(e) => return Poll::Ready(classify(e, End::ClientMalformed)),
            };
            metrics.bytes_from_clients.add(up.read as u64);
            if self.requests.paused() {
                // The request just judged armed a network fault: shape the lanes before it leaves.
                if let Some(end) = self.network_end() {
                    return Poll::Ready(end);
                }
                self.requests.resume();
            }
            if self.requests.eof
                && let Some(end) = self.closing(End::ClientClosed)
            {
                return Poll::Ready(end);
            }

            // kaos's own answers leave when they reach the front of the queue.
            let mut injected = false;
            while self.in_flight.front_is_local() && self.responses.is_flushed() {
                let (frame, ready_at) = self.in_flight.take_local().expect("front is local");
                injected |= self.responses.inject(vec![frame], Some(ready_at));
            }

            let mut router = ResponseRouter {
                shard: self.shard,
                node: self.request_side.node,
                client: self.request_side.clients.address(),
                login: &self.request_side.login,
                in_flight: &mut self.in_flight,
                gathering: &mut self.gathering,
                identity: &mut self.identity,
                muted_until: &mut self.request_side.muted_until,
                released_at: &mut self.request_side.answer_released_at,
            };
            let down = match self.responses.step(&mut self.broker, &mut self.client, &mut router, cx) {
                Ok(progress) => progress,
                Err(e) => return Poll::Ready(classify(e, End::BrokerMalformed)),
            };
            metrics.bytes_from_brokers.add(down.read as u64);
            if self.responses.eof
                && let Some(end) = self.closing(End::BrokerClosed)
            {
                return Poll::Ready(end);
            }

            if self.shard.drain.started()
                && self.in_flight.is_empty()
                && self.requests.is_flushed()
                && self.responses.is_flushed()
            {
                return Poll::Ready(End::Drained);
            }
            if self.request_side.close_at.is_some_and(|at| Instant::now() >= at) {
                return Poll::Ready(End::ClosedByFault("no-response"));
            }
            if !up.any() && !down.any() && !injected && !self.timer_fired(cx) {
                return Poll::Pending;
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// Brings the network faults armed on the connection up to date with the rules, shapes the
    /// lanes as they ask, and says whether one of them ends the connection now.
    fn network_end(&mut self) -> Option<End> {
        let side = &mut self.request_side;
        if side.links.is_empty() {
            return None;
        }
        let now = Instant::now();
        let rules = side.rules.load().clone();
        side.links.prune(&rules, now);
        if let Some([requests, responses]) = side.links.take_shaping() {
            for (lane, shaping) in [(&mut self.requests, requests), (&mut self.responses, responses)] {
                lane.set_pacer(shaping.shape.map(|shape| Pacer::new(shape, fastrand::Rng::new())));
                if let Some(limit) = shaping.new_limit {
                    lane.set_byte_limit(limit);
                }
            }
        }
        if let Some((at, reset)) = side.links.ends_at()
            && now >= at
        {
            if !reset {
                return Some(End::ClosedByFault("timeout"));
            }
            // Closing with a zero linger sends an RST instead of a FIN.
            if let Err(why) = SockRef::from(&self.client_fd).set_linger(Some(Duration::ZERO)) {
                warn!(error = %why, "reset-peer: cannot set SO_LINGER; the connection is closed instead");
            }
            return Some(End::ResetByFault);
        }
        (self.requests.limit_reached() || self.responses.limit_reached())
            .then_some(End::ClosedByFault("limit-data"))
    }

    /// How a connection one side closed ends: at once, or (slow-close) once the delay passed,
    /// relaying what is left until then; `None` while it waits.
    fn closing(&mut self, end: End) -> Option<End> {
        let side = &mut self.request_side;
        let Some(delay) = side.links.close_delay() else { return Some(end) };
        let at = *side.slow_close_at.get_or_insert_with(|| Instant::now() + delay);
        (Instant::now() >= at).then_some(end)
    }

    /// Arms a timer for the earliest held lane; true when that moment has already come.
    fn timer_fired(&mut self, cx: &mut Context<'_>) -> bool {
        let side = &self.request_side;
        let network_end = side.links.ends_at().map(|(at, _)| at);
        // A black-holed connection has no traffic to wake it: it looks at the rules again soon.
        let recheck = side.links.black_hole().then(|| Instant::now() + RULE_RECHECK);
        let held = [
            self.requests.held_until(),
            self.responses.held_until(),
            side.close_at,
            side.slow_close_at,
            side.muted_until,
            network_end,
            recheck,
        ];
        let Some(deadline) = held.into_iter().flatten().min() else {
            self.timer = None;
            return false;
        };
        if self.timer.as_ref().is_none_or(|(at, _)| *at != deadline) {
            let wait = deadline.saturating_duration_since(Instant::now());
            self.timer = Some((deadline, Timer::new(wait)));
        }
        let (_, timer) = self.timer.as_mut().expect("armed above");
        if Pin::new(timer).poll(cx).is_ready() {
            self.timer = None;
            return true;
        }
        false
    }
}

/// Who the client is: the user it logged in to kaos as (`--client-users`), else the one its SASL
/// exchange with the broker showed.
fn user_of<'s>(login: &'s Option<ClientLogin<'_>>, identity: &'s Identity<'_>) -> Option<&'s str> {
    match login {
        Some(login) => login.user(),
        None => identity.user(),
    }
}

fn classify(error: LaneError, malformed: fn(LaneError) -> End) -> End {
    match error {
        LaneError::Io(e) => End::Io(e),
        other => malformed(other),
    }
}

/// Client to broker: tracks every request that expects a response, and applies chaos.
struct RequestRouter<'a, 'b> {
    shard: &'a Rc<Shard>,
    in_flight: &'b mut InFlightQueue,
    side: &'b mut RequestSide<'a>,
    identity: &'b mut Identity<'a>,
}

fn in_flight_entry(request: RequestPrefix, reply: Reply) -> InFlight {
    InFlight {
        correlation_id: request.correlation_id,
        api_key: request.api_key,
        api_version: request.api_version,
        sent_at: Instant::now(),
        reply,
    }
}

impl RequestRouter<'_, '_> {
    fn push(&mut self, request: RequestPrefix, expects_response: bool, reply: Reply) {
        if expects_response {
            self.in_flight.push(in_flight_entry(request, reply));
        } else {
            self.in_flight.push_silent(request.correlation_id);
        }
    }

    /// Fails a Produce that would reach the broker out of sequence, behind one kaos failed that
    /// the client has not seen yet; false lets it go on. A request kaos cannot decode goes on
    /// untouched.
    fn fail_behind_a_gap(&mut self, request: RequestPrefix, body: &[u8], arrived: Instant) -> bool {
        let Ok((_, produce)) = decode_request::<ProduceRequest>(ApiKey::Produce, request.api_version, body)
        else {
            return false;
        };
        let batches = produce_batches(&produce);
        let Some(error) = self.in_flight.gap_error(&batches, Instant::now()) else { return false };
        let Ok(frame) = respond::failed_produce(&produce, request.api_version, request.correlation_id, error)
        else {
            return false;
        };
        self.shard.metrics.chaos_gaps_prevented.add(1);
        let reply = Reply::Local { frame, ready_at: arrived, failed: Vec::new() };
        self.in_flight.push_failed_produce(in_flight_entry(request, reply), batches, error);
        true
    }

    /// A copy of `frame` under a correlation id of kaos's own, tracked so its response is dropped.
    fn duplicate(&mut self, frame: &BytesMut, request: RequestPrefix, expects_response: bool) -> BytesMut {
        let id = self.side.next_copy_id;
        self.side.next_copy_id = if id == -1 { i32::MIN } else { id + 1 };
        let mut copy = frame.clone();
        let at = LENGTH_PREFIX + 4;
        copy[at..at + 4].copy_from_slice(&id.to_be_bytes());
        let copy_request = RequestPrefix { correlation_id: id, ..request };
        self.push(copy_request, expects_response, Reply::Swallow);
        copy
    }
}

impl Router for RequestRouter<'_, '_> {
    fn min_body(&self) -> usize {
        if self.identity.client_sends_raw() { 0 } else { REQUEST_PREFIX }
    }

    fn on_frame(&mut self, body_len: usize, head: &[u8], read_at: Instant) -> Result<Verdict, ProtocolError> {
        if self.in_flight.is_full() || self.shard.drain.started() {
            return Ok(Verdict::Hold);
        }
        if let Some(until) = self.side.muted_until {
            if Instant::now() < until {
                return Ok(Verdict::Hold);
            }
            self.side.muted_until = None;
        }
        if self.identity.client_sends_raw() {
            // A SASL token with no request header: seen whole for the name it carries.
            return Ok(Verdict::Whole);
        }
        let Some(request) = RequestPrefix::parse(head) else {
            return Ok(Verdict::NeedMore);
        };
        let expects_response = if request.is_produce() {
            match frame::produce_acks(head, request.api_version)? {
                Some(acks) => acks != 0,
                None => return Ok(Verdict::NeedMore),
            }
        } else {
            true
        };
        if let Some(login) = &self.side.login {
            match login.gate(request.api_key) {
                Gate::Pass => {}
                Gate::Answer => {
                    let pending = Pending {
                        request,
                        expects_response: true,
                        plan: None,
                        check_gaps: false,
                        arrived: read_at,
                        so_far: self.side.so_far,
                    };
                    self.side.pending = Some(pending);
                    return Ok(Verdict::Whole);
                }
                Gate::Refuse => return Err(ProtocolError::Unauthenticated(request.api_key)),
            }
        }
        let side = &mut *self.side;
        let rules = side.rules.load();
        let candidates = rules.for_api(request.api_key);
        let plan = if candidates.is_empty() {
            None
        } else {
            // Topic rules: a Produce request's topics are usually known from its head, so rules
            // for other topics cost no decoding.
            let topics =
                if request.is_produce() && candidates.iter().any(|rule| !rule.common.topics.is_empty()) {
                    match frame::produce_topics(head, request.api_version)? {
                        ProduceTopics::All(topics) => {
                            Some(topics.iter().filter_map(|t| self.shard.name_of_ref(t)).collect::<Vec<_>>())
                        }
                        ProduceTopics::NeedMore if head.len() < body_len && head.len() < TOPIC_PEEK_LIMIT => {
                            return Ok(Verdict::NeedMore);
                        }
                        // The whole request will tell: the plan keeps topic rules and checks them then.
                        ProduceTopics::NeedMore | ProduceTopics::BeyondHead => None,
                    }
                } else {
                    None
                };
            side.clients.refresh(rules, || frame::request_client_id(head).map(<[u8]>::to_vec));
            let user = user_of(&side.login, self.identity);
            let scope =
                Scope { user, node: side.node, clients: Some(&side.clients), turns: Some(&side.turns) };
            Plan::decide(candidates, scope, topics.as_deref(), &mut side.rng)
        };
        self.shard.metrics.count_request(request.api_key);
        let so_far = self.side.so_far;
        self.side.so_far.count(request.api_key);
        let check_gaps = request.is_produce() && expects_response && self.in_flight.holds_partitions();
        if plan.is_none() && !check_gaps && !Identity::is_revealing(request.api_key) {
            self.push(request, expects_response, Reply::Upstream { delay: Latency::default() });
            return Ok(Verdict::Forward);
        }
        self.side.pending =
            Some(Pending { request, expects_response, plan, check_gaps, arrived: read_at, so_far });
        Ok(Verdict::Whole)
    }

    fn on_whole(&mut self, body: &[u8]) -> Result<Emit, ProtocolError> {
        if self.identity.client_sends_raw() {
            self.identity.on_raw_token(body);
            return Ok(Emit::original(None));
        }
        let Pending { request, expects_response, plan, check_gaps, arrived, so_far } =
            self.side.pending.take().ok_or(ProtocolError::Lost("a request gathered without a plan"))?;
        if let Some(login) =
            self.side.login.as_mut().filter(|login| login.gate(request.api_key) == Gate::Answer)
        {
            let frame = login.answer(request, body)?;
            if login.failed() {
                self.shard.metrics.client_login_failures.add(1);
            }
            self.push(request, true, Reply::Local { frame, ready_at: arrived, failed: Vec::new() });
            return Ok(Emit::frames(Vec::new(), None));
        }
        if Identity::is_revealing(request.api_key) {
            self.identity.on_request(request, body);
        }
        if check_gaps && self.fail_behind_a_gap(request, body, arrived) {
            return Ok(Emit::frames(Vec::new(), None));
        }
        let upstream = Reply::Upstream { delay: Latency::default() };
        let Some(plan) = plan else {
            self.push(request, expects_response, upstream);
            return Ok(Emit::original(None));
        };
        let shard = self.shard;
        let outcome = match plan.carry_out(request, body, shard.as_ref(), so_far, &mut self.side.rng) {
            Ok(outcome) => outcome,
            Err(why) => {
                shard.metrics.chaos_undecodable.add(1);
                warn!(api = request.api_key, version = request.api_version, error = %why, "chaos rule skipped; request relayed untouched");
                self.push(request, expects_response, upstream);
                return Ok(Emit::original(None));
            }
        };
        if !outcome.applied.is_empty() {
            let origin = Origin {
                client: self.side.clients.address(),
                client_id: frame::request_client_id(body).and_then(|id| std::str::from_utf8(id).ok()),
                user: user_of(&self.side.login, self.identity),
                broker: self.side.node,
                request: Some((request.api_key, request.api_version, request.correlation_id)),
                partitions: &outcome.partitions,
            };
            for (rule, effect) in &outcome.applied {
                shard.record_effect(rule, effect, origin);
            }
        }
        let arming = !outcome.network.is_empty();
        for (rule, link) in outcome.network {
            self.side.links.arm(rule, link, arrived);
        }
        if let Some(hang) = outcome.no_response {
            if let Some(close_after) = hang.close_after {
                let at = arrived + close_after;
                self.side.close_at = Some(self.side.close_at.map_or(at, |earlier| earlier.min(at)));
            }
            if !hang.forwarded {
                if expects_response {
                    self.push(request, true, Reply::Hung);
                }
                return Ok(Emit::frames(Vec::new(), None));
            }
        }
        if let Some((answer, after)) = outcome.answer {
            // Not forwarded: kaos answers in the request's place (nothing at all under acks=0).
            if expects_response {
                let reply = Reply::Local { frame: answer, ready_at: arrived + after, failed: Vec::new() };
                match outcome.failed_produce {
                    Some((produce, error)) => {
                        let entry = in_flight_entry(request, reply);
                        self.in_flight.push_failed_produce(entry, produce_batches(&produce), error);
                    }
                    None => self.push(request, true, reply),
                }
            }
            return Ok(Emit::frames(Vec::new(), None));
        }
        let delay = outcome.response_delay;
        let reply = match (outcome.no_response, outcome.replace_response) {
            (Some(_), _) => Reply::Withheld,
            (None, Some((frame, after))) => Reply::Replace { frame, after },
            (None, None) if !outcome.alter_response.is_empty() || outcome.fail_partitions.is_some() => {
                // Held until the client has the failure; under acks=0 it never will, and nothing
                // retries.
                let held = match &outcome.fail_partitions {
                    Some(failures) if expects_response && !outcome.failed_batches.is_empty() => {
                        self.in_flight.hold(outcome.failed_batches, failures.error)
                    }
                    _ => Vec::new(),
                };
                let changes =
                    AnswerChanges { failures: outcome.fail_partitions, rules: outcome.alter_response, held };
                Reply::Alter { delay, changes }
            }
            (None, None) => Reply::Upstream { delay },
        };
        self.push(request, expects_response, reply);
        let not_before = (!outcome.request_delay.delay.is_zero()).then(|| {
            let release = outcome.request_delay.release(arrived, self.side.request_released_at);
            self.side.request_released_at = Some(release);
            release
        });
        let mut emit = match (outcome.rewritten, outcome.duplicate) {
            (None, false) => Emit::original(not_before),
            (rewritten, duplicate) => {
                let frame = rewritten.unwrap_or_else(|| with_length_prefix(body));
                let mut frames = Vec::with_capacity(2);
                if duplicate {
                    let copy = self.duplicate(&frame, request, expects_response);
                    frames.push(frame);
                    frames.push(copy);
                } else {
                    frames.push(frame);
                }
                Emit::frames(frames, not_before)
            }
        };
        emit.pause = arming;
        Ok(emit)
    }
}

/// Broker to client: matches each response to its request, rewrites broker addresses, holds
/// delayed responses, and drops responses the client must not see.
struct ResponseRouter<'a, 'b> {
    shard: &'a Rc<Shard>,
    /// The broker answering, for log lines and events.
    node: Option<i32>,
    /// The client's address and login, for the events of faults on answers.
    client: Option<IpAddr>,
    login: &'b Option<ClientLogin<'a>>,
    in_flight: &'b mut InFlightQueue,
    gathering: &'b mut Option<Gathering>,
    identity: &'b mut Identity<'a>,
    muted_until: &'b mut Option<Instant>,
    /// When the latest answer a latency fault held was let go.
    released_at: &'b mut Option<Instant>,
}

impl Router for ResponseRouter<'_, '_> {
    fn min_body(&self) -> usize {
        if self.answers_raw_token() { 0 } else { RESPONSE_PREFIX }
    }

    fn on_frame(&mut self, body_len: usize, head: &[u8], arrived: Instant) -> Result<Verdict, ProtocolError> {
        if self.answers_raw_token() {
            self.identity.on_raw_answer(body_len);
            return Ok(Verdict::Forward);
        }
        if self.in_flight.front_is_local() || self.in_flight.is_hung() {
            return Ok(Verdict::Hold);
        }
        let Some(correlation_id) = frame::response_correlation_id(head) else {
            return Ok(Verdict::NeedMore);
        };
        let mut request = match self.in_flight.complete(correlation_id)? {
            Answer::Unexpected => {
                *self.gathering = Some(Gathering::Drop);
                return Ok(Verdict::Whole);
            }
            Answer::Request(request) => request,
        };
        let micros = request.sent_at.elapsed().as_micros();
        self.shard.latency.record(request.api_key, u64::try_from(micros).unwrap_or(u64::MAX));
        let reply = std::mem::replace(&mut request.reply, Reply::Upstream { delay: Latency::default() });
        let (delay, alter) = match reply {
            Reply::Swallow => {
                *self.gathering = Some(Gathering::Drop);
                return Ok(Verdict::Whole);
            }
            Reply::Upstream { delay } => (delay, AnswerChanges::default()),
            Reply::Alter { delay, changes } => (delay, changes),
            Reply::Replace { frame, after } => {
                *self.gathering = Some(Gathering::Replace { frame, release: Instant::now() + after });
                return Ok(Verdict::Whole);
            }
            Reply::Withheld => {
                *self.gathering = Some(Gathering::Drop);
                self.in_flight.hang(request);
                return Ok(Verdict::Whole);
            }
            Reply::Local { .. } | Reply::Hung => {
                return Err(ProtocolError::Lost("a request kaos answers reached the broker side"));
            }
        };
        let seen_whole = rewrite::needs_rewrite(request.api_key, request.api_version)
            || Identity::is_revealing(request.api_key)
            || !alter.is_empty();
        // The answer's own arrival starts its delay: one read behind an answer held back keeps it.
        let release = (!delay.delay.is_zero()).then(|| {
            let release = delay.release(arrived, *self.released_at);
            *self.released_at = Some(release);
            release
        });
        if !alter.held.is_empty() {
            self.in_flight.failures_sent(&alter.held, release.unwrap_or_else(Instant::now));
        }
        if release.is_none() && !seen_whole {
            return Ok(Verdict::Forward);
        }
        *self.gathering = Some(Gathering::Relay { request, release, alter });
        Ok(Verdict::Whole)
    }

    fn on_whole(&mut self, body: &[u8]) -> Result<Emit, ProtocolError> {
        let (request, release, alter) = match self.gathering.take() {
            Some(Gathering::Relay { request, release, alter }) => (request, release, alter),
            Some(Gathering::Drop) => return Ok(Emit::frames(Vec::new(), None)),
            Some(Gathering::Replace { frame, release }) => {
                return Ok(Emit::frames(vec![frame], Some(release)));
            }
            None => return Err(ProtocolError::Lost("a response gathered without its request")),
        };
        if Identity::is_revealing(request.api_key) {
            self.identity.on_response(request.api_key, request.api_version, body)?;
        }
        if !rewrite::needs_rewrite(request.api_key, request.api_version) {
            // Gathered for chaos only: an answer the faults did not change goes on as it came.
            return Ok(match self.altered(&request, body, &alter) {
                Some(frame) => Emit::frames(vec![frame], release),
                None => Emit::original(release),
            });
        }
        let mut learned = Learned::default();
        let relayed = rewrite::relay_response(
            request.api_key,
            request.api_version,
            Bytes::copy_from_slice(body),
            &self.shard.ports,
            &mut learned,
        )?;
        self.shard.learn(&learned);
        let said_once = &self.shard.shared.said_once;
        if let Some(why) = relayed.not_rewritten {
            let api = request.api_key;
            if said_once.first(format!("not rewritten {:?} {api}", self.node)) {
                let what = if api == ApiKey::ApiVersions as i16 {
                    "relayed as it came (it carries no address)"
                } else {
                    "the client gets an answer without addresses and retries"
                };
                warn!(broker = ?self.node, api, version = request.api_version, error = %why, "kaos cannot rewrite this broker's response: {what}; said once per broker and API");
            }
        }
        for node_id in learned.unmappable {
            if said_once.first(format!("unmappable {node_id}")) {
                warn!(
                    node_id,
                    port_start = self.shard.ports.port_start,
                    "broker has no kaos port (port-start + 1 + node id is past 65535): left out of responses, so clients cannot reach it; lower --port-start"
                );
            }
        }
        let altered = self.altered(&request, &relayed.frame[LENGTH_PREFIX..], &alter);
        Ok(Emit::frames(vec![altered.unwrap_or(relayed.frame)], release))
    }
}

impl ResponseRouter<'_, '_> {
    /// The answer (`body`, after its length prefix) as kaos `changes` it; `None` when nothing
    /// changes or kaos cannot decode it (counted, and logged as for requests).
    fn altered(&mut self, request: &InFlight, body: &[u8], changes: &AnswerChanges) -> Option<BytesMut> {
        let api = ApiKey::try_from(request.api_key).ok().filter(|_| !changes.is_empty())?;
        let metrics = &self.shard.metrics;
        let merged = match changes.failures.as_ref().map(|f| f.merge_into(api, request.api_version, body)) {
            None => None,
            Some(Ok(frame)) => Some(frame),
            Some(Err(why)) => {
                metrics.chaos_undecodable.add(1);
                warn!(api = request.api_key, version = request.api_version, error = %why, "partitions not failed; response relayed unchanged");
                None
            }
        };
        let body = merged.as_ref().map_or(body, |frame| &frame[LENGTH_PREFIX..]);
        let mut rng = fastrand::Rng::new();
        match alter::alter(api, request.api_version, body, &changes.rules, self.shard.as_ref(), &mut rng) {
            Ok(Some((altered, applied))) => {
                let origin = Origin {
                    client: self.client,
                    user: user_of(self.login, self.identity),
                    broker: self.node,
                    request: Some((request.api_key, request.api_version, request.correlation_id)),
                    ..Origin::default()
                };
                for (rule, effect) in &applied {
                    self.shard.record_effect(rule, effect, origin);
                    if let (false, Effect::Throttled(wait)) = (rule.common.dry_run, effect) {
                        let until = Instant::now() + *wait;
                        *self.muted_until = Some(self.muted_until.map_or(until, |muted| muted.max(until)));
                    }
                }
                altered.or(merged)
            }
            Ok(None) => merged,
            Err(why) => {
                metrics.chaos_undecodable.add(1);
                warn!(api = request.api_key, version = request.api_version, error = %why, "chaos rule skipped; response relayed unchanged");
                merged
            }
        }
    }

    /// The broker's next frame is its raw answer to a SASL token: every request before the
    /// token is answered, and raw frames carry no correlation id.
    fn answers_raw_token(&self) -> bool {
        self.in_flight.is_empty() && self.identity.broker_answers_raw()
    }
}

/// Describes a peer for log lines.
pub fn peer_name(stream: &TcpStream) -> String {
    stream.peer_addr().map_or_else(|_| "unknown peer".into(), |a: SocketAddr| a.to_string())
}
