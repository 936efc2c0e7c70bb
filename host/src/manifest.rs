//! Swarm manifests: which environment, and which agents with how many
//! replicas, limits, restart policy and config. Also the per-module
//! `NAME.toml` settings of a watched folder.
//!
//! ```toml
//! env = "demo.db"                 # default: wawe.db beside the manifest; or postgres://…
//! durability = "normal"           # or "full"
//! workspace = "work"              # a directory shared by the swarm (default: none)
//!
//! [agents.worker]
//! module = "agents/worker.wasm"   # relative to the manifest
//! replicas = 4                    # default 1
//! restart = "on-failure"          # never | on-failure (default) | always
//! memory = "64 MiB"               # linear memory limit (default 64 MiB)
//! table_elements = 20000          # elements per table (default 20000)
//! instances = 32                  # instances, tables and memories (default 32)
//! cpu = "10s"                     # CPU time per run (default: unlimited)
//! wall = "1m"                     # wall-clock time per run (default: unlimited)
//! calls_per_second = 10000        # environment calls; faster is throttled (0: unlimited)
//! max_writes = 0                  # writes per run, then stopped (default 0: unlimited)
//! max_pushes = 1000000            # task pushes per run, then stopped (0: unlimited)
//! max_learnings = 100000          # learnings per run, then stopped (0: unlimited)
//!
//! # Capabilities: each denied unless granted here.
//! workspace = "write"             # "read" (plain file reads at /workspace) or "write"
//! max_file_bytes = "16 MiB"       # largest file one workspace write puts in place
//! max_written = "1 GiB"           # bytes written to the workspace per run, then stopped (0: unlimited)
//! max_dir_entries = 10000         # entries a directory may reach by agents' writes
//! allow_http = [                  # origins it may call (scheme, host, port); nothing else
//!     "http://127.0.0.1:8080",
//!     { origin = "https://api.example.com", headers = { authorization = "Bearer ${API_KEY}" } },
//! ]                               # header values from the host's environment, never seen by the agent
//! http_timeout = "30s"            # per request, connect to last byte
//! max_response = "16 MiB"         # largest response body
//!
//! [agents.worker.config]          # handed to the agent's run()
//! queue = "work"
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::env::{Durability, EnvLocation};
use crate::runtime::caps::http::{HttpLimits, Origin};
use crate::runtime::caps::workspace::{Access, WorkspaceLimits};
use crate::runtime::{Grants, Limits, RestartPolicy};

/// A parsed swarm manifest, with paths resolved against its folder.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// The environment: a file (relative to the manifest's folder) or a
    /// `postgres://` URL.
    pub env: EnvLocation,
    /// Commit durability.
    pub durability: Durability,
    /// The workspace directory shared by the swarm (relative to the manifest's folder).
    pub workspace: Option<PathBuf>,
    /// The agents, by name.
    pub agents: Vec<AgentPlan>,
}

/// One agent of a swarm: a module and how to run it.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentPlan {
    /// Its name (the manifest's table name, or the module's file stem).
    pub name: String,
    /// The `.wasm` file.
    pub module: PathBuf,
    /// How many replicas to run.
    pub replicas: u32,
    /// When to restart it.
    pub restart: RestartPolicy,
    /// What each replica may use.
    pub limits: Limits,
    /// The config map handed to `run`.
    pub config: Vec<(String, String)>,
    /// What it may use beyond the environment.
    pub grants: Grants,
}

/// A manifest that cannot be used; the message points at the file, line and field.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ManifestError(String);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    env: Option<String>,
    durability: Option<DurabilityName>,
    workspace: Option<PathBuf>,
    #[serde(default)]
    agents: BTreeMap<String, Spanned<AgentSettings>>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum DurabilityName {
    Normal,
    Full,
}

/// The settings of one agent, as written in a manifest table or a `NAME.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSettings {
    module: Option<PathBuf>,
    replicas: Option<u32>,
    #[serde(default)]
    restart: RestartPolicy,
    memory: Option<Size>,
    table_elements: Option<u64>,
    instances: Option<u32>,
    cpu: Option<HumanDuration>,
    wall: Option<HumanDuration>,
    calls_per_second: Option<u32>,
    max_writes: Option<u64>,
    max_pushes: Option<u64>,
    max_learnings: Option<u64>,
    workspace: Option<Access>,
    max_file_bytes: Option<Size>,
    max_written: Option<Size>,
    max_dir_entries: Option<u64>,
    #[serde(default)]
    allow_http: Vec<HttpEntry>,
    http_timeout: Option<HumanDuration>,
    max_response: Option<Size>,
    #[serde(default)]
    config: BTreeMap<String, toml::Value>,
}

/// An `allow_http` entry: an origin, or an origin with headers to add.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum HttpEntry {
    Origin(String),
    WithHeaders {
        origin: String,
        #[serde(default)]
        headers: BTreeMap<String, String>,
    },
}

/// A per-run cap as written (`0` for none), or the default.
fn cap(written: Option<u64>, default: Option<u64>) -> Option<u64> {
    match written {
        Some(0) => None,
        Some(n) => Some(n),
        None => default,
    }
}

/// A byte size: a number of bytes, or text like `64 MiB` (2^20) or `64 MB` (10^6).
#[derive(Debug, Clone, Copy)]
struct Size(u64);

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bytes(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Bytes(b) => Ok(Size(b)),
            Raw::Text(t) => parse_size(&t).map(Size).ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "{t:?} is not a size; write it like \"64 MiB\" (64 × 2^20 bytes), \
                     \"64 MB\" (64 × 10^6 bytes), \"512 KiB\" or \"1 GiB\""
                ))
            }),
        }
    }
}

/// Parse a size: a plain number of bytes, or a number with a unit, binary
/// (`KiB`, `MiB`, `GiB`, `TiB`: powers of 2^10) or decimal (`kB`, `MB`, `GB`,
/// `TB`: powers of 10^3), in any case, with or without a space. A bare `K`,
/// `M` or `G` is refused: it does not say which of the two is meant.
pub fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// A duration written like `30s`, `500ms` or `1m 30s`.
#[derive(Debug, Clone, Copy)]
struct HumanDuration(Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let t = String::deserialize(d)?;
        humantime::parse_duration(&t)
            .map(HumanDuration)
            .map_err(|e| {
                serde::de::Error::custom(format!(
                    "{t:?} is not a duration ({e}); write it like \"500ms\", \"30s\" or \"1m 30s\""
                ))
            })
    }
}

impl AgentSettings {
    /// Read the `NAME.toml` settings beside a module in a watched folder.
    pub fn from_file(path: &Path) -> Result<AgentSettings, ManifestError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ManifestError(format!("cannot read {}: {e}", path.display())))?;
        let settings: AgentSettings =
            toml::from_str(&text).map_err(|e| ManifestError(format!("{}: {e}", path.display())))?;
        if settings.module.is_some() {
            return Err(ManifestError(format!(
                "{}: `module` is not allowed here: the module is the .wasm file of the same name",
                path.display()
            )));
        }
        Ok(settings)
    }

    /// The plan for agent `name` running `module`.
    pub fn plan(self, name: &str, module: PathBuf) -> Result<AgentPlan, String> {
        let replicas = self.replicas.unwrap_or(1);
        if replicas == 0 {
            return Err(format!("agent `{name}`: `replicas` must be at least 1"));
        }
        let defaults = Limits::default();
        let http = self
            .allow_http
            .iter()
            .map(|entry| {
                let (origin, headers) = match entry {
                    HttpEntry::Origin(o) => (o, Vec::new()),
                    HttpEntry::WithHeaders { origin, headers } => (
                        origin,
                        headers
                            .iter()
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect(),
                    ),
                };
                Origin::parse(origin, &headers, |v| std::env::var(v).ok())
                    .map_err(|e| format!("agent `{name}`: allow_http: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(AgentPlan {
            name: name.to_string(),
            module,
            replicas,
            restart: self.restart,
            limits: Limits {
                memory_bytes: self.memory.map_or(defaults.memory_bytes, |s| s.0),
                table_elements: self.table_elements.unwrap_or(defaults.table_elements),
                instances: self.instances.unwrap_or(defaults.instances),
                cpu: self.cpu.map(|d| d.0),
                wall: self.wall.map(|d| d.0),
                calls_per_second: self.calls_per_second.unwrap_or(defaults.calls_per_second),
                max_writes: cap(self.max_writes, defaults.max_writes),
                max_pushes: cap(self.max_pushes, defaults.max_pushes),
                max_learnings: cap(self.max_learnings, defaults.max_learnings),
                max_written_bytes: cap(self.max_written.map(|s| s.0), defaults.max_written_bytes),
                workspace: WorkspaceLimits {
                    max_file_bytes: self
                        .max_file_bytes
                        .map_or(defaults.workspace.max_file_bytes, |s| s.0),
                    max_dir_entries: self
                        .max_dir_entries
                        .unwrap_or(defaults.workspace.max_dir_entries),
                },
                http: HttpLimits {
                    timeout: self.http_timeout.map_or(defaults.http.timeout, |d| d.0),
                    max_response_bytes: self
                        .max_response
                        .map_or(defaults.http.max_response_bytes, |s| s.0),
                },
            },
            grants: Grants {
                workspace: self.workspace,
                http,
            },
            config: self
                .config
                .into_iter()
                .map(|(k, v)| {
                    let v = match v {
                        toml::Value::String(s) => s,
                        other => other.to_string(),
                    };
                    (k, v)
                })
                .collect(),
        })
    }
}

impl Manifest {
    /// Read and check the manifest at `path`.
    pub fn from_file(path: &Path) -> Result<Manifest, ManifestError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ManifestError(format!("cannot read the manifest {}: {e}", path.display()))
        })?;
        Self::parse(&text, path)
    }

    /// Parse manifest `text` read from `path` (which relative paths follow).
    pub fn parse(text: &str, path: &Path) -> Result<Manifest, ManifestError> {
        let shown = path.display();
        let raw: RawManifest =
            toml::from_str(text).map_err(|e| ManifestError(format!("{shown}: {e}")))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let base = if base.as_os_str().is_empty() {
            Path::new(".")
        } else {
            base
        };
        if raw.agents.is_empty() {
            return Err(ManifestError(format!(
                "{shown}: no agents: add at least one [agents.NAME] table with a `module`"
            )));
        }
        let mut agents = Vec::new();
        let has_workspace = raw.workspace.is_some();
        for (name, spanned) in raw.agents {
            let line = 1 + text[..spanned.span().start.min(text.len())]
                .matches('\n')
                .count();
            let settings = spanned.into_inner();
            let Some(module) = settings.module.clone() else {
                return Err(ManifestError(format!(
                    "{shown}:{line}: agent `{name}` has no `module`: add `module = \"path/to/{name}.wasm\"`"
                )));
            };
            let plan = settings
                .plan(&name, base.join(module))
                .map_err(|e| ManifestError(format!("{shown}:{line}: {e}")))?;
            if plan.grants.workspace.is_some() && !has_workspace {
                return Err(ManifestError(format!(
                    "{shown}:{line}: agent `{name}` is granted the workspace, but the manifest \
                     names none: add `workspace = \"DIR\"` at the top (a directory, relative \
                     to the manifest)"
                )));
            }
            agents.push(plan);
        }
        Ok(Manifest {
            env: EnvLocation::relative_to(raw.env.as_deref().unwrap_or("wawe.db"), base),
            durability: match raw.durability {
                Some(DurabilityName::Full) => Durability::Full,
                _ => Durability::Normal,
            },
            workspace: raw.workspace.map(|w| base.join(w)),
            agents,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Manifest, String> {
        Manifest::parse(text, Path::new("swarm/swarm.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn a_full_manifest_resolves_paths_and_settings() {
        let m = parse(
            r#"
env = "state.db"
durability = "full"

[agents.worker]
module = "w.wasm"
replicas = 3
restart = "always"
memory = "32 MiB"
table_elements = 500
instances = 4
cpu = "2s"
wall = "1m"
calls_per_second = 500
max_writes = 9000
max_pushes = 0
[agents.worker.config]
queue = "jobs"
n = 5
"#,
        )
        .unwrap();
        assert_eq!(m.env, EnvLocation::File("swarm/state.db".into()));
        assert_eq!(m.durability, Durability::Full);
        let w = &m.agents[0];
        assert_eq!(w.module, Path::new("swarm/w.wasm"));
        assert_eq!((w.replicas, w.restart), (3, RestartPolicy::Always));
        assert_eq!(w.limits.memory_bytes, 32 << 20);
        assert_eq!((w.limits.table_elements, w.limits.instances), (500, 4));
        assert_eq!(w.limits.cpu, Some(Duration::from_secs(2)));
        assert_eq!(w.limits.calls_per_second, 500);
        assert_eq!(w.limits.max_writes, Some(9000));
        assert_eq!(w.limits.max_pushes, None, "0 lifts the cap");
        assert_eq!(w.limits.max_learnings, Limits::default().max_learnings);
        assert_eq!(w.limits.wall, Some(Duration::from_secs(60)));
        assert_eq!(
            w.config,
            [("n".into(), "5".into()), ("queue".into(), "jobs".into())]
        );
    }

    #[test]
    fn defaults_apply_when_fields_are_left_out() {
        let m = parse("[agents.a]\nmodule = \"a.wasm\"\n").unwrap();
        assert_eq!(m.env, EnvLocation::File("swarm/wawe.db".into()));
        assert_eq!(m.agents[0].replicas, 1);
        assert_eq!(m.agents[0].restart, RestartPolicy::OnFailure);
        assert_eq!(m.agents[0].limits, Limits::default());
    }

    #[test]
    fn a_missing_module_names_the_agent_and_line() {
        let e = parse("[agents.a]\nmodule = \"a.wasm\"\n\n[agents.b]\nreplicas = 2\n").unwrap_err();
        assert!(e.contains("swarm/swarm.toml:4"), "{e}");
        assert!(e.contains("agent `b` has no `module`"), "{e}");
    }

    #[test]
    fn a_wrong_type_names_the_line_and_field() {
        let e = parse("[agents.a]\nmodule = \"a.wasm\"\nreplicas = \"two\"\n").unwrap_err();
        assert!(e.contains("line 3"), "{e}");
        assert!(e.contains("replicas"), "{e}");
    }

    #[test]
    fn unknown_fields_and_bad_values_are_refused() {
        assert!(
            parse("[agents.a]\nmodule = \"a\"\nreplica = 2\n")
                .unwrap_err()
                .contains("replica")
        );
        assert!(
            parse("[agents.a]\nmodule = \"a\"\nrestart = \"sometimes\"\n")
                .unwrap_err()
                .contains("sometimes")
        );
        assert!(
            parse("[agents.a]\nmodule = \"a\"\nmemory = \"lots\"\n")
                .unwrap_err()
                .contains("not a size")
        );
        assert!(
            parse("[agents.a]\nmodule = \"a\"\nwall = \"soon\"\n")
                .unwrap_err()
                .contains("not a duration")
        );
        assert!(
            parse("[agents.a]\nmodule = \"a\"\nreplicas = 0\n")
                .unwrap_err()
                .contains("at least 1")
        );
        assert!(parse("env = \"x.db\"\n").unwrap_err().contains("no agents"));
    }

    #[test]
    fn sizes_take_common_units() {
        assert_eq!(parse_size("64 MiB"), Some(64 << 20));
        assert_eq!(parse_size("512KiB"), Some(512 << 10));
        assert_eq!(parse_size("1 GiB"), Some(1 << 30));
        assert_eq!(parse_size("1000"), Some(1000));
        assert_eq!(parse_size("lots"), None);
    }

    #[test]
    fn decimal_sizes_are_powers_of_ten_and_bare_letters_are_refused() {
        assert_eq!(parse_size("64MB"), Some(64_000_000));
        assert_eq!(parse_size("64 mb"), Some(64_000_000));
        assert_eq!(parse_size("2 kB"), Some(2_000));
        assert_eq!(parse_size("1 GB"), Some(1_000_000_000));
        assert_eq!(parse_size("64 mib"), Some(64 << 20));
        assert_eq!(parse_size("64M"), None);
        assert_eq!(parse_size("64 K"), None);
    }
}
