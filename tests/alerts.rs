//! Metric alerts end to end: a webhook receiver on 127.0.0.1 started by
//! each test, events ingested over `POST /v1/{ws}/events`, evaluation
//! every second. Deliveries are counted exactly: a receiver records every
//! request and whether it answered 2xx ("acknowledged"); a request left
//! unanswered (the server killed mid-send) is not acknowledged.

mod common;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Request, StatusCode};
use metricstore::alerts::http::router;
use metricstore::api::auth::Auth;
use metricstore::api::token::Signer;
use metricstore::api::{AppState, Clock};
use metricstore::engine::Engine;
use metricstore::storage::Store;
use serde_json::{Value, json};
use tower::ServiceExt;

const TOKENS: &str = "al-admin-token:admin:ws-demo,al-viewer-token:viewer:ws-demo,al-acme-admin:admin:ws-acme,al-root-token:admin:*";
const SECRET: &str = "a-webhook-secret-of-some-length";
const WS: &str = "ws-demo";

// ---- the receiver ----

#[derive(Debug, Clone, Copy)]
enum Answer {
    Status(u16),
    /// Never answer.
    Hang,
}

#[derive(Debug, Clone)]
struct Hit {
    at: Instant,
    body: Value,
    raw: Bytes,
    signature: String,
    acked: bool,
}

#[derive(Default)]
struct Inner {
    hits: Vec<Hit>,
    plan: VecDeque<Answer>,
}

#[derive(Clone, Default)]
struct Receiver(Arc<Mutex<Inner>>);

impl Receiver {
    /// Starts a receiver answering as `plan` says, then 200.
    async fn start(plan: &[Answer]) -> (Self, String) {
        let r = Receiver::default();
        r.0.lock().unwrap().plan = plan.iter().copied().collect();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let state = r.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                let state = state.clone();
                async move {
                    let (i, answer) = {
                        let mut inner = state.0.lock().unwrap();
                        inner.hits.push(Hit {
                            at: Instant::now(),
                            body: serde_json::from_slice(&body).unwrap_or(Value::Null),
                            raw: body.clone(),
                            signature: headers
                                .get("x-metricstore-signature")
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or_default()
                                .to_string(),
                            acked: false,
                        });
                        let answer = inner.plan.pop_front().unwrap_or(Answer::Status(200));
                        (inner.hits.len() - 1, answer)
                    };
                    match answer {
                        Answer::Hang => {
                            tokio::time::sleep(Duration::from_secs(3600)).await;
                            StatusCode::OK
                        }
                        Answer::Status(s) => {
                            let ok = (200..300).contains(&s);
                            state.0.lock().unwrap().hits[i].acked = ok;
                            StatusCode::from_u16(s).unwrap()
                        }
                    }
                }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (r, url)
    }

    fn hits(&self) -> Vec<Hit> {
        self.0.lock().unwrap().hits.clone()
    }

    /// Acknowledged deliveries with `status` (`firing` or `resolved`).
    fn acked(&self, status: &str) -> Vec<Hit> {
        self.hits()
            .into_iter()
            .filter(|h| h.acked && h.body["status"] == status)
            .collect()
    }

    async fn wait_for(&self, status: &str, n: usize, limit: Duration) -> Vec<Hit> {
        let deadline = Instant::now() + limit;
        loop {
            let got = self.acked(status);
            if got.len() >= n || Instant::now() > deadline {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn verify(h: &Hit) {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, SECRET.as_bytes());
    let hex = h.signature.strip_prefix("sha256=").expect("sha256= prefix");
    let tag: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    ring::hmac::verify(&key, &h.raw, &tag).expect("the signature verifies");
}

// ---- in-process servers ----

struct Node {
    state: Arc<AppState>,
    app: axum::Router,
}

async fn node(dir: &std::path::Path, clock: Clock) -> Node {
    let store = Store::open(dir.to_str().unwrap()).unwrap();
    let engine = Engine::new(store).await.unwrap();
    let state = AppState::new(
        engine,
        Auth::parse(TOKENS, 0, 0).unwrap(),
        clock,
        Signer::from_secret(TOKENS),
    );
    Node {
        app: router(std::sync::Arc::clone(&state)),
        state,
    }
}

impl Node {
    /// Starts the flusher and the evaluator, as `serve` does.
    fn start(&self, name: &str) {
        self.state.ingest.spawn_background(
            Duration::from_secs(1),
            metricstore::ingest::Compaction::default(),
        );
        metricstore::alerts::evaluator::spawn(
            std::sync::Arc::clone(&self.state),
            metricstore::alerts::Config {
                allow: metricstore::alerts::allow::AllowList::loopback(),
                node_id: name.to_string(),
            },
        );
    }

    async fn call(
        &self,
        method: &str,
        uri: &str,
        token: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        call_ws(&self.app, method, uri, token, None, body).await
    }
}

async fn call_ws(
    app: &axum::Router,
    method: &str,
    uri: &str,
    token: &str,
    ws: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json");
    if let Some(ws) = ws {
        req = req.header("x-workspace-id", ws);
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

fn failed_logins(n: usize, time_ms: i64) -> String {
    (0..n)
        .map(|i| {
            format!(
                "{{\"time\":{time_ms},\"event_type\":\"interaction\",\"resource_type\":\"customer\",\"resource_id\":\"c{i}\",\"action\":\"login-fail\",\"origin\":\"web\",\"attributes\":{{\"country\":\"ZA\"}}}}\n"
            )
        })
        .collect()
}

async fn ingest(app: &axum::Router, body: String) {
    let req = Request::builder()
        .method("POST")
        .uri(format!("/v1/{WS}/events"))
        .header("authorization", "Bearer al-admin-token")
        .body(Body::from(body))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}

fn metric_body() -> Value {
    json!({
        "name": "Failed Logins (5m)",
        "metricTypeId": "COUNT",
        "resourceTypeId": "customer",
        "actionId": "login-fail",
        "timeWindow": "5m"
    })
}

fn rule_body(metric_id: &str, url: &str, for_: &str) -> Value {
    json!({
        "name": "Credential stuffing",
        "metricId": metric_id,
        "condition": {"operator": "gt", "threshold": 3},
        "evaluationInterval": "1s",
        "for": for_,
        "channels": [{"type": "webhook", "url": url, "secret": SECRET}]
    })
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

async fn metric_and_rule(n: &Node, url: &str, for_: &str) -> (String, String) {
    let (s, m) = n
        .call(
            "POST",
            "/api/interaction-metrics",
            "al-admin-token",
            Some(metric_body()),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{m}");
    let metric_id = m["id"].as_str().unwrap().to_string();
    let (s, r) = n
        .call(
            "POST",
            "/api/metric-alerts",
            "al-admin-token",
            Some(rule_body(&metric_id, url, for_)),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    (metric_id, r["id"].as_str().unwrap().to_string())
}

/// Raises `rule`'s threshold to 100, keeping its channels (sent back
/// without their secrets, which the route keeps).
async fn raise_threshold(n: &Node, rule: &str) {
    let path = format!("/api/metric-alerts/{rule}");
    let (_, got) = n.call("GET", &path, "al-viewer-token", None).await;
    let (s, updated) = n
        .call(
            "PUT",
            &path,
            "al-admin-token",
            Some(json!({"condition": {"operator": "gt", "threshold": 100}, "channels": got["channels"]})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{updated}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fires_once_after_for_then_resolves_once() {
    let dir = tempfile::tempdir().unwrap();
    let n = node(dir.path(), Clock::system()).await;
    n.start("node-a");
    let (rx, url) = Receiver::start(&[]).await;
    let (_, rule) = metric_and_rule(&n, &url, "2s").await;

    ingest(&n.app, failed_logins(5, now_ms())).await;
    let ingested = Instant::now();
    let firing = rx.wait_for("firing", 1, Duration::from_secs(10)).await;
    assert_eq!(firing.len(), 1, "one firing notification");
    let delay = firing[0].at - ingested;
    // `for` is 2 s and the interval 1 s: the notification arrives within
    // two intervals after the `for` time.
    assert!(
        delay >= Duration::from_secs(2),
        "fired before `for`: {delay:?}"
    );
    assert!(delay <= Duration::from_secs(4), "fired late: {delay:?}");
    eprintln!("ingest to firing notification: {delay:?}");
    let f = &firing[0].body;
    assert_eq!(f["rule"]["id"], rule.as_str());
    assert_eq!(f["state"], "firing");
    assert_eq!(f["previousState"], "pending");
    assert_eq!(f["value"], 5.0);
    assert_eq!(f["threshold"], 3.0);
    assert_eq!(f["group"], Value::Null);
    assert_eq!(f["workspaceId"], WS);
    assert!(
        f["notificationId"].is_string() && f["firedAt"].is_string() && f["startsAt"].is_string()
    );
    verify(&firing[0]);

    // It keeps firing without notifying again.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(rx.hits().len(), 1, "no repeat while firing");
    let (_, got) = n
        .call(
            "GET",
            &format!("/api/metric-alerts/{rule}"),
            "al-viewer-token",
            None,
        )
        .await;
    assert_eq!(got["status"]["state"], "firing");
    assert_eq!(got["channels"][0]["secretSet"], true);
    assert!(
        got["channels"][0].get("secret").is_none(),
        "secrets are not shown"
    );

    // Raising the threshold resolves it, once.
    raise_threshold(&n, &rule).await;
    let resolved = rx.wait_for("resolved", 1, Duration::from_secs(5)).await;
    assert_eq!(resolved.len(), 1);
    verify(&resolved[0]);
    assert_eq!(resolved[0].body["state"], "ok");
    assert_eq!(resolved[0].body["previousState"], "firing");
    assert_ne!(resolved[0].body["notificationId"], f["notificationId"]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(rx.hits().len(), 2, "exactly one firing and one resolved");

    // The history, newest first, a page at a time.
    let (s, page) = n
        .call(
            "GET",
            &format!("/api/metric-alerts/{rule}/history?maxResults=2"),
            "al-viewer-token",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{page}");
    let states: Vec<&str> = page["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["ok", "firing"]);
    assert_eq!(page["transitions"][0]["notice"], "resolved");
    assert!(page["transitions"][0]["deliveries"][0]["deliveredAt"].is_string());
    let token = page["nextToken"].as_str().unwrap();
    let (_, rest) = n
        .call(
            "GET",
            &format!("/api/metric-alerts/{rule}/history?maxResults=2&nextToken={token}"),
            "al-viewer-token",
            None,
        )
        .await;
    assert_eq!(rest["transitions"].as_array().unwrap().len(), 1);
    assert_eq!(rest["transitions"][0]["state"], "pending");
    assert!(rest.get("nextToken").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_receiver_gets_the_notification_once_it_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let n = node(dir.path(), Clock::system()).await;
    n.start("node-a");
    let (rx, url) = Receiver::start(&[Answer::Status(500), Answer::Status(500)]).await;
    ingest(&n.app, failed_logins(5, now_ms())).await;
    metric_and_rule(&n, &url, "0s").await;
    let firing = rx.wait_for("firing", 1, Duration::from_secs(10)).await;
    assert_eq!(firing.len(), 1);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let hits = rx.hits();
    assert_eq!(hits.len(), 3, "two refused attempts, then the delivery");
    let id = &hits[0].body["notificationId"];
    assert!(
        hits.iter()
            .all(|h| &h.body["notificationId"] == id && h.raw == hits[0].raw)
    );
    // Exponential back-off: 1 s, then 2 s.
    assert!(hits[1].at - hits[0].at >= Duration::from_millis(900));
    assert!(hits[2].at - hits[1].at >= Duration::from_millis(1900));
    assert_eq!(rx.acked("firing").len(), 1);
    hits.iter().for_each(verify);
}

/// A `resolved` never overtakes its `firing`: while the firing waits out
/// its back-off, the resolved waits behind it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_gets_its_notifications_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let n = node(dir.path(), Clock::system()).await;
    n.start("node-a");
    let (rx, url) = Receiver::start(&[Answer::Status(500), Answer::Status(500)]).await;
    ingest(&n.app, failed_logins(5, now_ms())).await;
    let (_, rule) = metric_and_rule(&n, &url, "0s").await;
    // The first attempt is refused; then the condition stops holding.
    let deadline = Instant::now() + Duration::from_secs(10);
    while rx.hits().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(rx.hits().len(), 1);
    raise_threshold(&n, &rule).await;
    let resolved = rx.wait_for("resolved", 1, Duration::from_secs(15)).await;
    assert_eq!(resolved.len(), 1);
    let hits = rx.hits();
    let statuses: Vec<(&str, bool)> = hits
        .iter()
        .map(|h| (h.body["status"].as_str().unwrap(), h.acked))
        .collect();
    // Two refused firings, the firing delivered, then the resolved.
    assert_eq!(
        statuses,
        [
            ("firing", false),
            ("firing", false),
            ("firing", true),
            ("resolved", true)
        ]
    );
    hits.iter().for_each(verify);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_on_one_store_notify_each_transition_once() {
    let dir = tempfile::tempdir().unwrap();
    let a = node(dir.path(), Clock::system()).await;
    let b = node(dir.path(), Clock::system()).await;
    a.start("node-a");
    b.start("node-b");
    let (rx, url) = Receiver::start(&[]).await;
    let (s, m) = a
        .call(
            "POST",
            "/api/interaction-metrics",
            "al-admin-token",
            Some(metric_body()),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let metric_id = m["id"].as_str().unwrap();
    ingest(&a.app, failed_logins(5, now_ms())).await;
    // Both servers see the events once they are published.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, c) = b
            .call(
                "POST",
                &format!("/api/interaction-metrics/{metric_id}/calculate"),
                "al-admin-token",
                None,
            )
            .await;
        if c["results"][0]["value"] == 5 {
            break;
        }
        assert!(Instant::now() < deadline, "events not published");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (s, r) = b
        .call(
            "POST",
            "/api/metric-alerts",
            "al-admin-token",
            Some(rule_body(metric_id, &url, "1s")),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    let rule = r["id"].as_str().unwrap().to_string();
    assert_eq!(
        rx.wait_for("firing", 1, Duration::from_secs(10))
            .await
            .len(),
        1
    );
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(rx.acked("firing").len(), 1, "one firing from two servers");
    let (s, _) = a
        .call(
            "PUT",
            &format!("/api/metric-alerts/{rule}"),
            "al-admin-token",
            Some(json!({"condition": {"operator": "gt", "threshold": 100}})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        rx.wait_for("resolved", 1, Duration::from_secs(10))
            .await
            .len(),
        1
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        rx.hits().len(),
        2,
        "one firing, one resolved: {:?}",
        rx.hits()
    );
    let (_, page) = a
        .call(
            "GET",
            &format!("/api/metric-alerts/{rule}/history"),
            "al-admin-token",
            None,
        )
        .await;
    let states: Vec<&str> = page["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["state"].as_str().unwrap())
        .collect();
    assert_eq!(
        states,
        ["ok", "firing", "pending"],
        "each transition recorded once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_before_the_notification_sends_it_after_restart_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap().to_string();
    // The first delivery is never answered: the server dies while sending.
    let (rx, url) = Receiver::start(&[Answer::Hang]).await;
    let env = [("METRICSTORE_NODE_ID", "node-a")];
    let server = common::serve_with_env(&data, TOKENS, "", &env);
    let http = reqwest::Client::new();
    let post = |path: &str, body: Value| {
        http.post(format!("{}{path}", server.base))
            .bearer_auth("al-admin-token")
            .json(&body)
            .send()
    };
    let m: Value = post("/api/interaction-metrics", metric_body())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let metric_id = m["id"].as_str().unwrap();
    let r = http
        .post(format!("{}/v1/{WS}/events", server.base))
        .bearer_auth("al-admin-token")
        .body(failed_logins(5, now_ms()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = post("/api/metric-alerts", rule_body(metric_id, &url, "0s"))
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let deadline = Instant::now() + Duration::from_secs(10);
    while rx.hits().is_empty() {
        assert!(Instant::now() < deadline, "no delivery attempt");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(server); // SIGKILL, mid-delivery
    let sent = rx.hits()[0].body["notificationId"].clone();
    assert_eq!(rx.acked("firing").len(), 0);

    let _server = common::serve_with_env(&data, TOKENS, "", &env);
    let firing = rx.wait_for("firing", 1, Duration::from_secs(10)).await;
    assert_eq!(firing.len(), 1, "delivered after the restart");
    assert_eq!(
        firing[0].body["notificationId"], sent,
        "the same notification"
    );
    verify(&firing[0]);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let hits = rx.hits();
    assert_eq!(
        hits.iter().filter(|h| h.acked).count(),
        1,
        "acknowledged once"
    );
    assert!(
        hits.iter().all(|h| h.body["notificationId"] == sent),
        "one notification id"
    );
}

fn logins_from(country: &str, n: usize, time_ms: i64) -> String {
    failed_logins(n, time_ms).replace("\"ZA\"", &format!("\"{country}\""))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_group_fires_on_its_own_and_silences_hold_notifications_back() {
    let dir = tempfile::tempdir().unwrap();
    let n = node(dir.path(), Clock::system()).await;
    n.start("node-a");
    let (rx, url) = Receiver::start(&[]).await;
    let mut metric = metric_body();
    metric["groupBy"] = json!(["interaction.country"]);
    let (s, m) = n
        .call(
            "POST",
            "/api/interaction-metrics",
            "al-admin-token",
            Some(metric),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{m}");
    let metric_id = m["id"].as_str().unwrap();
    ingest(
        &n.app,
        logins_from("ZA", 5, now_ms()) + &logins_from("US", 1, now_ms()),
    )
    .await;
    let (s, r) = n
        .call(
            "POST",
            "/api/metric-alerts",
            "al-admin-token",
            Some(rule_body(metric_id, &url, "0s")),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    let rule = r["id"].as_str().unwrap().to_string();
    let firing = rx.wait_for("firing", 1, Duration::from_secs(10)).await;
    assert_eq!(firing.len(), 1);
    assert_eq!(
        firing[0].body["group"],
        json!({"interaction_country": "ZA"})
    );
    // US crosses the threshold too: its own notification, ZA not again.
    ingest(&n.app, logins_from("US", 4, now_ms())).await;
    let firing = rx.wait_for("firing", 2, Duration::from_secs(10)).await;
    assert_eq!(firing.len(), 2);
    assert_eq!(
        firing[1].body["group"],
        json!({"interaction_country": "US"})
    );
    assert_eq!(firing[1].body["value"], 5.0);
    let (_, got) = n
        .call(
            "GET",
            &format!("/api/metric-alerts/{rule}"),
            "al-admin-token",
            None,
        )
        .await;
    let states: Vec<&str> = got["status"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["firing", "firing"], "{got}");

    // Silenced: the transitions are recorded, nothing is sent.
    let until = chrono::Utc::now() + chrono::Duration::hours(1);
    let (s, _) = n
        .call(
            "PUT",
            &format!("/api/metric-alerts/{rule}"),
            "al-admin-token",
            Some(json!({"silencedUntil": until.to_rfc3339(), "condition": {"operator": "gt", "threshold": 100}})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, got) = n
            .call(
                "GET",
                &format!("/api/metric-alerts/{rule}"),
                "al-admin-token",
                None,
            )
            .await;
        if got["status"]["state"] == "ok" {
            break;
        }
        assert!(Instant::now() < deadline, "{got}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rx.hits().len(), 2, "nothing sent while silenced");
    let (_, page) = n
        .call(
            "GET",
            &format!("/api/metric-alerts/{rule}/history"),
            "al-admin-token",
            None,
        )
        .await;
    let silenced: Vec<&Value> = page["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["notice"] == "resolved")
        .collect();
    assert_eq!(silenced.len(), 2, "{page}");
    assert!(
        silenced
            .iter()
            .all(|t| t["silenced"] == true && t["deliveries"] == json!([]))
    );
}

// ---- the API without a running evaluator ----

const NOW: &str = "2026-01-10T12:00:00Z";

async fn demo() -> (tempfile::TempDir, Node) {
    let dir = tempfile::tempdir().unwrap();
    let engine = common::demo_engine(dir.path(), 30_000, 3).await;
    drop(engine);
    let now = chrono::DateTime::parse_from_rfc3339(NOW)
        .unwrap()
        .timestamp_millis();
    let n = node(dir.path(), Clock::pinned(now)).await;
    (dir, n)
}

#[tokio::test]
async fn every_field_is_checked_with_the_documented_400() {
    let (_dir, n) = demo().await;
    let (_, m) = n
        .call(
            "POST",
            "/api/interaction-metrics",
            "al-admin-token",
            Some(metric_body()),
        )
        .await;
    let metric_id = m["id"].as_str().unwrap().to_string();
    let mut all_time = metric_body();
    all_time.as_object_mut().unwrap().remove("timeWindow");
    let (_, m2) = n
        .call(
            "POST",
            "/api/interaction-metrics",
            "al-admin-token",
            Some(all_time),
        )
        .await;
    let all_time_id = m2["id"].as_str().unwrap().to_string();
    let base = rule_body(&metric_id, "http://127.0.0.1:9/hook", "0s");
    let cases: Vec<(Value, &str)> = vec![
        (json!({"name": ""}), "name"),
        (json!({"name": null}), "name"),
        (json!({"description": 5}), "description"),
        (json!({"enabled": "yes"}), "enabled"),
        (json!({"metricId": "x"}), "metricId"),
        (
            json!({"metricId": uuid::Uuid::new_v4().to_string()}),
            "metricId",
        ),
        (json!({"metricId": null}), "metricId"),
        (
            json!({"metricStore": {"metricKey": "voice_quality_score"}}),
            "metricId",
        ),
        (
            json!({"metricId": null, "skillMetric": {"metricNamespace": "Nope", "name": "X", "lookBack": "1h"}}),
            "skillMetric.metricNamespace",
        ),
        (
            json!({"metricId": null, "skillMetric": {"metricNamespace": "Alexa.Custom", "name": "FAILED_UTTERANCES"}}),
            "skillMetric.lookBack",
        ),
        (
            json!({"metricId": null, "metricStore": {"metricKey": "no_such_metric"}}),
            "metricStore.metricKey",
        ),
        (
            json!({"metricId": null, "metricStore": {"metricKey": "voice_quality_score", "lookBack": "1y"}}),
            "metricStore.lookBack",
        ),
        (json!({"condition": null}), "condition"),
        (json!({"condition": {"type": "spike"}}), "condition.type"),
        (
            json!({"condition": {"operator": "bigger", "threshold": 1}}),
            "condition.operator",
        ),
        (
            json!({"condition": {"operator": "gt", "threshold": "3"}}),
            "condition.threshold",
        ),
        (
            json!({"condition": {"operator": "gt", "threshold": 3, "severity": 1}}),
            "condition.severity",
        ),
        (
            json!({"condition": {"type": "anomaly", "k": 0}}),
            "condition.k",
        ),
        (
            json!({"condition": {"type": "anomaly", "weeks": 1}}),
            "condition.weeks",
        ),
        (
            json!({"condition": {"type": "anomaly", "direction": "up"}}),
            "condition.direction",
        ),
        (
            json!({"metricId": all_time_id, "condition": {"type": "change", "operator": "gt", "threshold": 200}}),
            "condition.type",
        ),
        (json!({"evaluationInterval": "0s"}), "evaluationInterval"),
        (json!({"evaluationInterval": "500ms"}), "evaluationInterval"),
        (json!({"for": "-1m"}), "for"),
        (json!({"for": "8d"}), "for"),
        (json!({"keepFiringFor": "soon"}), "keepFiringFor"),
        (json!({"noDataState": "maybe"}), "noDataState"),
        (json!({"errorState": "explode"}), "errorState"),
        (json!({"channels": "x"}), "channels"),
        (
            json!({"channels": [{"type": "email", "url": "http://127.0.0.1:9/", "secret": SECRET}]}),
            "channels[0].type",
        ),
        (
            json!({"channels": [{"type": "webhook", "url": "ftp://127.0.0.1/", "secret": SECRET}]}),
            "channels[0].url",
        ),
        (
            json!({"channels": [{"type": "webhook", "url": "http://127.0.0.1:9/", "secret": "short"}]}),
            "channels[0].secret",
        ),
        (
            json!({"channels": [{"type": "webhook", "url": "http://127.0.0.1:9/"}]}),
            "channels[0].secret",
        ),
        (json!({"silencedUntil": "tomorrow"}), "silencedUntil"),
        (json!({"severity": "high"}), "severity"),
    ];
    for (patch, field) in &cases {
        let mut body = base.clone();
        for (k, v) in patch.as_object().unwrap() {
            body[k] = v.clone();
        }
        let (s, e) = n
            .call("POST", "/api/metric-alerts", "al-admin-token", Some(body))
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{patch}: {e}");
        assert_eq!(e["code"], "VALIDATION_ERROR", "{patch}: {e}");
        assert_eq!(e["field"], *field, "{patch}: {e}");
        assert!(e["message"].as_str().unwrap().contains(field), "{e}");
        assert!(
            e["errors"]
                .as_array()
                .unwrap()
                .iter()
                .any(|x| x["field"] == *field),
            "{e}"
        );
    }
    let (s, e) = n
        .call(
            "POST",
            "/api/metric-alerts",
            "al-admin-token",
            Some(json!([1])),
        )
        .await;
    assert_eq!(
        (s, e["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("INVALID_REQUEST_BODY"))
    );
    let (_, list) = n
        .call("GET", "/api/metric-alerts", "al-admin-token", None)
        .await;
    assert_eq!(list, json!([]), "nothing was stored");

    // The same checks on PUT, and the stored rule stays as it was.
    let (s, rule) = n
        .call(
            "POST",
            "/api/metric-alerts",
            "al-admin-token",
            Some(base.clone()),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{rule}");
    let path = format!("/api/metric-alerts/{}", rule["id"].as_str().unwrap());
    for (patch, field) in &cases {
        let mut body = base.clone();
        for (k, v) in patch.as_object().unwrap() {
            body[k] = v.clone();
        }
        let (s, e) = n.call("PUT", &path, "al-admin-token", Some(body)).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "PUT {patch}: {e}");
        assert_eq!(e["field"], *field, "PUT {patch}: {e}");
    }
    let (_, after) = n.call("GET", &path, "al-admin-token", None).await;
    assert_eq!(after["updatedAt"], rule["updatedAt"], "{after}");

    // History paging parameters.
    for (query, code) in [
        ("maxResults=0", "INVALID_MAX_RESULTS"),
        ("maxResults=101", "INVALID_MAX_RESULTS"),
        ("maxResults=ten", "INVALID_MAX_RESULTS"),
        ("nextToken=..%2F..%2Fsecret", "INVALID_NEXT_TOKEN"),
        ("nextToken=not-a-token", "INVALID_NEXT_TOKEN"),
    ] {
        let (s, e) = n
            .call(
                "GET",
                &format!("{path}/history?{query}"),
                "al-admin-token",
                None,
            )
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{query}: {e}");
        assert_eq!(e["code"], code, "{query}: {e}");
    }
}

#[tokio::test]
async fn webhooks_outside_the_allow_list_are_refused_at_create() {
    let (_dir, n) = demo().await;
    let (_, m) = n
        .call(
            "POST",
            "/api/interaction-metrics",
            "al-admin-token",
            Some(metric_body()),
        )
        .await;
    let metric_id = m["id"].as_str().unwrap();
    for url in [
        "http://10.0.0.1/hook",
        "http://192.168.1.20:8080/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::ffff:10.0.0.1]/hook",
        "http://[fd00::1]/hook",
    ] {
        let (s, e) = n
            .call(
                "POST",
                "/api/metric-alerts",
                "al-admin-token",
                Some(rule_body(metric_id, url, "0s")),
            )
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{url}: {e}");
        assert_eq!(e["field"], "channels[0].url", "{e}");
    }
    let (s, r) = n
        .call(
            "POST",
            "/api/metric-alerts",
            "al-admin-token",
            Some(rule_body(metric_id, "http://127.0.0.1:9/hook", "0s")),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    let id = r["id"].as_str().unwrap();
    let (s, e) = n
        .call(
            "PUT",
            &format!("/api/metric-alerts/{id}"),
            "al-admin-token",
            Some(json!({"channels": [{"type": "webhook", "url": "http://10.1.2.3/", "secret": SECRET}]})),
        )
        .await;
    assert_eq!(
        (s, e["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("channels[0].url"))
    );
}

#[tokio::test]
async fn viewers_and_other_workspaces_cannot_change_or_preview() {
    let (_dir, n) = demo().await;
    let (_, m) = n
        .call(
            "POST",
            "/api/interaction-metrics",
            "al-admin-token",
            Some(metric_body()),
        )
        .await;
    let body = rule_body(m["id"].as_str().unwrap(), "http://127.0.0.1:9/hook", "0s");
    let (s, _) = n
        .call(
            "POST",
            "/api/metric-alerts",
            "al-viewer-token",
            Some(body.clone()),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, r) = n
        .call(
            "POST",
            "/api/metric-alerts",
            "al-admin-token",
            Some(body.clone()),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let id = r["id"].as_str().unwrap();
    let path = format!("/api/metric-alerts/{id}");
    let (s, _) = n
        .call(
            "PUT",
            &path,
            "al-viewer-token",
            Some(json!({"enabled": false})),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = n.call("DELETE", &path, "al-viewer-token", None).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = n.call("GET", &path, "al-viewer-token", None).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = n
        .call("POST", &format!("{path}/evaluate"), "al-viewer-token", None)
        .await;
    assert_eq!(
        s,
        StatusCode::OK,
        "a viewer previews its own workspace's rules"
    );
    // A token of another workspace, naming this one, or its own.
    for (method, uri, b) in [
        ("POST", "/api/metric-alerts".to_string(), Some(body.clone())),
        ("PUT", path.clone(), Some(json!({"enabled": false}))),
        ("POST", format!("{path}/evaluate"), None),
        ("GET", format!("{path}/history"), None),
    ] {
        let (s, _) = call_ws(&n.app, method, &uri, "al-acme-admin", Some(WS), b.clone()).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{method} {uri}");
        let (s, _) = call_ws(&n.app, method, &uri, "al-viewer-token", Some("ws-acme"), b).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{method} {uri}");
    }
    // In its own workspace, ws-acme does not see ws-demo's rule.
    let (s, _) = n
        .call("POST", &format!("{path}/evaluate"), "al-acme-admin", None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, e) = n
        .call("GET", "/api/metric-alerts", "al-root-token", None)
        .await;
    assert_eq!(
        (s, e["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("MISSING_WORKSPACE"))
    );
    let (s, _) = n
        .call(
            "GET",
            "/api/metric-alerts/not-a-uuid",
            "al-admin-token",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, e) = n.call("DELETE", &path, "al-admin-token", None).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{e}");
    let (s, e) = n.call("GET", &path, "al-admin-token", None).await;
    assert_eq!(
        (s, e["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("ALERT_NOT_FOUND"))
    );
}

#[tokio::test]
async fn preview_evaluates_every_source_and_changes_nothing() {
    let (_dir, n) = demo().await;
    let url = "http://127.0.0.1:9/hook";
    let (_, m) = n
        .call(
            "POST",
            "/api/interaction-metrics",
            "al-admin-token",
            Some(json!({"name": "By country", "metricTypeId": "COUNT", "timeWindow": "1d", "groupBy": ["interaction.country"]})),
        )
        .await;
    let metric_id = m["id"].as_str().unwrap();
    let (_, calc) = n
        .call(
            "POST",
            &format!("/api/interaction-metrics/{metric_id}/calculate"),
            "al-admin-token",
            None,
        )
        .await;
    let groups = calc["results"].as_array().unwrap().len();
    assert!(groups > 1, "{calc}");
    let mut body = rule_body(metric_id, url, "5m");
    body["condition"] = json!({"operator": "gte", "threshold": 0});
    let (s, r) = n
        .call("POST", "/api/metric-alerts", "al-admin-token", Some(body))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    let id = r["id"].as_str().unwrap();
    let (s, p) = n
        .call(
            "POST",
            &format!("/api/metric-alerts/{id}/evaluate"),
            "al-viewer-token",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{p}");
    let pg = p["groups"].as_array().unwrap();
    assert_eq!(pg.len(), groups, "one entry per group: {p}");
    for g in pg {
        assert_eq!(g["state"], "ok");
        assert_eq!(g["nextState"], "pending", "{g}");
        assert!(
            g["dimensions"]["interaction_country"].is_string()
                || g["dimensions"]["interaction_country"].is_null()
        );
        assert!(g["value"].as_f64().unwrap() >= 1.0);
    }
    let (_, got) = n
        .call(
            "GET",
            &format!("/api/metric-alerts/{id}"),
            "al-admin-token",
            None,
        )
        .await;
    assert_eq!(
        got["status"]["lastEvaluatedAt"],
        Value::Null,
        "the preview stored nothing"
    );
    assert_eq!(got["status"]["groups"], json!([]));
    let (_, h) = n
        .call(
            "GET",
            &format!("/api/metric-alerts/{id}/history"),
            "al-admin-token",
            None,
        )
        .await;
    assert_eq!(h["transitions"], json!([]));

    // A skill's failed utterances per intent, against the previous window.
    let skill = "amzn1.ask.skill.demo-trivia";
    let body = json!({
        "name": "Failed utterances tripled",
        "skillMetric": {"metricNamespace": "Alexa.Custom", "name": "FAILED_UTTERANCES", "stat": "count", "groupBy": "intent", "lookBack": "1d"},
        "condition": {"type": "change", "operator": "gte", "threshold": 200},
        "channels": [{"type": "webhook", "url": url, "secret": SECRET}]
    });
    let (s, r) = call_ws(
        &n.app,
        "POST",
        "/api/metric-alerts",
        "al-root-token",
        Some(skill),
        Some(body),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    let (s, p) = call_ws(
        &n.app,
        "POST",
        &format!("/api/metric-alerts/{}/evaluate", r["id"].as_str().unwrap()),
        "al-root-token",
        Some(skill),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{p}");
    let pg = p["groups"].as_array().unwrap();
    assert!(!pg.is_empty(), "{p}");
    for g in pg {
        let (cur, prev) = (g["current"].as_f64().unwrap(), g["previous"].as_f64());
        if let Some(prev) = prev.filter(|p| *p > 0.0) {
            let pct = (cur - prev) / prev * 100.0;
            assert!((g["value"].as_f64().unwrap() - pct).abs() < 1e-9, "{g}");
        }
        let intent = &g["dimensions"]["intent"];
        assert!(intent.is_string() || intent.is_null(), "{g}");
    }

    // A Metric Store call-quality score, against the same hours of past weeks.
    let body = json!({
        "name": "Call quality anomaly",
        "metricStore": {"metricKey": "voice_quality_score", "lookBack": "1h"},
        "condition": {"type": "anomaly", "k": 3, "weeks": 2},
        "noDataState": "ok",
    });
    let (s, r) = n
        .call("POST", "/api/metric-alerts", "al-admin-token", Some(body))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    assert_eq!(r["channels"], json!([]));
    let (s, p) = n
        .call(
            "POST",
            &format!("/api/metric-alerts/{}/evaluate", r["id"].as_str().unwrap()),
            "al-admin-token",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{p}");
    assert_eq!(p["error"], Value::Null, "{p}");
    assert_eq!(p["groups"].as_array().unwrap().len(), 1, "{p}");
}
