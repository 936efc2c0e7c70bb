//! The command-line interface of the `wawe` binary: argument definitions and
//! dispatch. Each command group lives in its own module; printing is in
//! [`output`].

pub mod bench_cmd;
pub mod env_cmd;
pub mod new_cmd;
pub mod output;
pub mod run_cmd;
pub mod ui_cmd;

use clap::{Parser, Subcommand};

pub use env_cmd::EnvArgs;
pub use run_cmd::RunArgs;

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
        Use `wawe run` to run a swarm (a manifest, one module, or a folder of modules) and \
        `wawe env` to look at an environment and feed it tasks, `wawe ui` to watch it live \
        in a browser."
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,

    /// Log lines as JSON objects (one per line) instead of text.
    #[arg(long, global = true)]
    pub log_json: bool,

    /// Show more of the log: -v for agents' info lines, -vv for debug.
    #[arg(long, short, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// The top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a swarm of agents: a manifest, one module, or a watched folder of modules.
    Run(RunArgs),
    /// Measure wawe on this machine.
    Bench(bench_cmd::BenchArgs),
    /// Look at and feed an environment: tasks, leases, learnings, signals, values and the journal.
    Env(EnvArgs),
    /// Create an agent project (a crate and a swarm manifest) that builds and runs as it is.
    New(new_cmd::NewArgs),
    /// Serve a live web view of an environment.
    Ui(ui_cmd::UiArgs),
}

/// Commit durability, as a command-line value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum DurabilityArg {
    /// `synchronous=NORMAL`: a commit survives a crash of the process.
    #[default]
    Normal,
    /// `synchronous=FULL`: a commit also survives a power loss (slower).
    Full,
}

impl From<DurabilityArg> for crate::env::Durability {
    fn from(d: DurabilityArg) -> Self {
        match d {
            DurabilityArg::Normal => crate::env::Durability::Normal,
            DurabilityArg::Full => crate::env::Durability::Full,
        }
    }
}

/// Run a parsed command line. A reader that went away (`wawe env events | head`)
/// is not an error.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let result = match cli.command {
        Command::Env(args) => env_cmd::run(args).await,
        Command::Run(args) => run_cmd::run(args).await,
        Command::Bench(args) => bench_cmd::run(args).await,
        Command::New(args) => new_cmd::run(args),
        Command::Ui(args) => ui_cmd::run(args).await,
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

/// Send the log (warnings and up; more with `-v`; errors only with `run
/// --quiet`; or as `WAWE_LOG` says) to stderr, where it does not mix with
/// command output.
pub fn init_tracing(cli: &Cli) {
    let quiet = matches!(&cli.command, Command::Run(args) if args.quiet);
    let level = match cli.verbose {
        0 if quiet => "error",
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("WAWE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if cli.log_json {
        fmt.json().init();
    } else {
        fmt.init();
    }
}
