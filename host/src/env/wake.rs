//! Targeted wake-ups, shared by every backend: a waiting `claim` sleeps on
//! its queue, a waiting `reserve` on its resources, an events wait on its
//! filter, and a commit wakes only the waiters its events can concern.
//!
//! Each backend notes what its committed events touch ([`Touched::note`],
//! called where an event is journaled) and hands that to [`Wakes::dispatch`]
//! after the commit. Commits by other processes and hosts are read back
//! from the journal and noted the same way. What cannot be read that way (a
//! gap in the journal, a notification lost with its connection) wakes every
//! waiter: the general wake-up, counted so a benchmark can show how often.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::EventFilter;
use super::resource::overlaps;

/// What one waiter waits for.
#[derive(Debug, Clone)]
pub(crate) enum Interest {
    /// A task becoming claimable in this queue.
    Queue(String),
    /// A lease on any of these resources ending (or a place in line ahead
    /// being given up or granted).
    Resources(Vec<String>),
    /// An event passing this filter.
    Events(EventFilter),
}

/// How many wake-ups were delivered, and how.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct WakeTally {
    /// Waiters woken because a commit touched what they wait for.
    pub targeted: u64,
    /// Waiters woken by a general wake-up (a change that could not be read
    /// back from the journal).
    pub general: u64,
    /// General wake-ups sent (each wakes every waiter).
    pub general_events: u64,
}

/// Every waiter of one environment handle, by what it waits for.
#[derive(Default)]
pub(crate) struct Wakes {
    registry: Mutex<Registry>,
    /// Waiters on events: while there are none, commits skip noting their
    /// events for them.
    event_waiters: AtomicUsize,
    /// Waiters of any kind: while there are none, other processes' commits
    /// are not read back.
    waiters: AtomicUsize,
    targeted: AtomicU64,
    general: AtomicU64,
    general_events: AtomicU64,
    /// Stretches of the journal committed (and dispatched) by this handle,
    /// oldest first, so that reading back other processes' commits skips
    /// them.
    local: Mutex<VecDeque<(u64, u64)>>,
}

/// The most events of other processes or hosts read back at once to target
/// their wake-ups; a longer stretch wakes every waiter instead.
pub(crate) const READ_BACK: u64 = 10_000;

/// The most stretches of local commits remembered for the read-back.
const LOCAL_KEPT: usize = 4_096;

#[derive(Default)]
struct Registry {
    next: u64,
    /// Claim waiters per queue by slot id, so longest waiting first: a task
    /// is handed to one of them, not to all. A map, not a list: a waiter
    /// leaving a line of 50,000 must not look through it (that was 45% of
    /// the CPU of 50,000 agents stopping).
    queues: HashMap<String, BTreeMap<u64, Arc<Slot>>>,
    resources: HashMap<u64, (Vec<String>, Arc<Slot>)>,
    events: HashMap<u64, (EventFilter, Arc<Slot>)>,
}

/// One waiter's bell.
struct Slot {
    id: u64,
    notify: Notify,
    /// Rung and not yet heard: a waiter that leaves with its bell rung
    /// passes the wake-up on (a task left for one claimer must not be lost).
    rung: AtomicBool,
    /// Rung for a task claimable now (the claimer may go straight to it).
    now: AtomicBool,
}

impl Slot {
    fn ring(&self) {
        self.rung.store(true, Ordering::Release);
        self.notify.notify_one();
    }

    fn ring_now(&self) {
        self.now.store(true, Ordering::Release);
        self.ring();
    }
}

/// The claimer a task claimable now goes to: the longest waiting that has
/// not been rung yet (a claimer that loses its task to a faster one keeps its
/// place), else the first in line.
fn next_in_line(line: &BTreeMap<u64, Arc<Slot>>) -> Option<&Arc<Slot>> {
    line.values()
        .find(|s| !s.rung.load(Ordering::Acquire))
        .or_else(|| line.values().next())
}

/// How a wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Woken {
    /// A task was made claimable in the waiter's queue.
    Claimable,
    /// Something the waiter waits for changed.
    Changed,
    /// The deadline came first.
    TimedOut,
}

/// A registered waiter; dropping it unregisters (passing an unheard wake-up
/// on to another waiter on the same queue).
pub(crate) struct Waiter {
    wakes: Arc<Wakes>,
    interest: Interest,
    slot: Arc<Slot>,
}

impl Waiter {
    /// Sleep until this waiter is woken or `until`; false when `until` came
    /// first.
    pub(crate) async fn woken_before(&self, until: Instant) -> bool {
        self.wake_before(until).await != Woken::TimedOut
    }

    /// Sleep until this waiter is woken or `until`, and say which.
    pub(crate) async fn wake_before(&self, until: Instant) -> Woken {
        if tokio::time::timeout_at(until, self.slot.notify.notified())
            .await
            .is_err()
        {
            return Woken::TimedOut;
        }
        self.slot.rung.store(false, Ordering::Release);
        if self.slot.now.swap(false, Ordering::AcqRel) {
            Woken::Claimable
        } else {
            Woken::Changed
        }
    }

    /// Forget any wake-up delivered so far: the caller is about to look for
    /// itself, and what it finds covers them.
    pub(crate) fn settle(&self) {
        self.slot.rung.store(false, Ordering::Release);
        self.slot.now.store(false, Ordering::Release);
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        let unheard = self.slot.rung.load(Ordering::Acquire);
        let mut reg = self.wakes.registry.lock().expect("wake registry poisoned");
        match &self.interest {
            Interest::Queue(q) => {
                if let Some(line) = reg.queues.get_mut(q) {
                    line.remove(&self.slot.id);
                    if unheard && let Some(next) = next_in_line(line) {
                        next.ring_now();
                        self.wakes.targeted.fetch_add(1, Ordering::Relaxed);
                    }
                    if line.is_empty() {
                        reg.queues.remove(q);
                    }
                }
            }
            Interest::Resources(_) => {
                reg.resources.remove(&self.slot.id);
            }
            Interest::Events(_) => {
                reg.events.remove(&self.slot.id);
                self.wakes.event_waiters.fetch_sub(1, Ordering::Relaxed);
            }
        }
        self.wakes.waiters.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What the events of one or more commits touched.
#[derive(Debug, Default)]
pub(crate) struct Touched {
    /// A queue once for each task that became claimable in it, and whether
    /// only later (its `not_before` ahead).
    queues: Vec<(String, bool)>,
    /// Resources whose leases or lines changed.
    resources: Vec<String>,
    /// The events, for events waiters (only while there are some).
    events: Vec<(String, String, String)>,
    /// Something happened that could not be read: wake everyone.
    everything: bool,
    /// The first sequence number noted (where a local batch's events begin).
    first_seq: Option<u64>,
    /// Events went by while no events waiter was registered: one that
    /// registered since (while the batch was still uncommitted) must be
    /// woken to look for itself.
    events_unnoted: bool,
}

impl Touched {
    /// Note one committed (or about to be committed) event, written at `at`.
    pub(crate) fn note(
        &mut self,
        wakes: &Wakes,
        at: u64,
        agent: &str,
        kind: &str,
        subject: &str,
        detail: &Value,
    ) {
        match kind {
            "task.pushed" | "task.retried" | "task.ready" | "task.requeued" | "task.returned" => {
                let state = detail.get("state").and_then(Value::as_str);
                if matches!(state, Some("blocked" | "cancelled")) {
                    return self.note_event(wakes, agent, kind, subject);
                }
                let later = detail
                    .get("not_before")
                    .and_then(Value::as_u64)
                    .is_some_and(|t| t > at);
                match detail.get("queue").and_then(Value::as_str) {
                    Some(q) => self.queues.push((q.to_owned(), later)),
                    // An event from a wawe that did not say (an older one).
                    None => self.everything = true,
                }
            }
            "lease.released" | "lease.expired" | "lease.wait-ended" | "lease.granted" => {
                match detail.get("resources").and_then(Value::as_array) {
                    Some(rs) => self
                        .resources
                        .extend(rs.iter().filter_map(Value::as_str).map(str::to_owned)),
                    None => self.everything = true,
                }
            }
            _ => {}
        }
        self.note_event(wakes, agent, kind, subject);
    }

    /// Note an event read back from the journal (another process's or
    /// host's), its detail as stored: JSON text.
    pub(crate) fn note_stored(
        &mut self,
        wakes: &Wakes,
        at: u64,
        agent: &str,
        kind: &str,
        subject: &str,
        detail: &str,
    ) {
        // A detail that does not parse says nothing: `note` wakes everyone.
        let detail: Value = serde_json::from_str(detail).unwrap_or_default();
        self.note(wakes, at, agent, kind, subject, &detail);
    }

    /// Note the event itself, while anyone waits on events.
    fn note_event(&mut self, wakes: &Wakes, agent: &str, kind: &str, subject: &str) {
        if wakes.event_waiters.load(Ordering::Acquire) > 0 {
            self.events
                .push((agent.to_owned(), kind.to_owned(), subject.to_owned()));
        } else {
            self.events_unnoted = true;
        }
    }

    /// Note that this batch's event `seq` was appended here.
    pub(crate) fn numbered(&mut self, seq: u64) {
        self.first_seq.get_or_insert(seq);
    }

    /// Where this batch's events begin, if it wrote any.
    pub(crate) fn first_seq(&self) -> Option<u64> {
        self.first_seq
    }

    /// Note resources whose lines changed without an event.
    pub(crate) fn resources(&mut self, resources: impl IntoIterator<Item = String>) {
        self.resources.extend(resources);
    }

    /// Mark that changes happened that cannot be told apart.
    pub(crate) fn everything(&mut self) {
        self.everything = true;
    }

    /// Whether nothing was noted.
    pub(crate) fn is_empty(&self) -> bool {
        !self.everything
            && !self.events_unnoted
            && self.queues.is_empty()
            && self.resources.is_empty()
            && self.events.is_empty()
    }
}

impl Wakes {
    /// Register a waiter for `interest`. Register before looking, so that a
    /// commit landing between the look and the sleep still wakes it.
    pub(crate) fn register(self: &Arc<Self>, interest: Interest) -> Waiter {
        let mut reg = self.registry.lock().expect("wake registry poisoned");
        reg.next += 1;
        let slot = Arc::new(Slot {
            id: reg.next,
            notify: Notify::new(),
            rung: AtomicBool::new(false),
            now: AtomicBool::new(false),
        });
        match &interest {
            Interest::Queue(q) => {
                reg.queues
                    .entry(q.clone())
                    .or_default()
                    .insert(slot.id, slot.clone());
            }
            Interest::Resources(rs) => {
                reg.resources.insert(slot.id, (rs.clone(), slot.clone()));
            }
            Interest::Events(f) => {
                reg.events.insert(slot.id, (f.clone(), slot.clone()));
                self.event_waiters.fetch_add(1, Ordering::Release);
            }
        }
        self.waiters.fetch_add(1, Ordering::Relaxed);
        Waiter {
            wakes: self.clone(),
            interest,
            slot,
        }
    }

    /// How many waiters are registered.
    pub(crate) fn waiting(&self) -> usize {
        self.waiters.load(Ordering::Relaxed)
    }

    /// Whether anyone waits (commits of others are read back only then).
    pub(crate) fn anyone_waiting(&self) -> bool {
        self.waiters.load(Ordering::Relaxed) > 0
    }

    /// Wake the waiters `touched` concerns.
    pub(crate) fn dispatch(&self, touched: Touched) {
        if touched.is_empty() || !self.anyone_waiting() {
            return;
        }
        let mut reg = self.registry.lock().expect("wake registry poisoned");
        if touched.everything {
            self.general_events.fetch_add(1, Ordering::Relaxed);
            let mut n = 0;
            for slot in reg.queues.values().flat_map(BTreeMap::values) {
                slot.ring();
                n += 1;
            }
            for (_, slot) in reg.resources.values() {
                slot.ring();
                n += 1;
            }
            for (_, slot) in reg.events.values() {
                slot.ring();
                n += 1;
            }
            self.general.fetch_add(n, Ordering::Relaxed);
            return;
        }
        let mut n = 0;
        // One claimer per task claimable now, longest waiting first. A task
        // claimable only later wakes the whole line, so that every waiter
        // sets its timer for it.
        for (q, later) in &touched.queues {
            let Some(line) = reg.queues.get_mut(q) else {
                continue;
            };
            if *later {
                for slot in line.values() {
                    slot.ring();
                    n += 1;
                }
            } else if let Some(slot) = next_in_line(line) {
                slot.ring_now();
                n += 1;
            }
        }
        if !touched.resources.is_empty() {
            for (wanted, slot) in reg.resources.values() {
                if wanted
                    .iter()
                    .any(|w| touched.resources.iter().any(|r| overlaps(r, w)))
                {
                    slot.ring();
                    n += 1;
                }
            }
        }
        // Waiters on events that registered while the batch was being
        // written: its events were not noted for them.
        if touched.events_unnoted && !reg.events.is_empty() {
            self.general_events.fetch_add(1, Ordering::Relaxed);
            for (_, slot) in reg.events.values() {
                slot.ring();
                self.general.fetch_add(1, Ordering::Relaxed);
            }
        }
        if !touched.events.is_empty() {
            for (filter, slot) in reg.events.values() {
                if touched
                    .events
                    .iter()
                    .any(|(agent, kind, subject)| filter.matches_parts(agent, kind, subject))
                {
                    slot.ring();
                    n += 1;
                }
            }
        }
        self.targeted.fetch_add(n, Ordering::Relaxed);
    }

    /// Note that this handle committed the events after `from` up to `to`
    /// (and woke their waiters itself).
    pub(crate) fn committed_here(&self, from: u64, to: u64) {
        if to <= from {
            return;
        }
        let mut local = self.local.lock().expect("wake registry poisoned");
        if local.len() >= LOCAL_KEPT {
            local.pop_front();
        }
        local.push_back((from, to));
    }

    /// Take back [`Wakes::committed_here`] for a batch whose commit failed
    /// (its sequence numbers will be handed out again).
    pub(crate) fn forget_here(&self, from: u64, to: u64) {
        let mut local = self.local.lock().expect("wake registry poisoned");
        local.retain(|&(a, b)| (a, b) != (from, to));
    }

    /// The stretches of the journal after `from` up to `to` that this handle
    /// did not commit: what others committed, to be read back. Forgets the
    /// local stretches up to `to`.
    pub(crate) fn foreign(&self, from: u64, to: u64) -> Vec<(u64, u64)> {
        let mut local = self.local.lock().expect("wake registry poisoned");
        let mut out = Vec::new();
        let mut at = from;
        while let Some(&(a, b)) = local.front() {
            if a >= to {
                break;
            }
            local.pop_front();
            if a > at {
                out.push((at, a.min(to)));
            }
            at = at.max(b);
        }
        if at < to {
            out.push((at, to));
        }
        out
    }

    /// The wake-ups delivered so far.
    pub(crate) fn tally(&self) -> WakeTally {
        WakeTally {
            targeted: self.targeted.load(Ordering::Relaxed),
            general: self.general.load(Ordering::Relaxed),
            general_events: self.general_events.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use serde_json::json;
    use tokio::time::Instant;

    use super::{Interest, Touched, Wakes, Woken};
    use crate::env::EventFilter;

    /// What a commit touches when it makes a task in `queue` claimable at
    /// `not_before` (5 is now).
    fn made_claimable(wakes: &Wakes, kind: &str, queue: &str, not_before: u64) -> Touched {
        let mut touched = Touched::default();
        let detail = json!({"queue": queue, "not_before": not_before});
        touched.note(wakes, 5, "p", kind, "task/1", &detail);
        touched
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_millis(50)
    }

    #[tokio::test]
    async fn an_events_waiter_registered_while_a_batch_was_written_is_woken() {
        let wakes = Arc::new(Wakes::default());
        let mut touched = Touched::default();
        // Written while nobody waited on events...
        touched.note(&wakes, 1, "a", "value.put", "value/k", &json!({}));
        // ...then a wait starts before the batch commits.
        let waiter = wakes.register(Interest::Events(EventFilter::default()));
        wakes.dispatch(touched);
        assert!(waiter.woken_before(soon()).await);
        assert_eq!(wakes.tally().general, 1);
    }

    #[tokio::test]
    async fn a_task_claimable_now_wakes_one_claimer_and_a_later_one_wakes_all() {
        let wakes = Arc::new(Wakes::default());
        let first = wakes.register(Interest::Queue("q".into()));
        let second = wakes.register(Interest::Queue("q".into()));
        let now = made_claimable(&wakes, "task.pushed", "q", 5);
        wakes.dispatch(now);
        assert_eq!(first.wake_before(soon()).await, Woken::Claimable);
        assert_eq!(second.wake_before(soon()).await, Woken::TimedOut);
        let later = made_claimable(&wakes, "task.retried", "q", 900);
        wakes.dispatch(later);
        assert_eq!(first.wake_before(soon()).await, Woken::Changed);
        assert_eq!(second.wake_before(soon()).await, Woken::Changed);
    }

    #[tokio::test]
    async fn a_claimer_that_leaves_unwoken_passes_its_task_on() {
        let wakes = Arc::new(Wakes::default());
        let leaving = wakes.register(Interest::Queue("q".into()));
        let staying = wakes.register(Interest::Queue("q".into()));
        let pushed = made_claimable(&wakes, "task.pushed", "q", 5);
        wakes.dispatch(pushed);
        drop(leaving);
        assert_eq!(staying.wake_before(soon()).await, Woken::Claimable);
    }
}
