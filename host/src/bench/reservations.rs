//! The `reservations` workload: reserve + release churn by N concurrent
//! callers, each round one resource held exclusively and released at once.
//!
//! Two scenarios, each through wasm agents and through native calls:
//! - **disjoint**: every caller has resources of its own (no conflicts: the
//!   cost of the grant itself);
//! - **overlapping**: all callers share a few resources, so most rounds find
//!   the resource held and queue for it (first come, first served) until
//!   its release wakes them.

use super::tasks::Throughput;
use super::{Place, discard, guest};
use crate::env::{AgentId, Durability, EnvOptions, Mode};

/// What `wawe bench reservations` measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReservationsReport {
    /// `sqlite` or `postgres`.
    pub backend: &'static str,
    /// `normal` or `full`.
    pub durability: &'static str,
    /// Concurrent callers.
    pub agents: u32,
    /// Reserve + release rounds in each run.
    pub rounds: u64,
    /// Resources the overlapping callers share.
    pub shared_resources: u32,
    /// One line per scenario and mode.
    pub runs: Vec<ReservationRun>,
}

/// One scenario in one mode.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReservationRun {
    /// `disjoint` or `overlapping`.
    pub scenario: &'static str,
    /// `wasm` or `native`.
    pub mode: &'static str,
    /// Rounds per second, and commits per round.
    pub rate: Throughput,
    /// Rounds that found their resource held and waited for it.
    pub waited: u64,
}

/// Resources each disjoint caller cycles through.
const OWN_RESOURCES: u32 = 4;
const TTL_MS: u64 = 60_000;
const WAIT_MS: u64 = 60_000;

/// The resources of caller `n`: its own, or the shared ones.
fn resources(overlap: bool, n: u32, shared: u32) -> Vec<String> {
    if overlap {
        (0..shared).map(|r| format!("shared/{r}")).collect()
    } else {
        (0..OWN_RESOURCES).map(|r| format!("own/{n}/{r}")).collect()
    }
}

/// Run both scenarios in both modes, `rounds` rounds each (rounded down to
/// a multiple of `agents`), each run on a fresh environment of `place`.
pub async fn reservations(
    place: &Place,
    agents: u32,
    rounds: u64,
    shared: u32,
    durability: Durability,
) -> anyhow::Result<ReservationsReport> {
    let agents = agents.max(1);
    let shared = shared.max(1);
    let per_agent = (rounds / u64::from(agents)).max(1);
    let total = per_agent * u64::from(agents);
    let opts = EnvOptions {
        durability,
        ..EnvOptions::default()
    };
    let mut runs = Vec::new();
    for (scenario, overlap) in [("disjoint", false), ("overlapping", true)] {
        let path = place.fresh(&format!("wasm-{scenario}")).await?;
        let (env, rate) = guest::run_fresh(&path, opts.clone(), place.dir(), agents, total, |n| {
            guest::config([
                ("workload", "reservations".into()),
                ("count", per_agent.to_string()),
                ("seed", n.to_string()),
                ("wait_ms", WAIT_MS.to_string()),
                ("resources", resources(overlap, n, shared).join(",")),
            ])
        })
        .await?;
        runs.push(ReservationRun {
            scenario,
            mode: "wasm",
            rate,
            waited: env.reservations_queued().await?,
        });
        discard(env).await?;

        let path = place.fresh(&format!("native-{scenario}")).await?;
        let (env, rate) = super::run_native(&path, opts.clone(), agents, total, |env, n| {
            let mine = resources(overlap, n, shared);
            async move {
                let me = AgentId::new(format!("native.{n}"));
                for round in 0..per_agent {
                    let pick = &mine[((u64::from(n) + round) % mine.len() as u64) as usize];
                    let one = std::slice::from_ref(pick);
                    let lease = env
                        .reserve(&me, one, Mode::Exclusive, TTL_MS, WAIT_MS)
                        .await?;
                    env.release(&me, lease.id).await?;
                }
                Ok(())
            }
        })
        .await?;
        runs.push(ReservationRun {
            scenario,
            mode: "native",
            rate,
            waited: env.reservations_queued().await?,
        });
        discard(env).await?;
    }
    Ok(ReservationsReport {
        backend: place.backend(),
        durability: durability.name(),
        agents,
        rounds: total,
        shared_resources: shared,
        runs,
    })
}
