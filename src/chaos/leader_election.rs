//! leader-election: as broken-broker, with the errors a client sees while a partition changes
//! leader. Clients refresh their metadata and retry.

use serde_json::{Map, Value};

use super::broken_broker::Failure;
use super::config::{ConfigError, ConfigReader};
use super::{Effect, Fault, FaultContext};

pub use super::broken_broker::FIELDS;

const DEFAULT_ERRORS: [&str; 3] = ["LEADER_NOT_AVAILABLE", "NOT_LEADER_OR_FOLLOWER", "BROKER_NOT_AVAILABLE"];

#[derive(Debug)]
pub struct LeaderElection(Failure);

impl LeaderElection {
    pub fn read(config: &mut ConfigReader) -> Result<LeaderElection, ConfigError> {
        Failure::read(config, &DEFAULT_ERRORS).map(LeaderElection)
    }
}

impl Fault for LeaderElection {
    /// The local answer lists the request's partitions.
    fn needs_request(&self) -> bool {
        true
    }

    fn apply(&self, context: &mut FaultContext<'_>) -> Option<Effect> {
        Some(self.0.effect(context.rng))
    }

    fn config_json(&self, config: &mut Map<String, Value>) {
        self.0.config_json(config);
    }
}
