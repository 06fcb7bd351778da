//! The Interaction Metrics API: the documented examples over generated
//! data checked against hand-written loops over the Parquet rows, every
//! validation rule, persistence across restarts, and concurrent writers.

mod common;

use std::collections::BTreeMap;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use metricstore::api::auth::Auth;
use metricstore::api::token::Signer;
use metricstore::api::{AppState, Clock, router};
use metricstore::storage::events::EventRow;
use serde_json::{Value, json};
use tower::ServiceExt;

const NOW: &str = "2026-01-10T12:00:00Z";
const TOKENS: &str = "ia-admin-token:admin:ws-demo,ia-viewer-token:viewer:ws-demo,ia-multi-token:admin:ws-demo|ws-acme";

async fn generated() -> (tempfile::TempDir, metricstore::engine::Engine) {
    let dir = tempfile::tempdir().unwrap();
    let engine = common::demo_engine(dir.path(), 60_000, 3).await;
    (dir, engine)
}

fn app(engine: metricstore::engine::Engine) -> axum::Router {
    let now = chrono::DateTime::parse_from_rfc3339(NOW)
        .unwrap()
        .timestamp_millis();
    router(AppState::new(
        engine,
        Auth::parse(TOKENS, 0, 0).unwrap(),
        Clock::pinned(now),
        Signer::from_secret(TOKENS),
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
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
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

fn ms(t: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(t)
        .unwrap()
        .timestamp_millis()
}

fn attr(r: &EventRow, k: &str) -> Option<Value> {
    let v: Value = serde_json::from_str(r.attributes.as_deref()?).ok()?;
    v.get(k).cloned()
}

/// Interactions of ws-demo in `[now - window, now)`.
fn interactions(rows: &[EventRow], window_ms: Option<i64>) -> impl Iterator<Item = &EventRow> {
    let now = ms(NOW);
    rows.iter().filter(move |r| {
        r.workspace_id == "ws-demo"
            && r.event_type == "interaction"
            && r.time < now
            && window_ms.is_none_or(|w| r.time >= now - w)
    })
}

fn results_by(v: &Value, key: &str) -> BTreeMap<String, f64> {
    v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["dimensions"][key].as_str().unwrap_or("null").to_string(),
                r["value"].as_f64().unwrap(),
            )
        })
        .collect()
}

async fn create(app: &axum::Router, body: Value) -> Value {
    let (s, v) = call(
        app,
        "POST",
        "/api/interaction-metrics",
        "ia-admin-token",
        Some(body),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    v
}

async fn calculate(app: &axum::Router, id: &Value) -> Value {
    let (s, v) = call(
        app,
        "POST",
        &format!(
            "/api/interaction-metrics/{}/calculate",
            id.as_str().unwrap()
        ),
        "ia-viewer-token",
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v
}

#[tokio::test]
async fn documented_examples_against_independent_loops() {
    let (dir, engine) = generated().await;
    let app = app(engine);
    let rows = common::read_events(dir.path());
    let day = 86_400_000;

    // Failed logins by country, last 2 days.
    let m = create(&app, json!({"name": "Failed logins by country", "metricTypeId": "COUNT", "resourceTypeId": "customer",
        "actionId": "login-fail", "timeWindow": "2d", "groupBy": ["interaction.country"]})).await;
    assert_eq!(m["name"], "Failed logins by country");
    assert!(uuid::Uuid::parse_str(m["id"].as_str().unwrap()).is_ok());
    let v = calculate(&app, &m["id"]).await;
    assert_eq!(v["metricId"], m["id"]);
    assert_eq!(v["metricName"], "Failed logins by country");
    assert_eq!(v["metricType"], "COUNT");
    assert_eq!(v["calculatedAt"], "2026-01-10T12:00:00.000Z");
    let mut want: BTreeMap<String, f64> = BTreeMap::new();
    for r in interactions(&rows, Some(2 * day)).filter(|r| {
        r.resource_type.as_deref() == Some("customer") && r.action.as_deref() == Some("login-fail")
    }) {
        *want
            .entry(
                attr(r, "country")
                    .and_then(|c| c.as_str().map(String::from))
                    .unwrap_or("null".into()),
            )
            .or_default() += 1.0;
    }
    assert!(want.len() >= 3);
    assert_eq!(results_by(&v, "interaction_country"), want);
    // Largest group first, as the document lists them.
    let values: Vec<f64> = v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["value"].as_f64().unwrap())
        .collect();
    assert!(values.windows(2).all(|w| w[0] >= w[1]), "{values:?}");

    // COUNT counts matching interactions even when a `field` is given.
    let with_field = create(&app, json!({"name": "Failed logins, with a field", "metricTypeId": "COUNT", "resourceTypeId": "customer",
        "actionId": "login-fail", "timeWindow": "2d", "field": "interaction.no_such_key"})).await;
    let c = calculate(&app, &with_field["id"]).await;
    assert_eq!(
        c["results"][0]["value"].as_f64().unwrap(),
        want.values().sum::<f64>()
    );
    let (s, _) = call(
        &app,
        "DELETE",
        &format!(
            "/api/interaction-metrics/{}",
            with_field["id"].as_str().unwrap()
        ),
        "ia-admin-token",
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT);

    // Average order value by origin, all time.
    let m = create(&app, json!({"name": "Average order value by origin", "metricTypeId": "AVG", "actionId": "order-placed",
        "field": "interaction.amount", "groupBy": ["originId"]})).await;
    let v = calculate(&app, &m["id"]).await;
    let mut sums: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    for r in interactions(&rows, None).filter(|r| r.action.as_deref() == Some("order-placed")) {
        let e = sums.entry(r.origin.clone().unwrap()).or_default();
        e.0 += attr(r, "amount").unwrap().as_f64().unwrap();
        e.1 += 1.0;
    }
    let got = results_by(&v, "originId");
    assert_eq!(got.len(), sums.len());
    for (origin, (s, n)) in sums {
        assert!((got[&origin] - s / n).abs() < 1e-9, "{origin}");
    }

    // Email bounces in the last 24 hours, no groupBy: dimensions null.
    let m = create(&app, json!({"name": "Email bounces", "metricTypeId": "COUNT", "resourceTypeId": "email", "actionId": "email-bounced", "timeWindow": "24h"})).await;
    let v = calculate(&app, &m["id"]).await;
    let want = interactions(&rows, Some(day))
        .filter(|r| r.action.as_deref() == Some("email-bounced"))
        .count() as f64;
    // A count is a JSON integer, as in the document.
    assert_eq!(
        v["results"],
        json!([{"value": want as u64, "dimensions": null}])
    );
    assert!(want > 0.0);

    // Orders in the last hour, as a count and as a rate per minute over 30 minutes.
    let m = create(&app, json!({"name": "Orders in the last hour", "metricTypeId": "COUNT", "actionId": "order-placed", "timeWindow": "1h"})).await;
    let v = calculate(&app, &m["id"]).await;
    let last_hour = interactions(&rows, Some(3_600_000))
        .filter(|r| r.action.as_deref() == Some("order-placed"))
        .count() as f64;
    assert_eq!(v["results"][0]["value"].as_f64().unwrap(), last_hour);
    let m = create(&app, json!({"name": "Order rate", "metricTypeId": "RATE", "actionId": "order-placed", "timeWindow": "30m"})).await;
    let v = calculate(&app, &m["id"]).await;
    let half = interactions(&rows, Some(1_800_000))
        .filter(|r| r.action.as_deref() == Some("order-placed"))
        .count() as f64;
    assert!((v["results"][0]["value"].as_f64().unwrap() - half / 30.0).abs() < 1e-9);

    // A numeric filter on a JSON number compares numbers: attempts > 3.
    let m = create(&app, json!({"name": "Many attempts", "metricTypeId": "DISTINCT_COUNT", "field": "resourceId", "actionId": "login-fail",
        "filters": [{"field": "interaction.attempts", "operator": "gt", "value": 3}]})).await;
    let v = calculate(&app, &m["id"]).await;
    let want: std::collections::BTreeSet<_> = interactions(&rows, None)
        .filter(|r| {
            r.action.as_deref() == Some("login-fail")
                && attr(r, "attempts")
                    .and_then(|a| a.as_f64())
                    .is_some_and(|a| a > 3.0)
        })
        .map(|r| r.resource_id.clone())
        .collect();
    assert_eq!(
        v["results"][0]["value"].as_f64().unwrap(),
        want.len() as f64
    );

    // calculate-all runs every enabled metric.
    let (s, _) = call(
        &app,
        "PUT",
        &format!("/api/interaction-metrics/{}", m["id"].as_str().unwrap()),
        "ia-admin-token",
        Some(json!({"enabled": false})),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    // Every metric at once is an admin's call.
    let (s, v) = call(
        &app,
        "POST",
        "/api/interaction-metrics/calculate-all",
        "ia-viewer-token",
        None,
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    let (s, v) = call(
        &app,
        "POST",
        "/api/interaction-metrics/calculate-all",
        "ia-admin-token",
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["calculated"], 5);
    assert_eq!(v.as_object().unwrap().len(), 2, "{v}");
    let bounces = v["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["metricName"] == "Email bounces")
        .unwrap();
    assert_eq!(bounces["resultCount"], 1);
    assert_eq!(bounces["calculatedAt"], "2026-01-10T12:00:00.000Z");
    assert!(bounces["sampleValue"].as_f64().unwrap() > 0.0);
    assert_eq!(bounces["sampleValue"], bounces["results"][0]["value"]);

    // Field discovery reads the data.
    let (s, v) = call(
        &app,
        "GET",
        "/api/interaction-metrics/fields/discover?resourceTypeId=order&actionId=order-placed",
        "ia-viewer-token",
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        v,
        json!([
            "interaction.amount",
            "interaction.country",
            "interaction.currency",
            "interaction.items"
        ])
    );
    let (_, v) = call(
        &app,
        "GET",
        "/api/interaction-metrics/fields/discover?actionId=email-bounced",
        "ia-viewer-token",
        None,
    )
    .await;
    assert_eq!(v, json!(["interaction.bounce_type", "interaction.country"]));
}

#[tokio::test]
async fn crud_roles_and_workspace_walls() {
    let (_dir, engine) = generated().await;
    let app = app(engine);
    let (s, v) = call(
        &app,
        "GET",
        "/api/interaction-metrics/types",
        "ia-viewer-token",
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let types: Vec<(&str, &str, bool)> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["id"].as_str().unwrap(),
                t["mnemonic"].as_str().unwrap(),
                t["requiresField"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        types,
        vec![
            ("count-metric-type", "COUNT", false),
            ("sum-metric-type", "SUM", true),
            ("avg-metric-type", "AVG", true),
            ("min-metric-type", "MIN", true),
            ("max-metric-type", "MAX", true),
            ("distinct-count-metric-type", "DISTINCT_COUNT", true),
            ("rate-metric-type", "RATE", false)
        ]
    );
    for t in v.as_array().unwrap() {
        assert_eq!(t.as_object().unwrap().len(), 5, "{t}");
    }

    let m = create(
        &app,
        json!({"name": "Logins", "metricTypeId": "COUNT", "actionId": "login-success"}),
    )
    .await;
    let id = m["id"].as_str().unwrap();
    assert_eq!(m["enabled"], true);
    // Sent as a mnemonic, reported as the id /types gives.
    assert_eq!(m["metricTypeId"], "count-metric-type");
    let (s, v) = call(
        &app,
        "GET",
        &format!("/api/interaction-metrics/{id}"),
        "ia-viewer-token",
        None,
    )
    .await;
    assert_eq!((s, &v), (StatusCode::OK, &m));
    let (s, v) = call(
        &app,
        "PUT",
        &format!("/api/interaction-metrics/{id}"),
        "ia-admin-token",
        Some(json!({"name": "Successful logins", "timeWindow": "7d"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        (
            v["name"].as_str(),
            v["timeWindow"].as_str(),
            v["actionId"].as_str()
        ),
        (Some("Successful logins"), Some("7d"), Some("login-success"))
    );
    assert_eq!(v["createdAt"], m["createdAt"]);

    // A viewer reads but does not write.
    let (s, _) = call(
        &app,
        "POST",
        "/api/interaction-metrics",
        "ia-viewer-token",
        Some(json!({"name": "x", "metricTypeId": "COUNT"})),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = call(
        &app,
        "DELETE",
        &format!("/api/interaction-metrics/{id}"),
        "ia-viewer-token",
        None,
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    // Another workspace sees nothing of ws-demo's.
    let req = |method: &str, uri: &str, ws: &str| {
        Request::builder()
            .method(method)
            .uri(uri)
            .header("authorization", "Bearer ia-multi-token")
            .header("x-workspace-id", ws)
            .body(Body::empty())
            .unwrap()
    };
    let resp = app
        .clone()
        .oneshot(req("GET", "/api/interaction-metrics", "ws-acme"))
        .await
        .unwrap();
    let body: Value = serde_json::from_slice(
        &axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(body, json!([]));
    let resp = app
        .clone()
        .oneshot(req(
            "GET",
            &format!("/api/interaction-metrics/{id}"),
            "ws-acme",
        ))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let resp = app
        .clone()
        .oneshot(req("GET", "/api/interaction-metrics", "ws-other"))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    // A token of several workspaces must name one.
    let (s, v) = call(
        &app,
        "GET",
        "/api/interaction-metrics",
        "ia-multi-token",
        None,
    )
    .await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("MISSING_WORKSPACE"))
    );

    let (s, _) = call(
        &app,
        "DELETE",
        &format!("/api/interaction-metrics/{id}"),
        "ia-admin-token",
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, v) = call(
        &app,
        "GET",
        &format!("/api/interaction-metrics/{id}"),
        "ia-admin-token",
        None,
    )
    .await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("METRIC_NOT_FOUND"))
    );
    let (s, _) = call(
        &app,
        "DELETE",
        &format!("/api/interaction-metrics/{id}"),
        "ia-admin-token",
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = call(
        &app,
        "POST",
        "/api/interaction-metrics/not-a-uuid/calculate",
        "ia-admin-token",
        None,
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn every_rule_is_a_400_naming_the_field() {
    let (_dir, engine) = generated().await;
    let app = app(engine);
    let cases: Vec<(Value, &str)> = vec![
        (json!({"metricTypeId": "COUNT"}), "name"),
        (json!({"name": "", "metricTypeId": "COUNT"}), "name"),
        (json!({"name": "x"}), "metricTypeId"),
        (
            json!({"name": "x", "metricTypeId": "MEDIAN"}),
            "metricTypeId",
        ),
        (json!({"name": "x", "metricTypeId": "SUM"}), "field"),
        (json!({"name": "x", "metricTypeId": "AVG"}), "field"),
        (json!({"name": "x", "metricTypeId": "MIN"}), "field"),
        (json!({"name": "x", "metricTypeId": "MAX"}), "field"),
        (
            json!({"name": "x", "metricTypeId": "DISTINCT_COUNT"}),
            "field",
        ),
        (json!({"name": "x", "metricTypeId": "RATE"}), "timeWindow"),
        (
            json!({"name": "x", "metricTypeId": "COUNT", "timeWindow": "1w"}),
            "timeWindow",
        ),
        (
            json!({"name": "x", "metricTypeId": "COUNT", "timeWindow": "0h"}),
            "timeWindow",
        ),
        (
            json!({"name": "x", "metricTypeId": "COUNT", "timeWindow": 5}),
            "timeWindow",
        ),
        (
            json!({"name": "x", "metricTypeId": "COUNT", "filters": [{"field": "interaction.a", "operator": "like", "value": "x"}]}),
            "filters[0].operator",
        ),
        (
            json!({"name": "x", "metricTypeId": "COUNT", "filters": [{"field": "nope", "operator": "eq", "value": "x"}]}),
            "filters[0].field",
        ),
        (
            json!({"name": "x", "metricTypeId": "COUNT", "filters": [{"field": "interaction.a", "operator": "eq", "value": {"x": 1}}]}),
            "filters[0].value",
        ),
        (
            json!({"name": "x", "metricTypeId": "COUNT", "filters": [{"field": "interaction.a", "operator": "contains", "value": 3}]}),
            "filters[0].value",
        ),
        (
            json!({"name": "x", "metricTypeId": "COUNT", "filters": "all"}),
            "filters",
        ),
        (
            json!({"name": "x", "metricTypeId": "COUNT", "groupBy": ["country"]}),
            "groupBy[0]",
        ),
        (
            json!({"name": "x", "metricTypeId": "COUNT", "groupBy": "interaction.country"}),
            "groupBy",
        ),
        (
            json!({"name": "x", "metricTypeId": "COUNT", "enabled": "yes"}),
            "enabled",
        ),
        (
            json!({"name": "x", "metricTypeId": "SUM", "field": "amount"}),
            "field",
        ),
        (
            json!({"name": "x", "metricTypeId": "COUNT", "unexpected": 1}),
            "unexpected",
        ),
        (
            json!({"name": "x".repeat(300), "metricTypeId": "COUNT"}),
            "name",
        ),
        // Accepted by the wire checks, refused by the compiler that
        // calculate runs: a text column in an ordering comparison with a
        // number.
        (
            json!({"name": "x", "metricTypeId": "COUNT", "filters": [{"field": "resourceId", "operator": "gt", "value": 5}]}),
            "filters[0]",
        ),
        (
            json!({"name": "x", "metricTypeId": "COUNT", "filters": [{"field": "interaction.a", "operator": "eq", "value": 1}, {"field": "actionId", "operator": "lte", "value": 2}]}),
            "filters[1]",
        ),
    ];
    for (body, field) in cases {
        let (s, v) = call(
            &app,
            "POST",
            "/api/interaction-metrics",
            "ia-admin-token",
            Some(body.clone()),
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {v}");
        let message = v["message"].as_str().unwrap();
        assert!(message.contains(&format!("{field}:")), "{body}: {message}");
    }
    let (s, v) = call(
        &app,
        "POST",
        "/api/interaction-metrics",
        "ia-admin-token",
        Some(json!({"metricTypeId": "SUM", "timeWindow": "x"})),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let m = v["message"].as_str().unwrap();
    assert!(
        m.contains("name:") && m.contains("field:") && m.contains("timeWindow:"),
        "{m}"
    );
    // An update that would break a rule is refused and changes nothing.
    let created = create(
        &app,
        json!({"name": "ok", "metricTypeId": "SUM", "field": "interaction.amount"}),
    )
    .await;
    let uri = format!(
        "/api/interaction-metrics/{}",
        created["id"].as_str().unwrap()
    );
    let (s, _) = call(
        &app,
        "PUT",
        &uri,
        "ia-admin-token",
        Some(json!({"field": null})),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (_, v) = call(&app, "GET", &uri, "ia-admin-token", None).await;
    assert_eq!(v, created);
    // Nothing was stored by the refused creates.
    let (_, v) = call(
        &app,
        "GET",
        "/api/interaction-metrics",
        "ia-admin-token",
        None,
    )
    .await;
    assert_eq!(v.as_array().unwrap().len(), 1);
    let (s, _) = call(
        &app,
        "GET",
        "/api/interaction-metrics/fields/discover?actionId="
            .to_string()
            .as_str(),
        "ia-admin-token",
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn definitions_survive_a_restart_and_two_servers_writing_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap().to_string();
    let client = reqwest::Client::new();
    let post = |base: String, name: String| {
        let client = client.clone();
        async move {
            let r = client
                .post(format!("{base}/api/interaction-metrics"))
                .bearer_auth("ia-admin-token")
                .json(&json!({"name": name, "metricTypeId": "COUNT", "actionId": "login-fail"}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
        }
    };
    let list = |base: String| {
        let client = client.clone();
        async move {
            let v: Value = client
                .get(format!("{base}/api/interaction-metrics"))
                .bearer_auth("ia-admin-token")
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            v.as_array()
                .unwrap()
                .iter()
                .map(|m| m["name"].as_str().unwrap().to_string())
                .collect::<std::collections::BTreeSet<_>>()
        }
    };
    {
        let a = common::serve(&data, TOKENS, NOW);
        let b = common::serve(&data, TOKENS, NOW);
        let jobs: Vec<_> = (0..50)
            .map(|i| {
                post(
                    if i % 2 == 0 {
                        a.base.clone()
                    } else {
                        b.base.clone()
                    },
                    format!("metric-{i:02}"),
                )
            })
            .collect();
        futures::future::join_all(jobs).await;
        assert_eq!(list(a.base.clone()).await.len(), 50);
        assert_eq!(list(b.base.clone()).await.len(), 50);
    }
    // Both servers are gone; a new one finds every definition.
    let c = common::serve(&data, TOKENS, NOW);
    let names = list(c.base.clone()).await;
    assert_eq!(names.len(), 50);
    assert!(names.contains("metric-00") && names.contains("metric-49"));
}

#[tokio::test]
async fn definitions_stored_by_older_versions_read_back_and_never_fail_calculate_all() {
    let (dir, engine) = generated().await;
    // Written as an older version stored them: the type as a mnemonic, and
    // one definition that cannot be calculated (a text column compared
    // with a number in an ordering comparison).
    let metric = |id: &str, name: &str, filters: Value| {
        json!({"id": id, "name": name, "description": null, "metricTypeId": "COUNT",
               "resourceTypeId": null, "actionId": "login-fail", "originId": null, "field": null,
               "filters": filters, "timeWindow": null, "groupBy": [], "enabled": true,
               "createdAt": "2026-01-01T00:00:00Z", "updatedAt": "2026-01-01T00:00:00Z"})
    };
    let good = "00000000-0000-4000-8000-000000000001";
    let bad = "00000000-0000-4000-8000-000000000002";
    let doc = json!({"metrics": [
        metric(good, "old but fine", json!([])),
        metric(bad, "old and broken", json!([{"field": "resourceId", "operator": "gt", "value": 5}])),
    ]});
    metricstore::storage::catalog::Catalog::new(engine.store.clone(), "interaction-metrics")
        .update("ws-demo", move |d: &mut Value| {
            *d = doc.clone();
            Ok::<_, std::convert::Infallible>(())
        })
        .await
        .unwrap();
    let app = app(engine);

    let (s, v) = call(
        &app,
        "GET",
        &format!("/api/interaction-metrics/{good}"),
        "ia-viewer-token",
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["metricTypeId"], "count-metric-type");

    // The broken one: calculate says why (422), calculate-all leaves it out.
    let (s, v) = call(
        &app,
        "POST",
        &format!("/api/interaction-metrics/{bad}/calculate"),
        "ia-viewer-token",
        None,
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(v["message"].as_str().unwrap().contains("filters[0]"), "{v}");
    let (s, v) = call(
        &app,
        "POST",
        "/api/interaction-metrics/calculate-all",
        "ia-admin-token",
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["calculated"], 1);
    assert_eq!(v["results"][0]["metricId"], good);
    assert_eq!(v["results"][0]["metricType"], "COUNT");
    let rows = common::read_events(dir.path());
    let want = interactions(&rows, None)
        .filter(|r| r.action.as_deref() == Some("login-fail"))
        .count();
    assert_eq!(v["results"][0]["sampleValue"], want);

    // Fixing it through PUT makes it calculable again.
    let (s, v) = call(
        &app,
        "PUT",
        &format!("/api/interaction-metrics/{bad}"),
        "ia-admin-token",
        Some(
            json!({"filters": [{"field": "resourceId", "operator": "gt", "value": "customer-5"}]}),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["metricTypeId"], "count-metric-type");
    assert_eq!(v["createdAt"], "2026-01-01T00:00:00Z");
    let (s, v) = call(
        &app,
        "POST",
        "/api/interaction-metrics/calculate-all",
        "ia-admin-token",
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["calculated"], 2);
}
