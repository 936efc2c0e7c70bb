//! `wawe ui` over HTTP: every endpoint's JSON and paging, the live stream
//! fed by commits of another process, the token rule, and operator actions.
//! (The page itself, in a real browser, is in `ui_browser.rs`.)

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use serde_json::Value;
use support::http::{EventStream, Reply, get, request};
use support::{block, wawe};
use wawe::env::{AgentEnd, AgentId, Env, EnvOptions, Mode, PushOptions};

/// A `wawe ui` process, killed when dropped.
struct Served {
    child: Child,
    /// `http://127.0.0.1:PORT` (no trailing slash).
    base: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `wawe ui --env ENV ARGS` in `dir`: the process and the URL it printed.
fn spawn_ui(dir: &Path, env: &str, args: &[&str]) -> (Child, String) {
    let mut child = wawe(dir)
        .args(["ui", "--env", env])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .split(" at ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no URL in {line:?}"))
        .to_owned();
    (child, url)
}

/// The view of the environment file `env` on a free loopback port.
fn serve(env: &Path, extra: &[&str]) -> Served {
    let args = [&["--listen", "127.0.0.1:0"], extra].concat();
    let (child, url) = spawn_ui(env.parent().unwrap(), env.to_str().unwrap(), &args);
    Served {
        child,
        base: url.trim_end_matches('/').to_owned(),
    }
}

/// An environment with something of everything: two queues, a dependency,
/// a task whose claimer crashed, a dead task, held and awaited leases,
/// values, signals, learnings.
struct Fixture {
    dir: tempfile::TempDir,
    crashed_task: u64,
    dead_task: u64,
    child_task: u64,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::open(dir.path().join("env.db"), EnvOptions::default()).unwrap();
    let a = AgentId::new("seed");
    block(async {
        let host = env.register_host("box", 1, 60_000).await.unwrap();
        let w = env.agent_started(&host, "worker", 0, "d").await.unwrap();
        let crashed_task = env
            .push(&a, "jobs", "{\"n\":1}", PushOptions::default())
            .await
            .unwrap()
            .id;
        for n in 2..=5 {
            env.push(
                &a,
                "jobs",
                &format!("{{\"n\":{n}}}"),
                PushOptions::default(),
            )
            .await
            .unwrap();
        }
        let once = PushOptions {
            max_attempts: 1,
            ..PushOptions::default()
        };
        let dead_task = env.push(&a, "other", "x", once).await.unwrap().id;
        let child_task = env
            .push(
                &a,
                "other",
                "y",
                PushOptions {
                    depends_on: vec![dead_task],
                    ..PushOptions::default()
                },
            )
            .await
            .unwrap()
            .id;
        let claimed = env.claim(&w, "jobs", 60_000, 0).await.unwrap().unwrap();
        assert_eq!(claimed.id, crashed_task);
        env.reserve(&w, &["src/".to_string()], Mode::Exclusive, 60_000, 0)
            .await
            .unwrap();
        env.agent_ended(
            &w,
            AgentEnd::Crashed,
            "panicked: boom (at src/lib.rs:1:1)\nwasm backtrace:\n    0: 0x1 - worker!run",
        )
        .await
        .unwrap();
        let w2 = env.agent_started(&host, "worker", 1, "d").await.unwrap();
        let c = env.claim(&w2, "other", 60_000, 0).await.unwrap().unwrap();
        env.fail(&w2, c.id, c.token, "no luck", true).await.unwrap();
        env.reserve(&w2, &["src/main.rs".to_string()], Mode::Shared, 60_000, 0)
            .await
            .unwrap();
        env.reserve(&w2, &["docs/a".to_string()], Mode::Shared, 60_000, 0)
            .await
            .unwrap();
        env.put_value(&a, "cfg/a", "1", None, None).await.unwrap();
        env.put_value(&a, "cfg/b", "2", None, None).await.unwrap();
        env.deposit(&a, "trail/x", 5.0, Some(60_000)).await.unwrap();
        env.record_learning(&a, "builds", "cache the registry", &["ci".into()])
            .await
            .unwrap();
        env.close();
        Fixture {
            dir,
            crashed_task,
            dead_task,
            child_task,
        }
    })
}

fn url(s: &Served, path: &str) -> String {
    format!("{}{path}", s.base)
}

fn get_ok(s: &Served, path: &str) -> Value {
    let r: Reply = block(get(&url(s, path)));
    assert_eq!(r.status, 200, "{path}: {}", r.body);
    r.json()
}

#[test]
fn every_endpoint_answers_with_its_documented_shape_and_pages() {
    let f = fixture();
    let s = serve(&f.dir.path().join("env.db"), &[]);

    let o = get_ok(&s, "/api/overview");
    assert_eq!(o["backend"], "sqlite");
    assert!(o["durability"].is_null(), "known only beside a swarm: {o}");
    assert_eq!(o["actions"], false);
    assert_eq!(o["tasks"]["ready"], 4 + 1, "{o}"); // jobs 2..5 and the crashed one back
    assert_eq!(o["tasks"]["dead"], 1);
    assert_eq!(o["tasks"]["cancelled"], 1);
    let queues: Vec<&str> = o["queues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["queue"].as_str().unwrap())
        .collect();
    assert_eq!(queues, ["jobs", "other"]);
    assert_eq!(o["agents"]["crashed"], 1);
    assert_eq!(o["agents"]["running"], 1);
    assert_eq!(o["leases"], 2);
    assert_eq!(o["hosts"][0]["state"], "alive");
    assert!(o["hosts"][0]["heartbeat_age_ms"].is_u64());
    assert_eq!(o["history"]["at"].as_array().unwrap().len(), 1);

    // Tasks: filters, and a cursor that walks the whole queue.
    let first = get_ok(&s, "/api/tasks?queue=jobs&limit=2");
    assert_eq!(first["tasks"].as_array().unwrap().len(), 2);
    let mut seen = 2;
    let mut next = first["next"].clone();
    while !next.is_null() {
        let page = get_ok(&s, &format!("/api/tasks?queue=jobs&limit=2&after={next}"));
        seen += page["tasks"].as_array().unwrap().len();
        next = page["next"].clone();
    }
    assert_eq!(seen, 5);
    let dead = get_ok(&s, "/api/tasks?state=dead");
    assert_eq!(dead["tasks"][0]["id"], f.dead_task);
    assert_eq!(dead["tasks"][0]["last_error"], "no luck");
    let bad = block(get(&url(&s, "/api/tasks?state=sleeping")));
    assert_eq!(bad.status, 400);
    assert!(
        bad.json()["error"]
            .as_str()
            .unwrap()
            .contains("unknown task state")
    );

    // A task's page: links both ways and its story, with the crash in it.
    let t = get_ok(&s, &format!("/api/tasks/{}", f.crashed_task));
    assert_eq!(t["task"]["state"], "ready");
    let kinds: Vec<&str> = t["story"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["task.pushed", "task.claimed", "task.retried"]);
    assert!(
        t["story"][2]["detail"]
            .as_str()
            .unwrap()
            .contains("crashed: panicked: boom")
    );
    let d = get_ok(&s, &format!("/api/tasks/{}", f.dead_task));
    assert_eq!(d["dependents"][0]["id"], f.child_task);
    assert_eq!(d["dependents"][0]["state"], "cancelled");
    let c = get_ok(&s, &format!("/api/tasks/{}", f.child_task));
    assert_eq!(c["depends_on"][0]["id"], f.dead_task);
    assert_eq!(block(get(&url(&s, "/api/tasks/999"))).status, 404);
    assert_eq!(block(get(&url(&s, "/api/tasks/x"))).status, 400);

    // Agents: paging, state filter, one agent with what it holds.
    let page = get_ok(&s, "/api/agents?limit=1");
    assert_eq!(page["agents"].as_array().unwrap().len(), 1);
    let rest = get_ok(
        &s,
        &format!("/api/agents?after={}", page["next"].as_str().unwrap()),
    );
    assert_eq!(rest["agents"].as_array().unwrap().len(), 1);
    let crashed = get_ok(&s, "/api/agents?state=crashed");
    let reason = crashed["agents"][0]["end_reason"].as_str().unwrap();
    assert!(reason.contains("wasm backtrace"), "{reason}");
    let running = get_ok(&s, "/api/agents?state=running");
    let id = running["agents"][0]["id"].as_str().unwrap();
    let one = get_ok(&s, &format!("/api/agents/{id}"));
    let held: Vec<&str> = one["leases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["resource"].as_str().unwrap())
        .collect();
    assert_eq!(held, ["docs/a", "src/main.rs"]);
    assert_eq!(block(get(&url(&s, "/api/agents/nobody"))).status, 404);

    // Leases: resource order, prefix, cursor.
    let l = get_ok(&s, "/api/leases?limit=1");
    assert_eq!(l["holdings"][0]["resource"], "docs/a");
    let after = l["next"].as_str().unwrap().replace('\n', "%0A");
    let l2 = get_ok(&s, &format!("/api/leases?after={after}"));
    assert_eq!(l2["holdings"][0]["resource"], "src/main.rs");
    assert!(l2["waiters"].is_array());
    let src = get_ok(&s, "/api/leases?prefix=src/");
    assert_eq!(src["holdings"].as_array().unwrap().len(), 1);

    // Values, signals, learnings, events.
    let v = get_ok(&s, "/api/values?prefix=cfg/&limit=1");
    assert_eq!(v["values"][0]["key"], "cfg/a");
    assert_eq!(v["values"][0]["fence"], 0);
    assert_eq!(v["next"], "cfg/a");
    let v2 = get_ok(&s, "/api/values?prefix=cfg/&after=cfg/a");
    assert_eq!(v2["values"][0]["key"], "cfg/b");
    let sig = get_ok(&s, "/api/signals");
    assert_eq!(sig["signals"][0]["trail"], "trail/x");
    assert_eq!(sig["signals"][0]["half_life_ms"], 60_000);
    let found = get_ok(&s, "/api/learnings?q=registry");
    assert_eq!(found["learnings"][0]["topic"], "builds");
    assert_eq!(
        get_ok(&s, "/api/learnings")["learnings"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let ev = get_ok(&s, "/api/events?limit=2");
    let seqs: Vec<u64> = ev["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs.len(), 2);
    assert!(seqs[0] > seqs[1], "newest first: {seqs:?}");
    assert_eq!(ev["more"], true);
    let older = get_ok(
        &s,
        &format!("/api/events?before={}&limit=1", ev["scanned_to"]),
    );
    assert_eq!(older["events"][0]["seq"], seqs[1] - 1);
    let by_seed = get_ok(&s, "/api/events?agent=seed&kind=value.&limit=10");
    assert_eq!(by_seed["events"].as_array().unwrap().len(), 2);
    let fwd = get_ok(&s, "/api/events?after=0&limit=1");
    assert_eq!(fwd["events"][0]["seq"], 1);
    assert_eq!(
        block(get(&url(&s, "/api/events?after=1&before=2"))).status,
        400
    );

    // The page and its assets.
    let page = block(get(&url(&s, "/")));
    assert_eq!(page.status, 200);
    assert!(page.body.contains("/app.js"));
    assert_eq!(block(get(&url(&s, "/app.js"))).status, 200);
    assert_eq!(block(get(&url(&s, "/nothing"))).status, 404);
}

#[test]
fn the_live_stream_delivers_an_event_committed_by_another_process() {
    let f = fixture();
    let db = f.dir.path().join("env.db");
    let s = serve(&db, &[]);
    block(async {
        let mut stream = EventStream::open(&url(&s, "/api/stream"), &[]).await;
        let out = wawe(f.dir.path())
            .args(["env", "push", "late", "{\"from\":\"cli\"}", "--env"])
            .arg(&db)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let mut saw_overview = false;
        let until = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let left = until - tokio::time::Instant::now();
            let (name, data) = stream
                .next(left)
                .await
                .expect("the pushed task reaches the stream");
            let v: Value = serde_json::from_str(&data).unwrap();
            match name.as_str() {
                "overview" => saw_overview = true,
                "journal" => {
                    let pushed = v["events"].as_array().unwrap().iter().any(|e| {
                        e["kind"] == "task.pushed"
                            && e["agent"] == "operator"
                            && e["detail"].as_str().unwrap().contains("\"late\"")
                    });
                    if pushed {
                        assert_eq!(v["skipped"], 0);
                        break;
                    }
                }
                other => panic!("unexpected event {other}: {data}"),
            }
        }
        // The overview follows the change (at most a second later).
        while !saw_overview {
            let (name, data) = stream
                .next(Duration::from_secs(5))
                .await
                .expect("an overview");
            if name == "overview" {
                let v: Value = serde_json::from_str(&data).unwrap();
                assert!(
                    v["queues"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|q| q["queue"] == "late")
                );
                saw_overview = true;
            }
        }
    });
}

#[test]
fn off_loopback_every_request_needs_the_token_and_loopback_needs_a_loopback_host() {
    let f = fixture();
    let db = f.dir.path().join("env.db");
    // Loopback without a token: only loopback host names.
    let s = serve(&db, &[]);
    let evil = block(request(
        "GET",
        &url(&s, "/api/overview"),
        &[("host", "evil.example")],
        "",
    ));
    assert_eq!(evil.status, 403);
    assert!(evil.json()["error"].as_str().unwrap().contains("loopback"));
    drop(s);
    // Any other address: a token is made up, printed, and required.
    let (child, printed) = spawn_ui(
        f.dir.path(),
        db.to_str().unwrap(),
        &["--listen", "0.0.0.0:0"],
    );
    let s = Served {
        base: String::new(),
        child,
    };
    let printed = printed.as_str();
    let (base, token) = printed.split_once("/?token=").expect("a token in the URL");
    assert!(token.len() >= 32, "{token}");
    let api = format!("{base}/api/overview");
    let none = block(get(&api));
    assert_eq!(none.status, 401);
    assert!(none.json()["error"].as_str().unwrap().contains("token"));
    let wrong = block(request(
        "GET",
        &api,
        &[("authorization", "Bearer 0000000000000000")],
        "",
    ));
    assert_eq!(wrong.status, 401);
    let bearer = format!("Bearer {token}");
    assert_eq!(
        block(request("GET", &api, &[("authorization", &bearer)], "")).status,
        200
    );
    // The printed URL sets a cookie the page then uses.
    let opened = block(get(printed));
    assert_eq!(opened.status, 303);
    let cookie = opened.headers["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().unwrap();
    assert_eq!(
        block(request("GET", &api, &[("cookie", pair)], "")).status,
        200
    );
    // The query token opens only the page, not the API.
    assert_eq!(block(get(&format!("{api}?token={token}"))).status, 401);
    drop(s);
    // A short token is refused before anything is served.
    let out = wawe(f.dir.path())
        .args(["ui", "--listen", "127.0.0.1:0", "--token", "short", "--env"])
        .arg(&db)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("too short"));
    // A missing environment is not created.
    let out = wawe(f.dir.path())
        .args(["ui", "--listen", "127.0.0.1:0", "--env", "nothing-here.db"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no environment"));
    assert!(!f.dir.path().join("nothing-here.db").exists());
}

#[test]
fn operator_actions_need_the_flag_and_the_header_and_are_journaled_as_operator() {
    let f = fixture();
    let db = f.dir.path().join("env.db");
    let act = [("x-wawe-action", "1")];
    let retry = |s: &Served, id: u64, headers: &[(&str, &str)]| {
        block(request(
            "POST",
            &url(s, &format!("/api/tasks/{id}/retry")),
            headers,
            "",
        ))
    };
    let read_only = serve(&db, &[]);
    let refused = retry(&read_only, f.dead_task, &act);
    assert_eq!(refused.status, 403);
    assert!(
        refused.json()["error"]
            .as_str()
            .unwrap()
            .contains("--actions")
    );
    drop(read_only);

    let s = serve(&db, &["--actions"]);
    let overview = get_ok(&s, "/api/overview");
    assert_eq!(overview["actions"], true);
    assert!(
        overview["durability"].is_null(),
        "a separate view cannot know it"
    );
    let mut stream = block(EventStream::open(&url(&s, "/api/stream"), &[]));
    assert_eq!(retry(&s, f.dead_task, &[]).status, 403, "no action header");
    let done = retry(&s, f.dead_task, &act);
    assert_eq!(done.status, 200, "{}", done.body);
    assert_eq!(done.json()["task"]["state"], "ready");
    assert_eq!(done.json()["task"]["attempts"], 0);
    let again = retry(&s, f.dead_task, &act);
    assert_eq!(
        again.status, 409,
        "a ready task is not retried: {}",
        again.body
    );
    let cancel = block(request(
        "POST",
        &url(&s, &format!("/api/tasks/{}/cancel", f.crashed_task)),
        &act,
        "",
    ));
    assert_eq!(cancel.status, 200, "{}", cancel.body);
    assert_eq!(cancel.json()["task"]["state"], "cancelled");
    let story = get_ok(&s, &format!("/api/tasks/{}", f.crashed_task));
    let last = story["story"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["kind"], "task.cancelled");
    assert_eq!(last["agent"], "operator");
    let requeued = get_ok(&s, "/api/events?kind=task.requeued");
    assert_eq!(requeued["events"][0]["agent"], "operator");
    // The overview the stream pushes keeps the buttons on.
    block(async {
        loop {
            let (name, data) = stream
                .next(Duration::from_secs(10))
                .await
                .expect("an overview frame after the actions");
            if name == "overview" {
                let v: Value = serde_json::from_str(&data).unwrap();
                assert_eq!(v["actions"], true, "{v}");
                break;
            }
        }
    });
}

/// The suite's PostgreSQL server, if one answers; where none does this says
/// so on one line (under `CI=true` it fails).
fn postgres() -> Option<String> {
    let url = std::env::var("WAWE_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://root@127.0.0.1:5432/test".into());
    let parsed = url::Url::parse(&url).expect("WAWE_TEST_POSTGRES is a URL");
    let addr = (
        parsed.host_str().unwrap_or("localhost").to_owned(),
        parsed.port().unwrap_or(5432),
    );
    if std::net::TcpStream::connect(addr).is_ok() {
        return Some(url);
    }
    let line =
        format!("wawe: the live view on PostgreSQL is NOT TESTED: no server answers at {url}");
    assert!(
        !std::env::var("CI").is_ok_and(|v| v == "true"),
        "{line} (CI=true: a backend that cannot be tested is a failure)"
    );
    eprintln!("{line}");
    None
}

#[test]
fn the_view_reads_an_environment_on_postgresql_too() {
    let Some(server) = postgres() else { return };
    let schema = format!("wawe_ui_{}", std::process::id());
    let at = wawe::env::EnvLocation::parse(&server)
        .with_schema(&schema)
        .unwrap();
    let env = Env::open(&at, EnvOptions::default()).unwrap();
    let a = AgentId::new("seed");
    let id = block(env.push(&a, "pg-jobs", "{}", PushOptions::default()))
        .unwrap()
        .id;
    let dir = tempfile::tempdir().unwrap();
    let (child, url) = spawn_ui(dir.path(), &at.to_env_arg(), &["--listen", "127.0.0.1:0"]);
    let s = Served {
        base: url.trim_end_matches('/').to_owned(),
        child,
    };
    let o = get_ok(&s, "/api/overview");
    assert_eq!(o["backend"], "postgres");
    assert_eq!(o["queues"][0]["queue"], "pg-jobs");
    let t = get_ok(&s, &format!("/api/tasks/{id}"));
    assert_eq!(t["story"][0]["kind"], "task.pushed");
    drop(s);
    block(env.destroy()).unwrap();
}
