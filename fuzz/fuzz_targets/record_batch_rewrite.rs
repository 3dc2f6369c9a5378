//! `rewrite_batches`, which decodes a partition's record batches, lets a fault edit the records
//! and re-encodes the batches it changed.
//!
//! Input: one byte of mode, one byte that picks the records the edit changes (bit i: every
//! record whose index is i modulo 8), then:
//! - mode 0: the partition's records, as they are;
//! - mode 1: the same with every whole batch's CRC made right, so that the fuzzer gets past the
//!   checksum into the decompressors and record decoding;
//! - other modes: a codec byte (None, Gzip, Snappy, Lz4, Zstd), a record count byte and record
//!   fields, from which a valid batch is built with kafka-protocol's encoder.
//!
//! Checks: it never panics; a valid batch always rewrites; and whatever it returns decodes,
//! batch by batch, into the input's records with the edit applied, each with its own batch's
//! codec. Untouched input comes back byte for byte.
#![no_main]

use bytes::{Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use kaos::chaos::records::{Crc, rewrite_batches};
use kaos_fuzz::{CODECS, Reader, fix_batch_crcs};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut input = Reader::new(data);
    let mode = input.u8();
    let mask = input.u8();
    let (records, valid) = match mode {
        0 => (Bytes::copy_from_slice(input.rest()), false),
        1 => {
            let mut records = input.rest().to_vec();
            fix_batch_crcs(&mut records);
            (Bytes::from(records), false)
        }
        _ => (build_batch(&mut input), true),
    };

    let result = rewrite_batches(&records, Crc::Valid, &mut |batch: &mut Vec<Record>| edit(mask, batch));
    let (out, changed) = match result {
        Ok(done) => done,
        Err(why) if valid => panic!("a valid batch did not rewrite: {why}"),
        Err(_) => return,
    };
    if changed == 0 {
        assert_eq!(out, records, "untouched batches are copied byte for byte");
    }

    // Every input batch decoded (or the rewrite failed): what came out must decode into the
    // same records, edited, each in a batch of its input batch's codec.
    let mut expected = Vec::new();
    let mut cursor = records.clone();
    while !cursor.is_empty() {
        let mut set = RecordBatchDecoder::decode(&mut cursor).expect("the input decoded in the rewrite");
        edit(mask, &mut set.records);
        expected.extend(set.records.into_iter().map(|r| (set.compression, r)));
    }
    let mut got = Vec::new();
    let mut cursor = out.clone();
    while !cursor.is_empty() {
        let set = RecordBatchDecoder::decode(&mut cursor).expect("the rewritten records decode");
        got.extend(set.records.into_iter().map(|r| (set.compression, r)));
    }
    assert_eq!(got.len(), expected.len(), "record count");
    for (i, ((got_codec, got), (codec, want))) in got.iter().zip(&expected).enumerate() {
        assert_eq!(got_codec, codec, "record {i}: codec");
        assert_eq!(got, want, "record {i}");
    }
});

/// Changes the value of every record whose index modulo 8 is set in `mask`: appends a byte, or
/// (bit set for index + 1 as well) drops the value. Returns how many it changed.
fn edit(mask: u8, batch: &mut [Record]) -> u64 {
    let mut changed = 0;
    for (i, record) in batch.iter_mut().enumerate() {
        if mask & (1 << (i % 8)) == 0 {
            continue;
        }
        record.value = if mask & (1 << ((i + 1) % 8)) != 0 && record.value.is_some() {
            None
        } else {
            let mut value = BytesMut::from(record.value.as_deref().unwrap_or_default());
            value.extend_from_slice(b"!");
            Some(value.freeze())
        };
        changed += 1;
    }
    changed
}

/// A valid v2 batch from the input: codec, producer state, then each record's key, value,
/// headers and timestamp.
fn build_batch(input: &mut Reader<'_>) -> Bytes {
    let compression: Compression = CODECS[usize::from(input.u8()) % CODECS.len()];
    let count = usize::from(input.u8() % 8) + 1;
    let idempotent = input.bool();
    let producer_id = if idempotent { i64::from(input.u32()) } else { -1 };
    let base_sequence = if idempotent { i32::from(input.u16()) } else { -1 };
    let base_offset = i64::from(input.u16());
    let transactional = idempotent && input.bool();
    let log_append = input.bool();
    let base_timestamp = 1_700_000_000_000 + i64::from(input.u32());
    let records: Vec<Record> = (0..count)
        .map(|i| {
            let key = input.bool().then(|| Bytes::copy_from_slice(input.chunk(32)));
            let value = input.bool().then(|| Bytes::copy_from_slice(input.chunk(200)));
            let mut headers = IndexMap::new();
            for _ in 0..input.u8() % 3 {
                let name = String::from_utf8_lossy(input.chunk(8)).into_owned();
                let value = input.bool().then(|| Bytes::copy_from_slice(input.chunk(8)));
                headers.insert(StrBytes::from_string(name), value);
            }
            Record {
                transactional,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id,
                producer_epoch: if idempotent { 0 } else { -1 },
                timestamp_type: if log_append { TimestampType::LogAppend } else { TimestampType::Creation },
                offset: base_offset + i as i64,
                sequence: base_sequence.wrapping_add(i as i32),
                timestamp: base_timestamp + i64::from(input.u16()),
                key,
                value,
                headers,
            }
        })
        .collect();
    let mut out = BytesMut::new();
    RecordBatchEncoder::encode(&mut out, records.iter(), &RecordEncodeOptions { version: 2, compression })
        .expect("a valid batch encodes");
    out.freeze()
}
