//! The Kafka-aware data path: framing, the per-connection loop, in-flight tracking and the
//! address rewrite that keeps clients on kaos.

pub mod authenticator;
pub mod buffers;
pub mod connection;
pub mod identity;
pub mod inflight;
pub mod lane;
pub mod link;
pub mod pace;
pub mod rewrite;
