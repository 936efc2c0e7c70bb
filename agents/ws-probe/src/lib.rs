//! `ws-probe`: runs the steps in its `steps` config (a JSON array) against
//! the workspace and records what each one came to in the shared value
//! `probe/<name>` (a JSON array of strings: `ok`, `ok:<text read>`, or
//! `err:<kind>: <message>`), after every step, so a crash leaves the record
//! of the steps before it.
//!
//! Steps: `{"reserve": ["a/"], "as": "L", "shared": false, "ttl_ms": 30000}`,
//! `{"write": "a/x", "under": "L", "data": "..."}`, `{"read": "a/x"}` (a
//! plain `std::fs` read of `/workspace/a/x`; `read_abs` reads a path as
//! given; `write_fs` tries a plain `std::fs::write` there), `{"rename":
//! "a/x", "to": "a/y", "under": "L"}`,
//! `{"remove": "a/x", "under": "L"}`, `{"mkdir": "a/d", "under": "L"}`,
//! `{"release": "L"}`, `{"sleep_ms": 100}`, `{"list": "a"}`, and
//! `{"write_then_panic": "a/x", "under": "L", "data": "..."}`: begins a
//! piecewise write, appends `data`, and panics before committing.

use std::collections::HashMap;
use std::time::Duration;

use serde::Deserialize;
use wawe_sdk::reservations::{self, LeaseGuard, Mode};
use wawe_sdk::values::{self, WriteOptions};
use wawe_sdk::{Agent, Config, Error, workspace};

#[derive(Deserialize)]
struct Step {
    reserve: Option<Vec<String>>,
    #[serde(rename = "as")]
    name: Option<String>,
    #[serde(default)]
    shared: bool,
    ttl_ms: Option<u64>,
    write: Option<String>,
    write_then_panic: Option<String>,
    under: Option<String>,
    data: Option<String>,
    read: Option<String>,
    read_abs: Option<String>,
    write_fs: Option<String>,
    rename: Option<String>,
    to: Option<String>,
    remove: Option<String>,
    mkdir: Option<String>,
    release: Option<String>,
    sleep_ms: Option<u64>,
    list: Option<String>,
}

fn kind(e: &Error) -> &'static str {
    match e {
        Error::Conflict { .. } => "conflict",
        Error::StaleToken(_) => "stale-token",
        Error::NotFound(_) => "not-found",
        Error::TooLarge { .. } => "too-large",
        Error::VersionMismatch { .. } => "version-mismatch",
        Error::InvalidArgument(_) => "invalid-argument",
        Error::Unavailable(_) => "unavailable",
        _ => "other",
    }
}

fn outcome(r: Result<String, Error>) -> String {
    match r {
        Ok(s) if s.is_empty() => "ok".into(),
        Ok(s) => format!("ok:{s}"),
        Err(e) => format!("err:{}: {e}", kind(&e)),
    }
}

fn io(r: std::io::Result<String>) -> String {
    match r {
        Ok(s) => format!("ok:{s}"),
        Err(e) => format!("err:io: {e}"),
    }
}

struct Probe;

impl Agent for Probe {
    fn run(config: Config) -> wawe_sdk::RunResult {
        let name = config.get_or("name", "probe").to_string();
        let steps: Vec<Step> =
            serde_json::from_str(config.require("steps")?).map_err(|e| format!("steps: {e}"))?;
        let mut leases: HashMap<String, LeaseGuard> = HashMap::new();
        let mut record: Vec<String> = Vec::new();
        for step in steps {
            let lease = |leases: &HashMap<String, LeaseGuard>| {
                let n = step.under.as_deref().unwrap_or("L");
                leases.get(n).map(|l| l.id())
            };
            let data = step.data.clone().unwrap_or_default();
            let got = if let Some(resources) = &step.reserve {
                let mode = if step.shared {
                    Mode::Shared
                } else {
                    Mode::Exclusive
                };
                let ttl = Duration::from_millis(step.ttl_ms.unwrap_or(30_000));
                let r = reservations::reserve(resources.clone(), mode, ttl, Duration::from_secs(5));
                outcome(r.map(|l| {
                    leases.insert(step.name.clone().unwrap_or("L".into()), l);
                    String::new()
                }))
            } else if let Some(path) = &step.write {
                let id = lease(&leases).unwrap_or(u64::MAX);
                outcome(workspace::write(&Id(id), path, &data).map(|_| String::new()))
            } else if let Some(path) = &step.write_then_panic {
                let id = lease(&leases).unwrap_or(u64::MAX);
                let mut w = workspace::begin_write(&Id(id), path).map_err(|e| e.to_string())?;
                w.append(&data).map_err(|e| e.to_string())?;
                panic!("crashing in the middle of writing {path}");
            } else if let Some(path) = &step.read {
                io(workspace::read_to_string(path))
            } else if let Some(path) = &step.read_abs {
                io(std::fs::read_to_string(path))
            } else if let Some(path) = &step.write_fs {
                io(std::fs::write(workspace::path(path), &data).map(|()| String::new()))
            } else if let Some(from) = &step.rename {
                let id = lease(&leases).unwrap_or(u64::MAX);
                let to = step.to.clone().unwrap_or_default();
                outcome(workspace::rename(&Id(id), from, &to).map(|()| String::new()))
            } else if let Some(path) = &step.remove {
                let id = lease(&leases).unwrap_or(u64::MAX);
                outcome(workspace::remove(&Id(id), path).map(|()| String::new()))
            } else if let Some(path) = &step.mkdir {
                let id = lease(&leases).unwrap_or(u64::MAX);
                outcome(workspace::create_dir(&Id(id), path).map(|()| String::new()))
            } else if let Some(n) = &step.release {
                match leases.remove(n) {
                    Some(l) => outcome(l.release().map(|()| String::new())),
                    None => "err:no such lease in the script".into(),
                }
            } else if let Some(ms) = step.sleep_ms {
                std::thread::sleep(Duration::from_millis(ms));
                "ok".into()
            } else if let Some(dir) = &step.list {
                io(std::fs::read_dir(workspace::path(dir)).map(|entries| {
                    let mut names: Vec<String> = entries
                        .flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect();
                    names.sort();
                    names.join(",")
                }))
            } else {
                return Err("a step with nothing to do".into());
            };
            record.push(got);
            values::put_json(&format!("probe/{name}"), &record, WriteOptions::new())
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

/// A lease named by id only (to present ids that are not the probe's own).
struct Id(u64);

impl workspace::HoldsLease for Id {
    fn lease_id(&self) -> u64 {
        self.0
    }
}

wawe_sdk::agent!(Probe);
