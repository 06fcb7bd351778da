//! Document 003 (Interaction Metrics API) replayed against the real router:
//! every example request of `fixtures/docs/interaction/` is sent as written
//! (only the document's placeholder ids are mapped onto the fixture data's
//! values, `placeholders.json`), and every answer must have exactly the
//! documented fields with the documented JSON types. Values are checked
//! against plain loops over the fixture rows.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use metricstore::api::auth::Auth;
use metricstore::api::token::Signer;
use metricstore::api::{AppState, Clock, router};
use metricstore::storage::events::EventRow;
use serde_json::{Value, json};
use tower::ServiceExt;

const DIR: &str = "fixtures/docs/interaction";
/// The document's `calculatedAt`, pinned as "now".
const NOW: &str = "2026-03-20T14:30:00Z";
const WS: &str = "ws-docs";
const ADMIN: &str = "docs-admin-token";
const VIEWER: &str = "docs-viewer-token";
const TOKENS: &str = "docs-admin-token:admin:ws-docs,docs-viewer-token:viewer:ws-docs";

fn fixture(name: &str) -> Value {
    let text = std::fs::read_to_string(format!("{DIR}/{name}")).unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn ms(t: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(t)
        .unwrap()
        .timestamp_millis()
}

async fn app() -> (tempfile::TempDir, axum::Router) {
    let dir = tempfile::tempdir().unwrap();
    let engine = common::fixture_engine(dir.path(), &format!("{DIR}/events.jsonl")).await;
    let app = router(AppState::new(
        engine,
        Auth::parse(TOKENS, 0, 0).unwrap(),
        Clock::pinned(ms(NOW)),
        Signer::from_secret(TOKENS),
    ));
    (dir, app)
}

async fn call(
    app: &axum::Router,
    method: &str,
    uri: &str,
    token: &str,
    body: Option<&Value>,
) -> (StatusCode, Value) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    let value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{method} {uri}: {e}"))
    };
    (status, value)
}

/// `got` has exactly the keys of `doc`, recursively, with the same JSON
/// types; array items have the shape of the document's item at the same
/// place, or of its first item where the lengths differ.
fn same_shape(doc: &Value, got: &Value, path: &str) {
    match (doc, got) {
        (Value::Object(d), Value::Object(g)) => {
            let dk: BTreeSet<_> = d.keys().collect();
            let gk: BTreeSet<_> = g.keys().collect();
            assert_eq!(dk, gk, "{path}: keys differ in {got}");
            for (k, v) in d {
                same_shape(v, &g[k], &format!("{path}.{k}"));
            }
        }
        (Value::Array(d), Value::Array(g)) => {
            if let Some(first) = d.first() {
                assert!(
                    !g.is_empty(),
                    "{path}: an empty list where the document has items"
                );
                for (i, item) in g.iter().enumerate() {
                    // Item by item where the lengths agree (the filters
                    // example mixes a text and a number value).
                    let doc_item = if d.len() == g.len() { &d[i] } else { first };
                    same_shape(doc_item, item, &format!("{path}[{i}]"));
                }
            }
        }
        (Value::Null, Value::Null)
        | (Value::Bool(_), Value::Bool(_))
        | (Value::Number(_), Value::Number(_))
        | (Value::String(_), Value::String(_)) => {}
        _ => panic!("{path}: the document has {doc}, the answer {got}"),
    }
}

/// The document's placeholder ids mapped onto the data's values; a metric
/// type placeholder names a mnemonic whose id `/types` gives.
fn mapped(body: &Value, types: &Value) -> Value {
    let placeholders = fixture("placeholders.json");
    let mut body = body.clone();
    for (key, table) in placeholders.as_object().unwrap() {
        let Some(Value::String(v)) = body.get(key) else {
            continue;
        };
        let Some(Value::String(real)) = table.get(v.as_str()) else {
            continue;
        };
        let real = if key == "metricTypeId" {
            types
                .as_array()
                .unwrap()
                .iter()
                .find(|t| t["mnemonic"] == real.as_str())
                .unwrap()["id"]
                .clone()
        } else {
            Value::String(real.clone())
        };
        body[key] = real;
    }
    body
}

fn attr(r: &EventRow, k: &str) -> Option<Value> {
    let v: Value = serde_json::from_str(r.attributes.as_deref()?).ok()?;
    v.get(k).cloned()
}

fn text(r: &EventRow, k: &str) -> String {
    attr(r, k)
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_else(|| "null".into())
}

/// The workspace's interactions of a resource type and action within
/// `window_ms` before now.
fn matching<'a>(
    rows: &'a [EventRow],
    resource_type: &'a str,
    action: &'a str,
    window_ms: i64,
) -> impl Iterator<Item = &'a EventRow> + 'a {
    let now = ms(NOW);
    rows.iter().filter(move |r| {
        r.workspace_id == WS
            && r.event_type == "interaction"
            && r.resource_type.as_deref() == Some(resource_type)
            && r.action.as_deref() == Some(action)
            && r.time >= now - window_ms
            && r.time < now
    })
}

/// `results` keyed by the values of exactly the dimensions `keys`, joined
/// with `|`.
fn by_dims(v: &Value, keys: &[&str]) -> BTreeMap<String, f64> {
    v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let dims = r["dimensions"].as_object().unwrap();
            assert_eq!(
                dims.keys().map(String::as_str).collect::<BTreeSet<_>>(),
                keys.iter().copied().collect::<BTreeSet<_>>(),
                "{r}"
            );
            let key: Vec<&str> = keys
                .iter()
                .map(|k| dims[*k].as_str().unwrap_or("null"))
                .collect();
            (key.join("|"), r["value"].as_f64().unwrap())
        })
        .collect()
}

fn single_value(v: &Value) -> f64 {
    assert_eq!(v["results"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["results"][0]["dimensions"], Value::Null, "{v}");
    v["results"][0]["value"].as_f64().unwrap()
}

async fn create(app: &axum::Router, body: &Value) -> Value {
    let (s, v) = call(app, "POST", "/api/interaction-metrics", ADMIN, Some(body)).await;
    assert_eq!(s, StatusCode::CREATED, "{body}: {v}");
    v
}

async fn calculate(app: &axum::Router, m: &Value) -> Value {
    let uri = format!(
        "/api/interaction-metrics/{}/calculate",
        m["id"].as_str().unwrap()
    );
    let (s, v) = call(app, "POST", &uri, VIEWER, None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["metricId"], m["id"]);
    assert_eq!(v["metricName"], m["name"]);
    assert_eq!(v["calculatedAt"], "2026-03-20T14:30:00.000Z");
    v
}

async fn put(app: &axum::Router, m: &Value, body: &Value) -> Value {
    let uri = format!("/api/interaction-metrics/{}", m["id"].as_str().unwrap());
    let (s, v) = call(app, "PUT", &uri, ADMIN, Some(body)).await;
    assert_eq!(s, StatusCode::OK, "{body}: {v}");
    v
}

#[tokio::test]
async fn document_003_replayed() {
    let (_dir, app) = app().await;
    let rows = common::read_fixture(&format!("{DIR}/events.jsonl"));
    let minute = 60_000;
    let hour = 60 * minute;

    // GET /types: the document's table, with this server's ids.
    let (s, types) = call(&app, "GET", "/api/interaction-metrics/types", VIEWER, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(types, fixture("types.response.json"));

    // POST: the create example as written.
    let request = mapped(&fixture("create.request.json"), &types);
    assert_eq!(request["metricTypeId"], "count-metric-type");
    let created = create(&app, &request).await;
    same_shape(&fixture("create.response.json"), &created, "create");
    for key in [
        "name",
        "description",
        "resourceTypeId",
        "actionId",
        "metricTypeId",
        "timeWindow",
        "filters",
        "groupBy",
        "enabled",
    ] {
        assert_eq!(created[key], request[key], "{key}");
    }
    assert_eq!(created["createdAt"], "2026-03-20T14:30:00.000Z");
    assert!(uuid::Uuid::parse_str(created["id"].as_str().unwrap()).is_ok());

    // A mnemonic is accepted too; the metric reports the canonical id.
    let mut by_mnemonic = request.clone();
    by_mnemonic["metricTypeId"] = json!("COUNT");
    let second = create(&app, &by_mnemonic).await;
    assert_eq!(second["metricTypeId"], "count-metric-type");

    // GET by id and the list.
    let id = created["id"].as_str().unwrap();
    let (s, v) = call(
        &app,
        "GET",
        &format!("/api/interaction-metrics/{id}"),
        VIEWER,
        None,
    )
    .await;
    assert_eq!((s, &v), (StatusCode::OK, &created));
    let (s, v) = call(&app, "GET", "/api/interaction-metrics", VIEWER, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v.as_array().unwrap().len(), 2);
    for m in v.as_array().unwrap() {
        same_shape(&fixture("create.response.json"), m, "list");
    }

    // Calculate: the single-metric answer.
    let v = calculate(&app, &created).await;
    same_shape(&fixture("calculate.response.json"), &v, "calculate");
    assert_eq!(v["metricType"], "COUNT");
    let want = matching(&rows, "customer", "login-fail", 5 * minute).count();
    assert_eq!(single_value(&v), want as f64);
    assert!(
        v["results"][0]["value"].is_u64(),
        "a count is a JSON integer"
    );
    assert!(want > 0);

    // The filters example, as written, on the created metric (PUT
    // changes the fields it names).
    let filters = fixture("filters.request.json");
    let updated = put(&app, &created, &filters).await;
    let mut doc_shape = fixture("create.response.json");
    doc_shape["filters"] = filters["filters"].clone();
    same_shape(&doc_shape, &updated, "update");
    assert_eq!(updated["filters"], filters["filters"]);
    assert_eq!(updated["createdAt"], created["createdAt"]);
    let v = calculate(&app, &created).await;
    same_shape(
        &fixture("calculate.response.json"),
        &v,
        "calculate filtered",
    );
    let want = matching(&rows, "customer", "login-fail", 5 * minute)
        .filter(|r| {
            text(r, "country") == "ZA"
                && attr(r, "attempts")
                    .and_then(|a| a.as_f64())
                    .is_some_and(|a| a > 3.0)
        })
        .count();
    assert!(want > 0);
    assert_eq!(single_value(&v), want as f64);

    // The groupBy example, as written, on the second metric.
    put(&app, &second, &fixture("group-by.request.json")).await;
    let v = calculate(&app, &second).await;
    let mut doc_shape = fixture("calculate.response.json");
    doc_shape["results"] = fixture("group-by.response.json")["results"].clone();
    same_shape(&doc_shape, &v, "calculate grouped by two");
    let mut want: BTreeMap<String, f64> = BTreeMap::new();
    for r in matching(&rows, "customer", "login-fail", 5 * minute) {
        *want
            .entry(format!("{}|{}", text(r, "country"), text(r, "browser")))
            .or_default() += 1.0;
    }
    assert!(want.len() > 1);
    assert_eq!(
        by_dims(&v, &["interaction_country", "interaction_browser"]),
        want
    );

    // A metric grouped by country: the document's grouped answer.
    let third = create(&app, &request).await;
    put(&app, &third, &fixture("calculate-grouped.request.json")).await;
    let v = calculate(&app, &third).await;
    let mut doc_shape = fixture("calculate.response.json");
    doc_shape["results"] = fixture("calculate-grouped.response.json")["results"].clone();
    same_shape(&doc_shape, &v, "calculate grouped");
    let mut want: BTreeMap<String, f64> = BTreeMap::new();
    for r in matching(&rows, "customer", "login-fail", 5 * minute) {
        *want.entry(text(r, "country")).or_default() += 1.0;
    }
    assert_eq!(by_dims(&v, &["interaction_country"]), want);

    // The four examples.
    let orders = create(
        &app,
        &mapped(&fixture("example-orders-1h.request.json"), &types),
    )
    .await;
    let v = calculate(&app, &orders).await;
    same_shape(&fixture("calculate.response.json"), &v, "orders");
    let want = matching(&rows, "order", "created", hour).count();
    assert!(want > 0);
    assert_eq!(single_value(&v), want as f64);

    let avg = create(
        &app,
        &mapped(
            &fixture("example-avg-order-value-by-origin.request.json"),
            &types,
        ),
    )
    .await;
    assert_eq!(avg["metricTypeId"], "avg-metric-type");
    let v = calculate(&app, &avg).await;
    assert_eq!(v["metricType"], "AVG");
    let mut sums: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    for r in matching(&rows, "order", "chk-done", 24 * hour) {
        let e = sums.entry(text(r, "origin")).or_default();
        e.0 += attr(r, "total").unwrap().as_f64().unwrap();
        e.1 += 1.0;
    }
    assert!(sums.len() > 1);
    let got = by_dims(&v, &["interaction_origin"]);
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        sums.keys().collect::<Vec<_>>()
    );
    for (origin, (s, n)) in &sums {
        assert!((got[origin] - s / n).abs() < 1e-9, "{origin}");
    }

    let by_location = create(
        &app,
        &mapped(
            &fixture("example-failed-logins-by-country-5m.request.json"),
            &types,
        ),
    )
    .await;
    let v = calculate(&app, &by_location).await;
    let mut want: BTreeMap<String, f64> = BTreeMap::new();
    for r in matching(&rows, "customer", "login-fail", 5 * minute) {
        *want.entry(text(r, "login_location")).or_default() += 1.0;
    }
    assert!(want.len() > 1);
    assert_eq!(by_dims(&v, &["interaction_login_location"]), want);

    let bounces = create(
        &app,
        &mapped(&fixture("example-email-bounces-1h.request.json"), &types),
    )
    .await;
    let v = calculate(&app, &bounces).await;
    let want = matching(&rows, "email", "bounced", hour).count();
    assert!(want > 0);
    assert_eq!(single_value(&v), want as f64);

    // Every stored metric reads back in the create answer's shape.
    let (_, list) = call(&app, "GET", "/api/interaction-metrics", VIEWER, None).await;
    let list = list.as_array().unwrap().clone();
    assert_eq!(list.len(), 7);
    for m in &list {
        let keys: BTreeSet<&String> = m.as_object().unwrap().keys().collect();
        let doc = fixture("create.response.json");
        assert_eq!(keys, doc.as_object().unwrap().keys().collect(), "{m}");
    }

    // calculate-all: every enabled metric, each as its own calculate says.
    put(&app, &orders, &json!({"enabled": false})).await;
    let (s, all) = call(
        &app,
        "POST",
        "/api/interaction-metrics/calculate-all",
        ADMIN,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{all}");
    let doc = fixture("calculate-all.response.json");
    let keys: BTreeSet<&String> = all.as_object().unwrap().keys().collect();
    assert_eq!(keys, doc.as_object().unwrap().keys().collect());
    assert!(all["calculated"].is_u64());
    assert_eq!(all["calculated"], 6);
    let items = all["results"].as_array().unwrap();
    assert_eq!(items.len(), 6);
    assert!(!items.iter().any(|i| i["metricId"] == orders["id"]));
    for item in items {
        let id = item["metricId"].as_str().unwrap();
        let m = list.iter().find(|m| m["id"] == id).unwrap();
        let single = calculate(&app, m).await;
        let mut doc_item = doc["results"][0].clone();
        if !m["groupBy"].as_array().unwrap().is_empty() {
            doc_item["results"] = json!([single["results"][0].clone()]);
            doc_item["sampleValue"] = json!(0.5);
        }
        same_shape(&doc_item, item, "calculate-all");
        for key in [
            "metricId",
            "metricName",
            "metricType",
            "calculatedAt",
            "results",
        ] {
            assert_eq!(item[key], single[key], "{key}");
        }
        let n = single["results"].as_array().unwrap().len();
        assert_eq!(item["resultCount"], n);
        assert_eq!(item["sampleValue"], single["results"][0]["value"]);
    }

    // Field discovery: an array of paths.
    let line = std::fs::read_to_string(format!("{DIR}/discover.request.txt")).unwrap();
    let uri = line.trim().strip_prefix("GET ").unwrap().replace(
        "resourceTypeId=uuid&actionId=uuid",
        "resourceTypeId=customer&actionId=login-fail",
    );
    let (s, v) = call(&app, "GET", &uri, VIEWER, None).await;
    assert_eq!(s, StatusCode::OK);
    same_shape(&fixture("discover.response.json"), &v, "discover");
    let mut want = BTreeSet::new();
    for r in rows.iter().filter(|r| {
        r.workspace_id == WS
            && r.event_type == "interaction"
            && r.resource_type.as_deref() == Some("customer")
            && r.action.as_deref() == Some("login-fail")
    }) {
        let a: Value = serde_json::from_str(r.attributes.as_deref().unwrap()).unwrap();
        want.extend(
            a.as_object()
                .unwrap()
                .keys()
                .map(|k| format!("interaction.{k}")),
        );
    }
    let got: Vec<String> = serde_json::from_value(v).unwrap();
    assert_eq!(got, want.into_iter().collect::<Vec<_>>());
    for documented in fixture("discover.response.json").as_array().unwrap() {
        assert!(
            got.iter().any(|g| g == documented.as_str().unwrap()),
            "{documented}"
        );
    }

    // DELETE, then the id is unknown: 404 with the API's error body.
    let uri = format!(
        "/api/interaction-metrics/{}",
        bounces["id"].as_str().unwrap()
    );
    let (s, v) = call(&app, "DELETE", &uri, ADMIN, None).await;
    assert_eq!((s, v), (StatusCode::NO_CONTENT, Value::Null));
    for (method, uri) in [
        ("GET", uri.clone()),
        ("PUT", uri.clone()),
        ("DELETE", uri.clone()),
        ("POST", format!("{uri}/calculate")),
    ] {
        let body = json!({"name": "x"});
        let (s, v) = call(
            &app,
            method,
            &uri,
            ADMIN,
            Some(&body).filter(|_| method == "PUT"),
        )
        .await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{method} {uri}");
        same_shape(&json!({"message": "", "code": ""}), &v, "error");
        assert_eq!(v["code"], "METRIC_NOT_FOUND");
    }
}

#[tokio::test]
async fn every_documented_route_answers() {
    let (_dir, app) = app().await;
    let (_, types) = call(&app, "GET", "/api/interaction-metrics/types", VIEWER, None).await;
    let m = create(&app, &mapped(&fixture("create.request.json"), &types)).await;
    let id = m["id"].as_str().unwrap();
    // DELETE last, so the routes after it still find the metric.
    let mut routes = fixture("routes.json").as_array().unwrap().clone();
    routes.sort_by_key(|r| r["method"] == "DELETE");
    assert_eq!(routes.len(), 9);
    for route in &routes {
        let method = route["method"].as_str().unwrap();
        let uri = route["endpoint"].as_str().unwrap().replace(":id", id);
        let body = (method == "POST" && !uri.contains("calculate"))
            .then(|| mapped(&fixture("create.request.json"), &types))
            .or_else(|| (method == "PUT").then(|| json!({"enabled": true})));
        let (s, v) = call(&app, method, &uri, ADMIN, body.as_ref()).await;
        let want = match method {
            "POST" if body.is_some() => StatusCode::CREATED,
            "DELETE" => StatusCode::NO_CONTENT,
            _ => StatusCode::OK,
        };
        assert_eq!(s, want, "{method} {uri}: {v}");
    }
}

#[tokio::test]
async fn a_metric_that_cannot_be_calculated_is_never_stored() {
    let (_dir, app) = app().await;
    let created = create(
        &app,
        &json!({"name": "ok", "metricTypeId": "COUNT", "actionId": "login-fail"}),
    )
    .await;
    for body in [
        json!({"name": "x", "metricTypeId": "COUNT",
               "filters": [{"field": "resourceId", "operator": "gt", "value": 5}]}),
        json!({"name": "x", "metricTypeId": "RATE"}),
        json!({"name": "x", "metricTypeId": "sum-metric-type"}),
    ] {
        let (s, v) = call(&app, "POST", "/api/interaction-metrics", ADMIN, Some(&body)).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {v}");
        same_shape(&json!({"message": "", "code": ""}), &v, "error");
        assert_eq!(v["code"], "VALIDATION_ERROR");
        // Nor through an update of a stored metric.
        let mut change = body.clone();
        change.as_object_mut().unwrap().remove("name");
        let uri = format!(
            "/api/interaction-metrics/{}",
            created["id"].as_str().unwrap()
        );
        let (s, v) = call(&app, "PUT", &uri, ADMIN, Some(&change)).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{change}: {v}");
        let (_, v) = call(&app, "GET", &uri, ADMIN, None).await;
        assert_eq!(v, created);
    }
    let (_, v) = call(&app, "GET", "/api/interaction-metrics", ADMIN, None).await;
    assert_eq!(v.as_array().unwrap().len(), 1);
    let (s, v) = call(
        &app,
        "POST",
        "/api/interaction-metrics/calculate-all",
        ADMIN,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["calculated"], 1);
}

#[tokio::test]
async fn every_documented_operator_against_a_loop() {
    let (_dir, app) = app().await;
    let rows = common::read_fixture(&format!("{DIR}/events.jsonl"));
    let all_time = ms(NOW);
    let attempts = |r: &EventRow| attr(r, "attempts").and_then(|a| a.as_f64());
    type Check = Box<dyn Fn(&EventRow) -> bool>;
    let cases: Vec<(&str, &str, Value, Check)> = vec![
        (
            "interaction.country",
            "eq",
            json!("ZA"),
            Box::new(|r| text(r, "country") == "ZA"),
        ),
        (
            "interaction.country",
            "neq",
            json!("ZA"),
            Box::new(|r| text(r, "country") != "ZA"),
        ),
        (
            "interaction.attempts",
            "gt",
            json!(3),
            Box::new(move |r| attempts(r).is_some_and(|a| a > 3.0)),
        ),
        (
            "interaction.attempts",
            "gte",
            json!(3),
            Box::new(move |r| attempts(r).is_some_and(|a| a >= 3.0)),
        ),
        (
            "interaction.attempts",
            "lt",
            json!(3),
            Box::new(move |r| attempts(r).is_some_and(|a| a < 3.0)),
        ),
        (
            "interaction.attempts",
            "lte",
            json!(3),
            Box::new(move |r| attempts(r).is_some_and(|a| a <= 3.0)),
        ),
        (
            "interaction.email",
            "contains",
            json!("user3"),
            Box::new(|r| text(r, "email").contains("user3")),
        ),
        (
            "resourceId",
            "eq",
            json!("customer-2"),
            Box::new(|r| r.resource_id.as_deref() == Some("customer-2")),
        ),
        (
            "resourceId",
            "contains",
            json!("-1"),
            Box::new(|r| r.resource_id.as_deref().is_some_and(|id| id.contains("-1"))),
        ),
    ];
    for (field, operator, value, check) in cases {
        let body = json!({"name": format!("{field} {operator}"), "metricTypeId": "COUNT",
            "resourceTypeId": "customer", "actionId": "login-fail",
            "filters": [{"field": field, "operator": operator, "value": value}]});
        let m = create(&app, &body).await;
        let v = calculate(&app, &m).await;
        let want = matching(&rows, "customer", "login-fail", all_time)
            .filter(|r| check(r))
            .count();
        assert!(want > 0, "{body}");
        assert_eq!(single_value(&v), want as f64, "{body}");
    }

    // Group by resourceId; scope by originId.
    let m = create(
        &app,
        &json!({"name": "by resource", "metricTypeId": "COUNT", "resourceTypeId": "customer",
                "actionId": "login-fail", "originId": "web", "groupBy": ["resourceId"]}),
    )
    .await;
    let v = calculate(&app, &m).await;
    let mut want: BTreeMap<String, f64> = BTreeMap::new();
    for r in matching(&rows, "customer", "login-fail", all_time)
        .filter(|r| r.origin.as_deref() == Some("web"))
    {
        *want.entry(r.resource_id.clone().unwrap()).or_default() += 1.0;
    }
    assert!(want.len() > 1);
    assert_eq!(by_dims(&v, &["resourceId"]), want);
    let m = create(
        &app,
        &json!({"name": "from ios", "metricTypeId": "COUNT", "originId": "ios"}),
    )
    .await;
    let v = calculate(&app, &m).await;
    let want = rows
        .iter()
        .filter(|r| {
            r.workspace_id == WS
                && r.event_type == "interaction"
                && r.origin.as_deref() == Some("ios")
        })
        .count();
    assert!(want > 0);
    assert_eq!(single_value(&v), want as f64);
}
