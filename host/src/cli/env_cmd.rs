//! `wawe env`: look at an environment and feed it tasks from the command line.

use std::io::Read;

use anyhow::{Context, anyhow};
use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, Subcommand};
use serde::Serialize;
use serde_json::{Value, json};

use super::DurabilityArg;
use super::output::{self, Out, absolute, both, clip, ids, relative};
use crate::env::{
    AgentId, Env, EnvError, EnvLocation, EnvOptions, Event, EventFilter, MAX_LEARNINGS_LISTED,
    MAX_TASKS_LISTED, MAX_TRAILS_LISTED, PushOptions, Task, TaskState,
};

/// How long one `wait_events` call of `events --follow` sleeps before it
/// simply waits again; it wakes earlier on every commit.
const FOLLOW_WAIT_MS: u64 = 60_000;

/// Where help lists the options every `wawe env` command takes.
const GLOBAL: &str = "Environment options";

/// How many search hits `learnings --search --topic` narrows down to one topic.
const SEARCH_POOL: u32 = 1_000;

/// `wawe env`: the environment file, how to print, and what to do.
#[derive(Debug, Args)]
#[command(
    about = "Look at and feed an environment: tasks, leases, learnings, signals, values and the journal",
    long_about = "Look at and feed an environment: the SQLite file (or PostgreSQL schema) a \
        swarm coordinates through.\n\n\
        Read commands (everything but `push` and `sweep`) never create anything; `push` creates \
        the environment when it does not exist yet. Writes are made as the `operator` \
        identity and show up in the journal as such.",
    after_help = "Examples:\n  \
        wawe env push builds '{\"crate\":\"wawe\"}' --priority 5\n  \
        wawe env tasks --state ready --queue builds\n  \
        wawe env events --follow --kind task. --json"
)]
pub struct EnvArgs {
    /// The environment: a SQLite file, or `postgres://USER@HOST/DB?schema=NAME`.
    #[arg(
        long,
        global = true,
        help_heading = GLOBAL,
        env = "WAWE_ENV",
        default_value = "wawe.db",
        value_name = "FILE|URL"
    )]
    pub env: EnvLocation,

    /// How hard writes are pushed to disk: `normal` survives a process crash,
    /// `full` also a power loss (slower).
    #[arg(
        long,
        global = true,
        help_heading = GLOBAL,
        value_enum,
        default_value = "normal",
        value_name = "MODE"
    )]
    pub durability: DurabilityArg,

    /// Print one JSON object per line instead of tables (times in ms since the epoch).
    #[arg(long, global = true, help_heading = GLOBAL)]
    pub json: bool,

    /// Show every field whole: tables are not fitted to the terminal (or to
    /// 100 columns when there is none) and long fields are not cut.
    #[arg(long, global = true, help_heading = GLOBAL)]
    pub wide: bool,

    /// What to do.
    #[command(subcommand)]
    pub command: EnvCommand,
}

/// The `wawe env` subcommands.
#[derive(Debug, Subcommand)]
pub enum EnvCommand {
    /// List every agent the environment has seen, newest first.
    Agents,

    /// List every host process the environment has seen, newest first.
    Hosts,

    /// List live reservations: who holds which resource, how, and until when.
    Reservations {
        /// Only resources starting with this prefix (e.g. `src/`).
        #[arg(long, default_value = "", value_name = "PREFIX")]
        prefix: String,
    },

    /// List tasks in id order, optionally of one queue and/or in one state.
    Tasks(TasksArgs),

    /// Show one task in full: payload, state, attempts, dependencies, result and last error.
    Task {
        /// The task's id.
        id: u64,
    },

    /// List learnings: the newest ones, or the best matches of a full-text search.
    Learnings(LearningsArgs),

    /// List signal trails by their strength now (after decay), strongest first.
    Signals {
        /// Only trails starting with this prefix.
        #[arg(long, default_value = "", value_name = "PREFIX")]
        prefix: String,
        /// Show at most this many trails (0: as many as the environment lists at once, 10,000).
        #[arg(long, default_value_t = 50, value_name = "N", value_parser = limit())]
        limit: u32,
    },

    /// Show one shared value whole (pretty-printed when it is JSON), with its version.
    Value {
        /// The key.
        key: String,
    },

    /// List shared values with their versions, by key (`value KEY` shows one whole).
    Values {
        /// Only keys starting with this prefix.
        #[arg(long, default_value = "", value_name = "PREFIX")]
        prefix: String,
    },

    /// Show the journal: every change, who made it and when, oldest first.
    Events(EventsArgs),

    /// Count what the environment holds: tasks per state, leases, agents, hosts, learnings,
    /// signals, values and events.
    Stats,

    /// Expire lapsed leases and claims and prune old events now, and say what was cleaned up.
    ///
    /// Expired leases never block anyone even without a sweep; a sweep journals
    /// their end and puts tasks whose claim lapsed back in their queue (or
    /// marks them dead when they are out of attempts). Running hosts sweep on
    /// their own; this is for environments no host is looking after.
    Sweep,

    /// Add a task to a queue; prints its id. Creates the environment if the file does not exist.
    ///
    /// Prints the task's id and state, or, when --dedupe-key matched a live task, that
    /// task's id and that it was deduplicated. The task is pushed by the `operator`
    /// identity.
    Push(PushArgs),

    /// Copy a whole environment into a new, empty one: SQLite to PostgreSQL or back.
    ///
    /// Everything goes: tasks (with their dependencies, claims and tokens), leases and
    /// waiters, learnings and endorsements, signals, values, the journal, agents and
    /// hosts, and every counter, so fencing tokens stay valid and no number is handed
    /// out twice. The target must not hold anything yet (a new file, or a new
    /// ?schema=); --env is not used. Stop the hosts using FROM first.
    #[command(after_help = "Example:\n  \
        wawe env copy swarm.db 'postgres://wawe@db.internal/swarm?schema=team_a'")]
    Copy {
        /// The environment to copy (a file or a postgres:// URL).
        #[arg(value_name = "FROM")]
        from: EnvLocation,
        /// The new environment (a file or a postgres:// URL); created if missing.
        #[arg(value_name = "TO")]
        to: EnvLocation,
    },
}

/// Filters of `wawe env tasks`.
#[derive(Debug, Args)]
pub struct TasksArgs {
    /// Only tasks of this queue.
    #[arg(long, value_name = "QUEUE")]
    pub queue: Option<String>,

    /// Only tasks in this state.
    #[arg(long, value_name = "STATE", value_parser = task_state())]
    pub state: Option<TaskState>,

    /// Show at most this many tasks (0: as many as the environment lists at once, 100,000).
    #[arg(long, default_value_t = 100, value_name = "N", value_parser = limit())]
    pub limit: u32,
}

/// What `wawe env learnings` shows.
#[derive(Debug, Args)]
pub struct LearningsArgs {
    /// Full-text search: learnings matching these words, best first (relevance, endorsements
    /// and freshness). Without it, the newest learnings are shown.
    #[arg(long, value_name = "TEXT")]
    pub search: Option<String>,

    /// Only learnings of this topic.
    #[arg(long, value_name = "TOPIC")]
    pub topic: Option<String>,

    /// Show at most this many learnings (0: as many as the environment lists at once, 1,000).
    #[arg(long, default_value_t = 20, value_name = "N", value_parser = limit())]
    pub limit: u32,
}

/// What `wawe env events` shows.
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Only events after this sequence number (`wawe env stats` shows the newest).
    #[arg(long, default_value_t = 0, value_name = "SEQ")]
    pub after: u64,

    /// Only events whose kind starts with this prefix, e.g. `task.` or `lease.expired`.
    /// Repeat it to accept several.
    #[arg(long = "kind", value_name = "PREFIX")]
    pub kinds: Vec<String>,

    /// Only events whose subject starts with this prefix, e.g. `task/42` or `lease/`.
    #[arg(long, value_name = "PREFIX")]
    pub subject: Option<String>,

    /// Only events made by this agent (its full id, e.g. `worker.0@h-1a2b`).
    #[arg(long, value_name = "ID")]
    pub agent: Option<String>,

    /// Stop after this many events; 0 means no limit [default: 100, or no limit with --follow].
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,

    /// Keep going: after the events already there, print each new one as it is
    /// committed (by any process sharing the file), until Ctrl-C.
    #[arg(long, short = 'f')]
    pub follow: bool,
}

/// What `wawe env push` adds.
#[derive(Debug, Args)]
pub struct PushArgs {
    /// The queue to add the task to.
    pub queue: String,

    /// The task's payload, handed as-is to the agent that claims it; `-` reads it from stdin.
    pub payload: String,

    /// Higher runs first; may be negative.
    #[arg(
        long,
        default_value_t = 0,
        allow_negative_numbers = true,
        value_name = "N"
    )]
    pub priority: i32,

    /// Not claimable before this much time has passed, e.g. `5s`, `200ms`, `1m 30s`.
    #[arg(long, value_name = "DURATION", value_parser = duration_ms)]
    pub delay: Option<u64>,

    /// Attempts before the task is dead [default: the environment's, 3].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_attempts: Option<u32>,

    /// While a live (not done, dead or cancelled) task with this key is in the queue,
    /// return that task instead of adding another.
    #[arg(long, value_name = "KEY")]
    pub dedupe_key: Option<String>,

    /// A task that must be done before this one becomes ready; repeat it or separate ids
    /// with commas. If one of them ends dead, this task ends cancelled.
    #[arg(long, value_name = "ID", value_delimiter = ',')]
    pub depends_on: Vec<u64>,
}

/// Parses a task state name, listing the valid ones in help and errors.
fn task_state() -> impl TypedValueParser<Value = TaskState> {
    PossibleValuesParser::new(TaskState::ALL.map(TaskState::as_str))
        .map(|s| TaskState::parse(&s).expect("clap only accepts listed states"))
}

/// Parses a `--limit`: a count, where 0 means no limit (as many as the
/// environment lists at once).
fn limit() -> impl TypedValueParser<Value = u32> {
    clap::value_parser!(u32).map(|n| if n == 0 { u32::MAX } else { n })
}

/// Says on stderr when a listing of `shown` `what` may have been cut short:
/// at the `--limit` asked for, or at the environment's own `cap`.
fn cut_short(shown: usize, asked: u32, cap: u32, what: &str) {
    if shown < asked.min(cap) as usize {
        return;
    }
    if asked <= cap {
        eprintln!("showing the first {shown} {what}; raise --limit to see more");
    } else {
        eprintln!("showing {shown} {what}, as many as the environment lists at once");
    }
}

/// Parses a human duration such as `5s` or `200ms` into milliseconds.
fn duration_ms(text: &str) -> Result<u64, String> {
    humantime::parse_duration(text)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .map_err(|e| format!("{e} (write it like 5s, 200ms or 1m 30s)"))
}

/// Run one `wawe env` command.
pub async fn run(args: EnvArgs) -> anyhow::Result<()> {
    let out = Out::new(args.json, args.wide);
    let opts = EnvOptions {
        durability: args.durability.into(),
        ..EnvOptions::default()
    };
    if let EnvCommand::Copy { from, to } = &args.command {
        return copy(from, to, opts, out).await;
    }
    let at = &args.env;
    let env = match args.command {
        EnvCommand::Push(_) => Env::open(at, opts)?,
        _ => Env::open_existing(at, opts)?,
    };
    match args.command {
        EnvCommand::Agents => agents(&env, out).await,
        EnvCommand::Hosts => hosts(&env, out).await,
        EnvCommand::Reservations { prefix } => reservations(&env, out, &prefix).await,
        EnvCommand::Tasks(args) => tasks(&env, out, args).await,
        EnvCommand::Task { id } => task(&env, out, id).await,
        EnvCommand::Learnings(args) => learnings(&env, out, args).await,
        EnvCommand::Signals { prefix, limit } => signals(&env, out, &prefix, limit).await,
        EnvCommand::Value { key } => value(&env, out, &key).await,
        EnvCommand::Values { prefix } => values(&env, out, &prefix).await,
        EnvCommand::Events(args) => events(&env, out, args).await,
        EnvCommand::Stats => stats(&env, out).await,
        EnvCommand::Sweep => sweep(&env, out).await,
        EnvCommand::Push(args) => push(&env, out, args).await,
        EnvCommand::Copy { .. } => unreachable!("handled before opening --env"),
    }
}

/// `wawe env copy`.
async fn copy(
    from: &EnvLocation,
    to: &EnvLocation,
    opts: EnvOptions,
    out: Out,
) -> anyhow::Result<()> {
    if from == to {
        anyhow::bail!("FROM and TO are the same environment ({from}): name a new one as TO");
    }
    let source = Env::open_existing(from, opts.clone())?;
    let target = Env::open(to, opts)?;
    let copied = source
        .copy_to(&target)
        .await
        .with_context(|| format!("cannot copy {from} to {to}"))?;
    source.close();
    target.close();
    if out.is_json() {
        return Ok(out.json_lines(std::slice::from_ref(&copied))?);
    }
    let rows: Vec<String> = copied
        .rows
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(table, n)| format!("{n} {table}"))
        .collect();
    println!("copied {from} to {to}");
    println!(
        "  {}",
        if rows.is_empty() {
            "(it was empty)".to_owned()
        } else {
            rows.join(", ")
        }
    );
    println!(
        "  last fencing token {}, last journal sequence number {}",
        copied.last_token, copied.last_seq
    );
    Ok(())
}

/// `wawe env agents`.
async fn agents(env: &Env, out: Out) -> anyhow::Result<()> {
    let now = env.now_ms();
    let agents = env.list_agents().await.context("cannot list agents")?;
    if out.is_json() {
        return Ok(out.json_lines(&agents)?);
    }
    let mut t = output::table([
        "agent",
        "state",
        "host",
        "module",
        "started",
        "last seen",
        "restarts",
        "end reason",
    ]);
    for a in &agents {
        t.add_row([
            a.id.clone(),
            a.state.clone(),
            a.host.clone(),
            clip(&a.digest, 16),
            relative(a.started_at, now),
            relative(a.last_seen, now),
            a.restarts.to_string(),
            a.end_reason
                .as_deref()
                .map_or(String::new(), |r| out.cell(r)),
        ]);
    }
    out.table(t, "no agents")?;
    Ok(())
}

/// `wawe env hosts`.
async fn hosts(env: &Env, out: Out) -> anyhow::Result<()> {
    let now = env.now_ms();
    let hosts = env.list_hosts().await.context("cannot list hosts")?;
    if out.is_json() {
        return Ok(out.json_lines(&hosts)?);
    }
    let agents = env.list_agents().await.context("cannot list agents")?;
    let mut t = output::table([
        "host",
        "hostname",
        "pid",
        "state",
        "started",
        "last heartbeat",
        "ttl",
        "agents running",
    ]);
    for h in &hosts {
        let running = agents
            .iter()
            .filter(|a| a.host == h.id && a.state == "running")
            .count();
        let silent = h.state == "alive" && h.last_heartbeat + h.ttl_ms < now;
        t.add_row([
            h.id.clone(),
            h.hostname.clone(),
            h.pid.to_string(),
            if silent {
                format!("{} (silent past its ttl)", h.state)
            } else {
                h.state.clone()
            },
            relative(h.started_at, now),
            relative(h.last_heartbeat, now),
            output::span(h.ttl_ms),
            running.to_string(),
        ]);
    }
    out.table(t, "no hosts")?;
    Ok(())
}

/// `wawe env reservations`.
async fn reservations(env: &Env, out: Out, prefix: &str) -> anyhow::Result<()> {
    let now = env.now_ms();
    let holdings = env
        .list_reservations(prefix)
        .await
        .context("cannot list reservations")?;
    if out.is_json() {
        return Ok(out.json_lines(&holdings)?);
    }
    let mut t = output::table(["resource", "mode", "holder", "lease", "token", "expires"]);
    for h in &holdings {
        t.add_row([
            h.resource.clone(),
            h.mode.as_str().to_string(),
            h.holder.clone(),
            h.lease.to_string(),
            h.token.to_string(),
            relative(h.expires_at, now),
        ]);
    }
    out.table(t, "no live reservations")?;
    Ok(())
}

/// `wawe env tasks`.
async fn tasks(env: &Env, out: Out, args: TasksArgs) -> anyhow::Result<()> {
    let now = env.now_ms();
    let tasks = env
        .list_tasks(args.queue.as_deref(), args.state, args.limit)
        .await
        .context("cannot list tasks")?;
    if out.is_json() {
        return Ok(out.json_lines(&tasks)?);
    }
    let mut t = output::table([
        "id", "queue", "state", "priority", "attempts", "payload", "note", "updated",
    ]);
    for task in &tasks {
        t.add_row([
            task.id.to_string(),
            task.queue.clone(),
            task.state.to_string(),
            task.priority.to_string(),
            format!("{}/{}", task.attempts, task.max_attempts),
            out.cell(&task.payload),
            task_note(task, now, out),
            relative(task.updated_at, now),
        ]);
    }
    out.table(t, "no tasks")?;
    cut_short(tasks.len(), args.limit, MAX_TASKS_LISTED, "tasks");
    Ok(())
}

/// `wawe env task ID`.
async fn task(env: &Env, out: Out, id: u64) -> anyhow::Result<()> {
    let task = env.get_task(id).await.map_err(|e| match e {
        EnvError::NotFound(_) => {
            anyhow!("task {id} does not exist: `wawe env tasks` lists the tasks there are")
        }
        e => anyhow!(e).context(format!("cannot read task {id}")),
    })?;
    if out.is_json() {
        return Ok(out.json_line(&task)?);
    }
    out.line(task_record(&task, env.now_ms()))?;
    Ok(())
}

/// `wawe env learnings`.
async fn learnings(env: &Env, out: Out, args: LearningsArgs) -> anyhow::Result<()> {
    let now = env.now_ms();
    let learnings = match &args.search {
        Some(text) => {
            // With a topic, search widely and keep that topic's best.
            let wanted = if args.topic.is_some() {
                SEARCH_POOL
            } else {
                args.limit
            };
            let mut found = env
                .search_learnings(text, wanted)
                .await
                .context("cannot search learnings")?;
            if let Some(topic) = &args.topic {
                found.retain(|l| &l.topic == topic);
                found.truncate(args.limit as usize);
            }
            found
        }
        None => env
            .recent_learnings(args.topic.as_deref(), args.limit)
            .await
            .context("cannot list learnings")?,
    };
    if out.is_json() {
        return Ok(out.json_lines(&learnings)?);
    }
    let mut header = vec![
        "id", "topic", "learning", "tags", "author", "endorsed", "recorded",
    ];
    if args.search.is_some() {
        header.push("score");
    }
    let mut t = output::table(header);
    for l in &learnings {
        let mut row = vec![
            l.id.to_string(),
            l.topic.clone(),
            out.cell(&l.body),
            l.tags.join(", "),
            l.author.clone(),
            l.endorsements.to_string(),
            relative(l.created_at, now),
        ];
        if args.search.is_some() {
            row.push(output::number(l.score));
        }
        t.add_row(row);
    }
    out.table(t, "no learnings")?;
    cut_short(
        learnings.len(),
        args.limit,
        MAX_LEARNINGS_LISTED,
        "learnings",
    );
    Ok(())
}

/// `wawe env signals`.
async fn signals(env: &Env, out: Out, prefix: &str, limit: u32) -> anyhow::Result<()> {
    let trails = env
        .strongest(prefix, limit)
        .await
        .context("cannot list signals")?;
    if out.is_json() {
        return Ok(out.json_lines(&trails)?);
    }
    let mut t = output::table(["trail", "strength"]);
    for s in &trails {
        t.add_row([s.trail.clone(), output::number(s.strength)]);
    }
    out.table(t, "no signal trails")?;
    cut_short(trails.len(), limit, MAX_TRAILS_LISTED, "trails");
    Ok(())
}

/// `wawe env values`.
async fn values(env: &Env, out: Out, prefix: &str) -> anyhow::Result<()> {
    let now = env.now_ms();
    let values = env
        .list_values(prefix)
        .await
        .context("cannot list values")?;
    if out.is_json() {
        return Ok(out.json_lines(&values)?);
    }
    let mut t = output::table(["key", "version", "value", "updated by", "updated"]);
    for v in &values {
        t.add_row([
            v.key.clone(),
            v.version.to_string(),
            out.cell(&v.value),
            v.updated_by.clone(),
            relative(v.updated_at, now),
        ]);
    }
    out.table(t, "no values")?;
    Ok(())
}

/// `wawe env value KEY`.
async fn value(env: &Env, out: Out, key: &str) -> anyhow::Result<()> {
    let found = env
        .get_value(key)
        .await
        .with_context(|| format!("cannot read value `{key}`"))?;
    let Some(found) = found else {
        anyhow::bail!("there is no value `{key}`: `wawe env values` lists the keys there are");
    };
    if out.is_json() {
        return Ok(out.json_line(&json!({
            "key": key,
            "version": found.version,
            "value": found.value,
        }))?);
    }
    out.line(format!("{key} (version {})", found.version))?;
    out.line(pretty(&found.value))?;
    Ok(())
}

/// `text` pretty-printed when it is JSON (an object or an array), else as it is.
fn pretty(text: &str) -> String {
    match serde_json::from_str::<Value>(text) {
        Ok(value @ (Value::Object(_) | Value::Array(_))) => {
            serde_json::to_string_pretty(&value).unwrap_or_else(|_| text.to_owned())
        }
        _ => text.to_owned(),
    }
}

/// The one thing worth knowing about a task beyond its state, for the tasks table.
fn task_note(task: &Task, now: u64, out: Out) -> String {
    match task.state {
        TaskState::Blocked => format!("waits for {}", ids(&task.depends_on)),
        TaskState::Ready if task.not_before > now => {
            format!("delayed, {}", relative(task.not_before, now))
        }
        TaskState::Claimed => format!(
            "by {}, lapses {}",
            task.claimed_by.as_deref().unwrap_or("?"),
            task.claim_expires_at
                .map_or_else(|| "?".into(), |at| relative(at, now))
        ),
        TaskState::Done => task
            .result
            .as_deref()
            .map_or(String::new(), |r| format!("result: {}", out.cell(r))),
        TaskState::Dead | TaskState::Cancelled => task
            .last_error
            .as_deref()
            .map_or(String::new(), |e| format!("error: {}", out.cell(e))),
        TaskState::Ready => String::new(),
    }
}

/// Every field of a task, one per row.
fn task_record(task: &Task, now: u64) -> comfy_table::Table {
    let none = || "-".to_owned();
    output::record_table(vec![
        ("id", task.id.to_string()),
        ("queue", task.queue.clone()),
        ("state", task.state.to_string()),
        ("priority", task.priority.to_string()),
        (
            "attempts",
            format!("{} of {}", task.attempts, task.max_attempts),
        ),
        (
            "not before",
            if task.not_before > task.created_at {
                both(task.not_before, now)
            } else {
                none()
            },
        ),
        ("dedupe key", task.dedupe_key.clone().unwrap_or_else(none)),
        (
            "depends on",
            if task.depends_on.is_empty() {
                none()
            } else {
                ids(&task.depends_on)
            },
        ),
        ("claimed by", task.claimed_by.clone().unwrap_or_else(none)),
        (
            "claim lapses",
            task.claim_expires_at.map_or_else(none, |at| both(at, now)),
        ),
        ("created", both(task.created_at, now)),
        ("updated", both(task.updated_at, now)),
        ("result", task.result.clone().unwrap_or_else(none)),
        ("last error", task.last_error.clone().unwrap_or_else(none)),
        ("payload", task.payload.clone()),
    ])
}

/// What `stats --json` prints: [`crate::env::Stats`] with its per-state
/// counts as objects (`{"ready": 3}`) rather than lists of pairs.
#[derive(Serialize)]
struct StatsLine {
    tasks: serde_json::Map<String, Value>,
    leases: u64,
    agents: serde_json::Map<String, Value>,
    hosts: u64,
    learnings: u64,
    signals: u64,
    values: u64,
    events: u64,
    last_seq: u64,
}

/// `wawe env stats`.
async fn stats(env: &Env, out: Out) -> anyhow::Result<()> {
    let s = env
        .stats()
        .await
        .context("cannot count the environment's contents")?;
    if out.is_json() {
        let per_state = |counts: &[(String, u64)]| -> serde_json::Map<String, Value> {
            counts.iter().map(|(k, n)| (k.clone(), json!(n))).collect()
        };
        return Ok(out.json_line(&StatsLine {
            tasks: per_state(&s.tasks),
            leases: s.leases,
            agents: per_state(&s.agents),
            hosts: s.hosts,
            learnings: s.learnings,
            signals: s.signals,
            values: s.values,
            events: s.events,
            last_seq: s.last_seq,
        })?);
    }
    let mut t = output::table(["what", "state", "count"]);
    for (state, n) in &s.tasks {
        t.add_row(["tasks", state.as_str(), &n.to_string()]);
    }
    t.add_row(["leases", "live", &s.leases.to_string()]);
    if s.agents.is_empty() {
        t.add_row(["agents", "", "0"]);
    }
    for (state, n) in &s.agents {
        t.add_row(["agents", state.as_str(), &n.to_string()]);
    }
    for (what, n) in [
        ("hosts", s.hosts),
        ("learnings", s.learnings),
        ("signal trails", s.signals),
        ("values", s.values),
        ("events", s.events),
    ] {
        t.add_row([what, "", &n.to_string()]);
    }
    t.add_row(["newest event", "seq", &s.last_seq.to_string()]);
    out.table(t, "")?;
    Ok(())
}

/// `wawe env sweep`.
async fn sweep(env: &Env, out: Out) -> anyhow::Result<()> {
    let swept = env.sweep().await.context("cannot sweep the environment")?;
    if out.is_json() {
        return Ok(out.json_line(&swept)?);
    }
    out.line(format!(
        "reaped {} silent host{}; expired {} lease{}; {} lapsed claim{} put back (or dead when out of attempts); \
         {} event{} past retention pruned",
        swept.hosts_reaped,
        plural(swept.hosts_reaped),
        swept.leases_expired,
        plural(swept.leases_expired),
        swept.claims_lapsed,
        plural(swept.claims_lapsed),
        swept.events_pruned,
        plural(swept.events_pruned),
    ))?;
    Ok(())
}

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// `wawe env push`.
async fn push(env: &Env, out: Out, args: PushArgs) -> anyhow::Result<()> {
    let payload = if args.payload == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read the payload from stdin")?;
        if text.ends_with('\n') {
            text.pop();
            if text.ends_with('\r') {
                text.pop();
            }
        }
        text
    } else {
        args.payload
    };
    let opts = PushOptions {
        priority: args.priority,
        delay_ms: args.delay.unwrap_or(0),
        max_attempts: args.max_attempts.unwrap_or(0),
        dedupe_key: args.dedupe_key.clone(),
        depends_on: args.depends_on,
    };
    let pushed = env
        .push(&AgentId::operator(), &args.queue, &payload, opts)
        .await
        .with_context(|| format!("cannot push to queue {:?}", args.queue))?;
    // Best effort: the push has happened even if this read fails.
    let state = env.get_task(pushed.id).await.ok().map(|t| t.state);
    if out.is_json() {
        return Ok(out.json_line(&PushLine {
            id: pushed.id,
            deduplicated: pushed.deduplicated,
            state,
        })?);
    }
    let state = state.map_or(String::new(), |s| format!(" ({s})"));
    if pushed.deduplicated {
        out.line(format!(
            "task {}{state} already in queue {:?} with dedupe key {:?}: deduplicated, nothing pushed",
            pushed.id,
            args.queue,
            args.dedupe_key.unwrap_or_default(),
        ))?;
    } else {
        out.line(format!(
            "pushed task {}{state} to queue {:?}",
            pushed.id, args.queue
        ))?;
    }
    Ok(())
}

/// What `push --json` prints: the push's outcome and the task's state right after it.
#[derive(Serialize)]
struct PushLine {
    id: u64,
    deduplicated: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    state: Option<TaskState>,
}

/// `wawe env events`, with or without `--follow`.
async fn events(env: &Env, out: Out, args: EventsArgs) -> anyhow::Result<()> {
    let filter = EventFilter {
        kinds: args.kinds,
        subject_prefix: args.subject.unwrap_or_default(),
        agent: args.agent,
    };
    // 0 means no limit.
    let limit = args.limit.map(|n| if n == 0 { u64::MAX } else { n });
    if args.follow {
        return follow_events(env, out, &filter, args.after, limit).await;
    }
    let limit = limit.unwrap_or(100);
    let mut events: Vec<Event> = Vec::new();
    let mut after = args.after;
    while (events.len() as u64) < limit {
        let want = u32::try_from(limit - events.len() as u64).unwrap_or(u32::MAX);
        let page = env
            .read_events(after, &filter, want)
            .await
            .context("cannot read the journal")?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        events.extend(page);
    }
    events.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    if out.is_json() {
        for e in &events {
            out.json_line(&event_json(e))?;
        }
        return Ok(());
    }
    let mut t = output::table(["seq", "at", "agent", "kind", "subject", "detail"]);
    for e in &events {
        t.add_row([
            e.seq.to_string(),
            absolute(e.at),
            e.agent.clone(),
            e.kind.clone(),
            e.subject.clone(),
            out.cell(&e.detail),
        ]);
    }
    out.table(t, "no events")?;
    if events.len() as u64 == limit
        && let Some(last) = events.last()
    {
        eprintln!(
            "showing {limit} events; more with --after {} or a higher --limit",
            last.seq
        );
    }
    Ok(())
}

/// Print the matching events already there, then each new one as it is
/// committed, until Ctrl-C or `limit` events. Sleeps in `wait_events`
/// between commits; never polls.
async fn follow_events(
    env: &Env,
    out: Out,
    filter: &EventFilter,
    mut after: u64,
    mut limit: Option<u64>,
) -> anyhow::Result<()> {
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        let batch = tokio::select! {
            found = env.wait_events(after, filter, FOLLOW_WAIT_MS) => {
                found.context("cannot read the journal")?
            }
            _ = &mut ctrl_c => return Ok(()),
        };
        for e in &batch {
            if out.is_json() {
                out.json_line(&event_json(e))?;
            } else {
                out.line(format_args!(
                    "{:>6}  {}  {}  {}  {}  {}",
                    e.seq,
                    absolute(e.at),
                    e.agent,
                    e.kind,
                    e.subject,
                    e.detail
                ))?;
            }
            after = e.seq;
            if let Some(left) = limit.as_mut() {
                *left -= 1;
                if *left == 0 {
                    return Ok(());
                }
            }
        }
    }
}

/// An event as printed with `--json`: its detail embedded as an object
/// rather than as a string holding JSON.
#[derive(Serialize)]
struct EventLine<'a> {
    seq: u64,
    at: u64,
    agent: &'a str,
    kind: &'a str,
    subject: &'a str,
    detail: Value,
}

fn event_json(e: &Event) -> EventLine<'_> {
    EventLine {
        seq: e.seq,
        at: e.at,
        agent: &e.agent,
        kind: &e.kind,
        subject: &e.subject,
        detail: serde_json::from_str(&e.detail).unwrap_or_else(|_| json!(e.detail)),
    }
}
