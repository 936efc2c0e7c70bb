//! The workspace capability: a directory shared by the swarm, read by
//! agents with plain file reads through a read-only preopen at
//! [`GUEST_ROOT`], and changed only through `wawe:env/workspace`.
//!
//! Every change is made by the host: content goes to a temporary file under
//! `.wawe/tmp/` in the workspace (same filesystem), and the environment then
//! checks the lease and renames it into place in one transaction
//! ([`Env::workspace_edit`]). All file access goes through a `cap_std` handle
//! on the workspace, so no path (and no symlink inside it) reaches outside.
//!
//! The workspace carries an identity file (`.wawe/workspace-id`); the
//! environment records the first one it sees, and a host bringing a
//! workspace with another id is refused at start: hosts sharing an
//! environment must share one workspace.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use cap_std::ambient_authority;
use cap_std::fs::Dir;
use sha2::{Digest, Sha256};
use wasmtime::component::{HasSelf, Linker, Resource};

use crate::env::{Edit, EditKind, Env, EnvError, EnvResult, FileChange, WorkspaceRecord};
use crate::runtime::bindings::wawe::env::{types, workspace as wit};
use crate::runtime::quota::Call;
use crate::runtime::state::AgentState;

/// The component import name of the interface (any version).
pub(crate) const IMPORT_PREFIX: &str = "wawe:env/workspace";

/// Where agents find the workspace in their filesystem.
pub const GUEST_ROOT: &str = "/workspace";

/// The host's own directory inside the workspace (never written by agents).
const HOST_DIR: &str = ".wawe";
const TMP_DIR: &str = ".wawe/tmp";
const ID_FILE: &str = ".wawe/workspace-id";

/// Temporary files older than this, found at start, are left-overs of a
/// crashed host and removed.
const STALE_TMP: Duration = Duration::from_secs(3600);

/// How an agent may use the workspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    /// Read it (plain file reads under [`GUEST_ROOT`]).
    Read,
    /// Read it, and change it through `wawe:env/workspace` under leases.
    Write,
}

/// The workspace of a swarm, open on this host.
pub struct Workspace {
    root: PathBuf,
    dir: Arc<Dir>,
    id: String,
}

impl std::fmt::Debug for Workspace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workspace")
            .field("root", &self.root)
            .field("id", &self.id)
            .finish()
    }
}

impl Workspace {
    /// Open the workspace directory at `root` (it must exist), giving it an
    /// identity file if it has none, and removing temporary files left by
    /// a crashed host.
    pub fn open(root: &Path) -> anyhow::Result<Workspace> {
        let meta = std::fs::metadata(root).with_context(|| {
            format!(
                "cannot use {} as the workspace (create the directory first)",
                root.display()
            )
        })?;
        if !meta.is_dir() {
            anyhow::bail!(
                "the workspace {} is not a directory: name a directory",
                root.display()
            );
        }
        let root = std::fs::canonicalize(root)
            .with_context(|| format!("cannot resolve the workspace {}", root.display()))?;
        let dir = Dir::open_ambient_dir(&root, ambient_authority())
            .with_context(|| format!("cannot open the workspace {}", root.display()))?;
        dir.create_dir_all(TMP_DIR).with_context(|| {
            format!("cannot make {TMP_DIR} in the workspace {}", root.display())
        })?;
        let id = identity(&dir)
            .with_context(|| format!("cannot read or make {ID_FILE} in {}", root.display()))?;
        clear_stale_tmp(&dir);
        Ok(Workspace {
            root,
            dir: Arc::new(dir),
            id,
        })
    }

    /// Where it is on this host.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Its identity (from its identity file).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Record it as `env`'s workspace, or check it is the one recorded.
    pub async fn register(&self, env: &Env, host: &str) -> anyhow::Result<()> {
        env.register_workspace(WorkspaceRecord {
            id: self.id.clone(),
            path: self.root.display().to_string(),
            host: host.to_owned(),
        })
        .await?;
        Ok(())
    }
}

/// The workspace's id, made (atomically, so hosts starting together agree)
/// if it has none.
fn identity(dir: &Dir) -> std::io::Result<String> {
    let fresh = format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
    let mut opts = cap_std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    match dir.open_with(ID_FILE, &opts) {
        Ok(mut f) => {
            f.write_all(fresh.as_bytes())?;
            f.sync_all()?;
            Ok(fresh)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            // Another host may be writing it this instant.
            for _ in 0..50 {
                let id = dir.read_to_string(ID_FILE)?.trim().to_string();
                if !id.is_empty() {
                    return Ok(id);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(std::io::Error::other(format!("{ID_FILE} is empty")))
        }
        Err(e) => Err(e),
    }
}

fn clear_stale_tmp(dir: &Dir) {
    let Ok(entries) = dir.read_dir(TMP_DIR) else {
        return;
    };
    for entry in entries.flatten() {
        let old = entry
            .metadata()
            .ok()
            .and_then(|m| m.modified().ok())
            .and_then(|t| t.into_std().elapsed().ok())
            .is_some_and(|age| age > STALE_TMP);
        if old {
            let _ = dir.remove_file(Path::new(TMP_DIR).join(entry.file_name()));
        }
    }
}

/// Link `wawe:env/workspace`.
pub(crate) fn add_to_linker(linker: &mut Linker<AgentState>) -> anyhow::Result<()> {
    wit::add_to_linker::<_, HasSelf<_>>(linker, |s| s)?;
    Ok(())
}

/// Per-write and per-listing limits of the workspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkspaceLimits {
    /// The largest file one write may put in place.
    pub max_file_bytes: u64,
    /// The most entries a directory may reach by agents' writes (so every
    /// listing an agent makes of what agents wrote stays bounded).
    pub max_dir_entries: u64,
}

impl Default for WorkspaceLimits {
    fn default() -> Self {
        Self {
            max_file_bytes: 16 << 20,
            max_dir_entries: 10_000,
        }
    }
}

/// One agent's use of the workspace.
pub(crate) struct WorkspaceState {
    ws: Arc<Workspace>,
    access: Access,
    limits: WorkspaceLimits,
}

impl WorkspaceState {
    pub(crate) fn new(ws: Arc<Workspace>, access: Access, limits: WorkspaceLimits) -> Self {
        Self { ws, access, limits }
    }

    /// The host directory to preopen read-only at [`GUEST_ROOT`].
    pub(crate) fn root(&self) -> &Path {
        &self.ws.root
    }
}

/// A temporary file in `.wawe/tmp/`, removed when dropped unless it was
/// renamed into place.
struct TempFile {
    dir: Arc<Dir>,
    name: PathBuf,
    file: Option<cap_std::fs::File>,
}

impl TempFile {
    fn new(dir: Arc<Dir>) -> std::io::Result<TempFile> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = Path::new(TMP_DIR).join(format!(
            "{}-{n}-{:08x}",
            std::process::id(),
            fastrand::u32(..)
        ));
        let mut opts = cap_std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        let file = dir.open_with(&name, &opts)?;
        Ok(TempFile {
            dir,
            name,
            file: Some(file),
        })
    }

    fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match &mut self.file {
            Some(f) => f.write_all(bytes),
            None => Err(std::io::Error::other("the file is closed")),
        }
    }

    /// Close it, flushed to disk first when `sync`.
    fn close(&mut self, sync: bool) -> std::io::Result<()> {
        if let Some(f) = self.file.take()
            && sync
        {
            f.sync_data()?;
        }
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        self.file = None;
        // Gone already when it was renamed into place.
        let _ = self.dir.remove_file(&self.name);
    }
}

/// The change an edit makes, run by the environment inside its transaction;
/// done at most once (a backend may run it again after it succeeded).
struct Apply {
    dir: Arc<Dir>,
    op: Op,
    max_dir_entries: u64,
    /// Flush the directories changed to disk (durability `full`), so the
    /// rename outlives a power loss as the commit that journals it does.
    sync: bool,
    done: AtomicBool,
}

enum Op {
    /// Rename the temporary file `tmp` onto `to`.
    Put {
        tmp: PathBuf,
        to: String,
    },
    Rename {
        from: String,
        to: String,
    },
    Remove {
        path: String,
    },
    Mkdir {
        path: String,
    },
}

/// The directory holding `path` (`.` for the workspace's top level).
fn parent(path: &str) -> &Path {
    Path::new(path)
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

impl Apply {
    /// The entry the change adds, if any.
    fn adds(&self) -> Option<&str> {
        match &self.op {
            Op::Put { to, .. } | Op::Rename { to, .. } => Some(to),
            Op::Mkdir { path } => Some(path),
            Op::Remove { .. } => None,
        }
    }

    /// Refuse the change if it adds an entry to a directory that already
    /// holds the most entries allowed. Counting a large directory is slow,
    /// so this runs before the environment's transaction, not in it: writers
    /// racing into one directory may pass it together and go past the limit
    /// by at most their number.
    fn check_room(&self) -> EnvResult<()> {
        let Some(path) = self.adds() else {
            return Ok(());
        };
        if self.dir.symlink_metadata(path).is_ok() {
            return Ok(());
        }
        let dir = parent(path);
        let Ok(entries) = self.dir.read_dir(dir) else {
            return Ok(());
        };
        let n = entries.count() as u64;
        if n >= self.max_dir_entries {
            return Err(EnvError::TooLarge {
                what: format!("directory `{}` (entries)", dir.display()),
                limit: self.max_dir_entries,
                actual: n + 1,
            });
        }
        Ok(())
    }

    /// Make the directories above a new entry at `path`.
    fn make_parents(&self, path: &str) -> EnvResult<()> {
        self.dir
            .create_dir_all(parent(path))
            .map_err(|e| io_error(&format!("make the directories of `{path}`"), e))
    }

    /// Flush the directories holding `paths` when durability asks for it.
    /// The change is made by then, so a flush that fails is reported, not
    /// turned into a refusal of what already happened.
    fn sync_dirs(&self, paths: &[&str]) {
        if !self.sync {
            return;
        }
        let mut read = cap_std::fs::OpenOptions::new();
        read.read(true);
        for path in paths {
            let flushed = self
                .dir
                .open_with(parent(path), &read)
                .and_then(|d| d.sync_all());
            if let Err(e) = flushed {
                tracing::warn!("cannot flush the workspace directory of `{path}`: {e}");
            }
        }
    }

    fn run(&self) -> EnvResult<()> {
        match &self.op {
            Op::Put { tmp, to } => {
                self.make_parents(to)?;
                self.dir
                    .rename(tmp, &self.dir, to)
                    .map_err(|e| io_error(&format!("write `{to}`"), e))?;
                self.sync_dirs(&[to]);
                Ok(())
            }
            Op::Rename { from, to } => {
                self.make_parents(to)?;
                self.dir
                    .rename(from, &self.dir, to)
                    .map_err(|e| io_error(&format!("rename `{from}` to `{to}`"), e))?;
                self.sync_dirs(&[from, to]);
                Ok(())
            }
            Op::Remove { path } => {
                let meta = self
                    .dir
                    .symlink_metadata(path)
                    .map_err(|e| io_error(&format!("remove `{path}`"), e))?;
                let removed = if meta.is_dir() {
                    self.dir.remove_dir(path)
                } else {
                    self.dir.remove_file(path)
                };
                removed.map_err(|e| io_error(&format!("remove `{path}`"), e))?;
                self.sync_dirs(&[path]);
                Ok(())
            }
            Op::Mkdir { path } => {
                self.make_parents(path)?;
                self.dir
                    .create_dir_all(path)
                    .map_err(|e| io_error(&format!("make the directory `{path}`"), e))?;
                self.sync_dirs(&[path]);
                Ok(())
            }
        }
    }
}

impl FileChange for Apply {
    fn apply(&self) -> EnvResult<()> {
        if self.done.load(Ordering::Acquire) {
            return Ok(());
        }
        self.run()?;
        self.done.store(true, Ordering::Release);
        Ok(())
    }
}

/// Runs blocking file-system work off the async threads; a panic in it is
/// resumed here.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(work).await {
        Ok(done) => done,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => panic!("blocking workspace work did not finish: {e}"),
    }
}

fn io_error(what: &str, e: std::io::Error) -> EnvError {
    use std::io::ErrorKind::*;
    match e.kind() {
        NotFound => EnvError::not_found(format!("cannot {what}: no such file or directory")),
        StorageFull | QuotaExceeded => {
            EnvError::Unavailable(format!("cannot {what}: the workspace's disk is full"))
        }
        _ => EnvError::invalid(format!("cannot {what}: {e}")),
    }
}

/// A file being written in pieces (the `file-writer` resource).
pub struct FileWriter {
    lease: u64,
    path: String,
    tmp: Option<TempFile>,
    size: u64,
    hasher: Sha256,
}

type Res<T> = wasmtime::Result<Result<T, types::Error>>;

fn refuse<T>(e: EnvError) -> Res<T> {
    Ok(Err(types::Error::from(e)))
}

impl AgentState {
    /// The agent's workspace, if it may change it; else why not.
    fn writable(&self) -> Result<&WorkspaceState, EnvError> {
        match &self.workspace {
            Some(w) if w.access == Access::Write => Ok(w),
            _ => Err(EnvError::invalid(
                "this agent may not change the workspace: it needs `workspace = \"write\"` in \
                 its manifest table",
            )),
        }
    }

    /// Check a path an agent names for a change.
    fn change_path(&self, path: &str) -> EnvResult<()> {
        crate::env::validate_path(path, self.env.options().max_name_bytes)?;
        if path == HOST_DIR || path.starts_with(".wawe/") {
            return Err(EnvError::invalid(format!(
                "`{path}` is the host's own directory in the workspace; write elsewhere"
            )));
        }
        Ok(())
    }

    /// Check a write of `size` more bytes against the per-write limit and
    /// the per-run quota (past which the run is stopped).
    fn charge_bytes(&mut self, total: u64, more: u64) -> wasmtime::Result<EnvResult<()>> {
        let max = self.writable().map(|w| w.limits.max_file_bytes);
        let max = match max {
            Ok(m) => m,
            Err(e) => return Ok(Err(e)),
        };
        if total > max {
            return Ok(Err(EnvError::TooLarge {
                what: "workspace file".into(),
                limit: max,
                actual: total,
            }));
        }
        self.charge_written(more)?;
        Ok(Ok(()))
    }

    /// Run `op` through the environment's check under `lease`.
    async fn edit(&mut self, lease: u64, edit: Edit, op: Op) -> EnvResult<u64> {
        let w = self.writable()?;
        let apply = Arc::new(Apply {
            dir: w.ws.dir.clone(),
            op,
            max_dir_entries: w.limits.max_dir_entries,
            sync: self.durable(),
            done: AtomicBool::new(false),
        });
        let (kind, path) = (edit.kind, edit.path.clone());
        let room = apply.clone();
        let result = match blocking(move || room.check_room()).await {
            Ok(()) => self.env.workspace_edit(&self.id, lease, edit, apply).await,
            Err(e) => Err(e),
        };
        if let Err(e) = &result {
            tracing::debug!(agent = %self.id, "workspace {kind:?} of {path} refused: {e}");
        }
        result
    }

    /// Put the content of `tmp` in place at `path` under `lease`.
    async fn put(
        &mut self,
        lease: u64,
        path: String,
        mut tmp: TempFile,
        size: u64,
        hash: String,
    ) -> EnvResult<wit::Written> {
        let sync = self.durable();
        let tmp = blocking(move || tmp.close(sync).map(|()| tmp))
            .await
            .map_err(|e| io_error(&format!("write `{path}`"), e))?;
        let edit = Edit {
            kind: EditKind::Write,
            path: path.clone(),
            to: None,
            size: Some(size),
            hash: Some(hash.clone()),
        };
        let op = Op::Put {
            tmp: tmp.name.clone(),
            to: path.clone(),
        };
        let token = self.edit(lease, edit, op).await?;
        drop(tmp);
        Ok(wit::Written {
            path,
            size,
            hash,
            token,
        })
    }

    /// A change that writes no content (rename, remove, mkdir), as a call.
    async fn change(
        &mut self,
        lease: u64,
        kind: EditKind,
        path: String,
        to: Option<String>,
        op: Op,
    ) -> Res<()> {
        self.charge(Call::Write).await?;
        for p in std::iter::once(&path).chain(to.as_ref()) {
            if let Err(e) = self.change_path(p) {
                return refuse(e);
            }
        }
        let edit = Edit {
            kind,
            path,
            to,
            size: None,
            hash: None,
        };
        let r = self.edit(lease, edit, op).await;
        Ok(r.map(drop).map_err(types::Error::from))
    }

    /// Whether changes must reach the disk before they count (durability
    /// `full`): the content before its rename, the directory after.
    fn durable(&self) -> bool {
        self.env.options().durability == crate::env::Durability::Full
    }

    fn new_temp(&self) -> EnvResult<TempFile> {
        let w = self.writable()?;
        TempFile::new(w.ws.dir.clone()).map_err(|e| io_error("make a temporary file", e))
    }
}

fn digest(hasher: Sha256) -> String {
    format!("sha256:{:x}", hasher.finalize())
}

impl wit::Host for AgentState {
    async fn write(&mut self, lease: u64, path: String, contents: Vec<u8>) -> Res<wit::Written> {
        self.charge(Call::Write).await?;
        if let Err(e) = self.change_path(&path) {
            return refuse(e);
        }
        let size = contents.len() as u64;
        if let Err(e) = self.charge_bytes(size, size)? {
            return refuse(e);
        }
        let mut tmp = match self.new_temp() {
            Ok(t) => t,
            Err(e) => return refuse(e),
        };
        let (tmp, written) = blocking(move || {
            let r = tmp.write(&contents);
            (tmp, r.map(|()| digest(Sha256::new_with_prefix(&contents))))
        })
        .await;
        let hash = match written {
            Ok(h) => h,
            Err(e) => return refuse(io_error(&format!("write `{path}`"), e)),
        };
        Ok(self
            .put(lease, path, tmp, size, hash)
            .await
            .map_err(types::Error::from))
    }

    async fn begin_write(&mut self, lease: u64, path: String) -> Res<Resource<FileWriter>> {
        self.charge(Call::Write).await?;
        if let Err(e) = self.change_path(&path) {
            return refuse(e);
        }
        let tmp = match self.new_temp() {
            Ok(t) => t,
            Err(e) => return refuse(e),
        };
        let writer = FileWriter {
            lease,
            path,
            tmp: Some(tmp),
            size: 0,
            hasher: Sha256::new(),
        };
        Ok(Ok(self.table.push(writer)?))
    }

    async fn rename(&mut self, lease: u64, from: String, to: String) -> Res<()> {
        let op = Op::Rename {
            from: from.clone(),
            to: to.clone(),
        };
        self.change(lease, EditKind::Rename, from, Some(to), op)
            .await
    }

    async fn remove(&mut self, lease: u64, path: String) -> Res<()> {
        let op = Op::Remove { path: path.clone() };
        self.change(lease, EditKind::Delete, path, None, op).await
    }

    async fn create_dir(&mut self, lease: u64, path: String) -> Res<()> {
        let op = Op::Mkdir { path: path.clone() };
        self.change(lease, EditKind::Mkdir, path, None, op).await
    }
}

impl wit::HostFileWriter for AgentState {
    async fn append(&mut self, writer: Resource<FileWriter>, bytes: Vec<u8>) -> Res<()> {
        self.charge(Call::Read).await?;
        let size = self.table.get(&writer)?.size;
        let more = bytes.len() as u64;
        if let Err(e) = self.charge_bytes(size + more, more)? {
            return refuse(e);
        }
        let w = self.table.get_mut(&writer)?;
        let Some(tmp) = w.tmp.as_mut() else {
            return refuse(EnvError::invalid("this file writer was committed already"));
        };
        if let Err(e) = tmp.write(&bytes) {
            let e = io_error(&format!("write `{}`", w.path), e);
            return refuse(e);
        }
        w.hasher.update(&bytes);
        w.size += more;
        Ok(Ok(()))
    }

    async fn commit(&mut self, writer: Resource<FileWriter>) -> Res<wit::Written> {
        self.charge(Call::Write).await?;
        let w = self.table.get_mut(&writer)?;
        let Some(tmp) = w.tmp.take() else {
            return refuse(EnvError::invalid("this file writer was committed already"));
        };
        let (lease, path, size) = (w.lease, w.path.clone(), w.size);
        let hash = digest(std::mem::take(&mut w.hasher));
        Ok(self
            .put(lease, path, tmp, size, hash)
            .await
            .map_err(types::Error::from))
    }

    async fn drop(&mut self, writer: Resource<FileWriter>) -> wasmtime::Result<()> {
        // Its temporary file (if not committed) goes with it.
        self.table.delete(writer)?;
        Ok(())
    }
}
