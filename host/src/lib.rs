//! wawe: a runtime for swarms of sandboxed agents that coordinate through a
//! shared environment instead of calling each other.
//!
//! The crate has two halves, kept apart:
//! - [`env`]: the environment itself, a SQLite database with reservations,
//!   tasks, learnings, signals, shared values and a journal of every change.
//!   It knows nothing of WebAssembly and can be used natively.
//! - the runtime that hosts agent components and maps their imports onto
//!   environment operations (to come).
//!
//! The `wawe` binary's command-line interface lives in [`cli`].

pub mod bench;
pub mod cli;
pub mod env;
pub mod manifest;
pub mod runtime;
pub mod scaffold;
pub mod swarm;
