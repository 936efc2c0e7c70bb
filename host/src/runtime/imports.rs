//! The `wawe:env` imports: each maps onto one environment operation, under
//! the identity the host gave the calling agent. Waits are real waits: the
//! agent's future sleeps until the environment wakes it.

use super::bindings::wawe::env::{
    events, learnings, logging, reservations, signals, tasks, types, values,
};
use wasmtime::component::{HasSelf, Linker};

use super::quota::Call;
use super::state::AgentState;
use crate::env::{self, EnvError};

type Res<T> = wasmtime::Result<Result<T, types::Error>>;

/// Link the environment's interfaces of `wawe:env` (the capabilities link
/// their own: see [`super::caps`]).
pub(crate) fn add_to_linker(linker: &mut Linker<AgentState>) -> anyhow::Result<()> {
    types::add_to_linker::<_, HasSelf<_>>(linker, me)?;
    reservations::add_to_linker::<_, HasSelf<_>>(linker, me)?;
    tasks::add_to_linker::<_, HasSelf<_>>(linker, me)?;
    learnings::add_to_linker::<_, HasSelf<_>>(linker, me)?;
    signals::add_to_linker::<_, HasSelf<_>>(linker, me)?;
    values::add_to_linker::<_, HasSelf<_>>(linker, me)?;
    events::add_to_linker::<_, HasSelf<_>>(linker, me)?;
    logging::add_to_linker::<_, HasSelf<_>>(linker, me)?;
    Ok(())
}

/// The store data, as the bindings' accessor for the agent's own state.
fn me(state: &mut AgentState) -> &mut AgentState {
    state
}

impl From<EnvError> for types::Error {
    fn from(e: EnvError) -> Self {
        match e {
            EnvError::Conflict {
                holder,
                resource,
                expires_at,
            } => types::Error::Conflict(types::Conflict {
                holder,
                resource,
                expires_at,
            }),
            EnvError::StaleToken(t) => types::Error::StaleToken(t),
            EnvError::NotFound(m) => types::Error::NotFound(m),
            EnvError::TooLarge {
                what,
                limit,
                actual,
            } => types::Error::TooLarge(types::TooLarge {
                what,
                limit,
                actual,
            }),
            EnvError::VersionMismatch { expected, actual } => {
                types::Error::VersionMismatch(types::VersionMismatch { expected, actual })
            }
            EnvError::InvalidArgument(m) => types::Error::InvalidArgument(m),
            EnvError::Unavailable(m) => types::Error::Unavailable(m),
        }
    }
}

/// Hand an environment result to the guest (its errors are values, not traps).
fn answer<T, U: From<T>>(r: Result<T, EnvError>) -> Res<U> {
    Ok(r.map(U::from).map_err(types::Error::from))
}

fn mode_in(m: reservations::Mode) -> env::Mode {
    match m {
        reservations::Mode::Exclusive => env::Mode::Exclusive,
        reservations::Mode::Shared => env::Mode::Shared,
    }
}

fn mode_out(m: env::Mode) -> reservations::Mode {
    match m {
        env::Mode::Exclusive => reservations::Mode::Exclusive,
        env::Mode::Shared => reservations::Mode::Shared,
    }
}

impl From<env::Lease> for reservations::Lease {
    fn from(l: env::Lease) -> Self {
        Self {
            id: l.id,
            resources: l.resources,
            mode: mode_out(l.mode),
            token: l.token,
            expires_at: l.expires_at,
        }
    }
}

impl From<env::Holding> for reservations::Holding {
    fn from(h: env::Holding) -> Self {
        Self {
            lease: h.lease,
            holder: h.holder,
            resource: h.resource,
            mode: mode_out(h.mode),
            token: h.token,
            expires_at: h.expires_at,
        }
    }
}

impl types::Host for AgentState {}

impl reservations::Host for AgentState {
    async fn reserve(
        &mut self,
        resources: Vec<String>,
        mode: reservations::Mode,
        ttl_ms: u64,
        wait_ms: u64,
    ) -> Res<reservations::Lease> {
        self.charge(Call::Write).await?;
        let r = self
            .env
            .reserve(&self.id, &resources, mode_in(mode), ttl_ms, wait_ms)
            .await;
        answer(r)
    }

    async fn renew(&mut self, lease: u64, ttl_ms: u64) -> Res<reservations::Lease> {
        self.charge(Call::Write).await?;
        answer(self.env.renew(&self.id, lease, ttl_ms).await)
    }

    async fn release(&mut self, lease: u64) -> Res<()> {
        self.charge(Call::Write).await?;
        answer(self.env.release(&self.id, lease).await)
    }

    async fn list(&mut self, prefix: String) -> Res<Vec<reservations::Holding>> {
        self.charge(Call::Read).await?;
        let r = self.env.list_reservations(&prefix).await;
        Ok(r.map(|v| v.into_iter().map(Into::into).collect())
            .map_err(Into::into))
    }
}

fn state_out(s: env::TaskState) -> tasks::TaskState {
    match s {
        env::TaskState::Blocked => tasks::TaskState::Blocked,
        env::TaskState::Ready => tasks::TaskState::Ready,
        env::TaskState::Claimed => tasks::TaskState::Claimed,
        env::TaskState::Done => tasks::TaskState::Done,
        env::TaskState::Dead => tasks::TaskState::Dead,
        env::TaskState::Cancelled => tasks::TaskState::Cancelled,
    }
}

impl From<env::Pushed> for tasks::Pushed {
    fn from(p: env::Pushed) -> Self {
        Self {
            id: p.id,
            deduplicated: p.deduplicated,
        }
    }
}

impl From<env::Claimed> for tasks::Claimed {
    fn from(c: env::Claimed) -> Self {
        Self {
            id: c.id,
            queue: c.queue,
            payload: c.payload,
            attempt: c.attempt,
            token: c.token,
            lease_expires_at: c.lease_expires_at,
        }
    }
}

impl From<env::Task> for tasks::Task {
    fn from(t: env::Task) -> Self {
        Self {
            id: t.id,
            queue: t.queue,
            payload: t.payload,
            state: state_out(t.state),
            priority: t.priority,
            attempts: t.attempts,
            max_attempts: t.max_attempts,
            not_before: t.not_before,
            dedupe_key: t.dedupe_key,
            depends_on: t.depends_on,
            claimed_by: t.claimed_by,
            result: t.result,
            last_error: t.last_error,
            created_at: t.created_at,
            updated_at: t.updated_at,
        }
    }
}

impl tasks::Host for AgentState {
    async fn push(
        &mut self,
        queue: String,
        payload: String,
        o: tasks::PushOptions,
    ) -> Res<tasks::Pushed> {
        self.charge(Call::Push).await?;
        let opts = env::PushOptions {
            priority: o.priority,
            delay_ms: o.delay_ms,
            max_attempts: o.max_attempts,
            dedupe_key: o.dedupe_key,
            depends_on: o.depends_on,
        };
        answer(self.env.push(&self.id, &queue, &payload, opts).await)
    }

    async fn claim(
        &mut self,
        queue: String,
        lease_ms: u64,
        wait_ms: u64,
    ) -> Res<Option<tasks::Claimed>> {
        self.charge(Call::Write).await?;
        let r = self.env.claim(&self.id, &queue, lease_ms, wait_ms).await;
        Ok(r.map(|c| c.map(Into::into)).map_err(Into::into))
    }

    async fn complete(&mut self, id: u64, token: u64, result: String) -> Res<()> {
        self.charge(Call::Write).await?;
        answer(self.env.complete(&self.id, id, token, &result).await)
    }

    async fn fail(&mut self, id: u64, token: u64, reason: String, retry: bool) -> Res<()> {
        self.charge(Call::Write).await?;
        answer(self.env.fail(&self.id, id, token, &reason, retry).await)
    }

    async fn extend(&mut self, id: u64, token: u64, lease_ms: u64) -> Res<u64> {
        self.charge(Call::Write).await?;
        answer(self.env.extend(&self.id, id, token, lease_ms).await)
    }

    async fn get(&mut self, id: u64) -> Res<tasks::Task> {
        self.charge(Call::Read).await?;
        answer(self.env.get_task(id).await)
    }
}

impl From<env::Learning> for learnings::Learning {
    fn from(l: env::Learning) -> Self {
        Self {
            id: l.id,
            author: l.author,
            topic: l.topic,
            body: l.body,
            tags: l.tags,
            created_at: l.created_at,
            endorsements: l.endorsements,
            score: l.score,
        }
    }
}

fn list<T, U: From<T>>(r: Result<Vec<T>, EnvError>) -> Res<Vec<U>> {
    Ok(r.map(|v| v.into_iter().map(U::from).collect())
        .map_err(Into::into))
}

impl learnings::Host for AgentState {
    async fn record(&mut self, topic: String, body: String, tags: Vec<String>) -> Res<u64> {
        self.charge(Call::Learning).await?;
        answer(
            self.env
                .record_learning(&self.id, &topic, &body, &tags)
                .await,
        )
    }

    async fn search(&mut self, text: String, limit: u32) -> Res<Vec<learnings::Learning>> {
        self.charge(Call::Read).await?;
        list(self.env.search_learnings(&text, limit).await)
    }

    async fn recent(&mut self, topic: String, limit: u32) -> Res<Vec<learnings::Learning>> {
        self.charge(Call::Read).await?;
        list(self.env.recent_learnings(Some(&topic), limit).await)
    }

    async fn endorse(&mut self, id: u64) -> Res<u32> {
        self.charge(Call::Write).await?;
        answer(self.env.endorse(&self.id, id).await)
    }
}

impl From<env::TrailStrength> for signals::TrailStrength {
    fn from(t: env::TrailStrength) -> Self {
        Self {
            trail: t.trail,
            strength: t.strength,
        }
    }
}

impl signals::Host for AgentState {
    async fn deposit(&mut self, trail: String, amount: f64, half_life_ms: Option<u64>) -> Res<f64> {
        self.charge(Call::Write).await?;
        answer(
            self.env
                .deposit(&self.id, &trail, amount, half_life_ms)
                .await,
        )
    }

    async fn sense(&mut self, trail: String) -> Res<f64> {
        self.charge(Call::Read).await?;
        answer(self.env.sense(&trail).await)
    }

    async fn strongest(&mut self, prefix: String, n: u32) -> Res<Vec<signals::TrailStrength>> {
        self.charge(Call::Read).await?;
        list(self.env.strongest(&prefix, n).await)
    }
}

impl values::Host for AgentState {
    async fn get(&mut self, key: String) -> Res<Option<values::Versioned>> {
        self.charge(Call::Read).await?;
        let r = self.env.get_value(&key).await;
        Ok(r.map(|v| {
            v.map(|v| values::Versioned {
                value: v.value,
                version: v.version,
            })
        })
        .map_err(Into::into))
    }

    async fn put(
        &mut self,
        key: String,
        value: String,
        expected_version: Option<u64>,
        fence: Option<u64>,
    ) -> Res<u64> {
        self.charge(Call::Write).await?;
        let r = self
            .env
            .put_value(&self.id, &key, &value, expected_version, fence)
            .await;
        answer(r)
    }

    async fn delete(
        &mut self,
        key: String,
        expected_version: Option<u64>,
        fence: Option<u64>,
    ) -> Res<()> {
        self.charge(Call::Write).await?;
        answer(
            self.env
                .delete_value(&self.id, &key, expected_version, fence)
                .await,
        )
    }
}

impl From<env::Event> for events::Event {
    fn from(e: env::Event) -> Self {
        Self {
            seq: e.seq,
            at: e.at,
            agent: e.agent,
            kind: e.kind,
            subject: e.subject,
            detail: e.detail,
        }
    }
}

impl From<env::EventPage> for events::Page {
    fn from(p: env::EventPage) -> Self {
        Self {
            events: p.events.into_iter().map(Into::into).collect(),
            scanned_to: p.scanned_to,
            more: p.more,
        }
    }
}

fn filter_in(f: events::Filter) -> env::EventFilter {
    env::EventFilter {
        kinds: f.kinds,
        subject_prefix: f.subject_prefix,
        agent: None,
    }
}

impl events::Host for AgentState {
    async fn read(&mut self, after: u64, filter: events::Filter, limit: u32) -> Res<events::Page> {
        self.charge(Call::Read).await?;
        answer(
            self.env
                .read_events_page(after, &filter_in(filter), limit)
                .await,
        )
    }

    async fn wait(
        &mut self,
        after: u64,
        filter: events::Filter,
        timeout_ms: u64,
    ) -> Res<Vec<events::Event>> {
        self.charge(Call::Read).await?;
        list(
            self.env
                .wait_events(after, &filter_in(filter), timeout_ms)
                .await,
        )
    }

    async fn latest(&mut self) -> Res<u64> {
        self.charge(Call::Read).await?;
        answer(self.env.latest_seq().await)
    }
}

/// The longest log message kept; longer ones are cut.
const MAX_LOG: usize = 8 * 1024;

impl logging::Host for AgentState {
    async fn log(&mut self, level: logging::Level, message: String) -> wasmtime::Result<()> {
        self.charge(Call::Read).await?;
        let agent = self.id.as_str();
        let mut message = message;
        super::truncate(&mut message, MAX_LOG);
        match level {
            logging::Level::Trace => tracing::trace!(target: "wawe::agent", agent, "{message}"),
            logging::Level::Debug => tracing::debug!(target: "wawe::agent", agent, "{message}"),
            logging::Level::Info => tracing::info!(target: "wawe::agent", agent, "{message}"),
            logging::Level::Warn => tracing::warn!(target: "wawe::agent", agent, "{message}"),
            logging::Level::Error => tracing::error!(target: "wawe::agent", agent, "{message}"),
        }
        Ok(())
    }
}
