//! kaos: a thread-per-core Kafka chaos proxy.
//!
//! - `shard`: one glommio executor per core, each with its own listeners and broker connections.
//! - `proxy`: framing, the connection loop, in-flight tracking and address rewrite.
//! - `chaos`: the rule set the shards consult.
//! - `control`: the REST API and Prometheus metrics, on a plain thread.
//! - `cluster`: the upstream broker list and readiness.

pub mod log;

pub mod chaos;
pub mod cluster;
pub mod config;
pub mod control;
pub mod proxy;
pub mod shard;
pub mod shared;
pub mod wire;
