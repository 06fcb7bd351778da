//! `metricstore bench`: a suite of realistic metric queries, each run as a
//! compiled definition and as the same metric written by hand in SQL, in
//! the same process and the same run, reporting median latencies.

pub mod dashboard;

use std::time::{Duration, Instant};

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::TimestampMillisecondType;

use crate::definition::{Bucket, Dimension, Field, Filter, Operator, Query, TimeRange, builtin};
use crate::engine::{self, Engine};

/// One benchmark: a compiled query and its hand-written SQL twin.
#[derive(Debug)]
pub struct Case {
    pub name: &'static str,
    pub query: Query,
    pub sql: String,
}

/// The row printed per case.
#[derive(Debug, serde::Serialize)]
pub struct Measured {
    pub name: &'static str,
    pub compiled_ms: f64,
    pub sql_ms: f64,
}

fn median(mut v: Vec<Duration>) -> f64 {
    v.sort();
    v[v.len() / 2].as_secs_f64() * 1000.0
}

fn catalog_query(
    ns: &str,
    name: &str,
    stat: &str,
    workspace: &str,
    range: TimeRange,
    bucket: Bucket,
    group_by: Vec<Dimension>,
) -> Query {
    let metric = builtin::namespace(ns)
        .and_then(|n| n.metric(name))
        .expect("built-in metric");
    Query {
        workspace_id: workspace.into(),
        measure: metric.measure_for_stat(stat),
        filters: vec![],
        range,
        bucket,
        group_by,
    }
}

/// The suite over `workspace` and `range`.
pub fn suite(workspace: &str, range: TimeRange) -> Vec<Case> {
    let c = |name, stat, bucket, group_by| {
        catalog_query(
            "Alexa.Custom",
            name,
            stat,
            workspace,
            range,
            bucket,
            group_by,
        )
    };
    let w = format!(
        "workspace_id = '{workspace}' AND time >= to_timestamp_millis({}) AND time < to_timestamp_millis({})",
        range.start_ms, range.end_ms
    );
    let day = "date_bin(INTERVAL '1 day', time, TIMESTAMP '1970-01-01T00:00:00Z')";
    let hour = "date_bin(INTERVAL '1 hour', time, TIMESTAMP '1970-01-01T00:00:00Z')";
    let intent = || vec![builtin::dimension("intent")];
    let mut five = catalog_query(
        "Alexa.Custom",
        "UTTERANCES",
        "count",
        workspace,
        range,
        Bucket::Single,
        vec![],
    );
    five.group_by = [
        "intent",
        "Alexa.Stage",
        "Alexa.Locale",
        "Country",
        "Alexa.SluConfidence",
    ]
    .map(builtin::dimension)
    .to_vec();
    let mut json_filter = catalog_query(
        "Alexa.Custom",
        "UTTERANCES",
        "count",
        workspace,
        range,
        Bucket::ByDay,
        vec![],
    );
    json_filter.filters = vec![Filter {
        field: Field::Attribute("turn".into()),
        op: Operator::Gt,
        value: 2.into(),
    }];
    vec![
        Case {
            name: "CUSTOMERS BY_DAY",
            query: c("CUSTOMERS", "count", Bucket::ByDay, vec![]),
            sql: format!(
                "SELECT {day} b, count(DISTINCT user_id) FROM events WHERE {w} AND event_type = 'utterance' GROUP BY 1 ORDER BY 1"
            ),
        },
        Case {
            name: "UTTERANCES BY_HOUR",
            query: c("UTTERANCES", "count", Bucket::ByHour, vec![]),
            sql: format!(
                "SELECT {hour} b, count(*) FROM events WHERE {w} AND event_type = 'utterance' GROUP BY 1 ORDER BY 1"
            ),
        },
        Case {
            name: "FAILED_UTTERANCES BY_DAY by intent",
            query: c("FAILED_UTTERANCES", "count", Bucket::ByDay, intent()),
            sql: format!(
                "SELECT {day} b, intent, count(*) FROM events WHERE {w} AND event_type = 'utterance' AND outcome = 'failed' GROUP BY 1, 2 ORDER BY 1, 2"
            ),
        },
        Case {
            name: "UTTERANCES_PER_CUSTOMER BY_DAY",
            query: c("UTTERANCES_PER_CUSTOMER", "count", Bucket::ByDay, vec![]),
            sql: format!(
                "SELECT {day} b, count(*) / count(DISTINCT user_id) FROM events WHERE {w} AND event_type = 'utterance' GROUP BY 1 ORDER BY 1"
            ),
        },
        Case {
            name: "SUCCESSFUL_SESSIONS BY_DAY",
            query: c("SUCCESSFUL_SESSIONS", "count", Bucket::ByDay, vec![]),
            sql: format!(
                "SELECT {day} b, count(*) FROM events WHERE {w} AND event_type = 'session.ended' AND outcome IN ('user_ended', 'skill_ended') GROUP BY 1 ORDER BY 1"
            ),
        },
        Case {
            name: "DIFF_ACTIVE_SESSIONS_ENDED_SESSIONS BY_DAY",
            query: c(
                "DIFF_ACTIVE_SESSIONS_ENDED_SESSIONS",
                "count",
                Bucket::ByDay,
                vec![],
            ),
            sql: format!(
                "SELECT {day} b, count(*) FILTER (WHERE event_type = 'session.started') - count(*) FILTER (WHERE event_type = 'session.ended') FROM events WHERE {w} AND event_type IN ('session.started', 'session.ended') GROUP BY 1 ORDER BY 1"
            ),
        },
        Case {
            name: "UTTERANCES_PER_ACTIVE_SESSION BY_DAY",
            query: c(
                "UTTERANCES_PER_ACTIVE_SESSION",
                "count",
                Bucket::ByDay,
                vec![],
            ),
            sql: format!(
                "SELECT {day} b, CAST(count(*) FILTER (WHERE event_type = 'utterance') AS DOUBLE) / count(*) FILTER (WHERE event_type = 'session.started') FROM events WHERE {w} AND event_type IN ('utterance', 'session.started') GROUP BY 1 ORDER BY 1"
            ),
        },
        Case {
            name: "SKILL_LATENCY p90 BY_HOUR",
            query: c("SKILL_LATENCY", "p90", Bucket::ByHour, vec![]),
            sql: format!(
                "SELECT {hour} b, quantile(latency_ms, 0.9) FROM events WHERE {w} AND event_type = 'utterance' GROUP BY 1 ORDER BY 1"
            ),
        },
        Case {
            name: "SKILL_LATENCY p50 BY_DAY by intent",
            query: c("SKILL_LATENCY", "p50", Bucket::ByDay, intent()),
            sql: format!(
                "SELECT {day} b, intent, quantile(latency_ms, 0.5) FROM events WHERE {w} AND event_type = 'utterance' GROUP BY 1, 2 ORDER BY 1, 2"
            ),
        },
        Case {
            name: "CUSTOMERS SINGLE",
            query: c("CUSTOMERS", "count", Bucket::Single, vec![]),
            sql: format!(
                "SELECT count(DISTINCT user_id) FROM events WHERE {w} AND event_type = 'utterance'"
            ),
        },
        Case {
            name: "UTTERANCES SINGLE by 5 dimensions",
            query: five,
            sql: format!(
                "SELECT intent, stage, locale, nullif(split_part(locale, '-', 2), ''), json_as_text(attributes, 'Alexa.SluConfidence'), count(*) FROM events WHERE {w} AND event_type = 'utterance' GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5"
            ),
        },
        Case {
            name: "UTTERANCES BY_DAY, JSON filter turn > 2",
            query: json_filter,
            sql: format!(
                "SELECT {day} b, count(*) FROM events WHERE {w} AND event_type = 'utterance' AND json_get_float(attributes, 'turn') > 2 GROUP BY 1 ORDER BY 1"
            ),
        },
    ]
}

/// The time range of the data (first event to one ms past the last).
pub async fn data_range(engine: &Engine) -> engine::Result<Option<TimeRange>> {
    let b = engine
        .sql("SELECT min(time), max(time) FROM events")
        .await?;
    let (lo, hi) = (
        b[0].column(0).as_primitive::<TimestampMillisecondType>(),
        b[0].column(1).as_primitive::<TimestampMillisecondType>(),
    );
    if lo.is_null(0) {
        return Ok(None);
    }
    Ok(Some(TimeRange {
        start_ms: lo.value(0),
        end_ms: hi.value(0) + 1,
    }))
}

/// Runs every case `iterations` times each way (after one warm-up run of
/// each), alternating compiled and SQL so machine noise hits both alike.
pub async fn run(
    engine: &Engine,
    workspace: &str,
    iterations: usize,
) -> engine::Result<Vec<Measured>> {
    let Some(range) = data_range(engine).await? else {
        return Ok(vec![]);
    };
    let mut out = Vec::new();
    for case in suite(workspace, range) {
        engine.run(&case.query).await?;
        engine.sql(&case.sql).await?;
        let (mut compiled, mut sql) = (Vec::new(), Vec::new());
        for _ in 0..iterations.max(1) {
            let t = Instant::now();
            engine.run(&case.query).await?;
            compiled.push(t.elapsed());
            let t = Instant::now();
            engine.sql(&case.sql).await?;
            sql.push(t.elapsed());
        }
        out.push(Measured {
            name: case.name,
            compiled_ms: median(compiled),
            sql_ms: median(sql),
        });
    }
    Ok(out)
}
