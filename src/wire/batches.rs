//! What idempotence looks like on the wire: the producer and first sequence number of each
//! partition's batch in a Produce request. A broker takes an idempotent producer's batches for a
//! partition only in sequence order, so whoever fails one batch must fail the batches behind it.

use bytes::Bytes;
use kafka_protocol::messages::ProduceRequest;

/// A partition as a Produce request names it: by topic name, or from v13 by topic id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PartitionKey {
    pub topic: String,
    pub topic_id: [u8; 16],
    pub index: i32,
}

/// An idempotent batch's place in its producer's sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sequence {
    pub producer_id: i64,
    pub epoch: i16,
    pub base: i32,
}

/// One partition's records in a Produce request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionBatch {
    pub partition: PartitionKey,
    /// `None` for a producer that is not idempotent (or records kaos cannot read).
    pub sequence: Option<Sequence>,
}

/// Offsets in a v2 record batch header (magic 2, Kafka 0.11 on).
const MAGIC: usize = 16;
const PRODUCER_ID: usize = 43;
const PRODUCER_EPOCH: usize = 51;
const BASE_SEQUENCE: usize = 53;
const HEADER_END: usize = 57;

/// The batches of a Produce request, one per partition, in request order.
pub fn produce_batches(request: &ProduceRequest) -> Vec<PartitionBatch> {
    let mut batches = Vec::new();
    for topic in &request.topic_data {
        for partition in &topic.partition_data {
            batches.push(PartitionBatch {
                partition: PartitionKey {
                    topic: topic.name.0.to_string(),
                    topic_id: *topic.topic_id.as_bytes(),
                    index: partition.index,
                },
                sequence: partition.records.as_ref().and_then(first_sequence),
            });
        }
    }
    batches
}

/// The producer and base sequence of the first batch in `records`, if it is idempotent.
fn first_sequence(records: &Bytes) -> Option<Sequence> {
    let header = records.get(..HEADER_END)?;
    if header[MAGIC] != 2 {
        return None;
    }
    let int = |at: usize, len: usize| header[at..at + len].iter().fold(0i64, |n, &b| n << 8 | i64::from(b));
    let producer_id = int(PRODUCER_ID, 8);
    if producer_id < 0 {
        return None;
    }
    Some(Sequence { producer_id, epoch: int(PRODUCER_EPOCH, 2) as i16, base: int(BASE_SEQUENCE, 4) as i32 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::codec::decode_request;
    use kafka_protocol::messages::ApiKey;
    use kafka_protocol::records::Compression;
    use kaos_testkit::{Produce, Topic, batch};

    #[test]
    fn reads_each_partitions_producer_and_sequence() {
        for version in [3, 9, 13] {
            let body = Produce::new(version)
                .topic(
                    Topic::new("orders", [4; 16])
                        .partition(0, batch(Compression::Lz4, &[b"a", b"b"], 42, 17))
                        .partition(1, batch(Compression::None, &[b"plain"], -1, -1)),
                )
                .body();
            let (_, request) = decode_request::<ProduceRequest>(ApiKey::Produce, version, &body).unwrap();
            let batches = produce_batches(&request);
            assert_eq!(batches.len(), 2, "v{version}");
            assert_eq!(
                batches[0].sequence,
                Some(Sequence { producer_id: 42, epoch: 0, base: 17 }),
                "v{version}"
            );
            assert_eq!(batches[1].sequence, None, "not idempotent");
            assert_eq!(batches[1].partition.index, 1);
            assert_ne!(batches[0].partition, batches[1].partition);
        }
    }
}
