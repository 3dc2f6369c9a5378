//! Reading a rule's JSON config with errors that name the field: every field is taken once, with
//! its type checked, and whatever is left over at the end is rejected as unknown.

use std::time::Duration;

use regex::Regex;
use serde_json::{Map, Value};

/// A bad REST body: the field at fault and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub field: String,
    pub reason: String,
}

impl ConfigError {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> ConfigError {
        ConfigError { field: field.into(), reason: reason.into() }
    }
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

/// Takes fields out of a `config` object.
pub struct ConfigReader {
    fields: Map<String, Value>,
}

impl ConfigReader {
    pub fn new(fields: Map<String, Value>) -> ConfigReader {
        ConfigReader { fields }
    }

    fn path(name: &str) -> String {
        format!("config.{name}")
    }

    pub fn u64(&mut self, name: &str) -> Result<Option<u64>, ConfigError> {
        match self.fields.remove(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => match n.as_u64() {
                Some(value) => Ok(Some(value)),
                None => {
                    Err(ConfigError::new(Self::path(name), format!("must be a whole number ≥ 0, got {n}")))
                }
            },
            Some(other) => Err(ConfigError::new(Self::path(name), format!("must be a number, got {other}"))),
        }
    }

    pub fn i32(&mut self, name: &str) -> Result<Option<i32>, ConfigError> {
        match self.fields.remove(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => match n.as_i64().and_then(|v| i32::try_from(v).ok()) {
                Some(value) => Ok(Some(value)),
                None => Err(ConfigError::new(Self::path(name), format!("must be a 32-bit integer, got {n}"))),
            },
            Some(other) => Err(ConfigError::new(Self::path(name), format!("must be a number, got {other}"))),
        }
    }

    pub fn string(&mut self, name: &str) -> Result<Option<String>, ConfigError> {
        match self.fields.remove(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(ConfigError::new(Self::path(name), format!("must be a string, got {other}"))),
        }
    }

    pub fn strings(&mut self, name: &str) -> Result<Vec<String>, ConfigError> {
        match self.fields.remove(name) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .into_iter()
                .enumerate()
                .map(|(i, item)| match item {
                    Value::String(s) => Ok(s),
                    other => Err(ConfigError::new(
                        format!("config.{name}[{i}]"),
                        format!("must be a string, got {other}"),
                    )),
                })
                .collect(),
            Some(other) => Err(ConfigError::new(Self::path(name), format!("must be an array, got {other}"))),
        }
    }

    pub fn i32s(&mut self, name: &str) -> Result<Vec<i32>, ConfigError> {
        match self.fields.remove(name) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .into_iter()
                .enumerate()
                .map(|(i, item)| {
                    item.as_i64().and_then(|v| i32::try_from(v).ok()).ok_or_else(|| {
                        ConfigError::new(
                            format!("config.{name}[{i}]"),
                            format!("must be a 32-bit integer, got {item}"),
                        )
                    })
                })
                .collect(),
            Some(other) => Err(ConfigError::new(Self::path(name), format!("must be an array, got {other}"))),
        }
    }

    /// Rejects any field nobody took.
    pub fn finish(self, known: &[&str]) -> Result<(), ConfigError> {
        match self.fields.keys().next() {
            None => Ok(()),
            Some(unknown) => Err(ConfigError::new(
                Self::path(unknown),
                format!("unknown field for this feature; known fields: {}", known.join(", ")),
            )),
        }
    }
}

/// Units accepted by `durationUnit`, `quietPeriodUnit` and `timeUnit`.
fn unit(name: &str, text: &str) -> Result<Duration, ConfigError> {
    match text {
        "MILLISECONDS" => Ok(Duration::from_millis(1)),
        "SECONDS" => Ok(Duration::from_secs(1)),
        "MINUTES" => Ok(Duration::from_secs(60)),
        "HOURS" => Ok(Duration::from_secs(3600)),
        other => Err(ConfigError::new(
            format!("config.{name}"),
            format!("unknown unit '{other}'; use MILLISECONDS, SECONDS, MINUTES or HOURS"),
        )),
    }
}

/// When a rule fires: active for `duration`, then quiet for `quiet`, repeating from creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    pub duration: Option<Duration>,
    pub quiet: Option<Duration>,
}

impl Schedule {
    pub const FIELDS: [&'static str; 5] =
        ["duration", "durationUnit", "quietPeriod", "quietPeriodUnit", "timeUnit"];

    pub fn read(config: &mut ConfigReader) -> Result<Schedule, ConfigError> {
        let time_unit = match config.string("timeUnit")? {
            Some(text) => unit("timeUnit", &text)?,
            None => Duration::from_millis(1),
        };
        let mut timed = |value: &str, unit_field: &str| -> Result<Option<Duration>, ConfigError> {
            let unit = match config.string(unit_field)? {
                Some(text) => unit(unit_field, &text)?,
                None => time_unit,
            };
            let amount = config.u64(value)?;
            Ok(amount.map(|n| unit.saturating_mul(u32::try_from(n).unwrap_or(u32::MAX))))
        };
        let duration = timed("duration", "durationUnit")?;
        let quiet = timed("quietPeriod", "quietPeriodUnit")?;
        Ok(Schedule { duration, quiet })
    }

    /// Whether a rule created `age` ago is in its active phase.
    pub fn is_active(&self, age: Duration) -> bool {
        let active = match self.duration {
            None => return true,
            Some(d) if d.is_zero() => return true,
            Some(d) => d,
        };
        let quiet = self.quiet.unwrap_or_default();
        if quiet.is_zero() {
            return true;
        }
        let cycle = (active + quiet).as_nanos();
        age.as_nanos() % cycle < active.as_nanos()
    }

    pub fn to_json(self, config: &mut Map<String, Value>) {
        let millis = |d: Duration| Value::from(d.as_millis() as u64);
        if let Some(duration) = self.duration {
            config.insert("duration".into(), millis(duration));
        }
        if let Some(quiet) = self.quiet {
            config.insert("quietPeriod".into(), millis(quiet));
        }
        if self.duration.is_some() || self.quiet.is_some() {
            config.insert("timeUnit".into(), Value::from("MILLISECONDS"));
        }
    }
}

/// Which topics a rule touches: exact names and whole-name regexes. Empty: every topic.
#[derive(Debug, Clone, Default)]
pub struct TopicFilter {
    pub names: Vec<String>,
    pub patterns: Vec<Regex>,
}

impl TopicFilter {
    pub const FIELDS: [&'static str; 2] = ["topics", "topicPatterns"];

    pub fn read(config: &mut ConfigReader) -> Result<TopicFilter, ConfigError> {
        let names = config.strings("topics")?;
        let patterns = config
            .strings("topicPatterns")?
            .into_iter()
            .enumerate()
            .map(|(i, pattern)| {
                Regex::new(&format!("^(?:{pattern})$")).map_err(|e| {
                    ConfigError::new(format!("config.topicPatterns[{i}]"), format!("bad regex: {e}"))
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(TopicFilter { names, patterns })
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty() && self.patterns.is_empty()
    }

    pub fn matches(&self, topic: &str) -> bool {
        self.is_empty()
            || self.names.iter().any(|n| n == topic)
            || self.patterns.iter().any(|p| p.is_match(topic))
    }

    pub fn to_json(&self, config: &mut Map<String, Value>) {
        if !self.names.is_empty() {
            config.insert("topics".into(), Value::from(self.names.clone()));
        }
        if !self.patterns.is_empty() {
            // Stored anchored as ^(?:p)$; report what the user sent.
            let sources: Vec<_> = self
                .patterns
                .iter()
                .map(|p| p.as_str().trim_start_matches("^(?:").trim_end_matches(")$").to_owned())
                .collect();
            config.insert("topicPatterns".into(), Value::from(sources));
        }
    }
}

/// A uniform random latency, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Latency {
    pub min_ms: u64,
    pub max_ms: u64,
}

impl Latency {
    pub const FIELDS: [&'static str; 2] = ["minLatencyToAddInMilliseconds", "maxLatencyToAddInMilliseconds"];

    /// Reads the pair; absent fields default to `default_ms`.
    pub fn read(config: &mut ConfigReader, default_ms: u64) -> Result<Latency, ConfigError> {
        let min_ms = config.u64(Self::FIELDS[0])?;
        let max_ms = config.u64(Self::FIELDS[1])?;
        let (min_ms, max_ms) = match (min_ms, max_ms) {
            (None, None) => (default_ms, default_ms),
            (Some(min), None) => (min, min),
            (None, Some(max)) => (max.min(default_ms), max),
            (Some(min), Some(max)) => (min, max),
        };
        if min_ms > max_ms {
            return Err(ConfigError::new(
                format!("config.{}", Self::FIELDS[0]),
                format!("minimum {min_ms} ms is above the maximum {max_ms} ms"),
            ));
        }
        Ok(Latency { min_ms, max_ms })
    }

    pub fn pick(&self, rng: &mut fastrand::Rng) -> Duration {
        Duration::from_millis(rng.u64(self.min_ms..=self.max_ms))
    }

    pub fn to_json(self, config: &mut Map<String, Value>) {
        config.insert(Self::FIELDS[0].into(), Value::from(self.min_ms));
        config.insert(Self::FIELDS[1].into(), Value::from(self.max_ms));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn reader(value: Value) -> ConfigReader {
        ConfigReader::new(value.as_object().unwrap().clone())
    }

    #[test]
    fn schedules_use_their_units() {
        let mut config = reader(json!({"duration": 1, "quietPeriod": 2, "timeUnit": "MINUTES"}));
        let schedule = Schedule::read(&mut config).unwrap();
        assert_eq!(schedule.duration, Some(Duration::from_secs(60)));
        assert_eq!(schedule.quiet, Some(Duration::from_secs(120)));
        let mut config = reader(
            json!({"duration": 6000, "durationUnit": "MILLISECONDS", "quietPeriod": 20, "quietPeriodUnit": "SECONDS"}),
        );
        let schedule = Schedule::read(&mut config).unwrap();
        assert_eq!(schedule.quiet, Some(Duration::from_secs(20)));
        assert!(schedule.is_active(Duration::from_millis(5999)));
        assert!(!schedule.is_active(Duration::from_millis(6000)));
        assert!(!schedule.is_active(Duration::from_millis(25_999)));
        assert!(schedule.is_active(Duration::from_millis(26_000)));
        let mut config = reader(json!({"duration": 5, "durationUnit": "WEEKS"}));
        assert_eq!(Schedule::read(&mut config).unwrap_err().field, "config.durationUnit");
        let mut config = reader(json!({"duration": -5}));
        assert_eq!(Schedule::read(&mut config).unwrap_err().field, "config.duration");
    }

    #[test]
    fn schedules_without_a_quiet_period_are_always_active() {
        let always = Schedule { duration: Some(Duration::from_secs(1)), quiet: None };
        assert!(always.is_active(Duration::from_secs(10)));
        assert!(Schedule { duration: None, quiet: None }.is_active(Duration::from_secs(10)));
    }

    #[test]
    fn topic_patterns_match_whole_names() {
        let mut config = reader(json!({"topics": ["exact"], "topicPatterns": ["orders-.*"]}));
        let filter = TopicFilter::read(&mut config).unwrap();
        assert!(filter.matches("exact") && filter.matches("orders-eu"));
        assert!(!filter.matches("old-orders-eu") && !filter.matches("exactly"));
        let mut config = reader(json!({"topicPatterns": ["ok", "(unclosed"]}));
        assert_eq!(TopicFilter::read(&mut config).unwrap_err().field, "config.topicPatterns[1]");
    }

    #[test]
    fn latency_bounds_are_checked() {
        let mut config =
            reader(json!({"minLatencyToAddInMilliseconds": 10, "maxLatencyToAddInMilliseconds": 5}));
        assert_eq!(Latency::read(&mut config, 0).unwrap_err().field, "config.minLatencyToAddInMilliseconds");
        let mut config = reader(json!({}));
        assert_eq!(Latency::read(&mut config, 0).unwrap(), Latency { min_ms: 0, max_ms: 0 });
    }

    #[test]
    fn leftover_fields_are_unknown() {
        let mut config = reader(json!({"topics": ["a"], "topcis": ["b"]}));
        TopicFilter::read(&mut config).unwrap();
        let error = config.finish(&["topics"]).unwrap_err();
        assert_eq!(error.field, "config.topcis");
    }
}
