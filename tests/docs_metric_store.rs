//! The Metric Store document's examples, replayed against the real router:
//! every example request in `fixtures/docs/metric_store/` is sent as
//! written (the document's workspace id and CallSid mapped onto the test
//! data), and every answer must have exactly the documented fields, with
//! the documented JSON types, recursively. The documented parameters,
//! defaults, limits and status codes of the query routes are checked too.

mod common;

use std::collections::BTreeMap;
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
use serde_json::{Value, json};
use tower::ServiceExt;

const TOKENS: &str = "doc-admin:admin:ws-demo,doc-viewer:viewer:ws-demo";
const NOW: &str = "2026-01-11T00:00:00Z";
/// The document's CallSid, mapped onto a call of the test data.
const DOC_CALL: &str = "CA3db8587c7ac832dbca306287ef5f42f9";

fn fixture(name: &str) -> Value {
    let path = format!(
        "{}/fixtures/docs/metric_store/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn ms(t: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(t)
        .unwrap()
        .timestamp_millis()
}

fn app(engine: Engine, ai: Ai) -> axum::Router {
    router(AppState::with_ai(
        engine,
        Auth::parse(TOKENS, 0, 0).unwrap(),
        Clock::pinned(ms(NOW)),
        Signer::from_secret(TOKENS),
        ai,
    ))
}

async fn call(
    app: &axum::Router,
    method: &str,
    uri: &str,
    token: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {token}"))
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

/// The JSON type of a value, and for objects the types of their fields
/// (arrays: the shape of every element, which must agree).
fn shape(v: &Value) -> Value {
    match v {
        Value::Null => json!("null"),
        Value::Bool(_) => json!("boolean"),
        Value::Number(_) => json!("number"),
        Value::String(_) => json!("string"),
        Value::Array(items) => {
            let shapes: Vec<Value> = items.iter().map(shape).collect();
            if let Some(first) = shapes.first() {
                for s in &shapes {
                    assert_eq!(s, first, "array elements of different shapes");
                }
            }
            Value::Array(shapes.into_iter().take(1).collect())
        }
        Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), shape(v))).collect()),
    }
}

fn assert_same_shape(got: &Value, documented: &Value, what: &str) {
    assert_eq!(
        shape(got),
        shape(documented),
        "{what}: the answer {got}\ndoes not have the documented fields and types of {documented}"
    );
}

/// Every field the document's definition table names, plus the two the
/// settings answer adds (`active`, `builtin`) and the ones of the
/// extraction modes table (`ai_labels`, `sql_expr`, `categories` of the
/// call_topic example).
const DEFINITION_FIELDS: [&str; 21] = [
    "key",
    "name",
    "description",
    "metric_type",
    "source",
    "event_types",
    "extraction_mode",
    "model_tier",
    "ai_query_prompt",
    "extract_path",
    "aggregation",
    "unit",
    "period_granularity",
    "channel_scope",
    "valid_range_min",
    "valid_range_max",
    "active",
    "builtin",
    "ai_labels",
    "sql_expr",
    "categories",
];

/// A chat-completions server: answers "7" to model `good`, 400 to any
/// other model (a failure the client does not retry).
async fn fake_model(requests: Arc<AtomicUsize>) -> String {
    use axum::routing::post;
    let handler = move |axum::Json(body): axum::Json<Value>| {
        let requests = Arc::clone(&requests);
        async move {
            requests.fetch_add(1, Ordering::SeqCst);
            if body["model"] != "good" {
                return (
                    StatusCode::BAD_REQUEST,
                    axum::Json(json!({"error": "unknown model"})),
                );
            }
            (
                StatusCode::OK,
                axum::Json(
                    json!({"choices": [{"message": {"role": "assistant", "content": "7"}}]}),
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

fn ai(url: String) -> Ai {
    Ai {
        extractor: Some(Arc::new(
            ChatClient::new(AiConfig {
                url,
                api_key: None,
                models: [
                    ("balanced".to_string(), "good".to_string()),
                    ("fast".to_string(), "broken".to_string()),
                ]
                .into(),
                timeout: std::time::Duration::from_secs(10),
                retries: 0,
                budget: 100,
            })
            .unwrap(),
        )),
        budget: 100,
    }
}

/// Replaces the document's CallSid with `id` anywhere in a request.
fn map_call(v: &Value, id: &str) -> Value {
    serde_json::from_str(&v.to_string().replace(DOC_CALL, id)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documents_examples_work_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let engine = common::demo_engine(dir.path(), 5_000, 1).await;
    let requests = Arc::new(AtomicUsize::new(0));
    let url = fake_model(Arc::clone(&requests)).await;
    let app = app(engine.clone(), ai(url));
    // A real (production) call of the last 24 hours stands for the
    // document's CallSid.
    let rows = common::read_events(dir.path());
    let the_call = rows
        .iter()
        .filter(|r| r.workspace_id == "ws-demo" && r.event_type == "call_intelligence.row")
        .filter(|r| {
            r.attributes
                .as_deref()
                .is_some_and(|a| !a.contains("\"simulation\":true"))
        })
        .map(|r| (r.time, r.session_id.clone().unwrap()))
        .max()
        .unwrap();
    let day = metricstore::storage::events::date_of_millis(the_call.0);
    let the_call = the_call.1;

    // GET settings: exactly {"definitions": [...]}, the documented
    // built-in as documented, every definition within the documented
    // fields.
    let documented = fixture("settings_get_response.json");
    let (s, b) = call(
        &app,
        "GET",
        "/v1/ws-demo/settings/metrics",
        "doc-viewer",
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(
        b.as_object().unwrap().keys().collect::<Vec<_>>(),
        vec!["definitions"]
    );
    let defs = b["definitions"].as_array().unwrap();
    assert_eq!(defs.len(), 41, "41 built-in metrics");
    let vqs = defs
        .iter()
        .find(|d| d["key"] == "voice_quality_score")
        .unwrap();
    assert_same_shape(vqs, &documented["definitions"][0], "voice_quality_score");
    assert_eq!(vqs, &documented["definitions"][0]);
    for d in defs {
        for k in d.as_object().unwrap().keys() {
            assert!(
                DEFINITION_FIELDS.contains(&k.as_str()),
                "{}: undocumented field {k}",
                d["key"]
            );
        }
    }
    // sql_expr is an extraction mode of built-ins.
    assert!(defs.iter().any(|d| d["extraction_mode"] == "sql_expr"));

    // PUT settings: the curl body and the Python body, as written; the
    // answer is the settings, shaped as GET's.
    for name in ["settings_put_python.json", "settings_put_curl.json"] {
        let body = fixture(name);
        let (s, b) = call(
            &app,
            "PUT",
            "/v1/ws-demo/settings/metrics",
            "doc-admin",
            Some(body.clone()),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{name}: {b}");
        assert_eq!(b.as_object().unwrap().len(), 1);
        let defs = b["definitions"].as_array().unwrap();
        assert_eq!(defs.len(), 42);
        let custom = defs.iter().find(|d| d["builtin"] == false).unwrap();
        let mut expected = body["definitions"][0].clone();
        expected["active"] = json!(true);
        expected["builtin"] = json!(false);
        assert_eq!(custom, &expected, "{name} reads back as written");
    }
    // A viewer may not.
    let (s, _) = call(
        &app,
        "PUT",
        "/v1/ws-demo/settings/metrics",
        "doc-viewer",
        Some(fixture("settings_put_curl.json")),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    // The three custom metric examples, saved together.
    let examples: Vec<Value> = [
        "example_empathy_score.json",
        "example_protocol_followed.json",
        "example_call_topic.json",
    ]
    .iter()
    .map(|n| fixture(n))
    .collect();
    let (s, b) = call(
        &app,
        "PUT",
        "/v1/ws-demo/settings/metrics",
        "doc-admin",
        Some(json!({"definitions": examples})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (_, b) = call(
        &app,
        "GET",
        "/v1/ws-demo/settings/metrics",
        "doc-viewer",
        None,
    )
    .await;
    for written in &examples {
        let got = b["definitions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["key"] == written["key"])
            .unwrap();
        let mut expected = written.clone();
        expected["active"] = json!(true);
        expected["builtin"] = json!(false);
        assert_eq!(got, &expected);
    }

    // Evaluate: the documented request (the CallSid mapped), the
    // documented answer's fields and types.
    let request = map_call(&fixture("evaluate_request.json"), &the_call);
    let documented = fixture("evaluate_response.json");
    let (s, b) = call(
        &app,
        "POST",
        "/v1/ws-demo/metrics/empathy_score/evaluate",
        "doc-admin",
        Some(request.clone()),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_same_shape(&b, &documented, "evaluate");
    let m = &b["metric"];
    assert_eq!(m["metric_key"], "empathy_score");
    assert_eq!(m["metric_type"], "numerical");
    assert_eq!(m["value"].as_f64(), Some(7.0));
    assert_eq!(m["source"], "production");
    assert_eq!(m["entity_type"], "call");
    assert_eq!(m["entity_id"], the_call.as_str());
    assert_eq!(m["period_start"], format!("{day}T00:00:00Z"));
    assert_eq!(m["event_count"], 1);
    assert_eq!(m["unit"], "score");
    assert_eq!(m["computed_at"], NOW);
    assert_eq!(b["persisted"], false);
    assert_eq!(b["evaluated_at"], NOW);
    // Not persisted: no values for it.
    let (_, v) = call(
        &app,
        "GET",
        "/v1/ws-demo/metrics/empathy_score",
        "doc-viewer",
        None,
    )
    .await;
    assert_eq!(v["values"].as_array().unwrap().len(), 0, "{v}");

    // 404: no such metric; no conversation summary for the subject.
    let (s, b) = call(
        &app,
        "POST",
        "/v1/ws-demo/metrics/no_such_metric/evaluate",
        "doc-viewer",
        Some(request.clone()),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{b}");
    let (s, b) = call(
        &app,
        "POST",
        "/v1/ws-demo/metrics/empathy_score/evaluate",
        "doc-admin",
        Some(fixture("evaluate_request.json")),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "an unknown CallSid: {b}");
    // 422: an AI metric is evaluated per conversation, not for a workspace.
    let (s, b) = call(
        &app,
        "POST",
        "/v1/ws-demo/metrics/empathy_score/evaluate",
        "doc-admin",
        Some(json!({})),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    // 502: the AI endpoint fails (call_topic's tier maps to a model the
    // endpoint refuses).
    let (s, b) = call(
        &app,
        "POST",
        "/v1/ws-demo/metrics/call_topic/evaluate",
        "doc-admin",
        Some(request.clone()),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_GATEWAY, "{b}");
    assert!(b["message"].is_string());
    // 503: no AI endpoint configured.
    let unconfigured = self::app(engine.clone(), Ai::none());
    let (s, b) = call(
        &unconfigured,
        "POST",
        "/v1/ws-demo/metrics/empathy_score/evaluate",
        "doc-admin",
        Some(request.clone()),
    )
    .await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{b}");
    assert!(requests.load(Ordering::SeqCst) >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_query_routes_take_the_documented_parameters() {
    let dir = tempfile::tempdir().unwrap();
    let engine = common::demo_engine(dir.path(), 5_000, 1).await;
    pipeline::run(
        &engine,
        &Ai::none(),
        &pipeline::Options {
            from: Some("2026-01-10".parse().unwrap()),
            to: Some("2026-01-10".parse().unwrap()),
            now_ms: ms(NOW),
        },
    )
    .await
    .unwrap();
    let app = app(engine, Ai::none());
    let rows = common::read_events(dir.path());
    let a_call = rows
        .iter()
        .find(|r| r.workspace_id == "ws-demo" && r.event_type == "call_intelligence.row")
        .and_then(|r| r.session_id.clone())
        .unwrap();
    let get = |uri: String| {
        let app = app.clone();
        async move { call(&app, "GET", &uri, "doc-viewer", None).await }
    };

    // Latest values: source production (default), simulation, all; scope
    // aggregate (default), entity, all; the four filters.
    let (s, b) = get("/v1/ws-demo/metrics".into()).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let default = b["metrics"].as_array().unwrap().clone();
    assert_eq!(default.len(), 41);
    assert!(
        default
            .iter()
            .all(|m| m["source"] == "production" && m["scope"] == "aggregate")
    );
    let (_, b) = get("/v1/ws-demo/metrics?source=production&scope=aggregate".into()).await;
    assert_eq!(b["metrics"].as_array().unwrap(), &default);
    let mut counts = BTreeMap::new();
    for q in [
        "source=simulation",
        "source=all",
        "scope=entity",
        "scope=all",
        "entity_type=call",
        &format!("entity_id={a_call}"),
        "service_id=svc-sales",
        &format!("session_id={a_call}"),
        &format!("scope=entity&entity_type=call&entity_id={a_call}&service_id=svc-sales"),
    ] {
        let (s, b) = get(format!("/v1/ws-demo/metrics?{q}")).await;
        assert_eq!(s, StatusCode::OK, "{q}: {b}");
        counts.insert(q.to_string(), b["metrics"].as_array().unwrap().len());
    }
    assert!(counts["source=simulation"] > 0);
    assert_eq!(
        counts["source=all"],
        default.len() + counts["source=simulation"]
    );
    assert!(counts["scope=all"] > default.len());
    assert_eq!(counts["scope=entity"] + default.len(), counts["scope=all"]);
    assert_eq!(
        counts[&format!("session_id={a_call}")],
        counts[&format!("entity_id={a_call}")]
    );
    for q in ["source=staging", "scope=planet", "entity_type=planet"] {
        let (s, _) = get(format!("/v1/ws-demo/metrics?{q}")).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{q}");
    }

    // Values: date_from / date_to as ISO-8601 date-times, limit 1-365,
    // default 90.
    let (s, b) = get("/v1/ws-demo/metrics/call_count".into()).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["limit"], 90);
    let (s, b) = get(
        "/v1/ws-demo/metrics/call_count?date_from=2026-01-10T00:00:00Z&date_to=2026-01-10T06:00:00Z"
            .into(),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let hours = b["values"].as_array().unwrap();
    assert!(!hours.is_empty() && hours.len() <= 6, "{b}");
    for v in hours {
        let start = ms(v["period_start"].as_str().unwrap());
        assert!(start >= ms("2026-01-10T00:00:00Z") && start < ms("2026-01-10T06:00:00Z"));
    }
    for (limit, status) in [
        ("1", StatusCode::OK),
        ("365", StatusCode::OK),
        ("0", StatusCode::BAD_REQUEST),
        ("366", StatusCode::BAD_REQUEST),
    ] {
        let (s, b) = get(format!("/v1/ws-demo/metrics/call_count?limit={limit}")).await;
        assert_eq!(s, status, "limit={limit}: {b}");
    }
    let (_, b) = get("/v1/ws-demo/metrics/call_count?limit=1".into()).await;
    assert_eq!(b["values"].as_array().unwrap().len(), 1);

    // Trend: days 1-365, default 30.
    let (s, b) = get("/v1/ws-demo/metrics/voice_quality_score/trend".into()).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["days"], 30);
    assert_eq!(b["points"].as_array().unwrap().len(), 30);
    for (days, status) in [
        ("1", StatusCode::OK),
        ("365", StatusCode::OK),
        ("0", StatusCode::BAD_REQUEST),
        ("366", StatusCode::BAD_REQUEST),
    ] {
        let (s, _) = get(format!("/v1/ws-demo/metrics/call_count/trend?days={days}")).await;
        assert_eq!(s, status, "days={days}");
    }

    // Catalog: every metric, built-in and custom, with its configuration.
    let (s, b) = get("/v1/ws-demo/metrics/catalog".into()).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["metrics"].as_array().unwrap().len(), 41);
    let vqs = b["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["key"] == "voice_quality_score")
        .unwrap();
    assert_eq!(vqs["extraction_mode"], "static");
    assert_eq!(vqs["event_types"], json!(["call_intelligence.row"]));

    // Unknown metric: 404 on every per-metric route.
    for uri in [
        "/v1/ws-demo/metrics/no_such_metric",
        "/v1/ws-demo/metrics/no_such_metric/trend",
    ] {
        let (s, _) = get(uri.into()).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{uri}");
    }
}

/// Document 004: "Custom metrics cannot use `extraction_mode: "sql_expr"`
/// due to SQL injection risk." A PUT of the settings with a custom metric
/// carrying SQL, by the mode or by a `sql_expr` field, is a 400 in the
/// validation error body (`message`, `code`, `field`, `errors[]`) naming
/// that field, and nothing is saved.
#[tokio::test]
async fn a_custom_metric_with_sql_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let engine = common::demo_engine(dir.path(), 5_000, 1).await;
    let app = app(engine, Ai::none());
    let static_metric = json!({
        "key": "doubled_latency",
        "name": "Doubled latency",
        "metric_type": "numerical",
        "source": "call_intelligence",
        "event_types": ["call_intelligence.row"],
        "extraction_mode": "static",
        "extract_path": "$.quality_score",
        "aggregation": "avg"
    });
    let mut by_mode = static_metric.clone();
    by_mode["extraction_mode"] = json!("sql_expr");
    by_mode.as_object_mut().unwrap().remove("extract_path");
    let mut by_field = static_metric.clone();
    by_field["sql_expr"] = json!("latency_ms * 2");
    let mut both = by_mode.clone();
    both["sql_expr"] = json!("latency_ms * 2");
    const MODE: &str = "definitions[1].extraction_mode";
    const SQL: &str = "definitions[1].sql_expr";
    // The documented example first, so the refused metric is not the only
    // one: the whole PUT is refused.
    let example = fixture("settings_put_curl.json")["definitions"][0].clone();
    for (metric, fields) in [
        (by_mode, vec![MODE]),
        (by_field, vec![SQL]),
        (both, vec![SQL, MODE]),
    ] {
        let field = fields[0];
        let body = json!({"definitions": [example.clone(), metric]});
        let (s, b) = call(
            &app,
            "PUT",
            "/v1/ws-demo/settings/metrics",
            "doc-admin",
            Some(body),
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{field}: {b}");
        assert_same_shape(
            &b,
            &json!({"message": "", "code": "", "field": "", "errors": [{"field": "", "message": ""}]}),
            field,
        );
        assert_eq!(b["code"], "VALIDATION_ERROR", "{b}");
        assert_eq!(b["field"], field, "{b}");
        let named: Vec<&str> = b["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["field"].as_str().unwrap())
            .collect();
        assert_eq!(named, fields, "{b}");
        assert!(b["message"].as_str().unwrap().contains(field), "{b}");
    }
    // Nothing was saved: the built-ins alone.
    let (s, b) = call(
        &app,
        "GET",
        "/v1/ws-demo/settings/metrics",
        "doc-viewer",
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["definitions"].as_array().unwrap().len(), 41);
    assert!(
        b["definitions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["builtin"] == true),
        "{b}"
    );
}
