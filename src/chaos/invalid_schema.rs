//! invalid-schema: in Produce record values that use the Confluent wire format (magic byte 0,
//! then a 4-byte big-endian schema id), kaos overwrites the id with `fakeSchemaId`. The rest of
//! the value is untouched and values without the magic byte are left alone, so a schema-aware
//! consumer fails to find the schema while everything else still reads.

use bytes::BytesMut;
use kafka_protocol::messages::ApiKey;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::config::Configurable;
use super::{Effect, Fault, FaultConfig, FaultContext, records};

const MAGIC_BYTE: u8 = 0;
const WIRE_HEADER: usize = 5;

#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InvalidSchema {
    /// The schema id written into every Confluent-framed record value.
    fake_schema_id: i32,
}

impl Configurable for InvalidSchema {
    fn defaults() -> Value {
        json!({})
    }
}

impl FaultConfig for InvalidSchema {
    const NAME: &'static str = "invalid-schema";
    const SUMMARY: &'static str =
        "Points Confluent-framed record values in Produce requests at a schema id that does not exist.";
    const API_KEYS: &'static [ApiKey] = &[ApiKey::Produce];
}

impl Fault for InvalidSchema {
    fn rewrites_records(&self) -> bool {
        true
    }

    fn apply(&self, context: &mut FaultContext<'_>) -> Option<Effect> {
        let id = self.fake_schema_id.to_be_bytes();
        records::rewrite_effect(Self::NAME, context, &mut |batch, _rng| {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chaos::config::parse;

    #[test]
    fn the_schema_id_is_required() {
        let error = parse::<InvalidSchema>(Default::default()).unwrap_err();
        assert_eq!((error.field.as_str(), error.reason.as_str()), ("config.fakeSchemaId", "is required"));
        let text = json!({"fakeSchemaId": "999"});
        assert_eq!(
            parse::<InvalidSchema>(text.as_object().unwrap().clone()).unwrap_err().field,
            "config.fakeSchemaId"
        );
    }
}
