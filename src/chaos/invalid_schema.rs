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
use super::alter::Response;
use super::records::{self, Crc};
use super::{Effect, Fault, FaultConfig, FaultContext};
use kafka_protocol::records::Record;

const MAGIC_BYTE: u8 = 0;
const WIRE_HEADER: usize = 5;

#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InvalidSchema {
    /// The schema id written into every Confluent-framed record value.
    fake_schema_id: i32,
    /// Leave the changed batches' CRC wrong, so that clients that check CRCs reject them.
    #[serde(default)]
    corrupt_crc: bool,
}

impl Configurable for InvalidSchema {
    fn defaults() -> Value {
        json!({})
    }
}

impl FaultConfig for InvalidSchema {
    const NAME: &'static str = "invalid-schema";
    const SUMMARY: &'static str =
        "Points Confluent-framed record values in Produce requests or Fetch answers at a schema id that does not exist.";
    const API_KEYS: &'static [ApiKey] = &[ApiKey::Produce, ApiKey::Fetch];
}

impl Fault for InvalidSchema {
    fn rewrites_records(&self) -> bool {
        true
    }

    fn apply(&self, context: &mut FaultContext<'_>) -> Option<Effect> {
        records::rewrite_effect(Self::NAME, context, self.crc(), &mut |batch, _rng| self.repoint(batch))
    }

    fn alters_responses(&self, api: ApiKey) -> bool {
        api == ApiKey::Fetch
    }

    fn alter(&self, response: &mut Response<'_>, context: &mut FaultContext<'_>) -> Option<Effect> {
        records::alter_fetch_effect(Self::NAME, response, context, self.crc(), &mut |batch, _rng| self.repoint(batch))
    }
}

impl InvalidSchema {
    fn crc(&self) -> Crc {
        if self.corrupt_crc { Crc::Corrupt } else { Crc::Valid }
    }

    /// Writes the fake id into every framed value of the batch; how many it changed.
    fn repoint(&self, batch: &mut [Record]) -> u64 {
        let id = self.fake_schema_id.to_be_bytes();
        let mut changed = 0;
        for record in batch.iter_mut() {
            let Some(value) = record.value.as_ref().filter(|v| v.len() >= WIRE_HEADER && v[0] == MAGIC_BYTE) else {
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chaos::config::parse;

    #[test]
    fn rewrites_the_id_of_framed_values_only() {
        use crate::chaos::TopicFilter;
        use crate::wire::codec::decode_request;
        use kafka_protocol::messages::ProduceRequest;
        use kafka_protocol::records::{Compression, RecordBatchDecoder};
        use kaos_testkit::{Produce, Topic, batch};

        let fault: InvalidSchema = parse(json!({"fakeSchemaId": 999}).as_object().unwrap().clone()).unwrap();
        let framed: &[u8] = &[0, 0, 0, 0, 7, b'{', b'}'];
        let records = batch(Compression::Gzip, &[framed, b"plain", &[0, 0, 3, 0xe7]], -1, -1);
        let body = Produce::new(11).topic(Topic::new("orders", [1; 16]).partition(0, records)).body();
        let (_, mut request): (_, ProduceRequest) = decode_request(ApiKey::Produce, 11, &body).unwrap();
        let (mut rng, topics, names) =
            (fastrand::Rng::with_seed(1), TopicFilter::default(), |_: &[u8; 16]| None);
        let mut context =
            FaultContext { produce: Some(&mut request), ..FaultContext::new(&mut rng, &topics, &names) };
        assert_eq!(fault.apply(&mut context), Some(Effect::Rewrote(1)));
        let mut records = request.topic_data[0].partition_data[0].records.clone().unwrap();
        let set = RecordBatchDecoder::decode(&mut records).expect("valid CRC");
        let values: Vec<&[u8]> = set.records.iter().map(|r| r.value.as_deref().unwrap()).collect();
        assert_eq!(values[0], [0, 0, 0, 3, 0xe7, b'{', b'}'], "the id is 999, the payload kept");
        assert_eq!(values[1], b"plain", "no magic byte: untouched");
        assert_eq!(values[2], [0, 0, 3, 0xe7], "shorter than the wire header: untouched");
    }

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
