//! `metricstore bench --dashboard`: the dashboard's skill Metrics request
//! (five queries over 30 days, run together as the API runs them), with
//! rollups on and off in the same process: p50 and p99 with one client
//! (runs interleaved, so both ways see the same machine), and requests per
//! second with many clients at once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::engine::{AnswerPath, Engine, Rollups};
use crate::skill_metrics::{CheckedRequest, check_request};

/// The request body: customers, utterances and successful sessions per
/// day, failed utterances per intent over the whole range, and p90 skill
/// latency per hour.
pub fn request(skill: &str, start: &str, end: &str) -> CheckedRequest {
    let q = |id: &str, name: &str, period: &str, extra: serde_json::Value| {
        let mut v = json!({
            "id": id,
            "metricNamespace": "Alexa.Custom",
            "name": name,
            "aggregationPeriod": period,
        });
        v.as_object_mut()
            .expect("object")
            .extend(extra.as_object().expect("object").clone());
        v
    };
    let body = json!({"startTime": start, "endTime": end, "metricQueries": [
        q("customers", "CUSTOMERS", "BY_DAY", json!({})),
        q("utterances", "UTTERANCES", "BY_DAY", json!({})),
        q("failed", "FAILED_UTTERANCES", "SINGLE", json!({"groupBy": "intent"})),
        q("latency", "SKILL_LATENCY", "BY_HOUR", json!({"stat": "p90"})),
        q("successful", "SUCCESSFUL_SESSIONS", "BY_DAY", json!({})),
    ]});
    check_request(&body, skill).unwrap_or_else(|e| panic!("the dashboard request is valid: {e:?}"))
}

/// Runs the request's queries together; returns which paths answered.
async fn once(engine: &Engine, req: &CheckedRequest) -> crate::engine::Result<Vec<AnswerPath>> {
    let runs = req.queries.iter().map(|q| engine.run_traced(&q.query));
    let all = futures::future::try_join_all(runs).await?;
    Ok(all.into_iter().map(|(_, p)| p).collect())
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

/// One way's figures.
#[derive(Debug, serde::Serialize)]
pub struct Figures {
    pub rollups: bool,
    pub paths: Vec<&'static str>,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub clients: usize,
    pub requests_per_s: f64,
    /// Requests refused as busy (memory, queue) or stopped by the timeout.
    pub refused: u64,
}

/// Times the request with rollups (`Some`) and without, `iterations`
/// sequential runs each (interleaved), then `clients` concurrent clients
/// for `seconds` each way.
pub async fn run(
    engine: &Engine,
    rollups: Option<Arc<Rollups>>,
    req: &CheckedRequest,
    iterations: usize,
    clients: usize,
    seconds: u64,
) -> crate::engine::Result<Vec<Figures>> {
    let ways: Vec<Option<Arc<Rollups>>> = match rollups {
        Some(r) => vec![Some(r), None],
        None => vec![None],
    };
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); ways.len()];
    let mut paths: Vec<Vec<&'static str>> = vec![Vec::new(); ways.len()];
    // Warm-up: one run each way (file metadata, the OS cache).
    for w in &ways {
        engine.attach_rollups(w.clone());
        once(engine, req).await?;
    }
    for _ in 0..iterations.max(1) {
        for (i, w) in ways.iter().enumerate() {
            engine.attach_rollups(w.clone());
            let t = Instant::now();
            let p = once(engine, req).await?;
            times[i].push(t.elapsed());
            paths[i] = p.iter().map(|p| p.name()).collect();
        }
    }
    let mut out = Vec::new();
    for (i, w) in ways.iter().enumerate() {
        engine.attach_rollups(w.clone());
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let started = Instant::now();
        let tasks = (0..clients.max(1)).map(|_| {
            let engine = engine.clone();
            let req = req.clone();
            tokio::spawn(async move {
                let (mut n, mut refused) = (0u64, 0u64);
                while Instant::now() < deadline {
                    match once(&engine, &req).await {
                        Ok(_) => n += 1,
                        // What a server answers 503: counted, not fatal.
                        Err(crate::engine::Error::Busy(_) | crate::engine::Error::Timeout(_)) => {
                            refused += 1
                        }
                        Err(e) => return Err(e),
                    }
                }
                Ok::<(u64, u64), crate::engine::Error>((n, refused))
            })
        });
        let (mut done, mut refused) = (0u64, 0u64);
        for t in futures::future::join_all(tasks).await {
            let (n, r) = t.expect("a client task does not panic")?;
            done += n;
            refused += r;
        }
        let elapsed = started.elapsed().as_secs_f64();
        let mut sorted = times[i].clone();
        sorted.sort();
        out.push(Figures {
            rollups: w.is_some(),
            paths: paths[i].clone(),
            p50_ms: percentile(&sorted, 0.5),
            p99_ms: percentile(&sorted, 0.99),
            clients,
            requests_per_s: done as f64 / elapsed,
            refused,
        });
    }
    engine.attach_rollups(None);
    Ok(out)
}

/// Median times of the skill analytics over the same range, with rollups
/// (`Some`) and without, runs interleaved: `(analysis, rollups, p50 ms)`.
pub async fn analytics(
    engine: &Engine,
    rollups: Option<Arc<Rollups>>,
    skill: &str,
    range: crate::analytics::Range,
    iterations: usize,
) -> Result<Vec<(&'static str, bool, f64)>, crate::analytics::Error> {
    use crate::analytics::{DEFAULT_INTENT, DEFAULT_LIMIT, Intent, Stage};
    let ways: Vec<Option<Arc<Rollups>>> = match rollups {
        Some(r) => vec![Some(r), None],
        None => vec![None],
    };
    let intent = Intent::parse(DEFAULT_INTENT)?;
    let mut times = vec![[Vec::new(), Vec::new()]; ways.len()];
    for round in 0..=iterations.max(1) {
        for (i, w) in ways.iter().enumerate() {
            engine.attach_rollups(w.clone());
            let t = Instant::now();
            crate::analytics::retention(engine, skill, range, Stage::Live).await?;
            let retention = t.elapsed();
            let t = Instant::now();
            crate::analytics::next_and_paths(engine, skill, range, &intent, DEFAULT_LIMIT).await?;
            let paths = t.elapsed();
            // The first round warms caches and is not counted.
            if round > 0 {
                times[i][0].push(retention);
                times[i][1].push(paths);
            }
        }
    }
    engine.attach_rollups(None);
    let mut out = Vec::new();
    for (i, w) in ways.iter().enumerate() {
        for (j, name) in ["retention", "paths"].into_iter().enumerate() {
            let mut sorted = times[i][j].clone();
            sorted.sort();
            out.push((name, w.is_some(), percentile(&sorted, 0.5)));
        }
    }
    Ok(out)
}
