//! invalid-schema: in Produce record values that use the Confluent wire format (magic byte 0,
//! then a 4-byte big-endian schema id), kaos overwrites the id with `fakeSchemaId`. The rest of
//! the value is untouched and values without the magic byte are left alone, so a schema-aware
//! consumer fails to find the schema while everything else still reads.

use bytes::BytesMut;
use serde_json::{Map, Value};

use super::config::{ConfigError, ConfigReader};
use super::{Effect, Fault, FaultContext, records};

pub const FIELDS: &[&str] = &["fakeSchemaId"];
const MAGIC_BYTE: u8 = 0;
const WIRE_HEADER: usize = 5;

#[derive(Debug)]
pub struct InvalidSchema {
    fake_schema_id: i32,
}

impl InvalidSchema {
    pub fn read(config: &mut ConfigReader) -> Result<InvalidSchema, ConfigError> {
        let fake_schema_id = config
            .i32("fakeSchemaId")?
            .ok_or_else(|| ConfigError::new("config.fakeSchemaId", "is required: the schema id to write"))?;
        Ok(InvalidSchema { fake_schema_id })
    }
}

impl Fault for InvalidSchema {
    fn rewrites_records(&self) -> bool {
        true
    }

    fn apply(&self, context: &mut FaultContext<'_>) -> Option<Effect> {
        let id = self.fake_schema_id.to_be_bytes();
        records::rewrite_effect("invalid-schema", context, &mut |batch, _rng| {
            let mut changed = 0;
            for record in batch.iter_mut() {
                let Some(value) =
                    record.value.as_ref().filter(|v| v.len() >= WIRE_HEADER && v[0] == MAGIC_BYTE)
                else {
                    continue;
                };
                if value[1..WIRE_HEADER] == id {
                    continue;
                }
                let mut rewritten = BytesMut::from(&value[..]);
                rewritten[1..WIRE_HEADER].copy_from_slice(&id);
                record.value = Some(rewritten.freeze());
                changed += 1;
            }
            changed
        })
    }

    fn config_json(&self, config: &mut Map<String, Value>) {
        config.insert("fakeSchemaId".into(), Value::from(self.fake_schema_id));
    }
}
