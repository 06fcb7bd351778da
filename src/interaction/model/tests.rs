use serde_json::json;

use super::*;
use crate::compile::{compile, schema_source};

const NOW_MS: i64 = 1_768_046_400_000; // 2026-01-10T12:00:00Z

fn checked(body: Json) -> Result<InteractionMetric, Error> {
    check_metric(&body, uuid::Uuid::nil(), "t0", "t1")
}

/// The wire checks, then the compiler against the events schema: what a
/// save runs (the service adds the optimizer).
fn saved(body: Json) -> Result<InteractionMetric, String> {
    let m = checked(body).map_err(|e| e.to_string())?;
    let q = m.to_query("ws", NOW_MS)?;
    compile(&q, schema_source(crate::storage::events::schema())).map_err(|e| {
        m.plan_problem(e)
            .map_or_else(|e| e.to_string(), |e| e.to_string())
    })?;
    Ok(m)
}

#[test]
fn types_have_stable_ids_and_the_documented_mnemonics() {
    let mnemonics: Vec<&str> = TYPES.iter().map(|t| t.mnemonic).collect();
    assert_eq!(
        mnemonics,
        [
            "COUNT",
            "SUM",
            "AVG",
            "MIN",
            "MAX",
            "DISTINCT_COUNT",
            "RATE"
        ]
    );
    for t in &TYPES {
        assert_eq!(metric_type(t.id), Some(t));
        assert_eq!(metric_type(t.mnemonic), Some(t));
    }
    assert_eq!(metric_type("count").map(|t| t.id), None);
    assert_eq!(
        serde_json::to_value(&TYPES[0]).unwrap(),
        json!({"id": "count-metric-type", "name": "Count", "mnemonic": "COUNT",
               "description": "Number of matching interactions", "requiresField": false})
    );
}

#[test]
fn metric_type_is_stored_as_the_id_whether_sent_as_id_or_mnemonic() {
    for sent in ["AVG", "avg-metric-type"] {
        let m = checked(json!({"name": "x", "metricTypeId": sent, "field": "interaction.total"}))
            .unwrap();
        assert_eq!(m.metric_type_id, "avg-metric-type");
        assert_eq!(m.mnemonic(), "AVG");
    }
    let mut old = checked(json!({"name": "x", "metricTypeId": "COUNT"})).unwrap();
    old.metric_type_id = "COUNT".into();
    old.canonicalize();
    assert_eq!(old.metric_type_id, "count-metric-type");
}

#[test]
fn the_documented_examples_save() {
    for body in [
        json!({"name": "Failed Logins (5m)", "description": "Count of failed login attempts in the last 5 minutes",
               "resourceTypeId": "customer", "actionId": "login-fail", "metricTypeId": "count-metric-type",
               "timeWindow": "5m", "filters": [], "groupBy": [], "enabled": true}),
        json!({"name": "Orders (1h)", "metricTypeId": "count-metric-type", "resourceTypeId": "order",
               "actionId": "created", "timeWindow": "1h"}),
        json!({"name": "Avg Order Value by Origin", "metricTypeId": "avg-metric-type", "resourceTypeId": "order",
               "actionId": "chk-done", "field": "interaction.total", "timeWindow": "24h",
               "groupBy": ["interaction.origin"]}),
        json!({"name": "Failed Logins by Country (5m)", "metricTypeId": "count-metric-type",
               "resourceTypeId": "customer", "actionId": "login-fail", "timeWindow": "5m",
               "groupBy": ["interaction.login_location"]}),
        json!({"name": "Email Bounces (1h)", "metricTypeId": "count-metric-type", "resourceTypeId": "email",
               "actionId": "bounced", "timeWindow": "1h"}),
        json!({"name": "filters", "metricTypeId": "COUNT", "filters": [
            { "field": "interaction.country", "operator": "eq", "value": "ZA" },
            { "field": "interaction.attempts", "operator": "gt", "value": 3 }]}),
        json!({"name": "groupBy", "metricTypeId": "COUNT",
               "groupBy": ["interaction.country", "interaction.browser"]}),
        json!({"name": "rate", "metricTypeId": "RATE", "timeWindow": "7d"}),
        json!({"name": "by resource", "metricTypeId": "DISTINCT_COUNT", "field": "interaction.email",
               "groupBy": ["resourceId"], "filters": [{"field": "resourceId", "operator": "contains", "value": "cust"}]}),
    ] {
        let m = saved(body.clone()).unwrap_or_else(|e| panic!("{body}: {e}"));
        assert!(m.enabled, "{body}");
    }
}

#[test]
fn what_cannot_be_calculated_is_refused_naming_the_field() {
    for (body, path) in [
        (
            json!({"name": "x", "metricTypeId": "COUNT", "filters": [
                {"field": "interaction.a", "operator": "eq", "value": "1"},
                {"field": "resourceId", "operator": "gt", "value": 5}]}),
            "filters[1]:",
        ),
        (json!({"name": "x", "metricTypeId": "RATE"}), "timeWindow:"),
        (json!({"name": "x", "metricTypeId": "MAX"}), "field:"),
    ] {
        let e = saved(body.clone()).unwrap_err();
        assert!(e.contains(path), "{body}: {e}");
    }
}

#[test]
fn lowered_paths_name_api_fields() {
    let m =
        checked(json!({"name": "x", "metricTypeId": "COUNT", "actionId": "a", "originId": "o"}))
            .unwrap();
    assert_eq!(m.api_path("group_by[2]"), "groupBy[2]");
    assert_eq!(m.api_path("filters[3].value"), "filters[3].value");
    assert_eq!(m.api_path("measure.value"), "field");
    assert_eq!(m.api_path("measure.events.filters[1].value"), "originId");
    assert_eq!(m.api_path("measure.leaf[0].events.filters[0]"), "actionId");
    assert_eq!(m.api_path("range"), "timeWindow");
}

#[test]
fn calculation_times_and_values_look_as_documented() {
    assert_eq!(timestamp(NOW_MS), "2026-01-10T12:00:00.000Z");
    assert_eq!(timestamp(NOW_MS + 7), "2026-01-10T12:00:00.007Z");
    let rows = [
        ResultRow {
            value: Some(42.0),
            dimensions: None,
        },
        ResultRow {
            value: Some(2.5),
            dimensions: None,
        },
        ResultRow {
            value: None,
            dimensions: None,
        },
    ];
    assert_eq!(
        serde_json::to_string(&rows).unwrap(),
        r#"[{"value":42,"dimensions":null},{"value":2.5,"dimensions":null},{"value":null,"dimensions":null}]"#
    );
}
