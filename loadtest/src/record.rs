//! The load-test record: every value starts with who wrote it and in which order, so the
//! consumer side can tell lost, duplicated and reordered records apart.
//!
//! Layout: `KLT1` | producer id (u32) | sequence (u64) | send time, µs since the epoch (u64) |
//! padding up to the record size. Big-endian.

use std::time::{SystemTime, UNIX_EPOCH};

const MAGIC: &[u8; 4] = b"KLT1";
pub const HEADER_LEN: usize = 4 + 4 + 8 + 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub producer: u32,
    pub sequence: u64,
    pub sent_micros: u64,
}

pub fn now_micros() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

impl Stamp {
    /// Writes the stamp and padding into `value`, which is reused between records.
    pub fn encode_into(&self, value: &mut Vec<u8>, size: usize) {
        value.clear();
        value.extend_from_slice(MAGIC);
        value.extend_from_slice(&self.producer.to_be_bytes());
        value.extend_from_slice(&self.sequence.to_be_bytes());
        value.extend_from_slice(&self.sent_micros.to_be_bytes());
        value.resize(size.max(HEADER_LEN), b'.');
    }

    /// Reads a stamp; `None` for a value this tool did not write (or one chaos mangled: random
    /// bytes are appended, so a stamp survives them).
    pub fn decode(value: &[u8]) -> Option<Stamp> {
        if value.len() < HEADER_LEN || &value[..4] != MAGIC {
            return None;
        }
        let u64_at = |at: usize| u64::from_be_bytes(value[at..at + 8].try_into().expect("8 bytes"));
        Some(Stamp {
            producer: u32::from_be_bytes(value[4..8].try_into().expect("4 bytes")),
            sequence: u64_at(8),
            sent_micros: u64_at(16),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_round_trip_and_survive_appended_bytes() {
        let stamp = Stamp { producer: 7, sequence: 1 << 40, sent_micros: 123 };
        let mut value = Vec::new();
        stamp.encode_into(&mut value, 100);
        assert_eq!(value.len(), 100);
        assert_eq!(Stamp::decode(&value), Some(stamp));
        value.extend_from_slice(&[0xff; 10]);
        assert_eq!(Stamp::decode(&value), Some(stamp));
        assert_eq!(Stamp::decode(b"something else entirely, long enough"), None);
        assert_eq!(Stamp::decode(&value[..10]), None);
    }
}
