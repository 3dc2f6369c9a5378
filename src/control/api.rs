//! The chaos REST API, compatible with the Conduktor Proxy chaos demo:
//!
//! - `POST /tenant/{tenant}/user/{user}/feature/{feature}` creates or replaces a rule.
//! - `DELETE /tenant/{tenant}/user/{user}/feature/{feature}/apiKeys/{apiKey}/direction/{direction}`
//! - `GET /tenant/{tenant}/user/{user}/feature` lists that scope's rules; `GET /rules` all rules.
//! - `DELETE /rules` removes every rule (Toxiproxy's reset); `PUT /rules` replaces the whole set
//!   with a list as `GET /rules` answers it, checked whole and applied whole or not at all (for
//!   rule sets kept in git).
//! - `POST /tenant` registers a topic's message format; `GET /tenant` lists them.
//!
//! The control thread owns the rules; every change publishes one new `RuleSet` snapshot before the
//! call answers, so a request that arrives after the answer sees the change.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Value, json};

use super::persist::{RulesFile, RulesFileError};
use crate::chaos::rule::{RuleKey, parse_api_key, unix_ms};
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
            ("GET", ["rules"]) => (200, self.listed()),
            ("DELETE", ["rules"]) => self.replace_all(BTreeMap::new(), shared),
            ("PUT", ["rules"]) => match parse_rule_set(body) {
                Ok(rules) => self.replace_all(rules, shared),
                Err(error) => bad_request(error),
            },
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

    /// Removes the rules whose `ttl` is up, as a DELETE would, saved; the control thread calls
    /// it between requests.
    pub fn expire(&mut self, shared: &Shared) {
        let now = unix_ms();
        let expired: Vec<RuleKey> = self
            .rules
            .values()
            .filter(|rule| rule.expires_unix_ms().is_some_and(|at| at <= now))
            .map(|rule| rule.key.clone())
            .collect();
        if expired.is_empty() {
            return;
        }
        let mut kept = self.rules.clone();
        for key in &expired {
            if let Some(rule) = kept.remove(key) {
                info!(rule = %rule.to_json(), "chaos rule expired (ttl)");
            }
        }
        let _ = self.replace_all(kept, shared);
    }

    fn listed(&self) -> Value {
        Value::from(self.rules.values().map(|r| r.to_json()).collect::<Vec<_>>())
    }

    /// Replaces every rule with `rules` in one snapshot; answers the new set.
    fn replace_all(&mut self, rules: BTreeMap<RuleKey, Arc<Rule>>, shared: &Shared) -> Reply {
        let count = rules.len();
        let committed = self.commit(
            shared,
            |store| std::mem::replace(&mut store.rules, rules),
            |store, before| store.rules = before,
        );
        if let Err(reply) = committed {
            return reply;
        }
        info!(rules = count, "chaos rules replaced");
        (200, self.listed())
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

/// The body of `PUT /rules`: a list of rules as `GET /rules` answers it. Errors name the rule by
/// its place (`[2].config.errors[0]`); two rules with one key are an error, not a silent
/// replacement.
fn parse_rule_set(body: &[u8]) -> Result<BTreeMap<RuleKey, Arc<Rule>>, ConfigError> {
    let entries: Value =
        serde_json::from_slice(body).map_err(|e| ConfigError::new("body", format!("malformed JSON: {e}")))?;
    let Value::Array(entries) = entries else {
        return Err(ConfigError::new("body", "must be a JSON array of rules, as GET /rules answers"));
    };
    let mut rules = BTreeMap::new();
    for (index, entry) in entries.iter().enumerate() {
        let at = |error: ConfigError| ConfigError::new(format!("[{index}].{}", error.field), error.reason);
        let rule = Rule::from_entry(entry).map_err(at)?;
        if rules.contains_key(&rule.key) {
            let reason = "a second rule with the same tenant, user, feature, apiKeys and direction";
            return Err(ConfigError::new(format!("[{index}]"), reason));
        }
        rules.insert(rule.key.clone(), Arc::new(rule));
    }
    Ok(rules)
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
    fn the_whole_set_is_replaced_at_once_or_not_at_all_and_reset_in_one_step() {
        let shared = Shared::new(1);
        let mut store = RuleStore::default();
        store.handle("POST", "/tenant/t/user/u/feature/slow-broker", BODY.as_bytes(), &shared).unwrap();
        let (_, listed) = store.handle("GET", "/rules", b"", &shared).unwrap();
        let mut wanted = listed.as_array().unwrap().clone();
        wanted.push(
            serde_json::json!({"tenant": "t", "user": "v", "feature": "no-response", "apiKeys": "FETCH",
            "direction": "RESPONSE", "config": {"closeAfterMs": 100}}),
        );
        let (status, set) = store
            .handle("PUT", "/rules", Value::from(wanted.clone()).to_string().as_bytes(), &shared)
            .unwrap();
        assert_eq!((status, set.as_array().unwrap().len()), (200, 2), "{set}");
        assert_eq!(shared.rules.load().rules().len(), 2, "published in one snapshot");

        // A bad rule anywhere in the list changes nothing, and is named by its place.
        let mut broken = wanted.clone();
        broken.push(
            serde_json::json!({"tenant": "t", "user": "w", "feature": "broken-broker", "apiKeys": "HEARTBEAT",
            "config": {"errors": ["NOT_ENOUGH_REPLICAS"]}}),
        );
        let (status, error) =
            store.handle("PUT", "/rules", Value::from(broken).to_string().as_bytes(), &shared).unwrap();
        assert_eq!((status, error["field"].as_str()), (400, Some("[2].config.errors[0]")), "{error}");
        let twice = Value::from(vec![wanted[0].clone(), wanted[0].clone()]).to_string();
        let (status, error) = store.handle("PUT", "/rules", twice.as_bytes(), &shared).unwrap();
        assert_eq!((status, error["field"].as_str()), (400, Some("[1]")));
        let (status, error) = store.handle("PUT", "/rules", b"{}", &shared).unwrap();
        assert_eq!((status, error["field"].as_str()), (400, Some("body")));
        assert_eq!(shared.rules.load().rules().len(), 2, "nothing applied");

        let (status, left) = store.handle("DELETE", "/rules", b"", &shared).unwrap();
        assert_eq!((status, left), (200, Value::from(Vec::<Value>::new())));
        assert!(shared.rules.load().rules().is_empty());
    }

    #[test]
    fn a_rule_with_a_ttl_removes_itself_and_the_removal_is_saved_and_survives_a_restart() {
        let path = std::env::temp_dir().join(format!("kaos-ttl-{}.jsonl", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let shared = Shared::new(1);
        let mut store = RuleStore::open(RulesFile::new(&path), &shared).unwrap();
        let with_ttl = r#"{"config":{"ttl":150},"apiKeys":"PRODUCE"}"#;
        let (status, rule) = store
            .handle("POST", "/tenant/t/user/u/feature/slow-broker", with_ttl.as_bytes(), &shared)
            .unwrap();
        assert_eq!(status, 200, "{rule}");
        assert_eq!(rule["expiresAtMs"].as_u64(), Some(rule["createdAtMs"].as_u64().unwrap() + 150));
        store.handle("POST", "/tenant/t/user/v/feature/slow-broker", BODY.as_bytes(), &shared).unwrap();
        store.expire(&shared);
        assert_eq!(shared.rules.load().rules().len(), 2, "not yet");

        // A restart keeps the rule's age: the time left runs on.
        let reopened = RuleStore::open(RulesFile::new(&path), &Shared::new(1)).unwrap();
        assert_eq!(reopened.rules.values().filter(|r| r.expires_unix_ms().is_some()).count(), 1);
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert!(
            !reopened.rules.values().all(|r| r.is_active(std::time::Instant::now())),
            "past its ttl: inactive"
        );
        store.expire(&shared);
        assert_eq!(shared.rules.load().rules().len(), 1, "the ttl rule removed itself");
        assert_eq!(RulesFile::new(&path).load().unwrap().rules.len(), 1, "and the removal is saved");

        // A rule whose time ran out while kaos was down is gone when it loads.
        let mut old = store.rules.values().next().unwrap().to_json();
        old["config"]["ttl"] = Value::from(1000);
        old["createdAtMs"] = Value::from(unix_ms() - 5000);
        let (status, _) =
            store.handle("PUT", "/rules", Value::from(vec![old]).to_string().as_bytes(), &shared).unwrap();
        assert_eq!(status, 200);
        store.expire(&shared);
        assert!(shared.rules.load().rules().is_empty());
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
