//! broken-broker: an affected Produce or Fetch request is not forwarded. After a random latency
//! kaos answers it as a broker in trouble would: every partition carries one of `errors`, picked
//! at random per request, and nothing was written.

use serde_json::{Map, Value};

use super::config::{ConfigError, ConfigReader, Latency};
use super::{Effect, Fault, FaultContext, errors};

pub const FIELDS: &[&str] = &["errors", "minLatencyToAddInMilliseconds", "maxLatencyToAddInMilliseconds"];

/// Errors and latency of a local answer: the fault itself, configured with broken-broker's or
/// leader-election's defaults.
#[derive(Debug, Clone)]
pub struct Failure {
    pub errors: Vec<i16>,
    pub latency: Latency,
}

impl Failure {
    pub fn read(config: &mut ConfigReader, default_errors: &[&str]) -> Result<Failure, ConfigError> {
        let mut names = config.strings("errors")?;
        if names.is_empty() {
            names = default_errors.iter().map(|&n| n.to_owned()).collect();
        }
        let errors = errors::parse_list("errors", &names)?;
        if let Some(index) = errors.iter().position(|&code| code == 0) {
            return Err(ConfigError::new(format!("config.errors[{index}]"), "NONE is not an error"));
        }
        Ok(Failure { errors, latency: Latency::read(config, 0)? })
    }

    pub fn effect(&self, rng: &mut fastrand::Rng) -> Effect {
        let error = self.errors[rng.usize(..self.errors.len())];
        Effect::Fail { error, after: self.latency.pick(rng) }
    }

    fn to_json(&self, config: &mut Map<String, Value>) {
        let names: Vec<_> = self.errors.iter().map(|&code| errors::name_of(code)).collect();
        config.insert("errors".into(), Value::from(names));
        self.latency.to_json(config);
    }
}

pub fn read(config: &mut ConfigReader) -> Result<Failure, ConfigError> {
    Failure::read(config, &["BROKER_NOT_AVAILABLE"])
}

impl Fault for Failure {
    /// The local answer lists the request's partitions.
    fn needs_request(&self) -> bool {
        true
    }

    fn apply(&self, context: &mut FaultContext<'_>) -> Option<Effect> {
        Some(self.effect(context.rng))
    }

    fn config_json(&self, config: &mut Map<String, Value>) {
        self.to_json(config);
    }
}
