//! The `workspace` workload: small files written by wasm agents through the
//! workspace (each write checked against the writer's lease, fenced,
//! atomic and journaled), against the same files written plainly by native
//! callers with no lease and no journal, in place (the unguarded writes of a
//! tool with advisory locks) and atomically (temp file + rename).

use std::sync::Arc;

use anyhow::Context;

use super::guest::{config, start_with_workspace};
use super::{Place, Throughput, discard};
use crate::env::{Durability, Env, EnvOptions};
use crate::runtime::Grants;
use crate::runtime::caps::workspace::Access;

/// What `wawe bench workspace` measured.
#[derive(Debug, serde::Serialize)]
pub struct WorkspaceReport {
    /// Writers (wasm agents, and native callers for the baselines).
    pub agents: u32,
    /// Files written in each mode, in all.
    pub writes: u64,
    /// Bytes per file.
    pub size: usize,
    /// `sqlite` or `postgres`.
    pub backend: &'static str,
    /// The durability in force.
    pub durability: &'static str,
    /// Through the workspace, from wasm, under leases.
    pub guarded: Throughput,
    /// Native `std::fs::write` in place: no lease, no journal, no atomicity.
    pub plain: Throughput,
    /// Native temp file + rename: atomic, but no lease and no journal.
    pub plain_atomic: Throughput,
    /// guarded / plain.
    pub guarded_vs_plain: f64,
    /// guarded / plain_atomic.
    pub guarded_vs_plain_atomic: f64,
}

/// Run the workload: `writes` files of `size` bytes by `agents` writers.
pub async fn workspace(
    place: &Place,
    agents: u32,
    writes: u64,
    size: usize,
    durability: Durability,
) -> anyhow::Result<WorkspaceReport> {
    let agents = agents.max(1);
    let per = writes.div_ceil(u64::from(agents));
    let writes = per * u64::from(agents);
    const FILES: u64 = 50;

    let root = place.dir().join("workspace");
    std::fs::create_dir_all(&root)?;
    let at = place.fresh("workspace").await?;
    let opts = EnvOptions {
        durability,
        ..EnvOptions::default()
    };
    let env = Env::open(&at, opts)?;
    let ws = crate::runtime::Workspace::open(&root)?;
    let (host, module) = start_with_workspace(env.clone(), place.dir(), ws).await?;
    let grants = Grants {
        workspace: Some(Access::Write),
        ..Grants::default()
    };
    let before = env.commits();
    let took = super::guest::run_all_with(&host, &module, agents, grants, |r| {
        config([
            ("workload", "workspace".into()),
            ("dir", format!("guarded/{r}")),
            ("count", per.to_string()),
            ("size", size.to_string()),
            ("files", FILES.to_string()),
        ])
    })
    .await?;
    let guarded = Throughput::of(writes, took, env.commits() - before);
    host.shutdown().await?;
    discard(env).await?;

    // The baselines flush to disk exactly when the guarded writes do.
    let sync = durability == Durability::Full;
    let plain = native(&root.join("plain"), agents, per, size, FILES, false, sync).await?;
    let plain_atomic = native(&root.join("atomic"), agents, per, size, FILES, true, sync).await?;
    Ok(WorkspaceReport {
        agents,
        writes,
        size,
        backend: place.backend(),
        durability: durability.name(),
        guarded_vs_plain: guarded.rate_per_s / plain.rate_per_s,
        guarded_vs_plain_atomic: guarded.rate_per_s / plain_atomic.rate_per_s,
        guarded,
        plain,
        plain_atomic,
    })
}

/// `agents` native writers, each writing `per` files of `size` bytes into a
/// directory of its own (cycling over `files` names); with `sync`, each
/// file's content is flushed (and, for `atomic`, the directory after the
/// rename), as the workspace does at durability `full`.
async fn native(
    root: &std::path::Path,
    agents: u32,
    per: u64,
    size: usize,
    files: u64,
    atomic: bool,
    sync: bool,
) -> anyhow::Result<Throughput> {
    let started = std::time::Instant::now();
    let root = Arc::new(root.to_path_buf());
    let writers: Vec<_> = (0..agents)
        .map(|r| {
            let root = root.clone();
            tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
                let dir = root.join(r.to_string());
                std::fs::create_dir_all(&dir)?;
                let mut content = vec![b'x'; size];
                let write = |path: &std::path::Path, content: &[u8]| -> std::io::Result<()> {
                    let mut file = std::fs::File::create(path)?;
                    std::io::Write::write_all(&mut file, content)?;
                    if sync {
                        file.sync_data()?;
                    }
                    Ok(())
                };
                for n in 0..per {
                    // Each version differs (as far as the size allows).
                    let stamp = n.to_le_bytes();
                    let k = size.min(stamp.len());
                    content[..k].copy_from_slice(&stamp[..k]);
                    let path = dir.join(format!("f{}", n % files));
                    if atomic {
                        let tmp = dir.join(format!(".tmp-{n}"));
                        write(&tmp, &content)?;
                        std::fs::rename(&tmp, &path)?;
                        if sync {
                            std::fs::File::open(&dir)?.sync_all()?;
                        }
                    } else {
                        write(&path, &content)?;
                    }
                }
                Ok(())
            })
        })
        .collect();
    for w in writers {
        w.await?.context("a native writer failed")?;
    }
    Ok(Throughput::of(
        per * u64::from(agents),
        started.elapsed(),
        0,
    ))
}
