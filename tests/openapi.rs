//! The OpenAPI document at `GET /openapi.json`: every route in it is
//! routed, and a property-based tester that reads only the document
//! (schemathesis, installed by `scripts/test`) finds no answer the
//! document does not describe: every generated request gets a documented
//! status, content type, headers and a body matching its schema, and no
//! 5xx. `METRICSTORE_SCHEMATHESIS_EXAMPLES` (default 25 per operation) sets
//! the depth of the run.

mod common;

use std::process::Command;

use axum::body::Body;
use axum::http::Request;
use metricstore::api::auth::Auth;
use metricstore::api::token::Signer;
use metricstore::api::{AppState, Clock};
use serde_json::Value;
use tower::ServiceExt;

const TOKEN: &str = "openapi-admin-token";

async fn document(app: &axum::Router) -> Value {
    let response = app
        .clone()
        .oneshot(Request::get("/openapi.json").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test]
async fn every_documented_operation_is_routed_and_answers_as_documented() {
    let dir = tempfile::tempdir().unwrap();
    let engine = common::demo_engine(dir.path(), 2_000, 3).await;
    let auth = Auth::parse(&format!("{TOKEN}:admin:*"), 0, 0).unwrap();
    let state = AppState::new(
        engine,
        auth,
        Clock::pinned(1_768_046_400_000),
        Signer::from_secret("openapi"),
    );
    let app = metricstore::alerts::http::router(state);
    let doc = document(&app).await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    // The routes of each API, as CONTRACT.md and the documents name them.
    for path in [
        "/health",
        "/openapi.json",
        "/",
        "/v2/skills/metrics",
        "/v2/skills/{skill_id}/metrics",
        "/v2/skills/{skill_id}/analytics/retention",
        "/v1/{workspace_id}/events",
        "/api/interaction-metrics",
        "/api/interaction-metrics/{id}/calculate",
        "/api/interaction-metrics/calculate-all",
        "/v1/{workspace_id}/settings/metrics",
        "/v1/{workspace_id}/metrics/{metric_key}/evaluate",
        "/api/metric-alerts/{id}/history",
    ] {
        assert!(paths.contains_key(path), "{path} is not in the document");
    }
    let mut operations = 0;
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            operations += 1;
            assert!(
                op["responses"].as_object().is_some_and(|r| !r.is_empty()),
                "{method} {path} has no responses"
            );
            // A request without a token: routed (not the fallback's 404 or
            // the wrong-method 400), and 401 where the document asks for
            // a token.
            let concrete = path
                .replace("{skill_id}", "some-skill")
                .replace("{workspace_id}", "some-workspace")
                .replace("{metric_key}", "some_key")
                .replace("{id}", "00000000-0000-4000-8000-000000000000");
            let response = app
                .clone()
                .oneshot(
                    Request::builder()
                        .method(method.to_uppercase().as_str())
                        .uri(&concrete)
                        .body(Body::empty())
                        .unwrap(),
                )
                .await
                .unwrap();
            let status = response.status().as_u16();
            let needs_token = op.get("security").is_some();
            if needs_token {
                assert_eq!(status, 401, "{method} {path} without a token");
            } else {
                assert_eq!(status, 200, "{method} {path} is open");
            }
            assert!(
                op["responses"].get(status.to_string()).is_some(),
                "{method} {path} answered {status}, not in its responses"
            );
        }
    }
    assert!(operations >= 37, "only {operations} operations documented");
}

#[test]
fn schemathesis_finds_every_answer_documented() {
    let found = Command::new("schemathesis").arg("--version").output();
    assert!(
        found.is_ok_and(|o| o.status.success()),
        "schemathesis is not installed: run the tests with scripts/test, which installs it"
    );
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap().to_string();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(common::demo_engine(dir.path(), 5_000, 3));
    drop(rt);
    let server = common::serve(&data, &format!("{TOKEN}:admin:*"), "2026-01-10T12:00:00Z");
    let examples = std::env::var("METRICSTORE_SCHEMATHESIS_EXAMPLES").unwrap_or("25".into());
    let report = dir.path().join("schemathesis");
    let output = Command::new("schemathesis")
        .current_dir(dir.path())
        .args([
            "run",
            &format!("{}/openapi.json", server.base),
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,\
             response_headers_conformance,response_schema_conformance",
            "--header",
            &format!("Authorization: Bearer {TOKEN}"),
            "--max-examples",
            &examples,
            "--seed",
            "20261201",
            // One worker: schemathesis's example extraction has failed
            // with two (a FlakyFailure inside hypothesis, not an answer).
            "--workers",
            "1",
            "--request-timeout",
            "60",
            "--no-color",
            "--generation-database",
            "none",
            "--report-dir",
            report.to_str().unwrap(),
            "--wait-for-schema",
            "30",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "schemathesis found answers the document does not describe:\n{stdout}\n{stderr}"
    );
    drop(server);
}
