//! `/metrics` in the Prometheus text format, rendered with prometheus-client from the shards'
//! own counters (`crate::metrics`), and `/stats`, the console's live numbers.

use std::sync::Arc;

use kafka_protocol::messages::ApiKey;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use serde_json::{Map, Value, json};

use crate::chaos::FAULTS;
use crate::metrics::{API_KEY_SLOTS, ApiLatency, Counter, ShardMetrics};
use crate::shared::Shared;

/// The content type of what [`render`] returns.
pub use prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Latency bucket bounds, in microseconds.
const LATENCY_BUCKETS_US: [u64; 16] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000, 5_000_000, 10_000_000,
];

/// Renders every metric, reading the shards' counters at the moment of the scrape.
pub fn render(shared: &Arc<Shared>) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Scrape(shared.clone())));
    let mut out = String::with_capacity(8 * 1024);
    prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)
        .expect("writing to a String cannot fail");
    out
}

/// The shards' counters, read on each scrape.
#[derive(Debug)]
struct Scrape(Arc<Shared>);

/// A per-shard series: name (counters without the `_total` the encoder appends), help text, type,
/// and how to read it.
type ShardSeries = (&'static str, &'static str, MetricType, fn(&ShardMetrics) -> u64);

const SHARD_SERIES: [ShardSeries; 8] = [
    ("kaos_connections_open", "Client connections open now.", MetricType::Gauge, |m| {
        m.connections_opened.get().saturating_sub(m.connections_closed.get())
    }),
    ("kaos_connections", "Client connections accepted.", MetricType::Counter, |m| m.connections_opened.get()),
    ("kaos_upstream_connect_failures", "Failed connections to upstream brokers.", MetricType::Counter, |m| {
        m.upstream_connect_failures.get()
    }),
    (
        "kaos_upstream_login_failures",
        "Broker connections that refused kaos's SASL credentials (--upstream-sasl-*).",
        MetricType::Counter,
        |m| m.upstream_login_failures.get(),
    ),
    (
        "kaos_client_login_failures",
        "Clients that failed to log in to kaos (--client-users).",
        MetricType::Counter,
        |m| m.client_login_failures.get(),
    ),
    (
        "kaos_connections_rejected",
        "Connections closed for malformed or oversized frames.",
        MetricType::Counter,
        |m| m.connections_rejected.get(),
    ),
    ("kaos_bytes_from_clients", "Bytes read from Kafka clients.", MetricType::Counter, |m| {
        m.bytes_from_clients.get()
    }),
    ("kaos_bytes_from_brokers", "Bytes read from upstream brokers.", MetricType::Counter, |m| {
        m.bytes_from_brokers.get()
    }),
];

/// A per-fault series: name, help text, and the counters it reads.
type FaultSeries = (&'static str, &'static str, fn(&ShardMetrics) -> &[Counter; FAULTS.len()]);

const FAULT_SERIES: [FaultSeries; 3] = [
    ("kaos_chaos_requests_affected", "Requests a chaos fault acted on.", |m| &m.chaos_affected),
    ("kaos_chaos_records_changed", "Records a chaos fault rewrote.", |m| &m.chaos_records_changed),
    ("kaos_chaos_latency_added_ms", "Milliseconds of delay chaos added.", |m| &m.chaos_latency_added_ms),
];

/// A counter summed over the shards: name, help text, and how to read it.
type TotalSeries = (&'static str, &'static str, fn(&ShardMetrics) -> u64);

const CHAOS_TOTALS: [TotalSeries; 2] = [
    (
        "kaos_chaos_undecodable",
        "Requests a matching rule skipped: a version kaos cannot decode, relayed untouched.",
        |m| m.chaos_undecodable.get(),
    ),
    (
        "kaos_chaos_gaps_prevented",
        "Produce requests failed because kaos had failed an earlier one for the same partition that the client had not seen: forwarded, they would reach the broker out of sequence.",
        |m| m.chaos_gaps_prevented.get(),
    ),
];

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let shards = &self.0.shard_metrics;
        for (name, help, kind, read) in SHARD_SERIES {
            let mut family = encoder.encode_descriptor(name, help, None, kind)?;
            for (shard, metrics) in shards.iter().enumerate() {
                let labels = [("shard", shard.to_string())];
                encode_value(family.encode_family(&labels)?, kind, read(metrics))?;
            }
        }

        let mut family = encoder.encode_descriptor(
            "kaos_requests",
            "Requests from clients, by API.",
            None,
            MetricType::Counter,
        )?;
        for (shard, metrics) in shards.iter().enumerate() {
            for (slot, counter) in metrics.requests().iter().enumerate().filter(|(_, c)| c.get() > 0) {
                let labels = [("shard", shard.to_string()), ("api", api_name(slot))];
                ConstCounter::new(counter.get()).encode(family.encode_family(&labels)?)?;
            }
        }

        let mut family = encoder.encode_descriptor(
            "kaos_request_latency_seconds",
            "Request-to-response time through kaos, by API.",
            None,
            MetricType::Histogram,
        )?;
        for (slot, latency) in merged_latency(shards).iter().enumerate() {
            let Some(latency) = latency else { continue };
            // prometheus-client takes each bucket's own count and makes them cumulative.
            let mut below = 0;
            let buckets: Vec<(f64, u64)> = LATENCY_BUCKETS_US
                .iter()
                .map(|&bound| {
                    let cumulative = latency.histogram.count_between(0, bound);
                    let own = cumulative - below;
                    below = cumulative;
                    (bound as f64 / 1e6, own)
                })
                .collect();
            let sum = latency.sum_micros as f64 / 1e6;
            let labels = [("api", api_name(slot))];
            family.encode_family(&labels)?.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                sum,
                latency.histogram.len(),
                &buckets,
                None,
            )?;
        }

        for (name, help, counters) in FAULT_SERIES {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (index, fault) in FAULTS.iter().enumerate() {
                let total: u64 = shards.iter().map(|m| counters(m)[index].get()).sum();
                ConstCounter::new(total).encode(family.encode_family(&[("feature", fault.name)])?)?;
            }
        }
        for (name, help, read) in CHAOS_TOTALS {
            let total: u64 = shards.iter().map(|m| read(m)).sum();
            ConstCounter::new(total).encode(encoder.encode_descriptor(
                name,
                help,
                None,
                MetricType::Counter,
            )?)?;
        }

        let topology = self.0.topology.load();
        let mut family = encoder.encode_descriptor(
            "kaos_broker_reachable",
            "1 for each broker the cluster names that answered kaos at its last look (every second), 0 for one that did not.",
            None,
            MetricType::Gauge,
        )?;
        for node in topology.brokers.keys() {
            let reachable = !topology.unreachable.contains_key(node);
            ConstGauge::new(i64::from(reachable))
                .encode(family.encode_family(&[("node", node.to_string())])?)?;
        }

        let ready = self.0.upstream_ready.load(std::sync::atomic::Ordering::Relaxed);
        ConstGauge::new(i64::from(ready)).encode(encoder.encode_descriptor(
            "kaos_upstream_ready",
            "1 when the upstream cluster answers Metadata.",
            None,
            MetricType::Gauge,
        )?)
    }
}

fn encode_value(
    encoder: prometheus_client::encoding::MetricEncoder<'_>,
    kind: MetricType,
    value: u64,
) -> Result<(), std::fmt::Error> {
    match kind {
        MetricType::Gauge => ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX)).encode(encoder),
        _ => ConstCounter::new(value).encode(encoder),
    }
}

/// Every shard's latency, added up per API.
fn merged_latency(shards: &[Arc<ShardMetrics>]) -> Vec<Option<ApiLatency>> {
    let mut merged: Vec<Option<ApiLatency>> = vec![None; API_KEY_SLOTS];
    for metrics in shards {
        for (slot, latency) in metrics.latency().iter().enumerate() {
            if let Some(latency) = latency {
                merged[slot].get_or_insert_with(ApiLatency::default).add(latency);
            }
        }
    }
    merged
}

fn api_name(slot: usize) -> String {
    i16::try_from(slot)
        .ok()
        .and_then(|key| ApiKey::try_from(key).ok())
        .map_or_else(|| "Other".to_owned(), |api| format!("{api:?}"))
}

/// The console's live numbers: per-feature fault counters, connections, and the running count
/// and sum of request latency (the console charts their change per second).
pub fn stats(shards: &[Arc<ShardMetrics>]) -> Value {
    let features: Map<String, Value> = FAULTS
        .iter()
        .enumerate()
        .map(|(index, fault)| {
            let total = |counters: fn(&ShardMetrics) -> &[Counter; FAULTS.len()]| -> u64 {
                shards.iter().map(|m| counters(m)[index].get()).sum()
            };
            let counts = json!({
                "affected": total(|m| &m.chaos_affected),
                "recordsChanged": total(|m| &m.chaos_records_changed),
                "latencyAddedMs": total(|m| &m.chaos_latency_added_ms),
            });
            (fault.name.to_owned(), counts)
        })
        .collect();
    let latency = merged_latency(shards);
    let count: u64 = latency.iter().flatten().map(|l| l.histogram.len()).sum();
    let sum_micros: u64 = latency.iter().flatten().map(|l| l.sum_micros).sum();
    let open: u64 =
        shards.iter().map(|m| m.connections_opened.get().saturating_sub(m.connections_closed.get())).sum();
    json!({
        "features": features,
        "connectionsOpen": open,
        "latency": {"count": count, "sumSeconds": sum_micros as f64 / 1e6},
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::LatencyRecorder;

    #[test]
    fn rendered_metrics_carry_counts_and_exact_latency() {
        let shared = Arc::new(Shared::new(1));
        let shard = &shared.shard_metrics[0];
        shard.connections_opened.add(3);
        shard.connections_closed.add(1);
        shard.count_request(0);
        shard.count_request(0);
        shard.count_request(500);
        let recorder = LatencyRecorder::default();
        recorder.record(0, 300);
        recorder.record(0, 20_001);
        recorder.publish(shard);
        shared.upstream_ready.store(true, std::sync::atomic::Ordering::Relaxed);
        shared.topology.store(Arc::new(crate::cluster::Topology {
            generation: 1,
            brokers: [(1, "a:1".to_owned()), (2, "b:2".to_owned())].into(),
            unreachable: [(2, "b:2: Connection refused".to_owned())].into(),
        }));
        let text = render(&shared);
        assert!(text.contains("kaos_broker_reachable{node=\"1\"} 1"), "{text}");
        assert!(text.contains("kaos_broker_reachable{node=\"2\"} 0"), "{text}");
        assert!(text.contains("# TYPE kaos_connections_open gauge"), "{text}");
        assert!(text.contains("kaos_connections_open{shard=\"0\"} 2"), "{text}");
        assert!(text.contains("kaos_requests_total{shard=\"0\",api=\"Produce\"} 2"), "{text}");
        assert!(text.contains("kaos_requests_total{shard=\"0\",api=\"Other\"} 1"), "{text}");
        assert!(
            text.contains("kaos_request_latency_seconds_bucket{api=\"Produce\",le=\"0.0005\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("kaos_request_latency_seconds_bucket{api=\"Produce\",le=\"0.025\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("kaos_request_latency_seconds_bucket{api=\"Produce\",le=\"+Inf\"} 2"),
            "{text}"
        );
        assert!(text.contains("kaos_request_latency_seconds_count{api=\"Produce\"} 2"), "{text}");
        assert!(text.contains("kaos_request_latency_seconds_sum{api=\"Produce\"} 0.020301"), "exact: {text}");
        assert!(text.contains("kaos_chaos_requests_affected_total{feature=\"broken-broker\"} 0"), "{text}");
        assert!(text.contains("kaos_upstream_ready 1"), "{text}");
        let stats = stats(&shared.shard_metrics);
        assert_eq!(stats["latency"]["count"], 2);
        assert_eq!(stats["connectionsOpen"], 2);
    }
}
