//! The compiler against a brute-force oracle: random definitions (filters,
//! selections, aggregations, buckets, group-bys) over random events, each
//! computed by the engine and by a plain Rust loop over the same rows; and
//! the same for Metric Store definitions, through the pipeline.

mod common;

use common::metric_store_oracle::{Ask, Rows, expected};
use common::oracle::{Oracle, oracle};

use metricstore::definition::{
    Aggregation, Bucket, Dimension, Events, Field, Filter, Measure, Operator, Query, TimeRange,
    Value,
};
use metricstore::metric_store::compute::{Spec, compute};
use metricstore::metric_store::level::{Level, Selection};
use metricstore::metric_store::{Granularity, MetricDef, MetricType, Source, builtins};
use metricstore::storage::Store;
use metricstore::storage::events::{EventRow, write_rows};
use metricstore::storage::values::ValueRow;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const T0: i64 = 1_767_571_200_000; // 2026-01-05T00:00:00Z, a Monday
const SPAN: i64 = 3 * 86_400_000;

fn random_rows(rng: &mut StdRng, n: usize) -> Vec<EventRow> {
    let pick =
        |rng: &mut StdRng, items: &[&str]| items[rng.random_range(0..items.len())].to_string();
    (0..n)
        .map(|_| {
            let mut attrs = serde_json::Map::new();
            if rng.random_bool(0.8) {
                attrs.insert("country".into(), pick(rng, &["US", "DE", "FR"]).into());
            }
            if rng.random_bool(0.7) {
                attrs.insert("attempts".into(), rng.random_range(0..7).into());
            }
            if rng.random_bool(0.5) {
                attrs.insert("flag".into(), rng.random_bool(0.3).into());
            }
            EventRow {
                time: T0 - 3_600_000 + rng.random_range(0..SPAN + 7_200_000),
                workspace_id: pick(rng, &["w1", "w1", "w2"]),
                event_type: pick(
                    rng,
                    &["utterance", "utterance", "session.started", "interaction"],
                ),
                user_id: rng
                    .random_bool(0.9)
                    .then(|| format!("u{}", rng.random_range(0..12))),
                session_id: Some(format!("s{}", rng.random_range(0..30))),
                stage: Some(pick(rng, &["live", "development"])),
                locale: rng
                    .random_bool(0.9)
                    .then(|| pick(rng, &["en-US", "de-DE", "en-GB"])),
                intent: rng.random_bool(0.8).then(|| pick(rng, &["A", "B", "C"])),
                outcome: Some(pick(rng, &["success", "failed"])),
                latency_ms: rng
                    .random_bool(0.9)
                    .then(|| (rng.random_range(1.0f64..2000.0) * 10.0).round() / 10.0),
                attributes: (!attrs.is_empty())
                    .then(|| serde_json::Value::Object(attrs).to_string()),
                ..Default::default()
            }
        })
        .collect()
}

fn random_filter(rng: &mut StdRng) -> Filter {
    match rng.random_range(0..6) {
        0 => Filter {
            field: Field::Column("stage".into()),
            op: Operator::Eq,
            value: "live".into(),
        },
        1 => Filter {
            field: Field::Column("intent".into()),
            op: Operator::Neq,
            value: "A".into(),
        },
        2 => Filter {
            field: Field::Attribute("attempts".into()),
            op: [Operator::Gt, Operator::Lte, Operator::Gte][rng.random_range(0..3)],
            value: rng.random_range(0..6).into(),
        },
        3 => Filter {
            field: Field::Attribute("country".into()),
            op: Operator::Eq,
            value: "US".into(),
        },
        4 => Filter {
            field: Field::Column("locale".into()),
            op: Operator::Contains,
            value: "en".into(),
        },
        _ => Filter {
            field: Field::Column("latency_ms".into()),
            op: Operator::Lt,
            value: 900.into(),
        },
    }
}

fn random_aggregate(rng: &mut StdRng) -> Measure {
    let types = [
        vec!["utterance".to_string()],
        vec!["session.started".to_string()],
        vec![],
        vec!["utterance".to_string(), "interaction".to_string()],
    ];
    let events = Events {
        event_types: types[rng.random_range(0..types.len())].clone(),
        filters: (0..rng.random_range(0..3))
            .map(|_| random_filter(rng))
            .collect(),
    };
    let (value, aggregation) = match rng.random_range(0..9) {
        0 => (Value::Count, Aggregation::Count),
        1 => (
            Value::Field(Field::Column("intent".into())),
            Aggregation::Count,
        ),
        2 => (
            Value::Field(Field::Column("latency_ms".into())),
            Aggregation::Sum,
        ),
        3 => (
            Value::Field(Field::Column("latency_ms".into())),
            Aggregation::Avg,
        ),
        4 => (
            Value::Field(Field::Attribute("attempts".into())),
            Aggregation::Min,
        ),
        5 => (
            Value::Field(Field::Attribute("attempts".into())),
            Aggregation::Max,
        ),
        6 => (
            Value::Field(Field::Column("user_id".into())),
            Aggregation::DistinctCount,
        ),
        7 => (
            Value::Field(Field::Column("latency_ms".into())),
            Aggregation::Quantile {
                q: [0.5, 0.9, 0.99][rng.random_range(0..3)],
            },
        ),
        _ => (
            Value::Field(Field::Attribute("flag".into())),
            Aggregation::TrueRatio,
        ),
    };
    Measure::Aggregate {
        events,
        value,
        aggregation,
    }
}

fn random_query(rng: &mut StdRng) -> Query {
    let measure = match rng.random_range(0..5) {
        0 => Measure::Ratio {
            numerator: Box::new(random_aggregate(rng)),
            denominator: Box::new(random_aggregate(rng)),
        },
        1 => Measure::Difference {
            left: Box::new(random_aggregate(rng)),
            right: Box::new(random_aggregate(rng)),
        },
        _ => random_aggregate(rng),
    };
    let start = T0 + rng.random_range(-2..30) * 900_000 + rng.random_range(0..2) * 12_345;
    let end = start + rng.random_range(1..200) * 900_000;
    let dims = [
        Dimension::Field(Field::Column("intent".into())),
        Dimension::Field(Field::Column("stage".into())),
        Dimension::Field(Field::Attribute("country".into())),
        Dimension::Country,
    ];
    let mut group_by = Vec::new();
    for d in dims {
        if rng.random_bool(0.25) {
            group_by.push(d);
        }
    }
    Query {
        workspace_id: "w1".into(),
        measure,
        filters: if rng.random_bool(0.3) {
            vec![random_filter(rng)]
        } else {
            vec![]
        },
        range: TimeRange {
            start_ms: start,
            end_ms: end,
        },
        bucket: [
            Bucket::By15,
            Bucket::ByHour,
            Bucket::ByDay,
            Bucket::ByWeek,
            Bucket::Single,
        ][rng.random_range(0..5)],
        group_by,
    }
}

#[tokio::test]
async fn random_definitions_agree_with_brute_force() {
    let mut rng = StdRng::seed_from_u64(20260105);
    let rows = random_rows(&mut rng, 3000);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().to_str().unwrap()).unwrap();
    write_rows(&store, "oracle", &rows).await.unwrap();
    if let Ok(d) = std::env::var("ORACLE_DUMP") {
        write_rows(&Store::open(&d).unwrap(), "oracle", &rows)
            .await
            .unwrap();
    }
    let engine = metricstore::engine::Engine::new(store).await.unwrap();
    for case in 0..120 {
        let q = random_query(&mut rng);
        if std::env::var("ORACLE_CASE").ok() == Some(case.to_string()) {
            let c = engine.compile(&q).unwrap();
            let b = engine.execute(c.plan.clone()).await.unwrap();
            eprintln!(
                "{}",
                metricstore::format::render(&b, metricstore::format::Format::Table).unwrap()
            );
            let df = engine.ctx.execute_logical_plan(c.plan).await.unwrap();
            eprintln!("{}", df.into_optimized_plan().unwrap().display_indent());
        }
        let got = engine
            .run(&q)
            .await
            .unwrap_or_else(|e| panic!("case {case}: {e}\n{q:#?}"));
        let want = oracle(&rows, &q);
        let got: Oracle = got.into_iter().map(|s| (s.group, s.points)).collect();
        // A group whose every point was left out is absent in both.
        let want: Oracle = want.into_iter().filter(|(_, p)| !p.is_empty()).collect();
        let got_nonempty: Oracle = got.into_iter().filter(|(_, p)| !p.is_empty()).collect();
        assert_eq!(
            got_nonempty.keys().collect::<Vec<_>>(),
            want.keys().collect::<Vec<_>>(),
            "case {case}: groups differ\n{q:#?}"
        );
        for (g, wp) in &want {
            let gp = &got_nonempty[g];
            assert_eq!(
                gp.len(),
                wp.len(),
                "case {case} group {g:?}: {gp:?} vs {wp:?}\n{q:#?}"
            );
            for (a, b) in gp.iter().zip(wp) {
                let close = (a.1 - b.1).abs() <= 1e-9 * b.1.abs().max(1.0);
                assert!(
                    a.0 == b.0 && close,
                    "case {case} group {g:?}: got {a:?}, want {b:?}\n{q:#?}"
                );
            }
        }
    }
}

const CI: &str = "call_intelligence.row";

/// Events of the Metric Store's sources: nested JSON, booleans, services,
/// simulated conversations, channels and directions, values out of range.
fn random_store_rows(rng: &mut StdRng, n: usize) -> Vec<EventRow> {
    let pick =
        |rng: &mut StdRng, items: &[&str]| items[rng.random_range(0..items.len())].to_string();
    (0..n)
        .map(|_| {
            let mut a = serde_json::Map::new();
            if rng.random_bool(0.8) {
                a.insert("quality_score".into(), rng.random_range(-10..120).into());
            }
            if rng.random_bool(0.6) {
                a.insert("resolved".into(), rng.random_bool(0.6).into());
            }
            if rng.random_bool(0.7) {
                a.insert(
                    "sentiment".into(),
                    pick(rng, &["positive", "neutral", "negative", "mixed"]).into(),
                );
            }
            if rng.random_bool(0.7) {
                a.insert("service_id".into(), pick(rng, &["svc-a", "svc-b"]).into());
            }
            if rng.random_bool(0.15) {
                a.insert("simulation".into(), true.into());
            }
            if rng.random_bool(0.6) {
                a.insert(
                    "kind".into(),
                    pick(rng, &["order", "refund_requested", "visit"]).into(),
                );
            }
            if rng.random_bool(0.7) {
                let scores: Vec<serde_json::Value> = (0..rng.random_range(0..3))
                    .map(|_| rng.random_range(0..10).into())
                    .collect();
                a.insert(
                    "summary".into(),
                    serde_json::json!({"scores": scores, "agent id": pick(rng, &["x", "y", "z"])}),
                );
            }
            EventRow {
                time: T0 + rng.random_range(0..2 * 86_400_000),
                workspace_id: pick(rng, &["w1", "w1", "w2"]),
                event_type: pick(rng, &[CI, CI, "world.event", "surface.event"]),
                user_id: rng
                    .random_bool(0.9)
                    .then(|| format!("u{}", rng.random_range(0..12))),
                session_id: rng
                    .random_bool(0.95)
                    .then(|| format!("s{}", rng.random_range(0..40))),
                channel: rng
                    .random_bool(0.9)
                    .then(|| pick(rng, &["voice", "text", "surface"])),
                direction: rng
                    .random_bool(0.8)
                    .then(|| pick(rng, &["inbound", "outbound"])),
                outcome: rng
                    .random_bool(0.9)
                    .then(|| pick(rng, &["resolved", "escalated", "abandoned"])),
                latency_ms: rng
                    .random_bool(0.9)
                    .then(|| rng.random_range(-50..2000) as f64),
                attributes: Some(serde_json::Value::Object(a).to_string()),
                ..Default::default()
            }
        })
        .collect()
}

/// A random custom definition (static JSON path), as a workspace would
/// save it: every metric type, aggregation, path shape, range, category
/// list, channel scope and granularity.
fn random_store_def(rng: &mut StdRng, i: usize) -> MetricDef {
    fn pick(rng: &mut StdRng, items: &[&'static str]) -> &'static str {
        items[rng.random_range(0..items.len())]
    }
    let metric_type = pick(rng, &["numerical", "numerical", "categorical", "boolean"]);
    let (path, aggregation) = match metric_type {
        "numerical" => (
            pick(
                rng,
                &[
                    "$.quality_score",
                    "$.summary.scores[0]",
                    "$['summary']['scores'][1]",
                ],
            ),
            pick(
                rng,
                &[
                    "count",
                    "sum",
                    "avg",
                    "min",
                    "max",
                    "count_distinct",
                    "ratio",
                    "rate",
                ],
            ),
        ),
        "categorical" => (
            pick(rng, &["$.sentiment", "$.summary['agent id']", "$.kind"]),
            pick(rng, &["count", "count_distinct"]),
        ),
        _ => ("$.resolved", pick(rng, &["ratio", "count", "rate"])),
    };
    let mut def = serde_json::json!({
        "key": format!("m{i}"),
        "name": format!("metric {i}"),
        "metric_type": metric_type,
        "source": pick(rng, &["call_intelligence", "world_events"]),
        "extraction_mode": "static",
        "extract_path": path,
        "aggregation": aggregation,
        "period_granularity": pick(rng, &["hourly", "daily"]),
        "channel_scope": pick(rng, &["all", "all", "voice", "text", "inbound", "outbound"]),
    });
    if def["source"] == "world_events" {
        def["event_types"] = serde_json::json!(if rng.random_bool(0.5) {
            vec!["world.event", CI]
        } else {
            vec!["world.event"]
        });
    }
    if metric_type == "numerical" && rng.random_bool(0.5) {
        def["valid_range_min"] = rng.random_range(-5..3).into();
        if rng.random_bool(0.5) {
            def["valid_range_max"] = rng.random_range(4..100).into();
        }
    }
    if metric_type == "categorical" && rng.random_bool(0.5) {
        def["categories"] = serde_json::json!(["positive", "negative", "x", "order"]);
    }
    serde_json::from_value(def).unwrap()
}

fn stored(rows: &[ValueRow]) -> Rows {
    rows.iter()
        .map(|r| {
            (
                (
                    r.period_start,
                    r.source.clone(),
                    format!("{}:{}", r.metric_key, r.entity_id),
                    r.category.clone(),
                ),
                (r.value, r.sample_size),
            )
        })
        .collect()
}

/// Metric Store definitions (random custom ones and every static and
/// `sql_expr` built-in), at the three levels, hourly, daily and over a
/// whole range, through the pipeline's computation, against a plain loop
/// that reads the definitions' own fields.
#[tokio::test]
async fn metric_store_definitions_agree_with_brute_force() {
    let mut rng = StdRng::seed_from_u64(20260106);
    let rows = random_store_rows(&mut rng, 4000);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().to_str().unwrap()).unwrap();
    write_rows(&store, "oracle", &rows).await.unwrap();
    let engine = metricstore::engine::Engine::new(store).await.unwrap();
    let mut defs: Vec<MetricDef> = (0..60).map(|i| random_store_def(&mut rng, i)).collect();
    defs.extend(
        builtins()
            .iter()
            .filter(|d| !d.extraction_mode.is_ai())
            .filter(|d| [Source::CallIntelligence, Source::WorldEvents].contains(&d.source))
            .cloned(),
    );
    let day = T0;
    let mut checked = 0;
    for (level, width, from, to) in [
        (
            Level::Workspace,
            Some(Granularity::Hourly),
            day,
            day + 86_400_000,
        ),
        (
            Level::Workspace,
            Some(Granularity::Daily),
            day,
            day + 86_400_000,
        ),
        (
            Level::Service,
            Some(Granularity::Daily),
            day,
            day + 86_400_000,
        ),
        (Level::Call, Some(Granularity::Daily), day, day + 86_400_000),
        (
            Level::Workspace,
            None,
            day + 3_600_000,
            day + 30 * 3_600_000,
        ),
        (Level::Call, None, day + 3_600_000, day + 30 * 3_600_000),
    ] {
        let sel = Selection {
            workspace: "w1".into(),
            from_ms: from,
            to_ms: to,
            session_id: None,
            service_id: None,
        };
        let spec = Spec {
            ws: "w1",
            level,
            granularity: width,
            sel: &sel,
            now_ms: 0,
        };
        let ask = Ask {
            ws: "w1",
            level: level.entity_type(),
            width_ms: width.map(Granularity::ms),
            from_ms: from,
            to_ms: to,
        };
        for source in [Source::CallIntelligence, Source::WorldEvents] {
            let of_source: Vec<&MetricDef> = defs.iter().filter(|d| d.source == source).collect();
            // Numerical and boolean metrics of a source in one batch, each
            // categorical one alone, as the pipeline runs them.
            let mut runs: Vec<Vec<&MetricDef>> = vec![
                of_source
                    .iter()
                    .copied()
                    .filter(|d| d.metric_type != MetricType::Categorical)
                    .collect(),
            ];
            runs.extend(
                of_source
                    .iter()
                    .filter(|d| d.metric_type == MetricType::Categorical)
                    .map(|d| vec![*d]),
            );
            for run in runs.into_iter().filter(|r| !r.is_empty()) {
                let got = compute(&engine, engine.events_source(), &spec, &run)
                    .await
                    .unwrap_or_else(|e| panic!("{level:?} {width:?}: {e}"));
                let got = stored(&got);
                let want = expected(&rows, &run, &ask);
                let keys = |r: &Rows| r.keys().cloned().collect::<Vec<_>>();
                assert_eq!(
                    keys(&got),
                    keys(&want),
                    "{level:?} {width:?} {:?}",
                    run.iter().map(|d| &d.key).collect::<Vec<_>>()
                );
                for (k, (gv, gn)) in &got {
                    let (wv, wn) = want[k];
                    let close = match (gv, wv) {
                        (Some(a), Some(b)) => (a - b).abs() <= 1e-9 * b.abs().max(1.0),
                        (None, None) => true,
                        _ => false,
                    };
                    assert!(
                        close && *gn == wn,
                        "{level:?} {width:?} {k:?}: got {gv:?} n={gn}, want {wv:?} n={wn}\n{:#?}",
                        run.iter().find(|d| k.2.starts_with(&format!("{}:", d.key)))
                    );
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 1000, "only {checked} values compared");
}
