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
