//! Load: the dashboard's skill Metrics request from many clients at once
//! while an ingest stream runs. Every request is answered 200, 429 or 503
//! (with `Retry-After`), the server's memory stays under its query memory
//! pool plus a stated margin, and every acknowledged event is there at the
//! end (counted after a kill and a restart's recovery).
//!
//! `cargo test` runs 16 clients for 8 s over 100k events; the long run
//! (with the server from a release build) is
//! `METRICSTORE_TEST_BIN=target/release/metricstore METRICSTORE_LOAD_CLIENTS=64
//! METRICSTORE_LOAD_SECONDS=60 METRICSTORE_LOAD_ROWS=1000000 cargo test --test load -- --nocapture`.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

const TOKEN: &str = "load-admin-token-1";
const SKILL: &str = "amzn1.ask.skill.demo-trivia";
/// The server's query memory pool, and what RSS may exceed it by
/// (allocator, Tokio, the id dictionary, HTTP buffers, ingest backlog).
const POOL_MB: u64 = 512;
const MARGIN_MB: u64 = 512;
const BATCH: u64 = 50;

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Peak resident memory of process `pid`, in MB (Linux).
fn peak_rss_mb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024)
}

fn dashboard_body() -> serde_json::Value {
    json!({"startTime": "2025-12-12T00:00:00Z", "endTime": "2026-01-11T00:00:00Z", "metricQueries": [
        {"id": "customers", "metricNamespace": "Alexa.Custom", "name": "CUSTOMERS", "aggregationPeriod": "BY_DAY"},
        {"id": "utterances", "metricNamespace": "Alexa.Custom", "name": "UTTERANCES", "aggregationPeriod": "BY_DAY"},
        {"id": "failed", "metricNamespace": "Alexa.Custom", "name": "FAILED_UTTERANCES", "aggregationPeriod": "SINGLE", "groupBy": "intent"},
        {"id": "latency", "metricNamespace": "Alexa.Custom", "name": "SKILL_LATENCY", "aggregationPeriod": "BY_HOUR", "stat": "p90"},
        {"id": "successful", "metricNamespace": "Alexa.Custom", "name": "SUCCESSFUL_SESSIONS", "aggregationPeriod": "BY_DAY"}
    ]})
}

fn batch(b: u64) -> String {
    (0..BATCH)
        .map(|i| {
            json!({"time": 1_767_900_000_000i64 + (b * BATCH + i) as i64 * 1_000, "event_type": "utterance",
                   "user_id": format!("load-{b}-{i}"), "session_id": format!("load-{b}"), "intent": "A",
                   "outcome": "success", "latency_ms": 12.0})
            .to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_dashboards_and_an_ingest_stream_are_all_answered_and_nothing_is_lost() {
    let clients = env_num("METRICSTORE_LOAD_CLIENTS", 16) as usize;
    let seconds = env_num("METRICSTORE_LOAD_SECONDS", 8);
    let rows = env_num("METRICSTORE_LOAD_ROWS", 100_000);
    let dir = tempfile::tempdir().unwrap();
    let engine = common::demo_engine(dir.path(), rows, 30).await;
    common::build_rollups(&engine).await;
    drop(engine);
    let pool = POOL_MB.to_string();
    let server = common::serve_with_env(
        dir.path().to_str().unwrap(),
        &format!("{TOKEN}:admin:*"),
        "2026-01-11T00:00:00Z",
        &[("METRICSTORE_MEMORY_LIMIT_MB", pool.as_str())],
    );
    let pid = server.child.id();
    let base = Arc::new(server.base.clone());
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let statuses: Arc<std::sync::Mutex<BTreeMap<u16, u64>>> = Arc::default();
    let latencies: Arc<std::sync::Mutex<Vec<Duration>>> = Arc::default();

    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (http, base, statuses, latencies) = (
            http.clone(),
            Arc::clone(&base),
            Arc::clone(&statuses),
            Arc::clone(&latencies),
        );
        tasks.push(tokio::spawn(async move {
            let body = dashboard_body();
            while Instant::now() < deadline {
                let started = Instant::now();
                let resp = http
                    .post(format!("{base}/v2/skills/{SKILL}/metrics"))
                    .bearer_auth(TOKEN)
                    .json(&body)
                    .send()
                    .await
                    .expect("every request is answered");
                let status = resp.status().as_u16();
                assert!(
                    matches!(status, 200 | 429 | 503),
                    "dashboard: {status} {}",
                    resp.text().await.unwrap_or_default()
                );
                if status != 200 {
                    assert!(resp.headers().get("retry-after").is_some(), "{status}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                } else {
                    latencies.lock().unwrap().push(started.elapsed());
                }
                *statuses.lock().unwrap().entry(status).or_default() += 1;
            }
        }));
    }

    // The ingest stream: batches with keys, each resent until answered 200.
    let acknowledged = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let ingest = {
        let (http, base, acknowledged, stop) = (
            http.clone(),
            Arc::clone(&base),
            Arc::clone(&acknowledged),
            Arc::clone(&stop),
        );
        tokio::spawn(async move {
            let mut b = 0u64;
            while !stop.load(Ordering::Relaxed) {
                loop {
                    let answer = http
                        .post(format!("{base}/v1/ws-load/events"))
                        .bearer_auth(TOKEN)
                        .header("idempotency-key", format!("load-batch-{b}"))
                        .body(batch(b))
                        .send()
                        .await;
                    match answer {
                        Ok(r) if r.status() == 200 => break,
                        Ok(r) => assert!(
                            matches!(r.status().as_u16(), 429 | 503),
                            "ingest: {}",
                            r.status()
                        ),
                        Err(_) => {}
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                acknowledged.fetch_add(BATCH, Ordering::Relaxed);
                b += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    for t in tasks {
        t.await.unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    ingest.await.unwrap();
    let peak = peak_rss_mb(pid);

    // Kill the server; a restart's recovery publishes what it held.
    drop(server);
    let store = metricstore::storage::Store::open(dir.path().to_str().unwrap()).unwrap();
    let engine = metricstore::engine::Engine::new(store).await.unwrap();
    let state = metricstore::api::AppState::new(
        engine,
        metricstore::api::auth::Auth::parse(&format!("{TOKEN}:admin:*"), 0, 0).unwrap(),
        metricstore::api::Clock::system(),
        metricstore::api::token::Signer::from_secret(TOKEN),
    );
    state.ingest.recover().await.unwrap();
    use datafusion::arrow::array::AsArray;
    let b = state
        .engine
        .sql("SELECT count(*), count(DISTINCT user_id) FROM events WHERE workspace_id = 'ws-load'")
        .await
        .unwrap();
    let n = b[0]
        .column(0)
        .as_primitive::<datafusion::arrow::datatypes::Int64Type>()
        .value(0) as u64;
    let d = b[0]
        .column(1)
        .as_primitive::<datafusion::arrow::datatypes::Int64Type>()
        .value(0) as u64;
    let acked = acknowledged.load(Ordering::Relaxed);
    assert_eq!(n, d, "an event was stored twice");
    // Every acknowledged batch is there; a batch sent but unanswered when
    // the stream stopped may be there too.
    assert!(
        n >= acked && n <= acked + BATCH,
        "stored {n}, acknowledged {acked}"
    );

    let statuses = statuses.lock().unwrap().clone();
    let mut lat = latencies.lock().unwrap().clone();
    lat.sort();
    let pct = |p: f64| {
        lat.get(((lat.len().max(1) - 1) as f64 * p) as usize)
            .copied()
    };
    eprintln!(
        "{clients} clients, {seconds} s, {rows} events: answers {statuses:?}; \
         200s p50 {:?} p99 {:?}; {acked} events acknowledged and stored; peak RSS {peak:?} MB \
         (pool {POOL_MB} MB + margin {MARGIN_MB} MB)",
        pct(0.5),
        pct(0.99)
    );
    assert!(statuses.get(&200).copied().unwrap_or(0) > 0, "{statuses:?}");
    if let Some(peak) = peak {
        assert!(peak < POOL_MB + MARGIN_MB, "peak RSS {peak} MB");
    }
}
