//! slow-broker: affected requests wait a random latency before they are forwarded (direction
//! REQUEST) or before their response is returned (RESPONSE). The wait stalls only that
//! connection, from that request on, as a slow broker would.

use serde_json::{Map, Value};

use super::config::{ConfigError, ConfigReader, Latency};
use super::{Effect, Fault, FaultContext};

pub const FIELDS: &[&str] = &Latency::FIELDS;

#[derive(Debug)]
pub struct SlowBroker(pub Latency);

impl SlowBroker {
    pub fn read(config: &mut ConfigReader) -> Result<SlowBroker, ConfigError> {
        Latency::read(config, 0).map(SlowBroker)
    }
}

impl Fault for SlowBroker {
    fn apply(&self, context: &mut FaultContext<'_>) -> Option<Effect> {
        Some(Effect::Delay(self.0.pick(context.rng)))
    }

    fn config_json(&self, config: &mut Map<String, Value>) {
        self.0.to_json(config);
    }
}
