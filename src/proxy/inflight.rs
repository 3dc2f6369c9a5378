//! Requests owed a response, oldest first.
//!
//! Kafka answers the requests of one connection in order, so the queue's front is always the
//! request the next response belongs to. The queue is also the single authority on response
//! order when kaos answers a request itself (chaos): that request keeps its place here, and its
//! answer is sent only when it reaches the front.
//!
//! Produce with acks=0 expects no response and takes no place in the queue. Some brokers (tansu)
//! answer it anyway; the last few such correlation ids are remembered so that their stray
//! responses are recognised and swallowed instead of confusing the client.
//!
//! The queue also keeps kaos from opening sequence gaps. When kaos fails a Produce for partition
//! P, the broker never sees that batch; a later batch for P that the client pipelined behind it
//! would reach the broker out of sequence, something no real broker outage can cause. So until
//! the client has seen the failure and starts over, every later Produce for P fails too (see
//! [`InFlightQueue::gap_error`]).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::BytesMut;

use kafka_protocol::error::ResponseError;

use super::lane::ProtocolError;
use crate::chaos::Latency;
use crate::chaos::alter::AnswerChanges;
use crate::wire::batches::{PartitionBatch, PartitionKey, Sequence};

/// How many acks=0 correlation ids are remembered.
const SILENT_MEMORY: usize = 256;
/// How long after a failure reached the client a partition stays held without a retry. A
/// client that gave its batch up and goes on from a later sequence would otherwise fail forever;
/// past this the broker judges its sequence, as it would without kaos.
const HELD_WITHOUT_RETRY: Duration = Duration::from_secs(10);

/// Who answers a request, and how.
#[derive(Debug)]
pub enum Reply {
    /// The broker answers; its response is held (`delay`) before it goes to the client.
    Upstream { delay: Latency },
    /// kaos answers with `frame` (length prefix included) once `ready_at` has passed. A failed
    /// Produce lists its partitions: they are held until the client has this answer.
    Local { frame: BytesMut, ready_at: Instant, failed: Vec<PartitionKey> },
    /// The broker answers a copy kaos made; the client never sees that response.
    Swallow,
    /// The broker answers, and kaos changes the answer on its way (after `delay`).
    Alter { delay: Latency, changes: AnswerChanges },
    /// The broker answers, and the client gets `frame` in its place, `after` later (the broker
    /// applied the request; the client is told it failed).
    Replace { frame: BytesMut, after: Duration },
    /// Nobody answers (the broker never saw the request): every response behind it waits, as
    /// behind a hung broker, until the connection closes.
    Hung,
    /// The broker answers, kaos swallows the answer, and the connection hangs from there.
    Withheld,
}

#[derive(Debug)]
pub struct InFlight {
    pub correlation_id: i32,
    pub api_key: i16,
    pub api_version: i16,
    pub sent_at: Instant,
    pub reply: Reply,
}

#[derive(Debug)]
pub struct InFlightQueue {
    entries: VecDeque<InFlight>,
    silent: VecDeque<i32>,
    limit: usize,
    /// Partitions whose Produce kaos failed, until the client starts over on them.
    held: HashMap<PartitionKey, Held>,
}

/// A partition held because kaos failed a Produce for it.
#[derive(Debug)]
struct Held {
    /// What later batches fail with: the error of the last failure.
    error: i16,
    /// The earliest failed batch's place in its producer's sequence; `None`: not idempotent.
    failed_from: Option<Sequence>,
    /// Failures for it still queued, not yet on their way to the client.
    unsent: u32,
    /// When the first failure for it left for the client.
    sent_at: Option<Instant>,
}

impl Held {
    /// Whether a batch may reach the broker, now that the failure before it left for the client.
    fn lets_through(&self, batch: Option<Sequence>, now: Instant) -> bool {
        if self.unsent > 0 {
            return false;
        }
        if self.expired(now) {
            return true;
        }
        match (self.failed_from, batch) {
            // The same producer session past the failed batch: the client sent it before it saw
            // the failure. A retry (from the failed sequence or before) or a new epoch starts over.
            (Some(failed), Some(batch)) => {
                batch.producer_id != failed.producer_id
                    || batch.epoch != failed.epoch
                    || batch.base <= failed.base
            }
            // Not idempotent: no sequence to keep, and the failure is on its way.
            _ => true,
        }
    }

    fn expired(&self, now: Instant) -> bool {
        self.sent_at.is_some_and(|sent| now.saturating_duration_since(sent) > HELD_WITHOUT_RETRY)
    }
}

/// What a response from the broker answers.
#[derive(Debug)]
pub enum Answer {
    Request(InFlight),
    /// A response to an acks=0 produce, which the client does not expect.
    Unexpected,
}

impl InFlightQueue {
    pub fn new(limit: usize) -> InFlightQueue {
        InFlightQueue {
            // Grown as requests pipeline: most connections keep one or two in flight, and a
            // reserve here would cost every idle connection kilobytes.
            entries: VecDeque::new(),
            silent: VecDeque::new(),
            limit: limit.max(1),
            held: HashMap::new(),
        }
    }

    pub fn is_full(&self) -> bool {
        self.entries.len() >= self.limit
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn push(&mut self, entry: InFlight) {
        self.entries.push_back(entry);
    }

    /// Remembers an acks=0 produce, whose response (if any) the client must not see.
    pub fn push_silent(&mut self, correlation_id: i32) {
        if self.silent.len() == SILENT_MEMORY {
            self.silent.pop_front();
        }
        self.silent.push_back(correlation_id);
    }

    /// Whether the oldest request is answered by kaos, so broker responses must wait.
    pub fn front_is_local(&self) -> bool {
        matches!(self.entries.front(), Some(InFlight { reply: Reply::Local { .. }, .. }))
    }

    /// Whether the oldest request will never be answered: nothing behind it may leave.
    pub fn is_hung(&self) -> bool {
        matches!(self.entries.front(), Some(InFlight { reply: Reply::Hung, .. }))
    }

    /// Hangs the connection at `entry`, a request whose answer was withheld.
    pub fn hang(&mut self, entry: InFlight) {
        self.entries.push_front(InFlight { reply: Reply::Hung, ..entry });
    }

    /// Takes the oldest request if kaos answers it: its frame and when it may leave.
    pub fn take_local(&mut self) -> Option<(BytesMut, Instant)> {
        if !self.front_is_local() {
            return None;
        }
        match self.entries.pop_front()?.reply {
            Reply::Local { frame, ready_at, failed } => {
                self.failures_sent(&failed, ready_at);
                Some((frame, ready_at))
            }
            _ => None,
        }
    }

    /// The failures of these held partitions leave for the client at `at`: the client learns
    /// of them then, and its retries may follow.
    pub fn failures_sent(&mut self, partitions: &[PartitionKey], at: Instant) {
        for partition in partitions {
            if let Some(held) = self.held.get_mut(partition) {
                held.unsent = held.unsent.saturating_sub(1);
                held.sent_at.get_or_insert(at);
            }
        }
    }

    /// Whether some partition is held, so every Produce must be checked with
    /// [`InFlightQueue::gap_error`] before it is forwarded. Almost always false: a cheap test.
    pub fn holds_partitions(&self) -> bool {
        !self.held.is_empty()
    }

    /// The error a Produce carrying `batches` must fail with so that no partition sees a
    /// sequence gap; `None` when it may go to the broker. Partitions the client has started over
    /// on are released.
    pub fn gap_error(&mut self, batches: &[PartitionBatch], now: Instant) -> Option<i16> {
        // Partitions the client never came back to would keep every Produce checked.
        self.held.retain(|_, held| !held.expired(now));
        let mut error = None;
        for batch in batches {
            let Some(held) = self.held.get(&batch.partition) else { continue };
            if held.lets_through(batch.sequence, now) {
                self.held.remove(&batch.partition);
            } else {
                error = Some(held.error);
            }
        }
        error
    }

    /// Queues kaos's failure of a Produce carrying `batches`, and holds their partitions until
    /// the client has it.
    pub fn push_failed_produce(&mut self, mut entry: InFlight, batches: Vec<PartitionBatch>, error: i16) {
        let failed = self.hold(batches, error);
        if let Reply::Local { failed: listed, .. } = &mut entry.reply {
            *listed = failed;
        }
        self.push(entry);
    }

    /// Holds the partitions of `batches`, which kaos failed with `error`, until `failures_sent`
    /// says the client has the failure; returns those it holds.
    pub fn hold(&mut self, batches: Vec<PartitionBatch>, error: i16) -> Vec<PartitionKey> {
        let mut failed = Vec::with_capacity(batches.len());
        let retriable = ResponseError::try_from_code(error).is_some_and(|e| e.is_retriable());
        for PartitionBatch { partition, sequence } in batches {
            // After an error it does not retry, an idempotent client gives the batch up and goes
            // on past it: the broker then sees the gap a real broker's refusal leaves, and
            // holding the partition would only fail the batches behind it too.
            if sequence.is_some() && !retriable {
                continue;
            }
            let held = self.held.entry(partition.clone()).or_insert(Held {
                error,
                failed_from: sequence,
                unsent: 0,
                sent_at: None,
            });
            held.error = error;
            held.unsent += 1;
            held.failed_from = match (held.failed_from, sequence) {
                (Some(earlier), Some(this))
                    if earlier.producer_id == this.producer_id && earlier.epoch == this.epoch =>
                {
                    Some(if this.base < earlier.base { this } else { earlier })
                }
                (_, this) => this,
            };
            failed.push(partition);
        }
        failed
    }

    /// Takes the oldest request, which must carry the broker response's correlation id.
    pub fn complete(&mut self, correlation_id: i32) -> Result<Answer, ProtocolError> {
        if self
            .entries
            .front()
            .is_some_and(|oldest| oldest.correlation_id == correlation_id && !self.front_is_local())
        {
            return Ok(Answer::Request(self.entries.pop_front().expect("front exists")));
        }
        if let Some(index) = self.silent.iter().position(|&id| id == correlation_id) {
            self.silent.remove(index);
            return Ok(Answer::Unexpected);
        }
        match self.entries.front() {
            None => Err(ProtocolError::Unsolicited(correlation_id)),
            Some(oldest) => {
                Err(ProtocolError::OutOfOrder { got: correlation_id, expected: oldest.correlation_id })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(correlation_id: i32) -> InFlight {
        InFlight {
            correlation_id,
            api_key: 3,
            api_version: 12,
            sent_at: Instant::now(),
            reply: Reply::Upstream { delay: Latency::default() },
        }
    }

    fn local(frame: &[u8]) -> Reply {
        Reply::Local { frame: BytesMut::from(frame), ready_at: Instant::now(), failed: Vec::new() }
    }

    fn batch(partition: i32, sequence: Option<(i16, i32)>) -> PartitionBatch {
        PartitionBatch {
            partition: PartitionKey { topic: "orders".into(), topic_id: [0; 16], index: partition },
            sequence: sequence.map(|(epoch, base)| Sequence { producer_id: 7, epoch, base }),
        }
    }

    fn fail(queue: &mut InFlightQueue, correlation_id: i32, batches: Vec<PartitionBatch>) {
        let entry = InFlight { reply: local(b"failed"), ..request(correlation_id) };
        queue.push_failed_produce(entry, batches, 6);
    }

    #[test]
    fn responses_complete_requests_in_order() {
        let mut queue = InFlightQueue::new(2);
        assert!(queue.complete(1).is_err());
        queue.push(request(1));
        queue.push(request(2));
        assert!(queue.is_full());
        assert!(matches!(queue.complete(2), Err(ProtocolError::OutOfOrder { got: 2, expected: 1 })));
        assert!(matches!(queue.complete(1), Ok(Answer::Request(r)) if r.correlation_id == 1));
        assert!(matches!(queue.complete(2), Ok(Answer::Request(r)) if r.correlation_id == 2));
        assert!(queue.is_empty());
    }

    #[test]
    fn local_answers_keep_their_place() {
        let mut queue = InFlightQueue::new(8);
        queue.push(request(1));
        queue.push(InFlight { reply: local(b"local"), ..request(2) });
        queue.push(request(3));
        assert!(queue.take_local().is_none(), "request 1 is still owed by the broker");
        assert!(matches!(queue.complete(1), Ok(Answer::Request(_))));
        assert!(queue.front_is_local());
        assert!(queue.complete(3).is_err(), "the broker's next response waits behind the local answer");
        assert_eq!(&queue.take_local().unwrap().0[..], b"local");
        assert!(matches!(queue.complete(3), Ok(Answer::Request(_))));
    }

    #[test]
    fn stray_responses_to_acks_zero_are_recognised_once() {
        let mut queue = InFlightQueue::new(4);
        queue.push_silent(1);
        queue.push(request(2));
        assert!(matches!(queue.complete(1), Ok(Answer::Unexpected)));
        assert!(queue.complete(1).is_err(), "a silent id is matched only once");
        assert!(matches!(queue.complete(2), Ok(Answer::Request(_))));
        for id in 0..1000 {
            queue.push_silent(id);
        }
        assert!(matches!(queue.complete(999), Ok(Answer::Unexpected)));
        assert!(queue.complete(0).is_err(), "memory is bounded");
    }

    #[test]
    fn a_failed_idempotent_batch_holds_its_partition_until_the_client_starts_over() {
        let mut queue = InFlightQueue::new(8);
        let now = Instant::now();
        assert!(!queue.holds_partitions());
        fail(&mut queue, 1, vec![batch(0, Some((0, 10)))]);
        assert!(queue.holds_partitions());
        assert_eq!(queue.gap_error(&[batch(0, Some((0, 15)))], now), Some(6), "the failure is still queued");
        assert_eq!(queue.gap_error(&[batch(1, Some((0, 99)))], now), None, "other partitions go on");
        fail(&mut queue, 2, vec![batch(0, Some((0, 15)))]);
        queue.take_local();
        queue.take_local();
        assert_eq!(
            queue.gap_error(&[batch(0, Some((0, 20)))], now),
            Some(6),
            "sent before the client saw the failures: it would reach the broker out of sequence"
        );
        assert_eq!(queue.gap_error(&[batch(0, Some((0, 10)))], now), None, "the retry starts over");
        assert!(!queue.holds_partitions());
    }

    #[test]
    fn a_partition_failed_inside_a_brokers_answer_is_held_until_that_answer_leaves() {
        let mut queue = InFlightQueue::new(8);
        let now = Instant::now();
        let held = queue.hold(vec![batch(1, Some((0, 40)))], 6);
        queue.push(request(1));
        assert_eq!(queue.gap_error(&[batch(1, Some((0, 45)))], now), Some(6), "the answer has not left");
        assert_eq!(
            queue.gap_error(&[batch(0, Some((0, 45)))], now),
            None,
            "the request's other partitions go on"
        );
        queue.failures_sent(&held, now);
        assert_eq!(
            queue.gap_error(&[batch(1, Some((0, 45)))], now),
            Some(6),
            "pipelined before the client saw it"
        );
        assert_eq!(queue.gap_error(&[batch(1, Some((0, 40)))], now), None, "the retry starts over");
        assert!(!queue.holds_partitions());
    }

    #[test]
    fn a_new_epoch_a_plain_producer_or_a_long_silence_release_a_partition() {
        let now = Instant::now();
        let mut queue = InFlightQueue::new(8);
        fail(&mut queue, 1, vec![batch(0, Some((0, 10))), batch(1, None)]);
        assert_eq!(queue.gap_error(&[batch(1, None)], now), Some(6), "held while the failure is queued");
        queue.take_local();
        assert_eq!(queue.gap_error(&[batch(1, None)], now), None, "no sequence to keep once it is sent");
        assert_eq!(queue.gap_error(&[batch(0, Some((1, 0)))], now), None, "a new epoch starts over");
        assert!(!queue.holds_partitions());

        fail(&mut queue, 2, vec![batch(0, Some((0, 10)))]);
        queue.take_local();
        assert_eq!(queue.gap_error(&[batch(0, Some((0, 11)))], now), Some(6));
        let later = now + HELD_WITHOUT_RETRY + Duration::from_secs(1);
        assert_eq!(queue.gap_error(&[batch(1, Some((0, 11)))], later), None);
        assert!(!queue.holds_partitions(), "a client that gave up is not held forever");
    }

    #[test]
    fn an_error_the_client_does_not_retry_holds_no_idempotent_partition() {
        let mut queue = InFlightQueue::new(8);
        let entry = InFlight { reply: local(b"failed"), ..request(1) };
        queue.push_failed_produce(entry, vec![batch(0, Some((0, 10))), batch(1, None)], 21); // INVALID_REQUIRED_ACKS
        assert_eq!(queue.gap_error(&[batch(0, Some((0, 15)))], Instant::now()), None, "the client moves on");
        assert_eq!(
            queue.gap_error(&[batch(1, None)], Instant::now()),
            Some(21),
            "a plain batch waits for its answer"
        );
    }

    /// An idempotent client pipelining up to five Produce requests over two partitions, kaos
    /// failing a third of them at random, and a broker that takes each partition's batches only
    /// in sequence. With the queue's check no batch reaches the broker out of sequence and every
    /// batch lands once, in order; without it the same run opens gaps.
    #[test]
    fn random_failures_never_reach_the_broker_out_of_sequence() {
        for seed in 0..20 {
            assert_eq!(simulate(true, seed), Ok(()), "seed {seed}");
        }
        assert!(matches!(simulate(false, 11), Err(gaps) if gaps > 0), "the check is what prevents gaps");
    }

    /// Runs the model; Err(gaps) when the broker saw batches out of sequence.
    fn simulate(check_gaps: bool, seed: u64) -> Result<(), usize> {
        const BATCHES: i32 = 200;
        const PIPELINE: usize = 5;
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut queue = InFlightQueue::new(PIPELINE);
        let now = Instant::now();
        // Per partition: the broker's next sequence, the client's next batch to send, the batch
        // it must start over from, and its batches in flight.
        let mut broker_next = [0i32; 2];
        let mut next = [0i32; 2];
        let mut rewind: [Option<i32>; 2] = [None; 2];
        let mut in_flight: Vec<(i32, usize, i32)> = Vec::new(); // (correlation id, partition, seq)
        let mut results = std::collections::HashMap::new(); // correlation id -> ok
        let mut gaps = 0;
        let mut correlation_id = 0;
        for _ in 0..100_000 {
            if next.iter().all(|&n| n == BATCHES) && in_flight.is_empty() {
                break;
            }
            let sendable: Vec<usize> = (0..2).filter(|&p| next[p] < BATCHES && rewind[p].is_none()).collect();
            if in_flight.len() < PIPELINE && !sendable.is_empty() && rng.bool() {
                let p = sendable[rng.usize(..sendable.len())];
                let seq = next[p];
                next[p] += 1;
                correlation_id += 1;
                in_flight.push((correlation_id, p, seq));
                let batches = vec![batch(p as i32, Some((0, seq)))];
                let gap = if check_gaps { queue.gap_error(&batches, now) } else { None };
                if gap.is_some() || rng.u32(0..100) < 33 {
                    fail(&mut queue, correlation_id, batches);
                    continue;
                }
                queue.push(request(correlation_id));
                let ok = match seq.cmp(&broker_next[p]) {
                    std::cmp::Ordering::Equal => {
                        broker_next[p] += 1;
                        true
                    }
                    std::cmp::Ordering::Less => true, // a duplicate the broker already has
                    std::cmp::Ordering::Greater => {
                        gaps += 1;
                        false
                    }
                };
                results.insert(correlation_id, ok);
            } else if !in_flight.is_empty() {
                let (id, p, seq) = in_flight.remove(0);
                let ok = match queue.take_local() {
                    Some(_) => false,
                    None => {
                        assert!(matches!(queue.complete(id), Ok(Answer::Request(_))));
                        results[&id]
                    }
                };
                if !ok {
                    rewind[p] = Some(rewind[p].map_or(seq, |r| r.min(seq)));
                }
                // The client starts over from its first failed batch once none is in flight.
                if let Some(from) = rewind[p].filter(|_| in_flight.iter().all(|&(_, q, _)| q != p)) {
                    next[p] = from;
                    rewind[p] = None;
                }
            }
        }
        if gaps > 0 {
            return Err(gaps);
        }
        assert_eq!(broker_next, [BATCHES, BATCHES], "every batch landed, in order");
        Ok(())
    }
}
