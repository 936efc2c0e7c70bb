//! The live view in a real browser (headless Chromium): opened beside the
//! running demo swarm, its overview agrees with `wawe env stats`, a task
//! pushed from the command line appears without a reload, and a crashed
//! task's story shows the crash. Screenshots land in the test's temp dir,
//! and also in `$WAWE_UI_SCREENSHOTS` when set (how the README's are made).

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;
use support::browser::Browser;
use support::http::get;
use support::{block, wawe};

/// `wawe run … --ui`, killed when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn screenshot(browser: &Browser, name: &str) {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    browser.screenshot(&tmp);
    if let Some(dir) = std::env::var_os("WAWE_UI_SCREENSHOTS") {
        std::fs::copy(&tmp, PathBuf::from(dir).join(name)).expect("copy the screenshot");
    }
}

/// The task counts per state of `wawe env stats --json`.
fn stats(dir: &Path, db: &Path) -> Value {
    let out = wawe(dir)
        .args(["env", "stats", "--json", "--env"])
        .arg(db)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn the_page_shows_the_running_demo_live_in_a_real_browser() {
    let Some(browser) = Browser::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("demo.db");
    let files = dir.path().join("files");
    std::fs::create_dir(&files).unwrap();
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../demo/swarm.toml");
    let mut child = wawe(dir.path())
        .arg("run")
        .arg(&manifest)
        .arg("--env")
        .arg(&db)
        .arg("--workspace")
        .arg(&files)
        .args(["--reset", "--quiet", "--ui=127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let _running = Running(child);
    // Follow stderr on a thread: the view's URL, then the line that says
    // the swarm finished and the view stays up.
    let (lines, seen) = mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let wait = Duration::from_secs(120);
    let url = loop {
        let line = seen
            .recv_timeout(wait)
            .expect("wawe run prints the view's URL");
        if let Some(url) = line.strip_prefix("wawe: live view at ") {
            break url.trim().to_owned();
        }
    };

    // Opened while the swarm runs.
    browser.goto(&url);
    browser.wait_for(
        "the overview",
        "return document.body.dataset.ready === '1' && document.querySelector('[data-count=\"tasks.done\"]') !== null",
        Duration::from_secs(20),
    );
    browser.wait_for(
        "the live stream",
        "return document.body.dataset.live === '1'",
        Duration::from_secs(20),
    );
    loop {
        let line = seen.recv_timeout(wait).expect("the demo swarm finishes");
        if line.contains("the live view stays up") {
            break;
        }
    }

    // The overview's counts, once the last change reached the page, are `wawe env stats`'s.
    let expected = stats(dir.path(), &db);
    let done = expected["tasks"]["done"].as_u64().unwrap();
    assert!(done >= 100, "{expected}");
    let mut want = serde_json::Map::new();
    for state in ["blocked", "ready", "claimed", "done", "dead", "cancelled"] {
        let n = expected["tasks"][state].as_u64().unwrap_or(0);
        want.insert(format!("tasks.{state}"), n.to_string().into());
    }
    for (state, n) in expected["agents"].as_object().unwrap() {
        want.insert(format!("agents.{state}"), n.to_string().into());
    }
    want.insert("leases".into(), expected["leases"].to_string().into());
    // The page catches up with the last changes within a second or so;
    // then every count must be the one `wawe env stats` gives.
    let read_counts = format!(
        "const want = {}; const got = {{}}; \
         for (const k of Object.keys(want)) {{ \
           const e = document.querySelector(`[data-count=\"${{k}}\"]`); \
           got[k] = e ? e.textContent.trim() : null; }} \
         return got;",
        Value::Object(want.clone())
    );
    let settled = format!(
        "const got = (function() {{ {read_counts} }})(); const want = {}; \
         return Object.keys(want).every(k => got[k] === want[k]);",
        Value::Object(want.clone())
    );
    let caught_up = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        browser.wait_for(
            "the overview to agree with wawe env stats",
            &settled,
            Duration::from_secs(20),
        )
    }));
    assert!(
        caught_up.is_ok(),
        "the page's counts {} differ from wawe env stats {}",
        browser.eval(&read_counts),
        Value::Object(want)
    );
    screenshot(&browser, "ui-overview.png");

    // A task pushed from the command line appears without a reload.
    browser.goto(&format!("{url}#/tasks?queue=from-cli"));
    browser.wait_for(
        "the empty task list",
        "return document.body.dataset.view === 'tasks'",
        Duration::from_secs(20),
    );
    browser.eval("window.__sameDocument = 'yes'; return true");
    let out = wawe(dir.path())
        .args([
            "env",
            "push",
            "from-cli",
            "{\"hello\":\"browser\"}",
            "--json",
            "--env",
        ])
        .arg(&db)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let pushed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = pushed["id"].as_u64().unwrap();
    browser.wait_for(
        "the pushed task's row",
        &format!("return document.querySelector('tr[data-task-id=\"{id}\"]') !== null"),
        Duration::from_secs(20),
    );
    assert_eq!(
        browser.eval("return window.__sameDocument"),
        "yes",
        "the page reloaded"
    );

    // A crashed task's story names the crash and its reason.
    let base = url.trim_end_matches('/');
    let retried = block(get(&format!(
        "{base}/api/events?kind=task.retried&limit=1000"
    )))
    .json();
    let crash = retried["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["detail"].as_str().unwrap().contains("deliberate panic"))
        .unwrap_or_else(|| panic!("no task retried after the deliberate panic: {retried}"))
        .clone();
    let task = crash["subject"]
        .as_str()
        .unwrap()
        .trim_start_matches("task/");
    browser.goto(&format!("{url}#/tasks/{task}"));
    let story = browser.wait_for(
        "the task's story",
        "const s = document.querySelector('#story'); \
         return s && s.querySelector('li[data-kind=\"task.retried\"]') ? s.textContent : null",
        Duration::from_secs(20),
    );
    let story = story.as_str().unwrap();
    assert!(story.contains("crashed"), "{story}");
    assert!(story.contains("deliberate panic"), "{story}");
    assert!(
        story.contains("chaos-panic"),
        "the crashed agent is named: {story}"
    );
    let graph = browser.eval("return document.querySelector('svg#task-graph') !== null");
    assert_eq!(graph, true);
    screenshot(&browser, "ui-task-story.png");
}
