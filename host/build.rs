//! Builds the agents in `agents/` (a cargo workspace of its own) for
//! `wasm32-wasip2`, so the host's tests and demos have real components.
//!
//! The agents are built by a nested `cargo build` into the fixed directory
//! `<repo>/target/agents` (a demo manifest can name
//! `target/agents/wasm32-wasip2/debug/<agent>.wasm`), always with the agents
//! workspace's own `dev` profile. For each agent this script sets
//! `WAWE_AGENT_<NAME>` (name upper-cased, `-` as `_`) to the absolute path of its
//! `.wasm`, read with `env!("WAWE_AGENT_WORKER")` and the like; `WAWE_AGENTS_DIR`
//! is the directory holding them all.
//!
//! As in wasmtime's `crates/test-programs/artifacts/build.rs`, the settings
//! of the outer build (its rustflags, target directory, wrappers) are kept
//! away from the nested one: they are meant for the host, not for wasm.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The target every agent is built for.
const TARGET: &str = "wasm32-wasip2";

/// Environment variables of the outer build that must not reach the nested cargo.
const ISOLATED_VARS: &[&str] = &[
    "RUSTFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
    "RUSTDOCFLAGS",
    "CARGO_ENCODED_RUSTDOCFLAGS",
    "CARGO_TARGET_DIR",
    "RUSTC_WRAPPER",
    "RUSTC_WORKSPACE_WRAPPER",
];

/// Prefixes of further such variables (`CARGO_BUILD_TARGET`, `CARGO_PROFILE_DEV_OPT_LEVEL`, …).
const ISOLATED_PREFIXES: &[&str] = &["CARGO_BUILD_", "CARGO_PROFILE_"];

fn main() {
    let host_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = host_dir
        .parent()
        .expect("host/ lives in the repository root");
    let agents_dir = root.join("agents");
    let target_dir = root.join("target").join("agents");

    let agents = find_agents(&agents_dir);
    watch(root, &agents_dir, &agents);
    require_target();
    build(&agents_dir, &target_dir);

    let out_dir = target_dir.join(TARGET).join("debug");
    for agent in &agents {
        let wasm = out_dir.join(format!("{}.wasm", agent.replace('-', "_")));
        if !wasm.is_file() {
            fail(&format!(
                "agents/{agent} did not produce {}: is it a `cdylib` member of agents/Cargo.toml?",
                wasm.display()
            ));
        }
        let var = agent.to_uppercase().replace('-', "_");
        println!("cargo:rustc-env=WAWE_AGENT_{var}={}", wasm.display());
    }
    println!("cargo:rustc-env=WAWE_AGENTS_DIR={}", out_dir.display());
}

/// The agent crates: the directories of `agents/` with a `Cargo.toml`, by name.
///
/// Each directory is named like its package, so its component is
/// `<name with - as _>.wasm`.
fn find_agents(agents_dir: &Path) -> Vec<String> {
    let entries = std::fs::read_dir(agents_dir)
        .unwrap_or_else(|e| fail(&format!("cannot list {}: {e}", agents_dir.display())));
    let mut agents: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|entry| entry.path().join("Cargo.toml").is_file())
        .filter_map(|entry| entry.file_name().into_string().ok())
        .collect();
    agents.sort();
    agents
}

/// Tells cargo to run this script again when anything the agents are built from changes.
fn watch(root: &Path, agents_dir: &Path, agents: &[String]) {
    let mut paths = vec![
        PathBuf::from("build.rs"),
        root.join("Cargo.toml"),
        root.join("guest-sdk").join("wit"),
        root.join("guest-sdk").join("Cargo.toml"),
        root.join("guest-sdk").join("src"),
        root.join("guest-sdk").join("examples"),
        agents_dir.join("Cargo.toml"),
        agents_dir.join("Cargo.lock"),
        agents_dir.join(".cargo"),
    ];
    for agent in agents {
        let dir = agents_dir.join(agent);
        paths.extend(["Cargo.toml", "src", "wit"].map(|part| dir.join(part)));
    }
    // A missing path would count as changed on every build. (A build script
    // runs in its package's directory, so `build.rs` is found as it is.)
    for path in paths.iter().filter(|path| path.exists()) {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    for var in ["RUSTFLAGS", "CARGO_ENCODED_RUSTFLAGS"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
}

/// Fails with instructions when the standard library for [`TARGET`] is not installed.
fn require_target() {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let libdir = Command::new(&rustc)
        .args(["--print", "target-libdir", "--target", TARGET])
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()));
    if !libdir.is_some_and(|dir| dir.is_dir()) {
        fail(&format!(
            "the {TARGET} target is not installed: run `rustup target add {TARGET}`"
        ));
    }
}

/// Runs the nested `cargo build` of the agents workspace, forwarding its warnings.
fn build(agents_dir: &Path, target_dir: &Path) {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(agents_dir)
        .arg("build")
        .arg("--manifest-path")
        .arg(agents_dir.join("Cargo.toml"))
        .arg("--target")
        .arg(TARGET)
        .arg("--target-dir")
        .arg(target_dir)
        .arg("--message-format=short")
        .arg("--color=never");
    for (key, _) in env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        if ISOLATED_VARS.contains(&key) || ISOLATED_PREFIXES.iter().any(|p| key.starts_with(p)) {
            cmd.env_remove(key);
        }
    }
    // Like wasmtime: a build that denies warnings denies them in the agents too.
    if denies_warnings() {
        cmd.env("RUSTFLAGS", "-D warnings");
    }

    eprintln!("running: {cmd:?}");
    let output = cmd
        .output()
        .unwrap_or_else(|e| fail(&format!("cannot run cargo to build the agents: {e}")));
    let stderr = String::from_utf8_lossy(&output.stderr);
    // Shown by cargo with `-vv`, or when this script fails.
    eprintln!("{stderr}");
    if !output.status.success() {
        for line in stderr.lines().filter(|line| line.contains("error")) {
            println!("cargo::error=agents: {line}");
        }
        fail(&format!(
            "building the agents failed ({}); the nested cargo's output is below",
            output.status
        ));
    }
    for line in stderr.lines().filter(|line| line.contains("warning")) {
        println!("cargo:warning=agents: {line}");
    }
}

/// True when the outer build's rustflags contain `-D warnings`.
fn denies_warnings() -> bool {
    ["RUSTFLAGS", "CARGO_ENCODED_RUSTFLAGS"].iter().any(|var| {
        env::var(var).is_ok_and(|flags| flags.replace([' ', '\x1f'], "").contains("-Dwarnings"))
    })
}

/// Reports `message` as the reason this build script failed, and exits.
fn fail(message: &str) -> ! {
    // Shown at the top of cargo's report (then stdout and stderr in full).
    println!("cargo::error={message}");
    std::process::exit(1);
}
