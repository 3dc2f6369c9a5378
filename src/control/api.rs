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

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde_json::{Value, json};

use super::persist::{RulesFile, RulesFileError};
use super::topic::{RulesTopic, WriteId};
use crate::chaos::rule::{RuleKey, api_key_name_of, unix_ms};
use crate::chaos::{ConfigError, Rule, RuleSet};
use crate::shared::Shared;
use tracing::{error, info};

/// An API answer: status and JSON body.
pub type Reply = (u16, Value);

/// What the store makes of a call.
#[derive(Debug)]
pub enum Handled {
    Reply(Reply),
    /// With `--rules-topic`: answer `reply` once the write is in the topic and read back here.
    AfterWrite {
        write: WriteId,
        reply: Reply,
    },
}

/// One change to what the store holds: a rule or a message format set (`Some`) or removed.
#[derive(Debug, Clone)]
pub enum Edit {
    Rule(RuleKey, Option<Arc<Rule>>),
    /// (tenant, topic) and the format.
    Format((String, String), Option<String>),
}

/// Where the store keeps its contents beyond this process's memory.
#[derive(Default)]
pub enum Backing {
    #[default]
    Memory,
    /// `--rules-file`: saved on every change, read at start.
    File(RulesFile),
    /// `--rules-topic`: every change goes through the topic, read by every instance.
    Topic(RulesTopic),
}

#[derive(Default)]
pub struct RuleStore {
    rules: BTreeMap<RuleKey, Arc<Rule>>,
    /// Message formats by (tenant, topic), as registered through `POST /tenant`.
    formats: BTreeMap<(String, String), String>,
    backing: Backing,
    /// Rules whose ttl removal is on its way through the rules topic, so it is written once.
    expiring: BTreeSet<RuleKey>,
}

const MESSAGE_FORMATS: [&str; 3] = ["JSON", "AVRO", "PROTOBUF"];

fn bad_request(error: ConfigError) -> Handled {
    Handled::Reply((400, json!({ "error": error.reason, "field": error.field })))
}

fn not_found(what: String) -> Handled {
    Handled::Reply((404, json!({ "error": what })))
}

impl RuleStore {
    /// A store backed by `--rules-file`: loads what it holds and publishes it.
    pub fn open(file: RulesFile, shared: &Shared) -> Result<RuleStore, RulesFileError> {
        let saved = file.load()?;
        let mut store = RuleStore::default();
        let rules = saved.rules.into_iter().map(|rule| Edit::Rule(rule.key.clone(), Some(Arc::new(rule))));
        let formats = saved
            .formats
            .into_iter()
            .map(|(tenant, topic, format)| Edit::Format((tenant, topic), Some(format)));
        store.apply(rules.chain(formats).collect());
        if !store.rules.is_empty() {
            info!(path = %file.path().display(), "loaded {} chaos rules", store.rules.len());
        }
        store.backing = Backing::File(file);
        store.publish(shared);
        Ok(store)
    }

    /// A store whose contents live in `--rules-topic`, starting empty until the topic is read.
    pub fn following(topic: RulesTopic) -> RuleStore {
        RuleStore { backing: Backing::Topic(topic), ..RuleStore::default() }
    }

    /// With `--rules-topic`: why `/ready` should say no (the topic is not read yet, or cannot
    /// be reached).
    pub fn not_ready(&self) -> Option<String> {
        match &self.backing {
            Backing::Topic(topic) => topic.not_ready(),
            _ => None,
        }
    }

    /// With `--rules-topic`: applies what the topic thread read and answers which writes are
    /// settled. The control thread calls it between requests.
    pub fn follow(&mut self, shared: &Shared) -> Vec<(WriteId, Result<(), String>)> {
        let Backing::Topic(topic) = &mut self.backing else { return Vec::new() };
        let followed = topic.follow();
        if followed.from_start {
            self.rules.clear();
            self.formats.clear();
        }
        if followed.from_start || !followed.edits.is_empty() {
            for edit in &followed.edits {
                log_edit(edit, "rules topic");
            }
            self.apply(followed.edits);
            self.expiring.retain(|key| self.rules.contains_key(key));
            self.publish(shared);
        }
        followed.settled
    }

    /// Applies `edits` in order; answers the edits that undo them.
    fn apply(&mut self, edits: Vec<Edit>) -> Vec<Edit> {
        let mut undo: Vec<Edit> = edits
            .into_iter()
            .map(|edit| match edit {
                Edit::Rule(key, Some(rule)) => {
                    let before = self.rules.insert(key.clone(), rule);
                    Edit::Rule(key, before)
                }
                Edit::Rule(key, None) => {
                    let before = self.rules.remove(&key);
                    Edit::Rule(key, before)
                }
                Edit::Format(place, Some(format)) => {
                    let before = self.formats.insert(place.clone(), format);
                    Edit::Format(place, before)
                }
                Edit::Format(place, None) => {
                    let before = self.formats.remove(&place);
                    Edit::Format(place, before)
                }
            })
            .collect();
        undo.reverse();
        undo
    }

    /// Saves the current state, if there is a file to save to.
    fn save(&self) -> Result<(), RulesFileError> {
        let Backing::File(file) = &self.backing else { return Ok(()) };
        let formats = self
            .formats
            .iter()
            .map(|((tenant, topic), format)| (tenant.as_str(), topic.as_str(), format.as_str()));
        file.save(self.rules.values().map(Arc::as_ref), formats)
    }

    /// Makes a change and answers `reply`: applied, saved and published now, or, with the rules
    /// topic, written there and applied when read back. A change that cannot be saved is undone.
    fn commit(&mut self, edits: Vec<Edit>, reply: Reply, shared: &Shared) -> Handled {
        if let Backing::Topic(topic) = &mut self.backing {
            if let Some(why) = topic.not_ready() {
                return Handled::Reply((503, json!({ "error": format!("not applied: {why}") })));
            }
            return Handled::AfterWrite { write: topic.write(&edits), reply };
        }
        let logged = edits.clone();
        let undo = self.apply(edits);
        if let Err(why) = self.save() {
            self.apply(undo);
            error!(error = %why, "rules file not saved; change undone");
            return Handled::Reply((500, json!({ "error": format!("not applied: {why}") })));
        }
        for edit in &logged {
            log_edit(edit, "this kaos");
        }
        self.publish(shared);
        Handled::Reply(reply)
    }

    /// Answers a chaos API call, or `None` when the path is not one of its routes.
    pub fn handle(&mut self, method: &str, path: &str, body: &[u8], shared: &Shared) -> Option<Handled> {
        let segments: Vec<String> = path.trim_matches('/').split('/').map(percent_decode).collect();
        let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
        Some(match (method, segments.as_slice()) {
            ("GET", ["rules"]) => Handled::Reply((200, self.listed())),
            ("DELETE", ["rules"]) => self.replace_all(BTreeMap::new(), shared),
            ("PUT", ["rules"]) => match parse_rule_set(body) {
                Ok(rules) => self.replace_all(rules, shared),
                Err(error) => bad_request(error),
            },
            ("POST", ["tenant", tenant, "user", user, "feature", feature]) => {
                match Rule::from_request(tenant, user, feature, body) {
                    Ok(rule) => {
                        let answer = rule.to_json();
                        self.commit(
                            vec![Edit::Rule(rule.key.clone(), Some(Arc::new(rule)))],
                            (200, answer),
                            shared,
                        )
                    }
                    Err(error) => bad_request(error),
                }
            }
            (
                "DELETE",
                ["tenant", tenant, "user", user, "feature", feature, "apiKeys", api, "direction", direction],
            ) => match RuleKey::parse(tenant, user, feature, api, direction) {
                Ok(key) => match self.rules.get(&key).map(|rule| rule.to_json()) {
                    Some(removed) => self.commit(vec![Edit::Rule(key, None)], (200, removed), shared),
                    None => not_found(format!(
                        "no {feature} rule on {api}/{direction} for tenant {tenant} user {user}"
                    )),
                },
                Err(error) => bad_request(error),
            },
            ("GET", ["tenant", tenant, "user", user, "feature"]) => {
                let scoped: Vec<_> = self
                    .rules
                    .values()
                    .filter(|r| r.key.tenant == *tenant && r.key.user == *user)
                    .map(|r| r.to_json())
                    .collect();
                Handled::Reply((200, Value::from(scoped)))
            }
            ("POST", ["tenant"]) => self.register_format(body, shared),
            ("GET", ["tenant"]) => {
                let formats: Vec<_> = self
                    .formats
                    .iter()
                    .map(|((tenant, topic), format)| json!({"tenant": tenant, "topic": topic, "messageFormat": format}))
                    .collect();
                Handled::Reply((200, Value::from(formats)))
            }
            _ => return None,
        })
    }

    /// Removes the rules whose `ttl` is up, as a DELETE would, saved (or written to the rules
    /// topic, once); the control thread calls it between requests. Answers the topic write, if
    /// there is one to wait for.
    pub fn expire(&mut self, shared: &Shared) -> Option<WriteId> {
        // A rule past its ttl already acts no more; its removal waits until the rules topic can
        // take it, rather than being tried (and logged) on every pass.
        if self.not_ready().is_some() {
            return None;
        }
        let now = unix_ms();
        let expired: Vec<RuleKey> = self
            .rules
            .values()
            .filter(|rule| rule.expires_unix_ms().is_some_and(|at| at <= now))
            .filter(|rule| !self.expiring.contains(&rule.key))
            .map(|rule| rule.key.clone())
            .collect();
        if expired.is_empty() {
            return None;
        }
        for key in &expired {
            if let Some(rule) = self.rules.get(key) {
                info!(rule = %rule.to_json(), "chaos rule expired (ttl)");
            }
        }
        let edits = expired.iter().map(|key| Edit::Rule(key.clone(), None)).collect();
        match self.commit(edits, (200, Value::Null), shared) {
            Handled::AfterWrite { write, .. } => {
                self.expiring.extend(expired);
                Some(write)
            }
            Handled::Reply(_) => None,
        }
    }

    /// A ttl removal written to the rules topic was refused: try it again.
    pub fn expiry_failed(&mut self) {
        self.expiring.clear();
    }

    fn listed(&self) -> Value {
        Value::from(self.rules.values().map(|r| r.to_json()).collect::<Vec<_>>())
    }

    /// Replaces every rule with `rules` in one snapshot (one batch in the rules topic); answers
    /// the new set.
    fn replace_all(&mut self, rules: BTreeMap<RuleKey, Arc<Rule>>, shared: &Shared) -> Handled {
        let listed = Value::from(rules.values().map(|r| r.to_json()).collect::<Vec<_>>());
        let removed =
            self.rules.keys().filter(|key| !rules.contains_key(key)).map(|key| Edit::Rule(key.clone(), None));
        let edits = removed
            .collect::<Vec<_>>()
            .into_iter()
            .chain(rules.into_iter().map(|(key, rule)| Edit::Rule(key, Some(rule))));
        self.commit(edits.collect(), (200, listed), shared)
    }

    fn register_format(&mut self, body: &[u8], shared: &Shared) -> Handled {
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
        let answer = json!({"tenant": tenant, "topic": topic, "messageFormat": format});
        self.commit(vec![Edit::Format((tenant, topic), Some(format))], (200, answer), shared)
    }

    fn publish(&self, shared: &Shared) {
        let rules = self.rules.values().cloned().collect();
        shared.rules.store(Arc::new(RuleSet::new(rules)));
    }
}

/// One log line per change; `source` says whether this kaos made it or read it in the rules topic.
fn log_edit(edit: &Edit, source: &str) {
    match edit {
        Edit::Rule(_, Some(rule)) => info!(rule = %rule.to_json(), source, "chaos rule set"),
        Edit::Rule(key, None) => {
            let api = api_key_name_of(key.api_key);
            info!(tenant = %key.tenant, user = %key.user, feature = key.feature, api, direction = key.direction.name(), source, "chaos rule removed")
        }
        Edit::Format((tenant, topic), Some(format)) => {
            info!(tenant, topic, format, source, "message format registered")
        }
        Edit::Format((tenant, topic), None) => info!(tenant, topic, source, "message format removed"),
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

    impl Handled {
        fn now(self) -> Reply {
            match self {
                Handled::Reply(reply) => reply,
                other => panic!("answered later: {other:?}"),
            }
        }
    }

    const BODY: &str = r#"{"config":{"minLatencyToAddInMilliseconds":5,"maxLatencyToAddInMilliseconds":9},"direction":"REQUEST","apiKeys":"PRODUCE"}"#;

    #[test]
    fn rules_are_created_listed_replaced_and_deleted() {
        let shared = Shared::new(1);
        let mut store = RuleStore::default();
        let path = "/tenant/1-1/user/test%40conduktor.io/feature/slow-broker";
        let (status, rule) = store.handle("POST", path, BODY.as_bytes(), &shared).unwrap().now();
        assert_eq!(status, 200, "{rule}");
        assert_eq!(rule["user"], "test@conduktor.io");
        assert_eq!(shared.rules.load().for_api(0).len(), 1, "published before answering");
        store.handle("POST", path, BODY.as_bytes(), &shared).unwrap().now();
        assert_eq!(shared.rules.load().rules().len(), 1, "same key replaces");
        let (_, listed) =
            store.handle("GET", "/tenant/1-1/user/test@conduktor.io/feature", b"", &shared).unwrap().now();
        assert_eq!(listed.as_array().unwrap().len(), 1);
        let delete =
            "/tenant/1-1/user/test@conduktor.io/feature/slow-broker/apiKeys/PRODUCE/direction/REQUEST";
        assert_eq!(store.handle("DELETE", delete, b"", &shared).unwrap().now().0, 200);
        assert_eq!(store.handle("DELETE", delete, b"", &shared).unwrap().now().0, 404);
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
        store.handle("POST", "/tenant/t/user/u/feature/slow-broker", BODY.as_bytes(), &shared).unwrap().now();
        assert_eq!(saved(), 1);
        let delete = "/tenant/t/user/u/feature/slow-broker/apiKeys/PRODUCE/direction/REQUEST";
        assert_eq!(store.handle("DELETE", delete, b"", &shared).unwrap().now().0, 200);
        assert_eq!(saved(), 0, "a delete is saved too");
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn the_whole_set_is_replaced_at_once_or_not_at_all_and_reset_in_one_step() {
        let shared = Shared::new(1);
        let mut store = RuleStore::default();
        store.handle("POST", "/tenant/t/user/u/feature/slow-broker", BODY.as_bytes(), &shared).unwrap().now();
        let (_, listed) = store.handle("GET", "/rules", b"", &shared).unwrap().now();
        let mut wanted = listed.as_array().unwrap().clone();
        wanted.push(
            serde_json::json!({"tenant": "t", "user": "v", "feature": "no-response", "apiKeys": "FETCH",
            "direction": "RESPONSE", "config": {"closeAfterMs": 100}}),
        );
        let (status, set) = store
            .handle("PUT", "/rules", Value::from(wanted.clone()).to_string().as_bytes(), &shared)
            .unwrap()
            .now();
        assert_eq!((status, set.as_array().unwrap().len()), (200, 2), "{set}");
        assert_eq!(shared.rules.load().rules().len(), 2, "published in one snapshot");

        // A bad rule anywhere in the list changes nothing, and is named by its place.
        let mut broken = wanted.clone();
        broken.push(
            serde_json::json!({"tenant": "t", "user": "w", "feature": "broken-broker", "apiKeys": "HEARTBEAT",
            "config": {"errors": ["NOT_ENOUGH_REPLICAS"]}}),
        );
        let (status, error) =
            store.handle("PUT", "/rules", Value::from(broken).to_string().as_bytes(), &shared).unwrap().now();
        assert_eq!((status, error["field"].as_str()), (400, Some("[2].config.errors[0]")), "{error}");
        let twice = Value::from(vec![wanted[0].clone(), wanted[0].clone()]).to_string();
        let (status, error) = store.handle("PUT", "/rules", twice.as_bytes(), &shared).unwrap().now();
        assert_eq!((status, error["field"].as_str()), (400, Some("[1]")));
        let (status, error) = store.handle("PUT", "/rules", b"{}", &shared).unwrap().now();
        assert_eq!((status, error["field"].as_str()), (400, Some("body")));
        assert_eq!(shared.rules.load().rules().len(), 2, "nothing applied");

        let (status, left) = store.handle("DELETE", "/rules", b"", &shared).unwrap().now();
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
            .unwrap()
            .now();
        assert_eq!(status, 200, "{rule}");
        assert_eq!(rule["expiresAtMs"].as_u64(), Some(rule["createdAtMs"].as_u64().unwrap() + 150));
        store.handle("POST", "/tenant/t/user/v/feature/slow-broker", BODY.as_bytes(), &shared).unwrap().now();
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
        let (status, _) = store
            .handle("PUT", "/rules", Value::from(vec![old]).to_string().as_bytes(), &shared)
            .unwrap()
            .now();
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
            store.handle("POST", "/tenant/t/user/u/feature/slow-broker", b"{oops", &shared).unwrap().now();
        assert_eq!((status, error["field"].as_str()), (400, Some("body")));
        let (status, error) = store
            .handle("POST", "/tenant", br#"{"tenant":"1-1","topic":"t","messageFormat":"XML"}"#, &shared)
            .unwrap()
            .now();
        assert_eq!((status, error["field"].as_str()), (400, Some("messageFormat")));
        let (status, _) = store
            .handle("POST", "/tenant", br#"{"tenant":"1-1","topic":"t","messageFormat":"JSON"}"#, &shared)
            .unwrap()
            .now();
        assert_eq!(status, 200);
        let (status, error) = store
            .handle(
                "DELETE",
                "/tenant/t/user/u/feature/slow-broker/apiKeys/PRODUCE/direction/UP",
                b"",
                &shared,
            )
            .unwrap()
            .now();
        assert_eq!((status, error["field"].as_str()), (400, Some("direction")));
    }
}
