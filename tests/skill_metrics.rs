//! Every metric of every namespace of the skill Metrics API, through the
//! router, against an oracle written apart from `queries/`: a loop over the
//! event rows that computes each documented metric by its name, as
//! `queries/README.md` defines it in words. Checked on the hand-made
//! fixture `fixtures/events/skill_metrics.jsonl` (with a few values worked
//! out by hand) and on generated demo data, for several periods, every
//! groupBy option and a dimension of each metric.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use metricstore::api::auth::Auth;
use metricstore::api::token::Signer;
use metricstore::api::{AppState, Clock, router};
use metricstore::engine::Engine;
use metricstore::storage::events::EventRow;
use serde_json::{Value, json};
use tower::ServiceExt;

const ADMIN: &str = "admin-secret";

fn app(engine: Engine) -> axum::Router {
    let spec = format!("{ADMIN}:admin:*");
    let auth = Auth::parse(&spec, 0, 0).unwrap();
    router(AppState::new(
        engine,
        auth,
        Clock::pinned(1_767_600_000_000),
        Signer::from_secret(&spec),
    ))
}

async fn call(
    app: &axum::Router,
    method: &str,
    uri: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {ADMIN}"))
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
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

// ---- the oracle ----------------------------------------------------------

fn attr(r: &EventRow, key: &str) -> Option<Value> {
    let a: Value = serde_json::from_str(r.attributes.as_deref()?).ok()?;
    a.get(key).cloned().filter(|v| !v.is_null())
}

fn attr_text(r: &EventRow, key: &str) -> Option<String> {
    attr(r, key).map(|v| match v {
        Value::String(s) => s,
        other => other.to_string(),
    })
}

fn attr_f(r: &EventRow, key: &str) -> Option<f64> {
    attr(r, key).and_then(|v| v.as_f64())
}

fn attr_true(r: &EventRow, key: &str) -> bool {
    attr(r, key) == Some(Value::Bool(true))
}

fn is(r: &EventRow, t: &str) -> bool {
    r.event_type == t
}

fn outcome(r: &EventRow, o: &str) -> bool {
    r.outcome.as_deref() == Some(o)
}

fn count(rows: &[&EventRow], keep: impl Fn(&EventRow) -> bool) -> f64 {
    rows.iter().filter(|r| keep(r)).count() as f64
}

fn distinct(
    rows: &[&EventRow],
    keep: impl Fn(&EventRow) -> bool,
    key: impl Fn(&EventRow) -> Option<String>,
) -> f64 {
    rows.iter()
        .filter(|r| keep(r))
        .filter_map(|r| key(r))
        .collect::<BTreeSet<_>>()
        .len() as f64
}

fn users(rows: &[&EventRow], keep: impl Fn(&EventRow) -> bool) -> f64 {
    distinct(rows, keep, |r| r.user_id.clone())
}

fn div(n: f64, d: f64) -> Option<f64> {
    (d != 0.0).then(|| n / d)
}

fn mean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// The continuous quantile with linear interpolation (type 7).
fn quantile(mut v: Vec<f64>, q: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let h = (v.len() - 1) as f64 * q;
    let (lo, hi) = (h.floor() as usize, h.ceil() as usize);
    Some(v[lo] + (v[hi] - v[lo]) * (h - lo as f64))
}

fn stat_of(values: Vec<f64>, stat: &str) -> Option<f64> {
    match stat {
        "avg" => mean(&values),
        "count" => Some(values.len() as f64),
        p => quantile(values, p[1..].parse::<f64>().unwrap() / 100.0),
    }
}

const IN_ALEXA_APP: [&str; 2] = ["alexa_app", "alexa_app_to_app"];
const IN_OWN_APP: [&str; 2] = ["app_to_app", "lwa_fallback"];

fn flow_in(r: &EventRow, flows: &[&str]) -> bool {
    attr_text(r, "linking_flow").is_some_and(|f| flows.contains(&f.as_str()))
}

fn status(r: &EventRow, s: &str) -> bool {
    attr_text(r, "Alexa.AccountActivationEvents.Status").as_deref() == Some(s)
}

fn quality(r: &EventRow) -> bool {
    is(r, "skill_quality.turn") && attr_true(r, "evaluated")
}

fn defect(r: &EventRow, d: &str) -> bool {
    quality(r) && attr_text(r, "defect").as_deref() == Some(d)
}

fn any_defect(r: &EventRow) -> bool {
    quality(r) && attr_text(r, "defect").is_some()
}

fn invoked(r: &EventRow, kind: &str) -> bool {
    is(r, "session.started") && attr_text(r, "invocation_type").as_deref() == Some(kind)
}

/// The value of a metric over the rows of one bucket and group, and
/// whether an empty bucket reads 0 (counts) or is left out.
fn metric(ns: &str, name: &str, stat: &str, rows: &[&EventRow]) -> (Option<f64>, bool) {
    let c = |v: f64| (Some(v), true);
    let r = |v: Option<f64>| (v, false);
    let utt = |r: &EventRow| is(r, "utterance");
    let started = |r: &EventRow| is(r, "session.started");
    let ended = |r: &EventRow| is(r, "session.ended");
    match (ns, name) {
        ("Alexa.Custom", "CUSTOMERS") => c(users(rows, utt)),
        ("Alexa.Custom", "SUCCESSFUL_SESSIONS") => c(count(rows, |r| {
            ended(r) && (outcome(r, "user_ended") || outcome(r, "skill_ended"))
        })),
        ("Alexa.Custom", "ACTIVE_SESSIONS") => c(count(rows, started)),
        ("Alexa.Custom", "ACTIVE_SESSIONS_PER_CUSTOMER") => {
            r(div(count(rows, started), users(rows, started)))
        }
        ("Alexa.Custom", "ENDED_SESSIONS") => c(count(rows, ended)),
        ("Alexa.Custom", "USER_ENDED_SESSIONS") => {
            c(count(rows, |r| ended(r) && outcome(r, "user_ended")))
        }
        ("Alexa.Custom", "SKILL_ENDED_SESSIONS") => {
            c(count(rows, |r| ended(r) && outcome(r, "skill_ended")))
        }
        ("Alexa.Custom", "DIFF_ACTIVE_SESSIONS_ENDED_SESSIONS") => {
            c(count(rows, started) - count(rows, ended))
        }
        ("Alexa.Custom", "UTTERANCES") => c(count(rows, utt)),
        ("Alexa.Custom", "SUCCESSFUL_UTTERANCES") => {
            c(count(rows, |r| utt(r) && outcome(r, "success")))
        }
        ("Alexa.Custom", "UTTERANCES_PER_CUSTOMER") => r(div(count(rows, utt), users(rows, utt))),
        ("Alexa.Custom", "UTTERANCES_PER_ACTIVE_SESSION") => {
            r(div(count(rows, utt), count(rows, started)))
        }
        ("Alexa.Custom", "FAILED_UTTERANCES") => c(count(rows, |r| utt(r) && outcome(r, "failed"))),
        ("Alexa.Custom", "FAILED_UTTERANCES_SESSION") => c(distinct(
            rows,
            |r| utt(r) && outcome(r, "failed"),
            |r| r.session_id.clone(),
        )),
        ("Alexa.Custom", "USER_RESPONDED") => {
            c(count(rows, |r| ended(r) && !outcome(r, "no_response")))
        }
        ("Alexa.Custom", "USER_DID_NOT_RESPOND") => {
            c(count(rows, |r| ended(r) && outcome(r, "no_response")))
        }
        ("Alexa.Custom", "INTENT_CLASSIFICATION") => {
            c(count(rows, |r| utt(r) && r.intent.is_some()))
        }
        ("Alexa.Custom", "SKILL_LATENCY") => {
            let v: Vec<f64> = rows
                .iter()
                .filter(|r| utt(r))
                .filter_map(|r| r.latency_ms)
                .collect();
            if stat == "count" {
                c(v.len() as f64)
            } else {
                r(stat_of(v, stat))
            }
        }

        ("Alexa.SmartHome", n) => {
            let sh = |r: &EventRow| is(r, "smarthome.utterance");
            match n {
                "CUSTOMERS" => c(users(rows, sh)),
                "UTTERANCES" => c(count(rows, sh)),
                "UTTERANCES_PER_CUSTOMER" => r(div(count(rows, sh), users(rows, sh))),
                _ => unreachable!("{n}"),
            }
        }

        ("Alexa.AccountActivationEvents", n) => {
            let al = |r: &EventRow| is(r, "account.linking");
            let alexa = |r: &EventRow| al(r) && flow_in(r, &IN_ALEXA_APP);
            let own = |r: &EventRow| al(r) && flow_in(r, &IN_OWN_APP);
            match n {
                "USERS" => c(users(rows, al)),
                "EVENTS" => c(count(rows, al)),
                "ALEXA_APP_USERS" => c(users(rows, alexa)),
                "ALEXA_APP_EVENTS" => c(count(rows, alexa)),
                "ALEXA_APP_INITIATIONS_PER_USER" => r(div(
                    count(rows, |r| alexa(r) && status(r, "INITIATED")),
                    users(rows, |r| alexa(r) && status(r, "INITIATED")),
                )),
                "APP_TO_APP_USERS" => c(users(rows, own)),
                "APP_TO_APP_EVENTS" => c(count(rows, own)),
                "APP_TO_APP_COMPLETION_RATE" => r(div(
                    count(rows, |r| own(r) && status(r, "COMPLETED")),
                    count(rows, |r| own(r) && status(r, "INITIATED")),
                )
                .map(|x| 100.0 * x)),
                "APP_TO_APP_INITIATIONS_PER_USER" => r(div(
                    count(rows, |r| own(r) && status(r, "INITIATED")),
                    users(rows, |r| own(r) && status(r, "INITIATED")),
                )),
                "TOTAL_COMPLETION_RATE" => r(div(
                    count(rows, |r| al(r) && status(r, "COMPLETED")),
                    count(rows, |r| al(r) && status(r, "INITIATED")),
                )
                .map(|x| 100.0 * x)),
                _ => unreachable!("{n}"),
            }
        }

        ("Alexa.Music", n) => {
            let req = |r: &EventRow| is(r, "music.request");
            let pq = |r: &EventRow| is(r, "music.play_queue");
            let played: f64 = rows
                .iter()
                .filter(|r| pq(r))
                .filter_map(|r| attr_f(r, "duration_s"))
                .sum();
            let any_played = rows
                .iter()
                .any(|r| pq(r) && attr_f(r, "duration_s").is_some());
            match n {
                "CUSTOMERS" => c(users(rows, req)),
                "FRICTION_RATE" => r(div(
                    count(rows, |r| req(r) && outcome(r, "friction")),
                    count(rows, req),
                )
                .map(|x| 100.0 * x)),
                "TOP_MEDIA_CONTENT" | "PLAY_QUEUES" => c(count(rows, pq)),
                "SUCCESSFUL_PLAYBACK_RATE" => r(div(
                    count(rows, |r| pq(r) && outcome(r, "success")),
                    count(rows, pq),
                )
                .map(|x| 100.0 * x)),
                "PLAY_QUEUE_DURATION" => (any_played.then_some(played), true),
                "AVERAGE_PLAY_QUEUE_DURATION" => r(mean(
                    &rows
                        .iter()
                        .filter(|r| pq(r))
                        .filter_map(|r| attr_f(r, "duration_s"))
                        .collect::<Vec<_>>(),
                )),
                "AVERAGE_PLAY_QUEUES_PER_CUSTOMER" => r(div(count(rows, pq), users(rows, req))),
                "AVERAGE_PLAY_QUEUE_DURATION_PER_CUSTOMER" => r(any_played
                    .then_some(played)
                    .and_then(|p| div(p, users(rows, req)))),
                _ => unreachable!("{n}"),
            }
        }

        ("Alexa.SkillEnablementEvents", "USERS") => c(users(rows, |r| is(r, "skill.enabled"))),

        ("Alexa.EstimatedTurnError", n) => {
            let te = |r: &EventRow| is(r, "turn_error.evaluation");
            match n {
                "PREDICTED_UTTERANCES" => c(count(rows, |r| {
                    te(r)
                        && matches!(
                            attr_text(r, "Alexa.EstimatedTurnError.PredictionOutcome").as_deref(),
                            Some("SUCCESS" | "FAILURE")
                        )
                })),
                "EVALUATED_UTTERANCES" => c(count(rows, te)),
                "FUD_FAILURE_PERCENTILES" => {
                    let v: Vec<f64> = rows
                        .iter()
                        .filter(|r| te(r) && attr_true(r, "frequent_utterance"))
                        .filter_map(|r| attr_f(r, "failure_probability"))
                        .collect();
                    r(stat_of(v, stat))
                }
                "FAILURE_PREDICTION_OFFSET" => {
                    let p: Vec<f64> = rows
                        .iter()
                        .filter(|r| te(r))
                        .filter_map(|r| attr_f(r, "failure_probability"))
                        .collect();
                    let b: Vec<f64> = rows
                        .iter()
                        .filter(|r| te(r))
                        .filter_map(|r| attr_f(r, "baseline_failure_probability"))
                        .collect();
                    r(mean(&p).zip(mean(&b)).map(|(p, b)| p - b))
                }
                _ => unreachable!("{n}"),
            }
        }

        ("Alexa.SkillQuality", n) => {
            let sq = |r: &EventRow| is(r, "skill_quality.turn");
            let fud = |r: &EventRow| attr_true(r, "frequent_utterance");
            let evaluated = count(rows, quality);
            let pct = |n: f64| div(n, evaluated).map(|x| 100.0 * x);
            match n {
                "UTTERANCES" => c(count(rows, sq)),
                "DEFECTIVE_UTTERANCES" => c(count(rows, any_defect)),
                "EVALUATED_UTTERANCES" => c(evaluated),
                "DEFECTIVE_BARGE_INS" => c(count(rows, |r| defect(r, "barge_in"))),
                "DEFECTIVE_BARGE_IN_RATE" => r(pct(count(rows, |r| defect(r, "barge_in")))),
                "FUD_DEFECTIVE_BARGE_INS" => c(count(rows, |r| defect(r, "barge_in") && fud(r))),
                "DEFECTIVE_REPHRASE" => c(count(rows, |r| defect(r, "rephrase"))),
                "DEFECTIVE_TERMINATION" => c(count(rows, |r| defect(r, "termination"))),
                "FUD_DEFECTS" => c(count(rows, |r| any_defect(r) && fud(r))),
                "FUD_DEFECTIVE_TERMINATION" => {
                    c(count(rows, |r| defect(r, "termination") && fud(r)))
                }
                "UNHANDLED_REQUEST" => c(count(rows, |r| defect(r, "unhandled"))),
                "FRICTION_RATE_BASELINE_OFFSET" => {
                    let base: Vec<f64> = rows
                        .iter()
                        .filter(|r| quality(r))
                        .filter_map(|r| attr_f(r, "baseline_friction_rate"))
                        .collect();
                    r(pct(count(rows, any_defect))
                        .zip(mean(&base))
                        .map(|(f, b)| f - b))
                }
                "DEFECTIVE_TERMINATION_RATE" => r(pct(count(rows, |r| defect(r, "termination")))),
                "UNHANDLED_REQUEST_RATE" => r(pct(count(rows, |r| defect(r, "unhandled")))),
                _ => unreachable!("{n}"),
            }
        }

        ("Alexa.SkillInvocations", n) => match n {
            "TRAFFIC" => c(count(rows, |r| is(r, "session.started"))),
            "FUD_NAME_FREE_INVOCATIONS" => c(count(rows, |r| {
                invoked(r, "NAME_FREE_INVOCATIONS") && attr_true(r, "frequent_utterance")
            })),
            kind => c(count(rows, |r| invoked(r, kind))),
        },

        ("Alexa.Automation", "AUTOMATION_ORIGINATION") => {
            c(count(rows, |r| is(r, "automation.origination")))
        }
        ("Alexa.Automation", "AUTOMATION_EXECUTION") => {
            c(count(rows, |r| is(r, "automation.execution")))
        }
        (ns, n) => panic!("the oracle does not know {ns}/{n}"),
    }
}

/// What a dimension keeps, as the document names it (`queries/README.md`).
fn dimension_keeps(name: &str, value: &str, r: &EventRow) -> bool {
    match name {
        "Alexa.Stage" => r.stage.as_deref() == Some(value),
        "Alexa.Locale" => r.locale.as_deref() == Some(value),
        "Intent" => r.intent.as_deref() == Some(value),
        "Country" => r.locale.as_deref().and_then(|l| l.split('-').nth(1)) == Some(value),
        key => attr_text(r, key).as_deref() == Some(value),
    }
}

fn group_value(group_by: &str, r: &EventRow) -> Option<String> {
    match group_by {
        "intent" => r.intent.clone(),
        key => attr_text(r, key),
    }
}

/// The documented defaults a metric's query gets unless it names them.
fn defaults(ns: &str, name: &str) -> Vec<(&'static str, &'static str)> {
    match (ns, name) {
        ("Alexa.Custom", "INTENT_CLASSIFICATION") => vec![("Alexa.SluConfidence", "MEDIUM")],
        (
            "Alexa.AccountActivationEvents",
            "USERS" | "EVENTS" | "ALEXA_APP_USERS" | "ALEXA_APP_EVENTS" | "APP_TO_APP_USERS"
            | "APP_TO_APP_EVENTS",
        ) => vec![("Alexa.AccountActivationEvents.Status", "INITIATED")],
        _ => vec![],
    }
}

type Answer = BTreeMap<Option<String>, Vec<(i64, f64)>>;

#[allow(clippy::too_many_arguments)]
fn expected(
    rows: &[EventRow],
    skill: &str,
    ns: &str,
    name: &str,
    stat: &str,
    (start, end): (i64, i64),
    period: &str,
    group_by: Option<&str>,
    dims: &[(String, String)],
) -> Answer {
    let width = match period {
        "BY_15" => Some(900_000),
        "BY_HOUR" => Some(3_600_000),
        "BY_DAY" => Some(86_400_000),
        "BY_WEEK" => Some(7 * 86_400_000),
        _ => None,
    };
    let origin = if period == "BY_WEEK" {
        946_857_600_000
    } else {
        0
    };
    let floor = |t: i64| width.map_or(start, |w| origin + (t - origin).div_euclid(w) * w);
    let buckets: Vec<i64> = match width {
        None => vec![start],
        Some(w) => (0..)
            .map(|i| floor(start) + i * w)
            .take_while(|b| *b < end)
            .collect(),
    };
    let mut dims: Vec<(String, String)> = dims.to_vec();
    for (d, v) in defaults(ns, name) {
        if !dims.iter().any(|(n, _)| n == d) {
            dims.push((d.to_string(), v.to_string()));
        }
    }
    let kept: Vec<&EventRow> = rows
        .iter()
        .filter(|r| r.workspace_id == skill && r.time >= start && r.time < end)
        .filter(|r| dims.iter().all(|(n, v)| dimension_keeps(n, v, r)))
        .collect();
    let mut cells: BTreeMap<Option<String>, BTreeMap<i64, Vec<&EventRow>>> = BTreeMap::new();
    for r in &kept {
        let g = group_by.map(|g| group_value(g, r)).unwrap_or(None);
        cells
            .entry(g)
            .or_default()
            .entry(floor(r.time))
            .or_default()
            .push(r);
    }
    let mut out = Answer::new();
    for (g, by_bucket) in cells {
        let mut points = Vec::new();
        let mut any = false;
        for b in &buckets {
            let rows = by_bucket.get(b).cloned().unwrap_or_default();
            let (v, zero_fill) = metric(ns, name, stat, &rows);
            // A group is in the answer when one of the metric's own events
            // falls in it.
            any |= !rows.is_empty() && (v.is_some() || zero_fill);
            match v {
                Some(v) if !rows.is_empty() => points.push((*b, v)),
                _ if zero_fill => points.push((*b, 0.0)),
                _ => {}
            }
        }
        if any && !points.is_empty() {
            out.insert(g, points);
        }
    }
    out
}

// ---- the comparison --------------------------------------------------------

fn parse(v: &Value) -> Answer {
    let mut out = Answer::new();
    for d in v["data"].as_array().unwrap() {
        // "" is the group of events without the field.
        let g = d
            .get("groupedBy")
            .map(|g| g["groupedByValue"].as_str().unwrap().to_string())
            .filter(|v| !v.is_empty());
        let points = d["timestamps"]
            .as_array()
            .unwrap()
            .iter()
            .zip(d["values"].as_array().unwrap())
            .map(|(t, v)| (t.as_i64().unwrap(), v.as_f64().unwrap()))
            .collect();
        out.insert(g, points);
    }
    out
}

/// Whether two answers agree: the same groups and buckets, values equal up
/// to float rounding. Groups that are all zeros may be left out by the
/// engine (it only sees groups that some event selects), so they are
/// dropped from both sides first.
fn same(mut got: Answer, mut want: Answer) -> Result<(), String> {
    for a in [&mut got, &mut want] {
        a.retain(|_, p| p.iter().any(|(_, v)| *v != 0.0));
    }
    if got.keys().collect::<Vec<_>>() != want.keys().collect::<Vec<_>>() {
        return Err(format!("groups differ:\n got {got:?}\nwant {want:?}"));
    }
    for (g, w) in &want {
        let gp = &got[g];
        if gp.len() != w.len()
            || gp
                .iter()
                .zip(w)
                .any(|(a, b)| a.0 != b.0 || (a.1 - b.1).abs() > 1e-6 * b.1.abs().max(1.0))
        {
            return Err(format!("group {g:?}:\n got {gp:?}\nwant {w:?}"));
        }
    }
    Ok(())
}

/// What [`check_all`] compared.
struct Checked {
    /// Answers compared.
    compared: usize,
    /// Answers whose expected values held a non-zero value.
    nonzero: usize,
    /// Per listed metric (`namespace/NAME`), its answers with a non-zero
    /// expected value: 0 means it was only ever compared as all zeros,
    /// which [`same`] lets pass trivially.
    by_metric: BTreeMap<String, usize>,
}

/// Asks every metric of every namespace, with every stat, every groupBy
/// option and one dimension value found in the data, over `periods`, and
/// compares with the oracle.
async fn check_all(
    app: &axum::Router,
    rows: &[EventRow],
    skill: &str,
    range: (i64, i64),
    periods: &[&str],
) -> Checked {
    let mut compared = 0;
    let mut nonzero = 0;
    let mut by_metric: BTreeMap<String, usize> = BTreeMap::new();
    for ns in metricstore::definition::builtin::namespaces() {
        let (s, list) = call(
            app,
            "GET",
            &format!("/v2/skills/metrics?metricNamespace={}", ns.namespace),
            None,
        )
        .await;
        assert_eq!(s, StatusCode::OK);
        for m in list["metrics"].as_array().unwrap() {
            let name = m["name"].as_str().unwrap();
            let key = format!("{}/{name}", ns.namespace);
            by_metric.insert(key.clone(), 0);
            let stats: Vec<Option<String>> = match m.get("supportedStats") {
                Some(s) => s
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|s| s.as_str().map(str::to_string))
                    .collect(),
                None => vec![None],
            };
            let groups: Vec<Option<String>> = std::iter::once(None)
                .chain(
                    m.get("supportedGroupByOptions")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .map(|g| g.as_str().map(str::to_string)),
                )
                .collect();
            // One dimension: the first listed whose value some row of the
            // skill carries (the most common value).
            let mut dims: Vec<Vec<(String, String)>> = vec![vec![]];
            for d in m["supportedDimensions"].as_array().unwrap() {
                let d = d.as_str().unwrap();
                let mut freq: BTreeMap<String, usize> = BTreeMap::new();
                for r in rows.iter().filter(|r| r.workspace_id == skill) {
                    let v = match d {
                        "Alexa.Stage" => r.stage.clone(),
                        "Alexa.Locale" => r.locale.clone(),
                        "Intent" => r.intent.clone(),
                        "Country" => r
                            .locale
                            .as_deref()
                            .and_then(|l| l.split('-').nth(1))
                            .map(str::to_string),
                        key => attr_text(r, key),
                    };
                    if let Some(v) = v {
                        *freq.entry(v).or_default() += 1;
                    }
                }
                if let Some((v, _)) = freq.into_iter().max_by_key(|(_, n)| *n) {
                    dims.push(vec![(d.to_string(), v)]);
                }
            }
            for period in periods {
                for stat in &stats {
                    for g in &groups {
                        for dim in &dims {
                            // Every combination would be slow; each axis is
                            // covered with the others at their simplest.
                            if g.is_some() && !dim.is_empty() && *period != "SINGLE" {
                                continue;
                            }
                            let mut q = json!({"id": "q", "metricNamespace": ns.namespace, "name": name, "aggregationPeriod": period});
                            if let Some(s) = stat {
                                q["stat"] = json!(s);
                            }
                            if let Some(g) = g {
                                q["groupBy"] = json!(g);
                            }
                            if !dim.is_empty() {
                                q["dimensions"] = json!(
                                    dim.iter()
                                        .map(|(n, v)| json!({"name": n, "value": v}))
                                        .collect::<Vec<_>>()
                                );
                            }
                            let body = json!({"startTime": range.0, "endTime": range.1, "maxResultsPerQuery": 1000, "metricQueries": [q]});
                            let (s, v) = call(
                                app,
                                "POST",
                                &format!("/v2/skills/{skill}/metrics"),
                                Some(body.clone()),
                            )
                            .await;
                            assert_eq!(s, StatusCode::OK, "{body}: {v}");
                            assert!(v.get("paginationContext").is_none(), "{v}");
                            let got = parse(&v["results"][0]);
                            let want = expected(
                                rows,
                                skill,
                                &ns.namespace,
                                name,
                                stat.as_deref().unwrap_or(""),
                                range,
                                period,
                                g.as_deref(),
                                dim,
                            );
                            if want.values().flatten().any(|(_, v)| *v != 0.0) {
                                nonzero += 1;
                                *by_metric.get_mut(&key).unwrap() += 1;
                            }
                            if let Err(e) = same(got, want) {
                                panic!(
                                    "{} {name} {period} stat {stat:?} groupBy {g:?} dims {dim:?}: {e}",
                                    ns.namespace
                                );
                            }
                            compared += 1;
                        }
                    }
                }
            }
        }
    }
    Checked {
        compared,
        nonzero,
        by_metric,
    }
}

#[tokio::test]
async fn every_metric_on_the_hand_made_fixture() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = "fixtures/events/skill_metrics.jsonl";
    let engine = common::fixture_engine(dir.path(), fixture).await;
    let rows = common::read_fixture(fixture);
    let app = app(engine);
    // 2026-01-05 and 2026-01-06, by day, by hour and as one value.
    let range = (1_767_571_200_000, 1_767_744_000_000);
    let Checked {
        compared,
        nonzero,
        by_metric,
    } = check_all(
        &app,
        &rows,
        "skill-m",
        range,
        &["BY_DAY", "BY_HOUR", "SINGLE"],
    )
    .await;
    assert!(compared > 400, "{compared}");
    assert!(
        nonzero * 10 > compared * 7,
        "{nonzero} of {compared} answers are non-zero"
    );
    // No metric passes only because its groups are all zeros (which
    // `same` drops from both sides): each of the 69 documented metrics has
    // an answer with a non-zero expected value on the fixture.
    assert_eq!(by_metric.len(), 69, "{by_metric:?}");
    let all_zero: Vec<&String> = by_metric
        .iter()
        .filter(|(_, n)| **n == 0)
        .map(|(k, _)| k)
        .collect();
    assert!(
        all_zero.is_empty(),
        "compared only as zeros on the fixture: {all_zero:?}"
    );

    // A few values worked out by hand from the fixture.
    let ask = |q: Value| {
        let app = app.clone();
        async move {
            let body = json!({"startTime": "2026-01-05T00:00:00Z", "endTime": "2026-01-07T00:00:00Z", "metricQueries": [q]});
            let (s, v) = call(&app, "POST", "/v2/skills/skill-m/metrics", Some(body)).await;
            assert_eq!(s, StatusCode::OK, "{v}");
            v["results"][0]["data"].clone()
        }
    };
    // Account linking, day 1: u1 initiates and completes in the skill's
    // app, u2 initiates twice in the Alexa app and completes once; day 2:
    // u3 initiates in the skill's app (LWA fallback) and never completes.
    let d = ask(json!({"id": "q", "metricNamespace": "Alexa.AccountActivationEvents", "name": "USERS", "aggregationPeriod": "BY_DAY"})).await;
    assert_eq!(d[0]["values"], json!([2.0, 1.0]));
    assert_eq!(
        d[0]["timestamps"],
        json!([1_767_571_200_000i64, 1_767_657_600_000i64])
    );
    let d = ask(json!({"id": "q", "metricNamespace": "Alexa.AccountActivationEvents", "name": "EVENTS", "aggregationPeriod": "SINGLE",
        "dimensions": [{"name": "Alexa.AccountActivationEvents.Status", "value": "COMPLETED"}]})).await;
    assert_eq!(d[0]["values"], json!([2.0]));
    let d = ask(json!({"id": "q", "metricNamespace": "Alexa.AccountActivationEvents", "name": "TOTAL_COMPLETION_RATE", "aggregationPeriod": "SINGLE"})).await;
    assert_eq!(d[0]["values"], json!([50.0]));
    let d = ask(json!({"id": "q", "metricNamespace": "Alexa.AccountActivationEvents", "name": "APP_TO_APP_COMPLETION_RATE", "aggregationPeriod": "BY_DAY"})).await;
    assert_eq!(d[0]["values"], json!([100.0, 0.0]));
    let d = ask(json!({"id": "q", "metricNamespace": "Alexa.AccountActivationEvents", "name": "ALEXA_APP_INITIATIONS_PER_USER", "aggregationPeriod": "SINGLE"})).await;
    assert_eq!(d[0]["values"], json!([2.0]));
    // Music: 4 requests by 3 users, one with friction; 3 play queues of
    // 600, 300 and 0 seconds, the last one failed.
    let d = ask(json!({"id": "q", "metricNamespace": "Alexa.Music", "name": "FRICTION_RATE", "aggregationPeriod": "SINGLE"})).await;
    assert_eq!(d[0]["values"], json!([25.0]));
    let d = ask(json!({"id": "q", "metricNamespace": "Alexa.Music", "name": "AVERAGE_PLAY_QUEUE_DURATION_PER_CUSTOMER", "aggregationPeriod": "SINGLE"})).await;
    assert_eq!(d[0]["values"], json!([300.0]));
    let d = ask(json!({"id": "q", "metricNamespace": "Alexa.Music", "name": "SUCCESSFUL_PLAYBACK_RATE", "aggregationPeriod": "SINGLE"})).await;
    let rate = d[0]["values"][0].as_f64().unwrap();
    assert!((rate - 200.0 / 3.0).abs() < 1e-9, "{rate}");
    // Intent classification: 2 MEDIUM classified utterances by default,
    // 3 HIGH ones when asked.
    let d = ask(json!({"id": "q", "metricNamespace": "Alexa.Custom", "name": "INTENT_CLASSIFICATION", "aggregationPeriod": "SINGLE"})).await;
    assert_eq!(d[0]["values"], json!([2.0]));
    let d = ask(json!({"id": "q", "metricNamespace": "Alexa.Custom", "name": "INTENT_CLASSIFICATION", "aggregationPeriod": "SINGLE",
        "dimensions": [{"name": "Alexa.SluConfidence", "value": "HIGH"}]})).await;
    assert_eq!(d[0]["values"], json!([3.0]));
    // Skill quality: 9 turns, 7 evaluated, one barge-in, one termination.
    let d = ask(json!({"id": "q", "metricNamespace": "Alexa.SkillQuality", "name": "DEFECTIVE_BARGE_IN_RATE", "aggregationPeriod": "SINGLE"})).await;
    let rate = d[0]["values"][0].as_f64().unwrap();
    assert!((rate - 100.0 / 7.0).abs() < 1e-9, "{rate}");
    // Automation: 3 offer steps of one template, 2 runs.
    let d = ask(json!({"id": "q", "metricNamespace": "Alexa.Automation", "name": "AUTOMATION_ORIGINATION", "aggregationPeriod": "SINGLE",
        "dimensions": [{"name": "Alexa.Automation.Origination", "value": "OFFER_ACCEPTED_BY_CUSTOMER"}]})).await;
    assert_eq!(d[0]["values"], json!([1.0]));
    let d = ask(json!({"id": "q", "metricNamespace": "Alexa.Automation", "name": "AUTOMATION_EXECUTION", "aggregationPeriod": "SINGLE"})).await;
    assert_eq!(d[0]["values"], json!([2.0]));
}

#[tokio::test]
async fn every_metric_on_generated_data() {
    let dir = tempfile::tempdir().unwrap();
    let engine = common::demo_engine(dir.path(), 60_000, 3).await;
    let rows = common::read_events(dir.path());
    // Every event type of every namespace is generated.
    let types: BTreeSet<&str> = rows.iter().map(|r| r.event_type.as_str()).collect();
    for t in [
        "utterance",
        "session.started",
        "session.ended",
        "smarthome.utterance",
        "account.linking",
        "music.request",
        "music.play_queue",
        "skill.enabled",
        "skill.disabled",
        "turn_error.evaluation",
        "skill_quality.turn",
        "automation.origination",
        "automation.execution",
    ] {
        assert!(types.contains(t), "no {t} events generated");
    }
    let app = app(engine);
    // 2026-01-08 00:00 to 2026-01-10 12:00: two whole days and a half.
    let range = (1_767_830_400_000, 1_768_046_400_000);
    let skill = metricstore::generate::SKILLS[0];
    let Checked {
        compared, nonzero, ..
    } = check_all(&app, &rows, skill, range, &["BY_DAY", "SINGLE"]).await;
    assert!(compared > 300, "{compared}");
    assert!(
        nonzero * 10 > compared * 8,
        "{nonzero} of {compared} answers are non-zero"
    );
}

/// The console's breakdowns (`/analytics/sessions`, `/analytics/intents`)
/// against loops over the rows, per stage.
#[tokio::test]
async fn session_and_intent_breakdowns() {
    let dir = tempfile::tempdir().unwrap();
    let engine = common::demo_engine(dir.path(), 30_000, 2).await;
    let rows = common::read_events(dir.path());
    let app = app(engine);
    let skill = metricstore::generate::SKILLS[0];
    let (start, end) = (1_767_916_800_000i64, 1_768_003_200_000i64); // 2026-01-09
    let pct = |n: f64, d: f64| {
        if d > 0.0 {
            (n / d * 10_000.0).round() / 100.0
        } else {
            0.0
        }
    };
    for stage in ["all", "live", "development"] {
        let keep = |r: &&EventRow| {
            r.workspace_id == skill
                && r.time >= start
                && r.time < end
                && match stage {
                    "live" => r.stage.as_deref() != Some("development"),
                    "development" => r.stage.as_deref() == Some("development"),
                    _ => true,
                }
        };
        let kept: Vec<&EventRow> = rows.iter().filter(keep).collect();
        let ended: Vec<&&EventRow> = kept.iter().filter(|r| is(r, "session.ended")).collect();
        let n = |o: &[&str]| {
            ended
                .iter()
                .filter(|r| o.iter().any(|o| outcome(r, o)))
                .count() as f64
        };
        let total = ended.len() as f64;
        let (ok, failed, silent) = (
            n(&["user_ended", "skill_ended"]),
            n(&["error"]),
            n(&["no_response"]),
        );
        assert!(
            total > 0.0 && failed > 0.0,
            "the data has failed sessions ({stage})"
        );
        let uri = format!(
            "/v2/skills/{skill}/analytics/sessions?startTime={start}&endTime={end}&stage={stage}"
        );
        let (s, v) = call(&app, "GET", &uri, None).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["sessions"], json!(total as i64), "{stage}: {v}");
        assert_eq!(
            v["successful"],
            json!({"sessions": ok as i64, "percentage": pct(ok, total)}),
            "{stage}"
        );
        assert_eq!(
            v["failed"],
            json!({"sessions": failed as i64, "percentage": pct(failed, total)}),
            "{stage}"
        );
        assert_eq!(
            v["noResponse"],
            json!({"sessions": silent as i64, "percentage": pct(silent, total)}),
            "{stage}"
        );
        let started = kept.iter().filter(|r| is(r, "session.started")).count() as f64;
        let starters = users(&kept, |r| is(r, "session.started"));
        let per = v["sessionsPerCustomer"].as_f64().unwrap();
        assert!((per - started / starters).abs() < 1e-9, "{stage}: {per}");

        let utt: Vec<&&EventRow> = kept.iter().filter(|r| is(r, "utterance")).collect();
        let all = utt.len() as f64;
        let all_failed = utt.iter().filter(|r| outcome(r, "failed")).count() as f64;
        let mut per_intent: BTreeMap<Option<String>, (f64, f64, BTreeSet<String>)> =
            BTreeMap::new();
        for r in &utt {
            let e = per_intent.entry(r.intent.clone()).or_default();
            e.0 += 1.0;
            if outcome(r, "failed") {
                e.1 += 1.0;
            }
            if let Some(u) = &r.user_id {
                e.2.insert(u.clone());
            }
        }
        let uri = format!(
            "/v2/skills/{skill}/analytics/intents?startTime={start}&endTime={end}&stage={stage}"
        );
        let (s, v) = call(&app, "GET", &uri, None).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["utterances"], json!(all as i64));
        assert_eq!(v["failedUtterances"], json!(all_failed as i64));
        let items = v["intents"].as_array().unwrap();
        assert_eq!(items.len(), per_intent.len(), "{stage}");
        let mut last = f64::INFINITY;
        for item in items {
            let intent = item["intent"].as_str().map(str::to_string);
            let (n, f, u) = &per_intent[&intent];
            assert_eq!(item["utterances"], json!(*n as i64), "{intent:?}");
            assert_eq!(item["percentage"], json!(pct(*n, all)), "{intent:?}");
            assert_eq!(item["failedUtterances"], json!(*f as i64), "{intent:?}");
            assert_eq!(
                item["failedPercentage"],
                json!(pct(*f, all_failed)),
                "{intent:?}"
            );
            assert_eq!(item["customers"], json!(u.len()), "{intent:?}");
            assert!(*n <= last, "most used first");
            last = *n;
        }
    }
    let (s, v) = call(
        &app,
        "GET",
        &format!(
            "/v2/skills/{skill}/analytics/sessions?startTime={start}&endTime={end}&stage=beta"
        ),
        None,
    )
    .await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("INVALID_STAGE"))
    );
}
