//! slow-topic: as slow-broker, but only for requests that touch a topic the rule names
//! (`topicPatterns` or `topics`, one of which the rule must have); other topics on the same
//! connection are not slowed unless they queue behind a slowed request.

use super::config::{ConfigError, ConfigReader};
use super::slow_broker::SlowBroker;

pub use super::slow_broker::FIELDS;

pub fn read(config: &mut ConfigReader) -> Result<SlowBroker, ConfigError> {
    SlowBroker::read(config)
}
