//! random-bytes: in each affected Produce batch of a matching topic, `nbMessages` records (picked
//! at random) get `sizeInBytes` random bytes appended to their value. The batch is re-encoded
//! with its own codec and a valid CRC, so consumers that check CRCs accept it.

use bytes::{BufMut, BytesMut};
use serde_json::{Map, Value};

use super::config::{ConfigError, ConfigReader};
use super::{Effect, Fault, FaultContext, records};

pub const FIELDS: &[&str] = &["nbMessages", "sizeInBytes"];
/// A guard against a typo turning every record into megabytes.
const MAX_SIZE_IN_BYTES: u64 = 1 << 20;

#[derive(Debug)]
pub struct RandomBytes {
    records_per_batch: usize,
    size: usize,
}

impl RandomBytes {
    pub fn read(config: &mut ConfigReader) -> Result<RandomBytes, ConfigError> {
        let records_per_batch = config.u64("nbMessages")?.unwrap_or(1);
        let size = config.u64("sizeInBytes")?.unwrap_or(10);
        if size > MAX_SIZE_IN_BYTES {
            return Err(ConfigError::new("config.sizeInBytes", format!("at most {MAX_SIZE_IN_BYTES} bytes")));
        }
        Ok(RandomBytes { records_per_batch: records_per_batch as usize, size: size as usize })
    }
}

impl Fault for RandomBytes {
    fn rewrites_records(&self) -> bool {
        true
    }

    fn apply(&self, context: &mut FaultContext<'_>) -> Option<Effect> {
        records::rewrite_effect("random-bytes", context, &mut |batch, rng| {
            let picks = self.records_per_batch.min(batch.len());
            let mut indexes: Vec<usize> = (0..batch.len()).collect();
            rng.shuffle(&mut indexes);
            for &index in &indexes[..picks] {
                let record = &mut batch[index];
                let mut value = BytesMut::from(record.value.as_deref().unwrap_or_default());
                value.reserve(self.size);
                (0..self.size).for_each(|_| value.put_u8(rng.u8(..)));
                record.value = Some(value.freeze());
            }
            picks as u64
        })
    }

    fn config_json(&self, config: &mut Map<String, Value>) {
        config.insert("nbMessages".into(), Value::from(self.records_per_batch));
        config.insert("sizeInBytes".into(), Value::from(self.size));
    }
}
