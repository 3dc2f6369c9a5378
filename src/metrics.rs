//! The data path's counters. Each shard owns one `ShardMetrics` and is its only writer, so counters
//! are plain relaxed load+store (no locked instructions). Latency histograms stay shard-local and
//! are folded into the shared copy once a second, off the data path. The control thread reads
//! both to render `/metrics` (`control::metrics`).

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use hdrhistogram::Histogram;

use crate::chaos::{Effect, FAULTS, FaultSpec, Latency};

/// API keys 0..API_KEY_SLOTS get their own counters; anything else is counted as "other".
pub const API_KEY_SLOTS: usize = 128;

/// A counter with a single writer thread.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn add(&self, n: u64) {
        self.0.store(self.0.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Request latency of one API, in microseconds: its distribution and its exact sum.
#[derive(Debug, Clone)]
pub struct ApiLatency {
    pub histogram: Histogram<u64>,
    pub sum_micros: u64,
}

impl Default for ApiLatency {
    fn default() -> Self {
        let histogram =
            Histogram::new_with_bounds(1, 3_600_000_000, 2).expect("static histogram bounds are valid");
        ApiLatency { histogram, sum_micros: 0 }
    }
}

impl ApiLatency {
    fn record(&mut self, micros: u64) {
        self.histogram.saturating_record(micros.max(1));
        self.sum_micros = self.sum_micros.saturating_add(micros);
    }

    /// Adds `other` in; histograms share their bounds, so this cannot fail.
    pub fn add(&mut self, other: &ApiLatency) {
        let _ = self.histogram.add(&other.histogram);
        self.sum_micros = self.sum_micros.saturating_add(other.sum_micros);
    }

    fn reset(&mut self) {
        self.histogram.reset();
        self.sum_micros = 0;
    }
}

/// Latency per API key slot; `None` where nothing was recorded.
pub type LatencyByApi = Vec<Option<ApiLatency>>;

/// Counters of one shard, padded so that two shards never share a cache line.
#[repr(align(128))]
#[derive(Debug)]
pub struct ShardMetrics {
    pub connections_opened: Counter,
    pub connections_closed: Counter,
    pub bytes_from_clients: Counter,
    pub bytes_from_brokers: Counter,
    pub upstream_connect_failures: Counter,
    /// Broker connections that did not accept kaos's SASL credentials.
    pub upstream_login_failures: Counter,
    /// Clients that failed to log in to kaos (`--client-users`).
    pub client_login_failures: Counter,
    pub connections_rejected: Counter,
    requests: Box<[Counter]>,
    latency: Mutex<LatencyByApi>,
    /// Per fault (`FaultSpec::index`): requests affected, records changed, latency added.
    pub chaos_affected: [Counter; FAULTS.len()],
    pub chaos_records_changed: [Counter; FAULTS.len()],
    pub chaos_latency_added_ms: [Counter; FAULTS.len()],
    /// Requests a matching rule could not act on: a version kaos cannot decode, passed untouched.
    pub chaos_undecodable: Counter,
    /// Produce requests failed because kaos failed an earlier one for the same partition that the
    /// client had not yet seen: forwarding them would open a sequence gap.
    pub chaos_gaps_prevented: Counter,
}

impl Default for ShardMetrics {
    fn default() -> Self {
        ShardMetrics {
            connections_opened: Counter::default(),
            connections_closed: Counter::default(),
            bytes_from_clients: Counter::default(),
            bytes_from_brokers: Counter::default(),
            upstream_connect_failures: Counter::default(),
            upstream_login_failures: Counter::default(),
            client_login_failures: Counter::default(),
            connections_rejected: Counter::default(),
            requests: (0..=API_KEY_SLOTS).map(|_| Counter::default()).collect(),
            latency: Mutex::new(vec![None; API_KEY_SLOTS]),
            chaos_affected: Default::default(),
            chaos_records_changed: Default::default(),
            chaos_latency_added_ms: Default::default(),
            chaos_undecodable: Counter::default(),
            chaos_gaps_prevented: Counter::default(),
        }
    }
}

/// The counter slot of an API key; the last slot collects every key past `API_KEY_SLOTS`.
pub fn slot(api_key: i16) -> usize {
    usize::try_from(api_key).ok().filter(|&k| k < API_KEY_SLOTS).unwrap_or(API_KEY_SLOTS)
}

impl ShardMetrics {
    pub fn count_request(&self, api_key: i16) {
        self.requests[slot(api_key)].add(1);
    }

    /// Requests by API key slot (the last slot: keys past `API_KEY_SLOTS`).
    pub fn requests(&self) -> &[Counter] {
        &self.requests
    }

    /// The latency folded in so far; the shard skips its fold while this is held.
    pub fn latency(&self) -> MutexGuard<'_, LatencyByApi> {
        self.latency.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Counts one fault acting on one request.
    pub fn count_effect(&self, fault: &'static FaultSpec, effect: &Effect) {
        let index = fault.index();
        self.chaos_affected[index].add(1);
        match effect {
            Effect::Delay(Latency { delay, .. })
            | Effect::Fail { after: delay, .. }
            | Effect::Throttled(delay) => self.chaos_latency_added_ms[index].add(delay.as_millis() as u64),
            Effect::Rewrote(records) => self.chaos_records_changed[index].add(*records),
            Effect::Duplicate | Effect::NoResponse { .. } | Effect::Altered(_) | Effect::Network(_) => {}
        }
    }
}

/// Shard-local latency, in microseconds, per API key.
#[derive(Debug)]
pub struct LatencyRecorder {
    local: RefCell<LatencyByApi>,
}

impl Default for LatencyRecorder {
    fn default() -> Self {
        LatencyRecorder { local: RefCell::new(vec![None; API_KEY_SLOTS]) }
    }
}

impl LatencyRecorder {
    pub fn record(&self, api_key: i16, micros: u64) {
        let index = slot(api_key);
        if index == API_KEY_SLOTS {
            return;
        }
        self.local.borrow_mut()[index].get_or_insert_with(ApiLatency::default).record(micros);
    }

    /// Folds what was recorded since the last call into the shard's shared copy. Skips the
    /// round if a scrape holds it, so the shard never waits.
    pub fn publish(&self, metrics: &ShardMetrics) {
        let Ok(mut shared) = metrics.latency.try_lock() else {
            return;
        };
        let mut local = self.local.borrow_mut();
        for (index, latency) in local.iter_mut().enumerate() {
            if let Some(latency) = latency.as_mut().filter(|l| !l.histogram.is_empty()) {
                shared[index].get_or_insert_with(ApiLatency::default).add(latency);
                latency.reset();
            }
        }
    }
}
