//! leader-election: a partition loses its leader for a window of time. The request that starts
//! the election, and every request the rule matches for that partition on a connection to that
//! broker while it lasts, is answered with the errors a client sees while a partition changes
//! leader; the client refreshes its metadata and retries until the window closes. A request that
//! touches several partitions starts an election for each. See `outage` for how windows open.
//!
//! A partition changing leader answers Produce and Fetch with NOT_LEADER_OR_FOLLOWER or
//! LEADER_NOT_AVAILABLE; so of `errors`, those are the ones used when the list has any. The
//! seed's list also names BROKER_NOT_AVAILABLE, which no partition answers mid-election and which
//! the Java producer takes as fatal: the seed's demo shows producers retrying until the election
//! is over, and so does kaos's. A list without leadership errors is used as it is.
//!
//! On the group and transaction APIs the coordinator moves instead: their answers say
//! NOT_COORDINATOR (FindCoordinator: COORDINATOR_LOAD_IN_PROGRESS, while the new one loads), and a
//! request that names no partition falls in its broker's window.

use kafka_protocol::messages::ApiKey;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::alter::Response;
use super::config::{ConfigError, Configurable, settle_latency};
use super::errors::{APIS_WITH_ERRORS, KafkaError};
use super::outage::{self, WindowScope, Windows};
use super::{Direction, Effect, Fault, FaultConfig, FaultContext};

/// How long an election lasts when neither `electionMs` nor a latency is given: a controlled
/// leader change and the metadata refresh that follows take about this long.
const DEFAULT_ELECTION_MS: u64 = 1000;

#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LeaderElection {
    /// Kafka errors to answer with; each request gets one of them, picked at random. Only errors
    /// Kafka answers the rule's API with are accepted (default: LEADER_NOT_AVAILABLE,
    /// NOT_LEADER_OR_FOLLOWER, BROKER_NOT_AVAILABLE on Produce and Fetch, as the Conduktor demo;
    /// NOT_LEADER_OR_FOLLOWER and LEADER_NOT_AVAILABLE on ListOffsets; LEADER_NOT_AVAILABLE on
    /// Metadata; NOT_CONTROLLER on CreateTopics; COORDINATOR_LOAD_IN_PROGRESS on FindCoordinator;
    /// NOT_COORDINATOR on the other group and transaction APIs).
    errors: Option<Vec<KafkaError>>,
    /// Least time before kaos answers a request during an election, in milliseconds.
    min_latency_to_add_in_milliseconds: u64,
    /// Most time before kaos answers a request during an election, in milliseconds (default:
    /// the minimum).
    max_latency_to_add_in_milliseconds: Option<u64>,
    /// Only these partitions of a Produce or Fetch fail; the request's others go to the broker
    /// and are answered by it, in the same answer (default: every partition).
    partitions: Option<Vec<i32>>,
    /// How long a partition has no leader once its election starts, in milliseconds (default:
    /// a pick between the latencies when they are set, else 1000).
    election_ms: Option<u64>,
    #[serde(skip)]
    #[schemars(skip)]
    windows: Windows,
    /// The errors answers carry: the leadership errors of `errors`, or all of them.
    #[serde(skip)]
    #[schemars(skip)]
    answers: Vec<KafkaError>,
}

/// What a partition answers while its leader moves: NOT_LEADER_OR_FOLLOWER, LEADER_NOT_AVAILABLE.
const LEADERSHIP_ERRORS: [i16; 2] = [6, 5];

impl Configurable for LeaderElection {
    fn defaults() -> Value {
        outage::defaults()
    }

    fn validate(&mut self) -> Result<(), ConfigError> {
        let min = self.min_latency_to_add_in_milliseconds;
        settle_latency(min, &mut self.max_latency_to_add_in_milliseconds)?;
        let length = outage::window_length(
            self.election_ms,
            min,
            self.max_latency_to_add_in_milliseconds,
            DEFAULT_ELECTION_MS,
        );
        self.windows = Windows::new(WindowScope::Partition, length);
        Ok(())
    }

    fn settle_for(&mut self, api: ApiKey) -> Result<(), ConfigError> {
        let data = matches!(api, ApiKey::Produce | ApiKey::Fetch);
        let defaults: &[&str] = match api {
            _ if data => &["LEADER_NOT_AVAILABLE", "NOT_LEADER_OR_FOLLOWER", "BROKER_NOT_AVAILABLE"],
            ApiKey::ListOffsets => &["NOT_LEADER_OR_FOLLOWER", "LEADER_NOT_AVAILABLE"],
            ApiKey::Metadata => &["LEADER_NOT_AVAILABLE"],
            ApiKey::CreateTopics => &["NOT_CONTROLLER"],
            ApiKey::FindCoordinator => &["COORDINATOR_LOAD_IN_PROGRESS"],
            _ => &["NOT_COORDINATOR"],
        };
        outage::check_partitions(&self.partitions, api)?;
        outage::settle_errors(&mut self.errors, api, defaults)?;
        let errors = self.errors.clone().unwrap_or_default();
        let leadership: Vec<_> = errors.iter().copied().filter(|e| LEADERSHIP_ERRORS.contains(&e.0)).collect();
        self.answers = if leadership.is_empty() || !data { errors } else { leadership };
        Ok(())
    }
}

impl FaultConfig for LeaderElection {
    const NAME: &'static str = "leader-election";
    const SUMMARY: &'static str =
        "Starts leader elections: a partition's requests (or a coordinator's) fail with leader-change errors for a while.";
    const API_KEYS: &'static [ApiKey] = APIS_WITH_ERRORS;
    /// RESPONSE: the broker applies the request and the client gets the error instead.
    const DIRECTIONS: &'static [Direction] = &[Direction::Request, Direction::Response];
}

impl Fault for LeaderElection {
    /// The local answer lists the request's partitions.
    fn needs_request(&self) -> bool {
        true
    }

    fn windows(&self) -> Option<&Windows> {
        Some(&self.windows)
    }

    fn apply(&self, context: &mut FaultContext<'_>) -> Option<Effect> {
        let max = self.max_latency_to_add_in_milliseconds;
        let min = self.min_latency_to_add_in_milliseconds;
        Some(outage::answer(&self.answers, min, max, context.window, context.rng))
    }

    fn partitions(&self) -> Option<&[i32]> {
        self.partitions.as_deref()
    }

    fn alters_responses(&self, api: ApiKey) -> bool {
        api == ApiKey::Metadata
    }

    fn alter(&self, response: &mut Response<'_>, context: &mut FaultContext<'_>) -> Option<Effect> {
        outage::fail_topics(response, &self.answers, context)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chaos::config::parse;
    use serde_json::json;

    fn election_on(api: ApiKey, config: Value) -> LeaderElection {
        let mut fault: LeaderElection = parse(config.as_object().unwrap().clone()).unwrap();
        fault.settle_for(api).unwrap();
        fault
    }

    #[test]
    fn a_coordinator_moves_on_the_group_and_transaction_apis() {
        let errors = |api| serde_json::to_value(election_on(api, json!({}))).unwrap()["errors"].clone();
        assert_eq!(errors(ApiKey::OffsetCommit), json!(["NOT_COORDINATOR"]));
        assert_eq!(errors(ApiKey::FindCoordinator), json!(["COORDINATOR_LOAD_IN_PROGRESS"]));
        let fault = election_on(ApiKey::Heartbeat, json!({"errors": ["NOT_COORDINATOR", "REBALANCE_IN_PROGRESS"]}));
        assert_eq!(fault.answers.len(), 2, "only Produce and Fetch keep to leadership errors");
    }

    #[test]
    fn defaults_to_leader_change_errors_over_partition_windows() {
        let fault = election_on(ApiKey::Produce, json!({}));
        assert_eq!(fault.windows().unwrap().scope(), WindowScope::Partition);
        let mut rng = fastrand::Rng::with_seed(1);
        let topics = Default::default();
        let seen: std::collections::BTreeSet<i16> = (0..200)
            .map(|_| {
                let mut context =
                    FaultContext::new(&mut rng, &topics, &|_: &[u8; 16]| None);
                match fault.apply(&mut context) {
                    Some(Effect::Fail { error, .. }) => error,
                    other => panic!("{other:?}"),
                }
            })
            .collect();
        assert_eq!(seen, [5, 6].into_iter().collect(), "LEADER_NOT_AVAILABLE, NOT_LEADER_OR_FOLLOWER");
        let reported = serde_json::to_value(&fault).unwrap()["errors"].clone();
        assert_eq!(reported, serde_json::json!(["LEADER_NOT_AVAILABLE", "NOT_LEADER_OR_FOLLOWER", "BROKER_NOT_AVAILABLE"]));
    }

    #[test]
    fn a_list_without_leadership_errors_is_used_as_it_is() {
        let fault = election_on(ApiKey::Produce, json!({"errors": ["BROKER_NOT_AVAILABLE"]}));
        let (mut rng, topics) = (fastrand::Rng::with_seed(1), Default::default());
        let mut context = FaultContext::new(&mut rng, &topics, &|_: &[u8; 16]| None);
        assert!(matches!(fault.apply(&mut context), Some(Effect::Fail { error: 8, .. })));
    }
}
