//! Supervision: run one agent replica, record how each run ended, release
//! what it held, and restart it per its policy with backoff until it stops,
//! is stopped, or crash-loops.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use wasmtime::{Store, UpdateDeadline, WasmBacktrace};
use wasmtime_wasi::I32Exit;

use super::limits::EPOCH_TICK;
use super::load::Module;
use super::state::AgentState;
use super::{AgentSpec, RestartPolicy, Shared, truncate};
use crate::env::{AgentEnd, AgentId};

/// How one run of an agent ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunEnd {
    /// `run` returned `ok`.
    Exited,
    /// `run` returned an error with this message.
    Failed(String),
    /// It trapped, panicked or hit a limit; why, with a backtrace.
    Crashed(String),
    /// Its host stopped it.
    Stopped,
}

impl RunEnd {
    fn kind(&self) -> AgentEnd {
        match self {
            RunEnd::Exited => AgentEnd::Exited,
            RunEnd::Failed(_) => AgentEnd::Failed,
            RunEnd::Crashed(_) => AgentEnd::Crashed,
            RunEnd::Stopped => AgentEnd::Stopped,
        }
    }

    fn reason(&self) -> &str {
        match self {
            RunEnd::Exited => "returned ok",
            RunEnd::Failed(m) | RunEnd::Crashed(m) => m,
            RunEnd::Stopped => "stopped by its host",
        }
    }
}

/// The longest end reason recorded.
const MAX_REASON: usize = 4096;

/// Run `spec` of `module` until it ends for good; returns its last end.
/// `stop` is this agent's stop signal; the host's own shutdown stops it too.
pub(crate) async fn supervise(
    shared: Arc<Shared>,
    module: Module,
    spec: AgentSpec,
    mut stop: watch::Receiver<bool>,
) -> RunEnd {
    let _alive = shared.supervisors.enter();
    let mut host_stop = shared.stop_all.subscribe();
    let counters = &shared.counters;
    let mut recent_failures: VecDeque<Instant> = VecDeque::new();
    let mut failures_in_a_row: u32 = 0;
    loop {
        let id = match shared
            .env
            .agent_started(&shared.host, &spec.name, spec.replica, &module.digest)
            .await
        {
            Ok(id) => id,
            Err(e) => {
                tracing::error!(agent = %spec.name, "cannot record the agent's start: {e}");
                return RunEnd::Crashed(format!("cannot record the agent's start: {e}"));
            }
        };
        counters.running.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        // The run is a task of its own, so a panic in host code ends only
        // this run (as a crash) and never leaves the agent's record behind.
        let mut run = tokio::spawn(run_once(
            shared.clone(),
            module.clone(),
            spec.clone(),
            id.clone(),
        ));
        let Ran { end, past_quota } = tokio::select! {
            joined = &mut run => joined.unwrap_or_else(|e| Ran {
                end: RunEnd::Crashed(format!("the host failed while running it: {e}")),
                past_quota: false,
            }),
            _ = stopped(&mut stop, &mut host_stop) => {
                run.abort();
                let _ = run.await;
                Ran { end: RunEnd::Stopped, past_quota: false }
            }
        };
        counters.running.fetch_sub(1, Ordering::Relaxed);
        match &end {
            RunEnd::Exited => counters.exited.fetch_add(1, Ordering::Relaxed),
            RunEnd::Failed(_) => counters.failed.fetch_add(1, Ordering::Relaxed),
            RunEnd::Crashed(_) => counters.crashed.fetch_add(1, Ordering::Relaxed),
            RunEnd::Stopped => counters.stopped.fetch_add(1, Ordering::Relaxed),
        };
        let mut reason = end.reason().to_string();
        truncate(&mut reason, MAX_REASON);
        match &end {
            RunEnd::Exited | RunEnd::Stopped => tracing::info!(agent = %id, "{reason}"),
            _ => {
                let first = reason.lines().next().unwrap_or_default();
                tracing::warn!(agent = %id, "{} {first}", end.kind().as_str());
                tracing::debug!(agent = %id, "{reason}");
            }
        }
        record_end(&shared, &id, &end, &reason).await;
        let failed = matches!(end, RunEnd::Failed(_) | RunEnd::Crashed(_));
        let restart = match spec.restart {
            RestartPolicy::Never => false,
            RestartPolicy::OnFailure => failed,
            RestartPolicy::Always => end != RunEnd::Stopped,
        };
        if !restart || *stop.borrow() || *host_stop.borrow() {
            return end;
        }
        // A run stopped by a per-run quota would flood again if restarted
        // (its counts start over): it is given up on at once.
        if past_quota {
            let why = "stopped at a per-run quota; not restarting (raise the quota in its \
                       manifest if this is real work)";
            tracing::error!(agent = %id, "{why}");
            counters.gave_up.fetch_add(1, Ordering::Relaxed);
            if let Err(e) = shared.env.agent_gave_up(&id, why).await {
                tracing::error!(agent = %id, "cannot record giving up: {e}");
            }
            return end;
        }
        let now = Instant::now();
        let window = shared.options.crash_loop_window;
        if failed {
            while recent_failures.front().is_some_and(|t| now - *t > window) {
                recent_failures.pop_front();
            }
            if recent_failures.len() as u32 >= shared.options.crash_loop_restarts {
                let why = format!(
                    "crash loop: {} restarts after failures within {}; not restarting again",
                    recent_failures.len(),
                    humantime::format_duration(window)
                );
                tracing::error!(agent = %id, "{why}");
                counters.gave_up.fetch_add(1, Ordering::Relaxed);
                if let Err(e) = shared.env.agent_gave_up(&id, &why).await {
                    tracing::error!(agent = %id, "cannot record giving up: {e}");
                }
                return end;
            }
            recent_failures.push_back(now);
        }
        // A run that lasted a whole window was healthy: back off from scratch.
        failures_in_a_row = match (failed, now - started > window) {
            (false, _) => 0,
            (true, true) => 1,
            (true, false) => failures_in_a_row + 1,
        };
        let backoff = restart_backoff(&shared.options, failures_in_a_row);
        counters.restarts.fetch_add(1, Ordering::Relaxed);
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stopped(&mut stop, &mut host_stop) => return RunEnd::Stopped,
        }
    }
}

/// Resolves when the agent or its whole host is told to stop (or the
/// agent's handle is dropped).
async fn stopped(agent: &mut watch::Receiver<bool>, host: &mut watch::Receiver<bool>) {
    tokio::select! {
        _ = agent.wait_for(|s| *s) => {}
        _ = host.wait_for(|s| *s) => {}
    }
}

/// Record how a run ended, retrying a failed write: an agent whose end is not
/// recorded would stay `running`, and its leases would be kept alive.
async fn record_end(shared: &Shared, id: &AgentId, end: &RunEnd, reason: &str) {
    let mut pause = Duration::from_millis(50);
    for attempt in 1..=10 {
        match shared.env.agent_ended(id, end.kind(), reason).await {
            Ok(()) => return,
            Err(e) => {
                tracing::error!(agent = %id, "cannot record the agent's end (attempt {attempt}): {e}");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
        }
    }
}

/// The pause before restart number `failures` in a row: the base doubled each
/// time, capped.
fn restart_backoff(opts: &super::RuntimeOptions, failures: u32) -> Duration {
    let factor = 1u32 << failures.saturating_sub(1).min(16);
    (opts.restart_backoff * factor).min(opts.restart_backoff_max)
}

/// How one run ended, and whether it may be restarted at all.
struct Ran {
    end: RunEnd,
    /// It went past a per-run quota: restarting would start its counts over.
    past_quota: bool,
}

/// One run (see [`run_in`]), and whether it went past a per-run quota.
async fn run_once(shared: Arc<Shared>, module: Module, spec: AgentSpec, id: AgentId) -> Ran {
    let state = match AgentState::new(
        id,
        shared.env.clone(),
        &spec.limits,
        &spec.grants,
        shared.workspace.as_ref(),
    ) {
        Ok(s) => s,
        Err(e) => {
            return Ran {
                end: RunEnd::Crashed(format!("cannot set up its sandbox: {e:#}")),
                past_quota: false,
            };
        }
    };
    let mut store = Store::new(&shared.engine, state);
    let end = run_in(&mut store, &shared, &module, &spec).await;
    let past_quota = store
        .data()
        .quota
        .lock()
        .expect("quota poisoned")
        .past_a_cap();
    Ran { end, past_quota }
}

/// One run in `store`: a fresh instance (a trapped one is never reused),
/// `run` called with the config, under the agent's limits.
async fn run_in(
    store: &mut Store<AgentState>,
    shared: &Shared,
    module: &Module,
    spec: &AgentSpec,
) -> RunEnd {
    store.limiter(|s| &mut s.limiter);
    store.set_epoch_deadline(1);
    let cpu = spec.limits.cpu;
    store.epoch_deadline_callback(move |mut ctx| {
        let s = ctx.data_mut();
        // Charge a tick only when the agent ran wasm since the last one: the
        // first tick after it sat in a wait (or queued for a thread) is free,
        // so the CPU limit counts busy time, not time alive.
        let now = std::time::Instant::now();
        let busy = s
            .last_tick
            .is_some_and(|t| now.duration_since(t) <= 2 * EPOCH_TICK);
        s.last_tick = Some(now);
        if let (Some(left), true) = (&mut s.cpu_left, busy) {
            if *left == 0 {
                let limit = cpu.map(|d| humantime::format_duration(d).to_string());
                s.limiter.hit = Some(format!(
                    "hit its CPU limit of {}",
                    limit.unwrap_or_default()
                ));
                return Ok(UpdateDeadline::Interrupt);
            }
            *left -= 1;
        }
        Ok(UpdateDeadline::Yield(1))
    });
    let started = std::time::Instant::now();
    let instance = match module.pre.instantiate_async(&mut *store).await {
        Ok(i) => {
            shared.instantiations.record(started.elapsed());
            i
        }
        Err(e) => return RunEnd::Crashed(describe(&e, store.data(), "failed to start")),
    };
    let call = instance.call_run(&mut *store, &spec.config);
    let result = match spec.limits.wall {
        Some(limit) => match tokio::time::timeout(limit, call).await {
            Ok(r) => r,
            Err(_) => {
                return RunEnd::Crashed(format!(
                    "hit its wall-clock limit of {}",
                    humantime::format_duration(limit)
                ));
            }
        },
        None => call.await,
    };
    match result {
        Ok(Ok(())) => RunEnd::Exited,
        Ok(Err(message)) => RunEnd::Failed(message),
        Err(e) => match e.downcast_ref::<I32Exit>() {
            // `std::process::exit` in the guest: 0 is a clean end.
            Some(I32Exit(0)) => RunEnd::Exited,
            Some(I32Exit(code)) => RunEnd::Failed(format!("exited with status {code}")),
            None => RunEnd::Crashed(describe(&e, store.data(), "trapped")),
        },
    }
}

/// Why an agent crashed, for the `agents` table and the journal: the limit
/// it hit or the trap, the panic message it printed, and a wasm backtrace.
fn describe(err: &wasmtime::Error, state: &AgentState, what: &str) -> String {
    let mut out = match (&state.limiter.hit, err.downcast_ref::<wasmtime::Trap>()) {
        (Some(limit), _) => limit.clone(),
        (None, Some(trap)) => format!("{what}: {trap}"),
        (None, None) => format!("{what}: {err:#}"),
    };
    if let Some(panic) = panic_message(&state.stderr.tail()) {
        out = format!("panicked: {panic}\n{out}");
    }
    if let Some(bt) = err.downcast_ref::<WasmBacktrace>() {
        out.push_str(&format!("\n{bt}"));
    }
    out
}

/// The message of a Rust panic, from the lines the guest wrote to stderr.
fn panic_message(lines: &[String]) -> Option<String> {
    let start = lines.iter().rposition(|l| l.contains("panicked at"))?;
    let body: Vec<&str> = lines[start + 1..]
        .iter()
        .map(String::as_str)
        .take_while(|l| !l.starts_with("note:"))
        .collect();
    let location = lines[start]
        .split("panicked at ")
        .nth(1)
        .unwrap_or("")
        .trim_end_matches(':');
    Some(format!("{} (at {location})", body.join("\n")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_message_is_taken_from_the_last_panic_on_stderr() {
        let lines: Vec<String> = [
            "starting",
            "thread '<unnamed>' panicked at src/lib.rs:12:9:",
            "chaos: injected panic",
            "note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            panic_message(&lines).unwrap(),
            "chaos: injected panic (at src/lib.rs:12:9)"
        );
        assert_eq!(panic_message(&lines[..1]), None);
    }
}
