//! The real server: `metricstore serve` on 127.0.0.1 over generated data,
//! the documented request (adapted to the demo skills), every number
//! checked against a brute-force computation over the same Parquet rows.

mod common;

use metricstore::definition::{Bucket, Query, TimeRange, builtin};
use serde_json::{Value, json};

fn ms(t: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(t)
        .unwrap()
        .timestamp_millis()
}

#[tokio::test]
async fn documented_example_against_brute_force() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let o = common::bin()
        .args([
            "generate",
            "--data",
            data,
            "--rows",
            "120000",
            "--days",
            "7",
            "--end",
            "2026-01-10",
        ])
        .output()
        .unwrap();
    assert!(o.status.success());
    let server = common::serve(data, "server-test-token:admin:*", "2026-01-10T12:00:00Z");
    let base = server.base.clone();
    let skill = metricstore::generate::SKILLS[0];
    let (start_t, end_t) = ("2026-01-05T00:00:00Z", "2026-01-09T06:30:00Z");
    let queries = json!([
        {"id": "q1", "label": "customers", "metricNamespace": "Alexa.Custom", "name": "CUSTOMERS", "aggregationPeriod": "BY_DAY", "stat": "count"},
        {"id": "q2", "label": "utterances by intent", "metricNamespace": "Alexa.Custom", "name": "UTTERANCES", "aggregationPeriod": "BY_DAY", "stat": "count", "groupBy": "intent"},
        {"id": "q3", "label": "p90 latency", "metricNamespace": "Alexa.Custom", "name": "SKILL_LATENCY", "aggregationPeriod": "BY_HOUR", "stat": "p90"},
        {"id": "q4", "label": "sessions per customer", "metricNamespace": "Alexa.Custom", "name": "ACTIVE_SESSIONS_PER_CUSTOMER", "aggregationPeriod": "SINGLE",
         "dimensions": [{"name": "Country", "value": "US"}]},
        {"id": "q5", "label": "failed utterances, German, by intent", "metricNamespace": "Alexa.Custom", "name": "FAILED_UTTERANCES", "aggregationPeriod": "BY_WEEK", "stat": "count",
         "groupBy": "intent", "dimensions": [{"name": "Alexa.Locale", "value": "de-DE"}]}
    ]);
    let body = json!({"startTime": start_t, "endTime": end_t, "maxResultsPerQuery": 1000, "metricQueries": queries});
    let resp = reqwest::Client::new()
        .post(format!("{base}/v2/skills/{skill}/metrics"))
        .bearer_auth("server-test-token")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();

    let rows = common::read_events(dir.path());
    let range = TimeRange {
        start_ms: ms(start_t),
        end_ms: ms(end_t),
    };
    let ns = builtin::namespace("Alexa.Custom").unwrap();
    let mut compared = 0;
    for (i, q) in body["metricQueries"].as_array().unwrap().iter().enumerate() {
        let metric = ns.metric(q["name"].as_str().unwrap()).unwrap();
        let stat = q["stat"].as_str();
        let filters = q
            .get("dimensions")
            .and_then(Value::as_array)
            .map(|d| {
                d.iter()
                    .map(|d| {
                        builtin::dimension_filter(
                            d["name"].as_str().unwrap(),
                            d["value"].as_str().unwrap(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let group_by: Vec<_> = q
            .get("groupBy")
            .and_then(Value::as_str)
            .map(builtin::dimension)
            .into_iter()
            .collect();
        let query = Query {
            workspace_id: skill.into(),
            measure: stat.map_or_else(|| metric.measure.clone(), |s| metric.measure_for_stat(s)),
            filters,
            range,
            bucket: Bucket::parse(q["aggregationPeriod"].as_str().unwrap()).unwrap(),
            group_by,
        };
        let want = common::oracle::oracle(&rows, &query);
        let result = &v["results"][i];
        assert_eq!(result["id"], q["id"]);
        assert_eq!(result["label"], q["label"]);
        let data = result["data"].as_array().unwrap();
        let want: Vec<_> = want.into_iter().filter(|(_, p)| !p.is_empty()).collect();
        assert_eq!(data.len(), want.len(), "{}", q["id"]);
        for (d, (group, points)) in data.iter().zip(&want) {
            if let Some(g) = group.first() {
                let want = g.clone().unwrap_or_default();
                assert_eq!(d["groupedBy"]["groupedByValue"], json!(want), "{}", q["id"]);
            }
            let ts: Vec<i64> = d["timestamps"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t.as_i64().unwrap())
                .collect();
            let vs: Vec<f64> = d["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect();
            assert_eq!(
                ts,
                points.iter().map(|p| p.0).collect::<Vec<_>>(),
                "{}",
                q["id"]
            );
            // Percentiles may come from rollups' sketches: METRICS.md
            // allows 1% from the exact value; everything else is exact.
            let tolerance = if stat.is_some_and(|s| s.starts_with('p')) {
                0.01
            } else {
                1e-9
            };
            for (got, want) in vs.iter().zip(points) {
                assert!(
                    (got - want.1).abs() <= tolerance * want.1.abs().max(1.0),
                    "{}: {got} vs {}",
                    q["id"],
                    want.1
                );
                compared += 1;
            }
        }
    }
    assert!(compared > 150, "{compared}");

    // The health route and a malformed request over the socket.
    let h: Value = reqwest::get(format!("{base}/health"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(h["status"], "ok");
    let r = reqwest::Client::new()
        .post(format!("{base}/v2/skills/{skill}/metrics"))
        .bearer_auth("server-test-token")
        .body("{{{{")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

/// Two servers on one data location: the second stands by (it answers
/// queries, refuses events with a 503 saying why) and takes over the
/// writer lease once the first is gone, recovering what the first
/// acknowledged but did not publish.
#[tokio::test]
async fn a_second_server_stands_by_and_takes_over_when_the_writer_stops() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap().to_string();
    let tokens = "lease-admin-token:admin:*";
    let now = "2026-01-10T12:00:00Z";
    let client = reqwest::Client::new();
    let send = |base: String, line: String| {
        let client = client.clone();
        async move {
            let r = client
                .post(format!("{base}/v1/ws-lease/events"))
                .bearer_auth("lease-admin-token")
                .body(line)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.text().await.unwrap())
        }
    };
    let event = |n: u32| {
        format!(
            r#"{{"time":"2026-01-10T10:00:{n:02}Z","event_type":"utterance","user_id":"u{n}","session_id":"s{n}","intent":"I"}}"#
        )
    };
    let writer = common::serve(&data, tokens, now);
    let standby = common::serve(&data, tokens, now);
    assert_eq!(send(writer.base.clone(), event(1)).await.0, 200);
    let (status, text) = send(standby.base.clone(), event(2)).await;
    assert_eq!(status, 503, "{text}");
    assert!(text.contains("standing by"), "{text}");
    let health = client
        .get(format!("{}/health", standby.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    // The writer is killed; the standby takes over within a lease check
    // or two and then takes events.
    drop(writer);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(40);
    loop {
        let (status, text) = send(standby.base.clone(), event(3)).await;
        if status == 200 {
            break;
        }
        assert_eq!(status, 503, "{text}");
        assert!(std::time::Instant::now() < deadline, "no takeover: {text}");
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    drop(standby);
    // Both acknowledged events are kept, once each (a restart recovers
    // what the last one had not published yet).
    drop(common::serve(&data, tokens, now));
    let rows = common::read_events(dir.path());
    let mut users: Vec<_> = rows
        .iter()
        .filter(|r| r.workspace_id == "ws-lease")
        .filter_map(|r| r.user_id.clone())
        .collect();
    users.sort();
    assert_eq!(users, ["u1", "u3"]);
}
