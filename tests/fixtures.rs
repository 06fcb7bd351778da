//! Every Alexa.Custom metric against hand-computed answers
//! (`fixtures/expected/custom.json`) over `fixtures/events/custom.jsonl`.

mod common;

use metricstore::definition::{Bucket, Query, TimeRange, builtin};
use metricstore::series::Series;

fn ms(t: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(t)
        .unwrap()
        .timestamp_millis()
}

fn approx(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * b.abs().max(1.0)
}

#[tokio::test]
async fn every_custom_metric_matches_hand_computed_values() {
    let dir = tempfile::tempdir().unwrap();
    let engine = common::fixture_engine(dir.path(), "fixtures/events/custom.jsonl").await;
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string("fixtures/expected/custom.json").unwrap())
            .unwrap();
    let ws = expected["workspace"].as_str().unwrap();
    let range = TimeRange {
        start_ms: ms(expected["start"].as_str().unwrap()),
        end_ms: ms(expected["end"].as_str().unwrap()),
    };
    let ns = builtin::namespace("Alexa.Custom").unwrap();
    let mut checked = std::collections::BTreeSet::new();
    for (key, want) in expected["metrics"].as_object().unwrap() {
        let (name, stat) = key.split_once('/').unwrap_or((key.as_str(), "count"));
        let metric = ns
            .metric(name)
            .unwrap_or_else(|| panic!("{name} is not in the catalog"));
        checked.insert(name.to_string());
        let query = |bucket: Bucket, group_by: Vec<&str>| Query {
            workspace_id: ws.into(),
            measure: metric.measure_for_stat(stat),
            filters: vec![],
            range,
            bucket,
            group_by: group_by.into_iter().map(builtin::dimension).collect(),
        };

        // BY_HOUR: three buckets; null where the bucket is left out.
        let got: Vec<Series> = engine.run(&query(Bucket::ByHour, vec![])).await.unwrap();
        assert_eq!(got.len(), 1, "{key}");
        let hours = [0, 1, 2].map(|h| range.start_ms + h * 3_600_000);
        let want_hours: Vec<Option<f64>> = want["BY_HOUR"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64())
            .collect();
        let want_points: Vec<(i64, f64)> = hours
            .iter()
            .zip(&want_hours)
            .filter_map(|(t, v)| v.map(|v| (*t, v)))
            .collect();
        assert_eq!(
            got[0].points.len(),
            want_points.len(),
            "{key} BY_HOUR: {:?}",
            got[0].points
        );
        for (g, w) in got[0].points.iter().zip(&want_points) {
            assert!(
                g.0 == w.0 && approx(g.1, w.1),
                "{key} BY_HOUR: got {g:?}, want {w:?}"
            );
        }

        // SINGLE, BY_DAY and BY_WEEK: one bucket stamped 2026-01-05T00:00Z.
        let single = want["SINGLE"].as_f64().unwrap();
        for bucket in [Bucket::Single, Bucket::ByDay, Bucket::ByWeek] {
            let got = engine.run(&query(bucket, vec![])).await.unwrap();
            assert_eq!(got[0].points.len(), 1, "{key} {bucket:?}");
            assert_eq!(got[0].points[0].0, range.start_ms, "{key} {bucket:?}");
            assert!(
                approx(got[0].points[0].1, single),
                "{key} {bucket:?}: {:?} vs {single}",
                got[0].points
            );
        }

        // BY_15: twelve quarter hours for additive metrics.
        if metric.measure_for_stat(stat).is_additive() {
            let got = engine.run(&query(Bucket::By15, vec![])).await.unwrap();
            assert_eq!(got[0].points.len(), 12, "{key} BY_15");
            let total: f64 = got[0].points.iter().map(|p| p.1).sum();
            assert!(
                approx(total, single) || name == "CUSTOMERS" || name == "FAILED_UTTERANCES_SESSION",
                "{key} BY_15 sums to {total}"
            );
        }

        // Grouped by intent (SINGLE); an absent group of an additive metric is 0.
        if let Some(by_intent) = want.get("by_intent").and_then(|v| v.as_object()) {
            let got = engine
                .run(&query(Bucket::Single, vec!["intent"]))
                .await
                .unwrap();
            let additive = metric.measure_for_stat(stat).is_additive();
            for (intent, w) in by_intent {
                let group = if intent == "null" {
                    None
                } else {
                    Some(intent.clone())
                };
                let value = got
                    .iter()
                    .find(|s| s.group == vec![group.clone()])
                    .map(|s| s.points[0].1);
                let value = match value {
                    Some(v) => v,
                    None if additive => 0.0,
                    None => panic!("{key} by intent: no group {intent}"),
                };
                assert!(
                    approx(value, w.as_f64().unwrap()),
                    "{key} by intent {intent}: got {value}, want {w}"
                );
            }
        }
    }
    let all: std::collections::BTreeSet<String> =
        ns.metrics.iter().map(|m| m.name.clone()).collect();
    assert_eq!(
        checked, all,
        "every Alexa.Custom metric has expected values"
    );
}

#[tokio::test]
async fn dimension_filters_narrow_the_events() {
    let dir = tempfile::tempdir().unwrap();
    let engine = common::fixture_engine(dir.path(), "fixtures/events/custom.jsonl").await;
    let metric = builtin::namespace("Alexa.Custom")
        .unwrap()
        .metric("UTTERANCES")
        .unwrap();
    let run = |filters| {
        let engine = engine.clone();
        let query = Query {
            workspace_id: "skill-a".into(),
            measure: metric.measure_for_stat("count"),
            filters,
            range: TimeRange {
                start_ms: ms("2026-01-05T00:00:00Z"),
                end_ms: ms("2026-01-05T03:00:00Z"),
            },
            bucket: Bucket::Single,
            group_by: vec![],
        };
        async move { engine.run(&query).await.unwrap()[0].points[0].1 }
    };
    assert_eq!(
        run(vec![builtin::dimension_filter("Alexa.Stage", "live")]).await,
        4.0
    );
    assert_eq!(
        run(vec![builtin::dimension_filter("Country", "DE")]).await,
        2.0
    );
    assert_eq!(
        run(vec![builtin::dimension_filter("Alexa.Locale", "en-US")]).await,
        4.0
    );
    assert_eq!(
        run(vec![builtin::dimension_filter(
            "Alexa.SluConfidence",
            "LOW"
        )])
        .await,
        2.0
    );
}

#[tokio::test]
async fn compiled_plans_keep_partition_pruning() {
    let dir = tempfile::tempdir().unwrap();
    let engine = common::demo_engine(dir.path(), 20_000, 10).await;
    let metric = builtin::namespace("Alexa.Custom")
        .unwrap()
        .metric("SKILL_LATENCY")
        .unwrap();
    let query = Query {
        workspace_id: metricstore::generate::SKILLS[0].into(),
        measure: metric.measure_for_stat("p90"),
        filters: vec![builtin::dimension_filter("Country", "US")],
        range: TimeRange {
            start_ms: ms("2026-01-05T06:00:00Z"),
            end_ms: ms("2026-01-07T00:00:00Z"),
        },
        bucket: Bucket::ByHour,
        group_by: vec![builtin::dimension("intent")],
    };
    let compiled = engine.compile(&query).unwrap();
    let df = engine
        .ctx
        .execute_logical_plan(compiled.plan)
        .await
        .unwrap();
    let physical = df.create_physical_plan().await.unwrap();
    let text = datafusion::physical_plan::displayable(physical.as_ref())
        .indent(true)
        .to_string();
    assert!(
        text.contains("date=2026-01-05") && text.contains("date=2026-01-06"),
        "{text}"
    );
    for pruned in [
        "date=2026-01-01",
        "date=2026-01-04",
        "date=2026-01-07",
        "date=2026-01-10",
    ] {
        assert!(!text.contains(pruned), "{pruned} should be pruned:\n{text}");
    }
    // Row groups are pruned by `time` statistics too.
    assert!(
        text.contains("pruning_predicate") && text.contains("time_max"),
        "{text}"
    );
}
