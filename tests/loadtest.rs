//! kaos-loadtest against kaos and tansu: it must report what chaos did to the application.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{Kaos, Tansu};

fn loadtest_bin() -> PathBuf {
    let path = std::env::var_os("KAOS_LOADTEST_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/release/kaos-loadtest"));
    assert!(path.exists(), "{} is missing: run `cargo build --release --workspace` first", path.display());
    path
}

/// Runs the tool; returns its exit code, JSON summary and printed report.
fn run(kaos: &Kaos, topic: &str, extra: &[&str]) -> (i32, serde_json::Value, String) {
    let summary = std::env::temp_dir().join(format!("kaos-loadtest-{}-{topic}.json", std::process::id()));
    let output = Command::new(loadtest_bin())
        .args([
            "--bootstrap-servers",
            &kaos.bootstrap(),
            "--admin-addr",
            &format!("127.0.0.1:{}", kaos.admin_port),
        ])
        .args(["--topic", topic, "--partitions", "2", "--rate", "500", "--duration", "4"])
        .arg("--summary-json")
        .arg(&summary)
        .args(extra)
        .output()
        .expect("kaos-loadtest runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let text = std::fs::read_to_string(&summary).unwrap_or_else(|_| {
        panic!("no summary; stdout:\n{stdout}\nstderr:\n{}", String::from_utf8_lossy(&output.stderr))
    });
    let _ = std::fs::remove_file(&summary);
    let summary = serde_json::from_str(&text).expect("JSON summary");
    (output.status.code().unwrap_or(-1), summary, stdout.into_owned())
}

#[test]
fn duplicates_injected_by_kaos_are_reported() {
    let tansu = Tansu::start();
    let kaos = Kaos::start(&tansu.address(), &[]);
    let chaos = r#"1:2:duplicate-resource:{"config":{},"apiKeys":"PRODUCE","direction":"REQUEST"}"#;
    let plain = ["--producer-config", "enable.idempotence=false", "--producer-config", "linger.ms=20"];
    let (code, summary, _) =
        run(&kaos, "dups", &[&plain[..], &["--chaos", chaos, "--fail-on-duplicates"]].concat());
    let duplicates = summary["consumed"]["duplicates"].as_u64().unwrap();
    assert!(duplicates > 0, "duplicates reported: {summary}");
    assert_eq!(summary["lost"], 0);
    assert_eq!(code, 1, "--fail-on-duplicates makes duplicates fail the run");
    let unique = summary["consumed"]["unique"].as_u64().unwrap();
    assert_eq!(summary["consumed"]["records"].as_u64().unwrap(), unique + duplicates);
    assert_eq!(summary["chaos"].as_array().unwrap().len(), 2, "switched on and off: {summary}");
    assert_eq!(kaos.get("/rules").1, "[]", "the run leaves kaos clean");

    // The same run without chaos reads every record exactly once.
    let (code, summary, _) = run(&kaos, "clean", &plain);
    assert_eq!((code, summary["consumed"]["duplicates"].as_u64()), (0, Some(0)), "{summary}");
}

#[test]
fn lost_records_fail_the_run() {
    let tansu = Tansu::start();
    let kaos = Kaos::start(&tansu.address(), &[]);
    // acks=0: the producer counts every record as delivered, while kaos drops them for 2 s.
    let chaos = r#"1:2:broken-broker:{"config":{},"apiKeys":"PRODUCE","direction":"REQUEST"}"#;
    let (code, summary, _) =
        run(&kaos, "lossy", &["--producer-config", "acks=0", "--chaos", chaos, "--drain-timeout", "5"]);
    assert!(summary["lost"].as_u64().unwrap() > 0, "{summary}");
    assert_eq!(code, 1, "data loss fails the run");
    let per_partition: u64 =
        summary["partitions"].as_array().unwrap().iter().map(|p| p["lost"].as_u64().unwrap()).sum();
    assert_eq!(per_partition, summary["lost"].as_u64().unwrap());
}

#[test]
fn a_producer_that_dies_fails_the_run_and_says_so() {
    let tansu = Tansu::start();
    let kaos = Kaos::start(&tansu.address(), &[]);
    // PRODUCER_FENCED is fatal to an idempotent producer: it can send nothing after it.
    let chaos = r#"1:2:broken-broker:{"config":{"errors":["PRODUCER_FENCED"]},"apiKeys":"PRODUCE","direction":"REQUEST"}"#;
    let (code, summary, stdout) =
        run(&kaos, "fenced", &["--chaos", chaos, "--producer-config", "enable.idempotence=true"]);
    assert_eq!(code, 1, "a dead producer fails the run:\n{stdout}");
    assert!(summary["produced"]["fatal"]["0"].is_string(), "the summary names it: {summary}");
    assert!(stdout.contains("RESULT: PRODUCERS DIED"), "{stdout}");
    assert!(stdout.contains("producer 0 died"), "the fatal error is named:\n{stdout}");
    assert!(!stdout.contains("NO LOSS"), "{stdout}");
}
