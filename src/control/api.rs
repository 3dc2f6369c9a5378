//! The chaos REST API, compatible with the Conduktor Proxy chaos demo:
//!
//! - `POST /tenant/{tenant}/user/{user}/feature/{feature}` creates or replaces a rule.
//! - `DELETE /tenant/{tenant}/user/{user}/feature/{feature}/apiKeys/{apiKey}/direction/{direction}`
//! - `GET /tenant/{tenant}/user/{user}/feature` lists that scope's rules; `GET /rules` all rules.
//! - `POST /tenant` registers a topic's message format; `GET /tenant` lists them.
//!
//! The control thread owns the rules; every change publishes one new `RuleSet` snapshot before the
//! call answers, so a request that arrives after the answer sees the change.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Value, json};

use super::persist::{RulesFile, RulesFileError};
use crate::chaos::rule::{RuleKey, parse_api_key};
use crate::chaos::{ConfigError, Direction, FaultSpec, Rule, RuleSet};
use crate::shared::Shared;
use tracing::{error, info};

/// An API answer: status and JSON body.
pub type Reply = (u16, Value);

#[derive(Debug, Default)]
pub struct RuleStore {
    rules: BTreeMap<RuleKey, Arc<Rule>>,
    /// Message formats by (tenant, topic), as registered through `POST /tenant`.
    formats: BTreeMap<(String, String), String>,
    /// Where changes are saved, with `--rules-file`.
    file: Option<RulesFile>,
}

const MESSAGE_FORMATS: [&str; 3] = ["JSON", "AVRO", "PROTOBUF"];

fn bad_request(error: ConfigError) -> Reply {
    (400, json!({ "error": error.reason, "field": error.field }))
}

fn not_found(what: String) -> Reply {
    (404, json!({ "error": what }))
}

impl RuleStore {
    /// A store backed by `--rules-file`: loads what it holds and publishes it.
    pub fn open(file: RulesFile, shared: &Shared) -> Result<RuleStore, RulesFileError> {
        let saved = file.load()?;
        let mut store = RuleStore { file: Some(file), ..RuleStore::default() };
        for rule in saved.rules {
            store.rules.insert(rule.key.clone(), Arc::new(rule));
        }
        for (tenant, topic, format) in saved.formats {
            store.formats.insert((tenant, topic), format);
        }
        if !store.rules.is_empty() {
            let path = store.file.as_ref().expect("set").path().display().to_string();
            info!(path, "loaded {} chaos rules", store.rules.len());
        }
        store.publish(shared);
        Ok(store)
    }

    /// Saves the current state, if there is a file to save to.
    fn save(&self) -> Result<(), RulesFileError> {
        let Some(file) = &self.file else { return Ok(()) };
        let formats = self
            .formats
            .iter()
            .map(|((tenant, topic), format)| (tenant.as_str(), topic.as_str(), format.as_str()));
        file.save(self.rules.values().map(Arc::as_ref), formats)
    }

    /// Applies a change, saves it, and publishes it; a change that cannot be saved is undone.
    fn commit<T>(
        &mut self,
        shared: &Shared,
        change: impl FnOnce(&mut RuleStore) -> T,
        undo: impl FnOnce(&mut RuleStore, T),
    ) -> Result<(), Reply> {
        let before = change(self);
        if let Err(why) = self.save() {
            undo(self, before);
            error!(error = %why, "rules file not saved; change undone");
            return Err((500, json!({ "error": format!("not applied: {why}") })));
        }
        self.publish(shared);
        Ok(())
    }

    /// Answers a chaos API call, or `None` when the path is not one of its routes.
    pub fn handle(&mut self, method: &str, path: &str, body: &[u8], shared: &Shared) -> Option<Reply> {
        let segments: Vec<String> = path.trim_matches('/').split('/').map(percent_decode).collect();
        let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
        Some(match (method, segments.as_slice()) {
            ("GET", ["rules"]) => {
                (200, Value::from(self.rules.values().map(|r| r.to_json()).collect::<Vec<_>>()))
            }
            ("POST", ["tenant", tenant, "user", user, "feature", feature]) => {
                match Rule::from_request(tenant, user, feature, body) {
                    Ok(rule) => self.put(rule, shared),
                    Err(error) => bad_request(error),
                }
            }
            (
                "DELETE",
                ["tenant", tenant, "user", user, "feature", feature, "apiKeys", api, "direction", direction],
            ) => self.delete(tenant, user, feature, api, direction, shared),
            ("GET", ["tenant", tenant, "user", user, "feature"]) => {
                let scoped: Vec<_> = self
                    .rules
                    .values()
                    .filter(|r| r.key.tenant == *tenant && r.key.user == *user)
                    .map(|r| r.to_json())
                    .collect();
                (200, Value::from(scoped))
            }
            ("POST", ["tenant"]) => self.register_format(body, shared),
            ("GET", ["tenant"]) => {
                let formats: Vec<_> = self
                    .formats
                    .iter()
                    .map(|((tenant, topic), format)| json!({"tenant": tenant, "topic": topic, "messageFormat": format}))
                    .collect();
                (200, Value::from(formats))
            }
            _ => return None,
        })
    }

    fn put(&mut self, rule: Rule, shared: &Shared) -> Reply {
        let answer = rule.to_json();
        let key = rule.key.clone();
        let committed = self.commit(
            shared,
            |store| store.rules.insert(key.clone(), Arc::new(rule)),
            |store, previous| match previous {
                Some(previous) => drop(store.rules.insert(previous.key.clone(), previous)),
                None => drop(store.rules.remove(&key)),
            },
        );
        if let Err(reply) = committed {
            return reply;
        }
        info!(rule = %answer, "chaos rule set");
        (200, answer)
    }

    fn delete(
        &mut self,
        tenant: &str,
        user: &str,
        feature: &str,
        api: &str,
        direction: &str,
        shared: &Shared,
    ) -> Reply {
        let key = (|| {
            let feature = FaultSpec::named(feature)
                .ok_or_else(|| ConfigError::new("feature", format!("unknown feature '{feature}'")))?
                .name;
            let api_key = parse_api_key(api)
                .ok_or_else(|| ConfigError::new("apiKeys", format!("unknown Kafka API '{api}'")))?;
            let direction = Direction::parse(direction).ok_or_else(|| {
                ConfigError::new(
                    "direction",
                    format!("unknown direction '{direction}'; use REQUEST or RESPONSE"),
                )
            })?;
            Ok(RuleKey {
                tenant: tenant.into(),
                user: user.into(),
                feature,
                api_key: api_key as i16,
                direction,
            })
        })();
        let key = match key {
            Ok(key) => key,
            Err(error) => return bad_request(error),
        };
        let Some(removed) = self.rules.get(&key).map(|rule| rule.to_json()) else {
            return not_found(format!(
                "no {feature} rule on {api}/{direction} for tenant {tenant} user {user}"
            ));
        };
        let committed = self.commit(
            shared,
            |store| store.rules.remove(&key),
            |store, rule| drop(rule.map(|rule| store.rules.insert(key.clone(), rule))),
        );
        if let Err(reply) = committed {
            return reply;
        }
        info!(rule = %removed, "chaos rule removed");
        (200, removed)
    }

    fn register_format(&mut self, body: &[u8], shared: &Shared) -> Reply {
        let parsed: Result<Value, _> = serde_json::from_slice(body);
        let Ok(Value::Object(mut fields)) = parsed else {
            return bad_request(ConfigError::new(
                "body",
                "must be a JSON object with tenant, topic and messageFormat",
            ));
        };
        let mut text = |name: &str| match fields.remove(name) {
            Some(Value::String(value)) if !value.is_empty() => Ok(value),
            _ => Err(ConfigError::new(name, "is required and must be a non-empty string")),
        };
        let entry = (|| Ok((text("tenant")?, text("topic")?, text("messageFormat")?)))();
        let (tenant, topic, format) = match entry {
            Ok(entry) => entry,
            Err(error) => return bad_request(error),
        };
        if let Some(unknown) = fields.keys().next() {
            return bad_request(ConfigError::new(
                unknown.clone(),
                "unknown field; expected tenant, topic and messageFormat",
            ));
        }
        if !MESSAGE_FORMATS.contains(&format.as_str()) {
            return bad_request(ConfigError::new(
                "messageFormat",
                format!("unknown format '{format}'; use JSON, AVRO or PROTOBUF"),
            ));
        }
        let key = (tenant.clone(), topic.clone());
        let value = format.clone();
        let committed = self.commit(
            shared,
            |store| store.formats.insert(key.clone(), value),
            |store, previous| match previous {
                Some(previous) => drop(store.formats.insert(key.clone(), previous)),
                None => drop(store.formats.remove(&key)),
            },
        );
        if let Err(reply) = committed {
            return reply;
        }
        info!(tenant, topic, format, "message format registered");
        (200, json!({"tenant": tenant, "topic": topic, "messageFormat": format}))
    }

    fn publish(&self, shared: &Shared) {
        let rules = self.rules.values().cloned().collect();
        shared.rules.store(Arc::new(RuleSet::new(rules)));
    }
}

/// Decodes `%40` and friends in a path segment (user names are often e-mail addresses).
fn percent_decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &str = r#"{"config":{"minLatencyToAddInMilliseconds":5,"maxLatencyToAddInMilliseconds":9},"direction":"REQUEST","apiKeys":"PRODUCE"}"#;

    #[test]
    fn rules_are_created_listed_replaced_and_deleted() {
        let shared = Shared::new(1);
        let mut store = RuleStore::default();
        let path = "/tenant/1-1/user/test%40conduktor.io/feature/slow-broker";
        let (status, rule) = store.handle("POST", path, BODY.as_bytes(), &shared).unwrap();
        assert_eq!(status, 200, "{rule}");
        assert_eq!(rule["user"], "test@conduktor.io");
        assert_eq!(shared.rules.load().for_api(0).len(), 1, "published before answering");
        store.handle("POST", path, BODY.as_bytes(), &shared).unwrap();
        assert_eq!(shared.rules.load().rules().len(), 1, "same key replaces");
        let (_, listed) =
            store.handle("GET", "/tenant/1-1/user/test@conduktor.io/feature", b"", &shared).unwrap();
        assert_eq!(listed.as_array().unwrap().len(), 1);
        let delete =
            "/tenant/1-1/user/test@conduktor.io/feature/slow-broker/apiKeys/PRODUCE/direction/REQUEST";
        assert_eq!(store.handle("DELETE", delete, b"", &shared).unwrap().0, 200);
        assert_eq!(store.handle("DELETE", delete, b"", &shared).unwrap().0, 404);
        assert!(shared.rules.load().rules().is_empty());
        assert!(store.handle("GET", "/nope", b"", &shared).is_none());
    }

    #[test]
    fn every_change_reaches_the_rules_file() {
        let path = std::env::temp_dir().join(format!("kaos-api-{}.jsonl", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let shared = Shared::new(1);
        let mut store = RuleStore::open(RulesFile::new(&path), &shared).unwrap();
        let saved = || RulesFile::new(&path).load().unwrap().rules.len();
        store.handle("POST", "/tenant/t/user/u/feature/slow-broker", BODY.as_bytes(), &shared).unwrap();
        assert_eq!(saved(), 1);
        let delete = "/tenant/t/user/u/feature/slow-broker/apiKeys/PRODUCE/direction/REQUEST";
        assert_eq!(store.handle("DELETE", delete, b"", &shared).unwrap().0, 200);
        assert_eq!(saved(), 0, "a delete is saved too");
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn bad_bodies_get_400_naming_the_field() {
        let shared = Shared::new(1);
        let mut store = RuleStore::default();
        let (status, error) =
            store.handle("POST", "/tenant/t/user/u/feature/slow-broker", b"{oops", &shared).unwrap();
        assert_eq!((status, error["field"].as_str()), (400, Some("body")));
        let (status, error) = store
            .handle("POST", "/tenant", br#"{"tenant":"1-1","topic":"t","messageFormat":"XML"}"#, &shared)
            .unwrap();
        assert_eq!((status, error["field"].as_str()), (400, Some("messageFormat")));
        let (status, _) = store
            .handle("POST", "/tenant", br#"{"tenant":"1-1","topic":"t","messageFormat":"JSON"}"#, &shared)
            .unwrap();
        assert_eq!(status, 200);
        let (status, error) = store
            .handle(
                "DELETE",
                "/tenant/t/user/u/feature/slow-broker/apiKeys/PRODUCE/direction/UP",
                b"",
                &shared,
            )
            .unwrap();
        assert_eq!((status, error["field"].as_str()), (400, Some("direction")));
    }
}
