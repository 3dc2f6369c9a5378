//! random-bytes: in each affected batch of a matching topic, `nbMessages` records (picked at
//! random) get `sizeInBytes` random bytes appended to their value: in Produce requests (the
//! broker stores them so), or in Fetch answers (the consumer sees them; the broker's copy stays
//! intact). The batch is re-encoded with its own codec and a valid CRC, so consumers that check
//! CRCs accept it; with `corruptCrc` its CRC is left wrong, so they reject it.

use bytes::{BufMut, BytesMut};
use kafka_protocol::messages::ApiKey;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::config::{ConfigError, Configurable};
use super::alter::Response;
use super::records::{self, Crc};
use super::{Effect, Fault, FaultConfig, FaultContext};
use kafka_protocol::records::Record;

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
    /// Leave the changed batches' CRC wrong, so that clients that check CRCs reject them.
    corrupt_crc: bool,
}

impl Configurable for RandomBytes {
    fn defaults() -> Value {
        json!({"nbMessages": 1, "sizeInBytes": 10, "corruptCrc": false})
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
        "Appends random bytes to record values in Produce requests or Fetch answers, keeping codec and CRC valid (unless corruptCrc).";
    const API_KEYS: &'static [ApiKey] = &[ApiKey::Produce, ApiKey::Fetch];
}

impl Fault for RandomBytes {
    fn rewrites_records(&self) -> bool {
        true
    }

    fn apply(&self, context: &mut FaultContext<'_>) -> Option<Effect> {
        records::rewrite_effect(Self::NAME, context, self.crc(), &mut |batch, rng| self.append(batch, rng))
    }

    fn alters_responses(&self, api: ApiKey) -> bool {
        api == ApiKey::Fetch
    }

    fn alter(&self, response: &mut Response<'_>, context: &mut FaultContext<'_>) -> Option<Effect> {
        records::alter_fetch_effect(Self::NAME, response, context, self.crc(), &mut |batch, rng| {
            self.append(batch, rng)
        })
    }
}

impl RandomBytes {
    fn crc(&self) -> Crc {
        if self.corrupt_crc { Crc::Corrupt } else { Crc::Valid }
    }

    /// Appends the random bytes to `nbMessages` records of the batch; how many it changed.
    fn append(&self, batch: &mut [Record], rng: &mut fastrand::Rng) -> u64 {
        let size = self.size_in_bytes as usize;
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chaos::config::parse;

    #[test]
    fn appends_to_the_chosen_number_of_records_of_matching_topics() {
        use crate::chaos::TopicFilter;
        use crate::wire::codec::decode_request;
        use kafka_protocol::messages::ProduceRequest;
        use kafka_protocol::records::{Compression, RecordBatchDecoder};
        use kaos_testkit::{Produce, Topic, batch};

        let config = json!({"nbMessages": 2, "sizeInBytes": 3});
        let fault: RandomBytes = parse(config.as_object().unwrap().clone()).unwrap();
        let records = batch(Compression::Lz4, &[b"a", b"b", b"c"], -1, -1);
        let body = Produce::new(9)
            .topic(Topic::new("orders", [1; 16]).partition(0, records.clone()))
            .topic(Topic::new("other", [2; 16]).partition(0, records))
            .body();
        let (_, mut request): (_, ProduceRequest) = decode_request(ApiKey::Produce, 9, &body).unwrap();
        let topics = TopicFilter::new(vec!["orders".into()], &[]).unwrap();
        let (mut rng, names) = (fastrand::Rng::with_seed(4), |_: &[u8; 16]| None);
        let mut context =
            FaultContext { produce: Some(&mut request), ..FaultContext::new(&mut rng, &topics, &names) };
        assert_eq!(fault.apply(&mut context), Some(Effect::Rewrote(2)));
        let lengths = |topic: usize| {
            let mut records = request.topic_data[topic].partition_data[0].records.clone().unwrap();
            let set = RecordBatchDecoder::decode(&mut records).expect("valid CRC");
            assert_eq!(set.compression, Compression::Lz4, "codec kept");
            set.records.iter().map(|r| r.value.as_ref().unwrap().len()).collect::<Vec<_>>()
        };
        let mut changed = lengths(0);
        changed.sort();
        assert_eq!(changed, [1, 4, 4], "two of three records got 3 bytes");
        assert_eq!(lengths(1), [1, 1, 1], "the other topic is untouched");
    }

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
