//! `intruder`: tries what the sandbox must refuse. Every attempt is logged;
//! `run` returns `Err` listing what SUCCEEDED, or `Ok` when all was refused.
//!
//! Config `mode` (required):
//! - `read-file`: `std::fs::read("/etc/passwd")`, `read_dir(".")`, `read_dir("/")`;
//! - `socket`: TCP connect to 127.0.0.1:80, TCP listen on 127.0.0.1:0, a DNS lookup of "localhost";
//! - `env-var`: `std::env::vars()` (any at all) and `var("HOME")`;
//! - `release-other`: releases every lease `list("")` shows (it holds none),
//!   then guesses lease ids 1..=50;
//! - `complete-other`: `complete`, then `fail`, tasks 1..=50 with tokens 1..=50.

use std::net::{TcpListener, TcpStream, ToSocketAddrs};

use wawe_sdk::bindings::wawe::env::tasks as raw_tasks;
use wawe_sdk::{Agent, Config, info, reservations};

/// The highest lease, task id and token the guessing modes try.
const GUESSES: u64 = 50;

/// What one mode found: the forbidden things that worked.
#[derive(Default)]
struct Findings {
    breaches: Vec<String>,
}

impl Findings {
    /// Logs an attempt the sandbox refused.
    fn refused(&self, what: &str, why: impl std::fmt::Display) {
        info!("intruder: {what}: refused ({why})");
    }

    /// Logs and keeps an attempt that succeeded.
    fn breached(&mut self, what: String) {
        wawe_sdk::log::error(&format!("intruder: BREACH: {what}"));
        self.breaches.push(what);
    }

    /// `Ok` when everything was refused, else `Err` naming every breach.
    fn verdict(self, mode: &str) -> Result<(), String> {
        if self.breaches.is_empty() {
            info!("intruder: {mode}: everything was refused");
            Ok(())
        } else {
            Err(self.breaches.join("; "))
        }
    }
}

/// Reads files and lists directories.
fn read_file(found: &mut Findings) {
    match std::fs::read("/etc/passwd") {
        Ok(bytes) => found.breached(format!("read /etc/passwd: {} bytes", bytes.len())),
        Err(e) => found.refused("read /etc/passwd", e),
    }
    for dir in [".", "/"] {
        match std::fs::read_dir(dir) {
            Ok(entries) => found.breached(format!("listed {dir:?}: {} entries", entries.count())),
            Err(e) => found.refused(&format!("list {dir:?}"), e),
        }
    }
}

/// Opens sockets and resolves names.
fn socket(found: &mut Findings) {
    match TcpStream::connect("127.0.0.1:80") {
        Ok(stream) => found.breached(format!("connected to {:?}", stream.peer_addr())),
        Err(e) => found.refused("connect to 127.0.0.1:80", e),
    }
    match TcpListener::bind("127.0.0.1:0") {
        Ok(listener) => found.breached(format!("listening on {:?}", listener.local_addr())),
        Err(e) => found.refused("listen on 127.0.0.1:0", e),
    }
    match "localhost:80".to_socket_addrs() {
        Ok(addrs) => found.breached(format!(
            "resolved localhost: {:?}",
            addrs.collect::<Vec<_>>()
        )),
        Err(e) => found.refused("resolve localhost", e),
    }
}

/// Reads the environment variables.
fn env_var(found: &mut Findings) {
    let vars: Vec<String> = std::env::vars().map(|(k, _)| k).collect();
    if vars.is_empty() {
        found.refused("std::env::vars", "none visible");
    } else {
        found.breached(format!(
            "{} environment variables: {}",
            vars.len(),
            vars.join(", ")
        ));
    }
    match std::env::var("HOME") {
        Ok(home) => found.breached(format!("HOME={home}")),
        Err(e) => found.refused("std::env::var(\"HOME\")", e),
    }
}

/// Releases leases it does not hold: the listed ones, then guessed ids.
fn release_other(found: &mut Findings) -> Result<(), String> {
    let holdings = reservations::list("")?;
    info!("intruder: {} holdings visible", holdings.len());
    for holding in &holdings {
        let what = format!("release lease {} of {}", holding.lease, holding.holder);
        match reservations::release_id(holding.lease) {
            Ok(()) => found.breached(what),
            Err(e) => found.refused(&what, e),
        }
    }
    let mut refused = 0;
    for id in 1..=GUESSES {
        match reservations::release_id(id) {
            Ok(()) => found.breached(format!("released lease {id}, which it did not hold")),
            Err(_) => refused += 1,
        }
    }
    info!("intruder: release of guessed lease ids 1..={GUESSES}: {refused} refused");
    Ok(())
}

/// Completes and fails tasks with guessed ids and tokens.
fn complete_other(found: &mut Findings) {
    let mut refused = 0;
    for id in 1..=GUESSES {
        for token in 1..=GUESSES {
            match raw_tasks::complete(id, token, "{\"by\":\"intruder\"}") {
                Ok(()) => found.breached(format!("completed task {id} with guessed token {token}")),
                Err(_) => refused += 1,
            }
            match raw_tasks::fail(id, token, "intruder", false) {
                Ok(()) => found.breached(format!("failed task {id} with guessed token {token}")),
                Err(_) => refused += 1,
            }
        }
    }
    info!(
        "intruder: complete and fail on tasks 1..={GUESSES} with tokens 1..={GUESSES}: \
         {refused} refused"
    );
}

/// The intruder agent.
struct Intruder;

impl Agent for Intruder {
    fn run(config: Config) -> Result<(), String> {
        let mode = config.require("mode")?;
        let mut found = Findings::default();
        match mode {
            "read-file" => read_file(&mut found),
            "socket" => socket(&mut found),
            "env-var" => env_var(&mut found),
            "release-other" => release_other(&mut found)?,
            "complete-other" => complete_other(&mut found),
            other => {
                return Err(format!(
                    "unknown mode {other:?}: expected read-file, socket, env-var, \
                     release-other or complete-other"
                ));
            }
        }
        found.verdict(mode)
    }
}

wawe_sdk::agent!(Intruder);
