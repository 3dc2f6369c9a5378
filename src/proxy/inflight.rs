//! Requests forwarded upstream and still owed a response, oldest first.
//!
//! Kafka answers the requests of one connection in order, so the queue's front is always the
//! request the next response belongs to. The queue is the single authority on response order:
//! a request answered locally or held back (chaos) takes its place here like any other.
//!
//! Produce with acks=0 expects no response and takes no place in the queue. Some brokers (tansu)
//! answer it anyway; the last few such correlation ids are remembered so that their stray
//! responses are recognised and swallowed instead of confusing the client.

use std::collections::VecDeque;
use std::time::Instant;

#[derive(Debug, Clone, Copy)]
pub struct InFlight {
    pub correlation_id: i32,
    pub api_key: i16,
    pub api_version: i16,
    pub sent_at: Instant,
}

/// How many acks=0 correlation ids are remembered.
const SILENT_MEMORY: usize = 256;

#[derive(Debug)]
pub struct InFlightQueue {
    entries: VecDeque<InFlight>,
    silent: VecDeque<i32>,
    limit: usize,
}

/// What a response answers.
#[derive(Debug, Clone, Copy)]
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

    /// Takes the oldest request, which must carry the response's correlation id.
    pub fn complete(&mut self, correlation_id: i32) -> Result<Answer, String> {
        if self.entries.front().is_some_and(|oldest| oldest.correlation_id == correlation_id) {
            return Ok(Answer::Request(self.entries.pop_front().expect("front exists")));
        }
        if let Some(index) = self.silent.iter().position(|&id| id == correlation_id) {
            self.silent.remove(index);
            return Ok(Answer::Unexpected);
        }
        match self.entries.front() {
            None => Err(format!("unsolicited response with correlation id {correlation_id}")),
            Some(oldest) => Err(format!(
                "response correlation id {correlation_id} does not match the oldest request's {}",
                oldest.correlation_id
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(correlation_id: i32) -> InFlight {
        InFlight { correlation_id, api_key: 3, api_version: 12, sent_at: Instant::now() }
    }

    #[test]
    fn responses_complete_requests_in_order() {
        let mut queue = InFlightQueue::new(2);
        assert!(queue.complete(1).is_err());
        queue.push(request(1));
        queue.push(request(2));
        assert!(queue.is_full());
        assert!(queue.complete(2).unwrap_err().contains("does not match"));
        assert!(matches!(queue.complete(1), Ok(Answer::Request(r)) if r.correlation_id == 1));
        assert!(matches!(queue.complete(2), Ok(Answer::Request(r)) if r.correlation_id == 2));
        assert!(queue.is_empty());
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
