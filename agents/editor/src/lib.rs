//! `editor`: the workspace demo's agents, by `mode`.
//!
//! - `producer`: writes `files` source files `src/f<i>.txt` (one line each)
//!   under a lease on `src/`, pushes `tasks` edit tasks to `queue` (every
//!   third one touching two files at once), waits until they are all done,
//!   then checks the workspace: each file must hold its first line plus
//!   exactly one line per task that touched it, and no temporary file may be
//!   left. It also checks that the `stale` agent's write was refused. Any
//!   difference ends it failed, naming the file.
//! - `worker`: claims edit tasks; for each, reserves its files exclusively,
//!   reads them with `std::fs`, appends the task's line to each, and writes
//!   them back through the workspace under the lease.
//! - `crash`: like a worker, but for its first `crashes` tasks it starts a
//!   piecewise write, appends half the new content, and panics before
//!   committing: the file must stay whole and the task comes back.
//! - `stale`: reserves `src/f0.txt` with a lease so short it lapses, waits,
//!   then tries to write: the write must be refused as stale. It records the
//!   outcome in `editor/stale-write`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use wawe_sdk::reservations::{self, Mode};
use wawe_sdk::tasks::{self, PushOptions};
use wawe_sdk::values::{self, WriteOptions};
use wawe_sdk::{Agent, Config, info, warn, workspace};

#[derive(Serialize, Deserialize)]
struct Edit {
    files: Vec<String>,
    line: String,
}

fn file(i: u32) -> String {
    format!("src/f{i}.txt")
}

fn first_line(path: &str) -> String {
    format!("{path}: first line")
}

/// The edit tasks: task `t` appends `edit <t>` to file `t % files`, and
/// every third task also to the next file.
fn edits(tasks: u32, files: u32) -> Vec<Edit> {
    (0..tasks)
        .map(|t| {
            let mut touched = vec![file(t % files)];
            if t % 3 == 0 && files > 1 {
                touched.push(file((t + 1) % files));
            }
            Edit {
                files: touched,
                line: format!("edit {t}"),
            }
        })
        .collect()
}

fn producer(config: &Config) -> Result<(), String> {
    let queue = config.get_or("queue", "edits");
    let files: u32 = config.parse("files", 8)?;
    let count: u32 = config.parse("tasks", 40)?;
    let wait = Duration::from_secs(10);
    // A run after an earlier one on the same environment starts over.
    match values::delete("editor/done", WriteOptions::new()) {
        Err(e) if !e.is_not_found() => return Err(e.to_string()),
        _ => {}
    }
    {
        let lease = reservations::reserve(["src/"], Mode::Exclusive, wait, wait)
            .map_err(|e| e.to_string())?;
        for i in 0..files {
            let path = file(i);
            workspace::write(&lease, &path, format!("{}\n", first_line(&path)))
                .map_err(|e| e.to_string())?;
        }
    }
    let mut ids = Vec::new();
    for edit in edits(count, files) {
        let pushed = tasks::push_json(queue, &edit, PushOptions::new().max_attempts(10))
            .map_err(|e| e.to_string())?;
        ids.push(pushed.id);
    }
    info!("seeded {files} files and pushed {count} edit tasks");
    loop {
        let open = ids
            .iter()
            .filter(|id| {
                tasks::get(**id)
                    .map(|t| !t.state.is_final())
                    .unwrap_or(true)
            })
            .count();
        if open == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    values::put("editor/done", "true", WriteOptions::new()).map_err(|e| e.to_string())?;
    check(files, count)
}

/// Every file holds exactly its first line and one line per edit of it, and
/// nothing else is left in the workspace.
fn check(files: u32, count: u32) -> Result<(), String> {
    let mut expected: BTreeMap<String, Vec<String>> = (0..files)
        .map(|i| (file(i), vec![first_line(&file(i))]))
        .collect();
    for edit in edits(count, files) {
        for f in edit.files {
            expected.entry(f).or_default().push(edit.line.clone());
        }
    }
    for (path, want) in &mut expected {
        let text = workspace::read_to_string(path.as_str()).map_err(|e| format!("{path}: {e}"))?;
        if !text.ends_with('\n') {
            return Err(format!("{path} is torn: it does not end with a whole line"));
        }
        let mut got: Vec<&str> = text.lines().collect();
        got.sort_unstable();
        want.sort_unstable();
        if got != *want {
            return Err(format!(
                "{path} holds {} lines, not the {} its edits imply:\n{text}",
                got.len(),
                want.len()
            ));
        }
    }
    let present: BTreeSet<String> = std::fs::read_dir(workspace::path("src"))
        .map_err(|e| e.to_string())?
        .flatten()
        .map(|e| format!("src/{}", e.file_name().to_string_lossy()))
        .collect();
    let extra: Vec<&String> = present
        .iter()
        .filter(|p| !expected.contains_key(*p))
        .collect();
    if !extra.is_empty() {
        return Err(format!("unexpected files left in src/: {extra:?}"));
    }
    let tmp = std::fs::read_dir(workspace::path(".wawe/tmp"))
        .map(|d| d.count())
        .unwrap_or(0);
    if tmp > 0 {
        return Err(format!("{tmp} temporary file(s) left in .wawe/tmp"));
    }
    match values::get("editor/stale-write").map_err(|e| e.to_string())? {
        Some(v) if v.value == "refused" => {}
        other => {
            return Err(format!(
                "the stale write was not refused (editor/stale-write = {:?})",
                other.map(|v| v.value)
            ));
        }
    }
    info!(
        "checked: every file holds exactly what its {count} edits imply; the stale write was refused"
    );
    Ok(())
}

/// Claim and apply edits until the producer says all are done; `crashes`
/// of them crash halfway through writing.
fn worker(config: &Config, crashes: u32) -> Result<(), String> {
    let queue = config.get_or("queue", "edits");
    let lease_for = Duration::from_secs(10);
    loop {
        let Some(task) =
            tasks::claim(queue, lease_for, Duration::from_secs(3)).map_err(|e| e.to_string())?
        else {
            if values::get("editor/done")
                .map_err(|e| e.to_string())?
                .is_some()
            {
                return Ok(());
            }
            continue;
        };
        let edit: Edit = task.json().map_err(|e| e.to_string())?;
        let lease = match reservations::reserve(
            edit.files.clone(),
            Mode::Exclusive,
            lease_for,
            Duration::from_secs(5),
        ) {
            Ok(l) => l,
            Err(e) => {
                task.fail(&e.to_string(), true).map_err(|e| e.to_string())?;
                continue;
            }
        };
        if crashes > 0 && task.attempt() == 1 {
            // Persisted across runs: the host restarts this agent afresh.
            let spent: u32 = values::get_json("editor/crashes")
                .ok()
                .flatten()
                .map_or(0, |e| e.value);
            values::put_json("editor/crashes", &(spent + 1), WriteOptions::new())
                .map_err(|e| e.to_string())?;
            let path = &edit.files[0];
            let old = workspace::read_to_string(path).map_err(|e| e.to_string())?;
            let mut w = workspace::begin_write(&lease, path).map_err(|e| e.to_string())?;
            w.append(&old.as_bytes()[..old.len() / 2])
                .map_err(|e| e.to_string())?;
            panic!("crashing in the middle of writing {path}");
        }
        let mut written = Vec::new();
        for path in &edit.files {
            let old = workspace::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
            let w = workspace::write(&lease, path, format!("{old}{}\n", edit.line))
                .map_err(|e| e.to_string())?;
            written.push(w.hash);
        }
        drop(lease);
        task.complete_json(&written).map_err(|e| e.to_string())?;
    }
}

fn stale() -> Result<(), String> {
    let path = file(0);
    // Wait for the producer to seed the files.
    while workspace::read(&path).is_err() {
        std::thread::sleep(Duration::from_millis(100));
    }
    let lease = reservations::reserve(
        [path.clone()],
        Mode::Exclusive,
        Duration::from_millis(1),
        Duration::from_secs(10),
    )
    .map_err(|e| e.to_string())?;
    // The lease lapses: the host renews only leases still alive.
    std::thread::sleep(Duration::from_millis(500));
    let outcome = match workspace::write(&lease, &path, "written with a lapsed lease\n") {
        Ok(_) => "written".to_string(),
        Err(e) if e.is_stale_token() || e.is_not_found() => {
            info!("my write with a lapsed lease was refused, as it should be: {e}");
            "refused".to_string()
        }
        Err(e) => {
            warn!("unexpected answer to a stale write: {e}");
            format!("unexpected: {e}")
        }
    };
    values::put("editor/stale-write", &outcome, WriteOptions::new()).map_err(|e| e.to_string())?;
    Ok(())
}

struct Editor;

impl Agent for Editor {
    fn run(config: Config) -> wawe_sdk::RunResult {
        match config.get_or("mode", "worker") {
            "producer" => producer(&config),
            "worker" => worker(&config, 0),
            "crash" => {
                let want: u32 = config.parse("crashes", 2)?;
                let spent: u32 = values::get_json("editor/crashes")?.map_or(0, |e| e.value);
                worker(&config, want.saturating_sub(spent))
            }
            "stale" => stale(),
            other => Err(format!("unknown mode {other:?}")),
        }?;
        Ok(())
    }
}

wawe_sdk::agent!(Editor);
