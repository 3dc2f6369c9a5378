//! leader-election: as broken-broker, with the errors a client sees while a partition changes
//! leader. Clients refresh their metadata and retry.

use kafka_protocol::messages::ApiKey;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::broken_broker::Failure;
use super::config::{ConfigError, Configurable};
use super::{Effect, Fault, FaultConfig, FaultContext};

#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(transparent)]
pub struct LeaderElection(Failure);

impl Configurable for LeaderElection {
    fn defaults() -> Value {
        Failure::defaults(&["LEADER_NOT_AVAILABLE", "NOT_LEADER_OR_FOLLOWER", "BROKER_NOT_AVAILABLE"])
    }

    fn validate(&mut self) -> Result<(), ConfigError> {
        self.0.validate()
    }
}

impl FaultConfig for LeaderElection {
    const NAME: &'static str = "leader-election";
    const SUMMARY: &'static str =
        "Answers Produce or Fetch requests with the errors of a partition changing leader.";
    const API_KEYS: &'static [ApiKey] = &[ApiKey::Produce, ApiKey::Fetch];
}

impl Fault for LeaderElection {
    /// The local answer lists the request's partitions.
    fn needs_request(&self) -> bool {
        true
    }

    fn apply(&self, context: &mut FaultContext<'_>) -> Option<Effect> {
        Some(self.0.answer(context.rng))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chaos::config::parse;

    #[test]
    fn defaults_to_leader_change_errors() {
        let fault: LeaderElection = parse(Default::default()).unwrap();
        let mut rng = fastrand::Rng::with_seed(1);
        let seen: std::collections::BTreeSet<i16> = (0..200)
            .map(|_| match fault.0.answer(&mut rng) {
                Effect::Fail { error, .. } => error,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            seen,
            [5, 6, 8].into_iter().collect(),
            "LEADER_NOT_AVAILABLE, NOT_LEADER_OR_FOLLOWER, BROKER_NOT_AVAILABLE"
        );
    }
}
