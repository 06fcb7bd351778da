//! Tenants are walls: every route, asked about workspace B's data (its
//! skill, its interaction metrics, its Metric Store settings, its alert
//! rules) with every kind of token that does not cover B (an admin or a
//! viewer of A only, an unknown token, none), answers no 2xx and no byte of
//! B's data; tokens that do cover B get through (so the sweep can fail).
//! Also the crossed case: A's token naming A's workspace and B's resource
//! ids.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use metricstore::alerts::http::router;
use metricstore::api::auth::Auth;
use metricstore::api::token::Signer;
use metricstore::api::{AppState, Clock};
use metricstore::generate::{SKILLS, WORKSPACES};
use serde_json::{Value, json};
use tower::ServiceExt;

const A_SKILL: &str = SKILLS[0];
const B_SKILL: &str = SKILLS[1];
const A_WS: &str = WORKSPACES[0];
const B_WS: &str = WORKSPACES[1];
/// Names only B's resources carry: no answer to a token without B may
/// hold them.
const B_SECRET: &str = "b-only-secret-name";

fn tokens() -> String {
    format!(
        "root-admin:admin:*,root-viewer:viewer:*,\
         a-admin-tok:admin:{A_SKILL}|{A_WS},a-viewer-tok:viewer:{A_SKILL}|{A_WS},\
         b-admin-tok:admin:{B_SKILL}|{B_WS}"
    )
}

async fn call(
    app: &axum::Router,
    method: &str,
    uri: &str,
    token: Option<&str>,
    workspace: Option<&str>,
    body: Option<&Value>,
) -> (StatusCode, String) {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json");
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    if let Some(w) = workspace {
        req = req.header("x-workspace-id", w);
    }
    let req = req
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

/// One request against B.
struct Probe {
    method: &'static str,
    uri: String,
    /// `X-Workspace-Id` (routes whose path names no workspace).
    workspace: Option<&'static str>,
    body: Option<Value>,
    /// Whether a viewer of B may make it (reads).
    read: bool,
}

fn probe(
    method: &'static str,
    uri: String,
    ws: Option<&'static str>,
    body: Option<Value>,
    read: bool,
) -> Probe {
    Probe {
        method,
        uri,
        workspace: ws,
        body,
        read,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn no_token_without_b_reads_or_changes_b() {
    let dir = tempfile::tempdir().unwrap();
    let engine = common::demo_engine(dir.path(), 20_000, 3).await;
    let spec = tokens();
    let state = AppState::new(
        engine,
        Auth::parse(&spec, 0, 0).unwrap(),
        Clock::pinned(1_768_089_600_000), // 2026-01-11
        Signer::from_secret(&spec),
    );
    let app = router(state);

    // B's resources, made by B's admin.
    let (s, b) = call(
        &app,
        "POST",
        "/api/interaction-metrics",
        Some("b-admin-tok"),
        Some(B_WS),
        Some(&json!({"name": B_SECRET, "metricTypeId": "COUNT", "timeWindow": "7d"})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let metric_id = serde_json::from_str::<Value>(&b).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (s, b) = call(
        &app,
        "POST",
        "/api/metric-alerts",
        Some("b-admin-tok"),
        Some(B_WS),
        Some(&json!({"name": B_SECRET, "metricId": metric_id,
                     "condition": {"operator": "gt", "threshold": 1}})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let rule_id = serde_json::from_str::<Value>(&b).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let custom = json!({"definitions": [{
        "key": "b_secret_metric", "name": B_SECRET, "source": "call_intelligence",
        "event_types": ["call_intelligence.row"], "metric_type": "numerical",
        "aggregation": "count", "extraction_mode": "static", "extract_path": "$.duration"
    }]});
    let (s, b) = call(
        &app,
        "PUT",
        &format!("/v1/{B_WS}/settings/metrics"),
        Some("b-admin-tok"),
        None,
        Some(&custom),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");

    let metrics_body = json!({
        "startTime": "2026-01-08T00:00:00Z", "endTime": "2026-01-11T00:00:00Z",
        "metricQueries": [{"id": "q", "metricNamespace": "Alexa.Custom",
                           "name": "UTTERANCES", "aggregationPeriod": "BY_DAY"}]
    });
    let event = json!({"time": "2026-01-10T00:00:00Z", "event_type": "utterance",
                       "user_id": "u", "session_id": "s"});
    let range = "startTime=2026-01-08T00:00:00Z&endTime=2026-01-11T00:00:00Z";
    let probes = vec![
        probe(
            "POST",
            format!("/v2/skills/{B_SKILL}/metrics"),
            None,
            Some(metrics_body),
            true,
        ),
        probe(
            "GET",
            format!("/v2/skills/{B_SKILL}/analytics/retention?{range}"),
            None,
            None,
            true,
        ),
        probe(
            "GET",
            format!("/v2/skills/{B_SKILL}/analytics/paths?{range}"),
            None,
            None,
            true,
        ),
        probe(
            "GET",
            format!("/v2/skills/{B_SKILL}/analytics/sessions?{range}"),
            None,
            None,
            true,
        ),
        probe(
            "GET",
            format!("/v2/skills/{B_SKILL}/analytics/intents?{range}"),
            None,
            None,
            true,
        ),
        probe(
            "POST",
            format!("/v1/{B_SKILL}/events"),
            None,
            Some(event),
            false,
        ),
        probe(
            "GET",
            "/api/interaction-metrics".into(),
            Some(B_WS),
            None,
            true,
        ),
        probe(
            "POST",
            "/api/interaction-metrics".into(),
            Some(B_WS),
            Some(json!({"name": "x", "metricTypeId": "COUNT", "timeWindow": "1d"})),
            false,
        ),
        probe(
            "GET",
            "/api/interaction-metrics/types".into(),
            Some(B_WS),
            None,
            true,
        ),
        probe(
            "GET",
            "/api/interaction-metrics/fields/discover".into(),
            Some(B_WS),
            None,
            true,
        ),
        probe(
            "POST",
            "/api/interaction-metrics/calculate-all".into(),
            Some(B_WS),
            None,
            false,
        ),
        probe(
            "GET",
            format!("/api/interaction-metrics/{metric_id}"),
            Some(B_WS),
            None,
            true,
        ),
        probe(
            "PUT",
            format!("/api/interaction-metrics/{metric_id}"),
            Some(B_WS),
            Some(json!({"enabled": false})),
            false,
        ),
        probe(
            "POST",
            format!("/api/interaction-metrics/{metric_id}/calculate"),
            Some(B_WS),
            None,
            true,
        ),
        probe(
            "GET",
            format!("/v1/{B_WS}/settings/metrics"),
            None,
            None,
            true,
        ),
        probe(
            "PUT",
            format!("/v1/{B_WS}/settings/metrics"),
            None,
            Some(custom.clone()),
            false,
        ),
        probe("GET", format!("/v1/{B_WS}/metrics"), None, None, true),
        probe(
            "GET",
            format!("/v1/{B_WS}/metrics/catalog"),
            None,
            None,
            true,
        ),
        probe(
            "GET",
            format!("/v1/{B_WS}/metrics/b_secret_metric"),
            None,
            None,
            true,
        ),
        probe(
            "GET",
            format!("/v1/{B_WS}/metrics/b_secret_metric/trend"),
            None,
            None,
            true,
        ),
        probe(
            "POST",
            format!("/v1/{B_WS}/metrics/b_secret_metric/evaluate"),
            None,
            Some(json!({})),
            true,
        ),
        probe("GET", "/api/metric-alerts".into(), Some(B_WS), None, true),
        probe(
            "POST",
            "/api/metric-alerts".into(),
            Some(B_WS),
            Some(json!({"name": "x", "metricId": metric_id,
                          "condition": {"operator": "gt", "threshold": 1}})),
            false,
        ),
        probe(
            "GET",
            format!("/api/metric-alerts/{rule_id}"),
            Some(B_WS),
            None,
            true,
        ),
        probe(
            "PUT",
            format!("/api/metric-alerts/{rule_id}"),
            Some(B_WS),
            Some(json!({"enabled": false})),
            false,
        ),
        probe(
            "GET",
            format!("/api/metric-alerts/{rule_id}/history"),
            Some(B_WS),
            None,
            true,
        ),
        probe(
            "POST",
            format!("/api/metric-alerts/{rule_id}/evaluate"),
            Some(B_WS),
            None,
            true,
        ),
        // Deletes last: they would remove what the others probe.
        probe(
            "DELETE",
            format!("/api/metric-alerts/{rule_id}"),
            Some(B_WS),
            None,
            false,
        ),
        probe(
            "DELETE",
            format!("/api/interaction-metrics/{metric_id}"),
            Some(B_WS),
            None,
            false,
        ),
    ];
    let outsiders = [
        Some("a-admin-tok"),
        Some("a-viewer-tok"),
        Some("not-a-token"),
        None,
    ];
    let mut checked = 0;
    for p in &probes {
        for t in outsiders {
            let (s, body) = call(&app, p.method, &p.uri, t, p.workspace, p.body.as_ref()).await;
            assert!(
                matches!(s.as_u16(), 401 | 403 | 404),
                "{} {} with {t:?}: {s} {body}",
                p.method,
                p.uri
            );
            assert!(
                !body.contains(B_SECRET),
                "{} {} with {t:?} leaked: {body}",
                p.method,
                p.uri
            );
            checked += 1;
        }
        // A's own workspace named, B's resource ids in the path.
        if p.workspace.is_some() && p.uri.contains(&metric_id) || p.uri.contains(&rule_id) {
            let (s, body) = call(
                &app,
                p.method,
                &p.uri,
                Some("a-admin-tok"),
                Some(A_WS),
                p.body.as_ref(),
            )
            .await;
            assert!(
                matches!(s.as_u16(), 403 | 404),
                "{} {} as A: {s} {body}",
                p.method,
                p.uri
            );
            assert!(
                !body.contains(B_SECRET),
                "{} {} as A leaked: {body}",
                p.method,
                p.uri
            );
        }
        // Tokens that cover B get past the wall (writes: admins only).
        let insider = if p.read { "root-viewer" } else { "b-admin-tok" };
        if p.method != "DELETE" {
            let (s, body) = call(
                &app,
                p.method,
                &p.uri,
                Some(insider),
                p.workspace,
                p.body.as_ref(),
            )
            .await;
            assert!(
                !matches!(s.as_u16(), 401 | 403),
                "{} {} with {insider}: {s} {body}",
                p.method,
                p.uri
            );
        }
    }
    assert_eq!(checked, probes.len() * outsiders.len());
    // B's resources are all still there.
    let (s, body) = call(
        &app,
        "GET",
        &format!("/api/metric-alerts/{rule_id}"),
        Some("root-admin"),
        Some(B_WS),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert!(body.contains(B_SECRET));
}
