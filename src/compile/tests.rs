use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field as ArrowField, Schema};

use super::*;
use crate::definition::{
    Aggregation, Bucket, Dimension, Events, Field, Filter, Operator, TimeRange, Value, builtin,
};
use crate::storage::events;

/// The events table as the engine registers it: file columns + `date`.
fn source() -> Arc<dyn TableSource> {
    let mut fields: Vec<ArrowField> = events::schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(ArrowField::new("date", DataType::Utf8, false));
    schema_source(Arc::new(Schema::new(fields)))
}

fn custom(name: &str, stat: &str, bucket: Bucket, group_by: Vec<Dimension>) -> Query {
    let metric = builtin::namespace("Alexa.Custom")
        .unwrap()
        .metric(name)
        .unwrap();
    Query {
        workspace_id: "amzn1.ask.skill.demo-trivia".into(),
        measure: metric.measure_for_stat(stat),
        filters: vec![],
        range: TimeRange {
            start_ms: 1_767_571_200_000,
            end_ms: 1_767_744_000_000,
        },
        bucket,
        group_by,
    }
}

fn plan(query: &Query) -> String {
    compile(query, source())
        .unwrap()
        .plan
        .display_indent_schema()
        .to_string()
}

#[test]
fn plan_of_a_count_by_hour() {
    insta::assert_snapshot!(plan(&custom("UTTERANCES", "count", Bucket::ByHour, vec![])));
}

#[test]
fn plan_of_a_ratio_of_two_selections_scans_once() {
    insta::assert_snapshot!(plan(&custom(
        "UTTERANCES_PER_ACTIVE_SESSION",
        "count",
        Bucket::ByDay,
        vec![]
    )));
}

#[test]
fn plan_of_latency_percentile_by_intent_and_country() {
    let q = custom(
        "SKILL_LATENCY",
        "p90",
        Bucket::ByWeek,
        vec![builtin::dimension("intent"), builtin::dimension("Country")],
    );
    insta::assert_snapshot!(plan(&q));
}

#[test]
fn plan_of_typed_json_filters() {
    let q = Query {
        workspace_id: "ws-demo".into(),
        measure: Measure::Aggregate {
            events: Events {
                event_types: vec!["interaction".into()],
                filters: vec![
                    Filter {
                        field: Field::Attribute("attempts".into()),
                        op: Operator::Gt,
                        value: serde_json::json!(3),
                    },
                    Filter {
                        field: Field::Attribute("country".into()),
                        op: Operator::Eq,
                        value: serde_json::json!("US"),
                    },
                    Filter {
                        field: Field::Column("action".into()),
                        op: Operator::Contains,
                        value: serde_json::json!("login"),
                    },
                ],
            },
            value: Value::Field(Field::Attribute("amount".into())),
            aggregation: Aggregation::Sum,
        },
        filters: vec![],
        range: TimeRange {
            start_ms: 0,
            end_ms: 3_600_000,
        },
        bucket: Bucket::Single,
        group_by: vec![Dimension::Field(Field::Column("origin".into()))],
    };
    insta::assert_snapshot!(plan(&q));
}

#[test]
fn hostile_values_stay_literals() {
    let q = Query {
        workspace_id: "x' OR '1'='1".into(),
        measure: Measure::Aggregate {
            events: Events {
                event_types: vec!["utterance'; DROP TABLE events; --".into()],
                filters: vec![],
            },
            value: Value::Count,
            aggregation: Aggregation::Count,
        },
        filters: vec![],
        range: TimeRange {
            start_ms: 0,
            end_ms: 1,
        },
        bucket: Bucket::Single,
        group_by: vec![],
    };
    let text = plan(&q);
    assert!(
        text.contains(r#"events.workspace_id = Utf8("x' OR '1'='1")"#),
        "{text}"
    );
}

#[test]
fn invalid_queries_are_errors_not_panics() {
    let mut q = custom("UTTERANCES", "count", Bucket::By15, vec![]);
    q.range = TimeRange {
        start_ms: 0,
        end_ms: i64::MAX,
    };
    assert!(compile(&q, source()).is_err());
    q.range = TimeRange {
        start_ms: 5,
        end_ms: 5,
    };
    assert!(compile(&q, source()).is_err());
}

/// A batch: measures with different selections get their own `FILTER`s,
/// a JSON path becomes `json_get_*` arguments, a test is a comparison that
/// stays null where its field is absent, a rate is a count scaled after
/// the aggregate; without sample sizes there are no `n{i}` columns.
#[test]
fn plan_of_a_batch_without_sample_sizes() {
    let path = Field::parse(r#"$["summary"]["scores"][0]"#).unwrap();
    let events = |filters: Vec<Filter>| Events {
        event_types: vec!["call_intelligence.row".into()],
        filters,
    };
    let batch = Batch {
        workspace_id: "ws".into(),
        range: TimeRange {
            start_ms: 1_767_571_200_000,
            end_ms: 1_767_657_600_000,
        },
        filters: vec![],
        bucket: Bucket::ByHour,
        group_by: vec![Grouping {
            dimension: Dimension::Field(Field::Column("session_id".into())),
            required: true,
        }],
        carry: vec![],
        measures: vec![
            Measure::Aggregate {
                events: events(vec![Filter {
                    field: path.clone(),
                    op: Operator::Gte,
                    value: 0.into(),
                }]),
                value: Value::Field(path),
                aggregation: Aggregation::Avg,
            },
            Measure::Aggregate {
                events: events(vec![]),
                value: Value::Test(Filter {
                    field: Field::Attribute("status".into()),
                    op: Operator::Neq,
                    value: "ok".into(),
                }),
                aggregation: Aggregation::TrueRatio,
            },
            Measure::Aggregate {
                events: events(vec![]),
                value: Value::Count,
                aggregation: Aggregation::Rate { per_ms: 60_000 },
            },
        ],
        sample_sizes: false,
    };
    let plan = compile_batch(&batch, source()).unwrap();
    insta::assert_snapshot!(plan.plan.display_indent_schema().to_string());
}

/// A batch holds aggregates only: a ratio is refused with its path.
#[test]
fn a_batch_refuses_combinations() {
    let leaf = Measure::Aggregate {
        events: Events::default(),
        value: Value::Count,
        aggregation: Aggregation::Count,
    };
    let batch = Batch {
        workspace_id: "ws".into(),
        range: TimeRange {
            start_ms: 0,
            end_ms: 3_600_000,
        },
        filters: vec![],
        bucket: Bucket::Single,
        group_by: vec![],
        carry: vec![],
        measures: vec![Measure::Ratio {
            numerator: Box::new(leaf.clone()),
            denominator: Box::new(leaf),
        }],
        sample_sizes: true,
    };
    let e = compile_batch(&batch, source()).unwrap_err().to_string();
    assert!(
        e.contains("measures[0]: a batch computes aggregates"),
        "{e}"
    );
}
