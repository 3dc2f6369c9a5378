//! Kafka error names as the REST API takes them (`NOT_LEADER_OR_FOLLOWER`), mapped to their codes
//! from kafka-protocol's complete list.

use std::borrow::Cow;

use kafka_protocol::error::ResponseError;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

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
    fn every_listed_name_reads_back() {
        let names = KafkaError::all_names();
        assert!(names.len() > 100, "{}", names.len());
        assert!(names.iter().all(|name| KafkaError::named(name).is_some()), "{names:?}");
    }
}
