//! The event table: schema, layout, partition pruning, bad files.

mod common;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Int64Type, TimeUnit};
use datafusion::physical_plan::displayable;
use metricstore::engine::Engine;
use metricstore::storage::{Store, events};

#[test]
fn schema_matches_the_event_contract() {
    let schema = events::schema();
    let expected: Vec<(&str, DataType, bool)> = vec![
        (
            "time",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        ),
        ("workspace_id", DataType::Utf8, false),
        ("event_type", DataType::Utf8, false),
        ("user_id", DataType::Utf8, true),
        ("session_id", DataType::Utf8, true),
        ("stage", DataType::Utf8, true),
        ("locale", DataType::Utf8, true),
        ("channel", DataType::Utf8, true),
        ("direction", DataType::Utf8, true),
        ("intent", DataType::Utf8, true),
        ("outcome", DataType::Utf8, true),
        ("latency_ms", DataType::Float64, true),
        ("resource_type", DataType::Utf8, true),
        ("resource_id", DataType::Utf8, true),
        ("action", DataType::Utf8, true),
        ("origin", DataType::Utf8, true),
        ("attributes", DataType::Utf8, true),
    ];
    let actual: Vec<(&str, DataType, bool)> = schema
        .fields()
        .iter()
        .map(|f| (f.name().as_str(), f.data_type().clone(), f.is_nullable()))
        .collect();
    assert_eq!(actual, expected);
}

fn count(batches: &[RecordBatch]) -> i64 {
    batches
        .iter()
        .map(|b| {
            b.column(0)
                .as_primitive::<Int64Type>()
                .iter()
                .flatten()
                .sum::<i64>()
        })
        .sum()
}

#[tokio::test]
async fn generated_files_follow_the_layout_and_are_sorted() {
    let dir = tempfile::tempdir().unwrap();
    let engine = common::demo_engine(dir.path(), 20_000, 3).await;
    for day in ["2026-01-08", "2026-01-09", "2026-01-10"] {
        let files: Vec<_> = std::fs::read_dir(dir.path().join(format!("events/date={day}")))
            .unwrap()
            .collect();
        assert_eq!(files.len(), 1, "{day}");
    }
    // Every row sits in the partition of its UTC day.
    let b = engine
        .sql("SELECT count(*) FROM events WHERE date <> to_char(time, '%Y-%m-%d')")
        .await
        .unwrap();
    assert_eq!(count(&b), 0);
    assert_eq!(
        count(&engine.sql("SELECT count(*) FROM events").await.unwrap()),
        20_000
    );
    // Each row group holds one workspace's rows, sorted by time, and each
    // workspace of a file is in one run of row groups.
    use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    for day in ["2026-01-08", "2026-01-09", "2026-01-10"] {
        for file in std::fs::read_dir(dir.path().join(format!("events/date={day}"))).unwrap() {
            let path = file.unwrap().path();
            let open = || {
                ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&path).unwrap())
                    .unwrap()
            };
            let groups = open().metadata().num_row_groups();
            let mut seen: Vec<String> = Vec::new();
            for g in 0..groups {
                let rows: Vec<RecordBatch> = open()
                    .with_row_groups(vec![g])
                    .build()
                    .unwrap()
                    .collect::<Result<_, _>>()
                    .unwrap();
                let batch =
                    datafusion::arrow::compute::concat_batches(&rows[0].schema(), &rows).unwrap();
                let ws = batch.column(1).as_string::<i32>();
                let first = ws.value(0).to_string();
                assert!(
                    (0..ws.len()).all(|i| ws.value(i) == first),
                    "{path:?} group {g}"
                );
                let t = batch
                    .column(0)
                    .as_primitive::<datafusion::arrow::datatypes::TimestampMillisecondType>();
                assert!(
                    t.values().windows(2).all(|w| w[0] <= w[1]),
                    "{path:?} group {g}"
                );
                if seen.last() != Some(&first) {
                    assert!(!seen.contains(&first), "{path:?}: {first} in two runs");
                    seen.push(first);
                }
            }
            assert!(seen.len() > 1, "{path:?}: several workspaces");
        }
    }
}

#[tokio::test]
async fn generator_is_deterministic() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let ea = common::demo_engine(a.path(), 5_000, 2).await;
    let eb = common::demo_engine(b.path(), 5_000, 2).await;
    let q = "SELECT * FROM events ORDER BY time, session_id, event_type, attributes";
    let ra =
        metricstore::format::render(&ea.sql(q).await.unwrap(), metricstore::format::Format::Csv)
            .unwrap();
    let rb =
        metricstore::format::render(&eb.sql(q).await.unwrap(), metricstore::format::Format::Csv)
            .unwrap();
    assert_eq!(ra, rb);
    assert!(ra.lines().count() > 5_000);
}

/// The files a physical plan reads.
async fn planned_files(engine: &Engine, sql: &str) -> String {
    let df = engine.ctx.sql(sql).await.unwrap();
    let plan = df.create_physical_plan().await.unwrap();
    displayable(plan.as_ref()).indent(true).to_string()
}

#[tokio::test]
async fn a_query_over_one_day_reads_only_that_days_files() {
    let dir = tempfile::tempdir().unwrap();
    let engine = common::demo_engine(dir.path(), 30_000, 10).await;
    let plan = planned_files(
        &engine,
        "SELECT count(*) FROM events WHERE time >= '2026-01-05' AND time < '2026-01-06'",
    )
    .await;
    assert!(plan.contains("date=2026-01-05"), "{plan}");
    for other in [
        "date=2026-01-04",
        "date=2026-01-06",
        "date=2026-01-01",
        "date=2026-01-10",
    ] {
        assert!(!plan.contains(other), "{other} should be pruned:\n{plan}");
    }
    // And the answer is still right: the same count as the partition itself.
    let by_time = engine
        .sql("SELECT count(*) FROM events WHERE time >= '2026-01-05' AND time < '2026-01-06'")
        .await
        .unwrap();
    let by_date = engine
        .sql("SELECT count(*) FROM events WHERE date = '2026-01-05'")
        .await
        .unwrap();
    assert_eq!(count(&by_time), count(&by_date));
    assert_eq!(count(&by_time), 3_000);

    // Bounds that are not midnight keep both days they touch.
    let plan = planned_files(
        &engine,
        "SELECT count(*) FROM events WHERE time > '2026-01-05T12:00:00Z' AND time <= '2026-01-06T01:00:00Z'",
    )
    .await;
    assert!(
        plan.contains("date=2026-01-05") && plan.contains("date=2026-01-06"),
        "{plan}"
    );
    assert!(!plan.contains("date=2026-01-07"), "{plan}");
}

#[tokio::test]
async fn a_query_of_one_workspace_skips_the_others_row_groups() {
    let dir = tempfile::tempdir().unwrap();
    let engine = common::demo_engine(dir.path(), 30_000, 3).await;
    let sql = "SELECT count(*) FROM events WHERE workspace_id = 'ws-acme'";
    let df = engine.ctx.sql(sql).await.unwrap();
    let plan = df.create_physical_plan().await.unwrap();
    let rows =
        datafusion::physical_plan::collect(std::sync::Arc::clone(&plan), engine.ctx.task_ctx())
            .await
            .unwrap();
    // The scan's metrics: row groups pruned by statistics, rows read.
    let mut metrics = datafusion::physical_plan::metrics::MetricsSet::new();
    datafusion::physical_plan::accept(plan.as_ref(), &mut MetricsOf(&mut metrics)).unwrap();
    // Row groups: how many the files had, how many their statistics kept
    // ("6 total → 1 matched").
    let (mut groups, mut kept) = (0, 0);
    for m in metrics.iter() {
        if m.value().name() == "row_groups_pruned_statistics" {
            let shown = m.value().to_string();
            let mut numbers = shown
                .split(|c: char| !c.is_ascii_digit())
                .filter(|w| !w.is_empty())
                .map(|w| w.parse::<usize>().unwrap());
            groups += numbers.next().unwrap_or(0);
            kept += numbers.next().unwrap_or(0);
        }
    }
    let total = count(&engine.sql("SELECT count(*) FROM events").await.unwrap());
    let mine = count(&rows);
    assert!(mine > 0 && mine < total / 2, "{mine} of {total}");
    // Three days of six workspaces: one row group of each day is read.
    assert_eq!((groups, kept), (18, 3), "{metrics}");
}

/// Collects the metrics of every operator of a plan.
struct MetricsOf<'a>(&'a mut datafusion::physical_plan::metrics::MetricsSet);

impl datafusion::physical_plan::ExecutionPlanVisitor for MetricsOf<'_> {
    type Error = std::convert::Infallible;
    fn pre_visit(
        &mut self,
        plan: &dyn datafusion::physical_plan::ExecutionPlan,
    ) -> Result<bool, Self::Error> {
        if plan.name() == "DataSourceExec"
            && let Some(m) = plan.metrics()
        {
            for metric in m.iter() {
                self.0.push(std::sync::Arc::clone(metric));
            }
        }
        Ok(true)
    }
}

#[tokio::test]
async fn files_written_after_the_first_query_are_seen() {
    let dir = tempfile::tempdir().unwrap();
    let engine = common::demo_engine(dir.path(), 1_000, 1).await;
    assert_eq!(
        count(&engine.sql("SELECT count(*) FROM events").await.unwrap()),
        1_000
    );
    let rows = common::read_events(dir.path());
    events::write_rows(&engine.store, "more", &rows[..10])
        .await
        .unwrap();
    assert_eq!(
        count(&engine.sql("SELECT count(*) FROM events").await.unwrap()),
        1_010
    );
}

#[tokio::test]
async fn a_corrupt_file_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let engine = common::demo_engine(dir.path(), 1_000, 1).await;
    let bad = dir.path().join("events/date=2026-01-10/broken.parquet");
    std::fs::write(&bad, b"PAR1 this is not parquet").unwrap();
    let err = engine
        .sql("SELECT count(*) FROM events")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("broken.parquet"), "{err}");
}

#[tokio::test]
async fn a_file_with_the_wrong_schema_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let engine = common::demo_engine(dir.path(), 1_000, 1).await;
    // `time` as text instead of a timestamp.
    let ctx = datafusion::prelude::SessionContext::new();
    let df = ctx
        .sql("SELECT 'yesterday' AS time, 'ws' AS workspace_id, 'x' AS event_type")
        .await
        .unwrap();
    let batches = df.collect().await.unwrap();
    let path = dir.path().join("events/date=2026-01-10/wrong.parquet");
    let file = std::fs::File::create(&path).unwrap();
    let mut w =
        datafusion::parquet::arrow::ArrowWriter::try_new(file, batches[0].schema(), None).unwrap();
    w.write(&batches[0]).unwrap();
    w.close().unwrap();
    let err = engine
        .sql("SELECT count(*), min(time) FROM events")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("wrong.parquet"), "{err}");
}

#[test]
fn bad_locations_are_clear_errors() {
    let err = Store::open("ftp://host/x").unwrap_err().to_string();
    assert!(err.contains("unsupported scheme"), "{err}");
    let err = Store::open("s3://").unwrap_err().to_string();
    assert!(err.contains("bucket"), "{err}");
    let err = Store::open("").unwrap_err().to_string();
    assert!(err.contains("empty"), "{err}");
}

/// Many writers appending to one catalog document at once: every change
/// lands exactly once (none lost to a race, none applied twice).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_catalog_updates_land_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = metricstore::storage::Store::open(dir.path().to_str().unwrap()).unwrap();
    let catalog = metricstore::storage::catalog::Catalog::new(store, "stress");
    let jobs = (0..64).map(|i| {
        let catalog = catalog.clone();
        tokio::spawn(async move {
            catalog
                .update("k", move |doc: &mut Vec<u32>| {
                    doc.push(i);
                    Ok::<_, String>(())
                })
                .await
                .unwrap();
        })
    });
    for j in futures::future::join_all(jobs).await {
        j.unwrap();
    }
    let (version, mut doc) = catalog.load::<Vec<u32>>("k").await.unwrap();
    doc.sort();
    assert_eq!(doc, (0..64).collect::<Vec<u32>>());
    assert_eq!(version, 64);
}

/// Queries past the server's limits are refused with a clear "busy" or
/// "timeout" error (answered 503 with `Retry-After` over HTTP), never a
/// crash: a memory pool too small for a large distinct count, and a
/// timeout shorter than any query.
#[tokio::test]
async fn queries_past_their_limits_are_refused_not_fatal() {
    use metricstore::engine::{Engine, Error, QueryLimits, session_config};
    let dir = tempfile::tempdir().unwrap();
    drop(common::demo_engine(dir.path(), 200_000, 3).await);
    let open = |limits: QueryLimits| {
        let store = metricstore::storage::Store::open(dir.path().to_str().unwrap()).unwrap();
        Engine::with_limits(store, session_config(), limits)
    };
    let sql =
        "SELECT user_id, session_id, count(*) FROM events GROUP BY 1, 2 ORDER BY 3 DESC, 1, 2";
    let tiny = open(QueryLimits {
        memory_bytes: 64 << 10,
        ..QueryLimits::default()
    })
    .await
    .unwrap();
    match tiny.sql(sql).await {
        Err(Error::Busy(m)) => assert!(m.contains("memory"), "{m}"),
        other => panic!("expected busy, got {:?}", other.map(|b| b.len())),
    }
    let hasty = open(QueryLimits {
        timeout: std::time::Duration::from_micros(1),
        ..QueryLimits::default()
    })
    .await
    .unwrap();
    assert!(matches!(hasty.sql(sql).await, Err(Error::Timeout(_))));
    // With room, the same query answers.
    let roomy = open(QueryLimits::default()).await.unwrap();
    assert!(!roomy.sql(sql).await.unwrap().is_empty());
    let e: metricstore::api::ApiError = Error::Timeout(std::time::Duration::from_secs(1)).into();
    assert!(matches!(e, metricstore::api::ApiError::Unavailable { .. }));
}

/// One workspace's queries take at most their share of the turns: past it
/// they wait, then are refused as busy, while another workspace's query
/// still answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_workspace_cannot_take_every_turn() {
    use metricstore::engine::{Engine, Error, QueryLimits, session_config};
    let dir = tempfile::tempdir().unwrap();
    drop(common::demo_engine(dir.path(), 200_000, 3).await);
    let store = metricstore::storage::Store::open(dir.path().to_str().unwrap()).unwrap();
    let engine = Engine::with_limits(
        store,
        session_config(),
        QueryLimits {
            max_per_tenant: 1,
            queue_wait: std::time::Duration::from_millis(1),
            ..QueryLimits::default()
        },
    )
    .await
    .unwrap();
    let query = |skill: &str| {
        let body = serde_json::json!({"startTime": "2026-01-08T00:00:00Z", "endTime": "2026-01-11T00:00:00Z",
            "metricQueries": [{"id": "q", "metricNamespace": "Alexa.Custom", "name": "SKILL_LATENCY",
                               "aggregationPeriod": "BY_15", "stat": "p90", "groupBy": "intent"}]});
        metricstore::skill_metrics::check_request(&body, skill)
            .unwrap()
            .queries
            .remove(0)
            .query
    };
    let (a, b) = (
        query(metricstore::generate::SKILLS[0]),
        query(metricstore::generate::SKILLS[1]),
    );
    let (many, other) = tokio::join!(
        futures::future::join_all((0..6).map(|_| engine.run(&a))),
        async {
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            engine.run(&b).await
        }
    );
    let busy = many
        .iter()
        .filter(|r| matches!(r, Err(Error::Busy(m)) if m.contains("this workspace")))
        .count();
    let answered = many.iter().filter(|r| r.is_ok()).count();
    assert!(
        answered >= 1 && busy >= 1,
        "{answered} answered, {busy} busy"
    );
    assert_eq!(answered + busy, 6);
    assert!(!other.unwrap().is_empty(), "the other workspace answered");
}

/// A query whose answer would exceed the result budget (buckets times the
/// estimated groups) is refused before it runs, with a 400 saying why and
/// what to change; a coarser period of the same query answers, and its
/// groups stay within the estimate.
#[tokio::test]
async fn a_query_past_the_result_budget_is_refused_before_it_runs() {
    use metricstore::engine::{Engine, Error, QueryLimits, session_config};
    let dir = tempfile::tempdir().unwrap();
    drop(common::demo_engine(dir.path(), 50_000, 10).await);
    let store = metricstore::storage::Store::open(dir.path().to_str().unwrap()).unwrap();
    let engine = Engine::with_limits(
        store,
        session_config(),
        QueryLimits {
            max_result_points: 5_000,
            ..QueryLimits::default()
        },
    )
    .await
    .unwrap();
    let query = |period: &str, group_by: Option<&str>| {
        let mut q = serde_json::json!({"id": "q", "metricNamespace": "Alexa.Custom",
            "name": "UTTERANCES", "aggregationPeriod": period, "stat": "count"});
        if let Some(g) = group_by {
            q["groupBy"] = g.into();
        }
        let body = serde_json::json!({"startTime": "2026-01-01T00:00:00Z",
            "endTime": "2026-01-11T00:00:00Z", "metricQueries": [q]});
        metricstore::skill_metrics::check_request(&body, metricstore::generate::SKILLS[0])
            .unwrap()
            .queries
            .remove(0)
            .query
    };
    // 960 quarter hours: room for 5 groups only, and the skill has more
    // intents than that.
    let err = engine
        .run(&query("BY_15", Some("intent")))
        .await
        .unwrap_err();
    let Error::TooLarge {
        buckets, groups, ..
    } = err
    else {
        panic!("expected the budget's refusal, got {err}");
    };
    assert_eq!(buckets, 960);
    let text = err.to_string();
    assert!(text.contains("coarser period"), "{text}");
    let api: metricstore::api::ApiError = err.into();
    assert_eq!(api.status(), 400);
    // By day the same grouping fits, and the answer's groups are within
    // the estimate (approx_distinct plus the group without an intent).
    let series = engine.run(&query("BY_DAY", Some("intent"))).await.unwrap();
    assert!(
        series.len() as u64 <= groups + 1,
        "{} > {groups}",
        series.len()
    );
    assert!(series.len() > 5);
    // Ungrouped, quarter hours fit.
    assert_eq!(engine.run(&query("BY_15", None)).await.unwrap().len(), 1);
}
