//! random-bytes: in each affected Produce batch of a matching topic, `nbMessages` records (picked
//! at random) get `sizeInBytes` random bytes appended to their value. The batch is re-encoded
//! with its own codec and a valid CRC, so consumers that check CRCs accept it.

use bytes::{BufMut, BytesMut};
use kafka_protocol::messages::ApiKey;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::config::{ConfigError, Configurable};
use super::{Effect, Fault, FaultConfig, FaultContext, records};

/// A guard against a typo turning every record into megabytes.
const MAX_SIZE_IN_BYTES: u32 = 1 << 20;

#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RandomBytes {
    /// Records changed in each affected batch (all of them when the batch is smaller).
    nb_messages: u32,
    /// Random bytes appended to each changed record's value.
    #[schemars(range(max = 1_048_576))]
    size_in_bytes: u32,
}

impl Configurable for RandomBytes {
    fn defaults() -> Value {
        json!({"nbMessages": 1, "sizeInBytes": 10})
    }

    fn validate(&mut self) -> Result<(), ConfigError> {
        if self.size_in_bytes > MAX_SIZE_IN_BYTES {
            return Err(ConfigError::new("config.sizeInBytes", format!("at most {MAX_SIZE_IN_BYTES} bytes")));
        }
        Ok(())
    }
}

impl FaultConfig for RandomBytes {
    const NAME: &'static str = "random-bytes";
    const SUMMARY: &'static str =
        "Appends random bytes to record values in Produce requests, keeping codec and CRC valid.";
    const API_KEYS: &'static [ApiKey] = &[ApiKey::Produce];
}

impl Fault for RandomBytes {
    fn rewrites_records(&self) -> bool {
        true
    }

    fn apply(&self, context: &mut FaultContext<'_>) -> Option<Effect> {
        let size = self.size_in_bytes as usize;
        records::rewrite_effect(Self::NAME, context, &mut |batch, rng| {
            let picks = (self.nb_messages as usize).min(batch.len());
            let mut indexes: Vec<usize> = (0..batch.len()).collect();
            rng.shuffle(&mut indexes);
            for &index in &indexes[..picks] {
                let record = &mut batch[index];
                let mut value = BytesMut::from(record.value.as_deref().unwrap_or_default());
                value.reserve(size);
                (0..size).for_each(|_| value.put_u8(rng.u8(..)));
                record.value = Some(value.freeze());
            }
            picks as u64
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chaos::config::parse;

    #[test]
    fn sizes_are_bounded() {
        let huge = json!({"sizeInBytes": MAX_SIZE_IN_BYTES + 1});
        assert_eq!(
            parse::<RandomBytes>(huge.as_object().unwrap().clone()).unwrap_err().field,
            "config.sizeInBytes"
        );
        let negative = json!({"nbMessages": -1});
        assert_eq!(
            parse::<RandomBytes>(negative.as_object().unwrap().clone()).unwrap_err().field,
            "config.nbMessages"
        );
    }
}
