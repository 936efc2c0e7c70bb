//! End-to-end tests of `wawe run`: bad input refused with a clear message and
//! the environment untouched, a watched folder of modules, and the demo.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use support::{KillOnDrop, agent, block, wait_for, wawe};
use wawe::env::{Env, EnvOptions, TaskState};

/// Generous: only there so a broken run fails the test instead of hanging it.
const LIMIT: Duration = Duration::from_secs(60);

/// An environment with one task in it, and its bytes, to check it stays untouched.
fn seeded_env(dir: &Path) -> (PathBuf, Vec<u8>) {
    let db = dir.join("env.db");
    let out = wawe(dir)
        .args(["env", "push", "q", "precious", "--env"])
        .arg(&db)
        .output()
        .unwrap();
    assert!(out.status.success());
    let bytes = snapshot(&db);
    (db, bytes)
}

/// The environment's content: the database file with its WAL folded in.
fn snapshot(db: &Path) -> Vec<u8> {
    let mut bytes = std::fs::read(db).unwrap();
    if let Ok(wal) = std::fs::read(db.with_extension("db-wal")) {
        bytes.extend(wal);
    }
    bytes
}

fn run_refused(dir: &Path, target: &Path, db: &Path) -> String {
    let out = wawe(dir)
        .arg("run")
        .arg(target)
        .arg("--env")
        .arg(db)
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "wawe run {} succeeded",
        target.display()
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn bad_modules_are_refused_with_a_clear_message_and_the_environment_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let (db, before) = seeded_env(dir.path());
    let not_wasm = dir.path().join("notes.wasm");
    std::fs::write(&not_wasm, "just some text").unwrap();
    let core = dir.path().join("core.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    let cases: [(&Path, &str); 4] = [
        (&not_wasm, "is not a WebAssembly file"),
        (&core, "is a core WebAssembly module, not a component"),
        (&agent("other-world"), "is not a wawe agent"),
        (
            &agent("extra-import"),
            "imports `evil:net/raw`, which agents may not use",
        ),
    ];
    for (module, expected) in cases {
        let stderr = run_refused(dir.path(), module, &db);
        assert!(stderr.contains(expected), "{}: {stderr}", module.display());
        assert!(stderr.starts_with("error: "), "{stderr}");
        assert_eq!(
            snapshot(&db),
            before,
            "{}: the environment changed",
            module.display()
        );
    }
    // A missing module, and no environment created for nothing.
    let fresh = dir.path().join("fresh.db");
    let stderr = run_refused(dir.path(), &dir.path().join("absent.wasm"), &fresh);
    assert!(stderr.contains("does not exist"), "{stderr}");
    assert!(!fresh.exists());
    let stderr = run_refused(dir.path(), &core, &fresh);
    assert!(stderr.contains("core WebAssembly module"), "{stderr}");
    assert!(
        !fresh.exists(),
        "a refused module must not create an environment"
    );
}

#[test]
fn bad_manifests_point_at_the_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let (db, before) = seeded_env(dir.path());
    let hello = agent("hello");
    let cases = [
        (
            format!("[agents.a]\nmodule = {hello:?}\n\n[agents.b]\nreplicas = 2\n"),
            vec!["swarm.toml:4", "agent `b` has no `module`"],
        ),
        (
            format!("[agents.a]\nmodule = {hello:?}\nreplicas = \"two\"\n"),
            vec!["line 3", "replicas", "invalid type"],
        ),
        (
            format!("[agents.a]\nmodule = {hello:?}\nrestart = \"sometimes\"\n"),
            vec!["line 3", "sometimes"],
        ),
        (
            format!("[agents.a]\nmodul = {hello:?}\n"),
            vec!["unknown field `modul`"],
        ),
        (
            "[agents.a]\nmodule = \"missing.wasm\"\n".to_string(),
            vec!["cannot read", "missing.wasm"],
        ),
    ];
    let manifest = dir.path().join("swarm.toml");
    for (text, expected) in cases {
        std::fs::write(&manifest, &text).unwrap();
        let stderr = run_refused(dir.path(), &manifest, &db);
        for e in expected {
            assert!(stderr.contains(e), "{text}\n-> {stderr}\n(missing {e:?})");
        }
        assert_eq!(snapshot(&db), before);
    }
}

/// `wawe run` on a watched folder (`modules/` in a temporary directory),
/// its output going to files there (a pipe nobody reads could fill up).
struct FolderRun {
    dir: tempfile::TempDir,
    modules: PathBuf,
    env: Env,
    running: KillOnDrop,
}

impl FolderRun {
    /// Starts the run (after `prepare` has put files in the folder) and
    /// waits until its environment exists.
    fn start(prepare: impl FnOnce(&Path)) -> FolderRun {
        let dir = tempfile::tempdir().unwrap();
        let modules = dir.path().join("modules");
        std::fs::create_dir(&modules).unwrap();
        prepare(&modules);
        let db = dir.path().join("env.db");
        let child = wawe(dir.path())
            .arg("run")
            .arg(&modules)
            .arg("--env")
            .arg(&db)
            .stdout(std::fs::File::create(dir.path().join("stdout")).unwrap())
            .stderr(std::fs::File::create(dir.path().join("stderr")).unwrap())
            .spawn()
            .unwrap();
        let running = KillOnDrop(child);
        let env = wait_for("the environment", LIMIT, || {
            Env::open_existing(&db, EnvOptions::default()).ok()
        });
        FolderRun {
            dir,
            modules,
            env,
            running,
        }
    }

    /// The agents-table row of agent `name`.
    fn row(&self, name: &str) -> Option<wawe::env::AgentInfo> {
        block(self.env.list_agents())
            .unwrap()
            .into_iter()
            .find(|a| a.name == name)
    }

    /// Sends SIGTERM; returns the exit status, stdout and stderr.
    fn stop(&mut self) -> (std::process::ExitStatus, String, String) {
        let child = &mut self.running.0;
        let pid = child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let status = wait_for("wawe run to exit", LIMIT, || child.try_wait().unwrap());
        let read = |name: &str| std::fs::read_to_string(self.dir.path().join(name)).unwrap();
        (status, read("stdout"), read("stderr"))
    }
}

#[test]
fn a_watched_folder_starts_restarts_and_stops_modules() {
    // A module that fails to load is reported and skipped.
    let mut run = FolderRun::start(|modules| {
        std::fs::write(modules.join("broken.wasm"), "not wasm").unwrap();
    });
    let modules = run.modules.clone();
    let row = |name: &str| run.row(name);

    // Dropped in, with its settings: started.
    std::fs::write(
        modules.join("greeter.toml"),
        "[config]\nidle_ms = \"600000\"\n",
    )
    .unwrap();
    std::fs::copy(agent("hello"), modules.join("greeter.wasm")).unwrap();
    let first = wait_for("greeter to start", LIMIT, || {
        row("greeter").filter(|a| a.state == "running")
    });

    // Replaced by other code: restarted on it.
    std::fs::copy(agent("worker"), modules.join("greeter.wasm.tmp")).unwrap();
    std::fs::rename(
        modules.join("greeter.wasm.tmp"),
        modules.join("greeter.wasm"),
    )
    .unwrap();
    let second = wait_for("greeter to restart on the new code", LIMIT, || {
        row("greeter").filter(|a| a.state == "running" && a.digest != first.digest)
    });
    assert_eq!(second.restarts, first.restarts + 1);

    // Removed: stopped.
    std::fs::remove_file(modules.join("greeter.wasm")).unwrap();
    wait_for("greeter to stop", LIMIT, || {
        row("greeter").filter(|a| a.state == "stopped")
    });

    // SIGTERM: a clean shutdown.
    let (status, _, stderr) = run.stop();
    assert!(status.success(), "{status}");
    assert!(stderr.contains("skipped broken"), "{stderr}");
    assert!(stderr.contains("not a WebAssembly file"), "{stderr}");
    assert!(
        block(run.env.list_hosts())
            .unwrap()
            .iter()
            .all(|h| h.state == "stopped")
    );
}

#[test]
fn the_demo_swarm_finishes_all_its_work_and_heals_its_crashes() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("demo.db");
    let files = dir.path().join("files");
    std::fs::create_dir(&files).unwrap();
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../demo/swarm.toml");
    let out: Output = wawe(dir.path())
        .arg("run")
        .arg(&manifest)
        .arg("--env")
        .arg(&db)
        .arg("--workspace")
        .arg(&files)
        .arg("--json")
        .arg("--reset")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(summary["leases_held"], 0);
    assert!(
        summary["runs"]["crashed"].as_u64().unwrap() >= 1,
        "{summary}"
    );
    let env = Env::open_existing(&db, EnvOptions::default()).unwrap();
    let tasks = block(env.list_tasks(None, None, 10_000)).unwrap();
    assert!(!tasks.is_empty());
    assert!(
        tasks.iter().all(|t| t.state == TaskState::Done),
        "{tasks:?}"
    );
    assert!(block(env.list_reservations("")).unwrap().is_empty());
    // The workspace part: `editor` checked every file against its edits (it
    // ends failed, and so the run, on any difference) and the stale write.
    let stale = block(env.get_value("editor/stale-write")).unwrap().unwrap();
    assert_eq!(stale.value, "refused");
    for i in 0..8 {
        let text = std::fs::read_to_string(files.join(format!("src/f{i}.txt"))).unwrap();
        assert!(
            text.starts_with(&format!("src/f{i}.txt: first line\n")),
            "{text}"
        );
        assert!(text.ends_with('\n'));
    }
    // Who wrote what, as a user would look it up.
    let events = wawe(dir.path())
        .args([
            "env",
            "events",
            "--kind",
            "workspace.",
            "--json",
            "--limit",
            "1000",
            "--env",
        ])
        .arg(&db)
        .output()
        .unwrap();
    let events = String::from_utf8_lossy(&events.stdout);
    let writers: std::collections::BTreeSet<String> = events
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["kind"] == "workspace.write")
        .map(|e| {
            e["agent"]
                .as_str()
                .unwrap()
                .split('.')
                .next()
                .unwrap()
                .to_string()
        })
        .collect();
    assert!(
        writers.contains("editor") && writers.contains("editor-worker"),
        "{writers:?}"
    );
}

#[test]
fn a_capability_not_granted_is_refused_before_the_environment_is_touched() {
    let dir = tempfile::tempdir().unwrap();
    let (db, before) = seeded_env(dir.path());
    let err = run_refused(dir.path(), &agent("ws-probe"), &db);
    assert!(
        err.contains("wawe:env/workspace") && err.contains("workspace = \"write\""),
        "{err}"
    );
    let err = run_refused(dir.path(), &agent("http-probe"), &db);
    assert!(
        err.contains("wasi:http") && err.contains("allow_http"),
        "{err}"
    );
    let manifest = dir.path().join("swarm.toml");
    std::fs::write(
        &manifest,
        format!(
            "[agents.w]\nmodule = {:?}\nworkspace = \"write\"\n",
            agent("ws-probe")
        ),
    )
    .unwrap();
    let err = run_refused(dir.path(), &manifest, &db);
    assert!(
        err.contains("swarm.toml:1") && err.contains("names none"),
        "{err}"
    );
    std::fs::write(
        &manifest,
        format!(
            "[agents.h]\nmodule = {:?}\nallow_http = [{{ origin = \"https://api.example.com\", headers = {{ authorization = \"Bearer ${{WAWE_NO_SUCH_VAR}}\" }} }}]\n",
            agent("http-probe")
        ),
    )
    .unwrap();
    let err = run_refused(dir.path(), &manifest, &db);
    assert!(err.contains("WAWE_NO_SUCH_VAR"), "{err}");
    assert_eq!(snapshot(&db), before, "the environment changed");
}

#[test]
fn a_watched_folder_waits_for_settings_says_what_changed_and_sums_up_truly() {
    let mut run = FolderRun::start(|_| {});
    let modules = run.modules.clone();
    let row = |name: &str| run.row(name);

    // The module first, its settings half a second later: it starts once,
    // with them (without them, `intruder` fails: `mode` is required).
    std::fs::copy(agent("intruder"), modules.join("probe.wasm")).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    std::fs::write(modules.join("probe.toml"), "[config]\nmode = \"env-var\"\n").unwrap();
    let first = wait_for("probe to end", LIMIT, || {
        row("probe").filter(|a| a.state == "exited")
    });
    assert_eq!(first.restarts, 0, "{first:?}");

    // Only the settings change: restarted with them.
    std::fs::write(
        modules.join("probe.toml"),
        "[config]\nmode = \"read-file\"\n",
    )
    .unwrap();
    wait_for("probe to run again", LIMIT, || {
        row("probe").filter(|a| a.state == "exited" && a.restarts == 1)
    });

    // No settings at all: after the grace it starts without, fails into a
    // crash loop and is given up; settings arriving then revive it.
    std::fs::copy(agent("intruder"), modules.join("lonely.wasm")).unwrap();
    wait_for("lonely to be given up", LIMIT, || {
        row("lonely").filter(|a| {
            a.state == "failed"
                && a.end_reason
                    .as_deref()
                    .is_some_and(|r| r.contains("crash loop"))
        })
    });
    std::fs::write(
        modules.join("lonely.toml"),
        "[config]\nmode = \"env-var\"\n",
    )
    .unwrap();
    wait_for("lonely to be revived", LIMIT, || {
        row("lonely").filter(|a| a.state == "exited")
    });

    let (status, stdout, stderr) = run.stop();
    assert!(status.success(), "{status}\n{stdout}\n{stderr}");
    assert!(stderr.contains("probe: started (1 replica(s))"), "{stderr}");
    assert!(
        stderr.contains("probe: restarted with its changed settings (probe.toml)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("lonely: started without settings (no lonely.toml)"),
        "{stderr}"
    );
    assert!(!stderr.contains("restarted on its new code"), "{stderr}");
    // The summary tells the same story as the exit status.
    assert!(
        stdout.contains("1 given up (crash loop); 1 of the failed started again on a change"),
        "{stdout}"
    );
}

#[test]
fn quiet_prints_errors_only() {
    let dir = tempfile::tempdir().unwrap();
    let out = wawe(dir.path())
        .arg("run")
        .arg(agent("chaos"))
        .args(["--restart", "never", "--quiet"])
        .args(["--config", "mode=error", "--config", "wait_ms=10"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("WARN"), "{stderr}");
    assert!(
        stderr.contains("error: 1 agent(s) ended failed"),
        "{stderr}"
    );
}
