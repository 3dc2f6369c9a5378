//! Requests forwarded upstream and still owed a response, oldest first.
//!
//! Kafka answers the requests of one connection in order, so the queue's front is always the
//! request the next response belongs to. The queue is the single authority on response order:
//! a request answered locally or held back (chaos) takes its place here like any other.

use std::collections::VecDeque;
use std::time::Instant;

#[derive(Debug, Clone, Copy)]
pub struct InFlight {
    pub correlation_id: i32,
    pub api_key: i16,
    pub api_version: i16,
    pub sent_at: Instant,
}

#[derive(Debug)]
pub struct InFlightQueue {
    entries: VecDeque<InFlight>,
    limit: usize,
}

impl InFlightQueue {
    pub fn new(limit: usize) -> InFlightQueue {
        InFlightQueue {
            entries: VecDeque::with_capacity(limit.min(64)),
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

    /// Takes the oldest request, which must carry the response's correlation id.
    pub fn complete(&mut self, correlation_id: i32) -> Result<InFlight, String> {
        match self.entries.front() {
            None => Err(format!(
                "unsolicited response with correlation id {correlation_id}"
            )),
            Some(oldest) if oldest.correlation_id != correlation_id => Err(format!(
                "response correlation id {correlation_id} does not match the oldest request's {}",
                oldest.correlation_id
            )),
            Some(_) => Ok(self.entries.pop_front().expect("front exists")),
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
        }
    }

    #[test]
    fn responses_complete_requests_in_order() {
        let mut queue = InFlightQueue::new(2);
        assert!(queue.complete(1).is_err());
        queue.push(request(1));
        queue.push(request(2));
        assert!(queue.is_full());
        assert!(queue.complete(2).unwrap_err().contains("does not match"));
        assert_eq!(queue.complete(1).unwrap().correlation_id, 1);
        assert_eq!(queue.complete(2).unwrap().correlation_id, 2);
        assert!(queue.is_empty());
    }
}
