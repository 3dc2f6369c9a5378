//! Chaos: the seven faults of the Conduktor chaos demo, the rules that switch them on, and the
//! snapshot the control thread publishes for the shards to read without locks.
//!
//! Each fault lives in its own file behind the [`Fault`] trait: it sees one request (decoded only
//! when it must change records) and answers with an [`Effect`]: delay it, fail it, duplicate it,
//! or report the records it rewrote. The data path turns effects into frames in
//! `proxy::connection`, keeping responses in request order.

pub mod config;
pub mod errors;
pub mod plan;
pub mod records;
pub mod respond;
pub mod rule;

mod broken_broker;
mod duplicate_resource;
mod invalid_schema;
mod leader_election;
mod random_bytes;
mod slow_broker;
mod slow_topic;

use std::fmt::Debug;
use std::time::Duration;

use kafka_protocol::messages::ProduceRequest;
use kafka_protocol::messages::produce_request::TopicProduceData;
use serde_json::{Map, Value};

pub use config::{ConfigError, TopicFilter};
pub use rule::{Direction, Feature, Rule, RuleSet};

/// What a fault does to one request it fires on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Hold the request (direction REQUEST) or its response (RESPONSE) this long.
    Delay(Duration),
    /// Do not forward the request; answer every partition with `error` after `after`.
    Fail { error: i16, after: Duration },
    /// Deliver the request to the broker twice.
    Duplicate,
    /// This many records of the decoded request were changed.
    Rewrote(u64),
}

/// What a fault may look at and change.
pub struct FaultContext<'a> {
    pub rng: &'a mut fastrand::Rng,
    /// The topics the rule is limited to.
    pub topics: &'a TopicFilter,
    /// The decoded Produce request, for faults that rewrite records.
    pub produce: Option<&'a mut ProduceRequest>,
    /// A Produce topic's name (Produce v13 names topics by id).
    pub topic_name: &'a dyn Fn(&TopicProduceData) -> Option<String>,
}

/// One kind of fault, configured.
pub trait Fault: Send + Sync + Debug {
    /// Whether it changes records, so the request must be decoded and re-encoded.
    fn rewrites_records(&self) -> bool {
        false
    }

    /// Whether it must see the decoded request at all (to rewrite it, or to answer it).
    fn needs_request(&self) -> bool {
        self.rewrites_records()
    }

    /// Applies the fault to one request; `None` when it had nothing to act on.
    fn apply(&self, context: &mut FaultContext<'_>) -> Option<Effect>;

    /// The fault's own config fields, as the REST API reports them.
    fn config_json(&self, config: &mut Map<String, Value>);
}
