//! The control plane: a tiny_http server on a plain thread beside the shards. It answers health,
//! readiness and metrics, and publishes chaos rules to the shards through arc-swap.

pub mod api;
pub mod metrics;
pub mod openapi;
pub mod persist;
pub mod topic;

use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;
use std::sync::{Arc, mpsc};
use std::time::Duration;
use std::time::Instant;

use std::io::Read;

use serde_json::{Value, json};
use tiny_http::{Header, Method, Request, Response, Server};

use api::{Handled, Reply, RuleStore};
use persist::{RulesFile, RulesFileError};
use topic::{RulesTopic, WriteId};

use crate::chaos::{FAULTS, FaultSpec};
use crate::config::Config;
use crate::events::EventRing;
use crate::shared::Shared;
use tracing::warn;

/// The largest request body the admin API reads.
const MAX_BODY: u64 = 1 << 20;

/// Why the control thread could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot serve the admin API on {addr}: {reason}")]
    Bind { addr: std::net::SocketAddr, reason: String },
    #[error(transparent)]
    RulesFile(#[from] RulesFileError),
    #[error("cannot start the control thread: {0}")]
    Thread(#[from] std::io::Error),
}

/// Binds the admin address and loads `--rules-file` now (so either failing stops start-up), or
/// starts following `--rules-topic`, then serves the API on a thread until shutdown.
pub fn spawn(config: &Config, shared: Arc<Shared>) -> Result<std::thread::JoinHandle<()>, StartError> {
    let addr = config.admin_addr;
    let server = Server::http(addr).map_err(|e| StartError::Bind { addr, reason: e.to_string() })?;
    let store = match (&config.rules_file, &config.rules_topic) {
        (Some(path), _) => RuleStore::open(RulesFile::new(path), &shared)?,
        (None, Some(topic)) => {
            RuleStore::following(RulesTopic::start(topic, config.bootstrap_servers.clone(), shared.clone())?)
        }
        (None, None) => RuleStore::default(),
    };
    let events = EventRing::new(shared.events.take_receiver(), config.events_kept);
    let mut control = Control {
        shared,
        store,
        events,
        token: config.admin_token.clone(),
        timeout: config.admin_request_timeout,
        readers: Arc::new(AtomicUsize::new(0)),
        waiting: Vec::new(),
    };
    std::thread::Builder::new()
        .name("control".into())
        .spawn(move || control.serve(&server))
        .map_err(StartError::Thread)
}

/// The control thread's state. It never blocks on a client: bodies that tiny_http has not
/// already buffered are read on a helper thread and handed back when complete.
struct Control {
    shared: Arc<Shared>,
    store: RuleStore,
    /// The recent injected faults, for `GET /events`.
    events: EventRing,
    token: Option<String>,
    timeout: Duration,
    readers: Arc<AtomicUsize>,
    /// Changes written to the rules topic, answered once read back here.
    waiting: Vec<Waiting>,
}

/// A change on its way through the rules topic.
struct Waiting {
    write: WriteId,
    /// The admin request to answer; `None` for a ttl removal.
    request: Option<Request>,
    reply: Reply,
    since: Instant,
}

/// How long a change may take to come back from the rules topic before its caller hears so.
const WRITE_WAIT: Duration = Duration::from_secs(10);

/// Body-reader threads at most; past that, requests with large bodies get a 503.
const MAX_BODY_READERS: usize = 16;
/// tiny_http reads bodies up to this size before handing the request over.
const BUFFERED_BODY: usize = 1024;

type ReadBody = (Request, std::io::Result<Vec<u8>>, Instant);

impl Control {
    fn serve(&mut self, server: &Server) {
        let (done, finished) = mpsc::channel::<ReadBody>();
        while !self.shared.shutting_down.load(Ordering::Relaxed) {
            while let Ok((request, body, started)) = finished.try_recv() {
                let body = body.and_then(|body| {
                    if started.elapsed() > self.timeout {
                        Err(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            "body arrived after --admin-request-timeout",
                        ))
                    } else {
                        Ok(body)
                    }
                });
                self.respond(request, body);
            }
            if let Some(write) = self.store.expire(&self.shared) {
                self.waiting.push(Waiting {
                    write,
                    request: None,
                    reply: (200, Value::Null),
                    since: Instant::now(),
                });
            }
            self.settle_writes();
            self.events.drain();
            let mut request = match server.recv_timeout(Duration::from_millis(20)) {
                Ok(Some(request)) => request,
                Ok(None) => continue,
                Err(e) => {
                    warn!(error = %e, "admin API receive failed");
                    continue;
                }
            };
            if request.body_length().is_some_and(|length| length <= BUFFERED_BODY) {
                let body = read_body(&mut request);
                self.respond(request, body);
            } else if self.readers.load(Ordering::Relaxed) >= MAX_BODY_READERS {
                let busy = json!({"error": "too many admin requests still sending their bodies; try again"});
                answer(request, 503, JSON, busy.to_string());
            } else {
                self.readers.fetch_add(1, Ordering::Relaxed);
                let (done, readers) = (done.clone(), self.readers.clone());
                let spawned = std::thread::Builder::new().name("admin-body".into()).spawn(move || {
                    let started = Instant::now();
                    let body = read_body(&mut request);
                    readers.fetch_sub(1, Ordering::Relaxed);
                    let _ = done.send((request, body, started));
                });
                if let Err(e) = spawned {
                    self.readers.fetch_sub(1, Ordering::Relaxed);
                    warn!(error = %e, "admin API cannot start a body reader");
                }
            }
        }
    }

    /// Answers the changes the rules topic has settled, and those it took too long over.
    fn settle_writes(&mut self) {
        let settled = self.store.follow(&self.shared);
        let mut waiting = std::mem::take(&mut self.waiting);
        waiting.retain_mut(|change| {
            let outcome = match settled.iter().find(|(write, _)| *write == change.write) {
                Some((_, outcome)) => outcome.clone(),
                None if change.since.elapsed() < WRITE_WAIT => return true,
                None => Err(format!(
                    "written to the rules topic but not read back within {} s; GET /rules shows whether it took effect",
                    WRITE_WAIT.as_secs()
                )),
            };
            let (status, body) = match outcome {
                Ok(()) => std::mem::replace(&mut change.reply, (0, Value::Null)),
                Err(why) => (503, json!({ "error": format!("not applied: {why}") })),
            };
            match change.request.take() {
                Some(request) => answer(request, status, JSON, body.to_string()),
                None if status != 200 => self.store.expiry_failed(),
                None => {}
            }
            false
        });
        self.waiting = waiting;
    }

    fn respond(&mut self, request: Request, body: std::io::Result<Vec<u8>>) {
        let path = request.url().split('?').next().unwrap_or_default().to_owned();
        let authorized = self.token.as_deref().is_none_or(|token| {
            OPEN_PATHS.contains(&path.as_str())
                || request.headers().iter().any(|h| {
                    h.field.equiv("Authorization") && h.value.as_str().strip_prefix("Bearer ") == Some(token)
                })
        });
        let (status, content_type, text) = match body {
            _ if !authorized => (
                401,
                JSON,
                json!({"error": "missing or wrong bearer token (Authorization: Bearer ...)"}).to_string(),
            ),
            Err(e) => (
                408,
                JSON,
                json!({"error": format!("request body not received: {e}"), "field": "body"}).to_string(),
            ),
            Ok(body) if body.len() as u64 > MAX_BODY => (
                413,
                JSON,
                json!({"error": format!("request body over {MAX_BODY} bytes"), "field": "body"}).to_string(),
            ),
            Ok(body) => {
                self.events.drain();
                match route(
                    request.method(),
                    request.url(),
                    &body,
                    &self.shared,
                    &mut self.store,
                    &self.events,
                ) {
                    Routed::Answer(status, content_type, text) => (status, content_type, text),
                    Routed::AfterWrite { write, reply } => {
                        let request = Some(request);
                        self.waiting.push(Waiting { write, request, reply, since: Instant::now() });
                        return;
                    }
                }
            }
        };
        answer(request, status, content_type, text);
    }
}

fn read_body(request: &mut Request) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    request.as_reader().take(MAX_BODY + 1).read_to_end(&mut body)?;
    Ok(body)
}

fn answer(request: Request, status: u16, content_type: &str, text: String) {
    let header = Header::from_bytes("Content-Type", content_type).expect("static header is valid");
    let response = Response::from_string(text).with_status_code(status).with_header(header);
    if let Err(e) = request.respond(response) {
        warn!(error = %e, "admin API could not answer");
    }
}

/// Paths served without the bearer token: probes and the console's static files.
const OPEN_PATHS: [&str; 5] = ["/health", "/ready", "/", "/console.js", "/console.css"];

const JSON: &str = "application/json";
/// A shard whose 100 ms housekeeping has not run for this long is reported by `/health`, so a
/// liveness probe restarts a kaos with a stalled shard. Long enough that a busy 2-core machine
/// never trips it.
const STALLED_SHARD: Duration = Duration::from_secs(10);

/// Every route the admin server answers, as (method, path template). The OpenAPI document lists
/// exactly these; a test keeps the two in step.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/"),
    ("GET", "/console.js"),
    ("GET", "/console.css"),
    ("GET", "/health"),
    ("GET", "/ready"),
    ("GET", "/metrics"),
    ("GET", "/stats"),
    ("GET", "/openapi.json"),
    ("GET", "/rules"),
    ("PUT", "/rules"),
    ("DELETE", "/rules"),
    ("GET", "/features"),
    ("GET", "/events"),
    ("POST", "/tenant/{tenant}/user/{user}/feature/{feature}"),
    ("DELETE", "/tenant/{tenant}/user/{user}/feature/{feature}/apiKeys/{apiKey}/direction/{direction}"),
    ("GET", "/tenant/{tenant}/user/{user}/feature"),
    ("POST", "/tenant"),
    ("GET", "/tenant"),
];

const CONSOLE_HTML: &str = include_str!("console/index.html");
const CONSOLE_JS: &str = include_str!("console/console.js");
const CONSOLE_CSS: &str = include_str!("console/console.css");

/// What a route makes of a request.
#[derive(Debug)]
enum Routed {
    /// Status, content type and body.
    Answer(u16, &'static str, String),
    /// A change answered once the rules topic has it.
    AfterWrite { write: WriteId, reply: Reply },
}

/// The brokers the cluster names that kaos could not reach at its last look: node id, and why.
fn unreachable_brokers(shared: &Shared) -> serde_json::Map<String, Value> {
    shared
        .topology
        .load()
        .unreachable
        .iter()
        .map(|(node, why)| (node.to_string(), Value::from(why.as_str())))
        .collect()
}

fn route(
    method: &Method,
    url: &str,
    body: &[u8],
    shared: &Arc<Shared>,
    store: &mut RuleStore,
    events: &EventRing,
) -> Routed {
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let ready = shared.upstream_ready.load(Ordering::Relaxed);
    let (status, content_type, text) = match (method, path) {
        (Method::Get, "/") => (200, "text/html; charset=utf-8", CONSOLE_HTML.into()),
        (Method::Get, "/console.js") => (200, "text/javascript; charset=utf-8", CONSOLE_JS.into()),
        (Method::Get, "/console.css") => (200, "text/css; charset=utf-8", CONSOLE_CSS.into()),
        (Method::Get, "/health") => match shared.liveness.stalled(STALLED_SHARD) {
            // A draining shard stops its housekeeping on purpose.
            Some((shard, silent)) if !shared.shutting_down.load(Ordering::Relaxed) => {
                let reason = format!("shard {shard} has not run for {:.1} s", silent.as_secs_f64());
                (503, JSON, json!({ "status": "stalled", "reason": reason }).to_string())
            }
            _ => (200, JSON, r#"{"status":"ok"}"#.into()),
        },
        (Method::Get, "/ready") => match shared.upstream_login_failure.load_full() {
            Some(why) => (503, JSON, json!({ "ready": false, "reason": why.as_str() }).to_string()),
            None if let Some(why) = store.not_ready() => {
                (503, JSON, json!({ "ready": false, "reason": why }).to_string())
            }
            None if ready => match unreachable_brokers(shared) {
                unreachable if unreachable.is_empty() => (200, JSON, r#"{"ready":true}"#.into()),
                unreachable => {
                    (200, JSON, json!({ "ready": true, "unreachableBrokers": unreachable }).to_string())
                }
            },
            None => {
                let reason = "upstream cluster has not answered Metadata: no broker answers";
                let body = json!({ "ready": false, "reason": reason, "unreachableBrokers": unreachable_brokers(shared) });
                (503, JSON, body.to_string())
            }
        },
        (Method::Get, "/metrics") => (200, metrics::CONTENT_TYPE, metrics::render(shared)),
        (Method::Get, "/openapi.json") => (200, JSON, openapi::document().to_string()),
        (Method::Get, "/features") => {
            (200, JSON, Value::from(FAULTS.iter().map(FaultSpec::describe).collect::<Vec<_>>()).to_string())
        }
        (Method::Get, "/events") => match events_query(query) {
            Ok((since, limit)) => (200, JSON, events.after(since, limit).to_string()),
            Err((field, why)) => (400, JSON, json!({"error": why, "field": field}).to_string()),
        },
        (Method::Get, "/stats") => {
            let mut stats = metrics::stats(&shared.shard_metrics);
            stats["upstreamReady"] = ready.into();
            stats["rules"] = shared.rules.load().rules().iter().map(|r| r.to_json()).collect();
            (200, JSON, stats.to_string())
        }
        _ => match store.handle(method.as_str(), path, body, shared) {
            Some(Handled::Reply((status, value))) => (status, JSON, value.to_string()),
            Some(Handled::AfterWrite { write, reply }) => return Routed::AfterWrite { write, reply },
            None => {
                let allowed: Vec<&str> = ROUTES
                    .iter()
                    .filter(|(_, template)| matches_template(template, path))
                    .map(|(m, _)| *m)
                    .collect();
                if allowed.is_empty() {
                    (404, JSON, json!({ "error": format!("no route for {method} {path}") }).to_string())
                } else {
                    let error = format!("{method} is not allowed on {path}; allowed: {}", allowed.join(", "));
                    (405, JSON, json!({ "error": error, "allowed": allowed }).to_string())
                }
            }
        },
    };
    Routed::Answer(status, content_type, text)
}

/// `GET /events`' query: `since` (a sequence number, default 0: the most recent) and `limit`
/// (default 100, at most 10,000).
fn events_query(query: &str) -> Result<(u64, usize), (&'static str, String)> {
    let (mut since, mut limit) = (0, 100);
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        match name {
            "since" => {
                since = value.parse().map_err(|_| ("since", format!("not a sequence number: '{value}'")))?
            }
            "limit" => {
                limit = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=10_000).contains(n))
                    .ok_or_else(|| ("limit", format!("must be 1 to 10000, got '{value}'")))?
            }
            _ => {}
        }
    }
    Ok((since, limit))
}

/// Whether `path` fits a route template such as `/tenant/{tenant}/user/{user}/feature`.
fn matches_template(template: &str, path: &str) -> bool {
    let (template, path): (Vec<_>, Vec<_>) = (template.split('/').collect(), path.split('/').collect());
    template.len() == path.len()
        && template.iter().zip(&path).all(|(t, p)| t == p || (t.starts_with('{') && !p.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Routes a request that is answered at once (no rules topic here).
    fn route_now(
        method: &Method,
        url: &str,
        body: &[u8],
        shared: &Arc<Shared>,
        store: &mut RuleStore,
        events: &EventRing,
    ) -> (u16, &'static str, String) {
        match route(method, url, body, shared, store, events) {
            Routed::Answer(status, content_type, text) => (status, content_type, text),
            other => panic!("answered later: {other:?}"),
        }
    }

    /// A concrete path for a template, with sample values for its parameters.
    fn sample(template: &str) -> String {
        template
            .replace("{tenant}", "1-1")
            .replace("{user}", "u")
            .replace("{feature}", "slow-broker")
            .replace("{apiKey}", "PRODUCE")
            .replace("{direction}", "REQUEST")
    }

    #[test]
    fn every_route_is_answered_and_documented() {
        let shared = Arc::new(Shared::new(1));
        let mut store = RuleStore::default();
        let events = EventRing::new(None, 10);
        for (method, template) in ROUTES {
            let method: Method = method.parse().unwrap();
            let body = br#"{"apiKeys":"PRODUCE"}"#;
            let (_, _, body) = route_now(&method, &sample(template), body, &shared, &mut store, &events);
            assert!(!body.contains("no route for"), "{method} {template} is not routed");
        }
        let (status, _, body) = route_now(&Method::Get, "/events?since=x", b"", &shared, &mut store, &events);
        assert!(status == 400 && body.contains(r#""field":"since""#), "{body}");
        let (status, _, body) = route_now(&Method::Get, "/events?limit=0", b"", &shared, &mut store, &events);
        assert!(status == 400 && body.contains(r#""field":"limit""#), "{body}");
        let document = openapi::document();
        let mut documented: Vec<(String, String)> = Vec::new();
        for (path, operations) in document["paths"].as_object().expect("paths") {
            for method in operations.as_object().expect("operations").keys() {
                documented.push((method.to_uppercase(), path.clone()));
            }
        }
        let mut routes: Vec<(String, String)> =
            ROUTES.iter().map(|(m, p)| (m.to_string(), p.to_string())).collect();
        documented.sort();
        routes.sort();
        assert_eq!(documented, routes, "openapi.json and ROUTES differ");
    }

    #[test]
    fn unknown_routes_get_404_and_wrong_methods_405() {
        let shared = Arc::new(Shared::new(1));
        let events = EventRing::new(None, 10);
        let call = |method: Method, path: &str| {
            route_now(&method, path, b"", &shared, &mut RuleStore::default(), &events)
        };
        let (status, _, body) = call(Method::Get, "/nope");
        assert_eq!(status, 404);
        assert!(body.contains("no route for GET /nope"));
        let (status, _, body) = call(Method::Put, "/tenant/t/user/u/feature/slow-broker");
        assert_eq!(status, 405, "{body}");
        assert!(body.contains("POST"), "{body}");
        assert_eq!(call(Method::Delete, "/health").0, 405);
    }
}
