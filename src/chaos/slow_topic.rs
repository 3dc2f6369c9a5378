//! slow-topic: as slow-broker, but only for requests that touch a topic the rule names
//! (`topicPatterns` or `topics`); other topics on the same connection are not slowed unless they
//! queue behind a slowed request.

use serde_json::{Map, Value};

use super::config::{ConfigError, ConfigReader, Latency};
use super::slow_broker::SlowBroker;
use super::{Effect, Fault, FaultContext};

pub use super::slow_broker::FIELDS;

#[derive(Debug)]
pub struct SlowTopic(SlowBroker);

impl SlowTopic {
    pub fn read(config: &mut ConfigReader) -> Result<SlowTopic, ConfigError> {
        Latency::read(config, 0).map(|latency| SlowTopic(SlowBroker(latency)))
    }
}

impl Fault for SlowTopic {
    fn apply(&self, context: &mut FaultContext<'_>) -> Option<Effect> {
        self.0.apply(context)
    }

    fn config_json(&self, config: &mut Map<String, Value>) {
        self.0.config_json(config);
    }
}
