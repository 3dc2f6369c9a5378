//! `--rules-file`: the chaos rules and message formats kept on disk, one JSON object per line, so
//! that they survive a restart.
//!
//! Every change rewrites the whole file atomically: write a temporary file beside it, fsync it,
//! rename it over the old one, fsync the directory. A crash at any point leaves either the old
//! file or the new one, never a mix. A file kaos cannot read stops start-up with the line at fault.
//!
//! Lines: `{"tenant","user","feature","apiKeys","direction","config":{...}}` for a rule, and
//! `{"tenant","topic","messageFormat"}` for a message format. A rule line keeps `createdAtMs`, so
//! that a rule's `ttl` and duration/quiet cycle go on across a restart.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::chaos::Rule;

/// A rules file kaos cannot read or write.
#[derive(Debug, thiserror::Error)]
pub enum RulesFileError {
    #[error("cannot read rules file {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("rules file {} line {line}: {reason}", path.display())]
    Line { path: PathBuf, line: usize, reason: String },
    #[error("cannot save rules to {}: {source}", path.display())]
    Save { path: PathBuf, source: std::io::Error },
}

/// What a rules file holds.
#[derive(Debug, Default)]
pub struct Saved {
    pub rules: Vec<Rule>,
    /// (tenant, topic, message format)
    pub formats: Vec<(String, String, String)>,
}

#[derive(Debug, Clone)]
pub struct RulesFile {
    path: PathBuf,
}

impl RulesFile {
    pub fn new(path: impl Into<PathBuf>) -> RulesFile {
        RulesFile { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the file; a missing file is an empty one.
    pub fn load(&self) -> Result<Saved, RulesFileError> {
        let text = match fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Saved::default()),
            Err(source) => return Err(RulesFileError::Read { path: self.path.clone(), source }),
        };
        let mut saved = Saved::default();
        for (index, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let at =
                |reason: String| RulesFileError::Line { path: self.path.clone(), line: index + 1, reason };
            let entry: Value = serde_json::from_str(line).map_err(|e| at(format!("not JSON: {e}")))?;
            if entry.get("messageFormat").is_some() {
                let text = |key: &str| {
                    entry
                        .get(key)
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                        .ok_or_else(|| at(format!("missing \"{key}\"")))
                };
                saved.formats.push((text("tenant")?, text("topic")?, text("messageFormat")?));
                continue;
            }
            saved.rules.push(Rule::from_entry(&entry).map_err(|e| at(e.to_string()))?);
        }
        Ok(saved)
    }

    /// Replaces the file's contents atomically.
    pub fn save<'a>(
        &self,
        rules: impl Iterator<Item = &'a Rule>,
        formats: impl Iterator<Item = (&'a str, &'a str, &'a str)>,
    ) -> Result<(), RulesFileError> {
        let mut text = String::new();
        for rule in rules {
            text.push_str(&rule.entry().to_string());
            text.push('\n');
        }
        for (tenant, topic, format) in formats {
            text.push_str(&json!({"tenant": tenant, "topic": topic, "messageFormat": format}).to_string());
            text.push('\n');
        }
        self.write_atomically(text.as_bytes())
            .map_err(|source| RulesFileError::Save { path: self.path.clone(), source })
    }

    fn write_atomically(&self, bytes: &[u8]) -> std::io::Result<()> {
        let directory = self.path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let name = self.path.file_name().and_then(|n| n.to_str()).unwrap_or("rules");
        let temporary = directory.join(format!(".{name}.{}.tmp", std::process::id()));
        let result = (|| {
            let mut file = File::create(&temporary)?;
            file.write_all(bytes)?;
            file.sync_all()?;
            fs::rename(&temporary, &self.path)?;
            File::open(directory)?.sync_all()
        })();
        if result.is_err() {
            let _ = fs::remove_file(&temporary);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_path(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("kaos-persist-{}-{name}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        dir.join("rules.jsonl")
    }

    fn rule(feature: &str, body: &str) -> Rule {
        Rule::from_request("1-1", "test@conduktor.io", feature, body.as_bytes()).unwrap()
    }

    #[test]
    fn rules_and_formats_round_trip() {
        let file = RulesFile::new(temp_path("round-trip"));
        let rules = [
            rule(
                "broken-broker",
                r#"{"config":{"duration":6000,"quietPeriod":20000,"errors":["NOT_ENOUGH_REPLICAS"],"minLatencyToAddInMilliseconds":5},"apiKeys":"PRODUCE"}"#,
            ),
            rule(
                "slow-topic",
                r#"{"config":{"topicPatterns":["a.*"]},"apiKeys":"FETCH","direction":"RESPONSE"}"#,
            ),
        ];
        file.save(rules.iter(), [("1-1", "t", "JSON")].into_iter()).unwrap();
        let loaded = file.load().unwrap();
        let json = |rules: &[Rule]| rules.iter().map(|r| r.to_json()["config"].clone()).collect::<Vec<_>>();
        assert_eq!(json(&loaded.rules), json(&rules));
        assert_eq!(loaded.formats, vec![("1-1".into(), "t".into(), "JSON".into())]);
        let dir = file.path().parent().unwrap();
        assert_eq!(fs::read_dir(dir).unwrap().count(), 1, "no temporary file left behind");
    }

    #[test]
    fn a_corrupt_file_names_the_line() {
        let path = temp_path("corrupt");
        fs::write(
            &path,
            "{\"tenant\":\"t\",\"user\":\"u\",\"feature\":\"slow-broker\",\"apiKeys\":\"PRODUCE\",\"direction\":\"REQUEST\",\"config\":{}}\n\n{\"tenant\":\"t\",\"user\":\"u\",\"feature\":\"slow-broker\",\"apiKeys\":\"PROD",
        )
        .unwrap();
        let error = RulesFile::new(&path).load().unwrap_err();
        assert!(matches!(error, RulesFileError::Line { line: 3, .. }), "{error}");
        assert!(error.to_string().contains("not JSON"), "{error}");
        fs::write(&path, "{\"tenant\":\"t\",\"user\":\"u\",\"feature\":\"slow-broker\",\"apiKeys\":\"PRODUCE\",\"config\":{\"speed\":1}}\n").unwrap();
        let error = RulesFile::new(&path).load().unwrap_err();
        assert!(matches!(error, RulesFileError::Line { line: 1, .. }), "{error}");
        assert!(error.to_string().contains("config.speed"), "{error}");
        assert!(
            RulesFile::new(temp_path("missing").with_file_name("absent.jsonl"))
                .load()
                .unwrap()
                .rules
                .is_empty()
        );
    }
}
