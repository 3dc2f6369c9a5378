//! The control plane: a tiny_http server on a plain thread beside the shards. It answers health,
//! readiness and metrics, and publishes chaos rules to the shards through arc-swap.

pub mod metrics;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tiny_http::{Header, Method, Request, Response, Server};

use crate::shared::Shared;
use crate::warn;

/// Binds the admin address now (so a bad address fails start-up) and serves it on a thread
/// until shutdown.
pub fn spawn(addr: SocketAddr, shared: Arc<Shared>) -> Result<std::thread::JoinHandle<()>, String> {
    let server = Server::http(addr).map_err(|e| format!("cannot serve the admin API on {addr}: {e}"))?;
    std::thread::Builder::new()
        .name("control".into())
        .spawn(move || {
            while !shared.shutting_down.load(Ordering::Relaxed) {
                match server.recv_timeout(Duration::from_millis(100)) {
                    Ok(Some(request)) => respond(request, &shared),
                    Ok(None) => {}
                    Err(e) => warn!("admin API receive failed: {e}"),
                }
            }
        })
        .map_err(|e| e.to_string())
}

fn respond(request: Request, shared: &Shared) {
    let (status, content_type, body) = route(request.method(), request.url(), shared);
    let header = Header::from_bytes("Content-Type", content_type).expect("static header is valid");
    let response = Response::from_string(body).with_status_code(status).with_header(header);
    if let Err(e) = request.respond(response) {
        warn!("admin API could not answer: {e}");
    }
}

const JSON: &str = "application/json";

fn route(method: &Method, url: &str, shared: &Shared) -> (u16, &'static str, String) {
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
        (Method::Get, "/rules") => {
            let rules = shared.rules.load();
            (200, JSON, serde_json::to_string(&rules.rules).unwrap_or_else(|_| "[]".into()))
        }
        _ => (404, JSON, serde_json::json!({ "error": format!("no route for {method} {path}") }).to_string()),
    }
}
