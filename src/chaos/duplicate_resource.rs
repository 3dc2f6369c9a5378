//! duplicate-resource: an affected Produce request reaches the broker twice, as a network retry
//! would. The copy carries a correlation id of kaos's own and its response is swallowed, so the
//! client sees one response. A non-idempotent producer writes every record twice; an idempotent
//! one is protected by the broker's sequence check.

use serde_json::{Map, Value};

use super::config::{ConfigError, ConfigReader};
use super::{Effect, Fault, FaultContext};

pub const FIELDS: &[&str] = &[];

#[derive(Debug)]
pub struct DuplicateResource;

impl DuplicateResource {
    pub fn read(_config: &mut ConfigReader) -> Result<DuplicateResource, ConfigError> {
        Ok(DuplicateResource)
    }
}

impl Fault for DuplicateResource {
    fn apply(&self, _context: &mut FaultContext<'_>) -> Option<Effect> {
        Some(Effect::Duplicate)
    }

    fn config_json(&self, _config: &mut Map<String, Value>) {}
}
