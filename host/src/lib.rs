//! wawe: a runtime for swarms of sandboxed agents that coordinate through a
//! shared environment instead of calling each other.
//!
//! The crate's parts, each with one job:
//! - [`env`](mod@env): the environment itself (SQLite, the embedded default, or
//!   PostgreSQL) with reservations, tasks, learnings, signals, shared values,
//!   the workspace's records and a journal of every change. It knows nothing
//!   of WebAssembly and can be used natively.
//! - [`runtime`]: hosts agent components and maps their imports onto
//!   environment operations; [`runtime::caps`] holds the capabilities a
//!   manifest may grant (the workspace, outbound HTTP).
//! - [`swarm`] and [`manifest`]: which agents run, from a manifest or a
//!   watched folder.
//! - [`scaffold`]: new agent projects (`wawe new`).
//! - [`bench`](mod@bench): the measurements behind `wawe bench`.
//! - [`cli`]: the `wawe` binary's command line, kept thin.
//!
//! Agents themselves are written against the `wawe-sdk` crate (`guest-sdk/`
//! in the repository); the guide for their authors is `docs/agents.md`.

#![deny(missing_docs)]

pub mod bench;
pub mod cli;
pub mod env;
pub mod manifest;
pub mod runtime;
pub mod scaffold;
pub mod swarm;
pub mod ui;
