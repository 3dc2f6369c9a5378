//! `--rules-topic`: the rules and message formats of every kaos in front of one cluster, kept in
//! a topic of that cluster, as Conduktor Gateway keeps its own.
//!
//! - **The topic** is compacted and has one partition, so that it holds the latest value of each
//!   key in one order; kaos creates it so when it is missing. A record's key names a rule
//!   (`{"kind":"rule","tenant",...,"direction"}`) or a message format
//!   (`{"kind":"messageFormat","tenant","topic"}`); its value is the rule as the rules file keeps
//!   it, and a tombstone (no value) removes it.
//! - **Every instance** reads the topic from its start, then follows it, and applies what it reads
//!   in the topic's order, its own writes included: a change made through one instance's REST API
//!   is written to the topic, and answered once this instance has read it back.
//! - **Off the shards:** a plain thread (`rules-topic`) does the Kafka client work, over the same
//!   TLS and SASL settings as the proxy's broker connections. The control thread hands it writes
//!   and takes what it read through channels, so neither ever waits on the other.
//! - **An unreachable cluster** leaves the last rules in force; `/ready` and the log say so, and
//!   the thread reconnects every second and catches up.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, CreateTopicsRequest, CreateTopicsResponse, FetchRequest, FetchResponse, MetadataRequest,
    MetadataResponse, ProduceRequest, ProduceResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use serde_json::{Value, json};

use super::api::Edit;
use crate::chaos::Rule;
use crate::chaos::rule::{RuleKey, api_key_name_of, unix_ms};
use crate::cluster::{BrokerClient, UpstreamError, dial};
use crate::shared::Shared;
use tracing::{info, warn};

/// Versions every Kafka from 2.4 on and tansu answer; Kafka 4 dropped older ones.
const METADATA_VERSION: i16 = 7;
const CREATE_TOPICS_VERSION: i16 = 5;
const PRODUCE_VERSION: i16 = 8;
const FETCH_VERSION: i16 = 11;
/// How long a fetch waits for news: also how long a write waits for the fetch before it.
const FETCH_WAIT: Duration = Duration::from_millis(100);
/// How long a produce waits for every in-sync replica (acks=all).
const PRODUCE_TIMEOUT: Duration = Duration::from_secs(5);
/// Bounds each read and write on the connection; above `PRODUCE_TIMEOUT`, so the broker's
/// own timeout answers first.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
const RETRY_INTERVAL: Duration = Duration::from_secs(1);
/// How long a freshly created topic may take to get a leader.
const LEADER_WAIT: Duration = Duration::from_secs(10);
const FETCH_MAX_BYTES: i32 = 4 << 20;
const CLIENT_ID: &str = "kaos-rules-topic";
const THREAD_STOPPED: &str = "the rules-topic thread stopped";

/// Identifies a write until it is settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteId(u64);

/// Records for the topic: key, and value (`None`: a tombstone).
type Records = Vec<(Bytes, Option<Bytes>)>;

struct Write {
    id: WriteId,
    records: Records,
}

/// What the topic thread tells the control thread.
enum News {
    /// Records read, in order, and the offset to read next. `from_start`: the topic restarted
    /// (recreated or truncated), so what was read before no longer holds.
    Read {
        records: Records,
        next_offset: i64,
        high_watermark: i64,
        from_start: bool,
    },
    /// A write is in the topic; its last record has this offset.
    Written {
        id: WriteId,
        last_offset: i64,
    },
    NotWritten {
        id: WriteId,
        why: String,
    },
    Unreachable(String),
}

/// What the control thread learns from one look at the topic.
#[derive(Default)]
pub struct Followed {
    /// Changes read, in the topic's order.
    pub edits: Vec<Edit>,
    /// The topic restarted: the edits rebuild the whole set.
    pub from_start: bool,
    /// Writes now applied here (`Ok`) or refused (`Err` with why).
    pub settled: Vec<(WriteId, Result<(), String>)>,
}

/// The control thread's end of the rules topic.
pub struct RulesTopic {
    name: String,
    writes: Sender<Write>,
    news: Receiver<News>,
    next_write: u64,
    /// Writes in the topic that this instance has not read back yet: id and last offset.
    written: Vec<(WriteId, i64)>,
    /// Writes the topic thread never took (it stopped): refused at the next `follow`.
    refused: Vec<WriteId>,
    /// The offset read next: everything before it is applied.
    next_offset: i64,
    /// Whether this instance has read the topic to its end at least once.
    loaded: bool,
    /// Why the topic cannot be read now, if it cannot.
    unreachable: Option<String>,
}

impl RulesTopic {
    /// Starts the `rules-topic` thread, which connects, creates the topic if it is missing,
    /// and follows it until shutdown.
    pub fn start(name: &str, bootstrap: Vec<String>, shared: Arc<Shared>) -> std::io::Result<RulesTopic> {
        let (writes, writes_in) = mpsc::channel();
        let (news_out, news) = mpsc::channel();
        let follower =
            Follower { topic: name.to_owned(), bootstrap, shared, writes: writes_in, news: news_out };
        std::thread::Builder::new().name("rules-topic".into()).spawn(move || follower.run())?;
        Ok(RulesTopic {
            name: name.to_owned(),
            writes,
            news,
            next_write: 0,
            written: Vec::new(),
            refused: Vec::new(),
            next_offset: 0,
            loaded: false,
            unreachable: None,
        })
    }

    /// Why changes cannot be made now: the topic has not been read to its end yet.
    pub fn not_ready(&self) -> Option<String> {
        match &self.unreachable {
            Some(why) if self.loaded => Some(format!(
                "rules topic '{}' unreachable ({why}); keeping the rules read up to offset {}",
                self.name, self.next_offset
            )),
            Some(why) => Some(format!("rules topic '{}' not read yet: {why}", self.name)),
            None if !self.loaded => Some(format!("rules topic '{}' not read to its end yet", self.name)),
            None => None,
        }
    }

    /// Hands `edits` to the topic thread as one batch (so the topic takes them whole).
    pub fn write(&mut self, edits: &[Edit]) -> WriteId {
        let id = WriteId(self.next_write);
        self.next_write += 1;
        let write = Write { id, records: edits.iter().map(record_of).collect() };
        if self.writes.send(write).is_err() {
            // The thread is gone (shutdown).
            self.unreachable.get_or_insert_with(|| THREAD_STOPPED.into());
            self.refused.push(id);
        }
        id
    }

    /// Takes what the topic thread has read and settled since the last look.
    pub fn follow(&mut self) -> Followed {
        let mut followed = Followed::default();
        followed.settled.extend(self.refused.drain(..).map(|id| (id, Err(THREAD_STOPPED.to_owned()))));
        loop {
            match self.news.try_recv() {
                Ok(News::Read { records, next_offset, high_watermark, from_start }) => {
                    if from_start {
                        followed =
                            Followed { from_start: true, settled: followed.settled, ..Followed::default() };
                    }
                    followed.edits.extend(records.iter().filter_map(|(key, value)| {
                        edit_of(key, value.as_ref())
                            .inspect_err(
                                |why| warn!(topic = %self.name, error = %why, "rules topic: record skipped"),
                            )
                            .ok()
                    }));
                    self.next_offset = next_offset;
                    self.unreachable = None;
                    if !self.loaded && next_offset >= high_watermark {
                        self.loaded = true;
                        info!(topic = %self.name, offset = next_offset, "rules topic read to its end");
                    }
                }
                Ok(News::Written { id, last_offset }) => self.written.push((id, last_offset)),
                Ok(News::NotWritten { id, why }) => followed.settled.push((id, Err(why))),
                Ok(News::Unreachable(why)) => self.unreachable = Some(why),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    self.unreachable.get_or_insert_with(|| THREAD_STOPPED.into());
                    break;
                }
            }
        }
        let next_offset = self.next_offset;
        self.written.retain(|&(id, last_offset)| {
            let read_back = last_offset < next_offset;
            if read_back {
                followed.settled.push((id, Ok(())));
            }
            !read_back
        });
        followed
    }
}

/// The key and value that carry `edit` in the topic.
fn record_of(edit: &Edit) -> (Bytes, Option<Bytes>) {
    let (key, value) = match edit {
        Edit::Rule(key, rule) => {
            let key = json!({"kind": "rule", "tenant": key.tenant, "user": key.user, "feature": key.feature,
                "apiKeys": api_key_name_of(key.api_key), "direction": key.direction.name()});
            (key, rule.as_ref().map(|rule| rule.entry()))
        }
        Edit::Format((tenant, topic), format) => (
            json!({"kind": "messageFormat", "tenant": tenant, "topic": topic}),
            format.as_ref().map(|format| json!({"tenant": tenant, "topic": topic, "messageFormat": format})),
        ),
    };
    (Bytes::from(key.to_string()), value.map(|value| Bytes::from(value.to_string())))
}

/// The change a record of the topic makes. A rule this kaos cannot read (written by a newer
/// one, say) removes the key here: an older version of that rule must not stay in force.
fn edit_of(key: &[u8], value: Option<&Bytes>) -> Result<Edit, String> {
    let key: Value = serde_json::from_slice(key).map_err(|e| format!("key is not JSON: {e}"))?;
    let text = |name: &str| {
        key.get(name).and_then(Value::as_str).ok_or_else(|| format!("key {key} has no \"{name}\""))
    };
    match text("kind")? {
        "rule" => {
            let rule_key = RuleKey::parse(
                text("tenant")?,
                text("user")?,
                text("feature")?,
                text("apiKeys")?,
                text("direction")?,
            )
            .map_err(|e| format!("key {key}: {}: {}", e.field, e.reason))?;
            let Some(value) = value else { return Ok(Edit::Rule(rule_key, None)) };
            let rule = serde_json::from_slice(value)
                .map_err(|e| e.to_string())
                .and_then(|entry| Rule::from_entry(&entry).map_err(|e| format!("{}: {}", e.field, e.reason)));
            match rule {
                Ok(rule) if rule.key == rule_key => Ok(Edit::Rule(rule_key, Some(Arc::new(rule)))),
                Ok(_) => Err(format!("the rule in the value does not have the key {key}")),
                Err(why) => {
                    warn!(%key, error = %why, "rules topic: a rule this kaos cannot read; it is not in force here");
                    Ok(Edit::Rule(rule_key, None))
                }
            }
        }
        "messageFormat" => {
            let place = (text("tenant")?.to_owned(), text("topic")?.to_owned());
            let format = match value {
                None => None,
                Some(value) => {
                    let value: Value = serde_json::from_slice(value).map_err(|e| e.to_string())?;
                    let format = value.get("messageFormat").and_then(Value::as_str);
                    Some(format.ok_or_else(|| format!("value {value} has no \"messageFormat\""))?.to_owned())
                }
            };
            Ok(Edit::Format(place, format))
        }
        other => Err(format!("unknown kind '{other}'")),
    }
}

/// Why the topic thread could not go on with a connection.
#[derive(Debug, thiserror::Error)]
enum TopicError {
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error("{api:?} for topic '{topic}': {error:?}")]
    Kafka { api: ApiKey, topic: String, error: ResponseError },
    #[error("topic '{topic}': {why}")]
    Topic { topic: String, why: String },
    #[error("record batch at offset {offset}: {why}")]
    Batch { offset: i64, why: String },
}

/// The `rules-topic` thread.
struct Follower {
    topic: String,
    bootstrap: Vec<String>,
    shared: Arc<Shared>,
    writes: Receiver<Write>,
    news: Sender<News>,
}

impl Follower {
    fn run(self) {
        let mut position = Position::default();
        let mut leader: Option<BrokerClient> = None;
        let mut said: Option<String> = None;
        while !self.shared.shutting_down.load(Ordering::Relaxed) {
            let step = match leader.as_mut() {
                Some(client) => self.step(client, &mut position),
                None => self.find_leader().map(|client| {
                    match said.take() {
                        Some(_) => info!(topic = %self.topic, broker = client.server(), "rules topic reachable again; catching up"),
                        None => info!(topic = %self.topic, broker = client.server(), "following the rules topic"),
                    }
                    leader = Some(client);
                }),
            };
            if let Err(why) = step {
                leader = None;
                let why = why.to_string();
                if said.as_deref() != Some(why.as_str()) {
                    warn!(topic = %self.topic, error = %why, "rules topic unreachable: the last rules stay in force; retrying every second");
                    said = Some(why.clone());
                }
                let _ = self.news.send(News::Unreachable(why.clone()));
                while let Ok(write) = self.writes.try_recv() {
                    let _ = self.news.send(News::NotWritten {
                        id: write.id,
                        why: format!("rules topic unreachable: {why}"),
                    });
                }
                self.shared.sleep_unless_shutting_down(RETRY_INTERVAL);
            }
        }
    }

    /// Writes what is waiting, then fetches once. A write is reported after the fetch, so that
    /// the control thread never takes it as read back by a read from before it.
    fn step(&self, client: &mut BrokerClient, position: &mut Position) -> Result<(), TopicError> {
        let mut written = Vec::new();
        let mut failed = None;
        while let Ok(write) = self.writes.try_recv() {
            match self.produce(client, &write.records) {
                Ok(base_offset) => {
                    // Appended before what this kaos has read: the log is not the one it read.
                    if base_offset < position.next_offset {
                        warn!(topic = %self.topic, base_offset, read_up_to = position.next_offset, "the rules topic is shorter than what kaos read (recreated or truncated?): reading it again from its start");
                        position.restart_at(0);
                    }
                    let last_offset = base_offset + write.records.len() as i64 - 1;
                    written.push(News::Written { id: write.id, last_offset });
                }
                Err(why) => {
                    let _ = self.news.send(News::NotWritten { id: write.id, why: why.to_string() });
                    failed = Some(why);
                    break;
                }
            }
        }
        let read = match failed {
            Some(why) => Err(why),
            None => self.fetch(client, position),
        };
        let result = read.map(|(records, high_watermark)| {
            let from_start = std::mem::take(&mut position.restarting);
            let next_offset = position.next_offset;
            let _ = self.news.send(News::Read { records, next_offset, high_watermark, from_start });
        });
        for news in written {
            let _ = self.news.send(news);
        }
        result
    }

    /// Finds the topic's leader through any broker (creating the topic if it is missing): the
    /// bootstrap servers first, then the brokers the cluster watcher knows, the unreachable last.
    fn find_leader(&self) -> Result<BrokerClient, TopicError> {
        let upstream = self.shared.upstream();
        let topology = self.shared.topology.load();
        let servers =
            dial::any_broker(&self.bootstrap, 0, &topology.brokers, |server| topology.is_unreachable(server));
        let mut failures = Vec::new();
        for server in &servers {
            match BrokerClient::connect(server, upstream, CLIENT_ID, IO_TIMEOUT) {
                Ok(mut client) => {
                    let leader = self.leader_address(&mut client)?;
                    if leader == client.server() {
                        return Ok(client);
                    }
                    return Ok(BrokerClient::connect(&leader, upstream, CLIENT_ID, IO_TIMEOUT)?);
                }
                Err(why) => failures.push(why),
            }
        }
        Err(UpstreamError::NoneAnswered(failures).into())
    }

    fn leader_address(&self, client: &mut BrokerClient) -> Result<String, TopicError> {
        let deadline = std::time::Instant::now() + LEADER_WAIT;
        let mut created = false;
        loop {
            let request = MetadataRequest::default()
                .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(self.topic_name()))]))
                .with_allow_auto_topic_creation(false);
            let metadata: MetadataResponse = client.call(ApiKey::Metadata, METADATA_VERSION, &request)?;
            let topic = metadata.topics.first().ok_or_else(|| self.topic_error("Metadata named no topic"))?;
            let error = ResponseError::try_from_code(topic.error_code);
            match error {
                Some(ResponseError::UnknownTopicOrPartition) if !created => {
                    self.create(client)?;
                    created = true;
                    continue;
                }
                Some(error) if !error.is_retriable() => {
                    return Err(TopicError::Kafka {
                        api: ApiKey::Metadata,
                        topic: self.topic.clone(),
                        error,
                    });
                }
                _ => {}
            }
            let leader = topic
                .partitions
                .iter()
                .find(|p| p.partition_index == 0 && p.error_code == 0 && p.leader_id.0 >= 0)
                .and_then(|p| metadata.brokers.iter().find(|b| b.node_id == p.leader_id));
            if let Some(broker) = leader {
                if topic.partitions.len() > 1 {
                    warn!(topic = %self.topic, partitions = topic.partitions.len(), "the rules topic has several partitions: kaos uses partition 0 only");
                }
                return Ok(format!("{}:{}", broker.host.as_str(), broker.port));
            }
            if std::time::Instant::now() > deadline {
                return Err(self.topic_error("partition 0 has no leader"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Creates the topic compacted, with one partition and the cluster's default replication.
    fn create(&self, client: &mut BrokerClient) -> Result<(), TopicError> {
        let config = |name: &'static str, value: &'static str| {
            CreatableTopicConfig::default()
                .with_name(StrBytes::from_static_str(name))
                .with_value(Some(StrBytes::from_static_str(value)))
        };
        let topic = CreatableTopic::default()
            .with_name(self.topic_name())
            .with_num_partitions(1)
            .with_replication_factor(-1)
            .with_configs(vec![config("cleanup.policy", "compact")]);
        let request = CreateTopicsRequest::default().with_topics(vec![topic]).with_timeout_ms(10_000);
        let response: CreateTopicsResponse =
            client.call(ApiKey::CreateTopics, CREATE_TOPICS_VERSION, &request)?;
        let code = response.topics.first().map_or(0, |t| t.error_code);
        match ResponseError::try_from_code(code) {
            None => {
                info!(topic = %self.topic, "created the rules topic (compacted, one partition)");
                Ok(())
            }
            // Another kaos created it first.
            Some(ResponseError::TopicAlreadyExists) => Ok(()),
            Some(error) => {
                Err(TopicError::Kafka { api: ApiKey::CreateTopics, topic: self.topic.clone(), error })
            }
        }
    }

    /// Appends `records` as one batch, acknowledged by every in-sync replica; answers the offset
    /// of the first one.
    fn produce(&self, client: &mut BrokerClient, records: &Records) -> Result<i64, TopicError> {
        let encoded = encode_batch(records, 0, unix_ms() as i64)
            .map_err(|why| TopicError::Batch { offset: -1, why })?;
        let partition = PartitionProduceData::default().with_index(0).with_records(Some(encoded.freeze()));
        let request = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(PRODUCE_TIMEOUT.as_millis() as i32)
            .with_topic_data(vec![
                TopicProduceData::default().with_name(self.topic_name()).with_partition_data(vec![partition]),
            ]);
        let response: ProduceResponse = client.call(ApiKey::Produce, PRODUCE_VERSION, &request)?;
        let partition = response
            .responses
            .first()
            .and_then(|t| t.partition_responses.first())
            .ok_or_else(|| self.topic_error("Produce answered no partition"))?;
        if let Some(error) = ResponseError::try_from_code(partition.error_code) {
            return Err(TopicError::Kafka { api: ApiKey::Produce, topic: self.topic.clone(), error });
        }
        Ok(partition.base_offset)
    }

    /// Reads what follows the position, and moves it on; answers the records and the high
    /// watermark. A log that no longer holds the position (Kafka: OFFSET_OUT_OF_RANGE; tansu: a
    /// high watermark at or below the last batch read) is read again from its start.
    fn fetch(
        &self,
        client: &mut BrokerClient,
        position: &mut Position,
    ) -> Result<(Records, i64), TopicError> {
        for _ in 0..2 {
            let partition = FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(position.next_offset)
                .with_partition_max_bytes(FETCH_MAX_BYTES);
            let request = FetchRequest::default()
                .with_max_wait_ms(FETCH_WAIT.as_millis() as i32)
                .with_min_bytes(1)
                .with_max_bytes(FETCH_MAX_BYTES)
                .with_topics(vec![
                    FetchTopic::default().with_topic(self.topic_name()).with_partitions(vec![partition]),
                ]);
            let response: FetchResponse = client.call(ApiKey::Fetch, FETCH_VERSION, &request)?;
            if let Some(error) = ResponseError::try_from_code(response.error_code) {
                return Err(TopicError::Kafka { api: ApiKey::Fetch, topic: self.topic.clone(), error });
            }
            let partition = response
                .responses
                .first()
                .and_then(|t| t.partitions.first())
                .ok_or_else(|| self.topic_error("Fetch answered no partition"))?;
            let shorter = match ResponseError::try_from_code(partition.error_code) {
                None => partition.high_watermark <= position.last_batch_base,
                Some(ResponseError::OffsetOutOfRange) => true,
                Some(error) => {
                    return Err(TopicError::Kafka { api: ApiKey::Fetch, topic: self.topic.clone(), error });
                }
            };
            if shorter && !position.restarting {
                warn!(topic = %self.topic, offset = position.next_offset, "the rules topic no longer holds what kaos read (recreated or truncated?): reading it again from its start");
                position.restart_at(partition.log_start_offset.max(0));
                continue;
            }
            let records = partition.records.clone().unwrap_or_default();
            let (records, read) = read_batches(&records, position.next_offset)?;
            if let Some(read) = read {
                position.next_offset = read.next_offset;
                position.last_batch_base = read.last_batch_base;
            }
            return Ok((records, partition.high_watermark));
        }
        Ok((Vec::new(), position.next_offset))
    }

    fn topic_name(&self) -> TopicName {
        TopicName(StrBytes::from_string(self.topic.clone()))
    }

    fn topic_error(&self, why: &str) -> TopicError {
        TopicError::Topic { topic: self.topic.clone(), why: why.to_owned() }
    }
}

/// Where the follower is in the topic.
#[derive(Debug)]
struct Position {
    /// The offset to read next.
    next_offset: i64,
    /// The base offset of the last batch read (-1: none).
    last_batch_base: i64,
    /// Reading again from the start: the next read replaces what was read before.
    restarting: bool,
}

impl Default for Position {
    fn default() -> Position {
        Position { next_offset: 0, last_batch_base: -1, restarting: false }
    }
}

impl Position {
    fn restart_at(&mut self, offset: i64) {
        *self = Position { next_offset: offset, last_batch_base: -1, restarting: true };
    }
}

/// How far some fetched batches reach.
#[derive(Debug, PartialEq, Eq)]
struct BatchesRead {
    next_offset: i64,
    last_batch_base: i64,
}

/// One uncompressed record batch (format v2) of `records`, from offset `base_offset` on.
fn encode_batch(records: &Records, base_offset: i64, timestamp: i64) -> Result<BytesMut, String> {
    let batch: Vec<Record> = records
        .iter()
        .zip(base_offset..)
        .map(|((key, value), offset)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset,
            sequence: -1,
            timestamp,
            key: Some(key.clone()),
            value: value.clone(),
            headers: Default::default(),
        })
        .collect();
    let mut encoded = BytesMut::new();
    let options = RecordEncodeOptions { version: 2, compression: Compression::None };
    RecordBatchEncoder::encode(&mut encoded, batch.iter(), &options).map_err(|e| e.to_string())?;
    Ok(encoded)
}

/// baseOffset (i64) + batchLength (i32): the bytes before `batchLength` counts.
const BATCH_HEADER: usize = 12;
/// Where a batch's attributes (i16) and lastOffsetDelta (i32) sit.
const ATTRIBUTES_AT: usize = 21;
const LAST_OFFSET_DELTA_AT: usize = 23;
/// The attribute bit of a control batch (transaction markers), which carries no rules.
const CONTROL_BATCH: i16 = 1 << 5;

/// The records at or after `offset` in a partition's fetched batches, and how far the whole
/// batches reach (`None`: no whole batch). Compaction can leave a batch with no records: its last
/// offset still moves the reader on. A batch cut short at the end (the fetch's byte limit) is
/// read next time.
fn read_batches(bytes: &Bytes, offset: i64) -> Result<(Records, Option<BatchesRead>), TopicError> {
    let mut records = Vec::new();
    let mut read: Option<BatchesRead> = None;
    let mut at = 0;
    while let Some(header) = bytes.get(at..at + LAST_OFFSET_DELTA_AT + 4) {
        let base_offset = i64::from_be_bytes(header[0..8].try_into().expect("8 bytes"));
        let length = i32::from_be_bytes(header[8..12].try_into().expect("4 bytes"));
        let Some(end) = usize::try_from(length).ok().map(|length| at + BATCH_HEADER + length) else {
            return Err(TopicError::Batch { offset: base_offset, why: format!("length {length}") });
        };
        if end > bytes.len() {
            break;
        }
        let attributes =
            i16::from_be_bytes(header[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].try_into().expect("2 bytes"));
        let last_delta = i32::from_be_bytes(
            header[LAST_OFFSET_DELTA_AT..LAST_OFFSET_DELTA_AT + 4].try_into().expect("4 bytes"),
        );
        if attributes & CONTROL_BATCH == 0 {
            let set = RecordBatchDecoder::decode(&mut bytes.slice(at..end))
                .map_err(|e| TopicError::Batch { offset: base_offset, why: e.to_string() })?;
            records.extend(
                set.records
                    .into_iter()
                    .filter(|record| record.offset >= offset)
                    .filter_map(|record| Some((record.key?, record.value))),
            );
        }
        let next_offset = base_offset + i64::from(last_delta) + 1;
        read = Some(BatchesRead { next_offset: next_offset.max(offset), last_batch_base: base_offset });
        at = end;
    }
    Ok((records, read))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(user: &str) -> Arc<Rule> {
        let body = br#"{"config":{"errors":["NOT_ENOUGH_REPLICAS"],"ttl":60000},"apiKeys":"PRODUCE"}"#;
        Arc::new(Rule::from_request("1-1", user, "broken-broker", body).unwrap())
    }

    #[test]
    fn edits_survive_the_trip_through_records() {
        let put = Edit::Rule(rule("a@b").key.clone(), Some(rule("a@b")));
        let (key, value) = record_of(&put);
        let Edit::Rule(read_key, Some(read)) = edit_of(&key, value.as_ref()).unwrap() else {
            panic!("a rule")
        };
        let Edit::Rule(_, Some(original)) = &put else { unreachable!() };
        assert_eq!(read_key, original.key);
        assert_eq!(read.body(), original.body());
        assert_eq!(read.created_unix_ms(), original.created_unix_ms(), "the age goes along");

        let (key, value) = record_of(&Edit::Rule(original.key.clone(), None));
        assert!(value.is_none(), "a delete is a tombstone");
        assert!(matches!(edit_of(&key, None), Ok(Edit::Rule(k, None)) if k == original.key));

        let format = Edit::Format(("1-1".into(), "t".into()), Some("AVRO".into()));
        let (key, value) = record_of(&format);
        assert!(
            matches!(edit_of(&key, value.as_ref()), Ok(Edit::Format(p, Some(f))) if p.1 == "t" && f == "AVRO")
        );
    }

    #[test]
    fn unreadable_records_are_skipped_and_unreadable_rules_leave_their_key_empty() {
        assert!(edit_of(b"not json", None).is_err());
        assert!(edit_of(br#"{"kind":"other"}"#, None).is_err());
        let (key, _) = record_of(&Edit::Rule(rule("u").key.clone(), None));
        let newer = Bytes::from_static(br#"{"tenant":"1-1","user":"u","feature":"broken-broker","apiKeys":"PRODUCE","config":{"fromTheFuture":1}}"#);
        assert!(matches!(edit_of(&key, Some(&newer)), Ok(Edit::Rule(_, None))));
        let other_user = Bytes::from(rule("v").entry().to_string());
        assert!(edit_of(&key, Some(&other_user)).is_err(), "a value under another rule's key");
    }

    #[test]
    fn batches_are_read_from_the_offset_on_and_a_cut_batch_waits() {
        let encode = |base: i64, keys: &[&str]| {
            let records: Records = keys.iter().map(|key| (Bytes::from(key.to_string()), None)).collect();
            encode_batch(&records, base, 0).unwrap()
        };
        let mut fetched = encode(0, &["a", "b"]);
        fetched.extend_from_slice(&encode(2, &["c"]));
        let whole = fetched.clone().freeze();
        let (records, read) = read_batches(&whole, 1).unwrap();
        assert_eq!(read, Some(BatchesRead { next_offset: 3, last_batch_base: 2 }));
        assert_eq!(records.iter().map(|(k, _)| k.as_ref()).collect::<Vec<_>>(), [b"b", b"c"]);
        let cut = whole.slice(..whole.len() - 3);
        let (records, read) = read_batches(&cut, 0).unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(read.map(|read| read.next_offset), Some(2), "the cut batch is left for the next fetch");
        assert_eq!(read_batches(&whole.slice(..20), 0).unwrap(), (Vec::new(), None));
    }
}
