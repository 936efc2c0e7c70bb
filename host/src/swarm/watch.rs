//! Watching a folder of modules: which `.wasm` files appeared, changed or
//! went away (with their `NAME.toml` settings), from file-system events.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

/// A change in a watched folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FolderChange {
    /// `NAME.wasm` (or its `NAME.toml`) appeared or changed.
    Upsert {
        /// The agent name: the file stem.
        name: String,
        /// The module.
        module: PathBuf,
        /// Its settings file, if there is one.
        settings: Option<PathBuf>,
        /// What is new.
        what: Changed,
    },
    /// `NAME.wasm` went away.
    Removed {
        /// The agent name.
        name: String,
    },
}

/// What an [`FolderChange::Upsert`] brings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Changed {
    /// A module not seen before.
    Added,
    /// The module's code (and perhaps its settings too).
    Module,
    /// Only its `NAME.toml` settings.
    Settings,
}

/// How long a module that appears without its `NAME.toml` is held back for
/// the settings to follow (a `.wasm` copied in just before its `.toml`
/// would otherwise start without its config). Modules already there when
/// the watch begins start at once.
const SETTINGS_GRACE: Duration = Duration::from_secs(2);

/// How long the folder must be quiet before it is looked at again, so a file
/// being copied in is seen once, whole.
const SETTLE: Duration = Duration::from_millis(250);
/// The longest a burst of events may delay a look at the folder.
const SETTLE_AT_MOST: Duration = Duration::from_secs(2);

/// What identifies a version of a file: modification and change times, size
/// and inode (so a same-size replacement within one mtime tick is seen).
type Stamp = (Option<SystemTime>, u64, u64, i64);
type Seen = BTreeMap<String, (Stamp, Option<Stamp>)>;

fn stamp(meta: &std::fs::Metadata) -> Stamp {
    #[cfg(unix)]
    let (ino, ctime) = {
        use std::os::unix::fs::MetadataExt;
        (meta.ino(), meta.ctime_nsec() + meta.ctime() * 1_000_000_000)
    };
    #[cfg(not(unix))]
    let (ino, ctime) = (0, 0);
    (meta.modified().ok(), meta.len(), ino, ctime)
}

/// Whether a file-system event concerns modules or their settings.
fn relevant(event: &notify::Event) -> bool {
    event.paths.iter().any(|p| {
        matches!(
            p.extension().and_then(|e| e.to_str()),
            Some("wasm") | Some("toml")
        )
    })
}

fn scan(dir: &Path) -> std::io::Result<Seen> {
    let mut seen = Seen::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("wasm") {
            continue;
        }
        let Some(name) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        let meta = std::fs::metadata(&path)?;
        let settings = std::fs::metadata(path.with_extension("toml"))
            .ok()
            .map(|m| stamp(&m));
        seen.insert(name.to_string(), (stamp(&meta), settings));
    }
    Ok(seen)
}

/// Watch `dir`: the `.wasm` files in it now arrive first as upserts, then
/// every later change. The watch ends when the receiver is dropped.
pub fn watch_folder(dir: &Path) -> anyhow::Result<mpsc::UnboundedReceiver<FolderChange>> {
    let dir = dir.to_path_buf();
    let (tx, rx) = mpsc::unbounded_channel();
    let (poke_tx, mut poke_rx) = mpsc::unbounded_channel::<()>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        // Other files (an environment's WAL beside the modules, say) change
        // all the time; only modules and their settings count.
        if event.is_ok_and(|e| relevant(&e)) {
            let _ = poke_tx.send(());
        }
    })?;
    watcher.watch(&dir, RecursiveMode::NonRecursive)?;
    let mut folder = Folder::default();
    folder.diff(&dir, &tx, None)?;
    tokio::spawn(async move {
        let _watcher = watcher;
        loop {
            // Wake for file-system events, or when a held-back module's grace ends.
            let poked = match folder.next_deadline() {
                Some(at) => match tokio::time::timeout_at(at, poke_rx.recv()).await {
                    Ok(poked) => poked.is_some(),
                    Err(_) => true,
                },
                None => poke_rx.recv().await.is_some(),
            };
            if !poked {
                return;
            }
            // Let a burst of events (a copy in progress) settle first.
            let give_up = Instant::now() + SETTLE_AT_MOST;
            while Instant::now() < give_up {
                match tokio::time::timeout(SETTLE, poke_rx.recv()).await {
                    Ok(Some(())) => continue,
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            if let Err(e) = folder.diff(&dir, &tx, Some(Instant::now())) {
                tracing::warn!("cannot read {}: {e}", dir.display());
            }
            if tx.is_closed() {
                return;
            }
        }
    });
    Ok(rx)
}

/// What the watch knows of the folder: the modules it reported, and the new
/// ones it holds back while their settings may still arrive.
#[derive(Default)]
struct Folder {
    known: Seen,
    held: BTreeMap<String, Instant>,
}

impl Folder {
    /// When the first held-back module is due to start without settings.
    fn next_deadline(&self) -> Option<Instant> {
        self.held
            .values()
            .min()
            .map(|since| *since + SETTINGS_GRACE)
    }

    /// Reports what changed since the last look. `now` is `None` for the
    /// first look, which holds nothing back.
    fn diff(
        &mut self,
        dir: &Path,
        tx: &mpsc::UnboundedSender<FolderChange>,
        now: Option<Instant>,
    ) -> std::io::Result<()> {
        let mut seen = scan(dir)?;
        self.held.retain(|name, _| seen.contains_key(name));
        for (name, stamp) in &seen {
            let what = match self.known.get(name) {
                Some(old) if old == stamp => continue,
                Some(old) if old.0 == stamp.0 => Changed::Settings,
                Some(_) => Changed::Module,
                None => Changed::Added,
            };
            if let (Changed::Added, None, Some(now)) = (what, stamp.1, now) {
                let since = *self.held.entry(name.clone()).or_insert(now);
                if now < since + SETTINGS_GRACE {
                    continue;
                }
            }
            self.held.remove(name);
            let module = dir.join(format!("{name}.wasm"));
            let settings = stamp.1.map(|_| module.with_extension("toml"));
            let _ = tx.send(FolderChange::Upsert {
                name: name.clone(),
                module,
                settings,
                what,
            });
        }
        for name in self.known.keys() {
            if !seen.contains_key(name) {
                let _ = tx.send(FolderChange::Removed { name: name.clone() });
            }
        }
        // Held-back modules are not known yet: they are reported once due.
        seen.retain(|name, _| !self.held.contains_key(name));
        self.known = seen;
        Ok(())
    }
}
