//! A put, delete or list that fails in the middle of a flush, a
//! compaction or a pipeline run (through `storage::faults::FaultyStore`):
//! whether the same process retries or the server is restarted on the same
//! files, every acknowledged event is counted exactly once, and a rerun of
//! the pipeline leaves every value once.

mod common;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use metricstore::api::auth::Auth;
use metricstore::api::token::Signer;
use metricstore::api::{AppState, Clock, router};
use metricstore::storage::Store;
use metricstore::storage::faults::{FaultyStore, Op};
use serde_json::json;
use tower::ServiceExt;

const TOKENS: &str = "faults-admin-1:admin:ws-live";

async fn state_on(store: Store) -> Arc<AppState> {
    let engine = metricstore::engine::Engine::new(store).await.unwrap();
    AppState::new(
        engine,
        Auth::parse(TOKENS, 0, 0).unwrap(),
        Clock::system(),
        Signer::from_secret(TOKENS),
    )
}

/// `n` events 7 hours apart (three or four UTC days), tagged.
fn lines(n: usize, tag: &str) -> Vec<u8> {
    (0..n)
        .map(|i| {
            json!({"time": 1_767_600_000_000i64 + (i as i64) * 3_600_000 * 7, "event_type": "utterance",
                   "user_id": format!("u{i}"), "session_id": tag, "intent": "A", "outcome": "success",
                   "latency_ms": 10.5})
            .to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
        .into_bytes()
}

async fn send(app: &axum::Router, body: Vec<u8>) {
    let req = Request::builder()
        .method("POST")
        .uri("/v1/ws-live/events")
        .header("authorization", "Bearer faults-admin-1")
        .body(Body::from(body))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "the events are acknowledged");
}

/// Rows, and distinct events among them.
async fn count(state: &AppState) -> (i64, i64) {
    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::Int64Type;
    let b = state
        .engine
        .sql("SELECT count(*), count(DISTINCT user_id || '/' || session_id) FROM events")
        .await
        .unwrap();
    (
        b[0].column(0).as_primitive::<Int64Type>().value(0),
        b[0].column(1).as_primitive::<Int64Type>().value(0),
    )
}

const EVENTS: i64 = 36;

/// Two bodies flushed (two files a day), a third acknowledged; then, with
/// `fault` planned, a flush and a compaction; then either a retry in the
/// same process and a restart, or a restart at once. Returns the counts at
/// the end and how many operations of each kind the faulted part made.
async fn scenario(fault: Option<(Op, usize)>, retry: bool) -> ((i64, i64), [usize; 3]) {
    let dir = tempfile::tempdir().unwrap();
    let base = Store::open(dir.path().to_str().unwrap()).unwrap();
    let faulty = FaultyStore::new(Arc::clone(&base.object_store));
    let store = Store {
        object_store: Arc::new(faulty.clone()),
        ..base.clone()
    };
    let state = state_on(store).await;
    let app = router(Arc::clone(&state));
    for tag in ["a", "b"] {
        send(&app, lines(12, tag)).await;
        state.ingest.flush().await.unwrap();
    }
    send(&app, lines(12, "c")).await;

    match fault {
        Some((op, n)) => faulty.fail_nth(op, n),
        None => faulty.reset(),
    }
    let flushed = state.ingest.flush().await;
    let compacted = state.ingest.compact(1).await;
    let made = [
        faulty.count(Op::Put),
        faulty.count(Op::Delete),
        faulty.count(Op::List),
    ];
    if fault.is_none() {
        flushed.unwrap();
        compacted.unwrap();
    }
    faulty.reset();
    if retry {
        state.ingest.flush().await.unwrap();
        state.ingest.compact(1).await.unwrap();
        assert_eq!(count(&state).await, (EVENTS, EVENTS), "{fault:?}, retried");
    }
    drop(app);
    drop(state);

    // A restart on the same files.
    let restarted = state_on(base).await;
    restarted.ingest.recover().await.unwrap();
    restarted.ingest.flush().await.unwrap();
    restarted.ingest.compact(1).await.unwrap();
    (count(&restarted).await, made)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_single_failed_put_delete_or_list_during_flush_and_compaction_loses_and_doubles_nothing()
 {
    let (counts, made) = scenario(None, false).await;
    assert_eq!(counts, (EVENTS, EVENTS));
    // The flush of three or four days and the compaction of as many
    // partitions write and delete several times each, and list once.
    assert!(made[0] >= 4 && made[1] >= 4 && made[2] >= 1, "{made:?}");
    let mut cases = 0;
    for (op, total) in [Op::Put, Op::Delete, Op::List].into_iter().zip(made) {
        for n in 1..=total {
            for retry in [true, false] {
                let (counts, _) = scenario(Some((op, n)), retry).await;
                assert_eq!(
                    counts,
                    (EVENTS, EVENTS),
                    "{op:?} number {n} failed, then {}: rows and distinct events",
                    if retry {
                        "retried and restarted"
                    } else {
                        "restarted"
                    }
                );
                cases += 1;
            }
        }
    }
    eprintln!("{cases} fault cases ({made:?} puts, deletes, lists), every event counted once");
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Materialised values: rows, distinct (metric, source, period, subject,
/// category) keys, and the sum of their sample sizes.
async fn values(engine: &metricstore::engine::Engine) -> (i64, i64, i64) {
    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::Int64Type;
    let b = engine
        .sql(
            "SELECT count(*), count(DISTINCT concat_ws('|', workspace_id, metric_key, source, granularity, \
             CAST(period_start AS VARCHAR), scope, coalesce(entity_type, ''), coalesce(entity_id, ''), \
             coalesce(service_id, ''), coalesce(session_id, ''), coalesce(category, ''))), \
             CAST(coalesce(sum(sample_size), 0) AS BIGINT) FROM metric_values",
        )
        .await
        .unwrap();
    let c = |i: usize| b[0].column(i).as_primitive::<Int64Type>().value(0);
    (c(0), c(1), c(2))
}

/// Runs the pipeline over two days on a copy of `template`, with `fault`
/// planned for the first run; a second run follows without faults.
/// Returns the values after it and the operations the first run made.
async fn pipeline_case(
    template: &std::path::Path,
    fault: Option<(Op, usize)>,
) -> ((i64, i64, i64), [usize; 3]) {
    use metricstore::pipeline;
    let dir = tempfile::tempdir().unwrap();
    copy_dir(template, dir.path());
    let base = Store::open(dir.path().to_str().unwrap()).unwrap();
    let faulty = FaultyStore::new(Arc::clone(&base.object_store));
    let store = Store {
        object_store: Arc::new(faulty.clone()),
        ..base
    };
    let engine = metricstore::repl::session(store).await.unwrap();
    let ai = metricstore::metric_store::extract::Ai::none();
    let opts = pipeline::Options {
        from: Some("2026-01-09".parse().unwrap()),
        to: Some("2026-01-10".parse().unwrap()),
        now_ms: 1_768_089_600_000, // 2026-01-11T00:00:00Z
    };
    match fault {
        Some((op, n)) => faulty.fail_nth(op, n),
        None => faulty.reset(),
    }
    let first = pipeline::run(&engine, &ai, &opts).await;
    let made = [
        faulty.count(Op::Put),
        faulty.count(Op::Delete),
        faulty.count(Op::List),
    ];
    faulty.reset();
    if fault.is_none() {
        first.unwrap();
    }
    pipeline::run(&engine, &ai, &opts).await.unwrap();
    (values(&engine).await, made)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_put_or_list_during_a_pipeline_run_leaves_every_value_once() {
    let template = tempfile::tempdir().unwrap();
    drop(common::demo_engine(template.path(), 20_000, 3).await);
    let (want, made) = pipeline_case(template.path(), None).await;
    assert!(want.0 > 100, "{want:?}");
    assert_eq!(want.0, want.1, "one value per key");
    let mut cases = 0;
    for (op, total) in [Op::Put, Op::Delete, Op::List].into_iter().zip(made) {
        // At most twelve positions per kind, spread over the run.
        let step = total.div_ceil(12).max(1);
        for n in (1..=total).step_by(step) {
            let (got, _) = pipeline_case(template.path(), Some((op, n))).await;
            assert_eq!(
                got, want,
                "{op:?} number {n} of {total} failed, then a rerun"
            );
            cases += 1;
        }
    }
    eprintln!("{cases} pipeline fault cases ({made:?} puts, deletes, lists), every value once");
}
