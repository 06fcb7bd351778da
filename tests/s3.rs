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

fn with_s3_env<'a>(cmd: &'a mut Command, endpoint: &str) -> &'a mut Command {
    cmd.env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ALLOW_HTTP", "true")
}

#[tokio::test]
async fn generate_and_query_round_trip_over_s3() {
    let (_server, endpoint) = start_s3();
    // Create the bucket (moto accepts an unsigned CreateBucket).
    let r = reqwest::Client::new()
        .put(format!("{endpoint}/metrics-bucket"))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());

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
    assert!(
        client
            .put(format!("{endpoint}/catalog-bucket"))
            .send()
            .await
            .unwrap()
            .status()
            .is_success()
    );
    let env = [
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ALLOW_HTTP", "true"),
    ];
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
