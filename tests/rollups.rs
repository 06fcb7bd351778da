//! Rollups against raw answers: random built-in definitions, ranges,
//! buckets, dimension filters and groupings, answered from rollups plus the
//! raw tail and from raw events alone, must agree: counts and distinct
//! counts exactly, sums and averages to float rounding, percentiles within
//! the sketch's bound. Also with late events (a new file in a covered day),
//! rows not yet in files, a compacted day, a changed definition and a build
//! that died before naming its parts.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use metricstore::definition::{Aggregation, Bucket, Measure, Query, TimeRange, builtin};
use metricstore::engine::{AnswerPath, Engine, Rollups, Unpublished};
use metricstore::series::Series;
use metricstore::storage::events::{self, DAY_MS, EventRow};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const SKILLS: [&str; 2] = [
    "amzn1.ask.skill.demo-trivia",
    "amzn1.ask.skill.demo-weather",
];
/// 2026-01-01T00:00:00Z: the generated data are the 10 days to 2026-01-10.
const FIRST_DAY: i64 = 1_767_225_600_000;

fn has_quantile(m: &Measure) -> bool {
    match m {
        Measure::Aggregate { aggregation, .. } => {
            matches!(aggregation, Aggregation::Quantile { .. })
        }
        Measure::Ratio {
            numerator: a,
            denominator: b,
        }
        | Measure::Difference { left: a, right: b } => has_quantile(a) || has_quantile(b),
        Measure::Scaled { measure, .. } => has_quantile(measure),
    }
}

/// A random query over a built-in metric, with column dimensions only (so
/// that a rollup can answer it), or with an attribute dimension.
fn random_query(rng: &mut StdRng) -> Query {
    let namespaces = builtin::namespaces();
    let ns = &namespaces[rng.random_range(0..namespaces.len())];
    let m = &ns.metrics[rng.random_range(0..ns.metrics.len())];
    let measure = if m.supported_stats.is_empty() {
        m.measure.clone()
    } else {
        m.measure_for_stat(&m.supported_stats[rng.random_range(0..m.supported_stats.len())])
    };
    let bucket = [
        Bucket::parse("BY_15").unwrap(),
        Bucket::parse("BY_HOUR").unwrap(),
        Bucket::parse("BY_DAY").unwrap(),
        Bucket::parse("SINGLE").unwrap(),
    ][rng.random_range(0..4)];
    let quarter = 15 * 60_000;
    let (start, end) = match bucket.width_ms() {
        Some(w) if w < DAY_MS => {
            let s = FIRST_DAY + rng.random_range(0..9 * 96) * quarter;
            (s, s + rng.random_range(1..=96) * quarter)
        }
        _ => {
            let s = FIRST_DAY + rng.random_range(0..8) * DAY_MS + rng.random_range(0..4) * quarter;
            (s, s + rng.random_range(1..=4) * DAY_MS)
        }
    };
    let mut filters = Vec::new();
    for d in &m.supported_dimensions {
        let info = builtin::dimension_info(d);
        if let Some(default) = info.and_then(|i| i.default.as_ref()) {
            filters.push(builtin::dimension_filter(d, default));
            continue;
        }
        let values: Vec<String> = match d.as_str() {
            "Alexa.Stage" => vec!["live".into(), "development".into()],
            "Country" => vec!["US".into(), "GB".into(), "DE".into()],
            _ => info.and_then(|i| i.values.clone()).unwrap_or_default(),
        };
        if !values.is_empty() && rng.random_bool(0.25) {
            filters.push(builtin::dimension_filter(
                d,
                &values[rng.random_range(0..values.len())],
            ));
        }
    }
    let group_by = match m.supported_group_by_options.as_slice() {
        [] => vec![],
        options if rng.random_bool(0.5) => {
            vec![builtin::dimension(
                &options[rng.random_range(0..options.len())],
            )]
        }
        _ => vec![],
    };
    Query {
        workspace_id: SKILLS[rng.random_range(0..SKILLS.len())].to_string(),
        measure,
        filters,
        range: TimeRange {
            start_ms: start,
            end_ms: end,
        },
        bucket,
        group_by,
    }
}

/// Compares two answers: same groups and buckets; values equal (counts),
/// within float rounding (sums, averages, ratios) or within 1% relative
/// (quantiles).
fn assert_same(what: &str, got: &[Series], want: &[Series], quantile: bool) {
    let index = |s: &[Series]| -> BTreeMap<Vec<Option<String>>, Vec<(i64, f64)>> {
        s.iter()
            .map(|s| (s.group.clone(), s.points.clone()))
            .collect()
    };
    let (g, w) = (index(got), index(want));
    assert_eq!(
        g.keys().collect::<Vec<_>>(),
        w.keys().collect::<Vec<_>>(),
        "{what}: groups"
    );
    for (k, wp) in &w {
        let gp = &g[k];
        assert_eq!(
            gp.iter().map(|p| p.0).collect::<Vec<_>>(),
            wp.iter().map(|p| p.0).collect::<Vec<_>>(),
            "{what}: buckets of {k:?}"
        );
        for ((t, a), (_, b)) in gp.iter().zip(wp) {
            let tolerance = if quantile { 0.01 } else { 1e-9 };
            let ok = a == b || (a - b).abs() <= tolerance * b.abs().max(1e-12);
            assert!(ok, "{what}: {k:?} at {t}: rollup {a}, raw {b}");
        }
    }
}

/// Whether some rollup keeps every column the query filters or groups by.
fn servable(rollups: &Rollups, q: &Query) -> bool {
    use metricstore::definition::{Dimension, Field};
    let mut needed = Vec::new();
    for f in &q.filters {
        match &f.field {
            Field::Column(c) => needed.push(c.clone()),
            _ => return false,
        }
    }
    for d in &q.group_by {
        match d {
            Dimension::Field(Field::Column(c)) => needed.push(c.clone()),
            Dimension::Country => needed.push("locale".into()),
            _ => return false,
        }
    }
    rollups
        .specs()
        .iter()
        .any(|s| needed.iter().all(|c| s.dims.contains(c)))
}

/// Runs `n` random queries with rollups and without; returns how many the
/// rollups answered. With `every_day_covered`, every query some rollup
/// keeps the columns of must have been answered from it.
async fn compare(
    engine: &Engine,
    rollups: &Arc<Rollups>,
    seed: u64,
    n: usize,
    every_day_covered: bool,
) -> usize {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut answered = 0;
    for i in 0..n {
        let q = random_query(&mut rng);
        engine.attach_rollups(Some(Arc::clone(rollups)));
        let (got, path) = engine.run_traced(&q).await.unwrap();
        engine.attach_rollups(None);
        let (want, raw) = engine.run_traced(&q).await.unwrap();
        assert_eq!(raw, AnswerPath::Raw);
        if every_day_covered && servable(rollups, &q) {
            assert_eq!(
                path,
                AnswerPath::Rollup,
                "query {i} was not answered from rollups: {q:?}"
            );
        }
        if path == AnswerPath::Rollup {
            answered += 1;
        }
        assert_same(
            &format!("seed {seed} query {i} ({q:?})"),
            &got,
            &want,
            has_quantile(&q.measure),
        );
    }
    answered
}

/// Rows not yet in files, as the ingest's write-ahead log offers them.
#[derive(Debug, Default)]
struct Pending {
    lock: tokio::sync::RwLock<()>,
    rows: std::sync::Mutex<Vec<datafusion::arrow::record_batch::RecordBatch>>,
}

impl Unpublished for Pending {
    fn publish_lock(&self) -> &tokio::sync::RwLock<()> {
        &self.lock
    }
    fn snapshot(&self) -> Vec<datafusion::arrow::record_batch::RecordBatch> {
        self.rows.lock().unwrap().clone()
    }
}

/// Copies of some generated rows, moved a few hours, as late events.
fn late_rows(dir: &std::path::Path, n: usize, seed: u64) -> Vec<EventRow> {
    let mut rng = StdRng::seed_from_u64(seed);
    let all = common::read_events(dir);
    (0..n)
        .map(|_| {
            let mut r = all[rng.random_range(0..all.len())].clone();
            r.time += rng.random_range(0..3) * 3_600_000;
            r
        })
        .collect()
}

/// Late events: a new file of `file` (rows, seed) late rows in covered
/// days, and `unflushed` (rows, seed) rows not in any file yet.
async fn add_late(
    engine: &Engine,
    dir: &std::path::Path,
    file: (usize, u64),
    unflushed: (usize, u64),
) {
    events::write_rows(&engine.store, "late", &late_rows(dir, file.0, file.1))
        .await
        .unwrap();
    let pending = Arc::new(Pending::default());
    pending
        .rows
        .lock()
        .unwrap()
        .push(events::rows_to_batch(&late_rows(
            dir,
            unflushed.0,
            unflushed.1,
        )));
    engine.attach_unpublished(pending);
}

#[tokio::test(flavor = "multi_thread")]
async fn rollups_plus_tail_equal_raw_answers() {
    let dir = tempfile::tempdir().unwrap();
    let engine = common::demo_engine(dir.path(), 60_000, 10).await;
    let rollups = Rollups::open(&engine.store).await.unwrap();
    let report = rollups.build(&engine, None).await.unwrap();
    assert_eq!(report.days, 10, "{report:?}");
    assert!(report.rows > 0);
    // The past weeks' day parts were merged into week parts, which the
    // answers below read (and, after the compaction, read for some days
    // only).
    assert!(report.merged > 0, "{report:?}");
    assert!(
        rollups
            .manifest()
            .rollups
            .values()
            .flat_map(|b| b.days.values())
            .any(|c| c.parts.iter().any(|p| p.contains("/week="))),
        "no week part"
    );
    let answered = compare(&engine, &rollups, 1, 60, true).await;
    assert!(answered >= 20, "only {answered} of 60 queries used rollups");

    // Late events: a new file in covered days (the tail), then rows not in
    // any file yet.
    add_late(&engine, dir.path(), (3_000, 2), (500, 3)).await;
    compare(&engine, &rollups, 4, 40, true).await;

    // A build covers the late file with a delta part.
    let delta = rollups.build(&engine, None).await.unwrap();
    assert!(delta.files > 0 && delta.parts > 0, "{delta:?}");
    compare(&engine, &rollups, 5, 40, true).await;

    // Compaction merges a covered day's files: that day is read raw
    // until the next build rebuilds it.
    let day = "2026-01-05";
    let files: Vec<_> = std::fs::read_dir(dir.path().join(format!("events/date={day}")))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let rows: Vec<EventRow> = common::read_events(dir.path())
        .into_iter()
        .filter(|r| events::date_of_millis(r.time) == day)
        .collect();
    events::write_rows(&engine.store, "compacted", &rows)
        .await
        .unwrap();
    for f in files {
        std::fs::remove_file(f).unwrap();
    }
    compare(&engine, &rollups, 6, 40, false).await;
    let rebuilt = rollups.build(&engine, None).await.unwrap();
    assert_eq!(rebuilt.days, 1, "{rebuilt:?}");
    compare(&engine, &rollups, 7, 30, true).await;

    // Reopened from the store (manifest and id dictionary), answers agree.
    let reopened = Rollups::open(&engine.store).await.unwrap();
    assert_eq!(reopened.dictionary_len(), rollups.dictionary_len());
    compare(&engine, &reopened, 8, 30, true).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_changed_definition_and_a_dead_build_fall_back_to_raw() {
    let dir = tempfile::tempdir().unwrap();
    let engine = common::demo_engine(dir.path(), 20_000, 3).await;
    let rollups = Rollups::open(&engine.store).await.unwrap();
    rollups.build(&engine, None).await.unwrap();
    engine.attach_rollups(Some(Arc::clone(&rollups)));
    let custom = builtin::namespace("Alexa.Custom").unwrap();
    let mut q = Query {
        workspace_id: SKILLS[0].into(),
        measure: custom.metric("UTTERANCES").unwrap().measure.clone(),
        filters: vec![],
        range: TimeRange {
            start_ms: FIRST_DAY + 7 * DAY_MS,
            end_ms: FIRST_DAY + 10 * DAY_MS,
        },
        bucket: Bucket::parse("BY_DAY").unwrap(),
        group_by: vec![],
    };
    let (from_rollup, path) = engine.run_traced(&q).await.unwrap();
    assert_eq!(path, AnswerPath::Rollup);
    // The same metric with another selection: no rollup has its leaf.
    if let Measure::Aggregate { events, .. } = &mut q.measure {
        events.filters.push(metricstore::definition::Filter {
            field: metricstore::definition::Field::Column("locale".into()),
            op: metricstore::definition::Operator::Eq,
            value: "en-US".into(),
        });
    }
    let (changed, path) = engine.run_traced(&q).await.unwrap();
    assert_eq!(path, AnswerPath::Raw);
    let total = |s: &[Series]| s.iter().flat_map(|s| &s.points).map(|p| p.1).sum::<f64>();
    assert!(total(&changed) < total(&from_rollup));

    // A build that died after writing a part but before the manifest: the
    // part is not read, answers stay the raw ones.
    let stray = dir.path().join(format!(
        "rollups/{}/date=2026-01-09",
        rollups.specs()[0].id()
    ));
    std::fs::create_dir_all(&stray).unwrap();
    std::fs::write(stray.join("dead.parquet"), b"not parquet").unwrap();
    let reopened = Rollups::open(&engine.store).await.unwrap();
    compare(&engine, &reopened, 9, 20, true).await;
}

/// Rollups the manifest names under ids this version does not make (an
/// older state layout, a definition since changed) are not answered from,
/// and the next build drops them and their parts.
#[tokio::test(flavor = "multi_thread")]
async fn rollups_of_another_version_are_not_read_and_are_dropped() {
    use metricstore::engine::rollup::Manifest;
    use metricstore::storage::catalog::Catalog;
    let dir = tempfile::tempdir().unwrap();
    let engine = common::demo_engine(dir.path(), 20_000, 3).await;
    let rollups = Rollups::open(&engine.store).await.unwrap();
    rollups.build(&engine, None).await.unwrap();
    // As an older version would have left them: the same specs under
    // other ids (their parts readable: only the ids keep them unused).
    let catalog = Catalog::new(engine.store.clone(), "rollups");
    let mut old_parts = Vec::new();
    catalog
        .update("manifest", |m: &mut Manifest| {
            let renamed = std::mem::take(&mut m.rollups)
                .into_iter()
                .map(|(id, b)| (format!("old{id}"), b))
                .collect();
            m.rollups = renamed;
            Ok::<_, std::convert::Infallible>(m.clone())
        })
        .await
        .map_err(|_| "manifest")
        .unwrap();
    for (_, c) in Rollups::open(&engine.store)
        .await
        .unwrap()
        .manifest()
        .rollups
        .values()
        .flat_map(|b| &b.days)
    {
        old_parts.extend(c.parts.iter().cloned());
    }
    let reopened = Rollups::open(&engine.store).await.unwrap();
    assert_eq!(compare(&engine, &reopened, 11, 20, false).await, 0);
    reopened.build(&engine, None).await.unwrap();
    let manifest = reopened.manifest();
    assert!(manifest.rollups.keys().all(|id| !id.starts_with("old")));
    assert!(!manifest.rollups.is_empty());
    assert!(
        old_parts.iter().all(|p| !dir.path().join(p).exists()),
        "the dropped rollups' parts are removed"
    );
    assert!(compare(&engine, &reopened, 12, 20, true).await > 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_answers_the_same_from_rollups_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let engine = common::demo_engine(dir.path(), 30_000, 5).await;
    common::build_rollups(&engine).await;
    drop(engine);
    let data = dir.path().to_str().unwrap();
    let tokens = format!("t-rollup-1:viewer:{}", SKILLS[0]);
    let body = serde_json::json!({
        "startTime": "2026-01-06T00:00:00Z",
        "endTime": "2026-01-11T00:00:00Z",
        "metricQueries": [
            {"id": "c", "metricNamespace": "Alexa.Custom", "name": "CUSTOMERS", "aggregationPeriod": "BY_DAY"},
            {"id": "f", "metricNamespace": "Alexa.Custom", "name": "FAILED_UTTERANCES", "aggregationPeriod": "SINGLE", "groupBy": "intent"},
            {"id": "l", "metricNamespace": "Alexa.Custom", "name": "SKILL_LATENCY", "aggregationPeriod": "BY_HOUR", "stat": "p90"},
            {"id": "m", "metricNamespace": "Alexa.Custom", "name": "UTTERANCES", "aggregationPeriod": "BY_DAY",
             "dimensions": [{"name": "Alexa.Marketplace", "value": "USAmazon"}]}
        ]
    });
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let mut answers = Vec::new();
    for env in [
        vec![("METRICSTORE_ROLLUP_INTERVAL", "0")],
        vec![("METRICSTORE_ROLLUPS", "off")],
    ] {
        let server = common::serve_with_env(data, &tokens, "2026-01-11T00:00:00Z", &env);
        let resp = http
            .post(format!("{}/v2/skills/{}/metrics", server.base, SKILLS[0]))
            .bearer_auth("t-rollup-1")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let from = resp.headers()["x-metricstore-answered-from"]
            .to_str()
            .unwrap()
            .to_string();
        let json: serde_json::Value = resp.json().await.unwrap();
        answers.push((from, json));
    }
    // The marketplace is an attribute: no rollup keeps it.
    assert_eq!(answers[0].0, "rollup,rollup,rollup,raw");
    assert_eq!(answers[1].0, "raw,raw,raw,raw");
    let (a, b) = (&answers[0].1, &answers[1].1);
    for i in [0, 1, 3] {
        assert_eq!(a["results"][i], b["results"][i], "query {i}");
    }
    // Percentiles: same points, values within 1%.
    let points = |v: &serde_json::Value| -> Vec<(i64, f64)> {
        v["results"][2]["data"][0]["timestamps"]
            .as_array()
            .unwrap()
            .iter()
            .zip(v["results"][2]["data"][0]["values"].as_array().unwrap())
            .map(|(t, v)| (t.as_i64().unwrap(), v.as_f64().unwrap()))
            .collect()
    };
    let (pa, pb) = (points(a), points(b));
    assert_eq!(pa.len(), pb.len());
    assert!(!pa.is_empty());
    for ((ta, va), (tb, vb)) in pa.iter().zip(&pb) {
        assert_eq!(ta, tb);
        assert!((va - vb).abs() <= 0.01 * vb.abs(), "{ta}: {va} vs {vb}");
    }
}

/// Retention cohorts from the activity rollup (one row per user, stage and
/// day) plus the raw tail equal those from every utterance.
#[tokio::test(flavor = "multi_thread")]
async fn retention_from_the_activity_rollup_equals_raw() {
    use metricstore::analytics::{Range, Stage, retention};
    let dir = tempfile::tempdir().unwrap();
    let engine = common::demo_engine(dir.path(), 40_000, 28).await;
    let rollups = Rollups::open(&engine.store).await.unwrap();
    rollups.build(&engine, None).await.unwrap();
    let check = |label: &'static str| {
        let engine = engine.clone();
        let rollups = Arc::clone(&rollups);
        async move {
            let end = FIRST_DAY + 10 * DAY_MS; // 2026-01-11
            let mut compared = 0;
            for (start, end) in [
                (end - 28 * DAY_MS, end),
                (end - 14 * DAY_MS, end),
                (end - 21 * DAY_MS, end - 7 * DAY_MS),
            ] {
                for stage in ["live", "development", "all"] {
                    let stage = Stage::parse(stage).unwrap();
                    let range = Range::new(start, end).unwrap();
                    engine.attach_rollups(Some(Arc::clone(&rollups)));
                    let got = retention(&engine, SKILLS[0], range, stage).await.unwrap();
                    engine.attach_rollups(None);
                    let want = retention(&engine, SKILLS[0], range, stage).await.unwrap();
                    assert!(!want.is_empty(), "{label}: no cohorts");
                    assert_eq!(got, want, "{label}: {start}..{end} {stage:?}");
                    compared += 1;
                }
            }
            compared
        }
    };
    assert_eq!(check("built").await, 9);
    add_late(&engine, dir.path(), (2_000, 11), (300, 12)).await;
    check("late file and unflushed rows").await;
    rollups.build(&engine, None).await.unwrap();
    check("rebuilt").await;
}

/// Paths and next steps from the steps rollup (one state per session and
/// day) equal the raw window plan's, for ranges on and off day bounds, with
/// late files and unflushed rows (copies of sessions' utterances, moved a
/// few hours: sessions then span days and parts), and after a rebuild.
#[tokio::test(flavor = "multi_thread")]
async fn paths_from_the_steps_rollup_equal_raw() {
    use metricstore::analytics::{Intent, Range, next_and_paths};
    let dir = tempfile::tempdir().unwrap();
    let engine = common::demo_engine(dir.path(), 40_000, 12).await;
    let rollups = Rollups::open(&engine.store).await.unwrap();
    rollups.build(&engine, None).await.unwrap();
    let check = |label: &'static str| {
        let engine = engine.clone();
        let rollups = Arc::clone(&rollups);
        async move {
            let mut rng = StdRng::seed_from_u64(label.len() as u64);
            let mut ranges = vec![
                (FIRST_DAY, FIRST_DAY + 12 * DAY_MS),
                (FIRST_DAY + 3 * DAY_MS, FIRST_DAY + 5 * DAY_MS),
            ];
            for _ in 0..3 {
                let start = FIRST_DAY + rng.random_range(0..11 * DAY_MS);
                ranges.push((start, start + rng.random_range(60_000..4 * DAY_MS)));
            }
            let mut compared = 0;
            for (start, end) in ranges {
                for (intent, limit) in [
                    ("LaunchRequest", 10),
                    ("AnswerIntent", 3),
                    ("NoSuchIntent", 5),
                ] {
                    let range = Range::new(start, end).unwrap();
                    let intent = Intent::parse(intent).unwrap();
                    for skill in SKILLS {
                        engine.attach_rollups(Some(Arc::clone(&rollups)));
                        let got = next_and_paths(&engine, skill, range, &intent, limit)
                            .await
                            .unwrap();
                        engine.attach_rollups(None);
                        let want = next_and_paths(&engine, skill, range, &intent, limit)
                            .await
                            .unwrap();
                        assert_eq!((got.2, want.2), (AnswerPath::Rollup, AnswerPath::Raw));
                        assert_eq!(
                            (&got.0, &got.1),
                            (&want.0, &want.1),
                            "{label}: {skill} {start}..{end} {intent:?} {limit}"
                        );
                        compared += usize::from(!want.1.items.is_empty());
                    }
                }
            }
            assert!(compared >= 20, "{label}: {compared} non-empty answers");
        }
    };
    check("built").await;
    add_late(&engine, dir.path(), (2_000, 21), (300, 22)).await;
    check("late file and unflushed rows").await;
    rollups.build(&engine, None).await.unwrap();
    check("rebuilt").await;
}

/// The REPL's `\explain` says which path answers each query of a skill
/// Metrics request, with its plans.
#[tokio::test(flavor = "multi_thread")]
async fn the_repl_explains_which_path_answers() {
    use datafusion::arrow::array::AsArray;
    use metricstore::repl::{Outcome, run_input};
    let dir = tempfile::tempdir().unwrap();
    let engine = common::demo_engine(dir.path(), 20_000, 10).await;
    engine.attach_rollups(Some(common::build_rollups(&engine).await));
    let body = serde_json::json!({
        "startTime": "2026-01-02T00:00:00Z", "endTime": "2026-01-09T00:00:00Z",
        "metricQueries": [
            {"id": "daily", "metricNamespace": "Alexa.Custom", "name": "CUSTOMERS", "aggregationPeriod": "BY_DAY"},
            {"id": "market", "metricNamespace": "Alexa.Custom", "name": "UTTERANCES", "aggregationPeriod": "BY_DAY",
             "dimensions": [{"name": "Alexa.Marketplace", "value": "USAmazon"}]}
        ]
    });
    let input = format!("\\explain {} {body}", SKILLS[0]);
    let Outcome::Batches(batches) = run_input(&engine, &input).await.unwrap() else {
        panic!("a table")
    };
    let b = &batches[0];
    let text = |c: &str| -> Vec<String> {
        b.column_by_name(c)
            .unwrap()
            .as_string::<i32>()
            .iter()
            .map(|v| v.unwrap().to_string())
            .collect()
    };
    assert_eq!(text("query_id"), ["daily", "daily", "market", "market"]);
    assert_eq!(text("answered_from"), ["rollup", "rollup", "raw", "raw"]);
    let plans = text("plan");
    // The daily query reads the daily rollup's states; the other scans the
    // events (its dimension is an attribute no rollup keeps).
    assert!(
        plans[0].contains("states") && !plans[0].contains("events"),
        "{}",
        plans[0]
    );
    // Its parts are read from memory (decoded once), no file is scanned.
    assert!(
        plans[1].contains("DataSourceExec: partitions=1") && !plans[1].contains(".parquet"),
        "{}",
        plans[1]
    );
    assert!(plans[2].contains("TableScan: events"), "{}", plans[2]);

    let e = run_input(&engine, &format!("\\explain {} {{not json", SKILLS[0]))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("not JSON"), "{e}");
    let e = run_input(&engine, "\\explain x {\"metricQueries\": []}")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("metricQueries"), "{e}");
}
