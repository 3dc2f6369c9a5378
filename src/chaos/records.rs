//! Rewriting the record batches of a partition, in a Produce request or a Fetch answer: decode
//! each batch (checking its CRC and decompressing), let a fault edit the records, and re-encode
//! only the batches it changed, with their own compression codec and a fresh CRC (or, where the
//! fault asks for it, a wrong one).

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{FetchResponse, ProduceRequest};
use kafka_protocol::records::{Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions};

use super::alter::Response;
use super::{Effect, FaultContext, TopicFilter};
use crate::wire::TopicNames;

/// baseOffset (i64) + batchLength (i32): the bytes before `batchLength` counts.
const BATCH_LENGTH_END: usize = 12;
/// Where a batch's CRC sits: after baseOffset, batchLength, partitionLeaderEpoch and magic.
const CRC_AT: usize = 17;

/// Whether a rewritten batch keeps a valid CRC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Crc {
    Valid,
    /// Left wrong, so that clients that check CRCs reject the batch.
    Corrupt,
}

/// Rewrites every batch in `records` through `edit`, which returns how many records it changed.
pub fn rewrite_batches(
    records: &Bytes,
    crc: Crc,
    edit: &mut dyn FnMut(&mut Vec<Record>) -> u64,
) -> Result<(Bytes, u64), String> {
    let mut out = BytesMut::with_capacity(records.len() + 256);
    let mut changed_total = 0;
    let mut offset = 0;
    while offset < records.len() {
        let header = records.get(offset..offset + BATCH_LENGTH_END).ok_or("truncated record batch header")?;
        let length = i32::from_be_bytes(header[8..12].try_into().expect("4 bytes"));
        let end = usize::try_from(length)
            .ok()
            .and_then(|l| (offset + BATCH_LENGTH_END).checked_add(l))
            .filter(|&end| end <= records.len())
            .ok_or("record batch length runs past the partition's records")?;
        let raw = records.slice(offset..end);
        let mut cursor = raw.clone();
        let mut set = RecordBatchDecoder::decode(&mut cursor).map_err(|e| e.to_string())?;
        let changed = edit(&mut set.records);
        if changed == 0 {
            out.extend_from_slice(&raw);
        } else {
            let options = RecordEncodeOptions { version: set.version, compression: set.compression };
            let start = out.len();
            RecordBatchEncoder::encode(&mut out, set.records.iter(), &options).map_err(|e| e.to_string())?;
            if crc == Crc::Corrupt
                && let Some(byte) = out.get_mut(start + CRC_AT)
            {
                *byte ^= 0xff;
            }
            changed_total += changed;
        }
        offset = end;
    }
    Ok((out.freeze(), changed_total))
}

/// The records of every partition of a Produce request's topics that `topics` matches, by name
/// or (v13+) by id through `names`.
pub fn produce_records<'a>(
    request: &'a mut ProduceRequest,
    topics: &'a TopicFilter,
    names: &'a dyn TopicNames,
) -> impl Iterator<Item = &'a mut Option<Bytes>> + 'a {
    request
        .topic_data
        .iter_mut()
        .filter(move |t| {
            names.name_of(t.name.0.as_str(), t.topic_id.as_bytes()).is_some_and(|n| topics.matches(&n))
        })
        .flat_map(|t| t.partition_data.iter_mut().map(|p| &mut p.records))
}

/// The records of every partition of a Fetch answer's topics that `topics` matches, by name or
/// (v13+) by id through `names`.
pub fn fetch_records<'a>(
    response: &'a mut FetchResponse,
    topics: &'a TopicFilter,
    names: &'a dyn TopicNames,
) -> impl Iterator<Item = &'a mut Option<Bytes>> + 'a {
    response
        .responses
        .iter_mut()
        .filter(move |t| {
            names.name_of(t.topic.0.as_str(), t.topic_id.as_bytes()).is_some_and(|n| topics.matches(&n))
        })
        .flat_map(|t| t.partitions.iter_mut().map(|p| &mut p.records))
}

/// Applies `edit` to the batches of each partition's records; how many records it changed.
fn rewrite_all<'a>(
    partitions: impl Iterator<Item = &'a mut Option<Bytes>>,
    crc: Crc,
    edit: &mut dyn FnMut(&mut Vec<Record>) -> u64,
) -> Result<u64, String> {
    let mut changed = 0;
    for slot in partitions {
        if let Some(records) = slot.as_ref().filter(|r| !r.is_empty()) {
            let (rewritten, count) = rewrite_batches(records, crc, edit)?;
            if count > 0 {
                *slot = Some(rewritten);
                changed += count;
            }
        }
    }
    Ok(changed)
}

/// Runs a record-rewriting fault's `edit` over the decoded Produce request in `context`; the
/// effect is the number of records it changed. A batch kaos cannot decode leaves the request as
/// it was.
pub fn rewrite_effect(
    feature: &str,
    context: &mut FaultContext<'_>,
    crc: Crc,
    edit: &mut dyn FnMut(&mut Vec<Record>, &mut fastrand::Rng) -> u64,
) -> Option<Effect> {
    let produce = context.produce.as_deref_mut()?;
    let rng = &mut *context.rng;
    let partitions = produce_records(produce, context.topics, context.topic_names);
    effect(feature, "request", rewrite_all(partitions, crc, &mut |batch| edit(batch, rng)))
}

/// Runs a record-rewriting fault's `edit` over a Fetch answer; the effect is the number of
/// records it changed. A batch kaos cannot decode leaves the answer as it was.
pub fn alter_fetch_effect(
    feature: &str,
    response: &mut Response<'_>,
    context: &mut FaultContext<'_>,
    crc: Crc,
    edit: &mut dyn FnMut(&mut Vec<Record>, &mut fastrand::Rng) -> u64,
) -> Option<Effect> {
    let Response::Fetch(fetch) = response else { return None };
    let rng = &mut *context.rng;
    let partitions = fetch_records(fetch, context.topics, context.topic_names);
    effect(feature, "answer", rewrite_all(partitions, crc, &mut |batch| edit(batch, rng)))
}

fn effect(feature: &str, what: &str, outcome: Result<u64, String>) -> Option<Effect> {
    match outcome {
        Ok(0) => None,
        Ok(changed) => Some(Effect::Rewrote(changed)),
        Err(why) => {
            tracing::warn!(feature, error = %why, "record rewrite skipped: the {what} is relayed as it came");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::records::Compression;
    use kaos_testkit::batch;

    #[test]
    fn a_corrupt_crc_is_rejected_by_a_decoder_that_checks_it() {
        let original = batch(Compression::Lz4, &[b"one", b"two"], 7, 42);
        let (rewritten, changed) = rewrite_batches(&original, Crc::Corrupt, &mut |records| {
            records[0].value = Some(Bytes::from_static(b"ONE"));
            1
        })
        .unwrap();
        assert_eq!(changed, 1);
        let error = RecordBatchDecoder::decode(&mut rewritten.clone()).unwrap_err();
        assert!(error.to_string().contains("Cyclic redundancy check failed"), "{error}");
        let (untouched, _) = rewrite_batches(&original, Crc::Corrupt, &mut |_| 0).unwrap();
        assert_eq!(untouched, original, "only rewritten batches get a wrong CRC");
    }

    #[test]
    fn rewritten_batches_keep_codec_crc_and_producer_state() {
        for compression in
            [Compression::None, Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd]
        {
            let original = batch(compression, &[b"one", b"two", b"three"], 7, 42);
            let (rewritten, changed) = rewrite_batches(&original, Crc::Valid, &mut |records| {
                records[1].value = Some(Bytes::from_static(b"TWO!"));
                1
            })
            .unwrap();
            assert_eq!(changed, 1);
            let mut cursor = rewritten.clone();
            let set = RecordBatchDecoder::decode(&mut cursor).expect("valid CRC");
            assert_eq!(set.compression, compression, "codec kept");
            let values: Vec<_> = set.records.iter().map(|r| r.value.clone().unwrap()).collect();
            assert_eq!(
                values,
                vec![Bytes::from_static(b"one"), Bytes::from_static(b"TWO!"), Bytes::from_static(b"three")]
            );
            assert_eq!(set.records[0].producer_id, 7);
            assert_eq!(set.records[0].sequence, 42);
            assert_eq!(set.records[2].sequence, 44);
            assert_eq!(
                RecordBatchDecoder::decode_batch_info(&mut rewritten.clone()).unwrap().len(),
                1,
                "one batch"
            );
        }
    }

    #[test]
    fn untouched_batches_are_copied_byte_for_byte() {
        let original = batch(Compression::Snappy, &[b"a", b"b"], -1, -1);
        let mut two = BytesMut::from(&original[..]);
        two.extend_from_slice(&original);
        let two = two.freeze();
        let (out, changed) = rewrite_batches(&two, Crc::Valid, &mut |_| 0).unwrap();
        assert_eq!((out, changed), (two, 0));
    }

    /// A v2 batch header's fields, by offset: batchLength, CRC, firstTimestamp, recordCount.
    const LENGTH: usize = 8;
    const CRC: usize = 17;
    const FIRST_TIMESTAMP: usize = 27;
    const RECORD_COUNT: usize = 57;
    const RECORDS: usize = 61;

    /// Fixes a forged batch's length and CRC-32C, as a hostile client would.
    fn reseal(mut batch: Vec<u8>) -> Bytes {
        let length = (batch.len() - BATCH_LENGTH_END) as i32;
        batch[LENGTH..LENGTH + 4].copy_from_slice(&length.to_be_bytes());
        let mut crc = !0u32;
        for &byte in &batch[CRC + 4..] {
            crc ^= u32::from(byte);
            for _ in 0..8 {
                crc = if crc & 1 == 1 { (crc >> 1) ^ 0x82f6_3b78 } else { crc >> 1 };
            }
        }
        batch[CRC..CRC + 4].copy_from_slice(&(!crc).to_be_bytes());
        Bytes::from(batch)
    }

    /// Found by fuzz/fuzz_targets/record_batch_rewrite.rs: kafka-protocol reserved room for
    /// the record count a batch claims, so a count of 2^31 - 1 aborted kaos on a failed
    /// allocation of 378 GB (see vendor/kafka-protocol/KAOS-PATCH.md).
    #[test]
    fn forged_record_counts_are_errors_not_aborts() {
        let mut forged = batch(Compression::None, &[b"a"], -1, -1).to_vec();
        forged[RECORD_COUNT..RECORDS].copy_from_slice(&i32::MAX.to_be_bytes());
        assert!(rewrite_batches(&reseal(forged), Crc::Valid, &mut |_| 1).is_err());
    }

    /// Found by fuzz/fuzz_targets/record_batch_rewrite.rs: timestamps past i64::MAX overflowed
    /// in kafka-protocol (a panic where overflow checks are on); they wrap, as in Kafka.
    #[test]
    fn timestamps_wrap_instead_of_overflowing() {
        let mut forged = batch(Compression::None, &[b"a", b"b"], -1, -1).to_vec();
        forged[FIRST_TIMESTAMP..FIRST_TIMESTAMP + 8].copy_from_slice(&i64::MAX.to_be_bytes());
        let (rewritten, changed) = rewrite_batches(&reseal(forged), Crc::Valid, &mut |records| {
            records[0].value = Some(Bytes::from_static(b"A"));
            1
        })
        .unwrap();
        assert_eq!(changed, 1);
        let set = RecordBatchDecoder::decode(&mut rewritten.clone()).unwrap();
        let timestamps: Vec<i64> = set.records.iter().map(|r| r.timestamp).collect();
        // The batch helper's deltas are 0 and 1 from its first timestamp.
        assert_eq!(timestamps, vec![i64::MAX, i64::MIN]);
    }

    /// Found by fuzz/fuzz_targets/record_batch_rewrite.rs: kafka-protocol's encoder dropped the
    /// LogAppendTime attribute, so a rewritten batch changed its timestamp type.
    #[test]
    fn rewritten_batches_keep_their_timestamp_type() {
        const ATTRIBUTES_LOW: usize = 22;
        let mut forged = batch(Compression::Lz4, &[b"a", b"b"], -1, -1).to_vec();
        forged[ATTRIBUTES_LOW] |= 1 << 3;
        let (rewritten, _) = rewrite_batches(&reseal(forged), Crc::Valid, &mut |records| {
            records[1].value = None;
            1
        })
        .unwrap();
        let set = RecordBatchDecoder::decode(&mut rewritten.clone()).unwrap();
        assert_eq!(set.compression, Compression::Lz4);
        assert!(
            set.records.iter().all(|r| r.timestamp_type == kafka_protocol::records::TimestampType::LogAppend)
        );
    }

    /// Found by fuzz/fuzz_targets/record_batch_rewrite.rs: kafka-protocol allocated the length a
    /// snappy block claims before decoding it, so 6 bytes could claim (and cost) 4 GiB.
    #[test]
    fn snappy_blocks_cannot_claim_more_than_they_hold() {
        let header = &batch(Compression::Snappy, &[b"a"], -1, -1)[..RECORDS];
        let claim_4_gib = [0xff, 0xff, 0xff, 0xff, 0x0f, 0x00];
        let xerial =
            [&b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01\x00\x00\x00\x06"[..], &claim_4_gib].concat();
        for payload in [&claim_4_gib[..], &xerial] {
            let forged = reseal([header, payload].concat());
            let error = rewrite_batches(&forged, Crc::Valid, &mut |_| 1).unwrap_err();
            // Refused at the claimed length, before anything is allocated.
            let refused = ["failed to read snappy header", "failed to get snappy uncompressed length"];
            assert!(refused.iter().any(|why| error.contains(why)), "{error}");
        }
    }

    #[test]
    fn corrupt_batches_are_errors_not_panics() {
        let original = batch(Compression::None, &[b"a"], -1, -1);
        let mut corrupt = original.to_vec();
        let last = corrupt.len() - 1;
        corrupt[last] ^= 0xff;
        assert!(rewrite_batches(&Bytes::from(corrupt), Crc::Valid, &mut |_| 1).is_err(), "CRC mismatch");
        for cut in 0..original.len() {
            let _ = rewrite_batches(&original.slice(..cut), Crc::Valid, &mut |_| 1);
        }
    }
}
