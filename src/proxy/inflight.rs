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

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::BytesMut;

use super::lane::ProtocolError;

/// How many acks=0 correlation ids are remembered.
const SILENT_MEMORY: usize = 256;

/// Who answers a request, and how.
#[derive(Debug)]
pub enum Reply {
    /// The broker answers; its response is held `delay` before it goes to the client.
    Upstream { delay: Duration },
    /// kaos answers with `frame` (length prefix included) once `ready_at` has passed.
    Local { frame: BytesMut, ready_at: Instant },
    /// The broker answers a copy kaos made; the client never sees that response.
    Swallow,
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
            entries: VecDeque::with_capacity(limit.min(64)),
            silent: VecDeque::new(),
            limit: limit.max(1),
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

    /// Takes the oldest request if kaos answers it: its frame and when it may leave.
    pub fn take_local(&mut self) -> Option<(BytesMut, Instant)> {
        if !self.front_is_local() {
            return None;
        }
        match self.entries.pop_front()?.reply {
            Reply::Local { frame, ready_at } => Some((frame, ready_at)),
            _ => None,
        }
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
            reply: Reply::Upstream { delay: Duration::ZERO },
        }
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
        queue.push(InFlight {
            reply: Reply::Local { frame: BytesMut::from(&b"local"[..]), ready_at: Instant::now() },
            ..request(2)
        });
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
}
