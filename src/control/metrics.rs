//! Prometheus metrics. Each shard owns one `ShardMetrics` and is its only writer, so counters are
//! plain relaxed load+store (no locked instructions). Latency histograms stay shard-local and are
//! folded into the shared copy once a second, off the data path.

use std::cell::RefCell;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use hdrhistogram::Histogram;
use kafka_protocol::messages::ApiKey;

use crate::chaos::{Effect, FAULTS, FaultSpec};

/// API keys 0..API_KEY_SLOTS get their own counters; anything else is counted as "other".
pub const API_KEY_SLOTS: usize = 128;
const LATENCY_BUCKETS_US: [u64; 16] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000, 5_000_000, 10_000_000,
];

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

/// Counters of one shard, padded so that two shards never share a cache line.
#[repr(align(128))]
#[derive(Debug)]
pub struct ShardMetrics {
    pub connections_opened: Counter,
    pub connections_closed: Counter,
    pub bytes_from_clients: Counter,
    pub bytes_from_brokers: Counter,
    pub upstream_connect_failures: Counter,
    pub connections_rejected: Counter,
    requests: Box<[Counter]>,
    latency: Mutex<Vec<Option<Histogram<u64>>>>,
    /// Per fault (`FaultSpec::index`): requests affected, records changed, latency added.
    pub chaos_affected: [Counter; FEATURES],
    pub chaos_records_changed: [Counter; FEATURES],
    pub chaos_latency_added_ms: [Counter; FEATURES],
    /// Requests a matching rule could not act on: a version kaos cannot decode, passed untouched.
    pub chaos_undecodable: Counter,
}

const FEATURES: usize = FAULTS.len();

impl Default for ShardMetrics {
    fn default() -> Self {
        ShardMetrics {
            connections_opened: Counter::default(),
            connections_closed: Counter::default(),
            bytes_from_clients: Counter::default(),
            bytes_from_brokers: Counter::default(),
            upstream_connect_failures: Counter::default(),
            connections_rejected: Counter::default(),
            requests: (0..=API_KEY_SLOTS).map(|_| Counter::default()).collect(),
            latency: Mutex::new(vec![None; API_KEY_SLOTS]),
            chaos_affected: Default::default(),
            chaos_records_changed: Default::default(),
            chaos_latency_added_ms: Default::default(),
            chaos_undecodable: Counter::default(),
        }
    }
}

fn slot(api_key: i16) -> usize {
    usize::try_from(api_key).ok().filter(|&k| k < API_KEY_SLOTS).unwrap_or(API_KEY_SLOTS)
}

impl ShardMetrics {
    pub fn count_request(&self, api_key: i16) {
        self.requests[slot(api_key)].add(1);
    }

    /// Counts one fault acting on one request.
    pub fn count_effect(&self, fault: &'static FaultSpec, effect: &Effect) {
        let index = fault.index();
        self.chaos_affected[index].add(1);
        match effect {
            Effect::Delay(delay) | Effect::Fail { after: delay, .. } => {
                self.chaos_latency_added_ms[index].add(delay.as_millis() as u64)
            }
            Effect::Rewrote(records) => self.chaos_records_changed[index].add(*records),
            Effect::Duplicate => {}
        }
    }
}

/// Shard-local latency histograms, in microseconds, per API key.
#[derive(Debug)]
pub struct LatencyRecorder {
    histograms: RefCell<Vec<Option<Histogram<u64>>>>,
}

impl Default for LatencyRecorder {
    fn default() -> Self {
        LatencyRecorder { histograms: RefCell::new(vec![None; API_KEY_SLOTS]) }
    }
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 2).expect("static histogram bounds are valid")
}

impl LatencyRecorder {
    pub fn record(&self, api_key: i16, micros: u64) {
        let index = slot(api_key);
        if index == API_KEY_SLOTS {
            return;
        }
        let mut histograms = self.histograms.borrow_mut();
        let histogram = histograms[index].get_or_insert_with(new_histogram);
        histogram.saturating_record(micros.max(1));
    }

    /// Folds what was recorded since the last call into the shard's shared histograms. Skips the
    /// round if a scrape holds them, so the shard never waits.
    pub fn publish(&self, metrics: &ShardMetrics) {
        let Ok(mut shared) = metrics.latency.try_lock() else {
            return;
        };
        let mut local = self.histograms.borrow_mut();
        for (index, histogram) in local.iter_mut().enumerate() {
            if let Some(histogram) = histogram.as_mut().filter(|h| !h.is_empty()) {
                let target = shared[index].get_or_insert_with(new_histogram);
                let _ = target.add(&*histogram);
                histogram.reset();
            }
        }
    }
}

fn api_name(index: usize) -> String {
    i16::try_from(index)
        .ok()
        .and_then(|key| ApiKey::try_from(key).ok())
        .map_or_else(|| "Other".to_owned(), |api| format!("{api:?}"))
}

/// A per-shard series: name, type, help text, and how to read it.
type ShardSeries = (&'static str, &'static str, &'static str, fn(&ShardMetrics) -> u64);

/// Renders all shards' metrics in the Prometheus text format.
pub fn render(shards: &[std::sync::Arc<ShardMetrics>], upstream_ready: bool) -> String {
    let mut out = String::with_capacity(8 * 1024);
    let counters: [ShardSeries; 6] = [
        ("kaos_connections_open", "gauge", "Client connections open now.", |m| {
            m.connections_opened.get().saturating_sub(m.connections_closed.get())
        }),
        ("kaos_connections_total", "counter", "Client connections accepted.", |m| m.connections_opened.get()),
        ("kaos_upstream_connect_failures_total", "counter", "Failed connections to upstream brokers.", |m| {
            m.upstream_connect_failures.get()
        }),
        (
            "kaos_connections_rejected_total",
            "counter",
            "Connections closed for malformed or oversized frames.",
            |m| m.connections_rejected.get(),
        ),
        ("kaos_bytes_from_clients_total", "counter", "Bytes read from Kafka clients.", |m| {
            m.bytes_from_clients.get()
        }),
        ("kaos_bytes_from_brokers_total", "counter", "Bytes read from upstream brokers.", |m| {
            m.bytes_from_brokers.get()
        }),
    ];
    for (name, kind, help, value) in counters {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (shard, metrics) in shards.iter().enumerate() {
            let _ = writeln!(out, "{name}{{shard=\"{shard}\"}} {}", value(metrics));
        }
    }
    let _ = writeln!(
        out,
        "# HELP kaos_requests_total Requests from clients, by API.\n# TYPE kaos_requests_total counter"
    );
    for (shard, metrics) in shards.iter().enumerate() {
        for (index, counter) in metrics.requests.iter().enumerate() {
            if counter.get() > 0 {
                let _ = writeln!(
                    out,
                    "kaos_requests_total{{shard=\"{shard}\",api=\"{}\"}} {}",
                    api_name(index),
                    counter.get()
                );
            }
        }
    }
    render_latency(&mut out, shards);
    render_chaos(&mut out, shards);
    let _ = writeln!(
        out,
        "# HELP kaos_upstream_ready 1 when the upstream cluster answers Metadata.\n# TYPE kaos_upstream_ready gauge"
    );
    let _ = writeln!(out, "kaos_upstream_ready {}", u8::from(upstream_ready));
    out
}

/// The console's live numbers: per-feature fault counters, connections, and the running count
/// and sum of request latency (the console charts their change per second).
pub fn stats(shards: &[std::sync::Arc<ShardMetrics>]) -> serde_json::Value {
    let features: serde_json::Map<String, serde_json::Value> = FAULTS
        .iter()
        .enumerate()
        .map(|(index, fault)| {
            let total = |counters: fn(&ShardMetrics) -> &[Counter; FEATURES]| -> u64 {
                shards.iter().map(|m| counters(m)[index].get()).sum()
            };
            let counts = serde_json::json!({
                "affected": total(|m| &m.chaos_affected),
                "recordsChanged": total(|m| &m.chaos_records_changed),
                "latencyAddedMs": total(|m| &m.chaos_latency_added_ms),
            });
            (fault.name.to_owned(), counts)
        })
        .collect();
    let (mut count, mut sum_seconds) = (0u64, 0f64);
    for metrics in shards {
        let shared = metrics.latency.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        for histogram in shared.iter().flatten() {
            count += histogram.len();
            sum_seconds += histogram.mean() * histogram.len() as f64 / 1e6;
        }
    }
    let open: u64 =
        shards.iter().map(|m| m.connections_opened.get().saturating_sub(m.connections_closed.get())).sum();
    serde_json::json!({
        "features": features,
        "connectionsOpen": open,
        "latency": {"count": count, "sumSeconds": sum_seconds},
    })
}

fn render_chaos(out: &mut String, shards: &[std::sync::Arc<ShardMetrics>]) {
    type FeatureSeries = (&'static str, &'static str, fn(&ShardMetrics) -> &[Counter; FEATURES]);
    let series: [FeatureSeries; 3] = [
        ("kaos_chaos_requests_affected_total", "Requests a chaos fault acted on.", |m| &m.chaos_affected),
        ("kaos_chaos_records_changed_total", "Records a chaos fault rewrote.", |m| &m.chaos_records_changed),
        ("kaos_chaos_latency_added_ms_total", "Milliseconds of delay chaos added.", |m| {
            &m.chaos_latency_added_ms
        }),
    ];
    for (name, help, counters) in series {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for (index, fault) in FAULTS.iter().enumerate() {
            let total: u64 = shards.iter().map(|m| counters(m)[index].get()).sum();
            let _ = writeln!(out, "{name}{{feature=\"{}\"}} {total}", fault.name);
        }
    }
    let name = "kaos_chaos_undecodable_total";
    let _ = writeln!(
        out,
        "# HELP {name} Requests a matching rule skipped: a version kaos cannot decode, relayed untouched."
    );
    let _ = writeln!(
        out,
        "# TYPE {name} counter\n{name} {}",
        shards.iter().map(|m| m.chaos_undecodable.get()).sum::<u64>()
    );
}

fn render_latency(out: &mut String, shards: &[std::sync::Arc<ShardMetrics>]) {
    let name = "kaos_request_latency_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} Request-to-response time through kaos, by API.\n# TYPE {name} histogram"
    );
    let mut merged: Vec<Option<Histogram<u64>>> = vec![None; API_KEY_SLOTS];
    for metrics in shards {
        let shared = metrics.latency.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        for (index, histogram) in shared.iter().enumerate() {
            if let Some(histogram) = histogram {
                let _ = merged[index].get_or_insert_with(new_histogram).add(histogram);
            }
        }
    }
    for (index, histogram) in merged.iter().enumerate() {
        let Some(histogram) = histogram else { continue };
        let api = api_name(index);
        for bound in LATENCY_BUCKETS_US {
            let count = histogram.count_between(0, bound);
            let _ = writeln!(out, "{name}_bucket{{api=\"{api}\",le=\"{}\"}} {count}", bound as f64 / 1e6);
        }
        let total = histogram.len();
        let _ = writeln!(out, "{name}_bucket{{api=\"{api}\",le=\"+Inf\"}} {total}");
        let _ = writeln!(out, "{name}_sum{{api=\"{api}\"}} {}", histogram.mean() * total as f64 / 1e6);
        let _ = writeln!(out, "{name}_count{{api=\"{api}\"}} {total}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn rendered_metrics_carry_counts_and_latency_buckets() {
        let shard = Arc::new(ShardMetrics::default());
        shard.connections_opened.add(3);
        shard.connections_closed.add(1);
        shard.count_request(0);
        shard.count_request(0);
        shard.count_request(500);
        let recorder = LatencyRecorder::default();
        recorder.record(0, 300);
        recorder.record(0, 20_000);
        recorder.publish(&shard);
        let text = render(&[shard], true);
        assert!(text.contains("kaos_connections_open{shard=\"0\"} 2"), "{text}");
        assert!(text.contains("kaos_requests_total{shard=\"0\",api=\"Produce\"} 2"), "{text}");
        assert!(text.contains("kaos_requests_total{shard=\"0\",api=\"Other\"} 1"), "{text}");
        assert!(
            text.contains("kaos_request_latency_seconds_bucket{api=\"Produce\",le=\"0.0005\"} 1"),
            "{text}"
        );
        assert!(text.contains("kaos_request_latency_seconds_count{api=\"Produce\"} 2"), "{text}");
        assert!(text.contains("kaos_upstream_ready 1"));
    }
}
