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
//! This is `agents/hello` from the repository, built there for real: it claims
//! greeting tasks, writes each greeting as a shared value fenced by a lease on
//! the name, and completes the task.
//!
//! ```no_run
#![doc = include_str!("../../agents/hello/src/lib.rs")]
//! ```
//!
//! Build it with `cargo build --target wasm32-wasip2` in a `cdylib` crate:
//! the `.wasm` file is the component.
//!
//! # Time
//!
//! Every timestamp ([`Timestamp`]) is milliseconds since the Unix epoch from
//! the host's clock; durations passed in are rounded up to whole milliseconds.

#![warn(missing_docs)]

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

/// What an agent does: implement it and export the type with [`agent!`].
pub trait Agent {
    /// Runs the agent with its config map; returning `Err` ends it as failed with that message.
    fn run(config: Config) -> std::result::Result<(), String>;
}

/// Exports `$ty` (a type implementing [`Agent`]) as the component's `run`.
///
/// Use it once, at the top level of the agent's `cdylib` crate:
///
/// ```no_run
/// struct Idle;
///
/// impl wawe_sdk::Agent for Idle {
///     fn run(_config: wawe_sdk::Config) -> Result<(), String> {
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
                <$ty as $crate::Agent>::run($crate::Config::new(config))
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
        path: "../wit",
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
    fn millis_round_up_and_saturate() {
        assert_eq!(millis(Duration::ZERO), 0);
        assert_eq!(millis(Duration::from_micros(1)), 1);
        assert_eq!(millis(Duration::from_millis(1500)), 1500);
        assert_eq!(millis(Duration::from_micros(1500)), 2);
        assert_eq!(millis(Duration::MAX), u64::MAX);
    }
}
