//! The skill Metrics API through the router (no socket): answers checked
//! against hand-computed values, every documented error, tenant walls and
//! pagination round trips.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use metricstore::api::auth::Auth;
use metricstore::api::token::Signer;
use metricstore::api::{AppState, Clock, router};
use serde_json::{Value, json};
use tower::ServiceExt;

const ADMIN: &str = "admin-secret-1";
const VIEWER_A: &str = "viewer-secret-a";

async fn app_with(rate: u32, burst: u32) -> (axum::Router, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let engine = common::fixture_engine(dir.path(), "fixtures/events/custom.jsonl").await;
    let spec = format!("{ADMIN}:admin:*,{VIEWER_A}:viewer:skill-a");
    let auth = Auth::parse(&spec, rate, burst).unwrap();
    let state = AppState::new(
        engine,
        auth,
        Clock::pinned(1_767_600_000_000),
        Signer::from_secret(&spec),
    );
    (router(state), dir)
}

async fn app() -> (axum::Router, tempfile::TempDir) {
    app_with(0, 0).await
}

async fn call(
    app: &axum::Router,
    method: &str,
    uri: &str,
    token: Option<&str>,
    body: Option<Body>,
) -> (StatusCode, axum::http::HeaderMap, Value) {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json");
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let resp = app
        .clone()
        .oneshot(req.body(body.unwrap_or_else(Body::empty)).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    let v = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| json!({"raw": String::from_utf8_lossy(&bytes)}));
    (status, headers, v)
}

async fn post(app: &axum::Router, skill: &str, token: &str, body: Value) -> (StatusCode, Value) {
    let (s, _, v) = call(
        app,
        "POST",
        &format!("/v2/skills/{skill}/metrics"),
        Some(token),
        Some(Body::from(body.to_string())),
    )
    .await;
    (s, v)
}

fn query(id: &str, name: &str, period: &str, stat: &str) -> Value {
    json!({"id": id, "label": format!("label {id}"), "metricNamespace": "Alexa.Custom", "name": name, "aggregationPeriod": period, "stat": stat})
}

fn request(queries: Vec<Value>) -> Value {
    json!({"startTime": "2026-01-05T00:00:00Z", "endTime": "2026-01-05T03:00:00Z", "metricQueries": queries})
}

#[tokio::test]
async fn documented_request_shape_and_values() {
    let (app, _d) = app().await;
    let body = request(vec![
        query("customers", "CUSTOMERS", "BY_HOUR", "count"),
        query("latency", "SKILL_LATENCY", "SINGLE", "p90"),
        json!({"id": "by-intent", "metricNamespace": "Alexa.Custom", "name": "UTTERANCES", "aggregationPeriod": "SINGLE", "stat": "count", "groupBy": "intent"}),
        json!({"id": "live", "metricNamespace": "Alexa.Custom", "name": "UTTERANCES", "aggregationPeriod": "PT1H", "stat": "count",
               "dimensions": [{"name": "Alexa.Stage", "value": "live"}]}),
        json!({"id": "upc", "metricNamespace": "Alexa.Custom", "name": "UTTERANCES_PER_CUSTOMER", "aggregationPeriod": "BY_HOUR"}),
    ]);
    let (status, v) = post(&app, "skill-a", ADMIN, body).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let r = &v["results"];
    assert_eq!(r.as_array().unwrap().len(), 5);
    assert_eq!(r[0]["id"], "customers");
    assert_eq!(r[0]["label"], "label customers");
    assert_eq!(r[0]["metricNamespace"], "Alexa.Custom");
    assert_eq!(r[0]["name"], "CUSTOMERS");
    assert_eq!(r[0]["stat"], "count");
    assert_eq!(
        r[0]["data"][0]["timestamps"],
        json!([
            1_767_571_200_000i64,
            1_767_574_800_000i64,
            1_767_578_400_000i64
        ])
    );
    assert_eq!(r[0]["data"][0]["values"], json!([2.0, 2.0, 0.0]));
    assert_eq!(r[1]["data"][0]["values"], json!([350.0]));
    assert_eq!(r[1]["data"][0]["timestamps"], json!([1_767_571_200_000i64]));
    // Fields the query did not send are not in the answer; nor is a
    // groupedBy without a groupBy.
    assert!(r[2].get("label").is_none(), "{}", r[2]);
    assert_eq!(r[2]["stat"], "count");
    assert!(r[4].get("label").is_none() && r[4].get("stat").is_none());
    assert!(r[0]["data"][0].get("groupedBy").is_none());
    let groups: Vec<(Value, Value)> = r[2]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["groupedBy"]["groupedByValue"].clone(),
                d["values"][0].clone(),
            )
        })
        .collect();
    assert_eq!(r[2]["data"][0]["groupedBy"]["groupedByField"], "intent");
    assert!(
        groups.contains(&(json!("GetScoreIntent"), json!(3.0))),
        "{groups:?}"
    );
    assert!(
        groups.contains(&(json!("LaunchRequest"), json!(2.0))),
        "{groups:?}"
    );
    // The utterance without an intent: the group "".
    assert!(groups.contains(&(json!(""), json!(1.0))), "{groups:?}");
    // live utterances per hour: 00h s1 (3), 01h s3 (1); the development user u2 is out.
    assert_eq!(r[3]["data"][0]["values"], json!([3.0, 1.0, 0.0]));
    // A ratio leaves out the empty hour.
    assert_eq!(r[4]["data"][0]["values"], json!([2.0, 1.0]));
    assert_eq!(r[4]["data"][0]["timestamps"].as_array().unwrap().len(), 2);

    // `SUM` on a counting metric is its count; stats ignore case.
    let (s, v) = post(
        &app,
        "skill-a",
        ADMIN,
        request(vec![
            query("s", "UTTERANCES", "SINGLE", "SUM"),
            query("p", "SKILL_LATENCY", "SINGLE", "P50"),
        ]),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["results"][0]["data"][0]["values"], json!([6.0]));
    assert_eq!(v["results"][0]["stat"], "SUM");
    assert_eq!(v["results"][1]["data"][0]["values"], json!([175.0]));
    assert!(v.get("paginationContext").is_none(), "{v}");
}

#[tokio::test]
async fn authentication_and_tenant_walls() {
    let (app, _d) = app().await;
    let body = request(vec![query("q", "UTTERANCES", "SINGLE", "count")]);
    let (s, _, v) = call(
        &app,
        "POST",
        "/v2/skills/skill-a/metrics",
        None,
        Some(Body::from(body.to_string())),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(v["code"], "UNAUTHORIZED");
    assert!(v["message"].as_str().unwrap().len() > 5);
    let (s, v) = post(&app, "skill-a", "not-a-real-token", body.clone()).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
    // A token for skill-a never sees skill-b, which exists.
    let (s, v) = post(&app, "skill-b", VIEWER_A, body.clone()).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(v["code"], "FORBIDDEN");
    let (s, _) = post(&app, "skill-b", ADMIN, body.clone()).await;
    assert_eq!(s, StatusCode::OK);
    // Nor learns whether a skill it does not cover exists.
    let (s, _) = post(&app, "no-such-skill", VIEWER_A, body.clone()).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, v) = post(&app, "no-such-skill", ADMIN, body.clone()).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    assert_eq!(v["code"], "SKILL_NOT_FOUND");
    // Values of skill-a do not include skill-b's events.
    let (_, v) = post(&app, "skill-a", VIEWER_A, body).await;
    assert_eq!(v["results"][0]["data"][0]["values"], json!([6.0]));
}

#[tokio::test]
async fn every_bad_request_is_a_documented_400() {
    let (app, _d) = app().await;
    let good = || query("q", "UTTERANCES", "SINGLE", "count");
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "unknown namespace",
            request(vec![
                json!({"id": "q", "metricNamespace": "Alexa.Nope", "name": "UTTERANCES", "aggregationPeriod": "SINGLE"}),
            ]),
            "INVALID_NAMESPACE",
        ),
        (
            "unknown metric",
            request(vec![query("q", "NOPE", "SINGLE", "count")]),
            "INVALID_METRIC",
        ),
        (
            "unsupported stat",
            request(vec![query("q", "UTTERANCES", "SINGLE", "p90")]),
            "UNSUPPORTED_STAT",
        ),
        (
            "a stat for a metric that lists none",
            request(vec![query(
                "q",
                "UTTERANCES_PER_CUSTOMER",
                "SINGLE",
                "count",
            )]),
            "UNSUPPORTED_STAT",
        ),
        (
            "a dimension value outside the documented list",
            request(vec![
                json!({"id": "q", "metricNamespace": "Alexa.Custom", "name": "UTTERANCES", "aggregationPeriod": "SINGLE", "dimensions": [{"name": "Alexa.Stage", "value": "beta"}]}),
            ]),
            "INVALID_DIMENSION_VALUE",
        ),
        (
            "a country outside the documented list",
            request(vec![
                json!({"id": "q", "metricNamespace": "Alexa.Custom", "name": "UTTERANCES", "aggregationPeriod": "SINGLE", "dimensions": [{"name": "Country", "value": "ZZ"}]}),
            ]),
            "INVALID_DIMENSION_VALUE",
        ),
        (
            "a dimension named twice",
            request(vec![
                json!({"id": "q", "metricNamespace": "Alexa.Custom", "name": "UTTERANCES", "aggregationPeriod": "SINGLE", "dimensions": [{"name": "Alexa.Stage", "value": "live"}, {"name": "Alexa.Stage", "value": "development"}]}),
            ]),
            "UNSUPPORTED_DIMENSION",
        ),
        (
            "groupBy as a list",
            request(vec![
                json!({"id": "q", "metricNamespace": "Alexa.Custom", "name": "UTTERANCES", "aggregationPeriod": "SINGLE", "groupBy": ["intent"]}),
            ]),
            "UNSUPPORTED_GROUP_BY",
        ),
        (
            "unsupported groupBy",
            request(vec![
                json!({"id": "q", "metricNamespace": "Alexa.Custom", "name": "ACTIVE_SESSIONS", "aggregationPeriod": "SINGLE", "groupBy": "intent"}),
            ]),
            "UNSUPPORTED_GROUP_BY",
        ),
        (
            "unsupported dimension",
            request(vec![
                json!({"id": "q", "metricNamespace": "Alexa.Custom", "name": "UTTERANCES", "aggregationPeriod": "SINGLE", "dimensions": [{"name": "Alexa.Nope", "value": "x"}]}),
            ]),
            "UNSUPPORTED_DIMENSION",
        ),
        (
            "bad period",
            request(vec![query("q", "UTTERANCES", "BY_MONTH", "count")]),
            "INVALID_AGGREGATION_PERIOD",
        ),
        (
            "start after end",
            json!({"startTime": "2026-01-05T03:00:00Z", "endTime": "2026-01-05T00:00:00Z", "metricQueries": [good()]}),
            "INVALID_TIME_RANGE",
        ),
        (
            "start equals end",
            json!({"startTime": 5, "endTime": 5, "metricQueries": [good()]}),
            "INVALID_TIME_RANGE",
        ),
        (
            "bad time",
            json!({"startTime": "yesterday", "endTime": "2026-01-05T00:00:00Z", "metricQueries": [good()]}),
            "INVALID_TIME",
        ),
        (
            "too many queries",
            request(
                (0..6)
                    .map(|i| query(&format!("q{i}"), "UTTERANCES", "SINGLE", "count"))
                    .collect(),
            ),
            "TOO_MANY_QUERIES",
        ),
        ("no queries", request(vec![]), "MISSING_PARAMETER"),
        (
            "duplicate ids",
            request(vec![good(), good()]),
            "DUPLICATE_QUERY_ID",
        ),
        (
            "bad token",
            json!({"startTime": "2026-01-05T00:00:00Z", "endTime": "2026-01-05T03:00:00Z", "nextToken": "forged", "metricQueries": [good()]}),
            "INVALID_NEXT_TOKEN",
        ),
        (
            "max results",
            json!({"startTime": "2026-01-05T00:00:00Z", "endTime": "2026-01-05T03:00:00Z", "maxResultsPerQuery": 0, "metricQueries": [good()]}),
            "INVALID_MAX_RESULTS",
        ),
        (
            "wrong types",
            json!({"startTime": true, "endTime": [], "metricQueries": "all"}),
            "INVALID_TIME",
        ),
        ("not an object", json!([1, 2]), "INVALID_REQUEST_BODY"),
        (
            "too many buckets",
            json!({"startTime": "2000-01-01T00:00:00Z", "endTime": "2026-01-01T00:00:00Z", "metricQueries": [query("q", "UTTERANCES", "BY_15", "count")]}),
            "INVALID_TIME_RANGE",
        ),
    ];
    for (what, body, code) in cases {
        let (s, v) = post(&app, "skill-a", ADMIN, body).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{what}: {v}");
        assert_eq!(v["code"], code, "{what}: {v}");
        assert!(!v["message"].as_str().unwrap().is_empty(), "{what}");
    }
    // Several mistakes: all reported, each with its path.
    let (_, v) = post(
        &app,
        "skill-a",
        ADMIN,
        request(vec![good(), query("r", "NOPE", "BY_MONTH", "count")]),
    )
    .await;
    let m = v["message"].as_str().unwrap();
    assert!(
        m.contains("metricQueries[1].name") && m.contains("metricQueries[1].aggregationPeriod"),
        "{m}"
    );

    // Skill ids outside 1-255 characters.
    let long = "s".repeat(256);
    let (s, v) = post(&app, &long, ADMIN, request(vec![good()])).await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("INVALID_STRING_LENGTH")),
        "{v}"
    );

    // Malformed, empty and oversized bodies.
    for raw in ["{not json", "", "\u{0}\u{1}"] {
        let (s, _, v) = call(
            &app,
            "POST",
            "/v2/skills/skill-a/metrics",
            Some(ADMIN),
            Some(Body::from(raw)),
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{raw:?}: {v}");
        assert_eq!(v["code"], "INVALID_REQUEST_BODY");
    }
    let huge = format!("{{\"x\": \"{}\"}}", "a".repeat(2 << 20));
    let (s, _, v) = call(
        &app,
        "POST",
        "/v2/skills/skill-a/metrics",
        Some(ADMIN),
        Some(Body::from(huge)),
    )
    .await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    assert_eq!(v["code"], "PAYLOAD_TOO_LARGE");
    // Unknown routes and methods keep the shape too.
    let (s, _, v) = call(&app, "GET", "/v2/skills/skill-a/metrics", Some(ADMIN), None).await;
    assert!(s.is_client_error() && v["code"].is_string(), "{s} {v}");
    let (s, _, v) = call(&app, "GET", "/nope", Some(ADMIN), None).await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("NOT_FOUND"))
    );
}

#[tokio::test]
async fn rate_limit_answers_429_with_retry_after() {
    let (app, _d) = app_with(1, 2).await;
    let uri = "/v2/skills/metrics?metricNamespace=Alexa.Custom";
    let mut statuses = Vec::new();
    let mut retry = None;
    for _ in 0..4 {
        let (s, h, v) = call(&app, "GET", uri, Some(ADMIN), None).await;
        if s == StatusCode::TOO_MANY_REQUESTS {
            retry = h
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_string());
            assert_eq!(v["code"], "TOO_MANY_REQUESTS");
        }
        statuses.push(s);
    }
    assert_eq!(&statuses[..2], &[StatusCode::OK, StatusCode::OK]);
    assert!(
        statuses.contains(&StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    assert!(retry.unwrap().parse::<u64>().unwrap() >= 1);
    // Another token has its own budget.
    let (s, _, _) = call(&app, "GET", uri, Some(VIEWER_A), None).await;
    assert_eq!(s, StatusCode::OK);
}

/// A series as pages give it: (groupedBy, timestamps, values).
type PagedSeries = (Value, Vec<Value>, Vec<Value>);

/// Follows nextToken to the end, returning each query's series as
/// (group, timestamps, values), joined across pages.
async fn follow(
    app: &axum::Router,
    skill: &str,
    mut body: Value,
) -> (usize, Vec<Vec<PagedSeries>>) {
    let mut pages = 0;
    let mut out: Vec<Vec<PagedSeries>> = Vec::new();
    loop {
        let (s, v) = post(app, skill, ADMIN, body.clone()).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        pages += 1;
        let results = v["results"].as_array().unwrap();
        out.resize(results.len(), Vec::new());
        for (i, r) in results.iter().enumerate() {
            for d in r["data"].as_array().unwrap() {
                let group = d.get("groupedBy").cloned().unwrap_or(Value::Null);
                let ts = d["timestamps"].as_array().unwrap().clone();
                let vs = d["values"].as_array().unwrap().clone();
                match out[i].last_mut() {
                    Some(last) if last.0 == group => {
                        last.1.extend(ts);
                        last.2.extend(vs);
                    }
                    _ => out[i].push((group, ts, vs)),
                }
            }
        }
        match v["paginationContext"]["nextToken"].as_str() {
            Some(t) => body["nextToken"] = json!(t),
            None => break,
        }
        assert!(pages < 100);
    }
    (pages, out)
}

#[tokio::test]
async fn pagination_round_trips_with_group_by() {
    let (app, _d) = app().await;
    let base = json!({
        "startTime": "2026-01-05T00:00:00Z", "endTime": "2026-01-05T03:00:00Z",
        "metricQueries": [
            {"id": "a", "metricNamespace": "Alexa.Custom", "name": "UTTERANCES", "aggregationPeriod": "BY_15", "stat": "count", "groupBy": "intent"},
            {"id": "b", "metricNamespace": "Alexa.Custom", "name": "SKILL_LATENCY", "aggregationPeriod": "BY_HOUR", "stat": "avg", "groupBy": "intent"}
        ]
    });
    let mut big = base.clone();
    big["maxResultsPerQuery"] = json!(1000);
    let (one_pages, one) = follow(&app, "skill-a", big).await;
    assert_eq!(one_pages, 1);
    for size in [1, 2, 5, 7] {
        let mut small = base.clone();
        small["maxResultsPerQuery"] = json!(size);
        let (pages, paged) = follow(&app, "skill-a", small).await;
        assert!(pages > 1, "size {size}");
        assert_eq!(paged, one, "size {size}");
    }
    // 3 intent groups x 12 quarter hours = 36 points in query a.
    let points: usize = one[0].iter().map(|s| s.1.len()).sum();
    assert_eq!(points, 36);

    // A token is bound to its request: another body or skill is refused.
    let mut small = base.clone();
    small["maxResultsPerQuery"] = json!(2);
    let (_, v) = post(&app, "skill-a", ADMIN, small.clone()).await;
    let token = v["paginationContext"]["nextToken"]
        .as_str()
        .unwrap()
        .to_string();
    let mut other = small.clone();
    other["nextToken"] = json!(token);
    other["endTime"] = json!("2026-01-05T02:00:00Z");
    let (s, v) = post(&app, "skill-a", ADMIN, other).await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("INVALID_NEXT_TOKEN"))
    );
    let mut replay = small.clone();
    replay["nextToken"] = json!(token);
    let (s, v) = post(&app, "skill-b", ADMIN, replay.clone()).await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("INVALID_NEXT_TOKEN"))
    );
    let (s, _) = post(&app, "skill-a", ADMIN, replay).await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn list_metrics_and_its_pagination() {
    let (app, _d) = app().await;
    let (s, _, v) = call(
        &app,
        "GET",
        "/v2/skills/metrics?metricNamespace=Alexa.Custom",
        Some(VIEWER_A),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let metrics = v["metrics"].as_array().unwrap();
    assert_eq!(metrics.len(), 18);
    let latency = metrics
        .iter()
        .find(|m| m["name"] == "SKILL_LATENCY")
        .unwrap();
    assert_eq!(
        latency["supportedStats"],
        json!(["avg", "p50", "p90", "p99", "count"])
    );
    assert_eq!(latency["supportedGroupByOptions"], json!(["intent"]));
    assert!(
        latency["supportedDimensions"]
            .as_array()
            .unwrap()
            .contains(&json!("Country"))
    );

    // A ratio lists no stats and no groupBy options, as the document's
    // UTTERANCES_PER_CUSTOMER; the keys are left out, not empty.
    let upas = metrics
        .iter()
        .find(|m| m["name"] == "UTTERANCES_PER_ACTIVE_SESSION")
        .unwrap();
    assert!(upas.get("supportedStats").is_none() && upas.get("supportedGroupByOptions").is_none());
    assert!(v.get("paginationContext").is_none(), "{v}");

    let mut total = 0;
    for ns in metricstore::definition::builtin::namespaces() {
        let mut names = Vec::new();
        let mut uri = format!(
            "/v2/skills/metrics?metricNamespace={}&maxResults=7",
            ns.namespace
        );
        loop {
            let (s, _, v) = call(&app, "GET", &uri, Some(ADMIN), None).await;
            assert_eq!(s, StatusCode::OK, "{v}");
            let page = v["metrics"].as_array().unwrap();
            assert!(page.len() <= 7);
            names.extend(page.iter().map(|m| m["name"].as_str().unwrap().to_string()));
            match v["paginationContext"]["nextToken"].as_str() {
                Some(t) => {
                    uri = format!(
                        "/v2/skills/metrics?metricNamespace={}&maxResults=7&nextToken={t}",
                        ns.namespace
                    )
                }
                None => break,
            }
        }
        let want: Vec<String> = ns.metrics.iter().map(|m| m.name.clone()).collect();
        assert_eq!(names, want);
        total += names.len();
    }
    assert_eq!(total, 69);

    for (uri, code) in [
        (
            "/v2/skills/metrics?metricNamespace=Nope",
            "INVALID_NAMESPACE",
        ),
        ("/v2/skills/metrics", "MISSING_PARAMETER"),
        (
            "/v2/skills/metrics?metricNamespace=Alexa.Custom&maxResults=0",
            "INVALID_MAX_RESULTS",
        ),
        (
            "/v2/skills/metrics?metricNamespace=Alexa.Custom&maxResults=abc",
            "INVALID_MAX_RESULTS",
        ),
        (
            "/v2/skills/metrics?metricNamespace=Alexa.Custom&nextToken=forged",
            "INVALID_NEXT_TOKEN",
        ),
    ] {
        let (s, _, v) = call(&app, "GET", uri, Some(ADMIN), None).await;
        assert_eq!(
            (s, v["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some(code)),
            "{uri}"
        );
    }
    let (s, _, _) = call(&app, "GET", "/v2/skills/metrics", None, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}
