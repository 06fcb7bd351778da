//! Hostile input: generated requests against every route (mutations of
//! valid bodies: wrong types, huge and negative numbers, long, odd and
//! Unicode strings, deep nesting, unknown and missing fields; odd path
//! segments and query strings; odd headers; bodies that are not JSON). No
//! answer may be a 500 or a panic; a 502 or 503 only in the documented
//! `{code, message}` shape. 3,000 requests by default;
//! `METRICSTORE_HOSTILE_REQUESTS=100000 cargo test --test hostile` for the
//! long run.

mod common;

use axum::body::Body;
use axum::http::Request;
use metricstore::alerts::http::router;
use metricstore::api::auth::Auth;
use metricstore::api::token::Signer;
use metricstore::api::{AppState, Clock};
use metricstore::generate::{SKILLS, WORKSPACES};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use tower::ServiceExt;

const TOKEN: &str = "hostile-admin-token";

/// A valid request per route: method, path, `X-Workspace-Id`, body.
fn valid() -> Vec<(&'static str, String, Option<&'static str>, Option<Value>)> {
    let skill = SKILLS[0];
    let ws = WORKSPACES[0];
    let range = "startTime=2026-01-08T00:00:00Z&endTime=2026-01-11T00:00:00Z";
    vec![
        ("GET", "/health".into(), None, None),
        (
            "GET",
            "/v2/skills/metrics?metricNamespace=Alexa.Custom&maxResults=5".into(),
            None,
            None,
        ),
        (
            "POST",
            format!("/v2/skills/{skill}/metrics"),
            None,
            Some(json!({
                "startTime": "2026-01-08T00:00:00Z", "endTime": "2026-01-11T00:00:00Z",
                "maxResultsPerQuery": 50,
                "metricQueries": [
                    {"id": "a", "metricNamespace": "Alexa.Custom", "name": "UTTERANCES",
                     "aggregationPeriod": "BY_HOUR", "stat": "count", "groupBy": "intent",
                     "dimensions": [{"name": "Alexa.Locale", "value": "en-US"}]},
                    {"id": "b", "metricNamespace": "Alexa.Custom", "name": "SKILL_LATENCY",
                     "aggregationPeriod": "BY_DAY", "stat": "p90"}
                ]
            })),
        ),
        (
            "GET",
            format!("/v2/skills/{skill}/analytics/retention?{range}"),
            None,
            None,
        ),
        (
            "GET",
            format!("/v2/skills/{skill}/analytics/paths?{range}&intent=LaunchRequest&limit=5"),
            None,
            None,
        ),
        (
            "GET",
            format!("/v2/skills/{skill}/analytics/sessions?{range}"),
            None,
            None,
        ),
        (
            "GET",
            format!("/v2/skills/{skill}/analytics/intents?{range}"),
            None,
            None,
        ),
        (
            "POST",
            format!("/v1/{skill}/events"),
            None,
            Some(
                json!({"time": "2026-01-10T00:00:00Z", "event_type": "utterance",
                        "user_id": "u1", "session_id": "s1", "intent": "LaunchRequest",
                        "latency_ms": 120.5, "attributes": {"Alexa.Marketplace": "USAmazon"}}),
            ),
        ),
        ("GET", "/api/interaction-metrics".into(), Some(ws), None),
        (
            "POST",
            "/api/interaction-metrics".into(),
            Some(ws),
            Some(
                json!({"name": "Failed logins", "metricTypeId": "COUNT", "timeWindow": "5m",
                        "filters": [{"field": "action", "operator": "eq", "value": "login-fail"}],
                        "groupBy": ["resourceType"]}),
            ),
        ),
        (
            "GET",
            "/api/interaction-metrics/types".into(),
            Some(ws),
            None,
        ),
        (
            "GET",
            "/api/interaction-metrics/fields/discover?resourceTypeId=user".into(),
            Some(ws),
            None,
        ),
        (
            "POST",
            "/api/interaction-metrics/calculate-all".into(),
            Some(ws),
            None,
        ),
        ("GET", format!("/v1/{ws}/settings/metrics"), None, None),
        (
            "PUT",
            format!("/v1/{ws}/settings/metrics"),
            None,
            Some(
                json!({"definitions": [{"key": "talk_time", "name": "Talk time",
                "source": "call_intelligence", "event_types": ["call_intelligence.row"],
                "metric_type": "numerical", "extraction_mode": "static",
                "extract_path": "$.duration", "aggregation": "avg", "unit": "s",
                "valid_range_min": 0, "valid_range_max": 10000}]}),
            ),
        ),
        (
            "GET",
            format!("/v1/{ws}/metrics?scope=all&source=all"),
            None,
            None,
        ),
        ("GET", format!("/v1/{ws}/metrics/catalog"), None, None),
        (
            "GET",
            format!("/v1/{ws}/metrics/call_count?limit=10&granularity=daily"),
            None,
            None,
        ),
        (
            "GET",
            format!("/v1/{ws}/metrics/call_count/trend?days=7"),
            None,
            None,
        ),
        (
            "POST",
            format!("/v1/{ws}/metrics/call_count/evaluate"),
            None,
            Some(json!({"date_from": "2026-01-09"})),
        ),
        ("GET", "/api/metric-alerts".into(), Some(ws), None),
        (
            "POST",
            "/api/metric-alerts".into(),
            Some(ws),
            Some(json!({"name": "Failed utterances",
                        "skillMetric": {"metricNamespace": "Alexa.Custom", "name": "FAILED_UTTERANCES", "lookBack": "1d"},
                        "condition": {"operator": "gt", "threshold": 10},
                        "evaluationInterval": "1m", "for": "5m",
                        "channels": [{"type": "webhook", "url": "http://127.0.0.1:9/hook"}]})),
        ),
    ]
}

fn odd_string(rng: &mut StdRng) -> String {
    match rng.random_range(0..9) {
        0 => String::new(),
        1 => "x".repeat(rng.random_range(256..70_000)),
        2 => "𝕏\u{0}\u{202e}ü\u{fffd}日本".into(),
        3 => "../../etc/passwd".into(),
        4 => "=cmd|' /C calc'!A0".into(),
        5 => "%00%2e%2e%2f".into(),
        6 => " ".into(),
        7 => "9999-99-99T99:99:99Z".into(),
        _ => "\"'); DROP TABLE events; --".into(),
    }
}

fn odd_value(rng: &mut StdRng, depth: usize) -> Value {
    match rng.random_range(0..12) {
        0 => Value::Null,
        1 => json!(true),
        2 => json!(-1),
        3 => json!(1e308),
        4 => json!(i64::MIN),
        5 => json!(u64::MAX),
        6 => json!(0.5),
        7 => Value::String(odd_string(rng)),
        8 => {
            // Deep nesting.
            let mut v = json!(1);
            for _ in 0..rng.random_range(10..300) {
                v = json!([v]);
            }
            v
        }
        9 if depth < 3 => json!({"k": odd_value(rng, depth + 1)}),
        10 => json!([odd_value(rng, depth + 1), "a", 1]),
        _ => json!({}),
    }
}

/// Replaces, removes or adds one member somewhere in `v`.
fn mutate(rng: &mut StdRng, v: &mut Value, depth: usize) {
    match v {
        Value::Object(map) if !map.is_empty() && depth < 6 => {
            let keys: Vec<String> = map.keys().cloned().collect();
            let k = keys[rng.random_range(0..keys.len())].clone();
            match rng.random_range(0..6) {
                0 => {
                    map.remove(&k);
                }
                1 => {
                    map.insert(odd_string(rng), odd_value(rng, depth));
                }
                2 | 3 => mutate(rng, map.get_mut(&k).expect("key"), depth + 1),
                _ => {
                    map.insert(k, odd_value(rng, depth));
                }
            }
        }
        Value::Array(items) if !items.is_empty() && depth < 6 => {
            let i = rng.random_range(0..items.len());
            if rng.random_bool(0.3) {
                items.push(odd_value(rng, depth));
            } else {
                mutate(rng, &mut items[i], depth + 1);
            }
        }
        other => *other = odd_value(rng, depth),
    }
}

fn odd_path(rng: &mut StdRng, path: &str) -> String {
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    let mut segs: Vec<String> = path.split('/').map(str::to_string).collect();
    if rng.random_bool(0.5) && segs.len() > 2 {
        let i = rng.random_range(2..segs.len());
        segs[i] = match rng.random_range(0..6) {
            0 => "..".into(),
            1 => "%2e%2e".into(),
            2 => "a".repeat(rng.random_range(200..5000)),
            3 => "%F0%9D%95%8F%00".into(),
            4 => "%20".into(),
            _ => "-1".into(),
        };
    }
    let mut query = query.to_string();
    if rng.random_bool(0.5) {
        let names = [
            "limit",
            "days",
            "maxResults",
            "startTime",
            "endTime",
            "scope",
            "source",
            "granularity",
            "date_from",
            "date_to",
            "stage",
            "intent",
            "metricNamespace",
            "nextToken",
            "x",
        ];
        let name = names[rng.random_range(0..names.len())];
        let value: String = match rng.random_range(0..5) {
            0 => "-99999999999999999999".into(),
            1 => "1e309".into(),
            2 => "%FF%FE".into(),
            3 => "x".repeat(rng.random_range(100..3000)),
            _ => "".into(),
        };
        if !query.is_empty() {
            query.push('&');
        }
        query.push_str(&format!("{name}={value}"));
    }
    let path = segs.join("/");
    if query.is_empty() {
        path
    } else {
        format!("{path}?{query}")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_hostile_requests_get_no_500() {
    let n: usize = std::env::var("METRICSTORE_HOSTILE_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3_000);
    let dir = tempfile::tempdir().unwrap();
    let engine = common::demo_engine(dir.path(), 20_000, 3).await;
    let spec = format!("{TOKEN}:admin:*");
    let state = AppState::new(
        engine,
        Auth::parse(&spec, 0, 0).unwrap(),
        Clock::pinned(1_768_089_600_000),
        Signer::from_secret(&spec),
    );
    let app = router(state);
    let routes = valid();
    let mut rng = StdRng::seed_from_u64(0x5eed);
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    for i in 0..n {
        let (method, path, ws, body) = &routes[rng.random_range(0..routes.len())];
        let mut body = body.clone();
        let path = if rng.random_bool(0.3) {
            odd_path(&mut rng, path)
        } else {
            path.clone()
        };
        let raw: Option<Vec<u8>> = match rng.random_range(0..10) {
            // Not JSON at all.
            0 => Some(
                (0..rng.random_range(0..2000))
                    .map(|_| rng.random())
                    .collect(),
            ),
            1 => Some(b"{\"a\": ".to_vec()),
            _ => {
                if let Some(b) = body.as_mut() {
                    for _ in 0..rng.random_range(1..4) {
                        mutate(&mut rng, b, 0);
                    }
                }
                body.map(|b| b.to_string().into_bytes())
            }
        };
        let mut req = Request::builder()
            .method(*method)
            .uri(&path)
            .header("authorization", format!("Bearer {TOKEN}"));
        req = match rng.random_range(0..8) {
            0 => req.header("content-type", "text/plain"),
            1 => req.header("x-workspace-id", "w".repeat(rng.random_range(1..9000))),
            2 => req.header("content-encoding", "gzip"),
            3 => req.header("accept", "text/csv"),
            4 => req.header(
                "idempotency-key",
                odd_string(&mut rng).replace(['\0', '\u{202e}'], ""),
            ),
            _ => req.header("content-type", "application/json"),
        };
        if let Some(w) = ws
            && rng.random_bool(0.9)
        {
            req = req.header("x-workspace-id", *w);
        }
        let Ok(req) = req.body(raw.map_or_else(Body::empty, Body::from)) else {
            continue; // a header value the HTTP layer itself refuses
        };
        let resp = app.clone().oneshot(req).await.unwrap();
        let status = resp.status().as_u16();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        *statuses.entry(status).or_default() += 1;
        assert_ne!(
            status,
            500,
            "request {i}: {method} {path}: {}",
            String::from_utf8_lossy(&bytes)
        );
        if status >= 500 {
            let v: Value = serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| panic!("request {i}: {status} without a JSON body"));
            assert!(
                matches!(status, 502 | 503) && v["message"].is_string(),
                "request {i}: {method} {path}: {status} {v}"
            );
        }
    }
    eprintln!("{n} requests: {statuses:?}");
    assert!(
        statuses.keys().any(|s| *s < 300),
        "no request succeeded: {statuses:?}"
    );
    assert!(
        statuses.keys().any(|s| (400..500).contains(s)),
        "{statuses:?}"
    );
}
