//! Write wawe agents in Rust.
//!
//! An agent is a WebAssembly component (built for `wasm32-wasip2`) that sees
//! nothing but the shared environment of the `wawe:env` WIT package:
//! reservations, task queues, learnings, signals, shared values and the
//! journal. This crate is the idiomatic layer over the generated bindings:
//!
//! - [`agent!`] exports a type implementing [`Agent`] as the component's `run`;
//! - [`Config`] wraps the config map from the swarm manifest;
//! - [`reservations`], [`tasks`], [`learnings`], [`signals`], [`values`] and
//!   [`events`] wrap the imports, taking [`Duration`](std::time::Duration)s
//!   and returning [`Result`] with the typed [`Error`];
//! - [`workspace`] changes the shared workspace under leases (read it with
//!   plain `std::fs` at [`workspace::ROOT`]);
//! - [`reservations::LeaseGuard`] releases its lease when dropped, and
//!   [`tasks::Task`] carries the claim's token for you;
//! - `*_json` helpers move serde types through payloads and values;
//! - [`log`] and the [`info!`]-style macros write to the host log.
//!
//! An error converts into the `String` that `run` returns, so `?` works
//! throughout `run`.
//!
//! # Example
//!
//! A complete agent: it claims `{"name": …}` tasks, writes each greeting as a
//! shared value fenced by a lease on the name, and completes the task. It is
//! this crate's `examples/hello.rs`, which the repository's tests build and
//! run as `agents/hello`.
//!
//! ```no_run
#![doc = include_str!("../examples/hello.rs")]
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip2` in a `cdylib`
//! crate: the `.wasm` file is the component. `wawe new NAME` writes such a
//! crate, with a swarm manifest that runs it.
//!
//! # Errors
//!
//! `run` returns [`RunResult`]: `?` works on every error type (the SDK's
//! [`Error`], JSON, parsing, I/O), and `Err("message".into())` ends the run
//! failed with that message. The error and its chain of causes become the
//! agent's end reason. A panic ends the run as crashed, with the panic's
//! message and location and a wasm backtrace as the reason (the host drops
//! Rust's `RUST_BACKTRACE` hint, which means nothing in the sandbox).
//!
//! # Time
//!
//! Every timestamp ([`Timestamp`]) is milliseconds since the Unix epoch from
//! the host's clock; durations passed in are rounded up to whole milliseconds.

#![deny(missing_docs)]

pub mod config;
mod error;
pub mod events;
pub mod learnings;
pub mod log;
pub mod reservations;
pub mod signals;
pub mod tasks;
pub mod values;
pub mod workspace;

pub use config::Config;
pub use error::Error;

/// The result of every environment operation.
pub type Result<T> = std::result::Result<T, Error>;

/// Milliseconds since the Unix epoch, from the host's clock.
pub type Timestamp = bindings::wawe::env::types::Timestamp;

/// A fencing token: grows environment-wide; present it on guarded writes.
pub type Token = bindings::wawe::env::types::Token;

/// What `run` returns: `Err` ends the run failed, with the error (and its
/// causes) as the reason. Any error type converts with `?`.
pub type RunResult = std::result::Result<(), Box<dyn std::error::Error>>;

/// What an agent does: implement it and export the type with [`agent!`].
pub trait Agent {
    /// Runs the agent with its config map; returning `Err` ends it as failed with that message.
    fn run(config: Config) -> RunResult;
}

/// Runs `A` as the component's `run` export, turning an error into its
/// message with its causes. Used by [`agent!`].
#[doc(hidden)]
pub fn run_agent<A: Agent>(config: Vec<(String, String)>) -> std::result::Result<(), String> {
    A::run(Config::new(config)).map_err(|error| describe_error(&*error))
}

/// An error and its causes, as one line: `outer: cause: root cause`.
fn describe_error(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let line = cause.to_string();
        // Many errors already print their cause; do not say it twice.
        if !text.ends_with(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        source = cause.source();
    }
    text
}

/// Exports `$ty` (a type implementing [`Agent`]) as the component's `run`.
///
/// Use it once, at the top level of the agent's `cdylib` crate:
///
/// ```no_run
/// struct Idle;
///
/// impl wawe_sdk::Agent for Idle {
///     fn run(_config: wawe_sdk::Config) -> wawe_sdk::RunResult {
///         Ok(())
///     }
/// }
///
/// wawe_sdk::agent!(Idle);
/// ```
#[macro_export]
macro_rules! agent {
    ($ty:ident) => {
        impl $crate::bindings::Guest for $ty {
            fn run(
                config: ::std::vec::Vec<(::std::string::String, ::std::string::String)>,
            ) -> ::core::result::Result<(), ::std::string::String> {
                $crate::run_agent::<$ty>(config)
            }
        }

        $crate::bindings::export_agent!($ty with_types_in $crate::bindings);
    };
}

/// Converts a duration to whole milliseconds for the WIT interface, rounding up
/// (so a non-zero duration never becomes 0) and saturating at `u64::MAX`.
pub(crate) fn millis(duration: std::time::Duration) -> u64 {
    let ms = duration.as_millis() + u128::from(!duration.subsec_nanos().is_multiple_of(1_000_000));
    u64::try_from(ms).unwrap_or(u64::MAX)
}

/// The bindings `wit-bindgen` generates for the `agent` world.
#[allow(missing_docs, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "agent",
        path: "wit",
        pub_export_macro: true,
        export_macro_name: "export_agent",
        default_bindings_module: "wawe_sdk::bindings",
    });
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::millis;

    #[test]
    fn an_error_is_described_with_its_causes_once() {
        let json = crate::Error::from(serde_json::from_str::<u32>("nope").unwrap_err());
        let text = super::describe_error(&json);
        assert!(text.starts_with("JSON: expected"), "{text}");
        assert_eq!(text.matches("expected").count(), 1, "{text}");

        let boxed: Box<dyn std::error::Error> = "plain message".into();
        assert_eq!(super::describe_error(&*boxed), "plain message");
    }

    #[test]
    fn millis_round_up_and_saturate() {
        assert_eq!(millis(Duration::ZERO), 0);
        assert_eq!(millis(Duration::from_micros(1)), 1);
        assert_eq!(millis(Duration::from_millis(1500)), 1500);
        assert_eq!(millis(Duration::from_micros(1500)), 2);
        assert_eq!(millis(Duration::MAX), u64::MAX);
    }
}
