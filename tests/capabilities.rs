//! The capabilities beyond the environment, end to end: real agents in a
//! real host, a real workspace directory, and a real HTTP server on
//! 127.0.0.1. Each rule is checked by what the agent saw (recorded by the
//! probe agents in shared values) and by what is on disk or in the journal.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use support::agent;
use wawe::env::{Env, EnvOptions};
use wawe::runtime::caps::http::{HttpLimits, Origin};
use wawe::runtime::caps::workspace::{Access, WorkspaceLimits};
use wawe::runtime::{
    AgentSpec, Grants, Host, Limits, RestartPolicy, RunEnd, Runtime, RuntimeOptions, Workspace,
};

struct Harness {
    dir: tempfile::TempDir,
    env: Env,
    runtime: Runtime,
    host: Host,
}

impl Harness {
    async fn new() -> Harness {
        Self::with(EnvOptions::default()).await
    }

    async fn with(opts: EnvOptions) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("ws")).unwrap();
        let env = Env::open(dir.path().join("env.db"), opts).unwrap();
        let runtime = Runtime::new(RuntimeOptions {
            cache_dir: Some(support::cache_dir()),
            ..RuntimeOptions::default()
        })
        .unwrap();
        let ws = Workspace::open(&dir.path().join("ws")).unwrap();
        let host = runtime.start_with(env.clone(), Some(ws)).await.unwrap();
        Harness {
            dir,
            env,
            runtime,
            host,
        }
    }

    fn ws(&self) -> PathBuf {
        self.dir.path().join("ws")
    }

    async fn run(
        &self,
        module: &str,
        name: &str,
        config: Vec<(String, String)>,
        grants: Grants,
        limits: Limits,
    ) -> RunEnd {
        let m = self.runtime.load(&agent(module)).unwrap();
        m.check_grants(name, &grants).unwrap();
        let spec = AgentSpec {
            name: name.into(),
            replica: 0,
            limits,
            restart: RestartPolicy::Never,
            config,
            grants,
        };
        tokio::time::timeout(Duration::from_secs(60), self.host.spawn(&m, spec).join())
            .await
            .expect("the agent did not end within a minute")
    }

    /// Run the workspace probe with `steps`; returns how it ended and what
    /// each step came to.
    async fn probe(
        &self,
        name: &str,
        steps: Value,
        access: Access,
        limits: Limits,
    ) -> (RunEnd, Vec<String>) {
        let config = vec![
            ("name".to_string(), name.to_string()),
            ("steps".to_string(), steps.to_string()),
        ];
        let grants = Grants {
            workspace: Some(access),
            ..Grants::default()
        };
        let end = self.run("ws-probe", name, config, grants, limits).await;
        (end, self.value(&format!("probe/{name}")).await)
    }

    async fn value<T: serde::de::DeserializeOwned + Default>(&self, key: &str) -> T {
        match self.env.get_value(key).await.unwrap() {
            Some(v) => serde_json::from_str(&v.value).unwrap(),
            None => T::default(),
        }
    }
}

fn ok(s: &str) -> bool {
    s.starts_with("ok")
}

fn err(s: &str, kind: &str) -> bool {
    s.starts_with(&format!("err:{kind}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_see_the_workspace_and_nothing_outside_it() {
    let h = Harness::new().await;
    std::fs::create_dir_all(h.ws().join("src")).unwrap();
    std::fs::write(h.ws().join("src/a.txt"), "hello").unwrap();
    std::fs::write(h.dir.path().join("outside.txt"), "secret").unwrap();
    std::os::unix::fs::symlink(h.dir.path(), h.ws().join("escape")).unwrap();
    let steps = serde_json::json!([
        {"read": "src/a.txt"},
        {"read": "../outside.txt"},
        {"read_abs": h.dir.path().join("outside.txt")},
        {"read": "escape/outside.txt"},
        {"read_abs": "/etc/hostname"},
        {"list": "src"},
        {"write_fs": "src/a.txt", "data": "overwritten"},
        {"write_fs": "src/new.txt", "data": "new"},
    ]);
    // (The probe can change the workspace too, so it needs "write" to load;
    // it only reads here, and reads go through the same read-only preopen.)
    let (end, got) = h
        .probe("reader", steps, Access::Write, Limits::default())
        .await;
    assert_eq!(end, RunEnd::Exited);
    assert_eq!(got[0], "ok:hello", "{got:?}");
    for (i, what) in [
        (1, "`..`"),
        (2, "an absolute path"),
        (3, "a symlink out"),
        (4, "/etc"),
    ] {
        assert!(err(&got[i], "io"), "{what} was not refused: {got:?}");
    }
    assert_eq!(got[5], "ok:a.txt");
    assert!(
        err(&got[6], "io") && err(&got[7], "io"),
        "plain writes got through: {got:?}"
    );
    assert_eq!(
        std::fs::read_to_string(h.ws().join("src/a.txt")).unwrap(),
        "hello"
    );
    assert!(!h.ws().join("src/new.txt").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_follow_the_lease_rules_end_to_end() {
    let h = Harness::new().await;
    let steps = serde_json::json!([
        {"reserve": ["src/"], "as": "L"},
        {"write": "src/a.txt", "under": "L", "data": "one"},
        {"read": "src/a.txt"},
        {"write": "src/b.txt", "under": "nobody", "data": "x"},
        {"reserve": ["docs/"], "as": "S", "shared": true},
        {"write": "docs/x", "under": "S", "data": "x"},
        {"write": "lib/x", "under": "L", "data": "x"},
        {"rename": "src/a.txt", "to": "lib/a.txt", "under": "L"},
        {"rename": "src/a.txt", "to": "src/b.txt", "under": "L"},
        {"mkdir": "src/d/e", "under": "L"},
        {"write": "src/../x", "under": "L", "data": "x"},
        {"write": "/etc/x", "under": "L", "data": "x"},
        {"write": ".wawe/workspace-id", "under": "L", "data": "x"},
        {"list": "src"},
        {"remove": "src/b.txt", "under": "L"},
        {"remove": "src/b.txt", "under": "L"},
        {"list": "src"},
    ]);
    let (end, got) = h
        .probe("writer", steps, Access::Write, Limits::default())
        .await;
    assert_eq!(end, RunEnd::Exited, "{got:?}");
    let expect = [
        "ok",
        "ok",
        "ok:one",
        "err:not-found",
        "ok",
        "err:invalid-argument",
        "err:invalid-argument",
        "err:invalid-argument",
        "ok",
        "ok",
        "err:invalid-argument",
        "err:invalid-argument",
        "err:invalid-argument",
        "ok:b.txt,d",
        "ok",
        "err:not-found",
        "ok:d",
    ];
    assert_eq!(got.len(), expect.len(), "{got:?}");
    for (i, (g, e)) in got.iter().zip(expect).enumerate() {
        assert!(g.starts_with(e), "step {i}: expected {e}, got {g}");
    }
    assert!(got[5].contains("exclusive"), "{}", got[5]);
    assert!(got[6].contains("does not cover `lib/x`"), "{}", got[6]);
    assert!(got[7].contains("does not cover `lib/a.txt`"), "{}", got[7]);
    assert!(got[12].contains("host's own"), "{}", got[12]);
    assert!(h.ws().join("src/d/e").is_dir());
    assert!(!h.ws().join("src/b.txt").exists());
    let kinds: Vec<String> = h
        .env
        .read_events(
            0,
            &wawe::env::EventFilter {
                kinds: vec!["workspace.".into()],
                ..Default::default()
            },
            100,
        )
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        kinds,
        [
            "workspace.registered",
            "workspace.write",
            "workspace.rename",
            "workspace.mkdir",
            "workspace.delete"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_full_durability_every_kind_of_change_is_flushed_and_made() {
    let h = Harness::with(EnvOptions {
        durability: wawe::env::Durability::Full,
        ..EnvOptions::default()
    })
    .await;
    let steps = serde_json::json!([
        {"reserve": ["top", "d/"], "as": "L"},
        {"write": "top", "under": "L", "data": "at the top level"},
        {"write": "d/a", "under": "L", "data": "one"},
        {"rename": "d/a", "to": "d/e/b", "under": "L"},
        {"mkdir": "d/f", "under": "L"},
        {"remove": "d/f", "under": "L"},
        {"read": "d/e/b"},
    ]);
    let (end, got) = h
        .probe("full", steps, Access::Write, Limits::default())
        .await;
    assert_eq!(end, RunEnd::Exited, "{got:?}");
    assert!(got.iter().all(|g| ok(g)), "{got:?}");
    assert_eq!(got[6], "ok:one");
    assert_eq!(
        std::fs::read_to_string(h.ws().join("top")).unwrap(),
        "at the top level"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_in_the_middle_of_a_write_leaves_the_old_content_whole() {
    let h = Harness::new().await;
    let seed = serde_json::json!([
        {"reserve": ["f"], "as": "L"},
        {"write": "f", "under": "L", "data": "old content\n"},
    ]);
    let (end, _) = h
        .probe("seed", seed, Access::Write, Limits::default())
        .await;
    assert_eq!(end, RunEnd::Exited);
    let crash = serde_json::json!([
        {"reserve": ["f"], "as": "L"},
        {"write_then_panic": "f", "under": "L", "data": "new half"},
    ]);
    let (end, _) = h
        .probe("crasher", crash, Access::Write, Limits::default())
        .await;
    assert!(
        matches!(&end, RunEnd::Crashed(why) if why.contains("crashing in the middle")),
        "{end:?}"
    );
    assert_eq!(
        std::fs::read_to_string(h.ws().join("f")).unwrap(),
        "old content\n"
    );
    let left = std::fs::read_dir(h.ws().join(".wawe/tmp")).unwrap().count();
    assert_eq!(
        left, 0,
        "the crashed write's temporary file was left behind"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lapsed_lease_cannot_write() {
    let h = Harness::new().await;
    let steps = serde_json::json!([
        {"reserve": ["f"], "as": "L", "ttl_ms": 1},
        {"sleep_ms": 400},
        {"write": "f", "under": "L", "data": "late"},
    ]);
    let (end, got) = h
        .probe("late", steps, Access::Write, Limits::default())
        .await;
    assert_eq!(end, RunEnd::Exited);
    assert!(
        err(&got[2], "stale-token") || err(&got[2], "not-found"),
        "{got:?}"
    );
    assert!(!h.ws().join("f").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workspace_writes_are_limited_per_write_and_per_run() {
    let h = Harness::new().await;
    let limits = Limits {
        max_written_bytes: Some(25),
        workspace: WorkspaceLimits {
            max_file_bytes: 10,
            max_dir_entries: 2,
        },
        ..Limits::default()
    };
    let steps = serde_json::json!([
        {"reserve": ["d/"], "as": "L"},
        {"write": "d/big", "under": "L", "data": "01234567890"},
        {"write": "d/a", "under": "L", "data": "0123456789"},
        {"write": "d/b", "under": "L", "data": "x"},
        {"write": "d/c", "under": "L", "data": "x"},
        {"write": "d/a", "under": "L", "data": "0123456789"},
        {"write": "d/a", "under": "L", "data": "0123456789"},
    ]);
    let (end, got) = h.probe("quota", steps, Access::Write, limits).await;
    assert!(
        err(&got[1], "too-large"),
        "a write over max_file_bytes: {got:?}"
    );
    assert!(ok(&got[2]) && ok(&got[3]), "{got:?}");
    assert!(
        err(&got[4], "too-large") && got[4].contains("entries"),
        "a third entry: {got:?}"
    );
    assert!(ok(&got[5]), "{got:?}");
    assert_eq!(got.len(), 6, "the write past max_written ran: {got:?}");
    assert!(
        matches!(&end, RunEnd::Crashed(why) if why.contains("max_written")),
        "{end:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capabilities_not_granted_are_refused_at_load_naming_the_line() {
    let h = Harness::new().await;
    let probe = h.runtime.load(&agent("ws-probe")).unwrap();
    let read_only = Grants {
        workspace: Some(Access::Read),
        ..Grants::default()
    };
    let e = probe.check_grants("p", &read_only).unwrap_err().to_string();
    assert!(
        e.contains("wawe:env/workspace") && e.contains("workspace = \"write\""),
        "{e}"
    );
    let http = h.runtime.load(&agent("http-probe")).unwrap();
    let e = http
        .check_grants("h", &Grants::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("wasi:http") && e.contains("allow_http") && e.contains("[agents.h]"),
        "{e}"
    );
    // Agents that import neither load sealed.
    for plain in ["hello", "worker", "chaos"] {
        h.runtime
            .load(&agent(plain))
            .unwrap()
            .check_grants(plain, &Grants::default())
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_with_another_workspace_is_refused_at_start() {
    let h = Harness::new().await;
    let other = h.dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    let e = h
        .runtime
        .start_with(h.env.clone(), Some(Workspace::open(&other).unwrap()))
        .await
        .err()
        .expect("a second workspace was accepted")
        .to_string();
    assert!(
        e.contains("must share one workspace") && e.contains("other"),
        "{e}"
    );
    // The same directory (the same id) joins.
    let same = Workspace::open(&h.ws()).unwrap();
    let second = h
        .runtime
        .start_with(h.env.clone(), Some(same))
        .await
        .unwrap();
    second.shutdown().await.unwrap();
}

/// The headers of one request, lower-cased names.
type Headers = Vec<(String, String)>;

/// A tiny HTTP/1.1 server: answers by path, and remembers the headers of
/// every request it got.
struct Server {
    port: u16,
    seen: Arc<Mutex<Vec<Headers>>>,
}

fn serve() -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let record = record.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
                let mut headers = Vec::new();
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                        break;
                    }
                    if let Some((n, v)) = h.trim_end().split_once(':') {
                        headers.push((n.to_ascii_lowercase(), v.trim().to_string()));
                    }
                }
                record.lock().unwrap().push(headers);
                let (status, extra, body) = match path.as_str() {
                    "/hello" => ("200 OK", String::new(), "hello from the server".to_string()),
                    "/redirect" => (
                        "302 Found",
                        "Location: http://127.0.0.1:9/\r\n".to_string(),
                        String::new(),
                    ),
                    "/big" => ("200 OK", String::new(), "x".repeat(100_000)),
                    "/slow" => {
                        std::thread::sleep(Duration::from_secs(3));
                        ("200 OK", String::new(), "late".to_string())
                    }
                    _ => ("404 Not Found", String::new(), String::new()),
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    Server { port, seen }
}

#[derive(serde::Deserialize, Default, Debug)]
struct Seen {
    url: String,
    status: Option<u16>,
    headers: Vec<String>,
    body: Option<String>,
    error: Option<String>,
}

async fn http_probe(
    h: &Harness,
    name: &str,
    urls: &[String],
    follow: bool,
    allow: Vec<Origin>,
    http: HttpLimits,
) -> Vec<Seen> {
    let config = vec![
        ("name".to_string(), name.to_string()),
        ("urls".to_string(), serde_json::to_string(urls).unwrap()),
        ("follow".to_string(), follow.to_string()),
    ];
    let grants = Grants {
        http: allow,
        ..Grants::default()
    };
    let limits = Limits {
        http,
        ..Limits::default()
    };
    let end = h.run("http-probe", name, config, grants, limits).await;
    assert_eq!(end, RunEnd::Exited);
    let seen: Vec<Seen> = h.value(&format!("http/{name}")).await;
    assert_eq!(seen.len(), urls.len());
    seen
}

fn denied(s: &Seen) -> bool {
    s.error
        .as_deref()
        .is_some_and(|e| e.contains("HttpRequestDenied"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_goes_only_to_allowed_origins_with_credentials_the_agent_never_sees() {
    let h = Harness::new().await;
    let server = serve();
    let other = serve();
    let p = server.port;
    let secret = "Bearer s3cret-for-the-test";
    let headers = [(
        "Authorization".to_string(),
        "${WAWE_TEST_TOKEN}".to_string(),
    )];
    let allowed = Origin::parse(&format!("http://127.0.0.1:{p}"), &headers, |v| {
        (v == "WAWE_TEST_TOKEN").then(|| secret.to_string())
    })
    .unwrap();
    let by_name = Origin::parse(&format!("http://localhost:{p}"), &[], |_| None).unwrap();
    let urls = [
        format!("http://127.0.0.1:{p}/hello"),
        format!("http://127.0.0.1:{}/hello", other.port),
        format!("http://127.0.0.2:{p}/hello"),
        format!("http://localhost:{p}/hello"),
        format!("http://127.0.0.1:{p}/redirect"),
    ];
    let seen = http_probe(
        &h,
        "calls",
        &urls,
        true,
        vec![allowed, by_name],
        HttpLimits::default(),
    )
    .await;
    assert_eq!(seen[0].status, Some(200), "{seen:?}");
    assert_eq!(seen[0].body.as_deref(), Some("hello from the server"));
    for (i, what) in [
        (1, "another port"),
        (2, "another host"),
        (3, "a name resolving to loopback"),
        (4, "a redirect to another origin"),
    ] {
        assert!(
            denied(&seen[i]),
            "{what} ({}) was not denied: {:?}",
            seen[i].url,
            seen[i]
        );
    }
    // The host added the credential; the guest saw none of it.
    let got = server.seen.lock().unwrap().clone();
    assert!(
        got.iter()
            .any(|hs| hs.iter().any(|(n, v)| n == "authorization" && v == secret)),
        "the server never got the credential: {got:?}"
    );
    assert!(
        other.seen.lock().unwrap().is_empty(),
        "a denied request reached a server"
    );
    let guest_view = serde_json::to_string(
        &seen
            .iter()
            .map(|s| (&s.headers, &s.body))
            .collect::<Vec<_>>(),
    )
    .unwrap();
    assert!(!guest_view.contains("s3cret"), "{guest_view}");
    // Every denial is journaled, without the credential.
    let events = h
        .env
        .read_events(
            0,
            &wawe::env::EventFilter {
                kinds: vec!["http.denied".into()],
                ..Default::default()
            },
            100,
        )
        .await
        .unwrap();
    assert_eq!(events.len(), 4, "{events:?}");
    let all = h
        .env
        .read_events(0, &wawe::env::EventFilter::default(), 10_000)
        .await
        .unwrap();
    assert!(all.iter().all(|e| !e.detail.contains("s3cret")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_requests_have_a_timeout_and_a_response_size_cap() {
    let h = Harness::new().await;
    let server = serve();
    let p = server.port;
    let allowed = Origin::parse(&format!("http://127.0.0.1:{p}"), &[], |_| None).unwrap();
    let limits = HttpLimits {
        timeout: Duration::from_millis(800),
        max_response_bytes: 1000,
    };
    let urls = [
        format!("http://127.0.0.1:{p}/slow"),
        format!("http://127.0.0.1:{p}/big"),
        format!("http://127.0.0.1:{p}/hello"),
    ];
    let seen = http_probe(&h, "limits", &urls, false, vec![allowed], limits).await;
    let timed_out = seen[0].error.as_deref().unwrap_or_default();
    assert!(timed_out.contains("Timeout"), "{:?}", seen[0]);
    let too_big = seen[1].error.as_deref().unwrap_or_default();
    assert!(too_big.contains("BodySize"), "{:?}", seen[1]);
    assert_eq!(seen[2].status, Some(200));
}
