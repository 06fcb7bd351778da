//! The compiler against a brute-force oracle: random definitions (filters,
//! selections, aggregations, buckets, group-bys) over random events, each
//! computed by the engine and by a plain Rust loop over the same rows.

mod common;

use common::oracle::{Oracle, oracle};

use metricstore::definition::{
    Aggregation, Bucket, Dimension, Events, Field, Filter, Measure, Operator, Query, TimeRange,
    Value,
};
use metricstore::storage::Store;
use metricstore::storage::events::{EventRow, write_rows};
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
