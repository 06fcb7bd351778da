//! Ingest over HTTP (through the router): visibility before and after a
//! flush and a compaction, compression, and every kind of bad input, each
//! a clear 4xx with nothing stored.

mod common;

use std::io::Write;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use metricstore::api::auth::Auth;
use metricstore::api::token::Signer;
use metricstore::api::{AppState, Clock, router};
use serde_json::{Value, json};
use tower::ServiceExt;

const TOKENS: &str = "ingest-admin-1:admin:ws-live,ingest-viewer-1:viewer:ws-live";

async fn setup() -> (tempfile::TempDir, std::sync::Arc<AppState>, axum::Router) {
    let dir = tempfile::tempdir().unwrap();
    let store = metricstore::storage::Store::open(dir.path().to_str().unwrap()).unwrap();
    let engine = metricstore::engine::Engine::new(store).await.unwrap();
    let state = AppState::new(
        engine,
        Auth::parse(TOKENS, 0, 0).unwrap(),
        Clock::system(),
        Signer::from_secret(TOKENS),
    );
    let app = router(std::sync::Arc::clone(&state));
    (dir, state, app)
}

async fn send(
    app: &axum::Router,
    ws: &str,
    token: &str,
    body: Vec<u8>,
    encoding: Option<&str>,
) -> (StatusCode, Value) {
    let mut req = Request::builder()
        .method("POST")
        .uri(format!("/v1/{ws}/events"))
        .header("authorization", format!("Bearer {token}"));
    if let Some(e) = encoding {
        req = req.header("content-encoding", e);
    }
    let resp = app
        .clone()
        .oneshot(req.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn lines(n: usize, tag: &str) -> Vec<u8> {
    (0..n)
        .map(|i| {
            json!({"time": 1_767_600_000_000i64 + (i as i64) * 3_600_000 * 7, "event_type": "utterance", "user_id": format!("u{i}"),
                   "session_id": tag, "intent": "A", "outcome": "success", "latency_ms": 10.5, "attributes": {"k": i}})
            .to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
        .into_bytes()
}

async fn count(state: &AppState) -> i64 {
    let b = state
        .engine
        .sql("SELECT count(*) AS n, count(DISTINCT user_id || session_id) AS d FROM events")
        .await
        .unwrap();
    use datafusion::arrow::array::AsArray;
    let n = b[0]
        .column(0)
        .as_primitive::<datafusion::arrow::datatypes::Int64Type>()
        .value(0);
    let d = b[0]
        .column(1)
        .as_primitive::<datafusion::arrow::datatypes::Int64Type>()
        .value(0);
    assert_eq!(n, d, "an event was counted twice");
    n
}

#[tokio::test]
async fn acknowledged_events_are_seen_once_before_and_after_flush_and_compaction() {
    let (dir, state, app) = setup().await;
    let (s, v) = send(&app, "ws-live", "ingest-admin-1", lines(30, "a"), None).await;
    assert_eq!(
        (s, v["accepted"].as_u64()),
        (StatusCode::OK, Some(30)),
        "{v}"
    );
    // Visible at once, before any flush.
    assert_eq!(count(&state).await, 30);
    assert_eq!(state.ingest.flush().await.unwrap(), 30);
    assert_eq!(count(&state).await, 30);
    assert!(
        std::fs::read_dir(dir.path().join("wal"))
            .unwrap()
            .next()
            .is_none(),
        "the log is retired after a flush"
    );

    // gzip and zstd bodies.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&lines(20, "b")).unwrap();
    let (s, _) = send(
        &app,
        "ws-live",
        "ingest-admin-1",
        gz.finish().unwrap(),
        Some("gzip"),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = send(
        &app,
        "ws-live",
        "ingest-admin-1",
        zstd::encode_all(&lines(10, "c")[..], 3).unwrap(),
        Some("zstd"),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(count(&state).await, 60);
    for i in 0..5 {
        send(
            &app,
            "ws-live",
            "ingest-admin-1",
            lines(4, &format!("d{i}")),
            None,
        )
        .await;
        state.ingest.flush().await.unwrap();
    }
    assert_eq!(count(&state).await, 80);
    assert!(state.ingest.compact(2).await.unwrap() > 0);
    assert_eq!(count(&state).await, 80);
    // Through the metrics API too: one event per 7 hours spread over days.
    let r = state
        .engine
        .sql("SELECT count(*) FROM events WHERE workspace_id = 'ws-live' AND session_id = 'a'")
        .await
        .unwrap();
    use datafusion::arrow::array::AsArray;
    assert_eq!(
        r[0].column(0)
            .as_primitive::<datafusion::arrow::datatypes::Int64Type>()
            .value(0),
        30
    );
}

#[tokio::test]
async fn bad_input_is_a_clear_4xx_and_nothing_is_stored() {
    let (_dir, state, app) = setup().await;
    let good = String::from_utf8(lines(1, "ok")).unwrap();
    // (what, body, Content-Encoding, status, text the answer must hold)
    type Case<'a> = (&'a str, Vec<u8>, Option<&'a str>, StatusCode, &'a str);
    let cases: Vec<Case> = vec![
        (
            "malformed JSON",
            format!("{good}\n{{not json").into_bytes(),
            None,
            StatusCode::BAD_REQUEST,
            "line 2",
        ),
        (
            "wrong type",
            format!("{good}\n{{\"time\": 1, \"event_type\": 5}}").into_bytes(),
            None,
            StatusCode::BAD_REQUEST,
            "event_type: must be a string",
        ),
        (
            "missing time",
            b"{\"event_type\": \"x\"}".to_vec(),
            None,
            StatusCode::BAD_REQUEST,
            "time: is required",
        ),
        (
            "missing type",
            b"{\"time\": 5}".to_vec(),
            None,
            StatusCode::BAD_REQUEST,
            "event_type: is required",
        ),
        (
            "bad time",
            b"{\"time\": \"noon\", \"event_type\": \"x\"}".to_vec(),
            None,
            StatusCode::BAD_REQUEST,
            "RFC 3339",
        ),
        (
            "other workspace",
            b"{\"time\": 5, \"event_type\": \"x\", \"workspace_id\": \"ws-other\"}".to_vec(),
            None,
            StatusCode::BAD_REQUEST,
            "workspace_id",
        ),
        (
            "attributes not an object",
            b"{\"time\": 5, \"event_type\": \"x\", \"attributes\": [1]}".to_vec(),
            None,
            StatusCode::BAD_REQUEST,
            "attributes",
        ),
        (
            "unknown field",
            b"{\"time\": 5, \"event_type\": \"x\", \"colour\": \"red\"}".to_vec(),
            None,
            StatusCode::BAD_REQUEST,
            "colour",
        ),
        (
            "invalid UTF-8",
            [
                good.as_bytes(),
                b"\n{\"time\": 5, \"event_type\": \"\xff\xfe\"}",
            ]
            .concat(),
            None,
            StatusCode::BAD_REQUEST,
            "UTF-8",
        ),
        (
            "empty",
            b"\n\n".to_vec(),
            None,
            StatusCode::BAD_REQUEST,
            "no events",
        ),
        (
            "huge line",
            format!(
                "{{\"time\": 5, \"event_type\": \"{}\"}}",
                "x".repeat(300_000)
            )
            .into_bytes(),
            None,
            StatusCode::PAYLOAD_TOO_LARGE,
            "longer than",
        ),
        (
            "unknown encoding",
            good.clone().into_bytes(),
            Some("br"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Encoding",
        ),
        (
            "not gzip",
            good.clone().into_bytes(),
            Some("gzip"),
            StatusCode::BAD_REQUEST,
            "gzip",
        ),
        (
            "not zstd",
            good.clone().into_bytes(),
            Some("zstd"),
            StatusCode::BAD_REQUEST,
            "zstd",
        ),
    ];
    for (what, body, enc, status, needle) in cases {
        let (s, v) = send(&app, "ws-live", "ingest-admin-1", body, enc).await;
        assert_eq!(s, status, "{what}: {v}");
        let text = v.to_string();
        assert!(text.contains(needle), "{what}: {text}");
        assert!(v["code"].is_string(), "{what}");
    }
    // Line numbers are listed.
    let (_, v) = send(
        &app,
        "ws-live",
        "ingest-admin-1",
        format!("{good}\n{{bad\n{good}\n[1]").into_bytes(),
        None,
    )
    .await;
    let listed: Vec<u64> = v["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["line"].as_u64().unwrap())
        .collect();
    assert_eq!(listed, vec![2, 4]);
    // A zip bomb stops at the limit.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    for _ in 0..(130 << 10) {
        gz.write_all(&[b' '; 1024]).unwrap();
    }
    let (s, _) = send(
        &app,
        "ws-live",
        "ingest-admin-1",
        gz.finish().unwrap(),
        Some("gzip"),
    )
    .await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    // An oversized body.
    let (s, v) = send(
        &app,
        "ws-live",
        "ingest-admin-1",
        vec![b' '; 33 << 20],
        None,
    )
    .await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    // Auth and walls.
    let (s, _) = send(&app, "ws-live", "ingest-viewer-1", lines(1, "v"), None).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = send(&app, "ws-other", "ingest-admin-1", lines(1, "v"), None).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = send(&app, "ws-live", "wrong-token-x", lines(1, "v"), None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(
        count(&state).await,
        0,
        "nothing from a rejected body is stored"
    );
}

async fn send_keyed(app: &axum::Router, key: &str, body: Vec<u8>) -> (StatusCode, Value) {
    let req = Request::builder()
        .method("POST")
        .uri("/v1/ws-live/events")
        .header("authorization", "Bearer ingest-admin-1")
        .header("idempotency-key", key)
        .body(Body::from(body))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// Every file under `dir` whose path contains `part`.
fn files_with(dir: &std::path::Path, part: &str) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.to_string_lossy().contains(part) {
                out.push(p);
            }
        }
    }
    out
}

/// A body resent with its `Idempotency-Key` is counted once, before and
/// after a flush, and whichever step of the first attempt a crash cut
/// short (the key's record lost after the events were durable).
#[tokio::test]
async fn a_resent_body_with_its_idempotency_key_is_counted_once() {
    let (dir, state, app) = setup().await;
    let (s, v) = send_keyed(&app, "batch-1", lines(10, "k1")).await;
    assert_eq!(
        (s, v["accepted"].as_u64()),
        (StatusCode::OK, Some(10)),
        "{v}"
    );
    let (s, v) = send_keyed(&app, "batch-1", lines(10, "k1")).await;
    assert_eq!(
        (s, v["accepted"].as_u64()),
        (StatusCode::OK, Some(10)),
        "{v}"
    );
    assert_eq!(count(&state).await, 10);
    // Another body under a used key is refused; nothing is stored.
    let (s, v) = send_keyed(&app, "batch-1", lines(3, "other")).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(count(&state).await, 10);
    state.ingest.flush().await.unwrap();
    let (s, _) = send_keyed(&app, "batch-1", lines(10, "k1")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(count(&state).await, 10);

    // The record lost after the segment was written: the segment answers.
    let (s, _) = send_keyed(&app, "batch-2", lines(7, "k2")).await;
    assert_eq!(s, StatusCode::OK);
    for record in files_with(&dir.path().join("ingest/keys"), ".json") {
        std::fs::remove_file(record).unwrap();
    }
    let (s, v) = send_keyed(&app, "batch-2", lines(7, "k2")).await;
    assert_eq!(
        (s, v["accepted"].as_u64()),
        (StatusCode::OK, Some(7)),
        "{v}"
    );
    assert_eq!(count(&state).await, 17);
    // Lost again, then flushed: the flush stores it before retiring.
    for record in files_with(&dir.path().join("ingest/keys"), ".json") {
        std::fs::remove_file(record).unwrap();
    }
    state.ingest.flush().await.unwrap();
    assert!(files_with(&dir.path().join("wal"), ".key.json").is_empty());
    let (s, _) = send_keyed(&app, "batch-2", lines(7, "k2")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(count(&state).await, 17);

    // Bad keys are a 400.
    let (s, v) = send_keyed(&app, &"x".repeat(256), lines(1, "k3")).await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("INVALID_IDEMPOTENCY_KEY"))
    );
}

/// A flush whose second day cannot be written is retried under the same
/// names: the first day, already written, is overwritten, not doubled.
#[tokio::test]
async fn a_half_failed_flush_does_not_double_the_days_it_wrote() {
    let (dir, state, app) = setup().await;
    // 12 events 7 hours apart: three or four UTC days.
    let (s, _) = send(&app, "ws-live", "ingest-admin-1", lines(12, "h"), None).await;
    assert_eq!(s, StatusCode::OK);
    // The last day's partition cannot be made: a file stands in its way.
    let last = chrono::DateTime::from_timestamp_millis(1_767_600_000_000 + 11 * 3_600_000 * 7)
        .unwrap()
        .format("%Y-%m-%d")
        .to_string();
    let events = dir.path().join("events");
    std::fs::create_dir_all(&events).unwrap();
    let blocker = events.join(format!("date={last}"));
    std::fs::write(&blocker, b"in the way").unwrap();
    assert!(state.ingest.flush().await.is_err());
    std::fs::remove_file(&blocker).unwrap();
    assert_eq!(
        state.ingest.flush().await.unwrap(),
        0,
        "the retry is not new rows"
    );
    assert_eq!(count(&state).await, 12);
    // A restart's recovery finds nothing left to do twice.
    state.ingest.recover().await.unwrap();
    assert_eq!(count(&state).await, 12);
}

/// A compaction killed after its merged file was written and before its
/// sources were deleted is finished by recovery: every row once.
#[tokio::test]
async fn recovery_finishes_a_compaction_cut_short() {
    let (dir, state, app) = setup().await;
    for tag in ["c1", "c2"] {
        let (s, _) = send(&app, "ws-live", "ingest-admin-1", lines(1, tag), None).await;
        assert_eq!(s, StatusCode::OK);
        state.ingest.flush().await.unwrap();
    }
    assert_eq!(count(&state).await, 2);
    // The state a kill leaves: the intent, the merged file, the sources.
    let sources = files_with(&dir.path().join("events"), "ingest-");
    assert_eq!(sources.len(), 2);
    let day_dir = sources[0].parent().unwrap().to_path_buf();
    let target = day_dir.join("compact-crashed.parquet");
    std::fs::copy(&sources[0], &target).unwrap();
    let rel = |p: &std::path::Path| {
        p.strip_prefix(dir.path())
            .unwrap()
            .to_string_lossy()
            .to_string()
    };
    let intent = json!({"target": rel(&target), "sources": [rel(&sources[0])]});
    std::fs::create_dir_all(dir.path().join("wal")).unwrap();
    std::fs::write(
        dir.path().join("wal/compact-crashed.json"),
        intent.to_string(),
    )
    .unwrap();
    // Before recovery a reader sees the row twice (count asserts once).
    let b = state
        .engine
        .sql("SELECT count(*) FROM events")
        .await
        .unwrap();
    use datafusion::arrow::array::AsArray;
    let n = b[0]
        .column(0)
        .as_primitive::<datafusion::arrow::datatypes::Int64Type>()
        .value(0);
    assert_eq!(n, 3);
    state.ingest.recover().await.unwrap();
    assert_eq!(count(&state).await, 2);
    assert!(files_with(&dir.path().join("wal"), "compact-").is_empty());
}
