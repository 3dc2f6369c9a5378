//! leader-election: as broken-broker, with the errors a client sees while a partition changes
//! leader. Clients refresh their metadata and retry.

use super::broken_broker::Failure;
use super::config::{ConfigError, ConfigReader};

pub use super::broken_broker::FIELDS;

const DEFAULT_ERRORS: [&str; 3] = ["LEADER_NOT_AVAILABLE", "NOT_LEADER_OR_FOLLOWER", "BROKER_NOT_AVAILABLE"];

pub fn read(config: &mut ConfigReader) -> Result<Failure, ConfigError> {
    Failure::read(config, &DEFAULT_ERRORS)
}
