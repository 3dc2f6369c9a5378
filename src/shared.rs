//! State shared by the shards, the control thread and the cluster watcher. Everything here is
//! read without locks on the data path: arc-swap snapshots, atomics, and per-shard counters.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, ArcSwapOption};

use crate::chaos::RuleSet;
use crate::cluster::{Topology, Upstream};
use crate::events::EventSink;
use crate::logging::SaidOnce;
use crate::metrics::ShardMetrics;
use crate::sasl::login::Credentials;
use crate::sasl::users::ClientUsers;
use crate::tls::Tls;

#[derive(Debug)]
pub struct Shared {
    pub rules: ArcSwap<RuleSet>,
    pub topology: ArcSwap<Topology>,
    /// Topic names by topic id, learned from Metadata responses on any shard, for requests
    /// that name topics by id (Produce v13+, Fetch v13+).
    pub topic_names: ArcSwap<HashMap<[u8; 16], String>>,
    pub upstream_ready: AtomicBool,
    pub shutting_down: AtomicBool,
    pub shard_metrics: Vec<Arc<ShardMetrics>>,
    /// Problems worth one log line per broker, whichever shard meets them first.
    pub said_once: SaidOnce,
    /// TLS towards clients and brokers, where the flags ask for it.
    pub tls: Tls,
    /// Who kaos logs in to the brokers as (`--upstream-sasl-*`), if anyone.
    pub upstream_sasl: Option<Credentials>,
    /// Why the latest broker login failed; cleared by the next that succeeds. `/ready` says it.
    pub upstream_login_failure: ArcSwapOption<String>,
    /// The users clients must log in as (`--client-users`), if any.
    pub client_users: Option<ClientUsers>,
    /// Where the shards hand the faults they inject to the control thread's event log.
    pub events: EventSink,
    /// When each shard last ran its housekeeping, for `/health`.
    pub liveness: Liveness,
}

/// Each shard's housekeeping beats every 100 ms; one that has not beaten for seconds is stalled
/// (a lost wake-up, a task that never yields), and `/health` says so instead of "ok".
#[derive(Debug)]
pub struct Liveness {
    epoch: Instant,
    /// Milliseconds since `epoch` of each shard's last beat; `u64::MAX` before its first.
    beats: Vec<AtomicU64>,
}

impl Liveness {
    fn new(shards: usize) -> Liveness {
        Liveness { epoch: Instant::now(), beats: (0..shards).map(|_| AtomicU64::new(u64::MAX)).collect() }
    }

    pub fn beat(&self, shard: usize) {
        let now = self.epoch.elapsed().as_millis() as u64;
        self.beats[shard].store(now, Ordering::Relaxed);
    }

    /// The shard that has gone longest without a beat, if that is longer than `limit`.
    pub fn stalled(&self, limit: Duration) -> Option<(usize, Duration)> {
        let now = self.epoch.elapsed().as_millis() as u64;
        self.beats
            .iter()
            .enumerate()
            .filter_map(|(shard, beat)| match beat.load(Ordering::Relaxed) {
                u64::MAX => None,
                last => Some((shard, Duration::from_millis(now.saturating_sub(last)))),
            })
            .max_by_key(|&(_, silent)| silent)
            .filter(|&(_, silent)| silent > limit)
    }
}

impl Shared {
    pub fn new(shards: usize) -> Shared {
        Shared {
            rules: ArcSwap::from_pointee(RuleSet::default()),
            topology: ArcSwap::from_pointee(Topology::default()),
            topic_names: ArcSwap::from_pointee(HashMap::new()),
            upstream_ready: AtomicBool::new(false),
            shutting_down: AtomicBool::new(false),
            shard_metrics: (0..shards).map(|_| Arc::new(ShardMetrics::default())).collect(),
            said_once: SaidOnce::default(),
            tls: Tls::default(),
            upstream_sasl: None,
            upstream_login_failure: ArcSwapOption::empty(),
            client_users: None,
            events: EventSink::default(),
            liveness: Liveness::new(shards),
        }
    }

    /// How the threads beside the shards reach the brokers: TLS and login as the flags ask.
    pub fn upstream(&self) -> Upstream<'_> {
        Upstream { tls: self.tls.upstream.as_ref(), sasl: self.upstream_sasl.as_ref() }
    }

    /// Sleeps in short steps so that a plain thread notices shutdown promptly.
    pub fn sleep_unless_shutting_down(&self, total: Duration) {
        let deadline = Instant::now() + total;
        while !self.shutting_down.load(Ordering::Relaxed) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            std::thread::sleep(left.min(Duration::from_millis(50)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shard_that_stops_beating_is_stalled() {
        let liveness = Liveness::new(2);
        assert_eq!(liveness.stalled(Duration::ZERO), None, "no shard has started");
        liveness.beat(0);
        liveness.beat(1);
        assert_eq!(liveness.stalled(Duration::from_secs(1)), None);
        std::thread::sleep(Duration::from_millis(30));
        liveness.beat(0);
        let (shard, silent) = liveness.stalled(Duration::from_millis(20)).expect("shard 1 is silent");
        assert_eq!(shard, 1);
        assert!(silent >= Duration::from_millis(30), "{silent:?}");
    }
}
