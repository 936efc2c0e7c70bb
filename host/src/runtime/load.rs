//! Loading agent modules: reading, compiling once (with an on-disk cache keyed
//! by the module's digest and the engine), and refusing what is not an agent.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::{Component, Linker};

use super::bindings::AgentPre;
use super::caps::{self, Grants};
use super::state::AgentState;

/// Why a module cannot run as an agent. Each message names the problem and
/// what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file cannot be read.
    #[error("cannot read {path}: {error}")]
    Unreadable {
        /// The module path.
        path: PathBuf,
        /// The I/O error, named in the message (not a `source`, so that a
        /// printed chain does not say it twice).
        error: std::io::Error,
    },
    /// Not WebAssembly at all.
    #[error(
        "{path} is not a WebAssembly file; agents are components built with \
         `cargo build --target wasm32-wasip2`"
    )]
    NotWasm {
        /// The module path.
        path: PathBuf,
    },
    /// A core module, not a component.
    #[error(
        "{path} is a core WebAssembly module, not a component; build the agent for the \
         wasm32-wasip2 target (`cargo build --target wasm32-wasip2`), which makes components"
    )]
    CoreModule {
        /// The module path.
        path: PathBuf,
    },
    /// The component does not validate or compile.
    #[error("{path} is not a valid component: {detail}")]
    Invalid {
        /// The module path.
        path: PathBuf,
        /// What the validator said.
        detail: String,
    },
    /// The component imports something beyond WASI and `wawe:env`.
    #[error(
        "{path} imports `{import}`, which agents may not use: agents get only \
         `wawe:env` and an empty WASI"
    )]
    ForbiddenImport {
        /// The module path.
        path: PathBuf,
        /// The first import refused.
        import: String,
    },
    /// The component imports a capability its agent was not granted.
    #[error("{path}: {detail}")]
    NotGranted {
        /// The module path.
        path: PathBuf,
        /// Which capability, and the manifest line that grants it.
        detail: String,
    },
    /// The component is not of the `wawe:env/agent` world.
    #[error(
        "{path} is not a wawe agent: {detail}; agents implement the `agent` world of \
         `wawe:env@0.1.0` (export `run: func(config: list<tuple<string, string>>) -> result<_, string>`)"
    )]
    WrongWorld {
        /// The module path.
        path: PathBuf,
        /// What did not match.
        detail: String,
    },
}

/// A module ready to be instantiated as agents, as often as needed.
#[derive(Clone)]
pub struct Module {
    /// The file it came from.
    pub path: PathBuf,
    /// `sha256:<hex>` of its bytes.
    pub digest: String,
    /// The component's import names.
    pub imports: Arc<Vec<String>>,
    pub(crate) pre: Arc<AgentPre<AgentState>>,
}

impl Module {
    /// Refuse the module for agent `agent` if it imports a capability
    /// `grants` does not give: the message names the capability and the
    /// manifest line that would grant it.
    pub fn check_grants(&self, agent: &str, grants: &Grants) -> Result<(), LoadError> {
        caps::check_grants(agent, self.imports.iter().map(String::as_str), grants).map_err(
            |detail| LoadError::NotGranted {
                path: self.path.clone(),
                detail,
            },
        )
    }
}

impl std::fmt::Debug for Module {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Module")
            .field("path", &self.path)
            .field("digest", &self.digest)
            .finish()
    }
}

/// Whether an import is part of what agents may be given (capabilities
/// only when granted: see [`Module::check_grants`]).
fn allowed_import(name: &str) -> bool {
    name.starts_with("wasi:") || name.starts_with("wawe:env/")
}

pub(crate) fn load(
    engine: &Engine,
    linker: &Linker<AgentState>,
    cache_dir: Option<&Path>,
    path: &Path,
) -> Result<Module, LoadError> {
    let path_buf = path.to_path_buf();
    let bytes = std::fs::read(path).map_err(|error| LoadError::Unreadable {
        path: path_buf.clone(),
        error,
    })?;
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(LoadError::NotWasm { path: path_buf });
    }
    // Bytes 4..8: version and layer. Core modules are version 1, layer 0.
    if bytes[4..8] == [1, 0, 0, 0] {
        return Err(LoadError::CoreModule { path: path_buf });
    }
    let digest = format!("sha256:{:x}", Sha256::digest(&bytes));
    let component =
        compile(engine, cache_dir, &bytes, &digest).map_err(|e| LoadError::Invalid {
            path: path_buf.clone(),
            detail: format!("{e:#}"),
        })?;
    let ty = component.component_type();
    if let Some((import, _)) = ty.imports(engine).find(|(name, _)| !allowed_import(name)) {
        return Err(LoadError::ForbiddenImport {
            path: path_buf,
            import: import.to_string(),
        });
    }
    let imports = ty
        .imports(engine)
        .map(|(name, _)| name.to_string())
        .collect();
    let pre = linker
        .instantiate_pre(&component)
        .map_err(|e| LoadError::WrongWorld {
            path: path_buf.clone(),
            detail: format!("{e:#}"),
        })?;
    let pre = AgentPre::new(pre).map_err(|e| LoadError::WrongWorld {
        path: path_buf.clone(),
        detail: format!("{e:#}"),
    })?;
    Ok(Module {
        path: path_buf,
        digest,
        imports: Arc::new(imports),
        pre: Arc::new(pre),
    })
}

/// Compile `bytes`, or load the result of an earlier compile by the same
/// engine from the cache.
fn compile(
    engine: &Engine,
    cache_dir: Option<&Path>,
    bytes: &[u8],
    digest: &str,
) -> wasmtime::Result<Component> {
    let Some(dir) = cache_dir else {
        return Component::new(engine, bytes);
    };
    if let Err(e) = private_dir(dir) {
        tracing::warn!("not caching compiled modules: {e:#}");
        return Component::new(engine, bytes);
    }
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    let file = dir.join(format!(
        "{}-{:016x}.cwasm",
        digest.trim_start_matches("sha256:"),
        hasher.finish()
    ));
    // Read into memory rather than mapping the file, so a cache file that is
    // replaced or truncated later cannot pull code out from under a run.
    if let Ok(cached) = std::fs::read(&file) {
        // SAFETY: the cache is a private directory (see `private_dir`) holding
        // only what `Component::serialize` wrote; wasmtime checks that it was
        // made by a compatible engine.
        match unsafe { Component::deserialize(engine, &cached) } {
            Ok(c) => return Ok(c),
            Err(e) => tracing::warn!("ignoring cached {}: {e:#}", file.display()),
        }
    }
    let component = Component::new(engine, bytes)?;
    if let Err(e) = store_in_cache(&file, &component) {
        tracing::warn!("cannot cache compiled module in {}: {e:#}", dir.display());
    }
    Ok(component)
}

fn store_in_cache(file: &Path, component: &Component) -> anyhow::Result<()> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let tmp = file.with_extension(format!("tmp-{}-{n}", std::process::id()));
    std::fs::write(&tmp, component.serialize()?)?;
    std::fs::rename(&tmp, file)?;
    Ok(())
}

/// Make sure the cache directory exists and only we can write to it: its
/// files are native code the host runs, so a directory others can write to
/// is not used.
fn private_dir(dir: &Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        let meta = std::fs::metadata(dir)?;
        // SAFETY: geteuid has no preconditions and cannot fail.
        let me = unsafe { libc::geteuid() };
        if meta.uid() != me || meta.permissions().mode() & 0o022 != 0 {
            anyhow::bail!(
                "{} is not a private directory (owned by someone else, or writable by others)",
                dir.display()
            );
        }
    }
    #[cfg(not(unix))]
    std::fs::create_dir_all(dir)?;
    Ok(())
}

/// The default compile cache: `$WAWE_CACHE_DIR`, else `$XDG_CACHE_HOME/wawe`,
/// else `~/.cache/wawe`.
pub fn default_cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("WAWE_CACHE_DIR") {
        return Some(dir.into());
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return Some(PathBuf::from(dir).join("wawe"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache").join("wawe"))
}
