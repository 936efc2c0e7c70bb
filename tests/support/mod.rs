//! What the end-to-end tests share: the test agents, the `wawe` binary, and
//! waiting for a condition.
#![allow(dead_code)]

pub mod browser;
pub mod history;
pub mod http;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The `.wasm` of a test agent, built by the host's build script.
pub fn agent(name: &str) -> PathBuf {
    PathBuf::from(match name {
        "chaos" => env!("WAWE_AGENT_CHAOS"),
        "editor" => env!("WAWE_AGENT_EDITOR"),
        "http-probe" => env!("WAWE_AGENT_HTTP_PROBE"),
        "ws-probe" => env!("WAWE_AGENT_WS_PROBE"),
        "extra-import" => env!("WAWE_AGENT_EXTRA_IMPORT"),
        "hello" => env!("WAWE_AGENT_HELLO"),
        "intruder" => env!("WAWE_AGENT_INTRUDER"),
        "other-world" => env!("WAWE_AGENT_OTHER_WORLD"),
        "producer" => env!("WAWE_AGENT_PRODUCER"),
        "worker" => env!("WAWE_AGENT_WORKER"),
        other => panic!("no test agent {other}"),
    })
}

/// Run an environment call from a test that is not async itself.
pub fn block<F: std::future::Future>(f: F) -> F::Output {
    thread_local! {
        static RT: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime for blocking calls");
    }
    RT.with(|rt| rt.block_on(f))
}

/// The compile cache the tests share, so each module compiles once a run.
pub fn cache_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("wawe-cache")
}

/// A `wawe` command run in `dir`, with nothing inherited that would change it.
pub fn wawe(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wawe"));
    cmd.current_dir(dir);
    scrub(&mut cmd);
    cmd
}

/// Keeps the caller's `WAWE_*` settings away from `cmd` (which runs `wawe`
/// itself or a script that does), and shares the tests' compile cache.
pub fn scrub(cmd: &mut Command) -> &mut Command {
    cmd.env_remove("WAWE_ENV")
        .env_remove("WAWE_LOG")
        .env_remove("WAWE_UI_TOKEN")
        .env("WAWE_CACHE_DIR", cache_dir())
        .stdin(Stdio::null())
}

/// A child process, killed when dropped.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Poll `probe` until it gives a value; fail the test after `limit`.
pub fn wait_for<T>(what: &str, limit: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A `wawe run` host process for `manifest` on the environment `db`, with a
/// one-second host ttl (so a killed one is reaped fast), quiet.
pub fn run_host(dir: &Path, manifest: &Path, db: &Path) -> KillOnDrop {
    let child = wawe(dir)
        .arg("run")
        .arg(manifest)
        .arg("--env")
        .arg(db)
        .args(["--host-ttl", "1s", "--quiet"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    KillOnDrop(child)
}

/// What `PRAGMA integrity_check` says of the database at `db` ("ok").
pub fn integrity_check(db: &Path) -> String {
    rusqlite::Connection::open(db)
        .unwrap()
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap()
}
