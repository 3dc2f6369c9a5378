//! Produce requests: a [`Produce`] builder for the request and its header, and [`batch`] for the
//! record bytes of a partition.
//!
//! kafka-protocol 0.18 encodes Produce v3 to v13. Versions 0 to 2, which kaos still reads, differ
//! from v3 only in lacking the transactional id (v3 added it; the records' own format is opaque
//! here), so the builder writes them as v3 without that field.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, ProduceRequest, RequestHeader, TopicName, TransactionalId};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};

use crate::frames::{LENGTH_PREFIX, encode, framed};

/// The first Produce version with a transactional id, and the first kafka-protocol encodes.
const FIRST_TRANSACTIONAL: i16 = 3;
/// The first Produce version that names topics by id rather than by name.
const FIRST_TOPIC_ID: i16 = 13;

/// A Produce request and its header, at one version.
///
/// Defaults: correlation id 1, client id `kaos-testkit`, acks -1, timeout 30 s, no
/// transactional id, no header tagged field, no topics.
#[derive(Debug, Clone, PartialEq)]
pub struct Produce {
    version: i16,
    correlation_id: i32,
    client_id: String,
    acks: i16,
    timeout_ms: i32,
    transactional_id: Option<String>,
    header_tagged_field: Option<(i32, Bytes)>,
    topics: Vec<Topic>,
}

/// One topic of a [`Produce`] request: its name, written below v13, its id, written from v13,
/// and its partitions, each an index and the record bytes sent for it.
#[derive(Debug, Clone, PartialEq)]
pub struct Topic {
    name: String,
    id: [u8; 16],
    partitions: Vec<(i32, Bytes)>,
}

impl Topic {
    /// A topic without partitions yet.
    pub fn new(name: &str, id: [u8; 16]) -> Topic {
        Topic { name: name.to_owned(), id, partitions: Vec::new() }
    }

    /// Adds partition `index` with `records`: the partition's record bytes, sent as they are
    /// (a [`batch`], or any bytes a test needs).
    pub fn partition(mut self, index: i32, records: impl Into<Bytes>) -> Topic {
        self.partitions.push((index, records.into()));
        self
    }
}

impl Produce {
    /// A Produce request at `version` (0 to 13), with the defaults above.
    pub fn new(version: i16) -> Produce {
        Produce {
            version,
            correlation_id: 1,
            client_id: "kaos-testkit".to_owned(),
            acks: -1,
            timeout_ms: 30_000,
            transactional_id: None,
            header_tagged_field: None,
            topics: Vec::new(),
        }
    }

    /// The header's correlation id.
    pub fn correlation_id(mut self, correlation_id: i32) -> Produce {
        self.correlation_id = correlation_id;
        self
    }

    /// The header's client id.
    pub fn client_id(mut self, client_id: &str) -> Produce {
        self.client_id = client_id.to_owned();
        self
    }

    /// The acks the producer asks for: 0, 1 or -1 (all).
    pub fn acks(mut self, acks: i16) -> Produce {
        self.acks = acks;
        self
    }

    /// How long the broker may wait for the acks.
    pub fn timeout_ms(mut self, timeout_ms: i32) -> Produce {
        self.timeout_ms = timeout_ms;
        self
    }

    /// The transactional id, `None` for null. Written from v3 on; earlier versions have no such
    /// field and leave it out.
    pub fn transactional_id(mut self, transactional_id: Option<&str>) -> Produce {
        self.transactional_id = transactional_id.map(str::to_owned);
        self
    }

    /// A tagged field, unknown to Kafka, in the request header: what a newer client may send and
    /// a reader must skip. Only the flexible header (Produce v9 on) has tagged fields; earlier
    /// versions leave it out.
    pub fn header_tagged_field(mut self, tag: i32, value: impl Into<Bytes>) -> Produce {
        self.header_tagged_field = Some((tag, value.into()));
        self
    }

    /// Adds a topic.
    pub fn topic(mut self, topic: Topic) -> Produce {
        self.topics.push(topic);
        self
    }

    /// The request as it goes on the wire: length prefix, header, request.
    ///
    /// Panics if the version is outside 0 to 13.
    pub fn frame(&self) -> Bytes {
        let api = ApiKey::Produce;
        let mut header = RequestHeader::default()
            .with_request_api_key(api as i16)
            .with_request_api_version(self.version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_string(self.client_id.clone())));
        if let Some((tag, value)) = &self.header_tagged_field {
            header.unknown_tagged_fields.insert(*tag, value.clone());
        }
        let encoded_version = self.version.max(FIRST_TRANSACTIONAL);
        let transactional_id = self
            .transactional_id
            .as_ref()
            .filter(|_| self.version >= FIRST_TRANSACTIONAL)
            .map(|id| TransactionalId(StrBytes::from_string(id.clone())));
        let request = ProduceRequest::default()
            .with_transactional_id(transactional_id)
            .with_acks(self.acks)
            .with_timeout_ms(self.timeout_ms)
            .with_topic_data(self.topics.iter().map(|topic| topic.data(self.version)).collect());
        framed(|out| {
            encode(out, &header, api.request_header_version(self.version), "request header", api);
            let mut request_bytes = BytesMut::new();
            encode(&mut request_bytes, &request, encoded_version, "request", api);
            if self.version < FIRST_TRANSACTIONAL {
                // The null transactional id v3 starts with: a string of length -1.
                assert_eq!(&request_bytes[..2], &[0xff, 0xff]);
                let _ = request_bytes.split_to(2);
            }
            out.extend_from_slice(&request_bytes);
        })
    }

    /// [`Produce::frame`] without its length prefix: the bytes kaos's frame parsers read.
    pub fn body(&self) -> Bytes {
        self.frame().slice(LENGTH_PREFIX..)
    }
}

impl Topic {
    fn data(&self, version: i16) -> TopicProduceData {
        let partitions = self
            .partitions
            .iter()
            .map(|(index, records)| {
                PartitionProduceData::default().with_index(*index).with_records(Some(records.clone()))
            })
            .collect();
        let topic = TopicProduceData::default().with_partition_data(partitions);
        if version >= FIRST_TOPIC_ID {
            topic.with_topic_id(uuid::Uuid::from_bytes(self.id))
        } else {
            topic.with_name(TopicName(StrBytes::from_string(self.name.clone())))
        }
    }
}

/// One record batch (format v2) holding `values` in order, compressed with `compression`.
///
/// Record `i` has key `key-{i}`, offset delta `i`, timestamp 1 700 000 000 000 + `i` ms and
/// sequence `base_sequence + i`; the batch belongs to `producer_id` (epoch 0), or to no producer
/// (epoch -1) when `producer_id` is negative.
pub fn batch(compression: Compression, values: &[&[u8]], producer_id: i64, base_sequence: i32) -> Bytes {
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, value)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id,
            producer_epoch: if producer_id < 0 { -1 } else { 0 },
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: base_sequence.wrapping_add(i as i32),
            timestamp: 1_700_000_000_000 + i as i64,
            key: Some(Bytes::from(format!("key-{i}"))),
            value: Some(Bytes::copy_from_slice(value)),
            headers: Default::default(),
        })
        .collect();
    let mut out = BytesMut::new();
    RecordBatchEncoder::encode(&mut out, records.iter(), &RecordEncodeOptions { version: 2, compression })
        .expect("a record batch encodes");
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frames::request_frame;
    use bytes::Buf;
    use kafka_protocol::protocol::Decodable;
    use kafka_protocol::records::RecordBatchDecoder;

    fn decode(version: i16, mut body: Bytes) -> (RequestHeader, ProduceRequest) {
        let header =
            RequestHeader::decode(&mut body, ApiKey::Produce.request_header_version(version)).unwrap();
        let request = ProduceRequest::decode(&mut body, version).unwrap();
        assert!(!body.has_remaining(), "v{version}: {} trailing bytes", body.remaining());
        (header, request)
    }

    #[test]
    fn the_flexible_header_carries_the_tagged_field_byte_for_byte() {
        let body = Produce::new(9)
            .correlation_id(7)
            .client_id("client-x")
            .transactional_id(Some("t"))
            .acks(0)
            .header_tagged_field(5, vec![0xaa, 0xbb])
            .body();
        let mut expected = vec![0, 0, 0, 9, 0, 0, 0, 7, 0, 8];
        expected.extend_from_slice(b"client-x");
        expected.extend_from_slice(&[1, 5, 2, 0xaa, 0xbb]); // one tagged field: tag 5, two bytes
        expected.extend_from_slice(&[2, b't']); // compact transactional id
        expected.extend_from_slice(&[0, 0, 0, 0, 0x75, 0x30]); // acks 0, timeout 30 s
        expected.extend_from_slice(&[1, 0]); // no topics, no request tagged fields
        assert_eq!(body, expected);
        let (header, _) = decode(9, body);
        assert_eq!(header.unknown_tagged_fields[&5], Bytes::from_static(&[0xaa, 0xbb]));
    }

    #[test]
    fn versions_before_3_have_no_transactional_id_and_v1_headers_no_tags() {
        for version in 0..=2 {
            let body = Produce::new(version)
                .correlation_id(7)
                .client_id("me")
                .transactional_id(Some("txn-1"))
                .header_tagged_field(5, vec![0xaa])
                .acks(1)
                .body();
            let mut expected = vec![0, 0, 0, version as u8, 0, 0, 0, 7, 0, 2, b'm', b'e'];
            expected.extend_from_slice(&[0, 1, 0, 0, 0x75, 0x30, 0, 0, 0, 0]); // acks, timeout, no topics
            assert_eq!(body, expected, "v{version}");
        }
        let v3 = Produce::new(3).client_id("me").body();
        assert_eq!(&v3[12..14], &[0xff, 0xff], "v3 writes a null transactional id");
        assert_eq!(Produce::new(2).client_id("me").body().len(), v3.len() - 2);
    }

    #[test]
    fn topics_are_named_below_v13_and_identified_from_v13() {
        let records = batch(Compression::Snappy, &[b"a", b"b"], -1, -1);
        for version in 3..=13 {
            let produce = Produce::new(version)
                .correlation_id(17)
                .client_id("unit")
                .acks(-1)
                .timeout_ms(1000)
                .transactional_id(Some("txn"))
                .topic(Topic::new("orders", [9; 16]).partition(0, records.clone()).partition(3, vec![7u8; 4]))
                .topic(Topic::new("payments", [8; 16]));
            let frame = produce.frame();
            assert_eq!((&frame[..4]).get_i32() as usize, frame.len() - LENGTH_PREFIX, "length prefix");
            let (header, request) = decode(version, produce.body());
            assert_eq!((header.request_api_key, header.request_api_version), (0, version));
            assert_eq!((header.correlation_id, header.client_id.as_deref()), (17, Some("unit")));
            assert_eq!((request.acks, request.timeout_ms), (-1, 1000));
            assert_eq!(request.transactional_id.as_deref().map(|id| id.as_str()), Some("txn"));
            let topics: Vec<_> =
                request.topic_data.iter().map(|t| (t.name.0.to_string(), *t.topic_id.as_bytes())).collect();
            if version >= 13 {
                assert_eq!(topics, vec![(String::new(), [9; 16]), (String::new(), [8; 16])]);
            } else {
                assert_eq!(topics, vec![("orders".into(), [0; 16]), ("payments".into(), [0; 16])]);
            }
            let partitions = &request.topic_data[0].partition_data;
            assert_eq!((partitions[0].index, partitions[1].index), (0, 3));
            assert_eq!(partitions[0].records.as_ref(), Some(&records));
            assert_eq!(partitions[1].records.as_deref(), Some(&[7u8; 4][..]));
        }
    }

    #[test]
    fn the_builder_agrees_with_the_generic_request_frame() {
        let request = ProduceRequest::default().with_acks(0).with_timeout_ms(1000);
        assert_eq!(
            Produce::new(9).correlation_id(1).client_id("kaos-test").acks(0).timeout_ms(1000).frame(),
            request_frame(ApiKey::Produce, 9, 1, "kaos-test", &request)
        );
    }

    #[test]
    fn batches_hold_the_values_and_producer_state() {
        let mut bytes = batch(Compression::Zstd, &[b"one", b"two"], 7, 41);
        let set = RecordBatchDecoder::decode(&mut bytes).expect("valid CRC");
        assert_eq!(set.compression, Compression::Zstd);
        let values: Vec<_> = set.records.iter().map(|r| r.value.clone().unwrap()).collect();
        assert_eq!(values, vec![Bytes::from_static(b"one"), Bytes::from_static(b"two")]);
        assert_eq!((set.records[1].producer_id, set.records[1].producer_epoch), (7, 0));
        assert_eq!((set.records[0].sequence, set.records[1].sequence), (41, 42));
        assert_eq!(set.records[1].key.as_deref(), Some(&b"key-1"[..]));
        let set = RecordBatchDecoder::decode(&mut batch(Compression::None, &[b"x"], -1, -1)).unwrap();
        assert_eq!((set.records[0].producer_id, set.records[0].producer_epoch), (-1, -1));
    }
}
