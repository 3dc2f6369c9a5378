//! The admin API as an operator meets it: rules that survive a restart, a corrupt rules file,
//! bearer-token auth, and a slow client that cannot hold the control thread.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{Kaos, Tansu, http};

fn rules_path(name: &str) -> std::path::PathBuf {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("admin-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("rules.jsonl")
}

#[test]
fn rules_survive_a_restart() {
    let tansu = Tansu::start();
    let path = rules_path("restart");
    let _ = std::fs::remove_file(&path);
    let file = path.to_str().unwrap();
    let mut first = Kaos::start(&tansu.address(), &["--rules-file", file]);
    first.add_rule(
        "slow-broker",
        r#"{"config":{"minLatencyToAddInMilliseconds":5},"apiKeys":"PRODUCE","direction":"REQUEST"}"#,
    );
    first.add_rule(
        "random-bytes",
        r#"{"config":{"topics":["t"],"sizeInBytes":3},"apiKeys":"PRODUCE","direction":"REQUEST"}"#,
    );
    first.delete_rule("slow-broker", "PRODUCE", "REQUEST");
    let (status, _) =
        http(first.admin_port, "POST", "/tenant", r#"{"tenant":"1-1","topic":"t","messageFormat":"AVRO"}"#)
            .unwrap();
    assert_eq!(status, 200);
    let before = first.get("/rules").1;
    assert!(first.terminate().expect("exits").success());

    let second = Kaos::start(&tansu.address(), &["--rules-file", file]);
    let after = second.get("/rules").1;
    let strip = |text: &str| {
        let mut rules: serde_json::Value = serde_json::from_str(text).unwrap();
        for rule in rules.as_array_mut().unwrap() {
            rule.as_object_mut().unwrap().remove("createdAtMs");
        }
        rules
    };
    assert_eq!(strip(&after), strip(&before), "the same rules after a restart");
    assert_eq!(strip(&after).as_array().unwrap().len(), 1);
    assert!(second.get("/tenant").1.contains("AVRO"));
    assert!(second.log().contains("loaded 1 chaos rules"));
}

#[test]
fn a_rule_deleted_last_stays_deleted_after_a_restart() {
    let tansu = Tansu::start();
    let path = rules_path("delete-last");
    let _ = std::fs::remove_file(&path);
    let file = path.to_str().unwrap();
    let mut first = Kaos::start(&tansu.address(), &["--rules-file", file]);
    first.add_rule("duplicate-resource", r#"{"config":{},"apiKeys":"PRODUCE","direction":"REQUEST"}"#);
    first.add_rule("slow-broker", r#"{"config":{},"apiKeys":"FETCH","direction":"RESPONSE"}"#);
    first.delete_rule("slow-broker", "FETCH", "RESPONSE");
    first.delete_rule("duplicate-resource", "PRODUCE", "REQUEST");
    assert_eq!(first.get("/rules").1, "[]");
    assert!(first.terminate().expect("exits").success());

    let second = Kaos::start(&tansu.address(), &["--rules-file", file]);
    assert_eq!(second.get("/rules").1, "[]", "a deleted rule must not come back");
    assert!(!second.log().contains("loaded"), "nothing to load: {}", second.log());
}

#[test]
fn idle_connections_do_not_stall_the_admin_api() {
    let tansu = Tansu::start();
    let kaos = Kaos::start(&tansu.address(), &[]);
    // Connections that connect and send nothing, opened in bursts as a port scanner or a stuck
    // client would; between bursts the API must still answer at once.
    let mut idle = Vec::new();
    for round in 0..12 {
        for _ in 0..8 {
            idle.push(TcpStream::connect(("127.0.0.1", kaos.admin_port)).unwrap());
        }
        let started = Instant::now();
        let (status, _) = kaos.get("/health");
        assert_eq!(status, 200, "round {round}: /health with {} idle connections", idle.len());
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "round {round}: /health took {:?} with {} idle connections",
            started.elapsed(),
            idle.len()
        );
    }
}

#[test]
fn a_corrupt_rules_file_stops_start_up_naming_the_line() {
    let path = rules_path("corrupt");
    std::fs::write(
        &path,
        "{\"tenant\":\"t\",\"user\":\"u\",\"feature\":\"slow-broker\",\"apiKeys\":\"PRODUCE\",\"direction\":\"REQUEST\",\"config\":{}}\n{\"tenant\":\"t\",\"user\":\"u\",\"feature\":\"slow-bro",
    )
    .unwrap();
    let (status, stderr) = common::kaos_refusing_to_start(&["--rules-file", path.to_str().unwrap()]);
    assert!(!status.success());
    assert!(stderr.contains("line 2"), "{stderr}");
}

#[test]
fn a_token_guards_the_api_but_not_the_probes() {
    let tansu = Tansu::start();
    let kaos = Kaos::start(&tansu.address(), &["--admin-token", "s3cret"]);
    assert_eq!(kaos.get("/health").0, 200);
    assert_eq!(kaos.get("/ready").0, 200);
    assert_eq!(kaos.get("/rules").0, 401);
    assert_eq!(kaos.get("/metrics").0, 401);
    let mut stream = TcpStream::connect(("127.0.0.1", kaos.admin_port)).unwrap();
    write!(stream, "GET /rules HTTP/1.0\r\nAuthorization: Bearer s3cret\r\n\r\n").unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[test]
fn a_slow_client_cannot_hold_the_control_thread() {
    let tansu = Tansu::start();
    let kaos = Kaos::start(&tansu.address(), &["--admin-request-timeout", "500ms"]);
    let body = format!(
        r#"{{"tenant":"1-1","topic":"slow","messageFormat":"JSON","padding":"{}"}}"#,
        "x".repeat(4000)
    );
    let mut slow = TcpStream::connect(("127.0.0.1", kaos.admin_port)).unwrap();
    write!(
        slow,
        "POST /tenant HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{}",
        body.len(),
        &body[..100]
    )
    .unwrap();
    for _ in 0..3 {
        assert_eq!(kaos.get("/health").0, 200, "the API answers while a client stalls");
    }
    std::thread::sleep(Duration::from_millis(800));
    slow.write_all(&body.as_bytes()[100..]).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut answer = String::new();
    let _ = slow.read_to_string(&mut answer);
    assert!(answer.contains(" 408 "), "a body slower than the timeout gets a 408: {answer:?}");
    assert!(!kaos.get("/tenant").1.contains("slow"), "and is not applied");
}

#[test]
fn the_openapi_document_lists_every_route() {
    let tansu = Tansu::start();
    let kaos = Kaos::start(&tansu.address(), &[]);
    let (status, body) = kaos.get("/openapi.json");
    assert_eq!(status, 200);
    let document: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(document["openapi"].as_str().map(|v| &v[..2]), Some("3."));
    assert!(document["paths"]["/tenant/{tenant}/user/{user}/feature/{feature}"]["post"].is_object());
}
