//! The skill Metrics API document's examples (`fixtures/docs/skill_metrics/`),
//! replayed as written against the router: only `{skillId}` is mapped onto
//! the skill of the example's events. Every answer has exactly the
//! documented fields and types; values are checked by hand.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::shape;
use metricstore::api::auth::Auth;
use metricstore::api::token::Signer;
use metricstore::api::{AppState, Clock, router};
use serde_json::{Value, json};
use tower::ServiceExt;

const TOKEN: &str = "doc-token";
const SKILL: &str = "amzn1.ask.skill.doc-example";
const DIR: &str = "fixtures/docs/skill_metrics";

fn doc(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(format!("{DIR}/{name}")).unwrap()).unwrap()
}

async fn app() -> (axum::Router, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let engine = common::fixture_engine(dir.path(), &format!("{DIR}/events.jsonl")).await;
    let spec = format!("{TOKEN}:viewer:*");
    let state = AppState::new(
        engine,
        Auth::parse(&spec, 0, 0).unwrap(),
        Clock::pinned(1_627_689_600_000),
        Signer::from_secret(&spec),
    );
    (router(state), dir)
}

async fn call(
    app: &axum::Router,
    method: &str,
    uri: &str,
    body: Option<&Value>,
) -> (StatusCode, Value) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, serde_json::from_slice(&bytes).unwrap())
}

#[tokio::test]
async fn get_metrics_example_as_written() {
    let (app, _d) = app().await;
    let request = doc("get-metrics.request.json");
    let (s, v) = call(
        &app,
        "POST",
        &format!("/v2/skills/{SKILL}/metrics"),
        Some(&request),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    shape::check(&v, &doc("get-metrics.response.json"), "$")
        .unwrap_or_else(|e| panic!("{e}\n{v:#}"));

    // Development, en-US, weeks from Monday 2021-06-28: u1 and u2 in the
    // first week (WatchTVIntent: u1, u2; LaughIntent: u1), u3 and u1 in
    // the week of 2021-07-12 (SleepIntent: u3; LaughIntent: u1). The live
    // and the de-DE utterances are left out.
    let weeks = json!([
        1_624_838_400_000i64,
        1_625_443_200_000i64,
        1_626_048_000_000i64,
        1_626_652_800_000i64,
        1_627_257_600_000i64
    ]);
    let m1 = &v["results"][0];
    assert_eq!(
        (m1["id"].as_str(), m1["label"].as_str(), m1["stat"].as_str()),
        (Some("m1"), Some("Count of customers"), Some("count"))
    );
    let by_intent: Vec<(String, Value)> = m1["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            assert_eq!(d["groupedBy"]["groupedByField"], "intent");
            assert_eq!(d["timestamps"], weeks);
            (
                d["groupedBy"]["groupedByValue"]
                    .as_str()
                    .unwrap()
                    .to_string(),
                d["values"].clone(),
            )
        })
        .collect();
    assert_eq!(
        by_intent,
        vec![
            ("LaughIntent".to_string(), json!([1.0, 0.0, 1.0, 0.0, 0.0])),
            ("SleepIntent".to_string(), json!([0.0, 0.0, 1.0, 0.0, 0.0])),
            (
                "WatchTVIntent".to_string(),
                json!([2.0, 0.0, 0.0, 0.0, 0.0])
            ),
        ]
    );
    let m2 = &v["results"][1];
    assert!(
        m2.get("label").is_none() && m2.get("stat").is_none(),
        "{m2}"
    );
    assert_eq!(m2["data"][0]["timestamps"], weeks);
    assert_eq!(m2["data"][0]["values"], json!([4.0, 0.0, 2.0, 0.0, 0.0]));
}

#[tokio::test]
async fn list_metrics_examples() {
    let (app, _d) = app().await;
    let (s, v) = call(
        &app,
        "GET",
        "/v2/skills/metrics?metricNamespace=Alexa.Custom",
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let documented = doc("list-metrics.response.json");
    // Each documented metric appears with exactly the documented keys.
    for d in documented["metrics"].as_array().unwrap() {
        let got = v["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == d["name"])
            .unwrap_or_else(|| panic!("{} missing", d["name"]));
        shape::check(got, d, "metric").unwrap();
        for dim in d["supportedDimensions"].as_array().unwrap() {
            assert!(
                got["supportedDimensions"].as_array().unwrap().contains(dim),
                "{got}"
            );
        }
    }
    // Without pagination there is no paginationContext.
    let mut whole = documented.clone();
    whole["metrics"] = json!([]);
    let mut got = v.clone();
    got["metrics"] = json!([]);
    shape::check(&got, &whole, "$").unwrap();

    let (s, v) = call(
        &app,
        "GET",
        "/v2/skills/metrics?metricNamespace=Alexa.Custom&maxResults=2",
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let mut paged = doc("list-metrics-paginated.response.json");
    paged["metrics"] = json!([]);
    let mut got = v.clone();
    assert_eq!(got["metrics"].as_array().unwrap().len(), 2);
    got["metrics"] = json!([]);
    shape::check(&got, &paged, "$").unwrap();
    let token = v["paginationContext"]["nextToken"].as_str().unwrap();
    let (s, next) = call(
        &app,
        "GET",
        &format!("/v2/skills/metrics?metricNamespace=Alexa.Custom&maxResults=2&nextToken={token}"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{next}");
    assert_ne!(next["metrics"][0], v["metrics"][0]);
}

#[tokio::test]
async fn errors_have_the_documented_shape() {
    let (app, _d) = app().await;
    let long = "s".repeat(256);
    let (s, v) = call(
        &app,
        "POST",
        &format!("/v2/skills/{long}/metrics"),
        Some(&doc("get-metrics.request.json")),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    shape::check(&v, &doc("error.response.json"), "$").unwrap();
    assert_eq!(v["code"], "INVALID_STRING_LENGTH");
}
