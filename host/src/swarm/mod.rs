//! A swarm: groups of agent replicas, one group per module, started,
//! replaced and stopped as a whole; and the watched folder that drives them.

mod watch;

use std::collections::BTreeMap;

pub use watch::{Changed, FolderChange, watch_folder};

use crate::manifest::AgentPlan;
use crate::runtime::{AgentHandle, AgentSpec, CountersSnapshot, Host, Module, RunEnd};

/// The agents a host runs, by name.
pub struct Swarm {
    host: Host,
    groups: BTreeMap<String, Group>,
    /// Replicas that had ended failed (or given up) and were replaced.
    revived: u32,
}

struct Group {
    plan: AgentPlan,
    digest: String,
    handles: Vec<AgentHandle>,
}

/// How the agents of a swarm ended, for the summary.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Endings {
    /// Replicas whose last run returned ok.
    pub exited: u32,
    /// Replicas whose last run failed or crashed (not restarted).
    pub failed: Vec<String>,
    /// Replicas stopped by the host.
    pub stopped: u32,
    /// Replicas that had ended failed (or given up in a crash loop) and were
    /// started again on new code or settings; their earlier end does not count.
    pub revived: u32,
}

impl Swarm {
    /// An empty swarm on `host`.
    pub fn new(host: Host) -> Swarm {
        Swarm {
            host,
            groups: BTreeMap::new(),
            revived: 0,
        }
    }

    /// The host the swarm runs on.
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// Start every replica of `plan` running `module`.
    pub fn start(&mut self, plan: &AgentPlan, module: &Module) {
        let handles = (0..plan.replicas)
            .map(|replica| {
                self.host.spawn(
                    module,
                    AgentSpec {
                        name: plan.name.clone(),
                        replica,
                        limits: plan.limits.clone(),
                        restart: plan.restart,
                        config: plan.config.clone(),
                        grants: plan.grants.clone(),
                    },
                )
            })
            .collect();
        self.groups.insert(
            plan.name.clone(),
            Group {
                plan: plan.clone(),
                digest: module.digest.clone(),
                handles,
            },
        );
    }

    /// Whether agent `name` is in the swarm.
    pub fn contains(&self, name: &str) -> bool {
        self.groups.contains_key(name)
    }

    /// Whether agent `name` already runs exactly `plan` on `module` (so a
    /// change to it would change nothing).
    pub fn runs(&self, plan: &AgentPlan, module: &Module) -> bool {
        self.groups
            .get(&plan.name)
            .is_some_and(|g| g.plan == *plan && g.digest == module.digest)
    }

    /// Stop every replica of `name` and wait until each has ended (its
    /// leases released, its claimed tasks put back).
    pub async fn stop(&mut self, name: &str) -> Endings {
        let mut endings = Endings::default();
        if let Some(group) = self.groups.remove(name) {
            stop_group(group, &mut endings).await;
        }
        endings
    }

    /// Stop every replica of `name` to start it again on new code or
    /// settings; replicas that had ended failed count as revived.
    pub async fn replace(&mut self, name: &str) {
        let ended = self.stop(name).await;
        self.revived += u32::try_from(ended.failed.len()).unwrap_or(u32::MAX);
    }

    /// Whether every agent has ended for good (none running or restarting).
    pub fn all_finished(&self) -> bool {
        self.groups
            .values()
            .all(|g| g.handles.iter().all(AgentHandle::is_finished))
    }

    /// Stop everything, wait for each agent's end, and stop the host.
    /// Returns how the agents ended and what their runs came to.
    pub async fn shutdown(mut self) -> anyhow::Result<(Endings, CountersSnapshot)> {
        let mut endings = Endings {
            revived: self.revived,
            ..Endings::default()
        };
        for (_, group) in std::mem::take(&mut self.groups) {
            stop_group(group, &mut endings).await;
        }
        let runs = self.host.counters();
        self.host.shutdown().await?;
        Ok((endings, runs))
    }
}

async fn stop_group(group: Group, endings: &mut Endings) {
    for h in &group.handles {
        h.stop();
    }
    for h in group.handles {
        let who = format!("{}.{}", h.name, h.replica);
        match h.join().await {
            RunEnd::Exited => endings.exited += 1,
            RunEnd::Stopped => endings.stopped += 1,
            RunEnd::Failed(m) | RunEnd::Crashed(m) => {
                let first = m.lines().next().unwrap_or_default().to_string();
                endings.failed.push(format!("{who}: {first}"));
            }
        }
    }
}
