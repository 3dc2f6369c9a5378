//! Kafka error names as the REST API takes them (`NOT_LEADER_OR_FOLLOWER`), mapped to their codes
//! from kafka-protocol's complete list.

use kafka_protocol::error::ResponseError;

use super::config::ConfigError;

/// The protocol's error code for a name such as `BROKER_NOT_AVAILABLE`.
pub fn code_of(name: &str) -> Option<i16> {
    (-1..=255).find(|&code| ResponseError::try_from_code(code).is_some_and(|e| is_named(&e, name)))
}

/// The SCREAMING_SNAKE name of an error code, as Kafka spells it.
pub fn name_of(code: i16) -> String {
    match ResponseError::try_from_code(code) {
        None => "NONE".into(),
        Some(error) => screaming_snake(&error.to_string()),
    }
}

fn is_named(error: &ResponseError, name: &str) -> bool {
    !matches!(error, ResponseError::Unknown(_)) && screaming_snake(&error.to_string()) == name
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

/// Reads a list of error names, as `errors` in a rule's config.
pub fn parse_list(field: &str, names: &[String]) -> Result<Vec<i16>, ConfigError> {
    names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            code_of(name).ok_or_else(|| {
                ConfigError::new(format!("config.{field}[{i}]"), format!("unknown Kafka error name '{name}'"))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_kafka_spelling() {
        assert_eq!(code_of("NOT_LEADER_OR_FOLLOWER"), Some(6));
        assert_eq!(code_of("LEADER_NOT_AVAILABLE"), Some(5));
        assert_eq!(code_of("BROKER_NOT_AVAILABLE"), Some(8));
        assert_eq!(code_of("REQUEST_TIMED_OUT"), Some(7));
        assert_eq!(code_of("OFFSET_OUT_OF_RANGE"), Some(1));
        assert_eq!(code_of("NOT_ENOUGH_REPLICAS"), Some(19));
        assert_eq!(code_of("INVALID_REQUIRED_ACKS"), Some(21));
        assert_eq!(code_of("UNKNOWN_SERVER_ERROR"), Some(-1));
        assert_eq!(code_of("NOT_AN_ERROR"), None);
        assert_eq!(name_of(6), "NOT_LEADER_OR_FOLLOWER");
    }

    #[test]
    fn unknown_names_are_reported_by_position() {
        let error = parse_list("errors", &["BROKER_NOT_AVAILABLE".into(), "OOPS".into()]).unwrap_err();
        assert_eq!(error.field, "config.errors[1]");
    }
}
