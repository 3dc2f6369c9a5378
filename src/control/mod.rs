//! The control plane: a tiny_http server on a plain thread beside the shards. It answers health,
//! readiness and metrics, and publishes chaos rules to the shards through arc-swap.

pub mod api;
pub mod metrics;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use std::io::Read;

use serde_json::json;
use tiny_http::{Header, Method, Request, Response, Server};

use api::RuleStore;

use crate::shared::Shared;
use crate::warn;

/// The largest request body the admin API reads.
const MAX_BODY: u64 = 1 << 20;

/// Binds the admin address now (so a bad address fails start-up) and serves it on a thread
/// until shutdown.
pub fn spawn(addr: SocketAddr, shared: Arc<Shared>) -> Result<std::thread::JoinHandle<()>, String> {
    let server = Server::http(addr).map_err(|e| format!("cannot serve the admin API on {addr}: {e}"))?;
    std::thread::Builder::new()
        .name("control".into())
        .spawn(move || {
            let mut store = RuleStore::default();
            while !shared.shutting_down.load(Ordering::Relaxed) {
                match server.recv_timeout(Duration::from_millis(100)) {
                    Ok(Some(request)) => respond(request, &shared, &mut store),
                    Ok(None) => {}
                    Err(e) => warn!("admin API receive failed: {e}"),
                }
            }
        })
        .map_err(|e| e.to_string())
}

fn respond(mut request: Request, shared: &Shared, store: &mut RuleStore) {
    let mut body = Vec::new();
    let read = request.as_reader().take(MAX_BODY + 1).read_to_end(&mut body);
    let (status, content_type, text) = if read.is_err() || body.len() as u64 > MAX_BODY {
        (
            413,
            JSON,
            json!({"error": format!("request body over {MAX_BODY} bytes"), "field": "body"}).to_string(),
        )
    } else {
        route(request.method(), request.url(), &body, shared, store)
    };
    let header = Header::from_bytes("Content-Type", content_type).expect("static header is valid");
    let response = Response::from_string(text).with_status_code(status).with_header(header);
    if let Err(e) = request.respond(response) {
        warn!("admin API could not answer: {e}");
    }
}

const JSON: &str = "application/json";

fn route(
    method: &Method,
    url: &str,
    body: &[u8],
    shared: &Shared,
    store: &mut RuleStore,
) -> (u16, &'static str, String) {
    let path = url.split('?').next().unwrap_or(url);
    match (method, path) {
        (Method::Get, "/health") => (200, JSON, r#"{"status":"ok"}"#.into()),
        (Method::Get, "/ready") => {
            if shared.upstream_ready.load(Ordering::Relaxed) {
                (200, JSON, r#"{"ready":true}"#.into())
            } else {
                (503, JSON, r#"{"ready":false,"reason":"upstream cluster has not answered Metadata"}"#.into())
            }
        }
        (Method::Get, "/metrics") => (
            200,
            "text/plain; version=0.0.4",
            metrics::render(&shared.shard_metrics, shared.upstream_ready.load(Ordering::Relaxed)),
        ),
        _ => match store.handle(method.as_str(), path, body, shared) {
            Some((status, value)) => (status, JSON, value.to_string()),
            None => (404, JSON, json!({ "error": format!("no route for {method} {path}") }).to_string()),
        },
    }
}
