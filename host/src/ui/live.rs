//! The view's live feed: one journal tail per server, shared by every page.
//!
//! The tail sleeps until the environment changes (a commit here or in any
//! other process or host), then reads the new events once: the newest
//! [`MAX_EVENTS_PER_FRAME`] of them, no sooner than [`SETTLE`] after its last
//! read, so a burst becomes one frame. It recomputes the overview at most
//! once per [`OVERVIEW_EVERY`]. Each result
//! is serialized once and broadcast; a page that falls more than
//! [`BACKLOG`] frames behind is told to fetch again (`resync`) instead of
//! being buffered for, so memory per page is bounded. With no page open,
//! the tail does nothing at all.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::{Notify, broadcast, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::env::{Durability, Env, EnvResult, Event, EventFilter, TaskState};

/// The least time between two journal frames: a burst of commits within it
/// goes out as one frame.
const SETTLE: Duration = Duration::from_millis(250);

/// The most events one frame carries; older ones in a burst are counted.
pub(crate) const MAX_EVENTS_PER_FRAME: u32 = 50;

/// How often the overview is recomputed at most (and sampled for history).
const OVERVIEW_EVERY: Duration = Duration::from_secs(1);

/// Frames a page may fall behind before it is told to resync.
const BACKLOG: usize = 64;

/// Samples of history kept for the sparklines.
const HISTORY: usize = 120;

/// One message to every page, serialized once.
#[derive(Debug)]
pub(crate) struct Frame {
    /// The SSE event name: `journal` or `overview`.
    pub(crate) event: &'static str,
    /// Its JSON.
    pub(crate) data: String,
}

/// The shared tail and what it remembers.
pub(crate) struct Live {
    env: Env,
    /// Whether operator actions are on (the page shows their buttons).
    actions: bool,
    /// The durability the watched swarm commits with, when known.
    durability: Option<Durability>,
    frames: broadcast::Sender<Arc<Frame>>,
    someone_watches: Notify,
    history: Mutex<History>,
}

/// Samples of the journal's head and each queue's done count over time.
#[derive(Default, Serialize)]
struct History {
    at: VecDeque<u64>,
    seq: VecDeque<u64>,
    done: BTreeMap<String, VecDeque<u64>>,
}

impl Live {
    /// Start the tail for `env`; it ends when `stop` turns true (await the
    /// handle to know it read its last).
    pub(crate) fn start(
        env: Env,
        actions: bool,
        durability: Option<Durability>,
        stop: watch::Receiver<bool>,
    ) -> (Arc<Live>, JoinHandle<()>) {
        let (frames, _) = broadcast::channel(BACKLOG);
        let live = Arc::new(Live {
            env,
            actions,
            durability,
            frames,
            someone_watches: Notify::new(),
            history: Mutex::new(History::default()),
        });
        let tail = tokio::spawn(Arc::clone(&live).tail(stop));
        (live, tail)
    }

    /// A new page's feed.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Arc<Frame>> {
        let rx = self.frames.subscribe();
        self.someone_watches.notify_one();
        rx
    }

    /// The overview as `GET /api/overview` and the `overview` frame show it,
    /// sampled into the history (at most once per [`OVERVIEW_EVERY`]).
    pub(crate) async fn overview(&self) -> EnvResult<Value> {
        let env = &self.env;
        let (o, hosts) = (env.overview().await?, env.list_hosts().await?);
        let now = env.now_ms();
        let history = {
            let mut h = self.history.lock().expect("history lock");
            h.sample(now, o.last_seq, &o.queues);
            serde_json::to_value(&*h).unwrap_or(Value::Null)
        };
        let tasks: BTreeMap<&str, u64> = TaskState::ALL
            .iter()
            .map(|s| (s.as_str(), o.queues.iter().map(|q| q.count(*s)).sum()))
            .collect();
        let queues: Vec<Value> = o
            .queues
            .iter()
            .map(|q| {
                let mut row = serde_json::Map::new();
                row.insert("queue".into(), json!(q.queue));
                for s in TaskState::ALL {
                    row.insert(s.as_str().into(), json!(q.count(s)));
                }
                Value::Object(row)
            })
            .collect();
        let hosts: Vec<Value> = hosts
            .iter()
            .map(|h| {
                let mut v = serde_json::to_value(h).unwrap_or(Value::Null);
                v["heartbeat_age_ms"] = json!(now.saturating_sub(h.last_heartbeat));
                v
            })
            .collect();
        let agents: BTreeMap<&str, u64> = o.agents.iter().map(|(s, n)| (s.as_str(), *n)).collect();
        Ok(json!({
            "now": now,
            "location": env.location().to_string(),
            "backend": if env.file().is_some() { "sqlite" } else { "postgres" },
            "durability": self.durability.map(Durability::name),
            "actions": self.actions,
            "last_seq": o.last_seq,
            "hosts": hosts,
            "agents": agents,
            "tasks": tasks,
            "queues": queues,
            "leases": o.leases,
            "waiters": o.waiters,
            "learnings": o.learnings,
            "signals": o.signals,
            "values": o.values,
            "events": o.events,
            "history": history,
        }))
    }

    async fn tail(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut changes = self.env.subscribe();
        let mut cursor = match self.env.latest_seq().await {
            Ok(head) => head,
            Err(e) => {
                tracing::warn!("the live view cannot read the journal: {e}");
                0
            }
        };
        let mut overview_due = false;
        let mut last_overview = Instant::now() - OVERVIEW_EVERY;
        let mut last_frame = Instant::now() - SETTLE;
        loop {
            if self.frames.receiver_count() == 0 {
                // Nobody watches: read nothing, only keep the cursor at the
                // newest sequence number committed, so a page that joins
                // gets every change made after it joined.
                tokio::select! {
                    _ = self.someone_watches.notified() => overview_due = true,
                    r = changes.changed() => {
                        if r.is_err() { return; }
                        cursor = cursor.max(*changes.borrow_and_update());
                    }
                    _ = stop.wait_for(|s| *s) => return,
                }
                continue;
            }
            let overview_at = if overview_due {
                last_overview + OVERVIEW_EVERY
            } else {
                Instant::now() + Duration::from_secs(3600)
            };
            let changed = tokio::select! {
                r = changes.changed() => {
                    if r.is_err() { return; }
                    true
                }
                _ = tokio::time::sleep_until(overview_at) => false,
                _ = self.someone_watches.notified() => false,
                _ = stop.wait_for(|s| *s) => return,
            };
            if changed {
                // At most one frame per SETTLE: a lone change goes out at
                // once, a burst is gathered into the next frame.
                tokio::select! {
                    _ = tokio::time::sleep_until(last_frame + SETTLE) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
                last_frame = Instant::now();
                changes.borrow_and_update();
                match self.journal_frame(&mut cursor).await {
                    Ok(Some(frame)) => {
                        let _ = self.frames.send(Arc::new(frame));
                    }
                    Ok(None) => {}
                    Err(e) => tracing::warn!("the live view cannot read the journal: {e}"),
                }
                overview_due = true;
            }
            if overview_due && Instant::now() >= last_overview + OVERVIEW_EVERY {
                overview_due = false;
                last_overview = Instant::now();
                match self.overview().await {
                    Ok(v) => {
                        let _ = self.frames.send(Arc::new(Frame {
                            event: "overview",
                            data: v.to_string(),
                        }));
                    }
                    Err(e) => tracing::warn!("the live view cannot read the overview: {e}"),
                }
            }
        }
    }

    /// The events since `cursor` (the newest [`MAX_EVENTS_PER_FRAME`] of
    /// them), moving the cursor past the last one sent.
    async fn journal_frame(&self, cursor: &mut u64) -> EnvResult<Option<Frame>> {
        let head = self.env.latest_seq().await?;
        let after = *cursor;
        if head <= after {
            return Ok(None);
        }
        let from = after.max(head.saturating_sub(u64::from(MAX_EVENTS_PER_FRAME)));
        let events: Vec<Event> = self
            .env
            .read_events(from, &EventFilter::default(), MAX_EVENTS_PER_FRAME)
            .await?;
        // Events committed after `head` was read may be in the page too.
        *cursor = events.last().map_or(head, |e| e.seq.max(head));
        let data = json!({
            "events": events,
            "skipped": from - after,
            "last_seq": *cursor,
        });
        Ok(Some(Frame {
            event: "journal",
            data: data.to_string(),
        }))
    }
}

impl History {
    fn sample(&mut self, at: u64, seq: u64, queues: &[crate::env::QueueCounts]) {
        if self
            .at
            .back()
            .is_some_and(|last| at < last + OVERVIEW_EVERY.as_millis() as u64)
        {
            return;
        }
        let n = self.at.len();
        self.at.push_back(at);
        self.seq.push_back(seq);
        for q in queues {
            let done = q.count(TaskState::Done);
            let line = self
                .done
                .entry(q.queue.clone())
                .or_insert_with(|| std::iter::repeat_n(done, n).collect());
            line.push_back(done);
        }
        // A queue that emptied keeps its last count.
        for line in self.done.values_mut() {
            if line.len() < self.at.len() {
                let last = line.back().copied().unwrap_or(0);
                line.push_back(last);
            }
        }
        if self.at.len() > HISTORY {
            self.at.pop_front();
            self.seq.pop_front();
            for line in self.done.values_mut() {
                line.pop_front();
            }
        }
    }
}
