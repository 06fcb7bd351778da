//! The Metric Store: generated data, the pipeline, then latest / values /
//! trend / evaluate through the API, every number checked against a
//! brute-force loop over the Parquet rows; idempotent re-runs; settings
//! validation and roles; AI metrics through a local chat-completions
//! server.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use metricstore::api::auth::Auth;
use metricstore::api::token::Signer;
use metricstore::api::{AppState, Clock, router};
use metricstore::engine::Engine;
use metricstore::metric_store::extract::{Ai, AiConfig, ChatClient};
use metricstore::pipeline;
use metricstore::storage::events::EventRow;
use serde_json::{Value, json};
use tower::ServiceExt;

const TOKENS: &str = "ms-admin-token:admin:ws-demo|ws-acme,ms-viewer-token:viewer:ws-demo,ms-acme-token:admin:ws-acme";
const DAY: i64 = 86_400_000;
const HOUR: i64 = 3_600_000;

fn ms(t: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(t)
        .unwrap()
        .timestamp_millis()
}

fn app(engine: Engine, now: &str, ai: Ai) -> axum::Router {
    router(AppState::with_ai(
        engine,
        Auth::parse(TOKENS, 0, 0).unwrap(),
        Clock::pinned(ms(now)),
        Signer::from_secret(TOKENS),
        ai,
    ))
}

async fn call(
    app: &axum::Router,
    method: &str,
    uri: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json");
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let req = req
        .body(
            body.map(|b| Body::from(b.to_string()))
                .unwrap_or_else(Body::empty),
        )
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

async fn csv_call(app: &axum::Router, uri: &str) -> String {
    let req = Request::builder()
        .uri(uri)
        .header("authorization", "Bearer ms-viewer-token")
        .header("accept", "text/csv")
        .body(Body::empty())
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    String::from_utf8(bytes.to_vec()).unwrap()
}

// ---------------------------------------------------------------------
// The oracle: plain loops over rows read straight from Parquet.

#[derive(Clone, Copy)]
enum Agg {
    Count,
    Sum,
    Avg,
    Max,
    Ratio,
    Rate,
    CountDistinct,
    Quantile(f64),
    /// Categorical: events per category.
    Categories,
    /// Categorical count_distinct: distinct categories.
    DistinctCategories,
}

#[derive(Clone, PartialEq)]
enum V {
    Num(f64),
    Bool(bool),
    Text(String),
}

struct Check {
    key: &'static str,
    event_type: &'static str,
    channel: Option<&'static str>,
    hourly: bool,
    extract: fn(&EventRow, &Value) -> Option<V>,
    agg: Agg,
}

fn attrs(r: &EventRow) -> Value {
    r.attributes
        .as_deref()
        .map(|a| serde_json::from_str(a).unwrap())
        .unwrap_or(Value::Null)
}

fn num(a: &Value, k: &str) -> Option<V> {
    a.get(k).and_then(Value::as_f64).map(V::Num)
}

/// Type-7 quantile, written out independently of the engine's UDAF.
fn quantile(mut v: Vec<f64>, q: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let h = (v.len() - 1) as f64 * q;
    let lo = h.floor() as usize;
    let hi = h.ceil() as usize;
    Some(v[lo] + (h - lo as f64) * (v[hi] - v[lo]))
}

/// (value, sample size, categories) of `check` over `rows`, a period of
/// `hours` hours.
fn oracle(
    check: &Check,
    rows: &[&EventRow],
    hours: f64,
) -> (Option<f64>, i64, BTreeMap<String, f64>) {
    let vals: Vec<V> = rows
        .iter()
        .filter(|r| check.event_type.split('|').any(|t| t == r.event_type))
        .filter(|r| {
            check
                .channel
                .is_none_or(|c| r.channel.as_deref() == Some(c))
        })
        .filter_map(|r| (check.extract)(r, &attrs(r)))
        .collect();
    let n = vals.len() as i64;
    let nums = || -> Vec<f64> {
        vals.iter()
            .filter_map(|v| match v {
                V::Num(x) => Some(*x),
                _ => None,
            })
            .collect()
    };
    let mut cats = BTreeMap::new();
    let value = match check.agg {
        Agg::Count => Some(match vals.first() {
            Some(V::Bool(_)) => vals.iter().filter(|v| **v == V::Bool(true)).count() as f64,
            _ => n as f64,
        }),
        Agg::Rate => Some(n as f64 / hours),
        Agg::Sum => (n > 0).then(|| nums().iter().sum()),
        Agg::Avg => (n > 0).then(|| nums().iter().sum::<f64>() / n as f64),
        Agg::Max => nums().into_iter().reduce(f64::max),
        Agg::Ratio => {
            (n > 0).then(|| vals.iter().filter(|v| **v == V::Bool(true)).count() as f64 / n as f64)
        }
        Agg::CountDistinct => {
            let set: HashSet<String> = vals
                .iter()
                .map(|v| match v {
                    V::Text(s) => s.clone(),
                    V::Num(x) => x.to_string(),
                    V::Bool(b) => b.to_string(),
                })
                .collect();
            Some(set.len() as f64)
        }
        Agg::Quantile(q) => quantile(nums(), q),
        Agg::Categories | Agg::DistinctCategories => {
            for v in &vals {
                if let V::Text(s) = v {
                    *cats.entry(s.clone()).or_insert(0.0) += 1.0;
                }
            }
            Some(if matches!(check.agg, Agg::DistinctCategories) {
                cats.len() as f64
            } else {
                n as f64
            })
        }
    };
    (value, n, cats)
}

fn close(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(x), Some(y)) => (x - y).abs() <= 1e-6 * x.abs().max(y.abs()).max(1.0),
        _ => false,
    }
}

fn checks() -> Vec<Check> {
    vec![
        // Built-ins.
        Check {
            key: "call_count",
            event_type: "call_intelligence.row",
            channel: None,
            hourly: true,
            extract: |r, _| r.session_id.as_ref().map(|_| V::Num(1.0)),
            agg: Agg::Count,
        },
        Check {
            key: "calls_per_hour",
            event_type: "call_intelligence.row",
            channel: None,
            hourly: true,
            extract: |r, _| r.session_id.as_ref().map(|_| V::Num(1.0)),
            agg: Agg::Rate,
        },
        Check {
            key: "unique_callers",
            event_type: "call_intelligence.row",
            channel: None,
            hourly: false,
            extract: |r, _| r.user_id.clone().map(V::Text),
            agg: Agg::CountDistinct,
        },
        Check {
            key: "escalation_rate",
            event_type: "call_intelligence.row",
            channel: None,
            hourly: false,
            extract: |r, _| r.outcome.as_ref().map(|o| V::Bool(o == "escalated")),
            agg: Agg::Ratio,
        },
        Check {
            key: "call_outcome",
            event_type: "call_intelligence.row",
            channel: None,
            hourly: false,
            extract: |r, _| r.outcome.clone().map(V::Text),
            agg: Agg::Categories,
        },
        Check {
            key: "voice_quality_score",
            event_type: "call_intelligence.row",
            channel: None,
            hourly: false,
            extract: |_, a| num(a, "quality_score"),
            agg: Agg::Avg,
        },
        Check {
            key: "response_latency_p50",
            event_type: "call_intelligence.row",
            channel: None,
            hourly: true,
            extract: |r, _| r.latency_ms.filter(|x| *x >= 0.0).map(V::Num),
            agg: Agg::Quantile(0.5),
        },
        Check {
            key: "negative_emotion_rate",
            event_type: "emotion.detected",
            channel: None,
            hourly: false,
            extract: |_, a| {
                a.get("emotion")
                    .and_then(Value::as_str)
                    .map(|e| V::Bool(["anger", "frustration", "sadness"].contains(&e)))
            },
            agg: Agg::Ratio,
        },
        Check {
            key: "connector_latency_p95",
            event_type: "connector.call",
            channel: None,
            hourly: false,
            extract: |r, _| r.latency_ms.filter(|x| *x >= 0.0).map(V::Num),
            agg: Agg::Quantile(0.95),
        },
        Check {
            key: "voice_judge_pass_rate",
            event_type: "voice_judge.result",
            channel: None,
            hourly: false,
            extract: |_, a| a.get("passed").and_then(Value::as_bool).map(V::Bool),
            agg: Agg::Ratio,
        },
        Check {
            key: "order_value_total",
            event_type: "world.event",
            channel: None,
            hourly: false,
            extract: |_, a| num(a, "amount").filter(|v| matches!(v, V::Num(x) if *x >= 0.0)),
            agg: Agg::Sum,
        },
        Check {
            key: "surface_click_rate",
            event_type: "surface.event",
            channel: None,
            hourly: false,
            extract: |_, a| {
                a.get("action")
                    .and_then(Value::as_str)
                    .map(|s| V::Bool(s == "click"))
            },
            agg: Agg::Ratio,
        },
        // Custom metrics (see `custom_settings`).
        Check {
            key: "max_turns_voice",
            event_type: "call_intelligence.row",
            channel: Some("voice"),
            hourly: true,
            extract: |_, a| num(a, "turns"),
            agg: Agg::Max,
        },
        Check {
            key: "mid_quality_avg",
            event_type: "call_intelligence.row",
            channel: None,
            hourly: false,
            extract: |_, a| {
                num(a, "quality_score")
                    .filter(|v| matches!(v, V::Num(x) if (50.0..=90.0).contains(x)))
            },
            agg: Agg::Avg,
        },
        Check {
            key: "calls_by_service",
            event_type: "call_intelligence.row",
            channel: None,
            hourly: false,
            extract: |_, a| {
                a.get("service_id")
                    .and_then(Value::as_str)
                    .map(|s| V::Text(s.into()))
            },
            agg: Agg::Categories,
        },
        Check {
            key: "resolved_calls",
            event_type: "call_intelligence.row",
            channel: None,
            hourly: false,
            extract: |_, a| a.get("resolved").and_then(Value::as_bool).map(V::Bool),
            agg: Agg::Count,
        },
        Check {
            key: "agents_on_text",
            event_type: "call_intelligence.row",
            channel: Some("text"),
            hourly: false,
            extract: |_, a| {
                a.get("agent_id")
                    .and_then(Value::as_str)
                    .map(|s| V::Text(s.into()))
            },
            agg: Agg::DistinctCategories,
        },
        Check {
            key: "outbound_calls",
            event_type: "call_intelligence.row",
            channel: None,
            hourly: false,
            extract: |r, a| {
                if r.direction.as_deref() == Some("outbound") {
                    num(a, "turns")
                } else {
                    None
                }
            },
            agg: Agg::Count,
        },
        Check {
            key: "sentiment_known",
            event_type: "call_intelligence.row",
            channel: None,
            hourly: false,
            extract: |_, a| {
                a.get("sentiment")
                    .and_then(Value::as_str)
                    .filter(|s| ["positive", "negative"].contains(s))
                    .map(|s| V::Text(s.into()))
            },
            agg: Agg::Categories,
        },
        Check {
            key: "world_and_emotion_events",
            event_type: "world.event|emotion.detected",
            channel: None,
            hourly: false,
            extract: |_, a| {
                a.get("service_id")
                    .and_then(Value::as_str)
                    .map(|s| V::Text(s.into()))
            },
            agg: Agg::Count,
        },
        Check {
            key: "emotion_intensity_rate",
            event_type: "emotion.detected",
            channel: None,
            hourly: true,
            extract: |_, a| num(a, "intensity"),
            agg: Agg::Rate,
        },
    ]
}

/// A custom call_intelligence definition: `fields` plus the required
/// source and event types.
fn ci(fields: Value) -> Value {
    let mut d = json!({"source": "call_intelligence", "event_types": ["call_intelligence.row"]});
    for (k, v) in fields.as_object().unwrap() {
        d[k] = v.clone();
    }
    d
}

fn custom_settings() -> Value {
    json!({"definitions": [
        ci(json!({"key": "max_turns_voice", "name": "Most turns on a voice call", "metric_type": "numerical",
         "extraction_mode": "static", "extract_path": "$.turns", "aggregation": "max",
         "period_granularity": "hourly", "channel_scope": "voice"})),
        ci(json!({"key": "mid_quality_avg", "name": "Quality, 50 to 90 only", "metric_type": "numerical",
         "extraction_mode": "static", "extract_path": "$['quality_score']", "aggregation": "avg",
         "valid_range_min": 50, "valid_range_max": 90})),
        ci(json!({"key": "calls_by_service", "name": "Calls by service", "metric_type": "categorical",
         "extraction_mode": "static", "extract_path": "$.service_id"})),
        ci(json!({"key": "resolved_calls", "name": "Resolved calls", "metric_type": "boolean",
         "extraction_mode": "static", "extract_path": "$.resolved", "aggregation": "count"})),
        ci(json!({"key": "agents_on_text", "name": "Agents on text", "metric_type": "categorical",
         "extraction_mode": "static", "extract_path": "$.agent_id", "aggregation": "count_distinct",
         "channel_scope": "text"})),
        {"key": "emotion_intensity_rate", "name": "Intensity readings per hour", "metric_type": "numerical",
         "source": "emotion_events", "event_types": ["emotion.detected"], "extraction_mode": "static",
         "extract_path": "$.intensity", "aggregation": "rate", "period_granularity": "hourly"},
        ci(json!({"key": "switched_off", "name": "Inactive", "metric_type": "numerical",
         "extraction_mode": "static", "extract_path": "$.turns", "aggregation": "sum", "active": false})),
        {"key": "surface_event_count", "builtin": true, "active": false},
        ci(json!({"key": "outbound_calls", "name": "Outbound calls", "metric_type": "numerical",
         "extraction_mode": "static", "extract_path": "$.turns", "channel_scope": "outbound"})),
        ci(json!({"key": "sentiment_known", "name": "Sentiment, two kinds only", "metric_type": "categorical",
         "extraction_mode": "static", "extract_path": "$.sentiment", "aggregation": "count",
         "categories": ["positive", "negative"]})),
        {"key": "world_and_emotion_events", "name": "World and emotion events", "metric_type": "numerical",
         "source": "world_events", "event_types": ["world.event", "emotion.detected"],
         "extraction_mode": "static", "extract_path": "$.service_id", "aggregation": "count"}
    ]})
}

/// Events of simulated conversations (`attributes.simulation` true).
fn simulated(r: &EventRow) -> bool {
    attrs(r)["simulation"] == true
}

fn service_of(r: &EventRow) -> Option<String> {
    attrs(r)
        .get("service_id")
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// Compares one API value with the oracle over `rows`.
fn assert_value(check: &Check, got: &Value, rows: &[&EventRow], what: &str) {
    let start = ms(got["period_start"].as_str().unwrap());
    let end = ms(got["period_end"].as_str().unwrap());
    let in_period: Vec<&EventRow> = rows
        .iter()
        .copied()
        .filter(|r| r.time >= start && r.time < end)
        .collect();
    let hours = (end - start) as f64 / HOUR as f64;
    let (value, n, cats) = oracle(check, &in_period, hours);
    assert!(
        close(got["value"].as_f64(), value),
        "{} {what} {}: got {}, expected {value:?}",
        check.key,
        got["period_start"],
        got["value"]
    );
    assert_eq!(
        got["sample_size"].as_i64().unwrap(),
        n,
        "{} {what} sample size",
        check.key
    );
    if matches!(check.agg, Agg::Categories | Agg::DistinctCategories) {
        let got_cats: BTreeMap<String, f64> =
            serde_json::from_value(got["categories"].clone()).unwrap();
        assert_eq!(got_cats, cats, "{} {what} categories", check.key);
    }
}

async fn values_rows(engine: &Engine) -> Vec<String> {
    let mut out = Vec::new();
    for ws in ["ws-demo", "ws-acme"] {
        let rows = metricstore::metric_store::read::lookup(
            engine,
            &metricstore::metric_store::read::Lookup {
                workspace: ws.into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        // Float sums may differ in the last bits between runs (partition
        // order); ten significant digits are the same.
        out.extend(rows.into_iter().map(|mut r| {
            r.computed_at = 0;
            let v = r.value.take().map(|v| format!("{v:.10e}"));
            format!("{r:?} {v:?}")
        }));
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_values_match_independent_loops() {
    let dir = tempfile::tempdir().unwrap();
    let engine = common::demo_engine(dir.path(), 60_000, 3).await;
    let now = "2026-01-11T06:00:00Z";
    let app = app(engine.clone(), now, Ai::none());
    let (s, b) = call(
        &app,
        "PUT",
        "/v1/ws-demo/settings/metrics",
        Some("ms-admin-token"),
        Some(custom_settings()),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let definitions = b["definitions"].as_array().unwrap();
    assert_eq!(definitions.len(), 41 + 10);
    assert_eq!(
        definitions.iter().filter(|d| d["builtin"] == false).count(),
        10
    );

    let opts = pipeline::Options {
        from: Some("2026-01-08".parse().unwrap()),
        to: Some("2026-01-10".parse().unwrap()),
        now_ms: ms(now),
    };
    let report = pipeline::run(&engine, &Ai::none(), &opts).await.unwrap();
    assert_eq!(report.workspaces, 2);
    assert_eq!(report.days_computed, 6);
    assert!(report.values_written > 1000, "{report:?}");

    let rows = common::read_events(dir.path());
    // Values default to production: simulated conversations apart.
    let demo: Vec<&EventRow> = rows
        .iter()
        .filter(|r| r.workspace_id == "ws-demo" && !simulated(r))
        .collect();
    let simulations: Vec<&EventRow> = rows
        .iter()
        .filter(|r| r.workspace_id == "ws-demo" && simulated(r))
        .collect();
    assert!(
        simulations.len() > 20,
        "generate makes some simulated conversations"
    );
    let checks = checks();
    let mut compared = 0;
    for check in &checks {
        // Values over the range: every period of the metric's granularity.
        let (s, b) = call(
            &app,
            "GET",
            &format!(
                "/v1/ws-demo/metrics/{}?date_from=2026-01-08&date_to=2026-01-10&limit=365",
                check.key
            ),
            Some("ms-viewer-token"),
            None,
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        let values = b["values"].as_array().unwrap();
        let expected_periods = if check.hourly { 72 } else { 3 };
        // Hours without any event of the source have no row.
        assert!(
            values.len() <= expected_periods && values.len() >= expected_periods * 2 / 3,
            "{}: {} periods",
            check.key,
            values.len()
        );
        assert_eq!(
            b["granularity"],
            if check.hourly { "hourly" } else { "daily" }
        );
        for v in values {
            assert_eq!(v["entity_type"], "workspace");
            assert_value(check, v, &demo, "workspace");
            compared += 1;
        }
        // limit keeps the most recent periods.
        let (_, b2) = call(
            &app,
            "GET",
            &format!(
                "/v1/ws-demo/metrics/{}?date_from=2026-01-08&date_to=2026-01-10&limit=2",
                check.key
            ),
            Some("ms-viewer-token"),
            None,
        )
        .await;
        assert_eq!(
            b2["values"].as_array().unwrap().as_slice(),
            &values[values.len() - 2..]
        );

        // Trend: one daily point per day, the window ending "today".
        let (s, t) = call(
            &app,
            "GET",
            &format!("/v1/ws-demo/metrics/{}/trend?days=4", check.key),
            Some("ms-viewer-token"),
            None,
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{t}");
        let points = t["points"].as_array().unwrap();
        assert_eq!(points.len(), 4);
        assert_eq!(points[0]["date"], "2026-01-08");
        assert!(points[3]["value"].is_null(), "2026-01-11 was not computed");
        for p in &points[..3] {
            let day = ms(&format!("{}T00:00:00Z", p["date"].as_str().unwrap()));
            let in_day: Vec<&EventRow> = demo
                .iter()
                .copied()
                .filter(|r| r.time >= day && r.time < day + DAY)
                .collect();
            let (value, n, _) = oracle(check, &in_day, 24.0);
            assert!(
                close(p["value"].as_f64(), value),
                "{} trend {}: {} vs {value:?}",
                check.key,
                p["date"],
                p["value"]
            );
            assert_eq!(p["sample_size"].as_i64().unwrap(), n);
        }

        // Per service and per call (daily).
        let (s, b) = call(
            &app,
            "GET",
            &format!("/v1/ws-demo/metrics/{}?service_id=svc-sales&date_from=2026-01-09&date_to=2026-01-09", check.key),
            Some("ms-viewer-token"),
            None,
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        let sales: Vec<&EventRow> = demo
            .iter()
            .copied()
            .filter(|r| service_of(r).as_deref() == Some("svc-sales"))
            .collect();
        for v in b["values"].as_array().unwrap() {
            assert_eq!(v["entity_type"], "service");
            assert_eq!(v["granularity"], "daily");
            assert_value(check, v, &sales, "service");
            compared += 1;
        }
    }
    // A few calls, each through values and evaluate.
    let calls: Vec<String> = demo
        .iter()
        .filter(|r| {
            r.event_type == "call_intelligence.row"
                && r.time >= ms("2026-01-09T00:00:00Z")
                && r.time < ms("2026-01-10T00:00:00Z")
        })
        .filter_map(|r| r.session_id.clone())
        .take(4)
        .collect();
    assert_eq!(calls.len(), 4);
    for id in &calls {
        let of_call: Vec<&EventRow> = demo
            .iter()
            .copied()
            .filter(|r| r.session_id.as_deref() == Some(id.as_str()))
            .collect();
        for check in &checks {
            let (_, n, _) = oracle(check, &of_call, 24.0);
            let (s, b) = call(
                &app,
                "GET",
                &format!("/v1/ws-demo/metrics/{}?session_id={id}&date_from=2026-01-08&date_to=2026-01-10", check.key),
                Some("ms-viewer-token"),
                None,
            )
            .await;
            assert_eq!(s, StatusCode::OK, "{b}");
            let vals = b["values"].as_array().unwrap();
            if n == 0 {
                assert!(vals.is_empty(), "{} {id}: no events, no value", check.key);
            } else {
                assert_eq!(vals.len(), 1, "{} {id}", check.key);
                assert_eq!(vals[0]["scope"], "entity");
                assert_eq!(vals[0]["session_id"], id.as_str());
                assert_value(check, &vals[0], &of_call, "call");
                compared += 1;
            }
            // evaluate over the call's day gives the same number, unstored,
            // for the subject fields and for the documented subject_id.
            for body in [
                json!({"entity_type": "call", "entity_id": id, "date_from": "2026-01-08", "date_to": "2026-01-10"}),
                json!({"subject_id": id, "date_from": "2026-01-08T00:00:00Z", "date_to": "2026-01-11T00:00:00"}),
            ] {
                let (s, e) = call(
                    &app,
                    "POST",
                    &format!("/v1/ws-demo/metrics/{}/evaluate", check.key),
                    Some("ms-viewer-token"),
                    Some(body),
                )
                .await;
                assert_eq!(s, StatusCode::OK, "{e}");
                assert_eq!(e["persisted"], false);
                let m = &e["metric"];
                assert_eq!(m["entity_type"], "call");
                assert_eq!(m["entity_id"], id.as_str());
                assert_eq!(m["source"], "production");
                if n > 0 {
                    let (v3, _, _) = oracle(check, &of_call, 72.0);
                    assert!(
                        close(m["value"].as_f64(), v3),
                        "{} evaluate {id}: {} vs {v3:?}",
                        check.key,
                        m["value"]
                    );
                    assert_eq!(m["event_count"].as_i64().unwrap(), n);
                }
            }
        }
    }
    assert!(compared > 300, "compared {compared} values");

    // The same answers as CSV, row for row.
    for key in ["call_outcome", "voice_quality_score"] {
        let uri =
            format!("/v1/ws-demo/metrics/{key}?date_from=2026-01-08&date_to=2026-01-10&limit=365");
        let (_, json) = call(&app, "GET", &uri, Some("ms-viewer-token"), None).await;
        let csv = csv_call(&app, &uri).await;
        let mut lines = csv.lines();
        assert_eq!(
            lines.next().unwrap(),
            "metric_key,source,granularity,period_start,period_end,scope,entity_type,entity_id,service_id,session_id,category,value,sample_size,computed_at"
        );
        let mut expected = Vec::new();
        for v in json["values"].as_array().unwrap() {
            let num = |x: &Value| {
                x.as_f64()
                    .map(metricstore::api::csv::number)
                    .unwrap_or_default()
            };
            expected.push(format!(
                "{key},production,{},{},{},aggregate,workspace,ws-demo,,,,{},{},{}",
                v["granularity"].as_str().unwrap(),
                v["period_start"].as_str().unwrap(),
                v["period_end"].as_str().unwrap(),
                num(&v["value"]),
                v["sample_size"],
                v["computed_at"].as_str().unwrap()
            ));
            for (c, n) in v["categories"].as_object().into_iter().flatten() {
                expected.push(format!(
                    "{key},production,{},{},{},aggregate,workspace,ws-demo,,,{c},{},,{}",
                    v["granularity"].as_str().unwrap(),
                    v["period_start"].as_str().unwrap(),
                    v["period_end"].as_str().unwrap(),
                    num(n),
                    v["computed_at"].as_str().unwrap()
                ));
            }
        }
        assert_eq!(lines.collect::<Vec<_>>(), expected, "{key} as CSV");
    }
    let csv = csv_call(&app, "/v1/ws-demo/metrics/call_count/trend?days=4").await;
    assert_eq!(csv.lines().count(), 5);
    assert!(
        csv.lines()
            .last()
            .unwrap()
            .starts_with("call_count,2026-01-11,,0")
    );

    // Latest: the newest period of every active metric.
    let (s, b) = call(
        &app,
        "GET",
        "/v1/ws-demo/metrics",
        Some("ms-viewer-token"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let latest = b["metrics"].as_array().unwrap();
    let keys: HashSet<&str> = latest
        .iter()
        .map(|m| m["metric_key"].as_str().unwrap())
        .collect();
    assert_eq!(
        latest.len(),
        41 - 1 + 9,
        "40 active built-ins and 9 active custom metrics"
    );
    assert!(latest.iter().all(|m| m["source"] == "production"));
    assert!(!keys.contains("switched_off") && !keys.contains("surface_event_count"));
    for check in &checks {
        let m = latest
            .iter()
            .find(|m| m["metric_key"] == check.key)
            .unwrap();
        let expect_start = if check.hourly {
            "2026-01-10T23:00:00Z"
        } else {
            "2026-01-10T00:00:00Z"
        };
        assert_eq!(m["period_start"], expect_start, "{}", check.key);
        assert_value(check, m, &demo, "latest");
    }
    // Simulated conversations have values of their own.
    let (_, b) = call(
        &app,
        "GET",
        "/v1/ws-demo/metrics?source=simulation",
        Some("ms-viewer-token"),
        None,
    )
    .await;
    let sim = b["metrics"].as_array().unwrap();
    assert!(sim.iter().all(|m| m["source"] == "simulation"), "{b}");
    for check in &checks[..2] {
        let m = sim.iter().find(|m| m["metric_key"] == check.key).unwrap();
        assert_value(check, m, &simulations, "simulation");
    }
    // Only call_intelligence rows carry the mark.
    assert!(!sim.iter().any(|m| m["metric_key"] == "emotion_count"));
    let (_, b) = call(
        &app,
        "GET",
        "/v1/ws-demo/metrics?source=all",
        Some("ms-viewer-token"),
        None,
    )
    .await;
    assert_eq!(
        b["metrics"].as_array().unwrap().len(),
        latest.len() + sim.len()
    );
    let (_, b) = call(
        &app,
        "GET",
        "/v1/ws-demo/metrics/call_count?source=simulation&date_from=2026-01-09&date_to=2026-01-09&granularity=daily",
        Some("ms-viewer-token"),
        None,
    )
    .await;
    assert_value(
        &checks[0],
        &b["values"][0],
        &simulations,
        "simulation values",
    );
    // Per call, entity scope: the newest value of each call; scope all
    // adds the workspace's.
    let (s, b) = call(
        &app,
        "GET",
        &format!("/v1/ws-demo/metrics?scope=entity&entity_id={}", calls[0]),
        Some("ms-viewer-token"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let per_call = b["metrics"].as_array().unwrap();
    assert!(!per_call.is_empty());
    assert!(
        per_call
            .iter()
            .all(|m| m["entity_id"] == calls[0].as_str() && m["scope"] == "entity")
    );
    let (_, b) = call(
        &app,
        "GET",
        &format!("/v1/ws-demo/metrics?scope=all&session_id={}", calls[0]),
        Some("ms-viewer-token"),
        None,
    )
    .await;
    assert_eq!(b["metrics"].as_array().unwrap().len(), per_call.len());
    let (_, b) = call(
        &app,
        "GET",
        "/v1/ws-demo/metrics?scope=all",
        Some("ms-viewer-token"),
        None,
    )
    .await;
    let both = b["metrics"].as_array().unwrap();
    assert!(both.iter().any(|m| m["scope"] == "entity"));
    assert_eq!(
        both.iter().filter(|m| m["scope"] == "aggregate").count(),
        latest.len()
    );

    // Tenants are walls: ws-acme's values are its own.
    let (s, _) = call(
        &app,
        "GET",
        "/v1/ws-acme/metrics",
        Some("ms-viewer-token"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (_, b) = call(
        &app,
        "GET",
        "/v1/ws-acme/metrics/call_count?date_from=2026-01-10&date_to=2026-01-10&granularity=daily",
        Some("ms-acme-token"),
        None,
    )
    .await;
    let acme: Vec<&EventRow> = rows
        .iter()
        .filter(|r| r.workspace_id == "ws-acme" && !simulated(r))
        .collect();
    assert_value(&checks[0], &b["values"][0], &acme, "acme");
    let (s, b) = call(
        &app,
        "GET",
        "/v1/ws-acme/metrics/max_turns_voice",
        Some("ms-acme-token"),
        None,
    )
    .await;
    assert_eq!(
        s,
        StatusCode::NOT_FOUND,
        "custom metrics of ws-demo are not ws-acme's: {b}"
    );

    // A second run over the same period changes nothing.
    let before = values_rows(&engine).await;
    let files = |d: &std::path::Path| walk(&d.join("metrics/values")).len();
    let n_files = files(dir.path());
    let again = pipeline::run(
        &engine,
        &Ai::none(),
        &pipeline::Options {
            now_ms: ms(now) + HOUR,
            ..opts.clone()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        again.days_computed, 6,
        "a finished range runs again in full"
    );
    assert_eq!(values_rows(&engine).await, before);
    assert_eq!(files(dir.path()), n_files);

    // Latest values come from the newest days, and from older ones for a
    // metric the newest days lack: a metric added, then computed for the
    // first day only.
    let mut settings = custom_settings();
    settings["definitions"]
        .as_array_mut()
        .unwrap()
        .push(ci(json!({
        "key": "late_metric", "name": "Late", "metric_type": "numerical",
        "extraction_mode": "static", "extract_path": "$.turns", "aggregation": "sum"})));
    let (s, _) = call(
        &app,
        "PUT",
        "/v1/ws-demo/settings/metrics",
        Some("ms-admin-token"),
        Some(settings),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let day1 = pipeline::Options {
        from: Some("2026-01-08".parse().unwrap()),
        to: Some("2026-01-08".parse().unwrap()),
        now_ms: ms(now),
    };
    pipeline::run(&engine, &Ai::none(), &day1).await.unwrap();
    let (_, b) = call(
        &app,
        "GET",
        "/v1/ws-demo/metrics",
        Some("ms-viewer-token"),
        None,
    )
    .await;
    let latest = b["metrics"].as_array().unwrap();
    let late = latest
        .iter()
        .find(|m| m["metric_key"] == "late_metric")
        .expect("late_metric");
    assert_eq!(late["period_start"], "2026-01-08T00:00:00Z");
    let day1_rows: Vec<&EventRow> = demo
        .iter()
        .copied()
        .filter(|r| r.time >= ms("2026-01-08T00:00:00Z") && r.time < ms("2026-01-09T00:00:00Z"))
        .filter(|r| r.event_type == "call_intelligence.row")
        .collect();
    let turns: f64 = day1_rows
        .iter()
        .filter_map(|r| attrs(r)["turns"].as_f64())
        .sum();
    assert!(close(late["value"].as_f64(), Some(turns)));
    let unique = latest
        .iter()
        .find(|m| m["metric_key"] == "unique_callers")
        .unwrap();
    assert_eq!(unique["period_start"], "2026-01-10T00:00:00Z");
}

fn walk(d: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(d) else {
        return out;
    };
    for e in entries {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_roles_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let engine = common::demo_engine(dir.path(), 5_000, 1).await;
    let app = app(engine, "2026-01-10T12:00:00Z", Ai::none());

    let (s, b) = call(
        &app,
        "GET",
        "/v1/ws-demo/settings/metrics",
        Some("ms-viewer-token"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b.as_object().unwrap().len(), 1, "only definitions: {b}");
    assert_eq!(b["definitions"].as_array().unwrap().len(), 41);
    assert!(
        b["definitions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["builtin"] == true)
    );

    // Viewer may read, not write; other workspaces are walls; no token, 401.
    let (s, _) = call(
        &app,
        "PUT",
        "/v1/ws-demo/settings/metrics",
        Some("ms-viewer-token"),
        Some(custom_settings()),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = call(
        &app,
        "PUT",
        "/v1/ws-demo/settings/metrics",
        Some("ms-acme-token"),
        Some(custom_settings()),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, b) = call(&app, "GET", "/v1/ws-demo/settings/metrics", None, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(b["message"].is_string());
    let (s, _) = call(
        &app,
        "GET",
        "/v1/ws-demo/metrics/catalog",
        Some("wrong-token"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    let (s, b) = call(
        &app,
        "PUT",
        "/v1/ws-demo/settings/metrics",
        Some("ms-admin-token"),
        Some(custom_settings()),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (_, b) = call(
        &app,
        "GET",
        "/v1/ws-demo/settings/metrics",
        Some("ms-viewer-token"),
        None,
    )
    .await;
    let all = b["definitions"].as_array().unwrap();
    assert_eq!(all.len(), 51);
    assert_eq!(all.iter().filter(|m| m["builtin"] == false).count(), 10);
    assert_eq!(
        all.iter()
            .find(|m| m["key"] == "surface_event_count")
            .unwrap()["active"],
        false
    );

    // A bad PUT is a 400 naming the field, and changes nothing.
    let mut bad = custom_settings();
    bad["definitions"][2]["key"] = json!("Calls By Service");
    bad["definitions"][0]["ai_query_prompt"] = json!("x");
    let (s, b) = call(
        &app,
        "PUT",
        "/v1/ws-demo/settings/metrics",
        Some("ms-admin-token"),
        Some(bad),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(b["code"], "VALIDATION_ERROR");
    assert_eq!(b["field"], "definitions[0].ai_query_prompt");
    let fields: Vec<&str> = b["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert!(fields.contains(&"definitions[2].key"), "{fields:?}");
    let (_, after) = call(
        &app,
        "GET",
        "/v1/ws-demo/settings/metrics",
        Some("ms-viewer-token"),
        None,
    )
    .await;
    assert_eq!(after["definitions"].as_array().unwrap().len(), 51);
    // The settings as read back are accepted as they are.
    let (s, b) = call(
        &app,
        "PUT",
        "/v1/ws-demo/settings/metrics",
        Some("ms-admin-token"),
        Some(after.clone()),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b, after);
    // A custom metric without event_types is refused, naming the field.
    let mut no_types = custom_settings();
    no_types["definitions"][0]
        .as_object_mut()
        .unwrap()
        .remove("event_types");
    let (s, b) = call(
        &app,
        "PUT",
        "/v1/ws-demo/settings/metrics",
        Some("ms-admin-token"),
        Some(no_types),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(b["code"], "VALIDATION_ERROR");
    assert_eq!(b["field"], "definitions[0].event_types");
    // Malformed JSON, wrong shapes: 400 with the documented body.
    let req = Request::builder()
        .method("PUT")
        .uri("/v1/ws-demo/settings/metrics")
        .header("authorization", "Bearer ms-admin-token")
        .body(Body::from("{not json"))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    // Replacing the custom set with an empty one keeps built-ins.
    let (s, b) = call(
        &app,
        "PUT",
        "/v1/ws-demo/settings/metrics",
        Some("ms-admin-token"),
        Some(json!({"definitions": []})),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b["definitions"].as_array().unwrap().len(), 41);
    // Built-ins keep their switch ("preserved automatically"): the one
    // switched off above stays off until a PUT names it again.
    let inactive = |b: &Value| -> Vec<String> {
        b["definitions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["active"] == false)
            .map(|m| m["key"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(inactive(&b), vec!["surface_event_count".to_string()]);
    let (s, b) = call(
        &app,
        "PUT",
        "/v1/ws-demo/settings/metrics",
        Some("ms-admin-token"),
        Some(json!({"definitions": [{"key": "surface_event_count", "builtin": true, "active": true}]})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert!(inactive(&b).is_empty(), "{b}");

    // Query endpoints: unknown metric 404, bad parameters 400.
    for (uri, status) in [
        ("/v1/ws-demo/metrics/no_such_metric", StatusCode::NOT_FOUND),
        (
            "/v1/ws-demo/metrics/no_such_metric/trend",
            StatusCode::NOT_FOUND,
        ),
        (
            "/v1/ws-demo/metrics/call_count?limit=0",
            StatusCode::BAD_REQUEST,
        ),
        (
            "/v1/ws-demo/metrics/call_count?limit=366",
            StatusCode::BAD_REQUEST,
        ),
        (
            "/v1/ws-demo/metrics/call_count?limit=ten",
            StatusCode::BAD_REQUEST,
        ),
        (
            "/v1/ws-demo/metrics/call_count/trend?days=0",
            StatusCode::BAD_REQUEST,
        ),
        (
            "/v1/ws-demo/metrics/call_count/trend?days=366",
            StatusCode::BAD_REQUEST,
        ),
        (
            "/v1/ws-demo/metrics/call_count?date_from=2026-02-01&date_to=2026-01-01",
            StatusCode::BAD_REQUEST,
        ),
        (
            "/v1/ws-demo/metrics/call_count?date_from=yesterday",
            StatusCode::BAD_REQUEST,
        ),
        (
            "/v1/ws-demo/metrics/call_count?granularity=weekly",
            StatusCode::BAD_REQUEST,
        ),
        (
            "/v1/ws-demo/metrics/call_count?colour=red",
            StatusCode::BAD_REQUEST,
        ),
        ("/v1/ws-demo/metrics?source=crm", StatusCode::BAD_REQUEST),
        (
            "/v1/ws-demo/metrics?entity_type=planet",
            StatusCode::BAD_REQUEST,
        ),
        (
            "/v1/ws-demo/metrics?scope=everything",
            StatusCode::BAD_REQUEST,
        ),
        ("/v1/ws-demo/metrics?scope=entity", StatusCode::OK),
        ("/v1/ws-demo/metrics?scope=all", StatusCode::OK),
        ("/v1/ws-demo/metrics?source=all", StatusCode::OK),
        (
            "/v1/ws-demo/metrics/call_count/trend?source=all",
            StatusCode::BAD_REQUEST,
        ),
        (
            "/v1/ws-demo/metrics/call_count?date_from=2026-01-10T00:00:00",
            StatusCode::OK,
        ),
        (
            "/v1/ws-demo/metrics?scope=aggregate&session_id=x",
            StatusCode::BAD_REQUEST,
        ),
        ("/v1/ws-demo/metrics/catalog", StatusCode::OK),
    ] {
        let (s, b) = call(&app, "GET", uri, Some("ms-viewer-token"), None).await;
        assert_eq!(s, status, "{uri}: {b}");
        if s != StatusCode::OK {
            assert!(
                b["message"].as_str().is_some_and(|m| !m.is_empty()),
                "{uri}: {b}"
            );
            assert!(b["code"].is_string());
        }
    }
    let (_, c) = call(
        &app,
        "GET",
        "/v1/ws-demo/metrics/catalog",
        Some("ms-viewer-token"),
        None,
    )
    .await;
    assert_eq!(c["count"], 41);
    assert_eq!(c["sources"].as_array().unwrap().len(), 6);

    // evaluate: unknown metric or subject 404, AI without endpoint 422.
    let (s, _) = call(
        &app,
        "POST",
        "/v1/ws-demo/metrics/no_such/evaluate",
        Some("ms-viewer-token"),
        Some(json!({})),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, b) = call(
        &app,
        "POST",
        "/v1/ws-demo/metrics/call_count/evaluate",
        Some("ms-viewer-token"),
        Some(json!({"session_id": "call-nope"})),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{b}");
    let (s, _) = call(
        &app,
        "POST",
        "/v1/ws-demo/metrics/call_count/evaluate",
        Some("ms-viewer-token"),
        Some(json!({"planet": "x"})),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let ai_metric = json!({"definitions": [ci(json!({"key": "ai_quality", "name": "AI quality", "metric_type": "numerical",
        "extraction_mode": "ai_query", "ai_query_prompt": "Rate the call 0-100", "model_tier": "fast", "aggregation": "avg"}))]});
    let (s, _) = call(
        &app,
        "PUT",
        "/v1/ws-demo/settings/metrics",
        Some("ms-admin-token"),
        Some(ai_metric),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (s, b) = call(
        &app,
        "POST",
        "/v1/ws-demo/metrics/ai_quality/evaluate",
        Some("ms-viewer-token"),
        Some(json!({})),
    )
    .await;
    // An AI evaluation is a paid call: an admin's.
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    let (s, b) = call(
        &app,
        "POST",
        "/v1/ws-demo/metrics/ai_quality/evaluate",
        Some("ms-admin-token"),
        Some(json!({})),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    // A call that exists, but no AI endpoint: 503; an unknown call: 404.
    let rows = common::read_events(dir.path());
    let a_call = rows
        .iter()
        .find(|r| {
            r.workspace_id == "ws-demo"
                && r.event_type == "call_intelligence.row"
                && r.time < ms("2026-01-10T12:00:00Z")
        })
        .and_then(|r| r.session_id.clone())
        .unwrap();
    let (s, b) = call(
        &app,
        "POST",
        "/v1/ws-demo/metrics/ai_quality/evaluate",
        Some("ms-admin-token"),
        Some(json!({"subject_id": a_call})),
    )
    .await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{b}");
    assert_eq!(b["code"], "NOT_CONFIGURED");
    let (s, b) = call(
        &app,
        "POST",
        "/v1/ws-demo/metrics/ai_quality/evaluate",
        Some("ms-admin-token"),
        Some(json!({"subject_id": "CA-not-a-call"})),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{b}");
    let (_, c) = call(
        &app,
        "GET",
        "/v1/ws-demo/metrics/catalog",
        Some("ms-viewer-token"),
        None,
    )
    .await;
    let entry = c["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["key"] == "ai_quality")
        .unwrap()
        .clone();
    assert_eq!(entry["computable"], false);
}

// ---------------------------------------------------------------------
// AI metrics through a local chat-completions server.

/// A chat-completions server: answers 1.5 x the call's quality score, and
/// fails some first requests with a 503 (the client must retry).
async fn fake_model(requests: Arc<AtomicUsize>) -> String {
    use axum::routing::post;
    let seen = Arc::new(std::sync::Mutex::new(HashSet::<String>::new()));
    let handler = move |axum::Json(body): axum::Json<Value>| {
        let requests = Arc::clone(&requests);
        let seen = Arc::clone(&seen);
        async move {
            let n = requests.fetch_add(1, Ordering::SeqCst);
            // The first question about every third conversation is
            // answered 503: the client must retry it.
            let text = body["messages"][1]["content"]
                .as_str()
                .unwrap_or("")
                .to_string();
            if seen.lock().unwrap().insert(text) && n % 3 == 2 {
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    axum::Json(json!({"error": "busy"})),
                );
            }
            if body["model"] != "tiny-model" {
                return (
                    StatusCode::BAD_REQUEST,
                    axum::Json(json!({"error": "unknown model"})),
                );
            }
            let user = body["messages"][1]["content"].as_str().unwrap_or("");
            let q: f64 = user
                .split("\"quality_score\":")
                .nth(1)
                .and_then(|s| s.split([',', '}']).next())
                .and_then(|s| s.parse().ok())
                .unwrap_or(-1.0);
            let answer = format!("{}", q * 1.5);
            (
                StatusCode::OK,
                axum::Json(
                    json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": answer}}]}),
                ),
            )
        }
    };
    let app = axum::Router::new().route("/v1/chat/completions", post(handler));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/v1")
}

/// The AI client of the local model at `url`, the `fast` tier only, with
/// `budget` requests per workspace and run.
fn local_ai(url: String, budget: usize) -> Ai {
    Ai {
        extractor: Some(Arc::new(
            ChatClient::new(AiConfig {
                url,
                api_key: Some("local-key".into()),
                models: [("fast".to_string(), "tiny-model".to_string())].into(),
                timeout: std::time::Duration::from_secs(10),
                retries: 3,
                budget,
            })
            .unwrap(),
        )),
        budget,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ai_query_metric_through_a_local_protocol_server() {
    let dir = tempfile::tempdir().unwrap();
    let engine = common::demo_engine(dir.path(), 150_000, 2).await;
    let now = "2026-01-10T20:00:00Z";
    let requests = Arc::new(AtomicUsize::new(0));
    let url = fake_model(Arc::clone(&requests)).await;
    let ai = local_ai(url, 5000);
    let app = app(engine.clone(), now, ai.clone());
    let settings = json!({"definitions": [ci(json!({"key": "ai_quality", "name": "AI quality", "metric_type": "numerical",
        "extraction_mode": "ai_query", "ai_query_prompt": "Rate the call from 0 to 100.", "model_tier": "fast",
        "aggregation": "avg", "valid_range_min": 0, "valid_range_max": 100}))]});
    let (s, b) = call(
        &app,
        "PUT",
        "/v1/ws-demo/settings/metrics",
        Some("ms-admin-token"),
        Some(settings),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");

    let opts = pipeline::Options {
        from: None,
        to: None,
        now_ms: ms(now),
    };
    let report = pipeline::run(&engine, &ai, &opts).await.unwrap();

    // The oracle: the 500 most recent ws-demo calls of the last 24 hours.
    let rows = common::read_events(dir.path());
    // Simulated conversations are valued too, their values apart.
    let mut calls: Vec<(i64, String, f64, bool)> = rows
        .iter()
        .filter(|r| r.workspace_id == "ws-demo" && r.event_type == "call_intelligence.row")
        .filter(|r| r.time >= ms(now) - DAY && r.time < ms(now))
        .map(|r| {
            (
                r.time,
                r.session_id.clone().unwrap(),
                attrs(r)["quality_score"].as_f64().unwrap(),
                simulated(r),
            )
        })
        .collect();
    assert!(
        calls.len() > 500,
        "the test needs more than 500 calls, has {}",
        calls.len()
    );
    calls.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let first: Vec<_> = calls[..500].to_vec();
    let kept: Vec<f64> = first
        .iter()
        .map(|c| c.2 * 1.5)
        .filter(|v| *v <= 100.0)
        .collect();
    assert!(
        kept.len() < 500,
        "some answers fall outside the valid range"
    );
    assert_eq!(report.ai_values, kept.len(), "{report:?}");
    assert_eq!(report.ai_dropped, 500 - kept.len());
    assert_eq!(report.ai_failed, 0);
    assert!(requests.load(Ordering::SeqCst) > 500, "503s were retried");

    // Per-call values and the aggregate, by day.
    let mut by_day: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    assert!(first.iter().any(|c| c.3), "some of them simulated");
    for c in first.iter().filter(|c| !c.3) {
        if c.2 * 1.5 <= 100.0 {
            by_day
                .entry(metricstore::storage::events::date_of_millis(c.0))
                .or_default()
                .push(c.2 * 1.5);
        }
    }
    let (s, b) = call(
        &app,
        "GET",
        "/v1/ws-demo/metrics/ai_quality?date_from=2026-01-09&date_to=2026-01-10",
        Some("ms-viewer-token"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let values = b["values"].as_array().unwrap();
    assert_eq!(values.len(), by_day.len());
    for v in values {
        let day = &v["period_start"].as_str().unwrap()[..10];
        let vals = &by_day[day];
        assert!(close(
            v["value"].as_f64(),
            Some(vals.iter().sum::<f64>() / vals.len() as f64)
        ));
        assert_eq!(v["sample_size"].as_i64().unwrap(), vals.len() as i64);
    }
    let (kept_call, dropped_call) = (
        first.iter().find(|c| !c.3 && c.2 * 1.5 <= 100.0).unwrap(),
        first.iter().find(|c| !c.3 && c.2 * 1.5 > 100.0).unwrap(),
    );
    let sim_call = first.iter().find(|c| c.3 && c.2 * 1.5 <= 100.0).unwrap();
    let (_, b) = call(
        &app,
        "GET",
        &format!(
            "/v1/ws-demo/metrics/ai_quality?source=simulation&session_id={}&date_from=2026-01-09&date_to=2026-01-10",
            sim_call.1
        ),
        Some("ms-viewer-token"),
        None,
    )
    .await;
    assert_eq!(b["values"][0]["source"], "simulation", "{b}");
    assert!(close(
        b["values"][0]["value"].as_f64(),
        Some(sim_call.2 * 1.5)
    ));
    let (_, b) = call(
        &app,
        "GET",
        &format!(
            "/v1/ws-demo/metrics/ai_quality?session_id={}&date_from=2026-01-09&date_to=2026-01-10",
            kept_call.1
        ),
        Some("ms-viewer-token"),
        None,
    )
    .await;
    assert!(
        close(b["values"][0]["value"].as_f64(), Some(kept_call.2 * 1.5)),
        "{b}"
    );
    let (_, b) = call(
        &app,
        "GET",
        &format!(
            "/v1/ws-demo/metrics/ai_quality?session_id={}&date_from=2026-01-09&date_to=2026-01-10",
            dropped_call.1
        ),
        Some("ms-viewer-token"),
        None,
    )
    .await;
    assert!(
        b["values"][0]["value"].is_null(),
        "out of range answers are dropped: {b}"
    );

    // The next run asks only about the calls not yet valued.
    let before = requests.load(Ordering::SeqCst);
    let again = pipeline::run(&engine, &ai, &opts).await.unwrap();
    assert_eq!(again.ai_failed, 0, "{again:?}");
    assert_eq!(
        again.ai_values + again.ai_dropped,
        (calls.len() - 500).min(500)
    );
    assert!(requests.load(Ordering::SeqCst) - before >= calls.len() - 500);

    // evaluate asks the model about one call, without storing anything.
    for body in [
        json!({"session_id": kept_call.1}),
        json!({"subject_id": kept_call.1}),
    ] {
        let (s, e) = call(
            &app,
            "POST",
            "/v1/ws-demo/metrics/ai_quality/evaluate",
            Some("ms-admin-token"),
            Some(body),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{e}");
        assert!(close(
            e["metric"]["value"].as_f64(),
            Some(kept_call.2 * 1.5)
        ));
        assert_eq!(e["metric"]["event_count"], 1);
        assert_eq!(e["metric"]["source"], "production");
        let day = metricstore::storage::events::date_of_millis(kept_call.0);
        assert_eq!(e["metric"]["period_start"], format!("{day}T00:00:00Z"));
    }
    let (s, e) = call(
        &app,
        "POST",
        "/v1/ws-demo/metrics/ai_quality/evaluate",
        Some("ms-admin-token"),
        Some(json!({"subject_id": sim_call.1})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{e}");
    assert_eq!(e["metric"]["source"], "simulation");
    let (s, _) = call(
        &app,
        "POST",
        "/v1/ws-demo/metrics/ai_quality/evaluate",
        Some("ms-admin-token"),
        Some(json!({})),
    )
    .await;
    assert_eq!(
        s,
        StatusCode::UNPROCESSABLE_ENTITY,
        "AI metrics are evaluated per call"
    );
}

#[test]
fn a_killed_pipeline_resumes_and_loses_or_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let out = common::bin()
        .args([
            "generate",
            "--data",
            data,
            "--rows",
            "300000",
            "--days",
            "20",
            "--end",
            "2026-01-20",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let pipeline = || {
        let mut c = common::bin();
        c.args([
            "pipeline",
            "--data",
            data,
            "--from",
            "2026-01-01",
            "--to",
            "2026-01-20",
        ])
        .env("METRICSTORE_NOW", "2026-01-21T00:00:00Z")
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
        c
    };
    let checkpoint = dir.path().join("metrics/pipeline/checkpoint.json");
    let mut killed_mid_run = false;
    for _ in 0..3 {
        let mut child = pipeline().spawn().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        loop {
            std::thread::sleep(std::time::Duration::from_millis(20));
            let cp: Value = std::fs::read(&checkpoint)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or(Value::Null);
            let done = cp["done"].as_array().map(|d| d.len()).unwrap_or(0);
            if cp["finished"] == true || child.try_wait().unwrap().is_some() {
                break;
            }
            if done >= 3 {
                child.kill().unwrap();
                killed_mid_run = true;
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "pipeline made no progress"
            );
        }
        let _ = child.wait();
        if killed_mid_run {
            break;
        }
        let _ = std::fs::remove_file(&checkpoint);
    }
    assert!(killed_mid_run, "the pipeline was never caught mid-run");
    let out = pipeline().output().unwrap();
    assert!(out.status.success());
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report["days_resumed"].as_u64().unwrap() >= 3, "{report}");
    assert_eq!(
        report["days_resumed"].as_u64().unwrap() + report["days_computed"].as_u64().unwrap(),
        40
    );

    let rt = tokio::runtime::Runtime::new().unwrap();
    let resumed = rt.block_on(async {
        let engine = metricstore::repl::session(metricstore::storage::Store::open(data).unwrap())
            .await
            .unwrap();
        values_rows(&engine).await
    });
    // Unique per metric, period, subject and category: nothing twice.
    let unique: HashSet<&String> = resumed.iter().collect();
    assert_eq!(unique.len(), resumed.len());
    // And the same as a clean run from scratch.
    std::fs::remove_dir_all(dir.path().join("metrics")).unwrap();
    let out = pipeline().output().unwrap();
    assert!(out.status.success());
    let clean = rt.block_on(async {
        let engine = metricstore::repl::session(metricstore::storage::Store::open(data).unwrap())
            .await
            .unwrap();
        values_rows(&engine).await
    });
    assert_eq!(resumed.len(), clean.len());
    assert!(resumed == clean, "a resumed run must equal a clean one");

    // The values are a table in the REPL too.
    let out = common::bin()
        .args([
            "sql",
            "--data",
            data,
            "--format",
            "csv",
            "-c",
            "SELECT count(*) AS n FROM metric_values",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("n\n{}", clean.len())
    );

    // A range the wrong way round is a clear error.
    let out = common::bin()
        .args([
            "pipeline",
            "--data",
            data,
            "--from",
            "2026-01-10",
            "--to",
            "2026-01-01",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("before --from"));
}

/// The client's timeout, retry and give-up paths against a slow, then
/// failing, local server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_client_times_out_retries_and_gives_up() {
    use axum::routing::post;
    use metricstore::metric_store::ModelTier;
    use metricstore::metric_store::extract::Extractor;
    let hits = Arc::new(AtomicUsize::new(0));
    let h = Arc::clone(&hits);
    let app = axum::Router::new().route(
        "/chat/completions",
        post(move |axum::Json(body): axum::Json<Value>| {
            let h = Arc::clone(&h);
            async move {
                let n = h.fetch_add(1, Ordering::SeqCst);
                if body["model"] == "broken" {
                    return (
                        StatusCode::BAD_REQUEST,
                        axum::Json(json!({"error": "bad model"})),
                    );
                }
                if n == 0 {
                    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
                }
                (
                    StatusCode::OK,
                    axum::Json(json!({"choices": [{"message": {"content": "yes"}}]})),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let client = |retries: u32| {
        ChatClient::new(AiConfig {
            url: format!("http://{addr}"),
            api_key: None,
            models: [
                ("fast".to_string(), "m".to_string()),
                ("max".to_string(), "broken".to_string()),
            ]
            .into(),
            timeout: std::time::Duration::from_millis(300),
            retries,
            budget: 10,
        })
        .unwrap()
    };
    // The first request times out; the retry is answered.
    let c = client(2);
    assert_eq!(c.complete(ModelTier::Fast, "s", "u").await.unwrap(), "yes");
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    // A 4xx is not retried; an unmapped tier is refused before any request.
    let err = c.complete(ModelTier::Max, "s", "u").await.unwrap_err();
    assert!(err.to_string().contains("400"), "{err}");
    assert_eq!(hits.load(Ordering::SeqCst), 3);
    assert!(!c.has_model(ModelTier::Balanced));
    assert!(c.complete(ModelTier::Balanced, "s", "u").await.is_err());
    assert_eq!(hits.load(Ordering::SeqCst), 3);
    // No retries left: the timeout is the answer.
    hits.store(0, Ordering::SeqCst);
    let err = client(0)
        .complete(ModelTier::Fast, "s", "u")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("after 1 attempts"), "{err}");
}

/// A PUT of custom definitions only keeps the built-ins' switches ("built-in
/// metrics are preserved automatically"), and a workspace id of 255
/// characters stores its settings like any other.
#[tokio::test]
async fn builtins_keep_their_switch_and_long_workspace_ids_store() {
    let dir = tempfile::tempdir().unwrap();
    let engine = common::demo_engine(dir.path(), 2_000, 1).await;
    let app = app(engine, "2026-01-10T12:00:00Z", Ai::none());
    let get = |ws: String| {
        let app = app.clone();
        async move {
            let (s, b) = call(
                &app,
                "GET",
                &format!("/v1/{ws}/settings/metrics"),
                Some("ms-admin-token"),
                None,
            )
            .await;
            assert_eq!(s, StatusCode::OK, "{b}");
            b["definitions"].as_array().unwrap().clone()
        }
    };
    let defs = get("ws-demo".into()).await;
    let mut off = defs
        .iter()
        .find(|d| d["key"] == "voice_quality_score")
        .unwrap()
        .clone();
    off["active"] = json!(false);
    let (s, b) = call(
        &app,
        "PUT",
        "/v1/ws-demo/settings/metrics",
        Some("ms-admin-token"),
        Some(json!({"definitions": [off]})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, b) = call(
        &app,
        "PUT",
        "/v1/ws-demo/settings/metrics",
        Some("ms-admin-token"),
        Some(custom_settings()),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let defs = get("ws-demo".into()).await;
    let vqs = defs
        .iter()
        .find(|d| d["key"] == "voice_quality_score")
        .unwrap();
    assert_eq!(vqs["active"], false, "{vqs}");
    assert!(defs.iter().any(|d| d["builtin"] == false));

    // A token of every workspace, for an id of 255 characters (510 hex
    // characters would not fit a file name).
    let store = metricstore::storage::Store::open(dir.path().to_str().unwrap()).unwrap();
    let root = router(AppState::with_ai(
        Engine::new(store).await.unwrap(),
        Auth::parse("root-token:admin:*", 0, 0).unwrap(),
        Clock::pinned(ms("2026-01-10T12:00:00Z")),
        Signer::from_secret("root"),
        Ai::none(),
    ));
    let long = "w".repeat(255);
    let uri = format!("/v1/{long}/settings/metrics");
    let (s, b) = call(
        &root,
        "PUT",
        &uri,
        Some("root-token"),
        Some(custom_settings()),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, b) = call(&root, "GET", &uri, Some("root-token"), None).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert!(
        b["definitions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["builtin"] == false)
    );
}

/// One tenant whose values cannot be stored does not stop the others: its
/// units are reported as failed, the rest are stored, and the next run
/// retries only the failed ones.
#[tokio::test]
async fn a_failing_workspace_does_not_stop_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let engine = common::demo_engine(dir.path(), 20_000, 2).await;
    // A file where ws-acme's value partitions would go: its puts fail.
    let values = dir.path().join("metrics/values");
    std::fs::create_dir_all(&values).unwrap();
    let blocked = values.join(format!(
        "ws={}",
        metricstore::storage::values::ws_partition("ws-acme")
    ));
    std::fs::write(&blocked, b"not a directory").unwrap();
    let opts = pipeline::Options {
        from: Some("2026-01-09".parse().unwrap()),
        to: Some("2026-01-10".parse().unwrap()),
        now_ms: ms("2026-01-11T06:00:00Z"),
    };
    let report = pipeline::run(&engine, &Ai::none(), &opts).await.unwrap();
    assert_eq!(report.workspaces, 2, "{report:?}");
    assert_eq!(report.days_computed, 2, "{report:?}");
    assert_eq!(report.failed.len(), 2, "{report:?}");
    assert!(
        report.failed.iter().all(|f| f.starts_with("ws-acme|")),
        "{report:?}"
    );
    assert!(report.values_written > 0);
    // Unblocked, the same range resumes: only ws-acme's days are computed.
    std::fs::remove_file(&blocked).unwrap();
    let report = pipeline::run(&engine, &Ai::none(), &opts).await.unwrap();
    assert!(report.failed.is_empty(), "{report:?}");
    assert_eq!(
        (report.days_resumed, report.days_computed),
        (2, 2),
        "{report:?}"
    );
}

/// Each workspace has its own AI budget per run: the first workspace in
/// order cannot spend the second's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_workspace_has_its_own_ai_budget() {
    let dir = tempfile::tempdir().unwrap();
    let engine = common::demo_engine(dir.path(), 150_000, 2).await;
    let now = "2026-01-10T20:00:00Z";
    let requests = Arc::new(AtomicUsize::new(0));
    let url = fake_model(Arc::clone(&requests)).await;
    const BUDGET: usize = 20;
    let ai = local_ai(url, BUDGET);
    let app = app(engine.clone(), now, ai.clone());
    for ws in ["ws-demo", "ws-acme"] {
        let settings = json!({"definitions": [ci(json!({"key": "ai_quality", "name": "AI quality",
            "metric_type": "numerical", "extraction_mode": "ai_query",
            "ai_query_prompt": "Rate the call from 0 to 100.", "model_tier": "fast",
            "aggregation": "avg"}))]});
        let (s, b) = call(
            &app,
            "PUT",
            &format!("/v1/{ws}/settings/metrics"),
            Some("ms-admin-token"),
            Some(settings),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{b}");
    }
    let opts = pipeline::Options {
        from: None,
        to: None,
        now_ms: ms(now),
    };
    let report = pipeline::run(&engine, &ai, &opts).await.unwrap();
    assert_eq!(report.ai_requests, 2 * BUDGET, "{report:?}");
    // Both workspaces got values.
    for ws in ["ws-demo", "ws-acme"] {
        let (s, b) = call(
            &app,
            "GET",
            &format!("/v1/{ws}/metrics?scope=entity"),
            Some("ms-admin-token"),
            None,
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        let valued = b["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["metric_key"] == "ai_quality")
            .count();
        assert!(valued > 0, "{ws}: no AI values: {b}");
    }
}
