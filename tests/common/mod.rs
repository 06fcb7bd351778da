//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub(crate) mod metric_store_oracle;
pub(crate) mod oracle;
pub(crate) mod shape;
pub(crate) mod webdriver;

use std::path::Path;

use chrono::NaiveDate;
use metricstore::engine::Engine;
use metricstore::generate::{self, Options};
use metricstore::storage::Store;

/// Generates `rows` demo events over `days` days ending 2026-01-10 into
/// `dir` and opens an engine on it.
pub(crate) async fn demo_engine(dir: &Path, rows: u64, days: u32) -> Engine {
    let store = Store::open(dir.to_str().unwrap()).unwrap();
    let opts = Options {
        rows,
        days,
        seed: 7,
        end: NaiveDate::from_ymd_opt(2026, 1, 10).unwrap(),
    };
    generate::generate(&store, &opts).await.unwrap();
    metricstore::repl::session(store).await.unwrap()
}

/// Builds the rollups of every day with events in `engine`'s store (as a
/// server's first background build would).
pub(crate) async fn build_rollups(engine: &Engine) -> std::sync::Arc<metricstore::engine::Rollups> {
    let rollups = metricstore::engine::Rollups::open(&engine.store)
        .await
        .unwrap();
    rollups.build(engine, None).await.unwrap();
    rollups
}

/// The binary under test: this build's, or `METRICSTORE_TEST_BIN` (e.g. a
/// release build for the long load run).
pub(crate) fn bin() -> std::process::Command {
    match std::env::var_os("METRICSTORE_TEST_BIN") {
        Some(path) => std::process::Command::new(path),
        None => std::process::Command::new(env!("CARGO_BIN_EXE_metricstore")),
    }
}

/// Loads a JSON-lines event fixture into `dir` and opens an engine on it.
pub(crate) async fn fixture_engine(dir: &Path, fixture: &str) -> Engine {
    let store = Store::open(dir.to_str().unwrap()).unwrap();
    let rows = read_fixture(fixture);
    metricstore::storage::events::write_rows(&store, "fixture", &rows)
        .await
        .unwrap();
    metricstore::repl::session(store).await.unwrap()
}

/// The events of a JSON-lines fixture.
pub(crate) fn read_fixture(fixture: &str) -> Vec<metricstore::storage::events::EventRow> {
    std::fs::read_to_string(fixture)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            metricstore::storage::events::EventRow::from_json(&serde_json::from_str(l).unwrap())
                .unwrap()
        })
        .collect()
}

/// Every event row under `dir`, read straight from the Parquet files (not
/// through the engine), for independent computations.
pub(crate) fn read_events(dir: &Path) -> Vec<metricstore::storage::events::EventRow> {
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::datatypes::{Float64Type, TimestampMillisecondType};
    use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let mut rows = Vec::new();
    let mut stack = vec![dir.join("events")];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "parquet") {
                continue;
            }
            let reader =
                ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&path).unwrap())
                    .unwrap()
                    .build()
                    .unwrap();
            for batch in reader {
                let b = batch.unwrap();
                let s = |name: &str, i: usize| {
                    let a = b.column_by_name(name).unwrap().as_string::<i32>();
                    a.is_valid(i).then(|| a.value(i).to_string())
                };
                let t = b
                    .column_by_name("time")
                    .unwrap()
                    .as_primitive::<TimestampMillisecondType>();
                let l = b
                    .column_by_name("latency_ms")
                    .unwrap()
                    .as_primitive::<Float64Type>();
                for i in 0..b.num_rows() {
                    rows.push(metricstore::storage::events::EventRow {
                        time: t.value(i),
                        workspace_id: s("workspace_id", i).unwrap(),
                        event_type: s("event_type", i).unwrap(),
                        user_id: s("user_id", i),
                        session_id: s("session_id", i),
                        stage: s("stage", i),
                        locale: s("locale", i),
                        channel: s("channel", i),
                        direction: s("direction", i),
                        intent: s("intent", i),
                        outcome: s("outcome", i),
                        latency_ms: l.is_valid(i).then(|| l.value(i)),
                        resource_type: s("resource_type", i),
                        resource_id: s("resource_id", i),
                        action: s("action", i),
                        origin: s("origin", i),
                        attributes: s("attributes", i),
                    });
                }
            }
        }
    }
    rows
}

/// A `metricstore serve` child process, killed on drop.
pub(crate) struct Server {
    pub child: std::process::Child,
    pub base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `metricstore serve` on a free loopback port over `data`.
pub(crate) fn serve(data: &str, tokens: &str, now: &str) -> Server {
    serve_with_env(data, tokens, now, &[])
}

/// As [`serve`], with extra environment variables (e.g. `AWS_*`).
pub(crate) fn serve_with_env(data: &str, tokens: &str, now: &str, env: &[(&str, &str)]) -> Server {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = bin()
        .args([
            "serve",
            "--data",
            data,
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--rate-limit",
            "0",
        ])
        .env("METRICSTORE_TOKENS", tokens)
        .env("METRICSTORE_NOW", now)
        // Tests that want the scheduled Metric Store pipeline turn it on.
        .env("METRICSTORE_PIPELINE_INTERVAL", "0")
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let server = Server {
        child,
        base: format!("http://127.0.0.1:{port}"),
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "server did not start");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    server
}
