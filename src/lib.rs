//! kaos: a thread-per-core Kafka chaos proxy.
//!
//! - `shard`: one glommio executor per core, each with its own listeners and broker connections.
//! - `proxy`: the connection loop, in-flight tracking and address rewrite.
//! - `chaos`: the faults (one file each), the rules that switch them on, and the snapshot the
//!   shards consult.
//! - `wire`: Kafka framing and codecs, shared by `proxy` and `chaos` (which do not import each
//!   other's internals: `proxy` asks `chaos` what to do, `chaos` never calls `proxy`).
//! - `control`: the REST API and Prometheus metrics, on a plain thread.
//! - `cluster`: the upstream broker list and readiness.
//! - `sasl`: SASL read from clients' exchanges with brokers, kaos's own login to brokers, and
//!   clients' login to kaos (`--client-users`, made by `kaos hash-password`).
//! - `metrics`: the shards' single-writer counters and latency histograms.
//! - `logging`: `tracing` output, with `log` records from glommio and tiny_http bridged in.
//! - `startup`: why io_uring could not be set up, in one line that names the fix.

pub mod chaos;
pub mod cluster;
pub mod config;
pub mod control;
pub mod events;
pub mod logging;
pub mod metrics;
pub mod proxy;
pub mod sasl;
pub mod shard;
pub mod shared;
pub mod startup;
pub mod tls;
pub mod wire;
