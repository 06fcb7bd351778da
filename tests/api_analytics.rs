//! The analytics routes, CSV answers and the dashboard's static files
//! through the router (no socket): shapes, hand-computed values, every
//! documented error, tenant walls, and `Accept: text/csv` on every metric
//! endpoint.

mod common;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use metricstore::api::auth::Auth;
use metricstore::api::token::Signer;
use metricstore::api::{AppState, Clock, router};
use serde_json::{Value, json};
use tower::ServiceExt;

const ADMIN: &str = "admin-secret-1";
const VIEWER_R: &str = "viewer-secret-r";

async fn app() -> (axum::Router, tempfile::TempDir) {
    app_over("fixtures/events/analytics.jsonl").await
}

/// The router over the events of `fixture`.
async fn app_over(fixture: &str) -> (axum::Router, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let engine = common::fixture_engine(dir.path(), fixture).await;
    let spec = format!("{ADMIN}:admin:*,{VIEWER_R}:viewer:skill-r");
    let auth = Auth::parse(&spec, 0, 0).unwrap();
    let state = AppState::new(
        engine,
        auth,
        Clock::pinned(1_770_000_000_000),
        Signer::from_secret(&spec),
    );
    (router(state), dir)
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    text: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }

    fn content_type(&self) -> &str {
        self.headers
            .get("content-type")
            .map(|v| v.to_str().unwrap())
            .unwrap_or("")
    }
}

async fn call(
    app: &axum::Router,
    method: &str,
    uri: &str,
    token: Option<&str>,
    accept: Option<&str>,
    body: Option<Value>,
) -> Answer {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    if let Some(a) = accept {
        req = req.header("accept", a);
    }
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    let body = body
        .map(|b| Body::from(b.to_string()))
        .unwrap_or_else(Body::empty);
    let resp = app.clone().oneshot(req.body(body).unwrap()).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    Answer {
        status,
        headers,
        text: String::from_utf8(bytes.to_vec()).unwrap(),
    }
}

const RETENTION: &str = "/v2/skills/skill-r/analytics/retention?startTime=2026-01-05T00:00:00Z&endTime=2026-02-04T00:00:00Z";
const PATHS: &str = "/v2/skills/skill-p/analytics/paths?startTime=2026-01-05T00:00:00Z&endTime=2026-01-06T00:00:00Z&limit=2";

#[tokio::test]
async fn retention_answers_json_and_csv() {
    let (app, _dir) = app().await;
    let a = call(&app, "GET", RETENTION, Some(VIEWER_R), None, None).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert!(a.content_type().starts_with("application/json"));
    let v = a.json();
    assert_eq!(v["skillId"], "skill-r");
    assert_eq!(v["startTime"], "2026-01-05T00:00:00Z");
    assert_eq!(v["endTime"], "2026-02-04T00:00:00Z");
    assert_eq!(v["weeks"], 12);
    assert_eq!(v["cohorts"].as_array().unwrap().len(), 4);
    assert_eq!(
        v["cohorts"][0],
        json!({"cohortWeek": "2026-01-05T00:00:00Z", "users": 3, "retention": [
            {"week": 0, "users": 3, "percentage": 100.0},
            {"week": 1, "users": 1, "percentage": 33.33},
            {"week": 2, "users": 1, "percentage": 33.33},
            {"week": 3, "users": 1, "percentage": 33.33},
            {"week": 4, "users": 1, "percentage": 33.33},
        ]})
    );
    // Epoch milliseconds work too.
    let by_ms = call(
        &app,
        "GET",
        "/v2/skills/skill-r/analytics/retention?startTime=1767571200000&endTime=1770163200000",
        Some(VIEWER_R),
        None,
        None,
    )
    .await;
    assert_eq!(by_ms.json()["cohorts"], v["cohorts"]);

    let csv = call(
        &app,
        "GET",
        RETENTION,
        Some(VIEWER_R),
        Some("text/csv"),
        None,
    )
    .await;
    assert_eq!(csv.status, StatusCode::OK);
    assert_eq!(csv.content_type(), "text/csv; charset=utf-8");
    assert_eq!(
        csv.text,
        "cohortWeek,cohortUsers,week,users,percentage\n\
         2026-01-05T00:00:00Z,3,0,3,100\n\
         2026-01-05T00:00:00Z,3,1,1,33.33\n\
         2026-01-05T00:00:00Z,3,2,1,33.33\n\
         2026-01-05T00:00:00Z,3,3,1,33.33\n\
         2026-01-05T00:00:00Z,3,4,1,33.33\n\
         2026-01-12T00:00:00Z,1,0,1,100\n\
         2026-01-12T00:00:00Z,1,1,1,100\n\
         2026-01-12T00:00:00Z,1,2,1,100\n\
         2026-01-12T00:00:00Z,1,3,0,0\n\
         2026-01-19T00:00:00Z,1,0,1,100\n\
         2026-01-19T00:00:00Z,1,1,0,0\n\
         2026-01-19T00:00:00Z,1,2,1,100\n\
         2026-02-02T00:00:00Z,1,0,1,100\n"
    );
}

/// Skill `skill-s`, three weeks from Monday 2026-01-05: `l1` (live) new
/// that week and back the next; `l2` (no stage: live) new on 01-06; `d1`
/// (development) new that week, back in weeks 1 and 2; `d2` (development)
/// new on 01-07; `m` spoke in development on 01-05 and live on 01-14; `z`
/// only started a session.
const STAGES: &str = "fixtures/events/retention_stages.jsonl";
const STAGES_RETENTION: &str = "/v2/skills/skill-s/analytics/retention?startTime=2026-01-05T00:00:00Z&endTime=2026-01-26T00:00:00Z";

#[tokio::test]
async fn retention_counts_live_users_unless_asked_otherwise() {
    let (app, _dir) = app_over(STAGES).await;
    let ask = |query: &'static str| {
        let app = app.clone();
        async move {
            let a = call(
                &app,
                "GET",
                &format!("{STAGES_RETENTION}{query}"),
                Some(ADMIN),
                None,
                None,
            )
            .await;
            assert_eq!(a.status, StatusCode::OK, "{query}: {}", a.text);
            a.json()
        }
    };
    let default = ask("").await;
    let live = ask("&stage=live").await;
    let all = ask("&stage=all").await;
    let development = ask("&stage=development").await;
    // Without `stage`, the answer is the live one, and says so.
    assert_eq!(default, live);
    assert_eq!(default["stage"], "live");
    assert_ne!(default["cohorts"], all["cohorts"]);
    // Live: l1 and l2 new in the first week, l1 back; m is new in the
    // second week, when they first spoke live.
    assert_eq!(
        live["cohorts"],
        json!([
            {"cohortWeek": "2026-01-05T00:00:00Z", "users": 2, "retention": [
                {"week": 0, "users": 2, "percentage": 100.0},
                {"week": 1, "users": 1, "percentage": 50.0},
                {"week": 2, "users": 0, "percentage": 0.0}]},
            {"cohortWeek": "2026-01-12T00:00:00Z", "users": 1, "retention": [
                {"week": 0, "users": 1, "percentage": 100.0},
                {"week": 1, "users": 0, "percentage": 0.0}]}
        ])
    );
    // All stages: five new users in the first week; l1, d1 and m back in
    // week 1, d1 in week 2.
    assert_eq!(all["stage"], "all");
    assert_eq!(
        all["cohorts"],
        json!([
            {"cohortWeek": "2026-01-05T00:00:00Z", "users": 5, "retention": [
                {"week": 0, "users": 5, "percentage": 100.0},
                {"week": 1, "users": 3, "percentage": 60.0},
                {"week": 2, "users": 1, "percentage": 20.0}]}
        ])
    );
    assert_eq!(
        development["cohorts"],
        json!([
            {"cohortWeek": "2026-01-05T00:00:00Z", "users": 3, "retention": [
                {"week": 0, "users": 3, "percentage": 100.0},
                {"week": 1, "users": 1, "percentage": 33.33},
                {"week": 2, "users": 1, "percentage": 33.33}]}
        ])
    );
}

/// Document 002's "total new customers for the day" is the one cohort of a
/// one-day retention range: the users whose first utterance ever falls in
/// that day. Checked day by day against a loop over the fixture rows.
#[tokio::test]
async fn a_days_new_customers_are_the_cohort_of_a_one_day_range() {
    let (app, _dir) = app_over(STAGES).await;
    let rows = common::read_fixture(STAGES);
    let day = 86_400_000;
    let mut first: std::collections::BTreeMap<&str, i64> = Default::default();
    for r in rows.iter().filter(|r| r.event_type == "utterance") {
        let t = first.entry(r.user_id.as_deref().unwrap()).or_insert(r.time);
        *t = (*t).min(r.time);
    }
    let monday = 1_767_571_200_000i64;
    let mut seen = 0;
    for d in 0..14 {
        let start = monday + d * day;
        let want = first
            .values()
            .filter(|t| (start..start + day).contains(*t))
            .count() as i64;
        let a = call(
            &app,
            "GET",
            &format!(
                "/v2/skills/skill-s/analytics/retention?startTime={start}&endTime={}&stage=all",
                start + day
            ),
            Some(ADMIN),
            None,
            None,
        )
        .await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.text);
        let cohorts = a.json()["cohorts"].as_array().unwrap().clone();
        let got: i64 = cohorts.iter().map(|c| c["users"].as_i64().unwrap()).sum();
        assert!(cohorts.len() <= 1, "{cohorts:?}");
        assert_eq!(got, want, "new customers of day {d}");
        seen += got;
    }
    assert_eq!(seen, 5, "every user is new on exactly one day");
}

#[tokio::test]
async fn paths_answer_json_and_csv() {
    let (app, _dir) = app().await;
    let a = call(&app, "GET", PATHS, Some(ADMIN), None, None).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let v = a.json();
    assert_eq!(v["intent"], "LaunchRequest");
    assert_eq!(v["limit"], 2);
    // Percentages are of users (document 001); sessions are kept.
    assert_eq!(v["next"]["users"], 5);
    assert_eq!(v["next"]["sessions"], 10);
    assert_eq!(
        v["next"]["items"][2],
        json!({"rank": 3, "name": "(other)", "users": 3, "sessions": 5, "percentage": 60.0, "folded": 3})
    );
    assert_eq!(v["paths"]["users"], 6);
    assert_eq!(v["paths"]["sessions"], 12);

    let csv = call(
        &app,
        "GET",
        PATHS,
        Some(ADMIN),
        Some("text/csv, application/json;q=0.5"),
        None,
    )
    .await;
    assert_eq!(csv.content_type(), "text/csv; charset=utf-8");
    assert_eq!(
        csv.text,
        "section,rank,name,users,sessions,percentage,folded\n\
         next,1,AMAZON.HelpIntent,2,3,40,0\n\
         next,2,(session ended),2,2,40,0\n\
         next,3,(other),3,5,60,3\n\
         path,1,LaunchRequest > AMAZON.HelpIntent,2,2,33.33,0\n\
         path,2,LaunchRequest > GetScoreIntent,1,2,16.67,0\n\
         path,3,(other),6,8,100,8\n"
    );

    // Another intent.
    let a = call(
        &app,
        "GET",
        "/v2/skills/skill-p/analytics/paths?startTime=2026-01-05T00:00:00Z&endTime=2026-01-06T00:00:00Z&intent=GetScoreIntent",
        Some(ADMIN),
        None,
        None,
    )
    .await;
    let v = a.json();
    assert_eq!(v["intent"], "GetScoreIntent");
    let names: Vec<&str> = v["next"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["(session ended)", "AMAZON.StopIntent", "AMAZON.YesIntent"]
    );
}

#[tokio::test]
async fn mistakes_are_documented_errors_and_tenants_are_walls() {
    let (app, _dir) = app().await;
    let base = "/v2/skills/skill-r/analytics";
    let cases: Vec<(String, Option<&str>, StatusCode, &str)> = vec![
        (RETENTION.into(), None, StatusCode::UNAUTHORIZED, "UNAUTHORIZED"),
        (RETENTION.into(), Some("wrong-secret-123"), StatusCode::UNAUTHORIZED, "UNAUTHORIZED"),
        (PATHS.into(), Some(VIEWER_R), StatusCode::FORBIDDEN, "FORBIDDEN"),
        (
            "/v2/skills/skill-nope/analytics/retention?startTime=2026-01-05T00:00:00Z&endTime=2026-02-04T00:00:00Z".into(),
            Some(ADMIN),
            StatusCode::NOT_FOUND,
            "SKILL_NOT_FOUND",
        ),
        (
            "/v2/skills/skill-nope/analytics/retention?startTime=2026-01-05T00:00:00Z&endTime=2026-02-04T00:00:00Z".into(),
            Some(VIEWER_R),
            StatusCode::FORBIDDEN,
            "FORBIDDEN",
        ),
        (format!("{base}/retention?endTime=2026-02-04T00:00:00Z"), Some(ADMIN), StatusCode::BAD_REQUEST, "MISSING_PARAMETER"),
        (format!("{base}/retention?startTime=yesterday&endTime=2026-02-04T00:00:00Z"), Some(ADMIN), StatusCode::BAD_REQUEST, "INVALID_TIME"),
        (format!("{base}/retention?startTime=2026-02-30T00:00:00Z&endTime=2026-03-04T00:00:00Z"), Some(ADMIN), StatusCode::BAD_REQUEST, "INVALID_TIME"),
        (format!("{base}/retention?startTime=2026-02-04T00:00:00Z&endTime=2026-01-05T00:00:00Z"), Some(ADMIN), StatusCode::BAD_REQUEST, "INVALID_TIME_RANGE"),
        (format!("{base}/retention?startTime=2026-01-05T00:00:00Z&endTime=2026-01-05T00:00:00Z"), Some(ADMIN), StatusCode::BAD_REQUEST, "INVALID_TIME_RANGE"),
        (format!("{base}/retention?startTime=2020-01-01T00:00:00Z&endTime=2026-01-05T00:00:00Z"), Some(ADMIN), StatusCode::BAD_REQUEST, "INVALID_TIME_RANGE"),
        (format!("{base}/retention?startTime=-9223372036854775808&endTime=9223372036854775807"), Some(ADMIN), StatusCode::BAD_REQUEST, "INVALID_TIME"),
        (format!("{base}/retention?startTime=9223372036854775000&endTime=9223372036854775807"), Some(ADMIN), StatusCode::BAD_REQUEST, "INVALID_TIME"),
        (format!("{base}/retention?startTime=1767571200000&endTime=99999999999999999999"), Some(ADMIN), StatusCode::BAD_REQUEST, "INVALID_TIME"),
        (format!("{base}/paths?startTime=2026-01-05T00:00:00Z&endTime=2026-01-06T00:00:00Z&intent=Bad%20Intent"), Some(ADMIN), StatusCode::BAD_REQUEST, "INVALID_INTENT"),
        (format!("{base}/paths?startTime=2026-01-05T00:00:00Z&endTime=2026-01-06T00:00:00Z&intent=(other)"), Some(ADMIN), StatusCode::BAD_REQUEST, "INVALID_INTENT"),
        (format!("{base}/paths?startTime=2026-01-05T00:00:00Z&endTime=2026-01-06T00:00:00Z&limit=0"), Some(ADMIN), StatusCode::BAD_REQUEST, "INVALID_LIMIT"),
        (format!("{base}/paths?startTime=2026-01-05T00:00:00Z&endTime=2026-01-06T00:00:00Z&limit=ten"), Some(ADMIN), StatusCode::BAD_REQUEST, "INVALID_LIMIT"),
        (format!("{base}/paths?startTime=2026-01-05T00:00:00Z&endTime=2026-01-06T00:00:00Z&limit=101"), Some(ADMIN), StatusCode::BAD_REQUEST, "INVALID_LIMIT"),
    ];
    for (uri, token, status, code) in cases {
        for accept in [None, Some("text/csv")] {
            let a = call(&app, "GET", &uri, token, accept, None).await;
            assert_eq!(a.status, status, "{uri} ({accept:?}): {}", a.text);
            // Errors stay JSON, even when CSV was asked for.
            assert!(a.content_type().starts_with("application/json"), "{uri}");
            let v = a.json();
            assert_eq!(v["code"], code, "{uri}: {v}");
            assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()));
        }
    }
    let a = call(&app, "POST", RETENTION, Some(ADMIN), None, None).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(a.json()["code"], "METHOD_NOT_ALLOWED");
}

#[tokio::test]
async fn the_metrics_api_answers_csv() {
    let (app, _dir) = app().await;
    let body = json!({
        "startTime": "2026-01-05T00:00:00Z",
        "endTime": "2026-01-05T03:00:00Z",
        "metricQueries": [
            {"id": "u", "label": "all, \"quoted\"", "metricNamespace": "Alexa.Custom", "name": "UTTERANCES", "aggregationPeriod": "BY_HOUR", "stat": "count"},
            {"id": "f", "metricNamespace": "Alexa.Custom", "name": "UTTERANCES", "aggregationPeriod": "SINGLE", "stat": "count", "groupBy": "intent"}
        ]
    });
    let json_answer = call(
        &app,
        "POST",
        "/v2/skills/skill-p/metrics",
        Some(ADMIN),
        None,
        Some(body.clone()),
    )
    .await;
    assert_eq!(json_answer.status, StatusCode::OK, "{}", json_answer.text);
    let csv = call(
        &app,
        "POST",
        "/v2/skills/skill-p/metrics",
        Some(ADMIN),
        Some("text/csv"),
        Some(body),
    )
    .await;
    assert_eq!(csv.status, StatusCode::OK, "{}", csv.text);
    assert_eq!(csv.content_type(), "text/csv; charset=utf-8");
    // Build the expected CSV from the JSON answer, field by field.
    let v = json_answer.json();
    let mut want = String::from("id,label,metricNamespace,name,stat,intent,timestamp,value\n");
    let mut rows = 0;
    for r in v["results"].as_array().unwrap() {
        for d in r["data"].as_array().unwrap() {
            let intent = d["groupedBy"]["groupedByValue"].as_str().unwrap_or("");
            for (t, x) in d["timestamps"]
                .as_array()
                .unwrap()
                .iter()
                .zip(d["values"].as_array().unwrap())
            {
                let label = r["label"].as_str().unwrap_or("");
                let label = if label.contains(',') || label.contains('"') {
                    format!("\"{}\"", label.replace('"', "\"\""))
                } else {
                    label.to_string()
                };
                want += &format!(
                    "{},{},{},{},{},{},{},{}\n",
                    r["id"].as_str().unwrap(),
                    label,
                    r["metricNamespace"].as_str().unwrap(),
                    r["name"].as_str().unwrap(),
                    r["stat"].as_str().unwrap(),
                    intent,
                    t.as_i64().unwrap(),
                    x.as_f64().unwrap() as i64
                );
                rows += 1;
            }
        }
    }
    assert!(rows >= 3 + 3, "{}", json_answer.text);
    assert_eq!(csv.text, want);
    assert!(csv.text.contains("\"all, \"\"quoted\"\"\""));
}

#[tokio::test]
async fn interaction_calculations_answer_csv() {
    let (app, _dir) = app().await;
    let ws = [("x-workspace-id", "skill-p")];
    let create = |body: Value| {
        let app = app.clone();
        async move {
            let mut req = Request::builder()
                .method("POST")
                .uri("/api/interaction-metrics")
                .header("authorization", format!("Bearer {ADMIN}"))
                .header("content-type", "application/json");
            for (k, v) in ws {
                req = req.header(k, v);
            }
            let resp = app
                .oneshot(req.body(Body::from(body.to_string())).unwrap())
                .await
                .unwrap();
            assert!(resp.status().is_success(), "{}", resp.status());
            let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
                .await
                .unwrap();
            serde_json::from_slice::<Value>(&bytes).unwrap()
        }
    };
    let m =
        create(json!({"name": "all events", "metricTypeId": "COUNT", "timeWindow": "30d"})).await;
    let id = m["id"].as_str().unwrap();
    for (uri, want_header) in [
        (
            format!("/api/interaction-metrics/{id}/calculate"),
            "metricId,metricName,metricType,calculatedAt,value",
        ),
        (
            "/api/interaction-metrics/calculate-all".to_string(),
            "metricId,metricName,metricType,calculatedAt,value",
        ),
    ] {
        let mut req = Request::builder()
            .method("POST")
            .uri(&uri)
            .header("authorization", format!("Bearer {ADMIN}"))
            .header("accept", "text/csv")
            .header("x-workspace-id", "skill-p");
        req = req.header("content-type", "application/json");
        let resp = app
            .clone()
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{uri}");
        assert_eq!(resp.headers()["content-type"], "text/csv; charset=utf-8");
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some(want_header), "{uri}: {text}");
        let row = lines
            .next()
            .unwrap_or_else(|| panic!("{uri}: no row: {text}"));
        assert!(
            row.starts_with(&format!("{id},all events,COUNT,")),
            "{uri}: {row}"
        );
        assert_eq!(lines.next(), None, "{uri}: {text}");
    }
}

#[tokio::test]
async fn the_dashboard_is_served_without_a_token_and_loads_nothing_from_elsewhere() {
    let (app, _dir) = app().await;
    let page = call(&app, "GET", "/", None, None, None).await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.content_type(), "text/html; charset=utf-8");
    let csp = page.headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("connect-src 'self'"),
        "{csp}"
    );
    for asset in [
        "/assets/dashboard.js",
        "/assets/dashboard.css",
        "/assets/uPlot.iife.min.js",
        "/assets/uPlot.min.css",
    ] {
        assert!(page.text.contains(asset), "the page does not load {asset}");
        let a = call(&app, "GET", asset, None, None, None).await;
        assert_eq!(a.status, StatusCode::OK, "{asset}");
        assert!(a.text.len() > 500, "{asset}");
    }
    for own in [
        &page.text,
        &call(&app, "GET", "/assets/dashboard.js", None, None, None)
            .await
            .text,
    ] {
        assert!(
            !own.contains("http://") && !own.contains("https://"),
            "a URL off the server"
        );
    }
    // The data still needs the token.
    let a = call(&app, "GET", RETENTION, None, None, None).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
}
