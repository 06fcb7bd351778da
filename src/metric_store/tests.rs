use serde_json::{Value, json};

use super::*;
use level::{Level, Selection};

fn good() -> Value {
    json!({
        "key": "avg_quality",
        "name": "Average quality",
        "metric_type": "numerical",
        "source": "call_intelligence",
        "event_types": ["call_intelligence.row"],
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
    json!({"definitions": [m]})
}

/// The fields named by the problems of a body.
fn fields(body: Value) -> Vec<String> {
    match check_settings(&body) {
        Ok(_) => Vec::new(),
        Err(p) => p.into_iter().map(|p| p.path).collect(),
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
        assert!(d.event_types.is_empty(), "{}: reads its source's", d.key);
        match d.extraction_mode {
            ExtractionMode::Static => assert!(d.extract_path.is_some() && d.sql_expr.is_none()),
            ExtractionMode::SqlExpr => assert!(d.sql_expr.is_some() && d.extract_path.is_none()),
            m => panic!("{}: built-ins are static or sql_expr, not {m:?}", d.key),
        }
        if let Some(p) = &d.extract_path {
            crate::definition::JsonPath::parse(p).unwrap();
        }
    }
    for s in Source::ALL {
        assert!(b.iter().any(|d| d.source == s), "no built-in reads {s:?}");
    }
    // The document's built-in, as the document shows it.
    let doc: Value = serde_json::from_str(include_str!(
        "../../fixtures/docs/metric_store/settings_get_response.json"
    ))
    .unwrap();
    let vqs = b.iter().find(|d| d.key == "voice_quality_score").unwrap();
    assert_eq!(serde_json::to_value(vqs).unwrap(), doc["definitions"][0]);
}

#[test]
fn the_documents_examples_are_saved_as_written() {
    let examples = [
        include_str!("../../fixtures/docs/metric_store/example_empathy_score.json"),
        include_str!("../../fixtures/docs/metric_store/example_protocol_followed.json"),
        include_str!("../../fixtures/docs/metric_store/example_call_topic.json"),
    ];
    let defs: Vec<Value> = examples
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let s = check_settings(&json!({"definitions": defs})).unwrap();
    assert_eq!(s.custom.len(), 3);
    for (d, written) in s.custom.iter().zip(&defs) {
        // Read back: the fields written, plus active and builtin.
        let mut expected = written.clone();
        expected["active"] = json!(true);
        expected["builtin"] = json!(false);
        assert_eq!(serde_json::to_value(d).unwrap(), expected, "{}", d.key);
    }
    let topic = &s.custom[2];
    assert_eq!(topic.tier(), ModelTier::Fast);
    assert_eq!(topic.categories.as_ref().unwrap().len(), 7);
    assert_eq!(s.custom[0].tier(), ModelTier::Balanced);
    for body in [
        include_str!("../../fixtures/docs/metric_store/settings_put_curl.json"),
        include_str!("../../fixtures/docs/metric_store/settings_put_python.json"),
    ] {
        let s = check_settings(&serde_json::from_str(body).unwrap()).unwrap();
        assert_eq!(s.custom[0].key, "empathy_score");
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
    assert_eq!(d.event_types, vec!["call_intelligence.row".to_string()]);
    assert_eq!(d.tier(), ModelTier::Free);
    assert!(d.active && !d.builtin);
    assert_eq!(s.all().len(), 42);
    // aggregation defaults to count.
    let s = check_settings(&with(json!({"aggregation": null}))).unwrap();
    assert_eq!(s.custom[0].aggregation, AggregationName::Count);
    // Directions are channel scopes too; world_events reads any event type.
    let s = check_settings(&with(json!({"channel_scope": "outbound"}))).unwrap();
    assert_eq!(
        s.custom[0].channel_scope.filter(),
        Some(("direction", "outbound"))
    );
    let s = check_settings(&with(
        json!({"source": "world_events", "event_types": ["utterance", "world.event"]}),
    ))
    .unwrap();
    assert_eq!(s.custom[0].event_types(), vec!["utterance", "world.event"]);
    // A unit of 32 characters is the longest.
    assert!(check_settings(&with(json!({"unit": "u".repeat(32)}))).is_ok());
    // Every tier, and the earlier names in stored settings.
    for t in ["free", "fast", "balanced", "max"] {
        let s = check_settings(&with(json!({
            "extraction_mode": "ai_query", "extract_path": null,
            "ai_query_prompt": "Rate it", "model_tier": t
        })))
        .unwrap();
        assert_eq!(s.custom[0].tier().name(), t);
    }
    let stored: ModelTier = serde_json::from_value(json!("advanced")).unwrap();
    assert_eq!(stored, ModelTier::Max);
}

#[test]
fn every_documented_rule_names_its_field() {
    let cases: Vec<(Value, &str)> = vec![
        (with(json!({"key": "Bad"})), "definitions[0].key"),
        (with(json!({"key": "1abc"})), "definitions[0].key"),
        (with(json!({"key": "catalog"})), "definitions[0].key"),
        (with(json!({"key": "a-b"})), "definitions[0].key"),
        (with(json!({"key": "a".repeat(65)})), "definitions[0].key"),
        (with(json!({"key": null})), "definitions[0].key"),
        (
            with(json!({"name": "n".repeat(257)})),
            "definitions[0].name",
        ),
        (with(json!({"name": null})), "definitions[0].name"),
        (
            with(json!({"description": "d".repeat(2001)})),
            "definitions[0].description",
        ),
        (
            with(json!({"metric_type": "float"})),
            "definitions[0].metric_type",
        ),
        (
            with(json!({"extraction_mode": "magic"})),
            "definitions[0].extraction_mode",
        ),
        (
            with(json!({"extract_path": null})),
            "definitions[0].extract_path",
        ),
        (
            with(json!({"extract_path": "quality"})),
            "definitions[0].extract_path",
        ),
        (
            with(json!({"extract_path": "$.a[*]"})),
            "definitions[0].extract_path",
        ),
        (
            with(
                json!({"extraction_mode": "ai_query", "extract_path": null, "model_tier": "fast"}),
            ),
            "definitions[0].ai_query_prompt",
        ),
        (
            with(
                json!({"extraction_mode": "ai_query", "extract_path": null, "ai_query_prompt": "p".repeat(8001), "model_tier": "fast"}),
            ),
            "definitions[0].ai_query_prompt",
        ),
        (
            with(
                json!({"extraction_mode": "ai_query", "extract_path": null, "ai_query_prompt": "Rate it"}),
            ),
            "definitions[0].model_tier",
        ),
        (
            with(
                json!({"extraction_mode": "ai_query", "extract_path": null, "ai_query_prompt": "Rate it", "model_tier": "huge"}),
            ),
            "definitions[0].model_tier",
        ),
        (
            with(
                json!({"extraction_mode": "ai_classify", "extract_path": null, "metric_type": "categorical", "aggregation": "count"}),
            ),
            "definitions[0].ai_labels",
        ),
        (
            with(
                json!({"extraction_mode": "ai_extract", "extract_path": null, "metric_type": "categorical", "aggregation": "count", "ai_labels": []}),
            ),
            "definitions[0].ai_labels",
        ),
        (
            with(json!({"sql_expr": "latency_ms * 2"})),
            "definitions[0].sql_expr",
        ),
        (
            with(json!({"aggregation": "median"})),
            "definitions[0].aggregation",
        ),
        (
            with(json!({"aggregation": "p90"})),
            "definitions[0].aggregation",
        ),
        (
            with(json!({"period_granularity": "weekly"})),
            "definitions[0].period_granularity",
        ),
        (
            with(json!({"channel_scope": "fax"})),
            "definitions[0].channel_scope",
        ),
        (
            with(json!({"valid_range_min": 10, "valid_range_max": 5})),
            "definitions[0].valid_range_min",
        ),
        (
            with(json!({"valid_range_max": "high"})),
            "definitions[0].valid_range_max",
        ),
        (with(json!({"active": "yes"})), "definitions[0].active"),
        (with(json!({"source": "crm"})), "definitions[0].source"),
        (with(json!({"source": null})), "definitions[0].source"),
        (
            with(json!({"event_types": null})),
            "definitions[0].event_types",
        ),
        (
            with(json!({"event_types": []})),
            "definitions[0].event_types",
        ),
        (
            with(json!({"event_types": "call_intelligence.row"})),
            "definitions[0].event_types",
        ),
        (
            with(json!({"event_types": ["emotion.detected"]})),
            "definitions[0].event_types[0]",
        ),
        (
            with(json!({"event_types": ["call_intelligence.row", "call_intelligence.row"]})),
            "definitions[0].event_types[1]",
        ),
        (with(json!({"unit": "u".repeat(33)})), "definitions[0].unit"),
        (
            with(json!({"extraction_mode": "sql_expr"})),
            "definitions[0].extraction_mode",
        ),
        (
            with(json!({"categories": ["a", "b"]})),
            "definitions[0].categories",
        ),
        (
            with(json!({"metric_type": "categorical", "aggregation": "count", "categories": []})),
            "definitions[0].categories",
        ),
        (
            with(
                json!({"metric_type": "categorical", "aggregation": "count", "categories": ["a", "a"]}),
            ),
            "definitions[0].categories[1]",
        ),
        (
            with(
                json!({"metric_type": "categorical", "aggregation": "count", "extraction_mode": "ai_classify",
                       "extract_path": null, "ai_labels": ["a", "c"], "categories": ["a", "b"]}),
            ),
            "definitions[0].ai_labels[1]",
        ),
        (
            with(
                json!({"model_tier": "standard", "extraction_mode": "ai_query", "extract_path": null, "ai_query_prompt": "x"}),
            ),
            "definitions[0].model_tier",
        ),
        (with(json!({"colour": "red"})), "definitions[0].colour"),
        (with(json!({"key": "call_count"})), "definitions[0].key"),
        (
            with(json!({"metric_type": "categorical", "aggregation": "avg"})),
            "definitions[0].aggregation",
        ),
        (json!({"definitions": "all"}), "definitions"),
        (json!({"metrics": []}), "definitions"),
        (json!([1, 2]), "body"),
        (json!({"definitions": [], "extra": 1}), "extra"),
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
        fields(json!({"definitions": [m.clone(), m.clone()]}))
            .contains(&"definitions[1].key".to_string())
    );
    let many: Vec<Value> = (0..51)
        .map(|i| {
            let mut m = good();
            m["key"] = json!(format!("m{i}"));
            m
        })
        .collect();
    assert_eq!(
        fields(json!({"definitions": many})),
        vec!["definitions".to_string()]
    );
    let fifty: Vec<Value> = (0..50)
        .map(|i| {
            let mut m = good();
            m["key"] = json!(format!("m{i}"));
            m
        })
        .collect();
    assert!(check_settings(&json!({"definitions": fifty})).is_ok());

    // Built-ins may be switched off, never redefined or invented.
    let s = check_settings(&json!({"definitions": [
        {"key": "call_count", "builtin": true, "active": false, "name": "ignored"}
    ]}))
    .unwrap();
    assert!(!s.get("call_count").unwrap().active);
    assert!(s.get("call_count").unwrap().builtin);
    assert_eq!(
        fields(json!({"definitions": [{"key": "nope", "builtin": true}]})),
        vec!["definitions[0].key".to_string()]
    );
}

#[test]
fn ai_answers_are_read_as_the_metric_type() {
    use extract::{Extracted, interpret};
    let mut d = check_settings(&with(json!({
        "extraction_mode": "ai_query", "extract_path": null,
        "ai_query_prompt": "Rate 0-100", "model_tier": "fast",
        "valid_range_min": 0, "valid_range_max": 100
    })))
    .unwrap()
    .custom
    .remove(0);
    assert_eq!(interpret(&d, " 72.5 "), Extracted::Number(72.5));
    assert_eq!(interpret(&d, "Score: 40."), Extracted::Number(40.0));
    assert!(matches!(interpret(&d, "150"), Extracted::Dropped(_)));
    assert!(matches!(interpret(&d, "great"), Extracted::Dropped(_)));
    d.metric_type = MetricType::Boolean;
    assert_eq!(interpret(&d, "Yes."), Extracted::Bool(true));
    assert_eq!(interpret(&d, "no"), Extracted::Bool(false));
    d.metric_type = MetricType::Categorical;
    d.extraction_mode = ExtractionMode::AiClassify;
    d.ai_labels = Some(vec!["billing".into(), "sales".into()]);
    assert_eq!(
        interpret(&d, "\"Billing\""),
        Extracted::Labels(vec!["billing".into()])
    );
    assert!(matches!(interpret(&d, "support"), Extracted::Dropped(_)));
    d.extraction_mode = ExtractionMode::AiExtract;
    assert_eq!(
        interpret(&d, "sales, billing, other"),
        Extracted::Labels(vec!["sales".into(), "billing".into()])
    );
    assert_eq!(interpret(&d, "none"), Extracted::Labels(vec![]));
    // ai_query categorical: the categories are the labels; others dropped.
    d.extraction_mode = ExtractionMode::AiQuery;
    d.ai_labels = None;
    d.categories = Some(vec!["scheduling".into(), "billing".into()]);
    assert_eq!(
        interpret(&d, "Billing."),
        Extracted::Labels(vec!["billing".into()])
    );
    assert!(matches!(interpret(&d, "referral"), Extracted::Dropped(_)));
    let (system, _) = extract::prompt(&d, "...");
    assert!(system.contains("scheduling, billing"), "{system}");
}

/// The plan of one source's metrics for a level: one filter, one
/// aggregate with a value and a sample size per metric (each with its own
/// selection as a `FILTER` where it differs), JSON paths as `json_get_*`
/// calls, literals only. Compiled from the definitions and the schema,
/// without a session.
#[test]
fn plan_of_a_source_snapshot() {
    let defs: Vec<&MetricDef> = builtins()
        .iter()
        .filter(|d| {
            [
                "call_count",
                "resolution_rate",
                "voice_quality_score",
                "response_latency_p95",
            ]
            .contains(&d.key.as_str())
        })
        .collect();
    let (batch, _) = level::batch(
        &day_selection(),
        Level::Call,
        Some(Granularity::Daily),
        &defs,
        None,
    )
    .unwrap();
    let plan = crate::compile::compile_batch(&batch, events_source()).unwrap();
    insta::assert_snapshot!(plan.plan.display_indent_schema().to_string());
}

fn day_selection() -> Selection {
    Selection {
        workspace: "ws-demo".into(),
        from_ms: 1_767_830_400_000,
        to_ms: 1_767_916_800_000,
        session_id: None,
        service_id: None,
    }
}

fn events_source() -> std::sync::Arc<dyn datafusion::logical_expr::TableSource> {
    crate::compile::schema_source(crate::storage::events::schema())
}

/// Every built-in's plan (the workspace's values per period of its
/// granularity), one snapshot each: the `sql_expr` built-ins read
/// ordinary fields and tests, nothing is parsed at run time.
#[test]
fn plan_of_every_builtin_snapshot() {
    for d in builtins() {
        let category = (d.metric_type == MetricType::Categorical).then(|| d.field().unwrap());
        let (batch, _) = level::batch(
            &day_selection(),
            Level::Workspace,
            Some(d.period_granularity),
            &[d],
            category,
        )
        .unwrap();
        let plan = crate::compile::compile_batch(&batch, events_source())
            .unwrap_or_else(|e| panic!("{}: {e}", d.key));
        insta::assert_snapshot!(
            format!("builtin_{}", d.key),
            plan.plan.display_indent_schema().to_string()
        );
    }
}

/// The SQL text shown for `sql_expr` built-ins is the text they were
/// defined with; the plans read the structured value behind it.
#[test]
fn builtin_sql_text_is_unchanged() {
    let want: BTreeMap<String, String> = serde_json::from_str(include_str!(
        "../../fixtures/metric_store/builtin_sql_expr.json"
    ))
    .unwrap();
    let got: BTreeMap<String, String> = builtins()
        .iter()
        .filter_map(|d| Some((d.key.clone(), d.sql_expr.clone()?)))
        .collect();
    assert_eq!(got, want);
    assert_eq!(got.len(), 20);
}
