//! `Rule::from_request`, which reads the body of `POST /tenant/{t}/user/{u}/feature/{f}`.
//!
//! Input: one byte that picks the feature from `kaos::chaos::FAULTS`, one byte of mode, then:
//! - even modes (low bit clear): the request body, as it is;
//! - odd modes: bytes from which a JSON body is built, its config fields and their values drawn
//!   mostly from the feature's own config schema (field names, types, units, error names), so
//!   that the fuzzer reaches every field and its checks.
//!
//! Checks: it never panics; a rule it accepts reports the topics, patterns, broker ids and
//! durations it was given (durations in milliseconds); and it is created again from
//! `rule.body()` (what the rules file keeps) with the same key and the same `config`.
#![no_main]

use std::sync::LazyLock;

use kaos::chaos::{FAULTS, FaultSpec, Rule};
use kaos_fuzz::Reader;
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Number, Value};

fuzz_target!(|data: &[u8]| {
    let mut input = Reader::new(data);
    let index = usize::from(input.u8()) % FAULTS.len();
    let spec = &FAULTS[index];
    let body = if !input.bool() {
        input.rest().to_vec()
    } else {
        serde_json::to_vec(&build_body(&mut input, &SCHEMAS[index])).expect("JSON values serialize")
    };

    let Ok(rule) = Rule::from_request("1-1", "test@conduktor.io", spec.name, &body) else { return };
    let reported = rule.to_json()["config"].clone();
    let given: Value = serde_json::from_slice(&body).expect("an accepted body is JSON");
    check_reported(&given["config"], &reported);

    let saved = serde_json::to_vec(&rule.body()).expect("JSON values serialize");
    let again = Rule::from_request("1-1", "test@conduktor.io", spec.name, &saved)
        .unwrap_or_else(|error| panic!("{} no longer parses: {error}", String::from_utf8_lossy(&saved)));
    assert_eq!(again.key, rule.key);
    assert_eq!(
        again.to_json()["config"],
        reported,
        "{} created again from {}",
        String::from_utf8_lossy(&body),
        String::from_utf8_lossy(&saved)
    );
});

/// The shared fields a rule reports are the ones it was given: lists as they were, durations
/// in milliseconds.
fn check_reported(given: &Value, reported: &Value) {
    for list in ["topics", "topicPatterns", "brokerIds"] {
        if given[list].as_array().is_some_and(|items| !items.is_empty()) {
            assert_eq!(reported[list], given[list], "{list}");
        }
    }
    let unit_ms = |name: &str| match given[name].as_str() {
        Some("SECONDS") => Some(1_000),
        Some("MINUTES") => Some(60_000),
        Some("HOURS") => Some(3_600_000),
        Some("MILLISECONDS") => Some(1),
        _ => None,
    };
    let default_unit = unit_ms("timeUnit").unwrap_or(1);
    for (field, unit) in [("duration", "durationUnit"), ("quietPeriod", "quietPeriodUnit")] {
        let Some(amount) = given[field].as_u64() else { continue };
        if let Some(ms) = amount.checked_mul(unit_ms(unit).unwrap_or(default_unit)) {
            assert_eq!(reported[field].as_u64(), Some(ms), "{field}: {amount} x {unit}");
        }
    }
}

/// Each feature's `config` schema, in `FAULTS` order (generating one per input is slow).
static SCHEMAS: LazyLock<Vec<Value>> =
    LazyLock::new(|| FAULTS.iter().map(FaultSpec::config_schema).collect());

/// Strings a rule body uses: every config field name and enum value of every feature, the API
/// keys and directions, and some topic patterns.
static WORDS: LazyLock<Vec<String>> = LazyLock::new(|| {
    let mut words: Vec<String> = Vec::new();
    for (spec, schema) in FAULTS.iter().zip(SCHEMAS.iter()) {
        for (name, property) in schema["properties"].as_object().into_iter().flatten() {
            words.push(name.clone());
            words.extend(enum_values(property).iter().cloned());
        }
        words.push(spec.name.to_owned());
    }
    for word in [
        "config",
        "direction",
        "apiKeys",
        "PRODUCE",
        "FETCH",
        "METADATA",
        "FIND_COORDINATOR",
        "REQUEST",
        "RESPONSE",
        "t",
        "t.*",
        "orders-.*",
        "(",
        "(a)$",
        "(?:a)$",
        "^(?:a)$",
        "a)$",
        "^(?:",
        ")$",
        "x|y",
        "[a-z]+",
        "",
    ] {
        words.push(word.to_owned());
    }
    words.sort();
    words.dedup();
    words
});

/// The strings a schema property (or its items) allows, without the `null` of optional ones.
fn enum_values(property: &Value) -> Vec<String> {
    let own = property["enum"].as_array().into_iter().flatten();
    let items = property["items"]["enum"].as_array().into_iter().flatten();
    own.chain(items).filter_map(Value::as_str).map(str::to_owned).collect()
}

fn word(input: &mut Reader<'_>) -> String {
    WORDS[usize::from(input.u16()) % WORDS.len()].clone()
}

/// A body object: `config`, `direction` and `apiKeys`, each present or not, sometimes of the
/// wrong type, and sometimes an extra field.
fn build_body(input: &mut Reader<'_>, schema: &Value) -> Value {
    let properties: Vec<(&String, &Value)> = schema["properties"].as_object().into_iter().flatten().collect();
    let present = input.u8();
    let mut body = Map::new();
    if present & 1 != 0 {
        let mut config = Map::new();
        for _ in 0..input.u8() % 8 {
            let pick = input.u8();
            if pick < 16 || properties.is_empty() {
                config.insert(word(input), value(input, 0));
            } else {
                let (name, property) = properties[usize::from(pick) % properties.len()];
                config.insert(name.clone(), typed(input, property));
            }
        }
        body.insert("config".into(), Value::Object(config));
    }
    if present & 2 != 0 {
        let direction = match present & 8 {
            0 => Value::from(["REQUEST", "RESPONSE"][usize::from(input.u8() % 2)]),
            _ => value(input, 0),
        };
        body.insert("direction".into(), direction);
    }
    if present & 4 != 0 {
        let api_keys = match present & 16 {
            0 => Value::from(["PRODUCE", "FETCH", "METADATA"][usize::from(input.u8() % 3)]),
            _ => value(input, 0),
        };
        body.insert("apiKeys".into(), api_keys);
    }
    if present & 32 != 0 {
        body.insert(word(input), value(input, 0));
    }
    Value::Object(body)
}

/// A value of the type a schema property takes (mostly): integers at the edges, an allowed
/// string, or an array of them.
fn typed(input: &mut Reader<'_>, property: &Value) -> Value {
    let choice = input.u8();
    if choice < 16 {
        return value(input, 0);
    }
    let allowed = enum_values(property);
    let one = |input: &mut Reader<'_>, kind: &Value| match kind.as_str() {
        Some("integer") => integer(input),
        _ if !allowed.is_empty() => Value::from(allowed[usize::from(input.u8()) % allowed.len()].clone()),
        _ => Value::from(word(input)),
    };
    match property["type"].as_str() {
        Some("array") => {
            Value::Array((0..input.u8() % 4).map(|_| one(input, &property["items"]["type"])).collect())
        }
        _ => one(input, &property["type"]),
    }
}

/// Integers where the checks and conversions are: around 100, 2^20, 2^32 / 1000 and 2^32,
/// negative ones, and any u32 or u64.
fn integer(input: &mut Reader<'_>) -> Value {
    match input.u8() % 6 {
        0 => Value::from(input.u8()),
        1 => Value::from(input.u16()),
        2 => Value::from(input.u32()),
        3 => Value::from(input.u64()),
        4 => Value::from(-i64::from(input.u16()) - 1),
        _ => {
            let edges =
                [100, 101, 1 << 20, (1 << 20) + 1, 4_294_967, 4_294_968, u64::from(u32::MAX), 1 << 32];
            Value::from(edges[usize::from(input.u8()) % edges.len()])
        }
    }
}

/// Any JSON value, leaning towards what config fields take: numbers at the edges of u32 and
/// u64, words from the schemas, and arrays of them.
fn value(input: &mut Reader<'_>, depth: u8) -> Value {
    match input.u8() % 12 {
        0 => Value::Null,
        1 => Value::Bool(input.bool()),
        2..=4 => integer(input),
        5 => Number::from_f64(f64::from(input.u16()) / 4.0).map_or(Value::Null, Value::Number),
        6 | 7 => Value::from(word(input)),
        8 => Value::from(String::from_utf8_lossy(input.chunk(16)).into_owned()),
        _ if depth >= 2 => Value::from(word(input)),
        9 | 10 => Value::Array((0..input.u8() % 4).map(|_| value(input, depth + 1)).collect()),
        _ => Value::Object((0..input.u8() % 3).map(|_| (word(input), value(input, depth + 1))).collect()),
    }
}
