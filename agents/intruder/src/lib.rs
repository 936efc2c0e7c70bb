//! `intruder`: tries what the sandbox must refuse. Every attempt is logged;
//! `run` returns `Err` listing what SUCCEEDED, or `Ok` when all was refused.
//!
//! Config `mode` (required):
//! - `read-file`: `std::fs::read("/etc/passwd")`, `read_dir(".")`, `read_dir("/")`;
//! - `socket`: TCP connect to 127.0.0.1:80, TCP listen on 127.0.0.1:0, a DNS lookup of "localhost";
//! - `env-var`: `std::env::vars()` (any at all) and `var("HOME")`;
//! - `release-other`: releases every lease `list("")` shows (it holds none),
//!   then guesses lease ids 1..=50;
//! - `complete-other`: `complete`, then `fail`, tasks 1..=50 with tokens 1..=50;
//! - `huge-payload`: pushes a task, records a learning and writes a value of
//!   `bytes` (16 MiB) each;
//! - `injection`: uses names and search text that attack SQL and the
//!   full-text query syntax; any answer but a result or a refusal of the
//!   argument counts as a breach (the host's tests also check the tables);
//! - `flood`: writes `what` (`tasks`, `learnings`, `signals`, `values`) in an
//!   endless loop: only a quota can stop it (never returns on its own);
//! - `deep-recursion`: recurses without end: only the stack limit can stop it.

use std::net::{TcpListener, TcpStream, ToSocketAddrs};

use std::time::Duration;

use wawe_sdk::bindings::wawe::env::tasks as raw_tasks;
use wawe_sdk::reservations::Mode;
use wawe_sdk::tasks::{self, PushOptions};
use wawe_sdk::values::{self, WriteOptions};
use wawe_sdk::{Agent, Config, Error, info, learnings, reservations, signals};

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

/// Sends payloads far past any sane size.
fn huge_payload(found: &mut Findings, bytes: usize) {
    let big = "x".repeat(bytes);
    let push = tasks::push("intruder", &big, PushOptions::new());
    let learn = learnings::record("intruder", &big, ["huge"]);
    let put = values::put("intruder/huge", &big, WriteOptions::new());
    for (what, refused) in [
        ("push a task", push.err()),
        ("record a learning", learn.err()),
        ("write a value", put.err()),
    ] {
        match refused {
            Some(e @ Error::TooLarge { .. }) => {
                found.refused(&format!("{what} of {bytes} bytes"), e)
            }
            Some(e) => found.breached(format!(
                "{what} of {bytes} bytes: not refused as too large: {e}"
            )),
            None => found.breached(format!("{what} of {bytes} bytes was accepted")),
        }
    }
}

/// Names and search text meant to break out of SQL strings or the full-text
/// query syntax.
const ATTACKS: &[&str] = &[
    "x'); DROP TABLE tasks; --",
    "\"; DELETE FROM kv; --",
    "' OR '1'='1",
    "a/../../b",
    "NEAR(a b, 1) OR body:* ^\"unbalanced",
    "* AND -",
    "%_%",
    "\u{0}nul",
];

/// Uses every attack as a queue, resource, key, topic, trail and search text.
fn injection(found: &mut Findings) {
    for attack in ATTACKS {
        // A result, or a refusal of the argument, is fine; anything else
        // (say, a database error) means the text reached SQL unquoted.
        let mut check = |what: &str, r: Result<(), Error>| match r {
            Ok(()) => found.refused(&format!("{what} {attack:?}"), "taken as plain text"),
            Err(Error::InvalidArgument(m)) => found.refused(&format!("{what} {attack:?}"), m),
            Err(e) => found.breached(format!("{what} {attack:?}: {e}")),
        };
        check(
            "push to queue",
            tasks::push(attack, "{}", PushOptions::new()).map(drop),
        );
        check(
            "reserve",
            reservations::reserve(
                [*attack],
                Mode::Exclusive,
                Duration::from_secs(5),
                Duration::ZERO,
            )
            .map(drop),
        );
        check(
            "write value",
            values::put(attack, "v", WriteOptions::new()).map(drop),
        );
        check(
            "record learning",
            learnings::record(attack, attack, [*attack]).map(drop),
        );
        check("search", learnings::search(attack, 5).map(drop));
        check("deposit", signals::deposit(attack, 1.0).map(drop));
        check("strongest", signals::strongest(attack, 5).map(drop));
    }
}

/// Writes without end; returns only with the error that stopped it.
fn flood(what: &str) -> Result<(), String> {
    let mut n: u64 = 0;
    loop {
        n += 1;
        let key = format!("flood/{n}");
        let r = match what {
            "tasks" => tasks::push("flood", &key, PushOptions::new()).map(drop),
            "learnings" => learnings::record("flood", &key, ["flood"]).map(drop),
            "signals" => signals::deposit(&key, 1.0).map(drop),
            "values" => values::put(&key, "v", WriteOptions::new()).map(drop),
            other => return Err(format!("unknown flood {other:?}")),
        };
        r.map_err(|e| format!("flood of {what} refused after {n}: {e}"))?;
    }
}

/// Recurses until something stops it (deliberately unbounded).
#[inline(never)]
#[allow(unconditional_recursion)]
fn recurse(depth: u64, pad: &mut [u8; 256]) -> u64 {
    pad[(depth % 256) as usize] = depth as u8;
    let mut mine = [0u8; 256];
    mine[0] = pad[0];
    recurse(depth + 1, &mut mine) + u64::from(std::hint::black_box(mine[1]))
}

/// The intruder agent.
struct Intruder;

impl Agent for Intruder {
    fn run(config: Config) -> wawe_sdk::RunResult {
        let mode = config.require("mode")?;
        let mut found = Findings::default();
        match mode {
            "read-file" => read_file(&mut found),
            "socket" => socket(&mut found),
            "env-var" => env_var(&mut found),
            "release-other" => release_other(&mut found)?,
            "complete-other" => complete_other(&mut found),
            "huge-payload" => huge_payload(&mut found, config.parse("bytes", 16 << 20)?),
            "injection" => injection(&mut found),
            "flood" => return Ok(flood(config.get_or("what", "tasks"))?),
            "deep-recursion" => {
                let depth = recurse(0, &mut [0; 256]);
                return Err(format!("recursed {depth} deep and came back").into());
            }
            other => {
                return Err(format!(
                    "unknown mode {other:?}: expected read-file, socket, env-var, \
                     release-other, complete-other, huge-payload, injection, flood or \
                     deep-recursion"
                )
                .into());
            }
        }
        Ok(found.verdict(mode)?)
    }
}

wawe_sdk::agent!(Intruder);
