//! Capabilities beyond the environment, each granted per agent in the
//! manifest and denied by default: an agent granted nothing is sealed.
//!
//! Each capability is one module with its own per-agent state (held in the
//! agent's store) and its own linker registration:
//! - [`workspace`]: the shared directory, read through a read-only preopen
//!   and changed only through `wawe:env/workspace`, under fenced leases;
//! - [`http`]: outbound `wasi:http`, filtered by an allow-list of origins.
//!
//! A module that imports a capability its agent was not granted is refused
//! before it runs ([`check_grants`]), naming the manifest line that grants it.

pub mod http;
pub mod workspace;

use wasmtime::component::Linker;

use super::state::AgentState;

/// What one agent may use beyond the environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    /// Access to the swarm's workspace, if any.
    pub workspace: Option<workspace::Access>,
    /// The origins it may send HTTP requests to (none: no HTTP).
    pub http: Vec<http::Origin>,
}

/// Add every capability's imports to `linker`. Linking is the same for all
/// agents; what each may use is decided by [`check_grants`] at load and by
/// its per-agent state at run time.
pub(crate) fn add_to_linker(linker: &mut Linker<AgentState>) -> anyhow::Result<()> {
    workspace::add_to_linker(linker)?;
    http::add_to_linker(linker)
}

/// Refuse `imports` that agent `agent` was not granted; the message names
/// the capability and the manifest line that would grant it.
pub fn check_grants<'a>(
    agent: &str,
    imports: impl IntoIterator<Item = &'a str>,
    grants: &Grants,
) -> Result<(), String> {
    for import in imports {
        if import.starts_with(workspace::IMPORT_PREFIX)
            && grants.workspace != Some(workspace::Access::Write)
        {
            return Err(format!(
                "it imports `{import}` (changing the shared workspace), which agent `{agent}` \
                 was not granted: add `workspace = \"write\"` to its table [agents.{agent}] \
                 in the manifest (and name the workspace with `workspace = \"DIR\"` at the \
                 top, or `--workspace DIR`)"
            ));
        }
        if import.starts_with(http::IMPORT_PREFIX) && grants.http.is_empty() {
            return Err(format!(
                "it imports `{import}` (outbound HTTP), which agent `{agent}` was not granted: \
                 add `allow_http = [\"https://host.example\"]` (the origins it may call) to its \
                 table [agents.{agent}] in the manifest"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ungranted_capability_is_refused_naming_the_line_that_grants_it() {
        let sealed = Grants::default();
        let e = check_grants("w", ["wawe:env/workspace@0.1.0"], &sealed).unwrap_err();
        assert!(
            e.contains("workspace = \"write\"") && e.contains("[agents.w]"),
            "{e}"
        );
        let read = Grants {
            workspace: Some(workspace::Access::Read),
            ..Grants::default()
        };
        assert!(check_grants("w", ["wawe:env/workspace@0.1.0"], &read).is_err());
        let e = check_grants("w", ["wasi:http/outgoing-handler@0.2.6"], &sealed).unwrap_err();
        assert!(e.contains("allow_http"), "{e}");
        check_grants(
            "w",
            ["wawe:env/tasks@0.1.0", "wasi:io/streams@0.2.6"],
            &sealed,
        )
        .unwrap();
    }
}
