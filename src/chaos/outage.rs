//! Outages: what broken-broker and leader-election share. A real broker in trouble, or a
//! partition whose leader moves, fails every request for a while, not one request in three: a
//! per-request coin would fail request N and forward N+1 behind it, a sequence gap no broker
//! could cause. So these faults act over windows of time. `rateInPercent` is the chance that a
//! request opens a window where none is open; inside one, every request it covers fails with
//! the rule's errors, on every connection and every shard.
//!
//! Windows live in the rule, which all shards share, so they are lock-free: a fixed table of
//! atomic slots, each holding one key (a broker, or a partition of a broker) and when its window
//! closes. It is touched only by requests a rule already matched.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use kafka_protocol::messages::ApiKey;

use super::alter::Response;
use super::config::{ConfigError, pick_latency};
use super::errors::{KafkaError, check_answered_by};
use super::stable_hash::StableHash;
use super::{Effect, FaultContext};

/// What one window covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowScope {
    /// A whole broker: every request the rule matches on a connection to it.
    Broker,
    /// One partition of one broker.
    Partition,
}

impl WindowScope {
    fn slots(self) -> usize {
        match self {
            WindowScope::Broker => 64,
            WindowScope::Partition => 4096,
        }
    }
}

/// A slot packs a key's tag (high bits) and when its window closes (low bits, milliseconds after
/// the table was made, plus one so that 0 means empty: 2^40 ms is 34 years).
const END_BITS: u32 = 40;
const END_MASK: u64 = (1 << END_BITS) - 1;

/// The windows one rule opened.
pub struct Windows {
    scope: WindowScope,
    /// The length of a new window, in milliseconds: a random pick in this range.
    length_ms: (u64, u64),
    epoch: Instant,
    slots: Box<[AtomicU64]>,
    /// When the last window to close closes: no window is open after it.
    latest_end: AtomicU64,
}

impl Default for Windows {
    /// No windows: the placeholder a config holds until `validate` sizes its table.
    fn default() -> Windows {
        Windows::new(WindowScope::Broker, (0, 0))
    }
}

impl fmt::Debug for Windows {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Windows").field("scope", &self.scope).field("length_ms", &self.length_ms).finish()
    }
}

impl Windows {
    pub fn new(scope: WindowScope, length_ms: (u64, u64)) -> Windows {
        Windows {
            scope,
            length_ms,
            epoch: Instant::now(),
            slots: (0..scope.slots()).map(|_| AtomicU64::new(0)).collect(),
            latest_end: AtomicU64::new(0),
        }
    }

    pub fn scope(&self) -> WindowScope {
        self.scope
    }

    /// The key of a broker (`partition` None) or of one partition of it.
    pub fn key(node: Option<i32>, partition: Option<(&str, i32)>) -> u64 {
        StableHash::default()
            .option(node, StableHash::i32)
            .option(partition, |hash, (topic, partition)| hash.str(topic).i32(partition))
            .finish()
    }

    fn tick(&self, at: Instant) -> u64 {
        let millis = u64::try_from(at.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX);
        millis.saturating_add(1).min(END_MASK)
    }

    fn slot(&self, key: u64) -> Option<(&AtomicU64, u64)> {
        let len = self.slots.len() as u64;
        let slot = self.slots.get(usize::try_from(key % len.max(1)).ok()?)?;
        Some((slot, key >> END_BITS << END_BITS))
    }

    /// Whether some window may be open at `now`: the one check a request pays before its body
    /// is read, when no window is.
    pub fn any_open(&self, now: Instant) -> bool {
        self.latest_end.load(Ordering::Relaxed) > self.tick(now)
    }

    pub fn is_open(&self, key: u64, now: Instant) -> bool {
        self.window_of(key, now).is_some()
    }

    /// The window open for `key` at `now`, by its closing tick: the same number on every shard,
    /// so it can stand for the window (to give all its requests one error).
    pub fn window_of(&self, key: u64, now: Instant) -> Option<u64> {
        let (slot, tag) = self.slot(key)?;
        let value = slot.load(Ordering::Acquire);
        let end = value & END_MASK;
        (value & !END_MASK == tag && end > self.tick(now)).then_some(end)
    }

    /// Opens a window for each of `keys` that has none, for a random length, closed early at
    /// `cut` (the end of the rule's active phase). A key whose slot holds another key's open
    /// window is left alone: with thousands of slots that is rare, and it only spares a
    /// partition an election.
    pub fn open(&self, keys: &[u64], now: Instant, cut: Option<Instant>, rng: &mut fastrand::Rng) {
        let length =
            Duration::from_millis(rng.u64(self.length_ms.0..=self.length_ms.1.max(self.length_ms.0)));
        let closes = cut.map_or(now + length, |cut| cut.min(now + length));
        let end = self.tick(closes);
        let current = self.tick(now);
        for &key in keys {
            let Some((slot, tag)) = self.slot(key) else { continue };
            let mut value = slot.load(Ordering::Acquire);
            // Another shard may open the same key meanwhile: whoever wins, one window is open.
            while value & END_MASK <= current {
                match slot.compare_exchange_weak(value, tag | end, Ordering::AcqRel, Ordering::Acquire) {
                    Ok(_) => {
                        self.latest_end.fetch_max(end, Ordering::Relaxed);
                        break;
                    }
                    Err(now_there) => value = now_there,
                }
            }
        }
    }
}

/// A window's length: `window_ms` when given, else the latency range when it is set, else the
/// fault's default.
pub fn window_length(
    window_ms: Option<u64>,
    min_latency: u64,
    max_latency: Option<u64>,
    default_ms: u64,
) -> (u64, u64) {
    match (window_ms, max_latency) {
        (Some(ms), _) => (ms, ms),
        (None, Some(max)) if max > 0 => (min_latency, max),
        _ => (default_ms, default_ms),
    }
}

/// The defaults of an outage's own fields; its errors default by API (see `settle_errors`).
pub fn defaults() -> Value {
    json!({"minLatencyToAddInMilliseconds": 0})
}

/// Fills in an outage's errors for requests of `api` when the rule gave none (`defaults`), and
/// checks that Kafka answers `api` with each of them.
pub fn settle_errors(
    errors: &mut Option<Vec<KafkaError>>,
    api: ApiKey,
    defaults: &[&str],
) -> Result<(), ConfigError> {
    let errors =
        errors.get_or_insert_with(|| defaults.iter().filter_map(|name| KafkaError::named(name)).collect());
    check_answered_by(api, errors)
}

/// Checks an outage's `partitions`: partition numbers of Produce or Fetch requests.
pub fn check_partitions(partitions: &Option<Vec<i32>>, api: ApiKey) -> Result<(), ConfigError> {
    let Some(partitions) = partitions else { return Ok(()) };
    if !matches!(api, ApiKey::Produce | ApiKey::Fetch) {
        return Err(ConfigError::new("config.partitions", "narrows Produce and Fetch requests only"));
    }
    if partitions.is_empty() {
        return Err(ConfigError::new("config.partitions", "name at least one partition, or leave it out"));
    }
    match partitions.iter().position(|&p| p < 0) {
        Some(index) => {
            Err(ConfigError::new(format!("config.partitions[{index}]"), "partition numbers start at 0"))
        }
        None => Ok(()),
    }
}

/// A Metadata answer whose topics (those `context.topics` covers, or all) carry one of `errors`
/// and no partitions, as a broker answers for a topic it cannot serve; the brokers stay, so the
/// client keeps its connections and asks again.
pub fn fail_topics(
    response: &mut Response<'_>,
    errors: &[KafkaError],
    context: &mut FaultContext<'_>,
) -> Option<Effect> {
    let Response::Metadata(metadata) = response else { return None };
    let mut failed = 0;
    for topic in &mut metadata.topics {
        let name = topic
            .name
            .as_ref()
            .map(|name| name.0.to_string())
            .or_else(|| context.topic_names.name_by_id(topic.topic_id.as_bytes()));
        let covered = context.topics.is_empty() || name.is_some_and(|name| context.topics.matches(&name));
        if covered && !errors.is_empty() {
            topic.error_code = errors[context.rng.usize(..errors.len())].0;
            topic.partitions.clear();
            failed += 1;
        }
    }
    (failed > 0).then_some(Effect::Altered(failed))
}

/// A local answer in a request's place, after a random latency: one of `errors`, the same for
/// every request of one `window` (picked from the window's number), at random without one.
pub fn answer(
    errors: &[KafkaError],
    min_latency: u64,
    max_latency: Option<u64>,
    window: Option<u64>,
    rng: &mut fastrand::Rng,
) -> Effect {
    let index = match window {
        // SplitMix64's finalizer: neighbouring windows get unrelated errors.
        Some(window) => {
            let mut mixed = window.wrapping_add(0x9e37_79b9_7f4a_7c15);
            mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            ((mixed ^ (mixed >> 31)) % errors.len() as u64) as usize
        }
        None => rng.usize(..errors.len()),
    };
    Effect::Fail { error: errors[index].0, after: pick_latency(min_latency, max_latency, rng) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_covers_its_key_until_it_closes() {
        let windows = Windows::new(WindowScope::Partition, (50, 50));
        let start = Instant::now();
        let p0 = Windows::key(Some(1), Some(("orders", 0)));
        let p1 = Windows::key(Some(1), Some(("orders", 1)));
        let other_broker = Windows::key(Some(2), Some(("orders", 0)));
        assert!(!windows.any_open(start) && !windows.is_open(p0, start));
        windows.open(&[p0], start, None, &mut fastrand::Rng::with_seed(1));
        assert!(windows.any_open(start));
        assert!(windows.is_open(p0, start + Duration::from_millis(49)));
        assert!(!windows.is_open(p0, start + Duration::from_millis(51)), "closed");
        assert!(!windows.any_open(start + Duration::from_millis(51)));
        assert!(
            !windows.is_open(p1, start) && !windows.is_open(other_broker, start),
            "one partition, one broker"
        );
    }

    #[test]
    fn an_open_window_is_not_extended_and_the_active_phase_cuts_it() {
        let windows = Windows::new(WindowScope::Broker, (100, 100));
        let start = Instant::now();
        let broker = Windows::key(Some(7), None);
        let mut rng = fastrand::Rng::with_seed(2);
        windows.open(&[broker], start, None, &mut rng);
        windows.open(&[broker], start + Duration::from_millis(90), None, &mut rng);
        assert!(!windows.is_open(broker, start + Duration::from_millis(101)), "the first window's end holds");
        let later = start + Duration::from_millis(200);
        windows.open(&[broker], later, Some(later + Duration::from_millis(10)), &mut rng);
        assert!(windows.is_open(broker, later + Duration::from_millis(9)));
        assert!(!windows.is_open(broker, later + Duration::from_millis(11)), "cut at the phase's end");
    }

    #[test]
    fn window_lengths_come_from_the_field_then_the_latency_then_the_default() {
        assert_eq!(window_length(Some(300), 6000, Some(7000), 1000), (300, 300));
        assert_eq!(window_length(None, 6000, Some(7000), 1000), (6000, 7000));
        assert_eq!(window_length(None, 0, Some(0), 1000), (1000, 1000));
    }

    #[test]
    fn the_placeholder_has_no_windows() {
        let windows = Windows::default();
        let now = Instant::now();
        windows.open(&[1, 2, 3], now, None, &mut fastrand::Rng::with_seed(3));
        assert!(!windows.any_open(now));
    }
}
