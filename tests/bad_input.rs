//! Bad input at the environment's edge, through the real `wawe` binary: a
//! locked database, a read-only directory and a full disk each get a clear
//! error naming the problem and what to do, a non-zero exit, and nothing
//! already in the environment is lost. (Corrupt, foreign and newer files are
//! in `host/tests/journal.rs` and `tests/cli.rs`; bad modules and manifests
//! in `tests/run_cli.rs`.)

mod support;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::{block, integrity_check, wawe};
use wawe::env::{Env, EnvOptions, Task};

/// A directory anyone may enter, with an environment holding three tasks.
fn seeded() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let db = dir.path().join("env").join("swarm.db");
    std::fs::create_dir(db.parent().unwrap()).unwrap();
    for payload in ["one", "two", "three"] {
        assert!(push(dir.path(), &db, payload).status.success());
    }
    (dir, db)
}

fn push(dir: &Path, db: &Path, payload: &str) -> Output {
    push_with(wawe(dir), db, payload)
}

fn push_with(mut cmd: Command, db: &Path, payload: &str) -> Output {
    cmd.args(["env", "push", "q", payload, "--env"])
        .arg(db)
        .output()
        .unwrap()
}

/// The tasks in the environment, read through a fresh handle.
fn tasks(db: &Path) -> Vec<Task> {
    let env = Env::open_existing(db, EnvOptions::default()).unwrap();
    let tasks = block(env.list_tasks(None, None, 1_000)).unwrap();
    env.close();
    tasks
}

/// A failed run: its stderr, which must start `error:` and contain `expected`.
fn refused(out: &Output, expected: &[&str]) -> String {
    assert!(!out.status.success(), "it succeeded");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(err.starts_with("error: "), "{err}");
    for part in expected {
        assert!(err.contains(part), "expected {part:?} in: {err}");
    }
    err
}

#[test]
fn a_locked_database_is_reported_and_nothing_is_lost() {
    let (dir, db) = seeded();
    let before = tasks(&db);
    // Another process holding the file exclusively.
    let holder = rusqlite::Connection::open(&db).unwrap();
    holder
        .execute_batch("PRAGMA locking_mode = EXCLUSIVE; BEGIN EXCLUSIVE;")
        .unwrap();
    let out = push(dir.path(), &db, "four");
    refused(
        &out,
        &[
            "is locked by another process",
            "stop the process holding it",
        ],
    );
    holder.execute_batch("COMMIT").unwrap();
    drop(holder);
    assert_eq!(tasks(&db), before);
    assert_eq!(integrity_check(&db), "ok");
}

#[test]
fn a_read_only_directory_is_reported_and_nothing_is_lost() {
    let (dir, db) = seeded();
    let before = tasks(&db);
    let bytes = std::fs::read(&db).unwrap();
    let env_dir = db.parent().unwrap().to_path_buf();
    std::fs::set_permissions(&env_dir, std::fs::Permissions::from_mode(0o555)).unwrap();
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o444)).unwrap();
    let mut cmd = wawe(dir.path());
    // Root writes anywhere: run as nobody then, so the permissions hold.
    // SAFETY: setgroups/setgid/setuid are async-signal-safe and touch no Rust state.
    if unsafe { libc::geteuid() } == 0 {
        unsafe {
            cmd.pre_exec(|| {
                if libc::setgroups(0, std::ptr::null()) != 0
                    || libc::setgid(65534) != 0
                    || libc::setuid(65534) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let out = push_with(cmd, &db, "four");
    refused(
        &out,
        &["cannot be written", "read-only", "make both writable"],
    );
    std::fs::set_permissions(&env_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert_eq!(std::fs::read(&db).unwrap(), bytes, "the file changed");
    assert_eq!(tasks(&db), before);
}

#[test]
fn a_full_disk_is_reported_and_nothing_is_lost() {
    let (dir, db) = seeded();
    let before = tasks(&db);
    // A full disk, simulated: no file of this process may grow past 96 KiB
    // (writes beyond fail as on a full disk), and a payload far larger.
    let mut cmd = wawe(dir.path());
    // SAFETY: setrlimit and signal are async-signal-safe and touch no Rust state.
    unsafe {
        cmd.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 96 << 10,
                rlim_max: 96 << 10,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            Ok(())
        });
    }
    let big = "x".repeat(512 << 10);
    cmd.args(["env", "push", "q", "-", "--env"])
        .arg(&db)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(big.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    refused(
        &out,
        &["disk", "full", "did not complete", "check free space"],
    );
    assert_eq!(tasks(&db), before);
    assert_eq!(integrity_check(&db), "ok");
    // And the environment takes writes again once there is room.
    assert!(push(dir.path(), &db, "four").status.success());
    assert_eq!(tasks(&db).len(), before.len() + 1);
}
