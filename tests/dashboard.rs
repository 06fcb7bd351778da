//! The dashboard end to end in headless Chromium: the real server on
//! 127.0.0.1 over generated demo data with a pinned clock; the page is
//! loaded, a token typed in, and every chart must render the number of
//! points the API answers, with a CSV download byte-equal to the API's
//! `Accept: text/csv` answer for the same request. A screenshot is saved
//! under the cargo target directory (`tmp/artifacts/dashboard.png`).

mod common;

use std::time::{Duration, Instant};

use common::webdriver::Browser;
use serde_json::{Value, json};

const SKILL: &str = "amzn1.ask.skill.demo-trivia";
const TOKEN: &str = "dashboard-secret-1";
const ADMIN: &str = "dashboard-admin-1";
const CHARTS: [&str; 9] = [
    "customers",
    "sessions",
    "utterances",
    "failed",
    "latency",
    "retention",
    "breakdown",
    "intents",
    "paths",
];

/// Asks the API what the chart asked, as JSON and as CSV.
async fn replay(http: &reqwest::Client, base: &str, request: &Value, accept: &str) -> String {
    let url = format!("{base}{}", request["path"].as_str().unwrap());
    let req = match request["method"].as_str().unwrap() {
        "POST" => http.post(&url).json(&request["body"]),
        _ => http.get(&url),
    };
    let resp = req
        .bearer_auth(TOKEN)
        .header("accept", accept)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{url}: {}", resp.status());
    resp.text().await.unwrap()
}

/// The points an API answer holds, counted as the chart should draw them.
fn points(chart: &str, answer: &Value) -> usize {
    match chart {
        "retention" => answer["cohorts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["retention"].as_array().unwrap().len())
            .sum(),
        "paths" => {
            answer["next"]["items"].as_array().unwrap().len()
                + answer["paths"]["items"].as_array().unwrap().len()
        }
        "breakdown" => 3,
        "intents" => answer["intents"].as_array().unwrap().len(),
        _ => answer["results"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| r["data"].as_array().unwrap())
            .map(|d| d["values"].as_array().unwrap().len())
            .sum(),
    }
}

/// What the page says about itself and what it logged, for failure
/// messages.
async fn diagnose(browser: &Browser) -> String {
    let charts = charts(browser).await;
    let page = browser
        .execute(
            "return {state: document.body.dataset.state, readyState: document.readyState,
                     url: location.href, status: document.getElementById('status').textContent,
                     scripts: [...document.scripts].map(s => s.src)};",
            vec![],
        )
        .await;
    let console = browser.console().await;
    format!("page {page}; console {console:#}; charts {charts:#}")
}

/// Polls the page's `data-state` until it is `want`, for at most `within`.
async fn reaches(browser: &Browser, want: &str, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        let state = browser
            .execute("return document.body.dataset.state;", vec![])
            .await;
        if state == want {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Opens the page, fills the form in and submits it, then waits for every
/// chart. A page whose script never started, or whose form did not submit,
/// is loaded again (at most three times, each failure printed with what
/// the page logged): that is the browser's trouble on a loaded machine,
/// not the dashboard's. Once submitted, the charts get one long deadline.
async fn fill_and_show(browser: &Browser, server: &str, token: &str) {
    for attempt in 1..=3 {
        browser.goto(&format!("{server}/")).await;
        // The page's script has run and listens for the form.
        if !reaches(browser, "idle", Duration::from_secs(30)).await {
            eprintln!(
                "attempt {attempt}: the page's script did not start: {}",
                diagnose(browser).await
            );
            continue;
        }
        let submitted = browser
            .execute(
                "const [token, skill, start, end] = arguments;
                 document.getElementById('token').value = token;
                 document.getElementById('skill').value = skill;
                 document.getElementById('start').value = start;
                 document.getElementById('end').value = end;
                 const form = document.getElementById('controls');
                 const invalid = [...form.elements]
                   .filter(e => e.willValidate && !e.checkValidity())
                   .map(e => e.id + ': ' + e.validationMessage);
                 if (invalid.length) return invalid;
                 form.requestSubmit();
                 return document.body.dataset.state;",
                vec![
                    json!(token),
                    json!(SKILL),
                    json!("2025-12-12"),
                    json!("2026-01-11"),
                ],
            )
            .await;
        // Submitting sets the state at once.
        if submitted != "loading" {
            eprintln!(
                "attempt {attempt}: the form did not submit ({submitted}): {}",
                diagnose(browser).await
            );
            continue;
        }
        if reaches(browser, "ready", Duration::from_secs(180)).await {
            return;
        }
        panic!("the charts did not finish: {}", diagnose(browser).await);
    }
    panic!("the page could not be used: {}", diagnose(browser).await);
}

/// What each chart container says about itself.
async fn charts(browser: &Browser) -> Value {
    browser
        .execute(
            "const out = {};
             for (const el of document.querySelectorAll('[data-chart]')) {
               const link = el.querySelector('a.csv');
               out[el.dataset.chart] = {
                 state: el.dataset.state || null,
                 points: el.dataset.points ? Number(el.dataset.points) : null,
                 request: el.dataset.request ? JSON.parse(el.dataset.request) : null,
                 canvas: el.querySelector('canvas') !== null,
                 cells: el.querySelectorAll('td[data-value], .bar[data-value]').length,
                 csv: link ? link.href : null,
                 error: (el.querySelector('.error') || {}).textContent || null,
               };
             }
             return out;",
            vec![],
        )
        .await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_draws_every_chart_and_its_csv_matches_the_api() {
    let dir = tempfile::tempdir().unwrap();
    // 30 days ending 2026-01-10, with their rollups built before the
    // server starts (else its first background build races the page's
    // requests, and an answer from raw events and its CSV replay from
    // rollups differ within the percentiles' bound).
    let engine = common::demo_engine(dir.path(), 150_000, 30).await;
    common::build_rollups(&engine).await;
    drop(engine);
    let server = common::serve(
        dir.path().to_str().unwrap(),
        &format!("{TOKEN}:viewer:{SKILL},{ADMIN}:admin:{SKILL}"),
        "2026-01-11T00:00:00Z",
    );
    // One alert rule on the skill's failed utterances, listed with its state.
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let rule = http
        .post(format!("{}/api/metric-alerts", server.base))
        .bearer_auth(ADMIN)
        .json(&json!({
            "name": "Failed utterances",
            "skillMetric": {"metricNamespace": "Alexa.Custom", "name": "FAILED_UTTERANCES", "lookBack": "1d"},
            "condition": {"operator": "gt", "threshold": 1000000},
            "evaluationInterval": "1s"
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(rule.status(), 201);
    let profile = tempfile::tempdir().unwrap();
    let browser = Browser::start(profile.path()).await;
    fill_and_show(&browser, &server.base, TOKEN).await;
    let found = charts(&browser).await;

    let artifacts = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let shot = artifacts.join("dashboard.png");
    std::fs::write(&shot, browser.screenshot().await).unwrap();
    eprintln!("screenshot: {}", shot.display());

    let alerts = browser
        .execute(
            "const el = document.getElementById('alerts');
             const row = el.querySelector('tr[data-rule]');
             return {state: el.dataset.state, rules: el.dataset.rules,
                     ruleState: row ? row.dataset.ruleState : null};",
            vec![],
        )
        .await;
    assert_eq!(alerts["state"], "ready", "{alerts}");
    assert_eq!(alerts["rules"], "1", "{alerts}");
    assert_eq!(alerts["ruleState"], "ok", "{alerts}");
    for chart in CHARTS {
        let c = &found[chart];
        assert_eq!(c["state"], "ready", "{chart}: {c}");
        let request = &c["request"];
        let answer: Value =
            serde_json::from_str(&replay(&http, &server.base, request, "application/json").await)
                .unwrap();
        let want = points(chart, &answer);
        assert!(want > 0, "{chart}: the API has no data: {answer}");
        assert_eq!(c["points"], json!(want), "{chart}: points drawn");
        match chart {
            "retention" | "failed" | "breakdown" | "intents" => {
                assert_eq!(c["cells"], json!(want), "{chart}: cells")
            }
            "paths" => assert_eq!(
                c["cells"],
                json!(answer["next"]["items"].as_array().unwrap().len()),
                "paths: bars"
            ),
            _ => assert_eq!(c["canvas"], true, "{chart}: no chart drawn"),
        }
        // The CSV the page offers is what the API answers in CSV.
        let href = c["csv"]
            .as_str()
            .unwrap_or_else(|| panic!("{chart}: no CSV link"));
        let downloaded = browser
            .execute_async(
                "const [href, done] = arguments;
                 fetch(href).then(r => r.text()).then(done, e => done('ERROR ' + e));",
                vec![json!(href)],
            )
            .await;
        let api_csv = replay(&http, &server.base, request, "text/csv").await;
        assert_eq!(downloaded.as_str().unwrap(), api_csv, "{chart}: CSV");
        assert!(api_csv.lines().count() > 1, "{chart}: {api_csv}");
    }
    // Every day of the 30-day range, for each series of the daily charts.
    assert_eq!(found["customers"]["points"], 30);
    assert_eq!(found["sessions"]["points"], 4 * 30);
    assert_eq!(found["utterances"]["points"], 3 * 30);

    // A wrong token: every chart says so instead of drawing.
    fill_and_show(&browser, &server.base, "not-the-token-1").await;
    let found = charts(&browser).await;
    for chart in CHARTS {
        let c = &found[chart];
        assert_eq!(c["state"], "error", "{chart}: {c}");
        assert!(
            c["error"].as_str().is_some_and(|e| e.contains("401")),
            "{chart}: {c}"
        );
        assert_eq!(c["csv"], Value::Null, "{chart}");
    }
    browser.quit().await;
}
