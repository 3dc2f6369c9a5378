//! The event log: every fault kaos injects (or, for a `dryRun` rule, would have injected), for
//! `GET /events` and the console's live tail.
//!
//! Recording costs nothing when nothing is injected: an event is made only where a fault acted.
//! Shards hand events to the control thread through a bounded channel whose `try_send` takes no
//! lock and never waits; when the control thread falls behind, events are dropped and counted
//! rather than slowing the data path. The control thread keeps the most recent ones in a ring,
//! numbered in the order it received them.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};

use serde_json::{Value, json};

use crate::chaos::rule::{RuleKey, api_key_name_of, unix_ms};
use crate::chaos::{Effect, Rule};

/// Events the ring keeps by default (`--events`).
pub const DEFAULT_EVENTS: usize = 10_000;

/// Events in flight between the shards and the control thread, at most.
const CHANNEL: usize = 4096;

/// One fault acting on one request (or connection).
#[derive(Debug, Clone)]
pub struct Event {
    pub at_unix_ms: u64,
    pub rule: RuleKey,
    pub dry_run: bool,
    pub effect: Effect,
    pub client: Option<IpAddr>,
    pub client_id: Option<String>,
    pub user: Option<String>,
    pub broker: Option<i32>,
    /// The request's API key, version and correlation id; none for a connection refused at
    /// accept.
    pub request: Option<(i16, i16, i32)>,
    pub partitions: Vec<(String, i32)>,
}

/// Where a request's events come from: what the connection knows about it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Origin<'a> {
    pub client: Option<IpAddr>,
    pub client_id: Option<&'a str>,
    pub user: Option<&'a str>,
    pub broker: Option<i32>,
    pub request: Option<(i16, i16, i32)>,
    pub partitions: &'a [(String, i32)],
}

impl Event {
    pub fn new(rule: &Rule, effect: Effect, origin: Origin<'_>) -> Event {
        Event {
            at_unix_ms: unix_ms(),
            rule: rule.key.clone(),
            dry_run: rule.common.dry_run,
            effect,
            client: origin.client,
            client_id: origin.client_id.map(str::to_owned),
            user: origin.user.map(str::to_owned),
            broker: origin.broker,
            request: origin.request,
            partitions: origin.partitions.to_vec(),
        }
    }

    fn to_json(&self, seq: u64) -> Value {
        let partitions: Vec<Value> = self
            .partitions
            .iter()
            .map(|(topic, partition)| json!({"topic": topic, "partition": partition}))
            .collect();
        json!({
            "seq": seq,
            "timeMs": self.at_unix_ms,
            "tenant": self.rule.tenant,
            "user": self.rule.user,
            "feature": self.rule.feature,
            "ruleApiKeys": api_key_name_of(self.rule.api_key),
            "direction": self.rule.direction.name(),
            "dryRun": self.dry_run,
            "did": self.effect.to_json(),
            "clientAddress": self.client.map(|address| address.to_string()),
            "clientId": self.client_id,
            "authenticatedUser": self.user,
            "brokerId": self.broker,
            "apiKey": self.request.map(|(key, _, _)| api_key_name_of(key)),
            "apiVersion": self.request.map(|(_, version, _)| version),
            "correlationId": self.request.map(|(_, _, id)| id),
            "topicPartitions": partitions,
        })
    }
}

/// The shards' end: records events without waiting.
#[derive(Debug)]
pub struct EventSink {
    sender: SyncSender<Event>,
    dropped: AtomicU64,
    /// The control thread's end, until it takes it.
    receiver: Mutex<Option<Receiver<Event>>>,
}

impl Default for EventSink {
    fn default() -> EventSink {
        let (sender, receiver) = sync_channel(CHANNEL);
        EventSink { sender, dropped: AtomicU64::new(0), receiver: Mutex::new(Some(receiver)) }
    }
}

impl EventSink {
    /// Hands one event to the control thread; drops it (counted) when the channel is full.
    pub fn record(&self, event: Event) {
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = self.sender.try_send(event) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Events dropped because the control thread fell behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// The receiving end, once, for the control thread.
    pub fn take_receiver(&self) -> Option<Receiver<Event>> {
        self.receiver.lock().ok()?.take()
    }
}

/// The control thread's ring of recent events.
#[derive(Debug)]
pub struct EventRing {
    receiver: Option<Receiver<Event>>,
    events: VecDeque<(u64, Event)>,
    capacity: usize,
    next_seq: u64,
}

impl EventRing {
    pub fn new(receiver: Option<Receiver<Event>>, capacity: usize) -> EventRing {
        EventRing { receiver, events: VecDeque::with_capacity(capacity.min(1024)), capacity, next_seq: 1 }
    }

    /// Takes in what the shards sent since the last call.
    pub fn drain(&mut self) {
        let Some(receiver) = &self.receiver else { return };
        while let Ok(event) = receiver.try_recv() {
            if self.events.len() == self.capacity {
                self.events.pop_front();
            }
            if self.capacity > 0 {
                self.events.push_back((self.next_seq, event));
            }
            self.next_seq += 1;
        }
    }

    /// The events after `since` (a sequence number), oldest first, at most `limit`: the most
    /// recent ones when `since` is 0 and more are kept.
    pub fn after(&self, since: u64, limit: usize) -> Value {
        let newer: Vec<&(u64, Event)> = self.events.iter().filter(|(seq, _)| *seq > since).collect();
        let skip = if since == 0 { newer.len().saturating_sub(limit) } else { 0 };
        Value::from(
            newer
                .into_iter()
                .skip(skip)
                .take(limit)
                .map(|(seq, event)| event.to_json(*seq))
                .collect::<Vec<_>>(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use crate::chaos::Latency;

    fn rule() -> Rule {
        Rule::from_request("t", "u", "slow-broker", br#"{"apiKeys":"PRODUCE"}"#).unwrap()
    }

    fn event(rule: &Rule, ms: u64) -> Event {
        let partitions = [("orders".to_owned(), 2)];
        let origin = Origin {
            broker: Some(1),
            request: Some((0, 9, ms as i32)),
            partitions: &partitions,
            ..Origin::default()
        };
        Event::new(rule, Effect::Delay(Latency::network(Duration::from_millis(ms))), origin)
    }

    #[test]
    fn the_ring_keeps_the_most_recent_in_order_and_pages_by_sequence() {
        let (sink, rule) = (EventSink::default(), rule());
        let mut ring = EventRing::new(sink.take_receiver(), 3);
        assert!(sink.take_receiver().is_none(), "one control thread takes it");
        for ms in 1..=5 {
            sink.record(event(&rule, ms));
        }
        ring.drain();
        let seqs = |events: Value| {
            events.as_array().unwrap().iter().map(|e| e["seq"].as_u64().unwrap()).collect::<Vec<_>>()
        };
        assert_eq!(seqs(ring.after(0, 100)), [3, 4, 5], "the 3 most recent");
        assert_eq!(seqs(ring.after(0, 2)), [4, 5], "the most recent 2 when paging from the start");
        assert_eq!(seqs(ring.after(3, 1)), [4], "after a sequence number: the next ones");
        let first = &ring.after(4, 1)[0];
        assert_eq!(first["did"], json!({"kind": "delay", "ms": 5, "model": "network"}));
        assert_eq!(
            (first["apiKey"].as_str(), first["correlationId"].as_i64(), first["brokerId"].as_i64()),
            (Some("PRODUCE"), Some(5), Some(1))
        );
        assert_eq!(first["topicPartitions"], json!([{"topic": "orders", "partition": 2}]));
        assert_eq!(
            (first["feature"].as_str(), first["dryRun"].as_bool()),
            (Some("slow-broker"), Some(false))
        );
    }

    #[test]
    fn a_full_channel_drops_and_counts_instead_of_waiting() {
        let (sink, rule) = (EventSink::default(), rule());
        for ms in 0..(CHANNEL as u64 + 10) {
            sink.record(event(&rule, ms));
        }
        assert_eq!(sink.dropped(), 10);
    }
}
