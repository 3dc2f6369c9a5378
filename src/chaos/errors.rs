//! Kafka error names as the REST API takes them (`NOT_LEADER_OR_FOLLOWER`), mapped to their codes
//! from kafka-protocol's complete list, and which of them Kafka answers each API with.

use std::borrow::Cow;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::ApiKey;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::config::ConfigError;
use super::rule::api_key_name;

/// The codes kafka-protocol knows, from UNKNOWN_SERVER_ERROR (-1) up.
const CODES: std::ops::RangeInclusive<i16> = -1..=255;

/// A Kafka error, written by name in rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KafkaError(pub i16);

impl KafkaError {
    /// The error called `name` (such as `BROKER_NOT_AVAILABLE`); NONE is not an error.
    pub fn named(name: &str) -> Option<KafkaError> {
        CODES.filter(|&code| code != 0).find(|&code| name_of(code).as_deref() == Some(name)).map(KafkaError)
    }

    /// Every error name Kafka defines, for the rule schema.
    pub fn all_names() -> Vec<String> {
        CODES.filter(|&code| code != 0).filter_map(name_of).collect()
    }
}

impl Serialize for KafkaError {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&name_of(self.0).unwrap_or_else(|| self.0.to_string()))
    }
}

impl<'de> Deserialize<'de> for KafkaError {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        KafkaError::named(&name).ok_or_else(|| {
            serde::de::Error::custom(format!("unknown Kafka error name '{name}' (NONE is not an error)"))
        })
    }
}

impl JsonSchema for KafkaError {
    fn schema_name() -> Cow<'static, str> {
        "KafkaError".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": "string", "enum": KafkaError::all_names() })
    }
}

/// The APIs whose answers carry an error kaos can set, in `GET /features` order: broken-broker
/// and leader-election act on these. Produce, Fetch and Metadata come first: the others are
/// `respond::ANSWERABLE_APIS`.
pub const APIS_WITH_ERRORS: &[ApiKey] = &[
    ApiKey::Produce,
    ApiKey::Fetch,
    ApiKey::Metadata,
    ApiKey::ListOffsets,
    ApiKey::CreateTopics,
    ApiKey::FindCoordinator,
    ApiKey::JoinGroup,
    ApiKey::SyncGroup,
    ApiKey::Heartbeat,
    ApiKey::LeaveGroup,
    ApiKey::OffsetCommit,
    ApiKey::OffsetFetch,
    ApiKey::ConsumerGroupHeartbeat,
    ApiKey::InitProducerId,
    ApiKey::AddPartitionsToTxn,
    ApiKey::AddOffsetsToTxn,
    ApiKey::EndTxn,
    ApiKey::TxnOffsetCommit,
];

/// What a broker answers when something unexpected fails a request, on any API.
const ANY_API: &[&str] = &["UNKNOWN_SERVER_ERROR"];

/// What a group or transaction coordinator answers while it moves, loads or is away.
const COORDINATOR: &[&str] =
    &["COORDINATOR_LOAD_IN_PROGRESS", "COORDINATOR_NOT_AVAILABLE", "NOT_COORDINATOR"];

/// The errors Kafka answers `api` with, by name: the "possible error codes" of Kafka's
/// `*Response` classes, completed with what brokers send and clients handle (CONCURRENT_TRANSACTIONS
/// on the transaction APIs, the coordinator errors on the group APIs). Produce also takes
/// BROKER_NOT_AVAILABLE and OFFSET_OUT_OF_RANGE, and Fetch BROKER_NOT_AVAILABLE and
/// LEADER_NOT_AVAILABLE, because the Conduktor chaos demo's rules use them.
pub fn answered_by(api: ApiKey) -> Vec<&'static str> {
    let own: &[&[&str]] = match api {
        ApiKey::Produce => &[&[
            "CORRUPT_MESSAGE",
            "UNKNOWN_TOPIC_OR_PARTITION",
            "NOT_LEADER_OR_FOLLOWER",
            "LEADER_NOT_AVAILABLE",
            "MESSAGE_TOO_LARGE",
            "INVALID_TOPIC_EXCEPTION",
            "RECORD_LIST_TOO_LARGE",
            "NOT_ENOUGH_REPLICAS",
            "NOT_ENOUGH_REPLICAS_AFTER_APPEND",
            "INVALID_REQUIRED_ACKS",
            "TOPIC_AUTHORIZATION_FAILED",
            "UNSUPPORTED_FOR_MESSAGE_FORMAT",
            "INVALID_PRODUCER_EPOCH",
            "PRODUCER_FENCED",
            "CLUSTER_AUTHORIZATION_FAILED",
            "TRANSACTIONAL_ID_AUTHORIZATION_FAILED",
            "INVALID_RECORD",
            "INVALID_TXN_STATE",
            "INVALID_PRODUCER_ID_MAPPING",
            "DUPLICATE_SEQUENCE_NUMBER",
            "OUT_OF_ORDER_SEQUENCE_NUMBER",
            "UNKNOWN_PRODUCER_ID",
            "KAFKA_STORAGE_ERROR",
            "REQUEST_TIMED_OUT",
            "UNKNOWN_TOPIC_ID",
            "INVALID_TIMESTAMP",
            "TRANSACTION_ABORTABLE",
            "BROKER_NOT_AVAILABLE",
            "OFFSET_OUT_OF_RANGE",
        ]],
        ApiKey::Fetch => &[&[
            "OFFSET_OUT_OF_RANGE",
            "CORRUPT_MESSAGE",
            "UNKNOWN_TOPIC_OR_PARTITION",
            "NOT_LEADER_OR_FOLLOWER",
            "REPLICA_NOT_AVAILABLE",
            "KAFKA_STORAGE_ERROR",
            "FENCED_LEADER_EPOCH",
            "UNKNOWN_LEADER_EPOCH",
            "TOPIC_AUTHORIZATION_FAILED",
            "UNKNOWN_TOPIC_ID",
            "INCONSISTENT_TOPIC_ID",
            "FETCH_SESSION_TOPIC_ID_ERROR",
            "FETCH_SESSION_ID_NOT_FOUND",
            "INVALID_FETCH_SESSION_EPOCH",
            "UNSUPPORTED_COMPRESSION_TYPE",
            "OFFSET_MOVED_TO_TIERED_STORAGE",
            "BROKER_NOT_AVAILABLE",
            "LEADER_NOT_AVAILABLE",
        ]],
        ApiKey::Metadata => &[&[
            "UNKNOWN_TOPIC_OR_PARTITION",
            "LEADER_NOT_AVAILABLE",
            "INVALID_TOPIC_EXCEPTION",
            "TOPIC_AUTHORIZATION_FAILED",
            "INVALID_REPLICATION_FACTOR",
            "UNKNOWN_TOPIC_ID",
        ]],
        ApiKey::ListOffsets => &[&[
            "UNKNOWN_TOPIC_OR_PARTITION",
            "NOT_LEADER_OR_FOLLOWER",
            "LEADER_NOT_AVAILABLE",
            "REPLICA_NOT_AVAILABLE",
            "KAFKA_STORAGE_ERROR",
            "FENCED_LEADER_EPOCH",
            "UNKNOWN_LEADER_EPOCH",
            "OFFSET_NOT_AVAILABLE",
            "TOPIC_AUTHORIZATION_FAILED",
            "UNSUPPORTED_FOR_MESSAGE_FORMAT",
        ]],
        ApiKey::CreateTopics => &[&[
            "INVALID_CONFIG",
            "INVALID_PARTITIONS",
            "INVALID_REPLICATION_FACTOR",
            "INVALID_REPLICA_ASSIGNMENT",
            "INVALID_REQUEST",
            "INVALID_TOPIC_EXCEPTION",
            "NOT_CONTROLLER",
            "POLICY_VIOLATION",
            "REQUEST_TIMED_OUT",
            "TOPIC_ALREADY_EXISTS",
            "TOPIC_AUTHORIZATION_FAILED",
            "CLUSTER_AUTHORIZATION_FAILED",
            "THROTTLING_QUOTA_EXCEEDED",
        ]],
        ApiKey::FindCoordinator => &[&[
            "COORDINATOR_LOAD_IN_PROGRESS",
            "COORDINATOR_NOT_AVAILABLE",
            "GROUP_AUTHORIZATION_FAILED",
            "TRANSACTIONAL_ID_AUTHORIZATION_FAILED",
            "INVALID_REQUEST",
        ]],
        ApiKey::JoinGroup => &[
            COORDINATOR,
            &[
                "GROUP_AUTHORIZATION_FAILED",
                "INCONSISTENT_GROUP_PROTOCOL",
                "UNKNOWN_MEMBER_ID",
                "INVALID_SESSION_TIMEOUT",
                "INVALID_GROUP_ID",
                "GROUP_MAX_SIZE_REACHED",
                "FENCED_INSTANCE_ID",
                "MEMBER_ID_REQUIRED",
                "REBALANCE_IN_PROGRESS",
            ],
        ],
        ApiKey::SyncGroup => &[
            COORDINATOR,
            &[
                "GROUP_AUTHORIZATION_FAILED",
                "REBALANCE_IN_PROGRESS",
                "FENCED_INSTANCE_ID",
                "UNKNOWN_MEMBER_ID",
                "ILLEGAL_GENERATION",
                "INCONSISTENT_GROUP_PROTOCOL",
            ],
        ],
        ApiKey::Heartbeat => &[
            COORDINATOR,
            &[
                "GROUP_AUTHORIZATION_FAILED",
                "ILLEGAL_GENERATION",
                "UNKNOWN_MEMBER_ID",
                "REBALANCE_IN_PROGRESS",
                "FENCED_INSTANCE_ID",
            ],
        ],
        ApiKey::LeaveGroup => {
            &[COORDINATOR, &["FENCED_INSTANCE_ID", "GROUP_AUTHORIZATION_FAILED", "UNKNOWN_MEMBER_ID"]]
        }
        ApiKey::OffsetCommit => &[
            COORDINATOR,
            &[
                "GROUP_AUTHORIZATION_FAILED",
                "GROUP_ID_NOT_FOUND",
                "ILLEGAL_GENERATION",
                "INVALID_COMMIT_OFFSET_SIZE",
                "OFFSET_METADATA_TOO_LARGE",
                "REBALANCE_IN_PROGRESS",
                "REQUEST_TIMED_OUT",
                "STALE_MEMBER_EPOCH",
                "TOPIC_AUTHORIZATION_FAILED",
                "UNKNOWN_MEMBER_ID",
                "UNKNOWN_TOPIC_OR_PARTITION",
                "FENCED_INSTANCE_ID",
            ],
        ],
        ApiKey::OffsetFetch => &[
            COORDINATOR,
            &[
                "GROUP_AUTHORIZATION_FAILED",
                "STALE_MEMBER_EPOCH",
                "TOPIC_AUTHORIZATION_FAILED",
                "UNKNOWN_MEMBER_ID",
                "UNKNOWN_TOPIC_OR_PARTITION",
                "UNSTABLE_OFFSET_COMMIT",
            ],
        ],
        ApiKey::ConsumerGroupHeartbeat => &[
            COORDINATOR,
            &[
                "FENCED_MEMBER_EPOCH",
                "GROUP_AUTHORIZATION_FAILED",
                "GROUP_MAX_SIZE_REACHED",
                "INVALID_REGULAR_EXPRESSION",
                "INVALID_REQUEST",
                "UNKNOWN_MEMBER_ID",
                "UNRELEASED_INSTANCE_ID",
                "UNSUPPORTED_ASSIGNOR",
            ],
        ],
        ApiKey::InitProducerId => &[
            COORDINATOR,
            &[
                "CLUSTER_AUTHORIZATION_FAILED",
                "CONCURRENT_TRANSACTIONS",
                "INVALID_PRODUCER_EPOCH",
                "PRODUCER_FENCED",
                "TRANSACTIONAL_ID_AUTHORIZATION_FAILED",
            ],
        ],
        ApiKey::AddPartitionsToTxn => &[
            COORDINATOR,
            &[
                "CONCURRENT_TRANSACTIONS",
                "INVALID_PRODUCER_EPOCH",
                "INVALID_PRODUCER_ID_MAPPING",
                "INVALID_TXN_STATE",
                "OPERATION_NOT_ATTEMPTED",
                "PRODUCER_FENCED",
                "TOPIC_AUTHORIZATION_FAILED",
                "TRANSACTIONAL_ID_AUTHORIZATION_FAILED",
                "TRANSACTION_ABORTABLE",
                "UNKNOWN_TOPIC_OR_PARTITION",
            ],
        ],
        ApiKey::AddOffsetsToTxn => &[
            COORDINATOR,
            &[
                "CONCURRENT_TRANSACTIONS",
                "GROUP_AUTHORIZATION_FAILED",
                "INVALID_PRODUCER_EPOCH",
                "INVALID_PRODUCER_ID_MAPPING",
                "INVALID_TXN_STATE",
                "PRODUCER_FENCED",
                "TRANSACTIONAL_ID_AUTHORIZATION_FAILED",
                "TRANSACTION_ABORTABLE",
            ],
        ],
        ApiKey::EndTxn => &[
            COORDINATOR,
            &[
                "CONCURRENT_TRANSACTIONS",
                "INVALID_PRODUCER_EPOCH",
                "INVALID_PRODUCER_ID_MAPPING",
                "INVALID_TXN_STATE",
                "PRODUCER_FENCED",
                "TRANSACTIONAL_ID_AUTHORIZATION_FAILED",
            ],
        ],
        ApiKey::TxnOffsetCommit => &[
            COORDINATOR,
            &[
                "FENCED_INSTANCE_ID",
                "GROUP_AUTHORIZATION_FAILED",
                "ILLEGAL_GENERATION",
                "INVALID_COMMIT_OFFSET_SIZE",
                "INVALID_PRODUCER_EPOCH",
                "OFFSET_METADATA_TOO_LARGE",
                "REQUEST_TIMED_OUT",
                "TRANSACTIONAL_ID_AUTHORIZATION_FAILED",
                "UNKNOWN_MEMBER_ID",
                "UNKNOWN_TOPIC_OR_PARTITION",
                "UNSUPPORTED_FOR_MESSAGE_FORMAT",
                "TRANSACTION_ABORTABLE",
            ],
        ],
        _ => return Vec::new(),
    };
    own.iter().flat_map(|names| names.iter().copied()).chain(ANY_API.iter().copied()).collect()
}

/// Checks that Kafka answers `api` with each of `errors` (the rule's `config.errors`), so that a
/// fault never sends what no broker would.
pub fn check_answered_by(api: ApiKey, errors: &[KafkaError]) -> Result<(), ConfigError> {
    let accepted = answered_by(api);
    if accepted.is_empty() {
        return Err(ConfigError::new(
            "apiKeys",
            format!("{} answers carry no error kaos can set", api_key_name(api)),
        ));
    }
    for (index, error) in errors.iter().enumerate() {
        let name = name_of(error.0).unwrap_or_default();
        if !accepted.contains(&name.as_str()) {
            return Err(ConfigError::new(
                format!("config.errors[{index}]"),
                format!(
                    "Kafka never answers {} with {name}; it answers with {}",
                    api_key_name(api),
                    accepted.join(", ")
                ),
            ));
        }
    }
    if errors.is_empty() {
        return Err(ConfigError::new("config.errors", "needs at least one Kafka error name"));
    }
    Ok(())
}

/// The SCREAMING_SNAKE name of an error code, as Kafka spells it; `None` for a code Kafka does
/// not define.
fn name_of(code: i16) -> Option<String> {
    match ResponseError::try_from_code(code) {
        None => Some("NONE".into()),
        Some(ResponseError::Unknown(_)) => None,
        Some(error) => Some(screaming_snake(&error.to_string())),
    }
}

/// `NotLeaderOrFollower` → `NOT_LEADER_OR_FOLLOWER`, as Kafka spells errors and API keys.
pub fn screaming_snake(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 8);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_kafka_spelling() {
        let code = |name| KafkaError::named(name).map(|e| e.0);
        assert_eq!(code("NOT_LEADER_OR_FOLLOWER"), Some(6));
        assert_eq!(code("LEADER_NOT_AVAILABLE"), Some(5));
        assert_eq!(code("BROKER_NOT_AVAILABLE"), Some(8));
        assert_eq!(code("REQUEST_TIMED_OUT"), Some(7));
        assert_eq!(code("OFFSET_OUT_OF_RANGE"), Some(1));
        assert_eq!(code("NOT_ENOUGH_REPLICAS"), Some(19));
        assert_eq!(code("INVALID_REQUIRED_ACKS"), Some(21));
        assert_eq!(code("UNKNOWN_SERVER_ERROR"), Some(-1));
        assert_eq!(code("NOT_AN_ERROR"), None);
        assert_eq!(code("NONE"), None, "NONE is not an error");
        assert_eq!(serde_json::to_value(KafkaError(6)).unwrap(), "NOT_LEADER_OR_FOLLOWER");
    }

    #[test]
    fn each_api_takes_the_errors_kafka_answers_it_with() {
        let errors = |names: &[&str]| names.iter().map(|n| KafkaError::named(n).unwrap()).collect::<Vec<_>>();
        for api in APIS_WITH_ERRORS {
            let names = answered_by(*api);
            assert!(names.iter().all(|name| KafkaError::named(name).is_some()), "{api:?}: {names:?}");
            assert!(check_answered_by(*api, &errors(&names)).is_ok(), "{api:?}");
        }
        assert!(check_answered_by(ApiKey::Heartbeat, &errors(&["REBALANCE_IN_PROGRESS"])).is_ok());
        let wrong =
            check_answered_by(ApiKey::Heartbeat, &errors(&["NOT_COORDINATOR", "OFFSET_OUT_OF_RANGE"]));
        let wrong = wrong.unwrap_err();
        assert_eq!(wrong.field, "config.errors[1]");
        assert!(
            wrong.reason.contains("Kafka never answers HEARTBEAT with OFFSET_OUT_OF_RANGE"),
            "{}",
            wrong.reason
        );
        assert_eq!(check_answered_by(ApiKey::Heartbeat, &[]).unwrap_err().field, "config.errors");
        assert_eq!(
            check_answered_by(ApiKey::ApiVersions, &errors(&["UNKNOWN_SERVER_ERROR"])).unwrap_err().field,
            "apiKeys"
        );
        let demo = errors(&[
            "REQUEST_TIMED_OUT",
            "BROKER_NOT_AVAILABLE",
            "OFFSET_OUT_OF_RANGE",
            "NOT_ENOUGH_REPLICAS",
            "INVALID_REQUIRED_ACKS",
        ]);
        assert!(check_answered_by(ApiKey::Produce, &demo).is_ok(), "the Conduktor demo's rule");
    }

    #[test]
    fn the_readme_lists_what_each_api_takes() {
        let readme = include_str!("../../README.md");
        for api in APIS_WITH_ERRORS {
            let line = format!("| `{}` | {} |", api_key_name(*api), answered_by(*api).join(", "));
            assert!(readme.contains(&line), "README.md's table lacks: {line}");
        }
    }

    #[test]
    fn every_listed_name_reads_back() {
        let names = KafkaError::all_names();
        assert!(names.len() > 100, "{}", names.len());
        assert!(names.iter().all(|name| KafkaError::named(name).is_some()), "{names:?}");
    }
}
