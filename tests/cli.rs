//! The binary: generate, and the SQL REPL's commands, formats and exit codes.

mod common;

use std::io::Write;
use std::process::{Output, Stdio};

use common::bin;

fn run(args: &[&str]) -> Output {
    bin().args(args).output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

#[test]
fn generate_then_query_in_every_format() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let o = run(&[
        "generate",
        "--data",
        data,
        "--rows",
        "4000",
        "--days",
        "3",
        "--end",
        "2026-01-10",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let sql = "SELECT event_type, count(*) AS n FROM events GROUP BY 1 ORDER BY 1";

    let o = run(&["sql", "--data", data, "-c", sql]);
    assert!(o.status.success(), "{}", stderr(&o));
    let table = stdout(&o);
    assert!(
        table.contains("| event_type") && table.contains("utterance"),
        "{table}"
    );

    let o = run(&["sql", "--data", data, "-c", sql, "--format", "csv"]);
    let csv = stdout(&o);
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("event_type,n"));
    let total: u64 = lines
        .filter(|l| !l.is_empty())
        .map(|l| l.rsplit(',').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(total, 4000);

    let o = run(&["sql", "--data", data, "-c", sql, "--format", "json"]);
    let rows: Vec<serde_json::Value> = serde_json::from_str(stdout(&o).trim()).unwrap();
    let total: u64 = rows.iter().map(|r| r["n"].as_u64().unwrap()).sum();
    assert_eq!(total, 4000);
    let types: Vec<&str> = rows
        .iter()
        .map(|r| r["event_type"].as_str().unwrap())
        .collect();
    for t in [
        "session.started",
        "session.ended",
        "utterance",
        "interaction",
        "call_intelligence.row",
    ] {
        assert!(types.contains(&t), "{t} missing from {types:?}");
    }
}

#[test]
fn errors_exit_non_zero_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let o = run(&["sql", "--data", data, "-c", "SELEC 1"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("Error:"), "{}", stderr(&o));
    let o = run(&["sql", "--data", data, "-c", "SELECT nope FROM events"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("nope"), "{}", stderr(&o));
    let o = run(&["sql", "--data", data, "-c", "\\d missing"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("no table named"), "{}", stderr(&o));
    let o = run(&["sql", "--data", "ftp://x/y", "-c", "SELECT 1"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("unsupported scheme"), "{}", stderr(&o));
    let o = run(&["generate", "--data", data, "--rows", "10", "--days", "0"]);
    assert!(!o.status.success());
}

#[test]
fn backslash_commands() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let o = run(&["sql", "--data", data, "-c", "\\d"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("events"));
    let o = run(&["sql", "--data", data, "-c", "\\d events", "--format", "csv"]);
    let out = stdout(&o);
    assert!(out.contains(r#"time,"Timestamp(ms, ""UTC"")",NO"#), "{out}");
    assert!(out.contains("attributes,Utf8,YES"), "{out}");
    let o = run(&["sql", "--data", data, "-c", "\\df"]);
    let out = stdout(&o);
    for f in ["quantile", "rate", "ratio", "json_get_str"] {
        assert!(out.contains(f), "{f} missing: {out}");
    }
}

#[test]
fn interactive_session_with_multi_line_statements() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let mut child = bin()
        .args(["sql", "--data", data])
        .env("HOME", dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"SELECT 40\n  + 2 AS answer;\nSELECT broken(;\nSELECT quantile(x, 0.5) AS median FROM (VALUES (1.0), (2.0), (10.0)) t(x);\n\\q\nSELECT 'not reached';\n")
        .unwrap();
    let o = child.wait_with_output().unwrap();
    let out = stdout(&o);
    assert!(out.contains("| 42 "), "{out}");
    assert!(out.contains("| 2.0 "), "{out}");
    assert!(out.contains("row(s) in"), "{out}");
    assert!(!out.contains("not reached"), "{out}");
    assert!(stderr(&o).contains("Error:"), "{}", stderr(&o));
    assert!(o.status.success());
}

#[test]
fn json_attributes_are_queryable() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    assert!(
        run(&[
            "generate",
            "--data",
            data,
            "--rows",
            "3000",
            "--days",
            "1",
            "--end",
            "2026-01-10"
        ])
        .status
        .success()
    );
    let o = run(&[
        "sql",
        "--data",
        data,
        "--format",
        "csv",
        "-c",
        "SELECT count(*) AS n FROM events WHERE event_type = 'interaction' AND json_get_str(attributes, 'country') IS NOT NULL",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let n: u64 = stdout(&o).lines().nth(1).unwrap().parse().unwrap();
    assert!(n > 100, "{n}");
}
