//! A headless Chromium driven over WebDriver (chromedriver), for tests that
//! look at the live view as a person would.
//!
//! WebDriver is plain JSON over HTTP, and the four calls used here (open a
//! session, go to a URL, run a script, take a screenshot) are spoken
//! directly: the WebDriver crates would add second copies of `http`,
//! `cookie` and the ICU crates to the build.

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::block;
use super::http::request;

/// Where Debian puts them (packages `chromium` and `chromium-driver`).
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A browser session, ended (and its driver stopped) when dropped.
pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Start headless Chromium. Where it is not installed this says so on
    /// one line and returns `None`; under `CI=true` that is a failure.
    pub fn start() -> Option<Browser> {
        let missing: Vec<&str> = [CHROMIUM, CHROMEDRIVER]
            .into_iter()
            .filter(|p| !Path::new(p).exists())
            .collect();
        if !missing.is_empty() {
            let line = format!(
                "wawe: the real-browser test is NOT RUN: {} missing; install Debian's \
                 chromium and chromium-driver (.ci/run does)",
                missing.join(" and ")
            );
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{line} (CI=true: a test that cannot run is a failure)");
            }
            let _ = writeln!(std::io::stderr(), "{line}");
            return None;
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let base = format!("http://127.0.0.1:{port}");
        let until = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < until, "chromedriver never listened");
            std::thread::sleep(Duration::from_millis(50));
        }
        let profile = tempfile::tempdir().expect("a profile dir");
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=1280,800",
            "--hide-scrollbars",
        ]
        .into_iter()
        .map(String::from)
        .chain([format!("--user-data-dir={}", profile.path().display())])
        .collect::<Vec<_>>();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
        }}});
        let mut browser = Browser {
            driver,
            base,
            session: String::new(),
            _profile: profile,
        };
        let created = browser.call("POST", "/session", &caps);
        browser.session = created["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {created}"))
            .to_owned();
        Some(browser)
    }

    fn call(&self, method: &str, path: &str, body: &Value) -> Value {
        let url = format!("{}{path}", self.base);
        let body = if body.is_null() {
            String::new()
        } else {
            body.to_string()
        };
        let reply = block(request(
            method,
            &url,
            &[("content-type", "application/json")],
            &body,
        ));
        let v = reply.json();
        assert_eq!(reply.status, 200, "{method} {path}: {v}");
        v["value"].clone()
    }

    fn session(&self, method: &str, path: &str, body: &Value) -> Value {
        let path = format!("/session/{}{path}", self.session);
        self.call(method, &path, body)
    }

    /// Load `url`.
    pub fn goto(&self, url: &str) {
        self.session("POST", "/url", &json!({ "url": url }));
    }

    /// Run `body` (a function body; `return` its answer) in the page.
    pub fn eval(&self, body: &str) -> Value {
        self.session(
            "POST",
            "/execute/sync",
            &json!({ "script": body, "args": [] }),
        )
    }

    /// Wait (up to `wait`) until `body` returns a truthy value; return it.
    pub fn wait_for(&self, what: &str, body: &str, wait: Duration) -> Value {
        let until = Instant::now() + wait;
        loop {
            let v = self.eval(body);
            let truthy =
                !matches!(&v, Value::Null | Value::Bool(false)) && v != json!(0) && v != json!("");
            if truthy {
                return v;
            }
            assert!(Instant::now() < until, "gave up waiting for {what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Save a PNG of the window to `path`.
    pub fn screenshot(&self, path: &Path) -> PathBuf {
        use base64::Engine;
        let b64 = self.session("GET", "/screenshot", &Value::Null);
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().expect("base64"))
            .expect("a PNG");
        std::fs::write(path, png).expect("the screenshot is written");
        path.to_owned()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let path = format!("{}/session/{}", self.base, self.session);
            let _ = block(request("DELETE", &path, &[], ""));
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
