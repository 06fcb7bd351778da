//! Just enough of the W3C WebDriver protocol to drive headless Chromium
//! through `chromedriver` (Debian packages `chromium` and
//! `chromium-driver`), over the HTTP client the project already has.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub(crate) struct Browser {
    http: reqwest::Client,
    session: String,
    base: String,
    driver: Child,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn find(program: &str) -> String {
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        let p = Path::new(dir).join(program);
        if p.exists() {
            return p.to_string_lossy().into_owned();
        }
    }
    panic!("{program} is not installed (Debian: apt-get install chromium chromium-driver)");
}

impl Browser {
    /// Starts chromedriver and a headless Chromium with a fresh profile in
    /// `profile`.
    pub(crate) async fn start(profile: &Path) -> Self {
        let chromium = find("chromium");
        let port = free_port();
        let driver = Command::new(find("chromedriver"))
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(120))
            .build()
            .unwrap();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:loggingPrefs": {"browser": "ALL"},
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--no-proxy-server", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--window-size=1400,2600",
                    format!("--user-data-dir={}", profile.display()),
                ]
            }
        }}});
        let mut browser = Self {
            http,
            session: String::new(),
            base,
            driver,
        };
        let v = browser.command("POST", "/session", Some(caps)).await;
        browser.session = v["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {v}"))
            .to_string();
        browser
    }

    /// Sends a command; returns its `value`, panicking on a WebDriver error.
    async fn command(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.base);
        let req = match method {
            "POST" => self
                .http
                .post(&url)
                .json(&body.unwrap_or_else(|| json!({}))),
            "DELETE" => self.http.delete(&url),
            _ => self.http.get(&url),
        };
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = resp.status();
        let v: Value = resp.json().await.unwrap();
        assert!(status.is_success(), "{method} {path}: {status} {v}");
        v["value"].clone()
    }

    fn at(&self, path: &str) -> String {
        format!("/session/{}{path}", self.session)
    }

    pub(crate) async fn goto(&self, url: &str) {
        self.command("POST", &self.at("/url"), Some(json!({"url": url})))
            .await;
    }

    /// Runs a script (a function body; `arguments` holds `args`).
    pub(crate) async fn execute(&self, script: &str, args: Vec<Value>) -> Value {
        self.command(
            "POST",
            &self.at("/execute/sync"),
            Some(json!({"script": script, "args": args})),
        )
        .await
    }

    /// Runs an asynchronous script: it ends by calling the last argument.
    pub(crate) async fn execute_async(&self, script: &str, args: Vec<Value>) -> Value {
        self.command(
            "POST",
            &self.at("/execute/async"),
            Some(json!({"script": script, "args": args})),
        )
        .await
    }

    /// What the page wrote to its console (and its errors), for failure
    /// messages.
    pub(crate) async fn console(&self) -> Value {
        self.command(
            "POST",
            &self.at("/se/log"),
            Some(json!({"type": "browser"})),
        )
        .await
    }

    /// A PNG of the window.
    pub(crate) async fn screenshot(&self) -> Vec<u8> {
        use base64::Engine as _;
        let v = self.command("GET", &self.at("/screenshot"), None).await;
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap())
            .unwrap()
    }

    /// Ends the session (closing Chromium) and stops chromedriver.
    pub(crate) async fn quit(mut self) {
        let path = format!("/session/{}", self.session);
        let _ = self
            .http
            .delete(format!("{}{path}", self.base))
            .send()
            .await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
