//! Helpers the fuzz targets share, and the generator of the seed corpus in `fuzz/seeds/`.
//!
//! Each target reads its input as described at the top of its file; [`seeds`] builds inputs in
//! those layouts from real frames, so the fuzzers start from what kaos actually sees. The test
//! `seeds_are_up_to_date` checks the committed files against the generator; run it with
//! `KAOS_FUZZ_WRITE_SEEDS=1` to rewrite them.

use bytes::Bytes;
use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::Compression;
use kaos_testkit::frames::response_body;
use kaos_testkit::{Produce, Topic, batch};

/// The APIs `response_rewrite` picks from with its first input byte.
pub const REWRITTEN_APIS: [ApiKey; 6] = [
    ApiKey::Metadata,
    ApiKey::FindCoordinator,
    ApiKey::DescribeCluster,
    ApiKey::ApiVersions,
    ApiKey::Produce,
    ApiKey::Fetch,
];

/// The codecs `record_batch_rewrite` picks from.
pub const CODECS: [Compression; 5] =
    [Compression::None, Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd];

/// Reads fuzz input front to back; past the end every read answers zero (or nothing).
pub struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(data: &'a [u8]) -> Reader<'a> {
        Reader { data }
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    pub fn bool(&mut self) -> bool {
        self.u8() & 1 == 1
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }

    pub fn u32(&mut self) -> u32 {
        u32::from_be_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }

    pub fn u64(&mut self) -> u64 {
        (u64::from(self.u32()) << 32) | u64::from(self.u32())
    }

    /// Up to `n` bytes.
    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (taken, rest) = self.data.split_at(n.min(self.data.len()));
        self.data = rest;
        taken
    }

    /// A length-prefixed chunk: one byte of length (at most `max`), then that many bytes.
    pub fn chunk(&mut self, max: usize) -> &'a [u8] {
        let n = usize::from(self.u8()) % (max + 1);
        self.bytes(n)
    }

    /// Everything left.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.data)
    }
}

/// Bytes before a v2 batch's CRC: baseOffset, batchLength, partitionLeaderEpoch, magic.
const CRC_START: usize = 8 + 4 + 4 + 1;
/// The CRC covers the batch from the attributes on.
const CRC_END: usize = CRC_START + 4;

/// Rewrites the CRC of every whole batch in `records`, so that mutated batches get past the
/// checksum and the fuzzer reaches the decompressors and record decoding behind it.
pub fn fix_batch_crcs(records: &mut [u8]) {
    let mut offset = 0;
    while let Some(header) = records.get(offset..offset + 12) {
        let length = i32::from_be_bytes([header[8], header[9], header[10], header[11]]);
        let Some(end) = usize::try_from(length).ok().and_then(|l| (offset + 12).checked_add(l)) else {
            return;
        };
        if end > records.len() || end < offset + CRC_END {
            return;
        }
        let crc = crc32c::crc32c(&records[offset + CRC_END..end]);
        records[offset + CRC_START..offset + CRC_END].copy_from_slice(&crc.to_be_bytes());
        offset = end;
    }
}

/// A Produce request writing `topics`, two partitions each holding `records`, as rdkafka sends
/// it (with a transactional id from v3, and a header tagged field from v9).
fn produce(version: i16, topics: &[&str], records: &Bytes) -> Produce {
    let mut request =
        Produce::new(version).client_id("rdkafka").correlation_id(7).transactional_id(Some("txn-1"));
    if version >= 9 {
        request = request.header_tagged_field(5, Bytes::from_static(b"\xaa\xbb"));
    }
    for (i, name) in topics.iter().enumerate() {
        request = request.topic(
            Topic::new(name, [i as u8 + 1; 16]).partition(0, records.clone()).partition(1, records.clone()),
        );
    }
    request
}

/// The seed bodies of the Conduktor chaos demo (and the seed rules of kaos's own tests).
pub const DEMO_RULES: &[(&str, &str)] = &[
    (
        "broken-broker",
        r#"{"config":{"errors":["NOT_ENOUGH_REPLICAS"]},"direction":"REQUEST","apiKeys":"PRODUCE"}"#,
    ),
    (
        "broken-broker",
        r#"{"config":{"brokerIds":[],"duration":6000,"durationUnit":"MILLISECONDS","quietPeriod":20000,"quietPeriodUnit":"MILLISECONDS","minLatencyToAddInMilliseconds":6000,"maxLatencyToAddInMilliseconds":7000,"errors":["REQUEST_TIMED_OUT","BROKER_NOT_AVAILABLE","OFFSET_OUT_OF_RANGE","NOT_ENOUGH_REPLICAS","INVALID_REQUIRED_ACKS"]},"direction":"REQUEST","apiKeys":"PRODUCE"}"#,
    ),
    (
        "duplicate-resource",
        r#"{"config":{"topics":["conduktor_topic_duplicate"],"duration":1,"rateInPercent":100,"quietPeriod":1,"timeUnit":"MINUTES"},"direction":"REQUEST","apiKeys":"PRODUCE"}"#,
    ),
    (
        "random-bytes",
        r#"{"config":{"topics":["t"],"nbMessages":1,"sizeInBytes":10},"direction":"REQUEST","apiKeys":"PRODUCE"}"#,
    ),
    (
        "invalid-schema",
        r#"{"config":{"topics":["t"],"fakeSchemaId":999},"direction":"REQUEST","apiKeys":"PRODUCE"}"#,
    ),
    (
        "slow-topic",
        r#"{"config":{"topicPatterns":["t.*"],"minLatencyToAddInMilliseconds":6000,"maxLatencyToAddInMilliseconds":7000},"direction":"REQUEST","apiKeys":"PRODUCE"}"#,
    ),
    (
        "leader-election",
        r#"{"config":{"rateInPercent":100,"duration":6000,"quietPeriod":20000,"timeUnit":"MILLISECONDS","errors":["LEADER_NOT_AVAILABLE","NOT_LEADER_OR_FOLLOWER","BROKER_NOT_AVAILABLE"]},"direction":"REQUEST","apiKeys":"PRODUCE"}"#,
    ),
    (
        "slow-broker",
        r#"{"config":{"brokerIds":[],"minLatencyToAddInMilliseconds":6000,"maxLatencyToAddInMilliseconds":7000},"direction":"RESPONSE","apiKeys":"FETCH"}"#,
    ),
];

/// Every seed: (target, file name, input in that target's layout).
pub fn seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut seeds = Vec::new();
    let snappy = batch(Compression::Snappy, &[b"one", b"two", b"three"], 7, 42);

    // request_frame: whole request frames, length prefix included.
    for version in [0, 3, 7, 9, 13] {
        let frame = produce(version, &["orders"], &snappy).frame();
        seeds.push(("request_frame", format!("produce-v{version}.bin"), frame.to_vec()));
    }

    // produce_topics: one byte of version, then the frame body.
    for version in [0, 3, 8, 9, 12, 13] {
        for topics in [&["orders"][..], &["orders", "payments", "audit"][..]] {
            let mut input = vec![version as u8];
            input.extend_from_slice(&produce(version, topics, &snappy).body());
            seeds.push(("produce_topics", format!("produce-v{version}-{}-topics.bin", topics.len()), input));
        }
    }

    // response_rewrite: API index, version, port choice, then the response frame body.
    for (name, api, version, body) in response_seeds() {
        let index = REWRITTEN_APIS.iter().position(|&a| a == api).expect("a rewritten API") as u8;
        let mut input = vec![index, version as u8, 1];
        input.extend_from_slice(&body);
        seeds.push(("response_rewrite", name, input));
    }

    // record_batch_rewrite: a mode byte and an edit mask byte; mode 0 (raw) and 1 (CRCs fixed)
    // take batches as they are, mode 2 builds a valid batch from the bytes that follow.
    for (i, codec) in CODECS.iter().enumerate() {
        let valid = batch(*codec, &[b"one", b"two", b"\x00\x00\x00\x00\x07avro"], 7, 42);
        let name = format!("{codec:?}").to_lowercase();
        let mut raw = vec![0, 0b010];
        raw.extend_from_slice(&valid);
        seeds.push(("record_batch_rewrite", format!("{name}-batch.bin"), raw));
        let mut two = vec![1, 0b101];
        two.extend_from_slice(&valid);
        two.extend_from_slice(&batch(*codec, &[b"four"], -1, -1));
        seeds.push(("record_batch_rewrite", format!("{name}-two-batches.bin"), two));
        // codec, 3 records, idempotent producer 7 (sequence 42, offset 0), then the records.
        let mut built = vec![2, 0b110, i as u8, 2, 1, 0, 0, 0, 7, 0, 42, 0, 0, 0, 0, 0, 0, 0, 0];
        built.extend_from_slice(b"\x01\x03key\x01\x05value\x01\x01h\x01\x01x\x00\x07");
        built.extend_from_slice(b"\x00\x01\x02v2\x00\x00\x09\x01\x01k\x00\x00\x00\x10");
        seeds.push(("record_batch_rewrite", format!("{name}-built.bin"), built));
    }

    // rule_json: feature index, mode (0: the body as is), then the body.
    for (i, (feature, body)) in DEMO_RULES.iter().enumerate() {
        let index = kaos::chaos::FAULTS.iter().position(|spec| spec.name == *feature).expect("a fault") as u8;
        let mut input = vec![index, 0];
        input.extend_from_slice(body.as_bytes());
        seeds.push(("rule_json", format!("demo-{i}-{feature}.bin"), input));
    }
    seeds
}

fn response_seeds() -> Vec<(String, ApiKey, i16, Bytes)> {
    use kafka_protocol::messages::api_versions_response::ApiVersion;
    use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
    use kafka_protocol::messages::find_coordinator_response::Coordinator;
    use kafka_protocol::messages::metadata_response::{
        MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
    };
    use kafka_protocol::messages::{
        ApiVersionsResponse, BrokerId, DescribeClusterResponse, FetchResponse, FindCoordinatorResponse,
        MetadataResponse, ProduceResponse, TopicName, fetch_response, produce_response,
    };
    let host = |h: &'static str| StrBytes::from_static_str(h);
    let mut out = Vec::new();

    let brokers: Vec<_> = (1..=3)
        .map(|id| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(id))
                .with_host(host("kafka.internal"))
                .with_port(9091 + id)
                .with_rack(Some(host("rack-a")))
        })
        .collect();
    let topic = MetadataResponseTopic::default()
        .with_name(Some(TopicName(host("orders"))))
        .with_topic_id(uuid::Uuid::from_bytes([7; 16]))
        .with_partitions(vec![
            MetadataResponsePartition::default()
                .with_leader_id(BrokerId(1))
                .with_replica_nodes(vec![BrokerId(1), BrokerId(2)])
                .with_isr_nodes(vec![BrokerId(1)]),
        ]);
    for version in [1, 9, 12] {
        let metadata = MetadataResponse::default()
            .with_brokers(brokers.clone())
            .with_controller_id(BrokerId(1))
            .with_topics(vec![topic.clone()]);
        out.push((
            format!("metadata-v{version}.bin"),
            ApiKey::Metadata,
            version,
            response_body(ApiKey::Metadata, version, 42, &metadata),
        ));
    }

    let coordinator = FindCoordinatorResponse::default()
        .with_node_id(BrokerId(2))
        .with_host(host("kafka-2.internal"))
        .with_port(9093);
    out.push((
        "find-coordinator-v3.bin".into(),
        ApiKey::FindCoordinator,
        3,
        response_body(ApiKey::FindCoordinator, 3, 42, &coordinator),
    ));
    let coordinators = FindCoordinatorResponse::default().with_coordinators(vec![
        Coordinator::default()
            .with_key(host("group-a"))
            .with_node_id(BrokerId(2))
            .with_host(host("kafka-2.internal"))
            .with_port(9093),
        Coordinator::default().with_key(host("group-b")).with_node_id(BrokerId(-1)).with_error_code(15),
    ]);
    out.push((
        "find-coordinator-v4.bin".into(),
        ApiKey::FindCoordinator,
        4,
        response_body(ApiKey::FindCoordinator, 4, 42, &coordinators),
    ));

    let cluster = DescribeClusterResponse::default().with_cluster_id(host("cluster-1")).with_brokers(vec![
        DescribeClusterBroker::default()
            .with_broker_id(BrokerId(1))
            .with_host(host("kafka-1"))
            .with_port(9092),
    ]);
    out.push((
        "describe-cluster-v1.bin".into(),
        ApiKey::DescribeCluster,
        1,
        response_body(ApiKey::DescribeCluster, 1, 42, &cluster),
    ));

    let versions = ApiVersionsResponse::default().with_api_keys(
        [(ApiKey::Produce, 13), (ApiKey::Fetch, 18), (ApiKey::Metadata, 13), (ApiKey::JoinGroup, 9)]
            .into_iter()
            .map(|(api, max)| ApiVersion::default().with_api_key(api as i16).with_max_version(max))
            .collect(),
    );
    let api_versions = |version: i16, message: &ApiVersionsResponse| {
        response_body(ApiKey::ApiVersions, version, 42, message)
    };
    out.push(("api-versions-v3.bin".into(), ApiKey::ApiVersions, 3, api_versions(3, &versions)));
    let unsupported =
        ApiVersionsResponse::default().with_error_code(35).with_api_keys(versions.api_keys.clone());
    out.push((
        "api-versions-v9-unsupported.bin".into(),
        ApiKey::ApiVersions,
        9,
        api_versions(0, &unsupported),
    ));

    let produce = ProduceResponse::default().with_node_endpoints(vec![
        produce_response::NodeEndpoint::default()
            .with_node_id(BrokerId(3))
            .with_host(host("kafka-3"))
            .with_port(9094),
    ]);
    out.push((
        "produce-v10.bin".into(),
        ApiKey::Produce,
        10,
        response_body(ApiKey::Produce, 10, 42, &produce),
    ));

    let fetch = FetchResponse::default().with_node_endpoints(vec![
        fetch_response::NodeEndpoint::default()
            .with_node_id(BrokerId(3))
            .with_host(host("kafka-3"))
            .with_port(9094),
    ]);
    out.push(("fetch-v16.bin".into(), ApiKey::Fetch, 16, response_body(ApiKey::Fetch, 16, 42, &fetch)));
    out
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    /// The committed seeds are what [`super::seeds`] generates; `KAOS_FUZZ_WRITE_SEEDS=1`
    /// rewrites them.
    #[test]
    fn seeds_are_up_to_date() {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("seeds");
        let write = std::env::var_os("KAOS_FUZZ_WRITE_SEEDS").is_some();
        let mut stale = Vec::new();
        for (target, name, bytes) in super::seeds() {
            let path = root.join(target).join(&name);
            if write {
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(&path, &bytes).unwrap();
            } else if std::fs::read(&path).ok().as_deref() != Some(&bytes[..]) {
                stale.push(path.display().to_string());
            }
        }
        assert!(stale.is_empty(), "stale seeds (rerun with KAOS_FUZZ_WRITE_SEEDS=1): {stale:?}");
    }

    #[test]
    fn fixed_crcs_decode() {
        use kafka_protocol::records::RecordBatchDecoder;
        let mut bytes = super::batch(kafka_protocol::records::Compression::None, &[b"a"], -1, -1).to_vec();
        let value = bytes.len() - 2; // the value "a", before the header count
        bytes[value] ^= 1;
        assert!(RecordBatchDecoder::decode(&mut bytes::Bytes::from(bytes.clone())).is_err());
        super::fix_batch_crcs(&mut bytes);
        assert!(RecordBatchDecoder::decode(&mut bytes::Bytes::from(bytes)).is_ok());
    }
}
