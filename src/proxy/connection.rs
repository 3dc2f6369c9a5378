//! One proxied client connection: a single task drives both lanes (client to broker, broker to
//! client) from one `poll`, so the in-flight queue needs no sharing and a frame costs no wake-up
//! of a second task.

use std::future::poll_fn;
use std::net::SocketAddr;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use glommio::net::TcpStream;

use super::frame::{self, REQUEST_PREFIX, RESPONSE_PREFIX, RequestPrefix};
use super::inflight::{Answer, InFlight, InFlightQueue};
use super::lane::{Lane, LaneError, Router, Verdict};
use super::rewrite;
use crate::shard::Shard;

/// Iterations of the connection loop before it yields to other tasks on the shard.
const BUDGET: usize = 32;

/// Why a connection ended.
#[derive(Debug)]
pub enum End {
    ClientClosed,
    BrokerClosed,
    Drained,
    /// The client sent something that is not Kafka, or a frame over the limit.
    ClientMalformed(String),
    /// The broker sent something kaos cannot relay safely.
    BrokerMalformed(String),
    Io(std::io::Error),
}

pub struct Connection<'a> {
    shard: &'a Rc<Shard>,
    client: TcpStream,
    broker: TcpStream,
    requests: Lane,
    responses: Lane,
    in_flight: InFlightQueue,
    gathering: Option<Answer>,
    drain_key: u64,
    watching_drain: bool,
}

impl<'a> Connection<'a> {
    pub fn new(shard: &'a Rc<Shard>, client: TcpStream, broker: TcpStream, drain_key: u64) -> Connection<'a> {
        let config = &shard.config;
        Connection {
            shard,
            client,
            broker,
            requests: Lane::new(config.max_frame_bytes),
            responses: Lane::new(config.max_frame_bytes),
            in_flight: InFlightQueue::new(config.max_in_flight),
            gathering: None,
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
            let mut router = RequestRouter { shard: self.shard, in_flight: &mut self.in_flight };
            let up = match self.requests.step(&mut self.client, &mut self.broker, &mut router, cx) {
                Ok(progress) => progress,
                Err(e) => return Poll::Ready(classify(e, End::ClientMalformed)),
            };
            metrics.bytes_from_clients.add(up.read as u64);
            if self.requests.eof {
                return Poll::Ready(End::ClientClosed);
            }

            let mut router = ResponseRouter {
                shard: self.shard,
                in_flight: &mut self.in_flight,
                gathering: &mut self.gathering,
            };
            let down = match self.responses.step(&mut self.broker, &mut self.client, &mut router, cx) {
                Ok(progress) => progress,
                Err(e) => return Poll::Ready(classify(e, End::BrokerMalformed)),
            };
            metrics.bytes_from_brokers.add(down.read as u64);
            if self.responses.eof {
                return Poll::Ready(End::BrokerClosed);
            }

            if self.shard.drain.started()
                && self.in_flight.is_empty()
                && self.requests.is_flushed()
                && self.responses.is_flushed()
            {
                return Poll::Ready(End::Drained);
            }
            if !up.any() && !down.any() {
                return Poll::Pending;
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

fn classify(error: LaneError, malformed: fn(String) -> End) -> End {
    match error {
        LaneError::Io(e) => End::Io(e),
        other => malformed(other.to_string()),
    }
}

/// Client to broker: tracks every request that expects a response.
struct RequestRouter<'a> {
    shard: &'a Shard,
    in_flight: &'a mut InFlightQueue,
}

impl Router for RequestRouter<'_> {
    const MIN_BODY: usize = REQUEST_PREFIX;

    fn on_frame(&mut self, _body_len: usize, head: &[u8]) -> Result<Verdict, String> {
        if self.in_flight.is_full() || self.shard.drain.started() {
            return Ok(Verdict::Hold);
        }
        let Some(request) = RequestPrefix::parse(head) else {
            return Ok(Verdict::NeedBytes(REQUEST_PREFIX));
        };
        let expects_response = if request.is_produce() {
            match frame::produce_acks(head, request.api_version).map_err(|e| e.to_string())? {
                Some(acks) => acks != 0,
                None => return Ok(Verdict::NeedBytes(head.len() + 64)),
            }
        } else {
            true
        };
        self.shard.metrics.count_request(request.api_key);
        if expects_response {
            self.in_flight.push(InFlight {
                correlation_id: request.correlation_id,
                api_key: request.api_key,
                api_version: request.api_version,
                sent_at: Instant::now(),
            });
        } else {
            self.in_flight.push_silent(request.correlation_id);
        }
        Ok(Verdict::Forward)
    }

    fn on_whole(&mut self, _body: &[u8]) -> Result<BytesMut, String> {
        Err("requests are never gathered".into())
    }
}

/// Broker to client: matches each response to its request, rewrites broker addresses, and
/// swallows responses the client does not expect.
struct ResponseRouter<'a> {
    shard: &'a Rc<Shard>,
    in_flight: &'a mut InFlightQueue,
    gathering: &'a mut Option<Answer>,
}

impl Router for ResponseRouter<'_> {
    const MIN_BODY: usize = RESPONSE_PREFIX;

    fn on_frame(&mut self, _body_len: usize, head: &[u8]) -> Result<Verdict, String> {
        let Some(correlation_id) = frame::response_correlation_id(head) else {
            return Ok(Verdict::NeedBytes(RESPONSE_PREFIX));
        };
        let answer = self.in_flight.complete(correlation_id)?;
        let Answer::Request(request) = answer else {
            *self.gathering = Some(answer);
            return Ok(Verdict::Whole);
        };
        let micros = request.sent_at.elapsed().as_micros();
        self.shard.latency.record(request.api_key, u64::try_from(micros).unwrap_or(u64::MAX));
        if rewrite::needs_rewrite(request.api_key, request.api_version) {
            *self.gathering = Some(answer);
            return Ok(Verdict::Whole);
        }
        Ok(Verdict::Forward)
    }

    fn on_whole(&mut self, body: &[u8]) -> Result<BytesMut, String> {
        let request = match self.gathering.take() {
            Some(Answer::Request(request)) => request,
            Some(Answer::Unexpected) => return Ok(BytesMut::new()),
            None => return Err("gathered a response with no request".into()),
        };
        let mut seen = Vec::new();
        let frame = rewrite::rewrite_response(
            request.api_key,
            request.api_version,
            Bytes::copy_from_slice(body),
            &self.shard.ports,
            &mut seen,
        )
        .map_err(|e| e.to_string())?;
        self.shard.learn_brokers(&seen);
        Ok(frame)
    }
}

/// Describes a peer for log lines.
pub fn peer_name(stream: &TcpStream) -> String {
    stream.peer_addr().map_or_else(|_| "unknown peer".into(), |a: SocketAddr| a.to_string())
}
