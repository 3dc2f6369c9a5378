//! The Kafka wire: what both the data path (`proxy`) and the faults (`chaos`) need to read and
//! write frames, so that neither imports the other.
//!
//! - `frame`: the length prefix and the request/response prefixes the hot path peeks at, without
//!   allocating.
//! - `codec`: encoding whole frames, decoding requests, and which versions kaos can decode.
//! - `topics`: naming topics that newer request versions carry only by id.
//! - `batches`: the producer and sequence numbers of a Produce request's batches.

pub mod batches;
pub mod codec;
pub mod frame;
pub mod topics;

pub use codec::{CodecError, decodable, encode_frame, with_length_prefix};
pub use frame::{FrameError, RequestPrefix, TopicRef};
pub use topics::TopicNames;
