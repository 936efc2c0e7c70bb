//! The `ui` workload: the live view on a large environment. It fills a
//! fresh environment through [`Env`] (agents, tasks across queues, and
//! journal events up to the size asked for), serves `wawe ui` on it, and
//! times what a page asks for: the requests of its first paint, each list's
//! first page, a task's story, a filtered journal read that finds nothing
//! (the bounded scan's worst case), and the delay from a commit made on
//! another handle to the frame that carries it to an open page.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_util::future::join_all;

use super::pages::{self, get};
use super::{Latency, Place, discard};
use crate::env::{AgentEnd, AgentId, Env, EnvOptions, PushOptions};
use crate::ui::{Ui, UiOptions};

/// What `wawe bench ui` measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct UiReport {
    /// `sqlite` or `postgres`.
    pub backend: &'static str,
    /// Agents in the environment.
    pub agents: u64,
    /// Tasks in it.
    pub tasks: u64,
    /// Journal events in it.
    pub events: u64,
    /// Seconds it took to fill.
    pub fill_seconds: f64,
    /// Each request: what, how long (over `samples` tries), how many bytes.
    pub requests: Vec<Timed>,
    /// Every request of a first paint (the page, its script and style, the
    /// overview and its latest events), one after another.
    pub first_paint: Latency,
    /// From a commit on another handle to the frame carrying it on a page.
    pub update: Latency,
    /// Pages held open while measuring, and what each added to memory.
    pub pages: u32,
    /// Resident memory per open page (KiB).
    pub kib_per_page: f64,
}

/// One request's timing.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Timed {
    /// The path asked for.
    pub path: String,
    /// Its latency.
    pub latency: Latency,
    /// The answer's size in bytes.
    pub bytes: usize,
}

/// Queues the tasks are spread over.
const QUEUES: u64 = 100;
/// Callers filling the environment at once.
const FILLERS: u64 = 64;
/// Tries per request.
const SAMPLES: usize = 20;

/// Fill a fresh environment of `place` (or the new file `keep`, which is
/// then kept) with `agents` agents, `tasks` tasks and at least `events`
/// events, then measure the view on it with `pages` pages open.
pub async fn ui(
    place: &Place,
    keep: Option<&std::path::Path>,
    agents: u64,
    tasks: u64,
    events: u64,
    pages: u32,
) -> anyhow::Result<UiReport> {
    let path = match keep {
        Some(file) => {
            anyhow::ensure!(
                !file.exists(),
                "{} exists: --keep makes a new environment, give a path that is not taken",
                file.display()
            );
            crate::env::EnvLocation::File(file.to_owned())
        }
        None => place.fresh("ui").await?,
    };
    let env = Env::open(&path, EnvOptions::default())?;
    let started = Instant::now();
    let (story, long) = fill(&env, agents, tasks, events).await?;
    let fill_seconds = started.elapsed().as_secs_f64();
    let stats = env.stats().await?;
    let ui = Ui::start(
        env.clone(),
        UiOptions {
            listen: "127.0.0.1:0".parse()?,
            ..UiOptions::default()
        },
    )
    .await?;
    let addr = ui.addr();
    let rss = pages::rss_kib();
    let open = pages::open(addr, pages).await?;
    let kib_per_page = pages::rss_kib().saturating_sub(rss) as f64 / f64::from(pages.max(1));

    let first = [
        "/",
        "/app.js",
        "/app.css",
        "/api/overview",
        "/api/events?limit=30",
    ];
    let mut first_paint = Vec::new();
    for _ in 0..SAMPLES {
        let t = Instant::now();
        for p in first {
            fetch(addr, p).await?;
        }
        first_paint.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let mut requests = Vec::new();
    for p in [
        "/api/overview".to_string(),
        "/api/agents?limit=100".into(),
        "/api/agents?state=crashed&limit=100".into(),
        "/api/tasks?limit=100".into(),
        "/api/tasks?state=dead&limit=100".into(),
        "/api/tasks?queue=q9&state=ready&limit=100".into(),
        format!("/api/tasks/{story}"),
        format!("/api/tasks/{long}"),
        "/api/leases?limit=1000".into(),
        "/api/values?limit=100".into(),
        "/api/signals?limit=500".into(),
        "/api/events?limit=200".into(),
        "/api/events?agent=nobody&limit=200".into(),
    ] {
        requests.push(time(addr, &p).await?);
    }
    let update = update_latency(&path, addr).await?;
    drop(open);
    ui.stop().await?;
    if keep.is_some() {
        env.close();
    } else {
        discard(env).await?;
    }
    Ok(UiReport {
        backend: place.backend(),
        agents: stats.agents.iter().map(|(_, n)| n).sum(),
        tasks: stats.tasks.iter().map(|(_, n)| n).sum(),
        events: stats.events,
        fill_seconds,
        requests,
        first_paint: Latency::of(first_paint),
        update,
        pages,
        kib_per_page,
    })
}

async fn fetch(addr: SocketAddr, path: &str) -> anyhow::Result<usize> {
    let (status, body) = get(addr, path).await?;
    anyhow::ensure!(status == 200, "{path} answered {status}");
    Ok(body.len())
}

async fn time(addr: SocketAddr, path: &str) -> anyhow::Result<Timed> {
    let mut samples = Vec::new();
    let mut bytes = 0;
    for _ in 0..SAMPLES {
        let t = Instant::now();
        bytes = fetch(addr, path).await?;
        samples.push(t.elapsed().as_secs_f64() * 1e6);
    }
    Ok(Timed {
        path: path.to_owned(),
        latency: Latency::of(samples),
        bytes,
    })
}

/// Pushes made on a handle of their own (as another process would), each
/// timed until a page's stream carries it.
async fn update_latency(
    path: &crate::env::EnvLocation,
    addr: SocketAddr,
) -> anyhow::Result<Latency> {
    let other = Env::open(path, EnvOptions::default())?;
    let me = AgentId::new("bench.pusher");
    let mut stream = pages::Stream::open(addr).await?;
    let mut samples = Vec::new();
    for n in 0..SAMPLES {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let payload = format!("{{\"probe\":{n}}}");
        let id = other
            .push(&me, "probe", &payload, PushOptions::default())
            .await?
            .id;
        let t = Instant::now();
        let subject = format!("\"subject\":\"task/{id}\"");
        stream
            .until(Duration::from_secs(10), |text| text.contains(&subject))
            .await?;
        samples.push(t.elapsed().as_secs_f64() * 1e6);
    }
    other.close();
    Ok(Latency::of(samples))
}

/// Fill `env`; returns a task whose story has a crash in it, and a task
/// that lives through the whole fill (its story is the widest search).
async fn fill(env: &Env, agents: u64, tasks: u64, events: u64) -> anyhow::Result<(u64, u64)> {
    let host = env
        .register_host("bench", std::process::id(), 3_600_000)
        .await?;
    let elder = env.agent_started(&host, "bench.elder", 0, "bench").await?;
    let long = env
        .push(&elder, "long", "{}", PushOptions::default())
        .await?
        .id;
    // Agents: a tenth of them crashed, with a reason as long as a real one.
    let ids = in_parallel(agents, |n| {
        let (env, host) = (env.clone(), host.clone());
        async move {
            let id = env
                .agent_started(&host, &format!("worker-{}", n % 50), n as u32, "bench")
                .await?;
            if n % 10 == 0 {
                env.agent_ended(
                    &id,
                    AgentEnd::Crashed,
                    "panicked: bench crash (at src/lib.rs:1:1)\nwasm backtrace:\n    0: 0x1 - bench!run",
                )
                .await?;
            }
            Ok(id)
        }
    })
    .await?;
    let live: Vec<AgentId> = ids
        .into_iter()
        .enumerate()
        .filter(|(n, _)| n % 10 != 0)
        .map(|(_, id)| id)
        .collect();
    anyhow::ensure!(!live.is_empty(), "the fill needs at least two agents");
    // Tasks over the queues; nine in ten done, some dead, the rest waiting.
    in_parallel(tasks, |n| {
        let (env, who) = (env.clone(), live[n as usize % live.len()].clone());
        async move {
            let queue = format!("q{}", n % QUEUES);
            let opts = PushOptions {
                max_attempts: if n % 100 == 1 { 1 } else { 3 },
                ..PushOptions::default()
            };
            env.push(&who, &queue, &format!("{{\"n\":{n}}}"), opts)
                .await?;
            let claimed = match n % 10 {
                9 => None,
                _ => env.claim(&who, &queue, 60_000, 0).await?,
            };
            if let Some(c) = claimed {
                if n % 100 == 1 {
                    env.fail(&who, c.id, c.token, "bench failure", true).await?;
                } else {
                    env.complete(&who, c.id, c.token, "ok").await?;
                }
            }
            Ok(())
        }
    })
    .await?;
    // A story with a crash in it.
    let crasher = env.agent_started(&host, "crasher", 0, "bench").await?;
    let story = env
        .push(&crasher, "story", "{}", PushOptions::default())
        .await?
        .id;
    env.claim(&crasher, "story", 60_000, 0).await?;
    env.agent_ended(&crasher, AgentEnd::Crashed, "panicked: mid-task")
        .await?;
    // The rest of the journal: value writes.
    let so_far = env.latest_seq().await?;
    in_parallel(events.saturating_sub(so_far), |n| {
        let (env, who) = (env.clone(), live[n as usize % live.len()].clone());
        async move {
            env.put_value(&who, &format!("k/{}", n % 1_000), "v", None, None)
                .await?;
            Ok(())
        }
    })
    .await?;
    let c = env
        .claim(&elder, "long", 60_000, 0)
        .await?
        .ok_or_else(|| anyhow::anyhow!("the long task was not there to claim"))?;
    env.complete(&elder, c.id, c.token, "ok").await?;
    Ok((story, long))
}

/// Run `one(n)` for `n` in `0..count`, [`FILLERS`] at a time.
async fn in_parallel<T, F, Fut>(count: u64, one: F) -> anyhow::Result<Vec<T>>
where
    F: Fn(u64) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let mut out = Vec::with_capacity(count as usize);
    let mut n = 0;
    while n < count {
        let end = (n + FILLERS * 16).min(count);
        for r in join_all((n..end).map(&one)).await {
            out.push(r?);
        }
        n = end;
    }
    Ok(out)
}
