//! Responses kaos writes itself, valid for the request's API version, as a broker answers a
//! request it fails: every error slot the client reads carries one error and the rest holds
//! Kafka's "nothing" values (no data, no producer id, generation or leader epoch, offsets and
//! timestamps -1). Produce and Fetch answers fail every partition the request named; the group,
//! transaction and admin APIs of `ANSWERABLE_APIS` fail the top-level code where the version has
//! one and each coordinator key, group, member, topic and partition the request named.
//!
//! kafka-protocol refuses to encode a field that a version lacks unless it holds its default, so
//! each answer sets a version's own fields only (FindCoordinator's single coordinator before v4,
//! its list after; OffsetFetch's groups from v8; AddPartitionsToTxn's transactions from v4).

use bytes::BytesMut;
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, AddPartitionsToTxnRequest, AddPartitionsToTxnResponse,
    ApiKey, BrokerId, ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, CreateTopicsRequest,
    CreateTopicsResponse, EndTxnRequest, EndTxnResponse, FetchRequest, FetchResponse, FindCoordinatorRequest,
    FindCoordinatorResponse, HeartbeatRequest, HeartbeatResponse, InitProducerIdRequest,
    InitProducerIdResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse,
    ListOffsetsRequest, ListOffsetsResponse, OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest,
    OffsetFetchResponse, ProduceRequest, ProduceResponse, ResponseHeader, SyncGroupRequest,
    SyncGroupResponse, TopicName, TxnOffsetCommitRequest, TxnOffsetCommitResponse,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use super::errors::APIS_WITH_ERRORS;
use crate::wire::codec::decode_request;
use crate::wire::{CodecError, TopicNames, encode_frame};

/// The APIs besides Produce and Fetch that `failed_answer` answers: every API whose answer
/// carries an error kaos sets, but Produce, Fetch (answered from their decoded requests) and
/// Metadata (whose topics kaos fails in the broker's own answer, see `outage::fail_topics`).
pub const ANSWERABLE_APIS: &[ApiKey] = APIS_WITH_ERRORS.split_at(3).1;

/// A Produce response failing every partition of `request` with `error`.
pub fn failed_produce(
    request: &ProduceRequest,
    version: i16,
    correlation_id: i32,
    error: i16,
) -> Result<BytesMut, CodecError> {
    let responses = request
        .topic_data
        .iter()
        .map(|topic| {
            TopicProduceResponse::default()
                .with_name(topic.name.clone())
                .with_topic_id(topic.topic_id)
                .with_partition_responses(
                    topic
                        .partition_data
                        .iter()
                        .map(|partition| failed_produce_partition(partition.index, error))
                        .collect(),
                )
        })
        .collect();
    let response = ProduceResponse::default().with_responses(responses);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let header_version = ApiKey::Produce.response_header_version(version);
    encode_frame(ApiKey::Produce, &header, header_version, &response, version)
}

/// One partition of a Produce response, failed with `error`: nothing was appended.
pub fn failed_produce_partition(index: i32, error: i16) -> PartitionProduceResponse {
    PartitionProduceResponse::default()
        .with_index(index)
        .with_error_code(error)
        .with_base_offset(-1)
        .with_log_append_time_ms(-1)
        .with_log_start_offset(-1)
}

/// A Fetch response failing every partition of `request` with `error`. A request that names no
/// partition (an incremental fetch session with nothing new) gets the error at the top level.
pub fn failed_fetch(
    request: &FetchRequest,
    version: i16,
    correlation_id: i32,
    error: i16,
) -> Result<BytesMut, CodecError> {
    let responses: Vec<_> = request
        .topics
        .iter()
        .map(|topic| {
            FetchableTopicResponse::default()
                .with_topic(topic.topic.clone())
                .with_topic_id(topic.topic_id)
                .with_partitions(
                    topic
                        .partitions
                        .iter()
                        .map(|partition| failed_fetch_partition(partition.partition, error))
                        .collect(),
                )
        })
        .collect();
    let any_partition = responses.iter().any(|t: &FetchableTopicResponse| !t.partitions.is_empty());
    let mut response = FetchResponse::default().with_responses(responses);
    if !any_partition && version >= 7 {
        response.error_code = error;
    }
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let header_version = ApiKey::Fetch.response_header_version(version);
    encode_frame(ApiKey::Fetch, &header, header_version, &response, version)
}

/// One partition of a Fetch response, failed with `error`: no records and no offsets.
pub fn failed_fetch_partition(index: i32, error: i16) -> PartitionData {
    PartitionData::default()
        .with_partition_index(index)
        .with_error_code(error)
        .with_high_watermark(-1)
        .with_last_stable_offset(-1)
        .with_log_start_offset(-1)
        .with_preferred_read_replica(BrokerId(-1))
}

/// The answer failing with `error` the request `body` (a frame after its length prefix) of `api`,
/// one of `ANSWERABLE_APIS`: a whole frame in the request's version, with its correlation id. An
/// API outside the list, a version kafka-protocol cannot decode or a malformed body is an error.
pub fn failed_answer(api: ApiKey, version: i16, body: &[u8], error: i16) -> Result<BytesMut, CodecError> {
    match api {
        ApiKey::FindCoordinator => answer(api, version, body, |request: FindCoordinatorRequest| {
            // v0-3 look up one key and answer in top-level fields; v4 batched the keys into a
            // list, one coordinator each, and left the top-level fields out.
            if version < 4 {
                return FindCoordinatorResponse::default()
                    .with_error_code(error)
                    .with_error_message(None)
                    .with_node_id(BrokerId(-1))
                    .with_port(-1);
            }
            let coordinators = request.coordinator_keys.into_iter().map(|key| {
                Coordinator::default()
                    .with_key(key)
                    .with_node_id(BrokerId(-1))
                    .with_port(-1)
                    .with_error_code(error)
                    .with_error_message(None)
            });
            FindCoordinatorResponse::default().with_coordinators(coordinators.collect())
        }),
        ApiKey::JoinGroup => answer(api, version, body, |request: JoinGroupRequest| {
            // The protocol name may be null from v7 only: a client before reads an empty one.
            let protocol_name = (version < 7).then(StrBytes::default);
            JoinGroupResponse::default()
                .with_error_code(error)
                .with_generation_id(-1)
                .with_protocol_type(None)
                .with_protocol_name(protocol_name)
                .with_member_id(request.member_id)
        }),
        // SyncGroup's protocol type and name (v5) are nullable, and null by default.
        ApiKey::SyncGroup => answer(api, version, body, |_: SyncGroupRequest| {
            SyncGroupResponse::default().with_error_code(error)
        }),
        ApiKey::Heartbeat => answer(api, version, body, |_: HeartbeatRequest| {
            HeartbeatResponse::default().with_error_code(error)
        }),
        ApiKey::LeaveGroup => answer(api, version, body, |request: LeaveGroupRequest| {
            // From v3 a request may leave with several members, each answered (none before).
            let members = request.members.into_iter().map(|member| {
                MemberResponse::default()
                    .with_member_id(member.member_id)
                    .with_group_instance_id(member.group_instance_id)
                    .with_error_code(error)
            });
            LeaveGroupResponse::default().with_error_code(error).with_members(members.collect())
        }),
        ApiKey::OffsetCommit => answer(api, version, body, |request: OffsetCommitRequest| {
            let topics = request.topics.into_iter().map(|topic| {
                let partitions = topic.partitions.iter().map(|partition| {
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(partition.partition_index)
                        .with_error_code(error)
                });
                OffsetCommitResponseTopic::default()
                    .with_name(topic.name)
                    .with_topic_id(topic.topic_id)
                    .with_partitions(partitions.collect())
            });
            OffsetCommitResponse::default().with_topics(topics.collect())
        }),
        ApiKey::OffsetFetch => answer(api, version, body, |request: OffsetFetchRequest| {
            failed_offset_fetch(request, version, error)
        }),
        ApiKey::ConsumerGroupHeartbeat => {
            answer(api, version, body, |request: ConsumerGroupHeartbeatRequest| {
                // The member keeps its epoch: a failed heartbeat neither fences nor advances it.
                ConsumerGroupHeartbeatResponse::default()
                    .with_error_code(error)
                    .with_member_id(Some(request.member_id))
                    .with_member_epoch(request.member_epoch)
                    .with_heartbeat_interval_ms(0)
                    .with_assignment(None)
            })
        }
        ApiKey::InitProducerId => answer(api, version, body, |_: InitProducerIdRequest| {
            InitProducerIdResponse::default()
                .with_error_code(error)
                .with_producer_id((-1).into())
                .with_producer_epoch(-1)
        }),
        ApiKey::AddPartitionsToTxn => answer(api, version, body, |request: AddPartitionsToTxnRequest| {
            // v4 batched transactions (brokers verifying for each other): each gets its own
            // results, and the whole request a top-level code, which v0-3 lack.
            if version < 4 {
                return AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(
                    failed_txn_topics(&request.v3_and_below_topics, error),
                );
            }
            let transactions = request.transactions.iter().map(|transaction| {
                AddPartitionsToTxnResult::default()
                    .with_transactional_id(transaction.transactional_id.clone())
                    .with_topic_results(failed_txn_topics(&transaction.topics, error))
            });
            AddPartitionsToTxnResponse::default()
                .with_error_code(error)
                .with_results_by_transaction(transactions.collect())
        }),
        ApiKey::AddOffsetsToTxn => answer(api, version, body, |_: AddOffsetsToTxnRequest| {
            AddOffsetsToTxnResponse::default().with_error_code(error)
        }),
        // EndTxn's producer id and epoch (v5) default to -1, no producer.
        ApiKey::EndTxn => {
            answer(api, version, body, |_: EndTxnRequest| EndTxnResponse::default().with_error_code(error))
        }
        ApiKey::TxnOffsetCommit => answer(api, version, body, |request: TxnOffsetCommitRequest| {
            let topics = request.topics.into_iter().map(|topic| {
                let partitions = topic.partitions.iter().map(|partition| {
                    TxnOffsetCommitResponsePartition::default()
                        .with_partition_index(partition.partition_index)
                        .with_error_code(error)
                });
                TxnOffsetCommitResponseTopic::default()
                    .with_name(topic.name)
                    .with_partitions(partitions.collect())
            });
            TxnOffsetCommitResponse::default().with_topics(topics.collect())
        }),
        ApiKey::ListOffsets => answer(api, version, body, |request: ListOffsetsRequest| {
            let topics = request.topics.into_iter().map(|topic| {
                let partitions = topic.partitions.iter().map(|partition| {
                    ListOffsetsPartitionResponse::default()
                        .with_partition_index(partition.partition_index)
                        .with_error_code(error)
                        .with_timestamp(-1)
                        .with_offset(-1)
                        .with_leader_epoch(-1)
                });
                ListOffsetsTopicResponse::default()
                    .with_name(topic.name)
                    .with_partitions(partitions.collect())
            });
            ListOffsetsResponse::default().with_topics(topics.collect())
        }),
        ApiKey::CreateTopics => answer(api, version, body, |request: CreateTopicsRequest| {
            // Partitions, replication factor and configs are answered from v5; the configs stay
            // an empty list (no topic was created to describe), written only where they exist.
            let topics = request.topics.into_iter().map(|topic| {
                CreatableTopicResult::default()
                    .with_name(topic.name)
                    .with_error_code(error)
                    .with_error_message(None)
                    .with_num_partitions(-1)
                    .with_replication_factor(-1)
                    .with_configs(Some(Vec::new()))
            });
            CreateTopicsResponse::default().with_topics(topics.collect())
        }),
        _ => Err(CodecError::UnsupportedVersion { api, version }),
    }
}

/// The topic-partitions the request `body` of `api`, one of `ANSWERABLE_APIS`, names, for topic
/// filters: each (topic, partition) a commit, fetch, offset lookup or transaction names (all
/// groups of an OffsetFetch), (topic, -1) for a whole topic CreateTopics creates, none for the
/// APIs that name no topic (their body is not decoded). Topics a request gives only by an id
/// that `names` cannot name are left out.
pub fn requested_topics(
    api: ApiKey,
    version: i16,
    body: &[u8],
    names: &dyn TopicNames,
) -> Result<Vec<(String, i32)>, CodecError> {
    let by_name = |name: &TopicName| Some(name.0.to_string());
    // Requests whose topics carry a name and partitions with a `partition_index`.
    macro_rules! named_partitions {
        ($request:ty) => {{
            let request: $request = decode_request(api, version, body)?.1;
            let topics = request.topics.iter();
            topics
                .flat_map(|t| {
                    each_partition(by_name(&t.name), t.partitions.iter().map(|p| p.partition_index))
                })
                .collect()
        }};
    }
    let pairs = match api {
        ApiKey::OffsetCommit => {
            let request: OffsetCommitRequest = decode_request(api, version, body)?.1;
            // Topic ids come with OffsetCommit v10, which kafka-protocol does not decode yet.
            request
                .topics
                .iter()
                .flat_map(|t| {
                    let name = names.name_of(&t.name, t.topic_id.as_bytes());
                    each_partition(name, t.partitions.iter().map(|p| p.partition_index))
                })
                .collect()
        }
        ApiKey::TxnOffsetCommit => named_partitions!(TxnOffsetCommitRequest),
        ApiKey::ListOffsets => named_partitions!(ListOffsetsRequest),
        ApiKey::AddPartitionsToTxn => {
            // A version fills one of the two lists; the other decodes empty.
            let request: AddPartitionsToTxnRequest = decode_request(api, version, body)?.1;
            let batched = request.transactions.iter().flat_map(|transaction| &transaction.topics);
            let topics = request.v3_and_below_topics.iter().chain(batched);
            topics.flat_map(|t| each_partition(by_name(&t.name), t.partitions.iter().copied())).collect()
        }
        ApiKey::OffsetFetch => {
            // v1-7 name one group's topics, v8+ several groups'; a null list (all topics) names
            // none. Topic ids come with v10, which kafka-protocol does not decode yet.
            let request: OffsetFetchRequest = decode_request(api, version, body)?.1;
            let single = request
                .topics
                .iter()
                .flatten()
                .flat_map(|t| each_partition(by_name(&t.name), t.partition_indexes.iter().copied()));
            let grouped =
                request.groups.iter().flat_map(|group| group.topics.iter().flatten()).flat_map(|t| {
                    let name = names.name_of(&t.name, t.topic_id.as_bytes());
                    each_partition(name, t.partition_indexes.iter().copied())
                });
            single.chain(grouped).collect()
        }
        ApiKey::CreateTopics => {
            let request: CreateTopicsRequest = decode_request(api, version, body)?.1;
            request.topics.iter().map(|topic| (topic.name.0.to_string(), -1)).collect()
        }
        api if ANSWERABLE_APIS.contains(&api) => Vec::new(),
        _ => return Err(CodecError::UnsupportedVersion { api, version }),
    };
    Ok(pairs)
}

/// (topic, partition) for each partition of a topic, none for a topic without a name.
fn each_partition(name: Option<String>, partitions: impl Iterator<Item = i32>) -> Vec<(String, i32)> {
    let Some(name) = name else { return Vec::new() };
    partitions.map(|partition| (name.clone(), partition)).collect()
}

/// Decodes the request `body`, lets `build` make the answer, and encodes it as a frame with the
/// request's correlation id.
fn answer<Request: Decodable, Response: Encodable>(
    api: ApiKey,
    version: i16,
    body: &[u8],
    build: impl FnOnce(Request) -> Response,
) -> Result<BytesMut, CodecError> {
    let (header, request) = decode_request::<Request>(api, version, body)?;
    let response = build(request);
    let header = ResponseHeader::default().with_correlation_id(header.correlation_id);
    encode_frame(api, &header, api.response_header_version(version), &response, version)
}

/// AddPartitionsToTxn's results for `topics`, every partition failed with `error`.
fn failed_txn_topics(topics: &[AddPartitionsToTxnTopic], error: i16) -> Vec<AddPartitionsToTxnTopicResult> {
    let topic = |topic: &AddPartitionsToTxnTopic| {
        let partitions = topic.partitions.iter().map(|&partition| {
            AddPartitionsToTxnPartitionResult::default()
                .with_partition_index(partition)
                .with_partition_error_code(error)
        });
        AddPartitionsToTxnTopicResult::default()
            .with_name(topic.name.clone())
            .with_results_by_partition(partitions.collect())
    };
    topics.iter().map(topic).collect()
}

/// OffsetFetch failed with `error`: each requested partition carries it with no committed offset.
/// v2-7 also carry it at the top level, v8+ (several groups per request) per group; a group whose
/// request asked for all its topics (a null list) gets that group error alone, as no partition
/// was named. v1 has per-partition errors only.
fn failed_offset_fetch(request: OffsetFetchRequest, version: i16, error: i16) -> OffsetFetchResponse {
    if version >= 8 {
        let groups = request.groups.into_iter().map(|group| {
            let topics = group.topics.into_iter().flatten().map(|topic| {
                let partitions = topic.partition_indexes.iter().map(|&partition| {
                    OffsetFetchResponsePartitions::default()
                        .with_partition_index(partition)
                        .with_committed_offset(-1)
                        .with_committed_leader_epoch(-1)
                        .with_error_code(error)
                });
                OffsetFetchResponseTopics::default()
                    .with_name(topic.name)
                    .with_topic_id(topic.topic_id)
                    .with_partitions(partitions.collect())
            });
            OffsetFetchResponseGroup::default()
                .with_group_id(group.group_id)
                .with_topics(topics.collect())
                .with_error_code(error)
        });
        return OffsetFetchResponse::default().with_groups(groups.collect());
    }
    let topics = request.topics.into_iter().flatten().map(|topic| {
        let partitions = topic.partition_indexes.iter().map(|&partition| {
            OffsetFetchResponsePartition::default()
                .with_partition_index(partition)
                .with_committed_offset(-1)
                .with_committed_leader_epoch(-1)
                .with_error_code(error)
        });
        OffsetFetchResponseTopic::default().with_name(topic.name).with_partitions(partitions.collect())
    });
    let top_level = if version >= 2 { error } else { 0 };
    OffsetFetchResponse::default().with_topics(topics.collect()).with_error_code(top_level)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTransaction;
    use kafka_protocol::messages::create_topics_request::CreatableTopic;
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
    use kafka_protocol::messages::leave_group_request::MemberIdentity;
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    use kafka_protocol::messages::offset_commit_request::{
        OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    };
    use kafka_protocol::messages::offset_fetch_request::{
        OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
    };
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
    use kafka_protocol::messages::txn_offset_commit_request::{
        TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
    };
    use kafka_protocol::messages::{GroupId, ProducerId, RequestHeader, TransactionalId};

    /// COORDINATOR_NOT_AVAILABLE, the error the matrix fails requests with.
    const ERROR: i16 = 15;
    /// The topics a request names where its API names topics, each with `PARTITIONS`.
    const TOPICS: [&str; 2] = ["orders", "payments"];
    const PARTITIONS: [i32; 2] = [0, 1];

    fn decode<T: Decodable>(api: ApiKey, version: i16, frame: BytesMut) -> T {
        let mut body = frame.freeze().slice(4..);
        let header = ResponseHeader::decode(&mut body, api.response_header_version(version)).unwrap();
        assert_eq!(header.correlation_id, 9);
        let message = T::decode(&mut body, version).unwrap();
        assert!(body.is_empty());
        message
    }

    fn text(text: &'static str) -> StrBytes {
        StrBytes::from_static_str(text)
    }

    fn no_ids(_: &[u8; 16]) -> Option<String> {
        None
    }

    fn request_header(api: ApiKey, version: i16) -> RequestHeader {
        RequestHeader::default()
            .with_request_api_key(api as i16)
            .with_request_api_version(version)
            .with_correlation_id(9)
            .with_client_id(Some(text("kaos-test")))
    }

    /// `topic(name, partitions)` for each of `TOPICS`.
    fn topics<T>(topic: impl Fn(TopicName, Vec<i32>) -> T) -> Vec<T> {
        TOPICS.iter().map(|&name| topic(TopicName(text(name)), PARTITIONS.to_vec())).collect()
    }

    /// Each (topic, partition) of `TOPICS` and `PARTITIONS`, as `requested_topics` reports them.
    fn each_named_partition() -> Vec<(String, i32)> {
        TOPICS.iter().flat_map(|&name| PARTITIONS.map(|p| (name.to_owned(), p))).collect()
    }

    /// A frame of `api` as a client sends it in `version`: group "group-a", member "member-1",
    /// transaction "txn-1", `TOPICS` where the API names topics. An error for a version
    /// kafka-protocol cannot encode (and so cannot decode either).
    fn request(api: ApiKey, version: i16) -> Result<BytesMut, CodecError> {
        fn frame<T: Encodable>(api: ApiKey, version: i16, message: T) -> Result<BytesMut, CodecError> {
            let header = request_header(api, version);
            encode_frame(api, &header, api.request_header_version(version), &message, version)
        }
        let (group, member, txn) =
            (GroupId(text("group-a")), text("member-1"), TransactionalId(text("txn-1")));
        let txn_topics = || {
            topics(|name, partitions| {
                AddPartitionsToTxnTopic::default().with_name(name).with_partitions(partitions)
            })
        };
        match api {
            ApiKey::FindCoordinator if version < 4 => {
                frame(api, version, FindCoordinatorRequest::default().with_key(group.0))
            }
            ApiKey::FindCoordinator => {
                let keys = vec![group.0, text("group-b")];
                frame(api, version, FindCoordinatorRequest::default().with_coordinator_keys(keys))
            }
            ApiKey::JoinGroup => {
                let range = JoinGroupRequestProtocol::default()
                    .with_name(text("range"))
                    .with_metadata(Bytes::from_static(b"m"));
                let mut request = JoinGroupRequest::default()
                    .with_group_id(group)
                    .with_session_timeout_ms(45_000)
                    .with_member_id(member)
                    .with_protocol_type(text("consumer"))
                    .with_protocols(vec![range]);
                if version >= 1 {
                    request.rebalance_timeout_ms = 300_000;
                }
                frame(api, version, request)
            }
            ApiKey::SyncGroup => {
                let assignment = SyncGroupRequestAssignment::default()
                    .with_member_id(member.clone())
                    .with_assignment(Bytes::from_static(b"a"));
                let mut request = SyncGroupRequest::default()
                    .with_group_id(group)
                    .with_generation_id(3)
                    .with_member_id(member)
                    .with_assignments(vec![assignment]);
                if version >= 5 {
                    request.protocol_type = Some(text("consumer"));
                    request.protocol_name = Some(text("range"));
                }
                frame(api, version, request)
            }
            ApiKey::Heartbeat => frame(
                api,
                version,
                HeartbeatRequest::default().with_group_id(group).with_generation_id(3).with_member_id(member),
            ),
            ApiKey::LeaveGroup if version < 3 => {
                frame(api, version, LeaveGroupRequest::default().with_group_id(group).with_member_id(member))
            }
            ApiKey::LeaveGroup => {
                let members =
                    [member, text("member-2")].map(|id| MemberIdentity::default().with_member_id(id));
                frame(
                    api,
                    version,
                    LeaveGroupRequest::default().with_group_id(group).with_members(members.to_vec()),
                )
            }
            ApiKey::OffsetCommit => {
                let topics = topics(|name, partitions| {
                    let partition = |p| {
                        OffsetCommitRequestPartition::default()
                            .with_partition_index(p)
                            .with_committed_offset(42)
                    };
                    OffsetCommitRequestTopic::default()
                        .with_name(name)
                        .with_partitions(partitions.into_iter().map(partition).collect())
                });
                let request = OffsetCommitRequest::default()
                    .with_group_id(group)
                    .with_generation_id_or_member_epoch(3)
                    .with_member_id(member)
                    .with_topics(topics);
                frame(api, version, request)
            }
            ApiKey::OffsetFetch if version < 8 => {
                let topics = topics(|name, partitions| {
                    OffsetFetchRequestTopic::default().with_name(name).with_partition_indexes(partitions)
                });
                frame(
                    api,
                    version,
                    OffsetFetchRequest::default().with_group_id(group).with_topics(Some(topics)),
                )
            }
            ApiKey::OffsetFetch => {
                // The second group asks for all its topics (a null list).
                let topics = topics(|name, partitions| {
                    OffsetFetchRequestTopics::default().with_name(name).with_partition_indexes(partitions)
                });
                let groups = vec![
                    OffsetFetchRequestGroup::default().with_group_id(group).with_topics(Some(topics)),
                    OffsetFetchRequestGroup::default()
                        .with_group_id(GroupId(text("group-b")))
                        .with_topics(None),
                ];
                frame(api, version, OffsetFetchRequest::default().with_groups(groups))
            }
            ApiKey::ConsumerGroupHeartbeat => {
                let request = ConsumerGroupHeartbeatRequest::default()
                    .with_group_id(group)
                    .with_member_id(member)
                    .with_member_epoch(5)
                    .with_rebalance_timeout_ms(300_000)
                    .with_subscribed_topic_names(Some(topics(|name, _| name)));
                frame(api, version, request)
            }
            ApiKey::InitProducerId => frame(
                api,
                version,
                InitProducerIdRequest::default()
                    .with_transactional_id(Some(txn))
                    .with_transaction_timeout_ms(60_000),
            ),
            ApiKey::AddPartitionsToTxn if version < 4 => {
                let request = AddPartitionsToTxnRequest::default()
                    .with_v3_and_below_transactional_id(txn)
                    .with_v3_and_below_producer_id(ProducerId(1000))
                    .with_v3_and_below_topics(txn_topics());
                frame(api, version, request)
            }
            ApiKey::AddPartitionsToTxn => {
                let transactions = [txn, TransactionalId(text("txn-2"))].map(|id| {
                    AddPartitionsToTxnTransaction::default()
                        .with_transactional_id(id)
                        .with_producer_id(ProducerId(1000))
                        .with_topics(txn_topics())
                });
                frame(
                    api,
                    version,
                    AddPartitionsToTxnRequest::default().with_transactions(transactions.to_vec()),
                )
            }
            ApiKey::AddOffsetsToTxn => {
                let request = AddOffsetsToTxnRequest::default()
                    .with_transactional_id(txn)
                    .with_producer_id(ProducerId(1000))
                    .with_group_id(group);
                frame(api, version, request)
            }
            ApiKey::EndTxn => {
                let request = EndTxnRequest::default()
                    .with_transactional_id(txn)
                    .with_producer_id(ProducerId(1000))
                    .with_committed(true);
                frame(api, version, request)
            }
            ApiKey::TxnOffsetCommit => {
                let topics = topics(|name, partitions| {
                    let partition = |p| {
                        TxnOffsetCommitRequestPartition::default()
                            .with_partition_index(p)
                            .with_committed_offset(42)
                    };
                    TxnOffsetCommitRequestTopic::default()
                        .with_name(name)
                        .with_partitions(partitions.into_iter().map(partition).collect())
                });
                let mut request = TxnOffsetCommitRequest::default()
                    .with_transactional_id(txn)
                    .with_group_id(group)
                    .with_producer_id(ProducerId(1000))
                    .with_topics(topics);
                if version >= 3 {
                    (request.generation_id, request.member_id) = (3, member);
                }
                frame(api, version, request)
            }
            ApiKey::ListOffsets => {
                let topics = topics(|name, partitions| {
                    let partition =
                        |p| ListOffsetsPartition::default().with_partition_index(p).with_timestamp(-1);
                    ListOffsetsTopic::default()
                        .with_name(name)
                        .with_partitions(partitions.into_iter().map(partition).collect())
                });
                frame(
                    api,
                    version,
                    ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(topics),
                )
            }
            ApiKey::CreateTopics => {
                let topics = topics(|name, _| {
                    CreatableTopic::default()
                        .with_name(name)
                        .with_num_partitions(2)
                        .with_replication_factor(3)
                });
                frame(api, version, CreateTopicsRequest::default().with_topics(topics))
            }
            _ => unreachable!("{api:?} is not answerable"),
        }
    }

    /// What an answer says: its error codes (top level first) and the topic-partitions it answers
    /// ((topic, -1) for a whole topic).
    #[derive(Debug, Default)]
    struct Answered {
        errors: Vec<i16>,
        partitions: Vec<(String, i32)>,
    }

    impl Answered {
        fn top(error: i16) -> Self {
            Answered { errors: vec![error], partitions: Vec::new() }
        }

        fn partition(&mut self, topic: &TopicName, index: i32, error: i16) {
            self.partitions.push((topic.0.to_string(), index));
            self.errors.push(error);
        }
    }

    /// Decodes the answer to `request(api, version)` and checks the "nothing" values in it.
    fn answered(api: ApiKey, version: i16, answer: BytesMut) -> Answered {
        match api {
            ApiKey::FindCoordinator => {
                let r: FindCoordinatorResponse = decode(api, version, answer);
                if version < 4 {
                    assert_eq!((r.node_id, r.port), (BrokerId(-1), -1));
                    return Answered::top(r.error_code);
                }
                let keys: Vec<_> = r.coordinators.iter().map(|c| c.key.as_str()).collect();
                assert_eq!(keys, ["group-a", "group-b"]);
                assert!(r.coordinators.iter().all(|c| c.node_id == BrokerId(-1) && c.port == -1));
                Answered {
                    errors: r.coordinators.iter().map(|c| c.error_code).collect(),
                    ..Answered::default()
                }
            }
            ApiKey::JoinGroup => {
                let r: JoinGroupResponse = decode(api, version, answer);
                assert_eq!((r.generation_id, r.member_id.as_str(), r.members.len()), (-1, "member-1", 0));
                // Non-nullable before v7: a null one would fail the client's parse.
                assert!(version >= 7 || r.protocol_name.is_some());
                Answered::top(r.error_code)
            }
            ApiKey::SyncGroup => {
                let r: SyncGroupResponse = decode(api, version, answer);
                assert!(r.assignment.is_empty());
                Answered::top(r.error_code)
            }
            ApiKey::Heartbeat => Answered::top(decode::<HeartbeatResponse>(api, version, answer).error_code),
            ApiKey::LeaveGroup => {
                let r: LeaveGroupResponse = decode(api, version, answer);
                let members: Vec<_> = r.members.iter().map(|m| m.member_id.as_str()).collect();
                assert_eq!(members, if version < 3 { vec![] } else { vec!["member-1", "member-2"] });
                let errors = [r.error_code].into_iter().chain(r.members.iter().map(|m| m.error_code));
                Answered { errors: errors.collect(), ..Answered::default() }
            }
            ApiKey::OffsetCommit => {
                let r: OffsetCommitResponse = decode(api, version, answer);
                let mut answered = Answered::default();
                for t in &r.topics {
                    t.partitions
                        .iter()
                        .for_each(|p| answered.partition(&t.name, p.partition_index, p.error_code));
                }
                answered
            }
            ApiKey::OffsetFetch => {
                let r: OffsetFetchResponse = decode(api, version, answer);
                let mut answered = Answered::default();
                if (2..8).contains(&version) {
                    answered.errors.push(r.error_code);
                }
                for t in &r.topics {
                    for p in &t.partitions {
                        assert_eq!((p.committed_offset, p.committed_leader_epoch), (-1, -1));
                        answered.partition(&t.name, p.partition_index, p.error_code);
                    }
                }
                for g in &r.groups {
                    answered.errors.push(g.error_code);
                    for t in &g.topics {
                        for p in &t.partitions {
                            assert_eq!((p.committed_offset, p.committed_leader_epoch), (-1, -1));
                            answered.partition(&t.name, p.partition_index, p.error_code);
                        }
                    }
                }
                let groups: Vec<_> = r.groups.iter().map(|g| g.group_id.as_str()).collect();
                assert_eq!(groups, if version < 8 { vec![] } else { vec!["group-a", "group-b"] });
                answered
            }
            ApiKey::ConsumerGroupHeartbeat => {
                let r: ConsumerGroupHeartbeatResponse = decode(api, version, answer);
                assert_eq!((r.member_id.as_deref(), r.member_epoch), (Some("member-1"), 5));
                assert_eq!((r.heartbeat_interval_ms, r.assignment), (0, None));
                Answered::top(r.error_code)
            }
            ApiKey::InitProducerId => {
                let r: InitProducerIdResponse = decode(api, version, answer);
                assert_eq!((r.producer_id, r.producer_epoch), (ProducerId(-1), -1));
                Answered::top(r.error_code)
            }
            ApiKey::AddPartitionsToTxn => {
                let r: AddPartitionsToTxnResponse = decode(api, version, answer);
                let mut answered = Answered::default();
                if version >= 4 {
                    answered.errors.push(r.error_code);
                }
                let ids: Vec<_> =
                    r.results_by_transaction.iter().map(|t| t.transactional_id.as_str()).collect();
                assert_eq!(ids, if version < 4 { vec![] } else { vec!["txn-1", "txn-2"] });
                let batched = r.results_by_transaction.iter().flat_map(|t| &t.topic_results);
                for t in r.results_by_topic_v3_and_below.iter().chain(batched) {
                    for p in &t.results_by_partition {
                        answered.partition(&t.name, p.partition_index, p.partition_error_code);
                    }
                }
                answered
            }
            ApiKey::AddOffsetsToTxn => {
                Answered::top(decode::<AddOffsetsToTxnResponse>(api, version, answer).error_code)
            }
            ApiKey::EndTxn => {
                let r: EndTxnResponse = decode(api, version, answer);
                assert_eq!((r.producer_id, r.producer_epoch), (ProducerId(-1), -1));
                Answered::top(r.error_code)
            }
            ApiKey::TxnOffsetCommit => {
                let r: TxnOffsetCommitResponse = decode(api, version, answer);
                let mut answered = Answered::default();
                for t in &r.topics {
                    t.partitions
                        .iter()
                        .for_each(|p| answered.partition(&t.name, p.partition_index, p.error_code));
                }
                answered
            }
            ApiKey::ListOffsets => {
                let r: ListOffsetsResponse = decode(api, version, answer);
                let mut answered = Answered::default();
                for t in &r.topics {
                    for p in &t.partitions {
                        assert_eq!((p.offset, p.timestamp, p.leader_epoch), (-1, -1, -1));
                        answered.partition(&t.name, p.partition_index, p.error_code);
                    }
                }
                answered
            }
            ApiKey::CreateTopics => {
                let r: CreateTopicsResponse = decode(api, version, answer);
                let mut answered = Answered::default();
                for t in &r.topics {
                    if version >= 5 {
                        assert_eq!((t.num_partitions, t.replication_factor), (-1, -1));
                        assert_eq!(t.configs.as_deref(), Some(&[][..]));
                    }
                    answered.partition(&t.name, -1, t.error_code);
                }
                answered
            }
            _ => unreachable!("{api:?} is not answerable"),
        }
    }

    /// The topic-partitions `request(api, version)` names, and so its answer answers.
    fn named_partitions(api: ApiKey, version: i16) -> Vec<(String, i32)> {
        match api {
            ApiKey::OffsetCommit | ApiKey::OffsetFetch | ApiKey::TxnOffsetCommit | ApiKey::ListOffsets => {
                each_named_partition()
            }
            // Two transactions, each naming every partition.
            ApiKey::AddPartitionsToTxn if version >= 4 => {
                [each_named_partition(), each_named_partition()].concat()
            }
            ApiKey::AddPartitionsToTxn => each_named_partition(),
            ApiKey::CreateTopics => TOPICS.map(|name| (name.to_owned(), -1)).to_vec(),
            _ => Vec::new(),
        }
    }

    /// How many error codes the answer to `request(api, version)` carries.
    fn error_slots(api: ApiKey, version: i16) -> usize {
        let partitions = named_partitions(api, version).len();
        match api {
            // Two coordinator keys.
            ApiKey::FindCoordinator if version >= 4 => 2,
            // The top level and two members.
            ApiKey::LeaveGroup if version >= 3 => 3,
            ApiKey::OffsetFetch if version == 1 => partitions,
            // The top level, or one per group (the second asks for all topics, no partition).
            ApiKey::OffsetFetch if version < 8 => 1 + partitions,
            ApiKey::OffsetFetch => 2 + partitions,
            ApiKey::AddPartitionsToTxn if version < 4 => partitions,
            ApiKey::AddPartitionsToTxn => 1 + partitions,
            ApiKey::OffsetCommit | ApiKey::TxnOffsetCommit | ApiKey::ListOffsets | ApiKey::CreateTopics => {
                partitions
            }
            _ => 1,
        }
    }

    #[test]
    fn every_answer_fails_every_error_slot_in_every_version() {
        let mut undecodable = Vec::new();
        for &api in ANSWERABLE_APIS {
            let range = api.valid_versions();
            for version in range.min..=range.max {
                let case = format!("{api:?} v{version}");
                let Ok(frame) = request(api, version) else {
                    // kafka-protocol lists the version (its response goes that far) but its
                    // request cannot be encoded, nor decoded: kaos cannot answer it.
                    let mut body = BytesMut::new();
                    request_header(api, version)
                        .encode(&mut body, api.request_header_version(version))
                        .unwrap();
                    assert!(failed_answer(api, version, &body, ERROR).is_err(), "{case}");
                    undecodable.push((api, version));
                    continue;
                };
                let body = &frame[4..];
                let answer =
                    failed_answer(api, version, body, ERROR).unwrap_or_else(|e| panic!("{case}: {e}"));
                let answered = answered(api, version, answer);
                assert_eq!(answered.errors.len(), error_slots(api, version), "{case}: {answered:?}");
                assert!(answered.errors.iter().all(|&e| e == ERROR), "{case}: {answered:?}");
                let named = named_partitions(api, version);
                assert_eq!(answered.partitions, named, "{case}");
                assert_eq!(requested_topics(api, version, body, &no_ids), Ok(named.clone()), "{case}");
                // A request needs its every byte: one short is malformed.
                let truncated = &body[..body.len() - 1];
                assert!(failed_answer(api, version, truncated, ERROR).is_err(), "{case}");
                if !named.is_empty() {
                    assert!(requested_topics(api, version, truncated, &no_ids).is_err(), "{case}");
                }
            }
        }
        // Newer than kafka-protocol 0.18 decodes: test them once it does.
        let expected = [(ApiKey::OffsetCommit, 10), (ApiKey::OffsetFetch, 10), (ApiKey::InitProducerId, 6)];
        assert_eq!(undecodable, expected);
    }

    #[test]
    fn an_offset_fetch_for_all_topics_gets_the_top_level_error_alone() {
        let api = ApiKey::OffsetFetch;
        for version in 2..=7 {
            let request =
                OffsetFetchRequest::default().with_group_id(GroupId(text("group-a"))).with_topics(None);
            let header = request_header(api, version);
            let frame =
                encode_frame(api, &header, api.request_header_version(version), &request, version).unwrap();
            let answer: OffsetFetchResponse =
                decode(api, version, failed_answer(api, version, &frame[4..], 16).unwrap());
            assert_eq!((answer.error_code, answer.topics.len()), (16, 0), "v{version}");
            assert_eq!(requested_topics(api, version, &frame[4..], &no_ids), Ok(Vec::new()));
        }
    }

    #[test]
    fn other_apis_and_malformed_bodies_are_refused() {
        let frame = request(ApiKey::Heartbeat, 4).unwrap();
        let body = &frame[4..];
        assert!(failed_answer(ApiKey::Metadata, 4, body, ERROR).is_err());
        assert!(requested_topics(ApiKey::Metadata, 4, body, &no_ids).is_err());
        assert_eq!(
            failed_answer(ApiKey::Heartbeat, 5, body, ERROR),
            Err(CodecError::UnsupportedVersion { api: ApiKey::Heartbeat, version: 5 })
        );
        assert!(failed_answer(ApiKey::Heartbeat, 4, &[], ERROR).is_err());
        // A forged array length: two billion topics in a few bytes.
        let mut forged = BytesMut::new();
        let api = ApiKey::ListOffsets;
        request_header(api, 3).encode(&mut forged, api.request_header_version(3)).unwrap();
        forged.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0, 0x7f, 0xff, 0xff, 0xff]);
        assert!(failed_answer(api, 3, &forged, ERROR).is_err());
        assert!(requested_topics(api, 3, &forged, &no_ids).is_err());
    }

    #[test]
    fn failed_produce_is_valid_in_every_version() {
        let partitions =
            (0..3).map(|i| PartitionProduceData::default().with_index(i).with_records(Some(Bytes::new())));
        let topic = TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str("orders")))
            .with_partition_data(partitions.collect());
        let request = ProduceRequest::default().with_acks(-1).with_topic_data(vec![topic]);
        for version in 3..=13 {
            let mut request = request.clone();
            if version >= 13 {
                request.topic_data[0].name = TopicName::default();
            }
            let frame = failed_produce(&request, version, 9, 6).unwrap();
            let response: ProduceResponse = decode(ApiKey::Produce, version, frame);
            let partitions = &response.responses[0].partition_responses;
            assert_eq!(partitions.len(), 3, "v{version}");
            assert!(partitions.iter().all(|p| p.error_code == 6 && p.base_offset == -1));
        }
    }

    #[test]
    fn failed_fetch_is_valid_in_every_version() {
        let partition = FetchPartition::default().with_partition(2);
        let topic = FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_static_str("orders")))
            .with_partitions(vec![partition]);
        let request = FetchRequest::default().with_topics(vec![topic]);
        for version in 4..=17 {
            let frame = failed_fetch(&request, version, 9, 5).unwrap();
            let response: FetchResponse = decode(ApiKey::Fetch, version, frame);
            assert_eq!(response.responses[0].partitions[0].error_code, 5, "v{version}");
            assert_eq!(response.responses[0].partitions[0].partition_index, 2);
        }
        let empty = FetchRequest::default();
        let response: FetchResponse = decode(ApiKey::Fetch, 12, failed_fetch(&empty, 12, 9, 5).unwrap());
        assert_eq!(response.error_code, 5);
    }
}
