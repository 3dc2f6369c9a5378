//! Test helpers shared by kaos's unit tests, integration tests, benches and load tool.
//!
//! - [`frames`]: any kafka-protocol message as a request or response body or length-prefixed frame.
//! - [`produce`]: a [`Produce`] request builder covering every Produce version kaos reads, and
//!   [`batch`], a record batch to put in it.
//! - [`http`]: a minimal HTTP/1.0 client for kaos's admin API.
//!
//! This crate does not depend on kaos, so kaos's own unit tests can use it as a dev-dependency.
//! The helpers panic when kafka-protocol refuses to encode a message: they build test inputs,
//! where a panic is the clearest failure.

pub mod frames;
pub mod http;
pub mod produce;

pub use produce::{Produce, Topic, batch};
