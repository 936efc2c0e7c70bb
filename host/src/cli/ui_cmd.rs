//! `wawe ui`: serve the live web view of an environment until interrupted.

use std::net::SocketAddr;

use anyhow::Context;
use clap::Args;

use super::run_cmd::shutdown_signal;
use crate::env::{Durability, Env, EnvLocation, EnvOptions};
use crate::ui::{DEFAULT_LISTEN, Ui, UiOptions};

/// Arguments of `wawe ui`.
#[derive(Debug, Args)]
#[command(
    about = "Serve a live web view of an environment: agents, leases, tasks and their stories, signals, learnings, values and the journal",
    after_help = "Examples:\n  \
        wawe ui --env demo/swarm.db\n  \
        wawe ui --env postgres://db.internal/wawe --listen 0.0.0.0:7878   (prints a token URL)\n  \
        wawe run demo/swarm.toml --ui                                      (beside a running swarm)"
)]
pub struct UiArgs {
    /// The environment to show: a SQLite file or a postgres:// URL.
    #[arg(
        long,
        env = "WAWE_ENV",
        default_value = "wawe.db",
        value_name = "FILE|URL"
    )]
    pub env: EnvLocation,

    /// How to serve it.
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// How the view is served (shared by `wawe ui` and `wawe run --ui`).
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// The address to listen on. Anything but loopback needs a token (one is
    /// made up and printed if none is given).
    #[arg(long, default_value = DEFAULT_LISTEN, value_name = "ADDR:PORT")]
    pub listen: SocketAddr,

    /// The token every request must carry (at least 16 characters).
    #[arg(
        long,
        env = "WAWE_UI_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,

    /// Allow operator actions from the page: retry a dead task, cancel a task
    /// (journaled as `operator`).
    #[arg(long)]
    pub actions: bool,
}

impl ServeArgs {
    /// Start serving `env` as these arguments say; `durability` is the
    /// watched swarm's, when the view runs beside it.
    pub async fn start(&self, env: Env, durability: Option<Durability>) -> anyhow::Result<Ui> {
        Ui::start(
            env,
            UiOptions {
                listen: self.listen,
                token: self.token.clone(),
                actions: self.actions,
                durability,
            },
        )
        .await
    }
}

/// Run `wawe ui`.
pub async fn run(args: UiArgs) -> anyhow::Result<()> {
    let env = Env::open_existing(&args.env, EnvOptions::default())
        .with_context(|| format!("cannot show {}", args.env))?;
    let ui = args.serve.start(env.clone(), None).await?;
    println!(
        "wawe ui: showing {} at {}  (Ctrl-C to stop)",
        env.location(),
        ui.url()
    );
    shutdown_signal().await;
    ui.stop().await?;
    env.close();
    Ok(())
}
