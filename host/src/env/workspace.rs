//! Fenced workspace edits, as every backend checks and records them.
//!
//! A workspace is a directory of files shared by a swarm. The environment
//! does not touch it: it decides whether an edit may happen and records it.
//! An edit is allowed when the caller names a lease that is its own, live,
//! exclusive, covers every path the edit touches, and whose fencing token is
//! not older than the last token that wrote any of those paths. The check, the
//! change to the files (handed in as a [`FileChange`]) and the journal event
//! happen in one transaction: a lease cannot lapse, nor another holder write,
//! between the check and the change.
//!
//! Every path keeps the token that last wrote it (deleted paths too), so a
//! holder whose lease lapsed and was followed by another's write stays stale.

use serde_json::json;

use super::events::Change;
use super::limits::check_name;
use super::resource::{covers, validate_resource};
use super::{AgentId, Env, EnvError, EnvResult, Mode};

/// What an edit does, as the journal names it (`workspace.<kind>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EditKind {
    /// A file written whole (created or replaced).
    Write,
    /// A file or directory moved from `path` to `to`.
    Rename,
    /// A file or empty directory removed.
    Delete,
    /// A directory made.
    Mkdir,
}

impl EditKind {
    /// The journal kind of this edit.
    pub fn event_kind(self) -> &'static str {
        match self {
            EditKind::Write => "workspace.write",
            EditKind::Rename => "workspace.rename",
            EditKind::Delete => "workspace.delete",
            EditKind::Mkdir => "workspace.mkdir",
        }
    }
}

/// One edit of the workspace, as the environment checks and journals it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edit {
    /// What it does.
    pub kind: EditKind,
    /// The path it touches (the source of a rename), relative to the workspace.
    pub path: String,
    /// The destination of a rename.
    pub to: Option<String>,
    /// The size written, for a write.
    pub size: Option<u64>,
    /// `sha256:<hex>` of the content written, for a write.
    pub hash: Option<String>,
}

impl Edit {
    /// Every path the edit touches.
    pub fn paths(&self) -> Vec<&str> {
        std::iter::once(self.path.as_str())
            .chain(self.to.as_deref())
            .collect()
    }
}

/// The change to the files that an [`Edit`] describes, made by the caller's
/// code inside the environment's transaction, after the checks passed.
///
/// It may be called again after it succeeded (a backend may re-run an
/// operation whose batch broke); it must then do nothing and succeed.
pub trait FileChange: Send + Sync {
    /// Make the change; an error refuses the edit (and is the caller's answer).
    fn apply(&self) -> EnvResult<()>;
}

/// A lease as the workspace check needs it.
pub(crate) struct LeaseRow {
    pub(crate) agent: String,
    pub(crate) mode: Mode,
    pub(crate) token: u64,
    pub(crate) expires_at: u64,
    pub(crate) resources: Vec<String>,
}

/// Check that lease `id` (its row as read inside the write, if any) lets
/// `who` make `edit` at `now`; returns its token. The per-path token rule is
/// [`check_path_token`].
pub(crate) fn check_lease(
    who: &str,
    id: u64,
    lease: Option<LeaseRow>,
    edit: &Edit,
    now: u64,
) -> EnvResult<u64> {
    let lease = match lease {
        Some(l) if l.agent == who => l,
        _ => {
            return Err(EnvError::not_found(format!(
                "lease {id} is not a lease of yours (released, expired and swept, or never \
                 granted to you)"
            )));
        }
    };
    if lease.expires_at <= now {
        return Err(EnvError::StaleToken(lease.token));
    }
    if lease.mode != Mode::Exclusive {
        return Err(EnvError::invalid(format!(
            "lease {id} is shared; writing to the workspace needs an exclusive lease"
        )));
    }
    for path in edit.paths() {
        if !lease.resources.iter().any(|r| covers(r, path)) {
            return Err(EnvError::invalid(format!(
                "lease {id} does not cover `{path}` (it holds {}); reserve `{path}` or a \
                 directory above it, such as `{}/`",
                lease.resources.join(", "),
                path.split('/').next().unwrap_or(path)
            )));
        }
    }
    Ok(lease.token)
}

/// Check `token` against the last token that wrote `path`.
pub(crate) fn check_path_token(path: &str, token: u64, last: Option<u64>) -> EnvResult<()> {
    match last {
        Some(last) if last > token => {
            tracing::debug!("stale workspace write to {path}: token {token} < {last}");
            Err(EnvError::StaleToken(token))
        }
        _ => Ok(()),
    }
}

/// What an edit leaves at each path it touches, as the backends record it:
/// `Some((size, hash))` for something there (a file written or moved in, a
/// directory), `None` for a path emptied (deleted, or moved away).
pub(crate) type PathState<'a> = Option<(Option<u64>, Option<&'a str>)>;

/// The paths an edit touches and what each holds afterwards.
pub(crate) fn path_states(edit: &Edit) -> Vec<(&str, PathState<'_>)> {
    let written = Some((edit.size, edit.hash.as_deref()));
    match edit.kind {
        EditKind::Write => vec![(edit.path.as_str(), written)],
        EditKind::Mkdir => vec![(edit.path.as_str(), Some((None, None)))],
        EditKind::Delete => vec![(edit.path.as_str(), None)],
        EditKind::Rename => vec![
            (edit.path.as_str(), None),
            (edit.to.as_deref().unwrap_or_default(), written),
        ],
    }
}

/// The journal event of an edit made under `lease` with `token`.
pub(crate) fn edited(edit: &Edit, lease: u64, token: u64) -> Change {
    Change {
        kind: edit.kind.event_kind(),
        subject: format!("workspace/{}", edit.path),
        detail: {
            let mut d = json!({"lease": lease, "token": token});
            if let Some(to) = &edit.to {
                d["to"] = json!(to);
            }
            if let Some(size) = edit.size {
                d["size"] = json!(size);
            }
            if let Some(hash) = &edit.hash {
                d["hash"] = json!(hash);
            }
            d
        },
    }
}

/// The journal event of host `record.host` registering the workspace.
pub(crate) fn registered(record: &WorkspaceRecord) -> Change {
    Change {
        kind: "workspace.registered",
        subject: format!("workspace/{}", record.id),
        detail: json!({"path": record.path}),
    }
}

/// Check a workspace path as written by an agent: a plain relative path.
pub fn validate_path(path: &str, max_len: usize) -> EnvResult<()> {
    if path.ends_with('/') {
        return Err(EnvError::invalid(format!(
            "workspace path {path:?} ends with '/': name the file or directory itself"
        )));
    }
    validate_resource(path, max_len)
        .map_err(|e| match e {
            EnvError::InvalidArgument(m) => {
                EnvError::InvalidArgument(m.replacen("resource", "workspace path", 1))
            }
            other => other,
        })
        .and_then(|()| {
            if path.contains('\\') || path.contains('\0') {
                return Err(EnvError::invalid(format!(
                    "workspace path {path:?} contains a backslash or NUL"
                )));
            }
            Ok(())
        })
}

/// The workspace a swarm's hosts share, as the environment remembers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkspaceRecord {
    /// The id in the workspace's identity file.
    pub id: String,
    /// Where the host that registered it first found it.
    pub path: String,
    /// That host.
    pub host: String,
}

impl Env {
    /// Make `edit` under `lease` if the lease allows it (see the module
    /// docs), running `change` inside the same transaction; returns the
    /// lease's token. The edit is journaled as `workspace.<kind>` with its
    /// size, hash, lease and token.
    pub async fn workspace_edit(
        &self,
        who: &AgentId,
        lease: u64,
        edit: Edit,
        change: std::sync::Arc<dyn FileChange>,
    ) -> EnvResult<u64> {
        let max = self.options().max_name_bytes;
        for p in edit.paths() {
            validate_path(p, max)?;
        }
        if edit.kind == EditKind::Rename && edit.to.is_none() {
            return Err(EnvError::invalid("a rename needs a destination"));
        }
        store!(self, s => s.workspace_edit(who.as_str(), lease, edit, change).await)
    }

    /// Record that this environment's workspace is `record`, or check that
    /// the one recorded has the same id: hosts of one environment must share
    /// one workspace. Fails with `InvalidArgument` naming both otherwise.
    pub async fn register_workspace(&self, record: WorkspaceRecord) -> EnvResult<WorkspaceRecord> {
        check_name("workspace id", &record.id, self.options())?;
        let found = store!(self, s => s.register_workspace(record.clone()).await)?;
        if found.id != record.id {
            return Err(EnvError::invalid(format!(
                "this environment's workspace is {} (id {}, registered by host {}), but this \
                 host's workspace {} has id {}: all hosts of an environment must share one \
                 workspace (the same directory, or a shared filesystem mounted on each), or \
                 start a new environment",
                found.path, found.id, found.host, record.path, record.id
            )));
        }
        Ok(found)
    }

    /// The workspace recorded for this environment, if any.
    pub async fn workspace(&self) -> EnvResult<Option<WorkspaceRecord>> {
        store!(self, s => s.workspace().await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(agent: &str, mode: Mode, expires_at: u64, resources: &[&str]) -> Option<LeaseRow> {
        Some(LeaseRow {
            agent: agent.into(),
            mode,
            token: 7,
            expires_at,
            resources: resources.iter().map(|r| r.to_string()).collect(),
        })
    }

    fn write(path: &str) -> Edit {
        Edit {
            kind: EditKind::Write,
            path: path.into(),
            to: None,
            size: Some(1),
            hash: None,
        }
    }

    #[test]
    fn a_live_exclusive_lease_of_ones_own_covering_the_path_allows_the_edit() {
        let l = lease("a", Mode::Exclusive, 100, &["src/"]);
        assert_eq!(
            check_lease("a", 1, l, &write("src/main.rs"), 50).unwrap(),
            7
        );
        let l = lease("a", Mode::Exclusive, 100, &["src/main.rs"]);
        assert_eq!(
            check_lease("a", 1, l, &write("src/main.rs"), 50).unwrap(),
            7
        );
    }

    #[test]
    fn each_rule_refuses_by_name() {
        let e = check_lease(
            "b",
            1,
            lease("a", Mode::Exclusive, 100, &["src/"]),
            &write("src/x"),
            50,
        );
        assert!(matches!(e, Err(EnvError::NotFound(_))), "{e:?}");
        let e = check_lease(
            "a",
            1,
            lease("a", Mode::Exclusive, 50, &["src/"]),
            &write("src/x"),
            50,
        );
        assert_eq!(e, Err(EnvError::StaleToken(7)));
        let e = check_lease(
            "a",
            1,
            lease("a", Mode::Shared, 100, &["src/"]),
            &write("src/x"),
            50,
        );
        assert!(format!("{e:?}").contains("exclusive"), "{e:?}");
        let e = check_lease(
            "a",
            1,
            lease("a", Mode::Exclusive, 100, &["src/a"]),
            &write("src/ab"),
            50,
        );
        assert!(
            format!("{e:?}").contains("does not cover `src/ab`"),
            "{e:?}"
        );
        let rename = Edit {
            kind: EditKind::Rename,
            to: Some("docs/x".into()),
            ..write("src/x")
        };
        let e = check_lease(
            "a",
            1,
            lease("a", Mode::Exclusive, 100, &["src/"]),
            &rename,
            50,
        );
        assert!(
            format!("{e:?}").contains("does not cover `docs/x`"),
            "{e:?}"
        );
        assert_eq!(
            check_path_token("p", 7, Some(8)),
            Err(EnvError::StaleToken(7))
        );
        assert_eq!(check_path_token("p", 7, Some(7)), Ok(()));
        assert_eq!(check_path_token("p", 7, None), Ok(()));
    }

    #[test]
    fn escaping_paths_are_refused() {
        for bad in [
            "../x",
            "a/../../x",
            "/etc/passwd",
            "a//b",
            "a/./b",
            "",
            "a/",
            "a\\..\\b",
        ] {
            assert!(validate_path(bad, 512).is_err(), "{bad:?} accepted");
        }
        validate_path("src/main.rs", 512).unwrap();
    }
}
