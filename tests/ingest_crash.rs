//! Kill the server with SIGKILL at random moments while a client sends
//! batches; after 20 cycles every acknowledged event is counted exactly
//! once, and an unacknowledged batch is either all there or not at all.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::Int64Type;
use rand::{Rng, SeedableRng};

const TOKENS: &str = "crash-admin-1:admin:*";
const BATCH: usize = 25;

#[tokio::test]
async fn every_acknowledged_event_survives_kill_cycles() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap().to_string();
    let acked: Arc<Mutex<Vec<u64>>> = Arc::default();
    let mut rng = rand::rngs::StdRng::seed_from_u64(99);
    let mut next_batch = 0u64;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    for _cycle in 0..20 {
        let server = common::serve(&data, TOKENS, "2026-01-10T12:00:00Z");
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut senders = Vec::new();
        for _ in 0..3 {
            let (client, base, acked, stop) = (
                client.clone(),
                server.base.clone(),
                Arc::clone(&acked),
                Arc::clone(&stop),
            );
            let first = next_batch;
            next_batch += 1_000;
            senders.push(tokio::spawn(async move {
                let mut b = first;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let body: String = (0..BATCH)
                        .map(|i| format!("{{\"time\":{},\"event_type\":\"crash.test\",\"session_id\":\"b{b}\",\"user_id\":\"e{i}\"}}\n", 1_767_600_000_000u64 + b * 1_000 + i as u64))
                        .collect();
                    let r = client.post(format!("{base}/v1/ws-crash/events")).bearer_auth("crash-admin-1").body(body).send().await;
                    match r {
                        Ok(r) if r.status() == 200 => acked.lock().unwrap().push(b),
                        Ok(r) if r.status() == 503 => tokio::time::sleep(Duration::from_millis(50)).await,
                        Ok(r) => panic!("unexpected status {}", r.status()),
                        Err(_) => break, // the server is gone
                    }
                    b += 1;
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(150..700))).await;
        drop(server); // SIGKILL
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for s in senders {
            s.await.unwrap();
        }
    }
    // One more start replays the log before it listens.
    drop(common::serve(&data, TOKENS, "2026-01-10T12:00:00Z"));

    let store = metricstore::storage::Store::open(&data).unwrap();
    let engine = metricstore::engine::Engine::new(store).await.unwrap();
    let b = engine
        .sql("SELECT session_id, count(*) AS n, count(DISTINCT user_id) AS d FROM events WHERE event_type = 'crash.test' GROUP BY 1")
        .await
        .unwrap();
    let mut counts: BTreeMap<u64, (i64, i64)> = BTreeMap::new();
    for batch in &b {
        let s = batch.column(0).as_string::<i32>();
        let n = batch.column(1).as_primitive::<Int64Type>();
        let d = batch.column(2).as_primitive::<Int64Type>();
        for i in 0..batch.num_rows() {
            counts.insert(s.value(i)[1..].parse().unwrap(), (n.value(i), d.value(i)));
        }
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 100,
        "too few batches acknowledged: {}",
        acked.len()
    );
    for b in &acked {
        assert_eq!(
            counts.get(b),
            Some(&(BATCH as i64, BATCH as i64)),
            "acknowledged batch {b}"
        );
    }
    for (b, (n, d)) in &counts {
        assert_eq!(
            (*n, *d),
            (BATCH as i64, BATCH as i64),
            "batch {b} is partial or duplicated"
        );
    }
    eprintln!(
        "{} batches acknowledged, {} stored",
        acked.len(),
        counts.len()
    );
}

/// A sender's next batch, and the one sent but not yet answered.
type SenderState = (u64, Option<u64>);

/// The body of keyed batch `b`: 25 events 7 hours apart, so that every
/// flush writes a file in each of about eight days.
fn keyed_body(b: u64) -> String {
    (0..BATCH)
        .map(|i| {
            format!(
                "{{\"time\":{},\"event_type\":\"crash.key\",\"session_id\":\"b{b}\",\"user_id\":\"e{i}\"}}\n",
                1_767_600_000_000u64 + b * 1_000 + i as u64 * 25_200_000
            )
        })
        .collect()
}

/// Senders that resend an unanswered batch with its `Idempotency-Key`
/// after each kill, until it is answered: at the end every batch is there
/// exactly once, however the kill cut its first attempt. 100 kills (more
/// with `METRICSTORE_CRASH_CYCLES`), at random moments: while bodies
/// arrive (one sender sends its bodies in slow pieces), during flushes of
/// about eight days each (every 200 ms), and during compactions (the
/// server compacts after every flush, days of more than three files).
#[tokio::test]
async fn resent_batches_with_idempotency_keys_count_once_across_kill_cycles() {
    let cycles: usize = std::env::var("METRICSTORE_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let env = [
        ("METRICSTORE_FLUSH_INTERVAL_MS", "200"),
        ("METRICSTORE_COMPACT_EVERY", "1"),
        ("METRICSTORE_COMPACT_FILES", "3"),
        ("METRICSTORE_ROLLUPS", "off"),
    ];
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap().to_string();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    // Per sender: the next batch, and the one sent but not yet answered.
    let senders_state: Arc<Mutex<Vec<SenderState>>> =
        Arc::new(Mutex::new((0..3).map(|s| (s * 100_000, None)).collect()));
    let resent = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for _cycle in 0..cycles {
        let server = common::serve_with_env(&data, TOKENS, "2026-01-10T12:00:00Z", &env);
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut tasks = Vec::new();
        for s in 0..3usize {
            let (client, base, state, stop, resent) = (
                client.clone(),
                server.base.clone(),
                Arc::clone(&senders_state),
                Arc::clone(&stop),
                Arc::clone(&resent),
            );
            tasks.push(tokio::spawn(async move {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let b = {
                        let mut st = state.lock().unwrap();
                        match st[s].1 {
                            Some(b) => {
                                resent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                b
                            }
                            None => {
                                let b = st[s].0;
                                st[s] = (b + 1, Some(b));
                                b
                            }
                        }
                    };
                    let body = keyed_body(b);
                    // Sender 0 sends its bodies in three pieces 40 ms
                    // apart, so kills land while a body arrives.
                    let body = if s == 0 {
                        let pieces: Vec<Result<Vec<u8>, std::io::Error>> = body
                            .into_bytes()
                            .chunks(BATCH * 30)
                            .map(|c| Ok(c.to_vec()))
                            .collect();
                        let stream = futures::StreamExt::then(
                            futures::stream::iter(pieces),
                            |p| async move {
                                tokio::time::sleep(Duration::from_millis(40)).await;
                                p
                            },
                        );
                        reqwest::Body::wrap_stream(stream)
                    } else {
                        reqwest::Body::from(body)
                    };
                    let r = client
                        .post(format!("{base}/v1/ws-crash/events"))
                        .bearer_auth("crash-admin-1")
                        .header("idempotency-key", format!("batch-{b}"))
                        .body(body)
                        .send()
                        .await;
                    match r {
                        Ok(r) if r.status() == 200 => state.lock().unwrap()[s].1 = None,
                        Ok(r) if r.status() == 503 => {
                            tokio::time::sleep(Duration::from_millis(50)).await
                        }
                        Ok(r) => panic!("unexpected status {}", r.status()),
                        Err(_) => break, // the server is gone: resend next cycle
                    }
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(150..1_500))).await;
        drop(server); // SIGKILL
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in tasks {
            t.await.unwrap();
        }
    }
    // A last cycle answers what is still unanswered.
    let server = common::serve_with_env(&data, TOKENS, "2026-01-10T12:00:00Z", &env);
    let pending: Vec<u64> = senders_state
        .lock()
        .unwrap()
        .iter()
        .filter_map(|s| s.1)
        .collect();
    for b in &pending {
        let body = keyed_body(*b);
        let r = client
            .post(format!("{}/v1/ws-crash/events", server.base))
            .bearer_auth("crash-admin-1")
            .header("idempotency-key", format!("batch-{b}"))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    drop(server);
    drop(common::serve(&data, TOKENS, "2026-01-10T12:00:00Z"));

    let store = metricstore::storage::Store::open(&data).unwrap();
    let engine = metricstore::engine::Engine::new(store).await.unwrap();
    let b = engine
        .sql("SELECT session_id, count(*) AS n, count(DISTINCT user_id) AS d FROM events WHERE event_type = 'crash.key' GROUP BY 1")
        .await
        .unwrap();
    let mut counts: BTreeMap<u64, (i64, i64)> = BTreeMap::new();
    for batch in &b {
        let s = batch.column(0).as_string::<i32>();
        let n = batch.column(1).as_primitive::<Int64Type>();
        let d = batch.column(2).as_primitive::<Int64Type>();
        for i in 0..batch.num_rows() {
            counts.insert(s.value(i)[1..].parse().unwrap(), (n.value(i), d.value(i)));
        }
    }
    let sent: Vec<u64> = senders_state
        .lock()
        .unwrap()
        .iter()
        .enumerate()
        .flat_map(|(s, st)| (s as u64 * 100_000)..st.0)
        .collect();
    assert!(sent.len() > 100, "too few batches sent: {}", sent.len());
    for b in &sent {
        assert_eq!(
            counts.get(b),
            Some(&(BATCH as i64, BATCH as i64)),
            "batch {b}"
        );
    }
    assert_eq!(counts.len(), sent.len());
    // The servers compacted (merged files are there), and killed ones
    // left flushes and compactions for recovery now and then.
    let compacted = walk(&dir.path().join("events"))
        .iter()
        .filter(|p| p.contains("/compact-"))
        .count();
    assert!(
        compacted > 0,
        "no compaction ran: {:?}",
        walk(&dir.path().join("events"))
    );
    eprintln!(
        "{cycles} kills: {} batches sent, {} resent after a kill, each stored once; {compacted} compacted files",
        sent.len(),
        resent.load(std::sync::atomic::Ordering::Relaxed)
    );
}

/// Every file under `dir`, as paths.
fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p.to_string_lossy().to_string());
            }
        }
    }
    out
}
