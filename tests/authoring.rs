//! Writing agents as a new user does, outside this repository: `wawe new`
//! scaffolds a project that builds and runs with the commands it prints, and
//! the packaged SDK (`cargo package -p wawe-sdk`) builds agents on its own.
//!
//! The projects build for real (release, wasm32-wasip2). To spare CI a
//! second build of the same dependencies, each project's `target/` is a
//! link to one shared directory; the commands run are the printed ones.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use support::{block, wawe};
use wawe::env::{Env, EnvOptions};

/// The repository root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The target directory the scaffolded projects share (through a link).
fn shared_target() -> PathBuf {
    let dir = root().join("target").join("scaffolded");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A shell running in `dir` with none of the outer cargo's settings, which
/// are meant for the host build, not for the project's.
fn shell(dir: &Path, script: &str) -> std::process::Output {
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(script).current_dir(dir);
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        if key.starts_with("CARGO_") && key != "CARGO_HOME" || key == "RUSTFLAGS" {
            cmd.env_remove(&key);
        }
    }
    support::scrub(&mut cmd).output().unwrap()
}

/// Scaffolds `name` in `parent` with `extra` arguments to `wawe new`, then
/// runs the printed commands (with `target/` linked to the shared one) and
/// returns the project directory and what the last command printed.
fn new_build_run(parent: &Path, name: &str, extra: &[&str]) -> (PathBuf, String) {
    let out = wawe(parent)
        .arg("new")
        .arg(name)
        .args(extra)
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{printed}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let commands: Vec<&str> = printed
        .lines()
        .filter_map(|l| l.strip_prefix("  "))
        .collect();
    assert!(commands.len() >= 3, "no commands printed:\n{printed}");
    let project = parent.join(name);
    std::os::unix::fs::symlink(shared_target(), project.join("target")).unwrap();
    // Every printed command in one shell, as a user pastes them; the run
    // reports as JSON so the test can read it.
    let script = format!("set -e\n{} --json\n", commands.join("\n"));
    let out = shell(parent, &script);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "the printed commands failed:\n{script}\nstdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (project, stdout)
}

/// Checks the scaffolded swarm's result: 1² + … + 10² = 385.
fn check_squares(project: &Path, name: &str, stdout: &str) {
    let summary: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert!(
        summary["agents"]["failed"].as_array().unwrap().is_empty(),
        "{summary}"
    );
    let env =
        Env::open_existing(project.join(format!("{name}.db")), EnvOptions::default()).unwrap();
    let squares = block(env.get_value("squares"))
        .unwrap()
        .expect("squares written");
    let squares: Value = serde_json::from_str(&squares.value).unwrap();
    assert_eq!(
        squares["numbers"].as_array().map(Vec::len),
        Some(10),
        "{squares}"
    );
    assert_eq!(squares["sum"], 385, "{squares}");
}

#[test]
fn wawe_new_scaffolds_a_project_that_builds_and_runs_with_the_printed_commands() {
    let dir = tempfile::tempdir().unwrap();
    let (project, stdout) = new_build_run(dir.path(), "my-squares", &[]);
    check_squares(&project, "my-squares", &stdout);
    let readme = std::fs::read_to_string(project.join("README.md")).unwrap();
    assert_eq!(readme.lines().count(), 3, "{readme}");
}

#[test]
fn the_packaged_sdk_builds_an_agent_outside_the_repository() {
    // `cargo package` as a release would make it; its own target dir keeps
    // it clear of the build running these tests.
    let package_dir = tempfile::tempdir().unwrap();
    let out = shell(
        &root(),
        &format!(
            "cargo package -p wawe-sdk --no-verify --allow-dirty --target-dir '{}'",
            package_dir.path().display()
        ),
    );
    assert!(
        out.status.success(),
        "cargo package failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let version = env!("CARGO_PKG_VERSION");
    let crate_file = package_dir
        .path()
        .join(format!("package/wawe-sdk-{version}.crate"));
    let unpacked = tempfile::tempdir().unwrap();
    let status = Command::new("tar")
        .arg("xzf")
        .arg(&crate_file)
        .arg("-C")
        .arg(unpacked.path())
        .status()
        .unwrap();
    assert!(status.success());
    let sdk = unpacked.path().join(format!("wawe-sdk-{version}"));
    // The WIT travels inside the crate.
    assert!(sdk.join("wit/world.wit").is_file());

    let dir = tempfile::tempdir().unwrap();
    let sdk_arg = sdk.to_string_lossy().into_owned();
    let (project, stdout) = new_build_run(dir.path(), "outside", &["--sdk", &sdk_arg]);
    let manifest = std::fs::read_to_string(project.join("Cargo.toml")).unwrap();
    assert!(manifest.contains(&sdk_arg), "{manifest}");
    check_squares(&project, "outside", &stdout);
}

#[test]
fn wawe_new_refuses_a_bad_name_and_an_existing_directory() {
    let dir = tempfile::tempdir().unwrap();
    let out = wawe(dir.path()).args(["new", "9lives"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot name an agent crate"), "{err}");

    std::fs::create_dir(dir.path().join("taken")).unwrap();
    std::fs::write(dir.path().join("taken/keep.txt"), "mine").unwrap();
    let out = wawe(dir.path()).args(["new", "taken"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already exists and is not empty"), "{err}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("taken/keep.txt")).unwrap(),
        "mine"
    );
}

/// Every string literal in `dir`'s Rust files (recursively) that looks like
/// an event kind: an area, a dot and a lowercase word.
fn event_kinds_in(dir: &Path, found: &mut std::collections::BTreeSet<String>) {
    const AREAS: &[&str] = &[
        "task",
        "lease",
        "value",
        "learning",
        "signal",
        "agent",
        "host",
        "workspace",
        "http",
    ];
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            event_kinds_in(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            for literal in text.split('"').skip(1).step_by(2) {
                let Some((area, word)) = literal.split_once('.') else {
                    continue;
                };
                if AREAS.contains(&area)
                    && !word.is_empty()
                    && word.chars().all(|c| c.is_ascii_lowercase() || c == '-')
                {
                    found.insert(literal.to_owned());
                }
            }
        }
    }
}

#[test]
fn every_event_kind_the_environment_writes_is_documented() {
    let mut kinds = std::collections::BTreeSet::new();
    event_kinds_in(&root().join("host/src/env"), &mut kinds);
    event_kinds_in(&root().join("host/src/runtime"), &mut kinds);
    // Sanity: the scan finds the kinds it must.
    for known in [
        "task.pushed",
        "lease.granted",
        "http.denied",
        "workspace.write",
    ] {
        assert!(kinds.contains(known), "the scan missed {known}: {kinds:?}");
    }
    let guide = std::fs::read_to_string(root().join("docs/agents.md")).unwrap();
    let wit = std::fs::read_to_string(root().join("guest-sdk/wit/events.wit")).unwrap();
    for kind in &kinds {
        assert!(
            guide.contains(&format!("`{kind}`")),
            "docs/agents.md lacks `{kind}`"
        );
        assert!(wit.contains(kind.as_str()), "events.wit lacks {kind}");
    }
}
