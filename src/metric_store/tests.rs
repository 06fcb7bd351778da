use serde_json::{Value, json};

use super::*;

fn good() -> Value {
    json!({
        "key": "avg_quality",
        "name": "Average quality",
        "metric_type": "numerical",
        "extraction_mode": "static",
        "extract_path": "$.quality_score",
        "aggregation": "avg"
    })
}

fn with(changes: Value) -> Value {
    let mut m = good();
    for (k, v) in changes.as_object().unwrap() {
        if v.is_null() {
            m.as_object_mut().unwrap().remove(k);
        } else {
            m[k] = v.clone();
        }
    }
    json!({"metrics": [m]})
}

/// The fields named by the problems of a body.
fn fields(body: Value) -> Vec<String> {
    match check_settings(&body) {
        Ok(_) => Vec::new(),
        Err(p) => p.into_iter().map(|p| p.field).collect(),
    }
}

#[test]
fn builtins_are_41_valid_and_cover_every_source() {
    let b = builtins();
    assert_eq!(b.len(), 41);
    let mut keys = std::collections::HashSet::new();
    for d in b {
        assert!(keys.insert(&d.key), "duplicate built-in {}", d.key);
        assert!(
            valid_key(&d.key) && d.key.len() <= MAX_KEY_CHARS,
            "{}",
            d.key
        );
        assert!(d.builtin && d.active);
        assert_eq!(d.extraction_mode, ExtractionMode::Static);
        assert!(
            d.sql_expr.is_some() ^ d.extract_path.is_some(),
            "{}: one of sql_expr and extract_path",
            d.key
        );
        if let Some(p) = &d.extract_path {
            path::JsonPath::parse(p).unwrap();
        }
    }
    for s in Source::ALL {
        assert!(b.iter().any(|d| d.source == s), "no built-in reads {s:?}");
    }
}

#[test]
fn a_good_custom_metric_is_accepted_with_defaults() {
    let s = check_settings(&with(json!({}))).unwrap();
    assert_eq!(s.custom.len(), 1);
    let d = &s.custom[0];
    assert_eq!(d.period_granularity, Granularity::Daily);
    assert_eq!(d.channel_scope, ChannelScope::All);
    assert_eq!(d.source, Source::CallIntelligence);
    assert!(d.active && !d.builtin);
    assert_eq!(s.all().len(), 42);
}

#[test]
fn every_documented_rule_names_its_field() {
    let cases: Vec<(Value, &str)> = vec![
        (with(json!({"key": "Bad"})), "metrics[0].key"),
        (with(json!({"key": "1abc"})), "metrics[0].key"),
        (with(json!({"key": "catalog"})), "metrics[0].key"),
        (with(json!({"key": "a-b"})), "metrics[0].key"),
        (with(json!({"key": "a".repeat(65)})), "metrics[0].key"),
        (with(json!({"key": null})), "metrics[0].key"),
        (with(json!({"name": "n".repeat(257)})), "metrics[0].name"),
        (with(json!({"name": null})), "metrics[0].name"),
        (
            with(json!({"description": "d".repeat(2001)})),
            "metrics[0].description",
        ),
        (
            with(json!({"metric_type": "float"})),
            "metrics[0].metric_type",
        ),
        (
            with(json!({"extraction_mode": "magic"})),
            "metrics[0].extraction_mode",
        ),
        (
            with(json!({"extract_path": null})),
            "metrics[0].extract_path",
        ),
        (
            with(json!({"extract_path": "quality"})),
            "metrics[0].extract_path",
        ),
        (
            with(json!({"extract_path": "$.a[*]"})),
            "metrics[0].extract_path",
        ),
        (
            with(
                json!({"extraction_mode": "ai_query", "extract_path": null, "model_tier": "fast"}),
            ),
            "metrics[0].ai_query_prompt",
        ),
        (
            with(
                json!({"extraction_mode": "ai_query", "extract_path": null, "ai_query_prompt": "p".repeat(8001), "model_tier": "fast"}),
            ),
            "metrics[0].ai_query_prompt",
        ),
        (
            with(
                json!({"extraction_mode": "ai_query", "extract_path": null, "ai_query_prompt": "Rate it"}),
            ),
            "metrics[0].model_tier",
        ),
        (
            with(
                json!({"extraction_mode": "ai_query", "extract_path": null, "ai_query_prompt": "Rate it", "model_tier": "huge"}),
            ),
            "metrics[0].model_tier",
        ),
        (
            with(
                json!({"extraction_mode": "ai_classify", "extract_path": null, "metric_type": "categorical", "aggregation": "count"}),
            ),
            "metrics[0].ai_labels",
        ),
        (
            with(
                json!({"extraction_mode": "ai_extract", "extract_path": null, "metric_type": "categorical", "aggregation": "count", "ai_labels": []}),
            ),
            "metrics[0].ai_labels",
        ),
        (
            with(json!({"sql_expr": "latency_ms * 2"})),
            "metrics[0].sql_expr",
        ),
        (
            with(json!({"aggregation": "median"})),
            "metrics[0].aggregation",
        ),
        (
            with(json!({"aggregation": "p90"})),
            "metrics[0].aggregation",
        ),
        (
            with(json!({"period_granularity": "weekly"})),
            "metrics[0].period_granularity",
        ),
        (
            with(json!({"channel_scope": "fax"})),
            "metrics[0].channel_scope",
        ),
        (
            with(json!({"valid_range_min": 10, "valid_range_max": 5})),
            "metrics[0].valid_range_min",
        ),
        (
            with(json!({"valid_range_max": "high"})),
            "metrics[0].valid_range_max",
        ),
        (with(json!({"active": "yes"})), "metrics[0].active"),
        (with(json!({"source": "crm"})), "metrics[0].source"),
        (with(json!({"colour": "red"})), "metrics[0].colour"),
        (with(json!({"key": "call_count"})), "metrics[0].key"),
        (
            with(json!({"metric_type": "categorical", "aggregation": "avg"})),
            "metrics[0].aggregation",
        ),
        (json!({"metrics": "all"}), "metrics"),
        (json!([1, 2]), "body"),
        (json!({"metrics": [], "extra": 1}), "extra"),
    ];
    for (body, field) in cases {
        let got = fields(body.clone());
        assert!(
            got.iter().any(|f| f == field),
            "{body} should name {field}, named {got:?}"
        );
    }
}

#[test]
fn duplicates_the_limit_and_builtin_toggles() {
    let m = good();
    assert!(
        fields(json!({"metrics": [m.clone(), m.clone()]})).contains(&"metrics[1].key".to_string())
    );
    let many: Vec<Value> = (0..51)
        .map(|i| {
            let mut m = good();
            m["key"] = json!(format!("m{i}"));
            m
        })
        .collect();
    assert_eq!(
        fields(json!({"metrics": many})),
        vec!["metrics".to_string()]
    );
    let fifty: Vec<Value> = (0..50)
        .map(|i| {
            let mut m = good();
            m["key"] = json!(format!("m{i}"));
            m
        })
        .collect();
    assert!(check_settings(&json!({"metrics": fifty})).is_ok());

    // Built-ins may be switched off, never redefined or invented.
    let s = check_settings(&json!({"metrics": [
        {"key": "call_count", "builtin": true, "active": false, "name": "ignored"}
    ]}))
    .unwrap();
    assert!(!s.get("call_count").unwrap().active);
    assert!(s.get("call_count").unwrap().builtin);
    assert_eq!(
        fields(json!({"metrics": [{"key": "nope", "builtin": true}]})),
        vec!["metrics[0].key".to_string()]
    );
}

#[test]
fn ai_answers_are_read_as_the_metric_type() {
    use extract::{Answer, interpret};
    let mut d = check_settings(&with(json!({
        "extraction_mode": "ai_query", "extract_path": null,
        "ai_query_prompt": "Rate 0-100", "model_tier": "fast",
        "valid_range_min": 0, "valid_range_max": 100
    })))
    .unwrap()
    .custom
    .remove(0);
    assert_eq!(interpret(&d, " 72.5 "), Answer::Number(72.5));
    assert_eq!(interpret(&d, "Score: 40."), Answer::Number(40.0));
    assert!(matches!(interpret(&d, "150"), Answer::Dropped(_)));
    assert!(matches!(interpret(&d, "great"), Answer::Dropped(_)));
    d.metric_type = MetricType::Boolean;
    assert_eq!(interpret(&d, "Yes."), Answer::Bool(true));
    assert_eq!(interpret(&d, "no"), Answer::Bool(false));
    d.metric_type = MetricType::Categorical;
    d.extraction_mode = ExtractionMode::AiClassify;
    d.ai_labels = Some(vec!["billing".into(), "sales".into()]);
    assert_eq!(
        interpret(&d, "\"Billing\""),
        Answer::Labels(vec!["billing".into()])
    );
    assert!(matches!(interpret(&d, "support"), Answer::Dropped(_)));
    d.extraction_mode = ExtractionMode::AiExtract;
    assert_eq!(
        interpret(&d, "sales, billing, other"),
        Answer::Labels(vec!["sales".into(), "billing".into()])
    );
    assert_eq!(interpret(&d, "none"), Answer::Labels(vec![]));
}

/// The plan of one source's metrics: one filter, one aggregate with two
/// columns per metric, JSON paths as `json_get_*` calls, literals only.
#[test]
fn plan_of_a_source_snapshot() {
    use compile::{Level, Selection, numeric_plan};
    let ctx = datafusion::prelude::SessionContext::new();
    crate::udaf::register_all(&ctx).unwrap();
    let source = crate::compile::schema_source(crate::storage::events::schema());
    let defs: Vec<&MetricDef> = builtins()
        .iter()
        .filter(|d| {
            [
                "call_count",
                "resolution_rate",
                "quality_score_avg",
                "response_latency_p95",
            ]
            .contains(&d.key.as_str())
        })
        .collect();
    let sel = Selection {
        workspace: "ws-demo".into(),
        from_ms: 1_767_830_400_000,
        to_ms: 1_767_916_800_000,
        session_id: None,
        service_id: None,
    };
    let plan = numeric_plan(
        &ctx,
        source,
        &sel,
        Source::CallIntelligence,
        Level::Call,
        Some(Granularity::Daily),
        &defs,
    )
    .unwrap();
    insta::assert_snapshot!(plan.display_indent_schema().to_string());
}
