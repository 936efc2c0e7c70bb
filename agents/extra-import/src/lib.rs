//! `extra-import`: a normal-looking agent (it exports `run` and imports the
//! `wawe:env` interfaces) that also imports `evil:net/raw`. A wawe host must
//! refuse it at load, naming that import.
//!
//! The WIT comes from two places: `../../guest-sdk/wit` (the `wawe:env` package) and
//! this crate's `wit/` (the `evil:net` package, whose world includes the agent world).

wit_bindgen::generate!({
    world: "evil:net/agent",
    path: ["../../guest-sdk/wit", "wit"],
    // `wawe:env` is a dependency package here: generate its bindings too.
    generate_all,
});

use evil::net::raw;
use wawe::env::logging::{self, Level};

/// The agent.
struct ExtraImport;

impl Guest for ExtraImport {
    fn run(_config: Vec<(String, String)>) -> Result<(), String> {
        // Calling the import keeps it in the component.
        let handle = raw::connect("example.com", 80)?;
        logging::log(
            Level::Error,
            &format!("extra-import: connected, handle {handle}"),
        );
        Err("extra-import: a host that lets this run is not sandboxing".to_owned())
    }
}

export!(ExtraImport);
