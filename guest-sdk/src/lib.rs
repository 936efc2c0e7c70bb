//! Bindings for writing wawe agents in Rust, generated from the `wawe:env` WIT
//! package in `wit/`.
//!
//! For now this crate exposes the generated bindings: the imports under
//! [`bindings::wawe::env`], the [`bindings::Guest`] trait an agent implements,
//! and the [`export_agent!`] macro that exports it. An idiomatic layer (lease
//! guards that release on drop, JSON helpers, a one-line agent macro) is
//! planned on top of them.

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
