//! The same commands against a real S3-compatible server on 127.0.0.1
//! (moto's server, installed by `.ci/run`), configured only through the
//! standard AWS_* variables of CONTRACT.md.

mod common;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_s3() -> (Server, String) {
    let port = free_port();
    let child = Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("moto_server is not installed: `pip install 'moto[server]'` (.ci/run does this)");
    let server = Server(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "S3 server did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    (server, format!("http://127.0.0.1:{port}"))
}

/// The standard AWS_* variables of CONTRACT.md, pointing at the server.
fn s3_env(endpoint: &str) -> [(&str, &str); 5] {
    [
        ("AWS_ENDPOINT_URL", endpoint),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ALLOW_HTTP", "true"),
    ]
}

fn with_s3_env<'a>(cmd: &'a mut Command, endpoint: &str) -> &'a mut Command {
    cmd.envs(s3_env(endpoint))
}

/// Creates a bucket (moto accepts an unsigned CreateBucket).
async fn create_bucket(endpoint: &str, name: &str) {
    let r = reqwest::Client::new()
        .put(format!("{endpoint}/{name}"))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
}

#[tokio::test]
async fn generate_and_query_round_trip_over_s3() {
    let (_server, endpoint) = start_s3();
    create_bucket(&endpoint, "metrics-bucket").await;

    let location = "s3://metrics-bucket/tenant-a";
    let o = with_s3_env(&mut common::bin(), &endpoint)
        .args([
            "generate",
            "--data",
            location,
            "--rows",
            "6000",
            "--days",
            "3",
            "--end",
            "2026-01-10",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // The same seed written locally is the oracle.
    let local = tempfile::tempdir().unwrap();
    let o = common::bin()
        .args([
            "generate",
            "--data",
            local.path().to_str().unwrap(),
            "--rows",
            "6000",
            "--days",
            "3",
            "--end",
            "2026-01-10",
        ])
        .output()
        .unwrap();
    assert!(o.status.success());

    let sql = "SELECT date, event_type, count(*) AS n, count(DISTINCT user_id) AS users FROM events \
               WHERE time >= '2026-01-09' GROUP BY 1, 2 ORDER BY 1, 2";
    let remote = with_s3_env(&mut common::bin(), &endpoint)
        .args(["sql", "--data", location, "--format", "csv", "-c", sql])
        .output()
        .unwrap();
    assert!(
        remote.status.success(),
        "{}",
        String::from_utf8_lossy(&remote.stderr)
    );
    let local_out = common::bin()
        .args([
            "sql",
            "--data",
            local.path().to_str().unwrap(),
            "--format",
            "csv",
            "-c",
            sql,
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&remote.stdout),
        String::from_utf8_lossy(&local_out.stdout)
    );
    assert!(String::from_utf8_lossy(&remote.stdout).contains("2026-01-10,utterance"));

    // A missing bucket is a clear error, not a panic.
    let o = with_s3_env(&mut common::bin(), &endpoint)
        .args([
            "sql",
            "--data",
            "s3://no-such-bucket/x",
            "-c",
            "SELECT count(*) FROM events",
        ])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("Error:"));
}

/// Interaction metric definitions live in the bucket too, written with
/// create-only puts: two servers creating at once lose nothing.
#[tokio::test]
async fn catalog_writes_from_two_servers_over_s3() {
    let (_server, endpoint) = start_s3();
    let client = reqwest::Client::new();
    create_bucket(&endpoint, "catalog-bucket").await;
    let env = s3_env(&endpoint);
    let tokens = "s3-admin-token:admin:ws-demo";
    let now = "2026-01-10T12:00:00Z";
    let a = common::serve_with_env("s3://catalog-bucket/x", tokens, now, &env);
    let b = common::serve_with_env("s3://catalog-bucket/x", tokens, now, &env);
    let jobs = (0..20).map(|i| {
        let base = if i % 2 == 0 {
            a.base.clone()
        } else {
            b.base.clone()
        };
        let client = client.clone();
        async move {
            let r = client
                .post(format!("{base}/api/interaction-metrics"))
                .bearer_auth("s3-admin-token")
                .json(&serde_json::json!({"name": format!("m{i}"), "metricTypeId": "COUNT"}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
        }
    });
    futures::future::join_all(jobs).await;
    let listed: serde_json::Value = client
        .get(format!("{}/api/interaction-metrics", b.base))
        .bearer_auth("s3-admin-token")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 20);
}

/// The server's scheduled Metric Store run over S3 stores the same values
/// as `metricstore pipeline` over a local copy of the same events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_pipeline_over_s3_matches_a_local_run() {
    let (_server, endpoint) = start_s3();
    let client = reqwest::Client::new();
    create_bucket(&endpoint, "values-bucket").await;
    let location = "s3://values-bucket/p";
    let local = tempfile::tempdir().unwrap();
    let local_path = local.path().to_str().unwrap();
    let gen_args = |data: &str| {
        vec![
            "generate".to_string(),
            "--data".into(),
            data.into(),
            "--rows".into(),
            "8000".into(),
            "--days".into(),
            "3".into(),
            "--end".into(),
            "2026-01-10".into(),
        ]
    };
    let o = with_s3_env(&mut common::bin(), &endpoint)
        .args(gen_args(location))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = common::bin().args(gen_args(local_path)).output().unwrap();
    assert!(o.status.success());
    let now = "2026-01-10T12:00:00Z";
    let o = common::bin()
        .args(["pipeline", "--data", local_path])
        .env("METRICSTORE_NOW", now)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["from"], "2026-01-09");
    assert_eq!(report["to"], "2026-01-10");

    let mut env = s3_env(&endpoint).to_vec();
    env.push(("METRICSTORE_PIPELINE_INTERVAL", "3600"));
    let server = common::serve_with_env(location, "s3-viewer-token:viewer:ws-demo", now, &env);
    let deadline = Instant::now() + Duration::from_secs(120);
    let latest = loop {
        let v: serde_json::Value = client
            .get(format!("{}/v1/ws-demo/metrics", server.base))
            .bearer_auth("s3-viewer-token")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        // ws-demo's last day is the run's last unit of work.
        let last_day_done = v["metrics"].as_array().is_some_and(|m| {
            m.iter().any(|m| {
                m["metric_key"] == "unique_callers" && m["period_start"] == "2026-01-10T00:00:00Z"
            })
        });
        if v["count"] == 41 && last_day_done {
            break v;
        }
        assert!(Instant::now() < deadline, "no values after 120 s: {v}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert!(latest["not_computed"].as_array().unwrap().is_empty());
    drop(server);

    let sql = "SELECT workspace_id, metric_key, granularity, period_start, entity_type, entity_id, \
               category, source, round(value, 6) AS value, sample_size FROM metric_values \
               ORDER BY 1, 2, 3, 4, 5, 6, 7, 8";
    let remote = with_s3_env(&mut common::bin(), &endpoint)
        .args(["sql", "--data", location, "--format", "csv", "-c", sql])
        .output()
        .unwrap();
    assert!(
        remote.status.success(),
        "{}",
        String::from_utf8_lossy(&remote.stderr)
    );
    let here = common::bin()
        .args(["sql", "--data", local_path, "--format", "csv", "-c", sql])
        .output()
        .unwrap();
    let remote = String::from_utf8_lossy(&remote.stdout);
    assert!(
        remote.lines().count() > 1000,
        "{} rows",
        remote.lines().count()
    );
    let here = String::from_utf8_lossy(&here.stdout);
    let (r, h): (Vec<&str>, Vec<&str>) = (remote.lines().collect(), here.lines().collect());
    for (a, b) in r.iter().zip(&h) {
        assert_eq!(a, b, "first difference between S3 and local values");
    }
    assert_eq!(r.len(), h.len());
}
