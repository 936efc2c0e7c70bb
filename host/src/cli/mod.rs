//! The command-line interface of the `wawe` binary: argument definitions and
//! dispatch. Each command group lives in its own module; printing is in
//! [`output`].

pub mod env_cmd;
pub mod output;

use clap::{Parser, Subcommand};

pub use env_cmd::EnvArgs;

/// The `wawe` command line.
#[derive(Debug, Parser)]
#[command(
    name = "wawe",
    version,
    about = "A runtime for swarms of sandboxed agents that coordinate through a shared environment",
    long_about = "wawe runs swarms of sandboxed agents (WebAssembly components) that coordinate \
        through their environment instead of calling each other.\n\n\
        The environment is one SQLite file holding reservations (leases on named resources), \
        task queues, learnings, decaying signal trails, versioned shared values and a journal \
        of every change, with who made it and when. Every operation is one transaction; waits \
        wake the moment the environment changes.\n\n\
        Use `wawe env` to look at an environment and feed it tasks."
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Look at and feed an environment: tasks, leases, learnings, signals, values and the journal.
    Env(EnvArgs),
}

/// Run a parsed command line. A reader that went away (`wawe env events | head`)
/// is not an error.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let result = match cli.command {
        Command::Env(args) => env_cmd::run(args).await,
    };
    match result {
        Err(e) if is_broken_pipe(&e) => Ok(()),
        other => other,
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Send the library's diagnostics (warnings and up, or as `WAWE_LOG` says) to
/// stderr, where they do not mix with command output.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WAWE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
