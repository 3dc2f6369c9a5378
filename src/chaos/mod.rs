//! Chaos rules: the snapshot the control thread publishes and every shard reads without locks.
//!
//! The REST API that fills it, and the faults themselves, come with the chaos features; the core
//! proxy only owns the publication path so that the data path never takes a lock.

use serde::Serialize;

/// One immutable generation of the rule set. Replaced whole on every change.
#[derive(Debug, Default, Clone, Serialize)]
pub struct RuleSet {
    pub generation: u64,
    pub rules: Vec<serde_json::Value>,
}
