//! Logging: `tracing` events with fields (`peer`, `upstream`, `shard`, `api`, ...), written to
//! stderr by tracing-subscriber, one line each:
//! `2026-11-27T04:39:30.123456Z  WARN shard-0 kaos::shard: closing client peer=... error=...`,
//! or, with `--log-format json`, one JSON object each for log pipelines:
//! `{"timestamp":"...","level":"WARN","message":"closing client","peer":"...","target":"kaos::shard","threadName":"shard-0"}`.
//!
//! The level comes from `--log-level`, or from `RUST_LOG` when it is set (full filter syntax, for
//! example `kaos=debug,glommio=warn`). glommio and tiny_http log through the `log` crate; their
//! records are bridged into the same output, at the same level, instead of being dropped.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tracing::level_filters::LevelFilter;
use tracing_subscriber::EnvFilter;

/// How each log event is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One human-readable line.
    Text,
    /// One JSON object per line, the event's fields at its top level.
    Json,
}

/// Starts logging; call once, first thing.
pub fn init(level: &str, format: LogFormat) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|directives| EnvFilter::try_new(directives).ok())
        .unwrap_or_else(|| EnvFilter::new(format!("{level},glommio=warn")));
    let max = filter.max_level_hint().unwrap_or(LevelFilter::TRACE);
    // The bridge drops `log` records above the level kaos logs at before they are formatted, so
    // glommio's own trace points cost nothing on the data path.
    let _ = tracing_log::LogTracer::init_with_filter(log_level(max));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_thread_names(true);
    let _ = match format {
        LogFormat::Text => tracing::subscriber::set_global_default(
            builder.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).finish(),
        ),
        LogFormat::Json => tracing::subscriber::set_global_default(
            builder.json().flatten_event(true).with_current_span(false).with_span_list(false).finish(),
        ),
    };
}

fn log_level(level: LevelFilter) -> log::LevelFilter {
    match level.into_level() {
        None => log::LevelFilter::Off,
        Some(tracing::Level::ERROR) => log::LevelFilter::Error,
        Some(tracing::Level::WARN) => log::LevelFilter::Warn,
        Some(tracing::Level::INFO) => log::LevelFilter::Info,
        Some(tracing::Level::DEBUG) => log::LevelFilter::Debug,
        Some(tracing::Level::TRACE) => log::LevelFilter::Trace,
    }
}

/// Folds a burst of the same event into one line: the first occurrence is logged at once, the
/// ones that follow within `window` are counted, and the count is logged when the window closes
/// (300 "Too many open files" in one second become two lines, not 300).
#[derive(Debug)]
pub struct Burst {
    window: Duration,
    opened: Option<Instant>,
    repeats: u64,
}

impl Burst {
    pub fn new(window: Duration) -> Burst {
        Burst { window, opened: None, repeats: 0 }
    }

    /// Records one occurrence. `Some(n)` when it must be logged (the first of a burst), with the
    /// repeats of the previous burst not yet reported; `None` when it is only counted.
    pub fn occur(&mut self, now: Instant) -> Option<u64> {
        match self.opened {
            Some(opened) if now.duration_since(opened) < self.window => {
                self.repeats += 1;
                None
            }
            _ => {
                self.opened = Some(now);
                Some(std::mem::take(&mut self.repeats))
            }
        }
    }

    /// How many repeats to report once the window has closed (then counting starts over).
    pub fn closed(&mut self, now: Instant) -> Option<u64> {
        let opened = self.opened?;
        if now.duration_since(opened) < self.window || self.repeats == 0 {
            return None;
        }
        let repeats = self.repeats;
        self.repeats = 0;
        Some(repeats)
    }
}

/// How many distinct things [`SaidOnce`] remembers; past that it stays quiet.
const SAID_ONCE_LIMIT: usize = 1024;

/// Lines said once per process: a problem every connection to one broker meets (a response kaos
/// cannot rewrite, a node id without a port) is one line per broker, not one per connection.
#[derive(Debug, Default)]
pub struct SaidOnce(Mutex<HashSet<String>>);

impl SaidOnce {
    /// True the first time `key` comes (up to a bound, so a broker inventing keys cannot grow it).
    pub fn first(&self, key: String) -> bool {
        let Ok(mut said) = self.0.lock() else { return false };
        said.len() < SAID_ONCE_LIMIT && said.insert(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_one_line_and_a_count() {
        let start = Instant::now();
        let mut burst = Burst::new(Duration::from_secs(1));
        let logged: Vec<_> = (0..300).filter_map(|i| burst.occur(start + Duration::from_millis(i))).collect();
        assert_eq!(logged, [0], "one line for the first");
        assert_eq!(burst.closed(start + Duration::from_millis(500)), None, "window still open");
        assert_eq!(burst.closed(start + Duration::from_millis(1000)), Some(299));
        assert_eq!(burst.closed(start + Duration::from_millis(1500)), None, "reported once");
        assert_eq!(
            burst.occur(start + Duration::from_millis(1600)),
            Some(0),
            "a later one starts a new burst"
        );
        // A flood that outlasts the window: the next line carries the count, none is lost.
        for i in 0..150 {
            assert_eq!(burst.occur(start + Duration::from_millis(1601 + i)), None, "counted, not logged");
        }
        assert_eq!(burst.occur(start + Duration::from_millis(2600)), Some(150));
    }

    #[test]
    fn said_once_says_each_thing_once_up_to_a_bound() {
        let once = SaidOnce::default();
        assert!(once.first("broker 1".into()));
        assert!(!once.first("broker 1".into()));
        assert!(once.first("broker 2".into()));
        let fresh = (0..2 * SAID_ONCE_LIMIT).filter(|i| once.first(format!("key {i}"))).count();
        assert_eq!(fresh, SAID_ONCE_LIMIT - 2, "bounded");
    }
}
