//! Fenced workspace edits, on every backend: the lease rules, the token
//! rule, and that a refused or failed edit leaves nothing behind.

#[macro_use]
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use common::{agent, open, res};
use wawe::env::{
    AgentId, Edit, EditKind, EnvError, EnvResult, EventFilter, FileChange, Lease, Mode,
    WorkspaceRecord,
};

const TTL: u64 = 10_000;

/// A file change that counts its runs, and fails when told to.
#[derive(Default)]
struct Counted {
    runs: AtomicU32,
    fail: bool,
}

impl FileChange for Counted {
    fn apply(&self) -> EnvResult<()> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        if self.fail {
            return Err(EnvError::InvalidArgument("the disk said no".into()));
        }
        Ok(())
    }
}

fn write(path: &str) -> Edit {
    Edit {
        kind: EditKind::Write,
        path: path.into(),
        to: None,
        size: Some(3),
        hash: Some("sha256:abc".into()),
    }
}

fn only(kind: &str) -> EventFilter {
    EventFilter {
        kinds: vec![kind.to_string()],
        ..Default::default()
    }
}

/// A lease `who` is granted at once on `resources`.
async fn grant(
    t: &common::TestEnv,
    who: &AgentId,
    resources: &[&str],
    mode: Mode,
    ttl: u64,
) -> Lease {
    t.env
        .reserve(who, &res(resources), mode, ttl, 0)
        .await
        .unwrap()
}

fn change() -> Arc<Counted> {
    Arc::new(Counted::default())
}

async fn workspace_events(t: &common::TestEnv) -> Vec<String> {
    t.env
        .read_events(0, &only("workspace."), 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|e| format!("{} {}", e.kind, e.subject))
        .collect()
}

async fn a_write_under_a_live_exclusive_covering_lease_is_made_and_journaled() {
    let t = open();
    let a = agent("a");
    let lease = grant(&t, &a, &["src/"], Mode::Exclusive, TTL).await;
    let c = change();
    let token = t
        .env
        .workspace_edit(&a, lease.id, write("src/main.rs"), c.clone())
        .await
        .unwrap();
    assert_eq!(token, lease.token);
    assert_eq!(c.runs.load(Ordering::SeqCst), 1);
    let events = t
        .env
        .read_events(0, &only("workspace.write"), 10)
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(
        (e.agent.as_str(), e.subject.as_str()),
        ("a", "workspace/src/main.rs")
    );
    let detail: serde_json::Value = serde_json::from_str(&e.detail).unwrap();
    assert_eq!(detail["token"], lease.token);
    assert_eq!(detail["hash"], "sha256:abc");
    assert_eq!(detail["size"], 3);
}

async fn a_write_without_a_lease_of_ones_own_is_refused() {
    let t = open();
    let (a, b) = (agent("a"), agent("b"));
    let lease = grant(&t, &a, &["src/"], Mode::Exclusive, TTL).await;
    for (who, id) in [(&b, lease.id), (&a, lease.id + 100)] {
        let c = change();
        let got = t
            .env
            .workspace_edit(who, id, write("src/x"), c.clone())
            .await;
        assert!(matches!(got, Err(EnvError::NotFound(_))), "{got:?}");
        assert_eq!(c.runs.load(Ordering::SeqCst), 0, "the change ran");
    }
    assert!(workspace_events(&t).await.is_empty());
}

async fn a_write_under_a_shared_lease_is_refused() {
    let t = open();
    let a = agent("a");
    let lease = grant(&t, &a, &["src/"], Mode::Shared, TTL).await;
    let got = t
        .env
        .workspace_edit(&a, lease.id, write("src/x"), change())
        .await;
    assert!(
        matches!(&got, Err(EnvError::InvalidArgument(m)) if m.contains("exclusive")),
        "{got:?}"
    );
}

async fn a_write_outside_what_the_lease_covers_is_refused() {
    let t = open();
    let a = agent("a");
    let lease = grant(&t, &a, &["src/a.rs"], Mode::Exclusive, TTL).await;
    for path in ["src/b.rs", "src/a.rs.bak", "src"] {
        let got = t
            .env
            .workspace_edit(&a, lease.id, write(path), change())
            .await;
        assert!(
            matches!(&got, Err(EnvError::InvalidArgument(m)) if m.contains("does not cover")),
            "{path}: {got:?}"
        );
    }
}

async fn a_rename_needs_a_lease_covering_both_ends() {
    let t = open();
    let a = agent("a");
    let lease = grant(&t, &a, &["src/"], Mode::Exclusive, TTL).await;
    let rename = |to: &str| Edit {
        kind: EditKind::Rename,
        path: "src/a.rs".into(),
        to: Some(to.into()),
        size: None,
        hash: None,
    };
    let got = t
        .env
        .workspace_edit(&a, lease.id, rename("docs/a.rs"), change())
        .await;
    assert!(
        matches!(&got, Err(EnvError::InvalidArgument(m)) if m.contains("`docs/a.rs`")),
        "{got:?}"
    );
    t.env
        .workspace_edit(&a, lease.id, rename("src/b.rs"), change())
        .await
        .unwrap();
    assert_eq!(
        workspace_events(&t).await,
        ["workspace.rename workspace/src/a.rs"]
    );
}

async fn an_expired_lease_is_refused_as_stale() {
    let t = open();
    let a = agent("a");
    let lease = grant(&t, &a, &["src/"], Mode::Exclusive, 1_000).await;
    t.clock.advance(1_000);
    let c = change();
    let got = t
        .env
        .workspace_edit(&a, lease.id, write("src/x"), c.clone())
        .await;
    assert_eq!(got, Err(EnvError::StaleToken(lease.token)));
    assert_eq!(c.runs.load(Ordering::SeqCst), 0);
}

async fn a_stale_token_is_refused_after_a_newer_holder_wrote() {
    let t = open();
    let a = agent("a");
    // Two live leases of one agent (its own leases never conflict): the
    // older token may not write over what the newer one wrote.
    let old = grant(&t, &a, &["src/"], Mode::Exclusive, TTL).await;
    let new = grant(&t, &a, &["src/main.rs"], Mode::Exclusive, TTL).await;
    assert!(new.token > old.token);
    t.env
        .workspace_edit(&a, new.id, write("src/main.rs"), change())
        .await
        .unwrap();
    let got = t
        .env
        .workspace_edit(&a, old.id, write("src/main.rs"), change())
        .await;
    assert_eq!(got, Err(EnvError::StaleToken(old.token)));
    // Other paths under the old lease are still its own to write.
    t.env
        .workspace_edit(&a, old.id, write("src/lib.rs"), change())
        .await
        .unwrap();
    // Across holders the lease itself decides: once b's lease lapsed and c
    // holds the files, b's late write is refused because its lease is gone
    // (the token rule above is for one agent's overlapping leases).
    let (b, c) = (agent("b"), agent("c"));
    let first = grant(&t, &b, &["docs/"], Mode::Exclusive, 1_000).await;
    t.clock.advance(1_000);
    let second = grant(&t, &c, &["docs/"], Mode::Exclusive, TTL).await;
    t.env
        .workspace_edit(&c, second.id, write("docs/x"), change())
        .await
        .unwrap();
    let late = t
        .env
        .workspace_edit(&b, first.id, write("docs/x"), change())
        .await;
    assert!(
        matches!(
            late,
            Err(EnvError::StaleToken(_)) | Err(EnvError::NotFound(_))
        ),
        "{late:?}"
    );
}

async fn a_failed_change_leaves_no_record_and_no_event() {
    let t = open();
    let a = agent("a");
    // An older lease on `src/` and a newer one on `src/x`: had the failed
    // edit recorded the newer token for `src/x`, the older lease could no
    // longer write there.
    let old = grant(&t, &a, &["src/"], Mode::Exclusive, TTL).await;
    let new = grant(&t, &a, &["src/x"], Mode::Exclusive, TTL).await;
    let failing = Arc::new(Counted {
        runs: AtomicU32::new(0),
        fail: true,
    });
    let got = t
        .env
        .workspace_edit(&a, new.id, write("src/x"), failing)
        .await;
    assert!(
        matches!(&got, Err(EnvError::InvalidArgument(m)) if m.contains("the disk said no")),
        "{got:?}"
    );
    assert!(workspace_events(&t).await.is_empty());
    t.env
        .workspace_edit(&a, old.id, write("src/x"), change())
        .await
        .expect("the failed edit left no token behind");
}

async fn escaping_paths_are_refused_before_anything_runs() {
    let t = open();
    let a = agent("a");
    let lease = grant(&t, &a, &["src/"], Mode::Exclusive, TTL).await;
    for path in [
        "../etc/passwd",
        "/etc/passwd",
        "src/../../x",
        "src//x",
        "src/./x",
    ] {
        let c = change();
        let got = t
            .env
            .workspace_edit(&a, lease.id, write(path), c.clone())
            .await;
        assert!(
            matches!(got, Err(EnvError::InvalidArgument(_))),
            "{path}: {got:?}"
        );
        assert_eq!(c.runs.load(Ordering::SeqCst), 0);
    }
}

async fn one_environment_has_one_workspace() {
    let t = open();
    let record = |id: &str, host: &str| WorkspaceRecord {
        id: id.into(),
        path: format!("/mnt/{id}"),
        host: host.into(),
    };
    assert_eq!(t.env.workspace().await.unwrap(), None);
    t.env.register_workspace(record("w1", "h1")).await.unwrap();
    // The same workspace from another host: fine.
    t.env.register_workspace(record("w1", "h2")).await.unwrap();
    let e = t
        .env
        .register_workspace(record("w2", "h3"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("/mnt/w1") && e.contains("w2") && e.contains("h1"),
        "{e}"
    );
    assert_eq!(t.env.workspace().await.unwrap().unwrap().id, "w1");
}

every_backend!(
    a_write_under_a_live_exclusive_covering_lease_is_made_and_journaled,
    a_write_without_a_lease_of_ones_own_is_refused,
    a_write_under_a_shared_lease_is_refused,
    a_write_outside_what_the_lease_covers_is_refused,
    a_rename_needs_a_lease_covering_both_ends,
    an_expired_lease_is_refused_as_stale,
    a_stale_token_is_refused_after_a_newer_holder_wrote,
    a_failed_change_leaves_no_record_and_no_event,
    escaping_paths_are_refused_before_anything_runs,
    one_environment_has_one_workspace,
);

/// An environment made before workspaces existed (schema version 1) is
/// brought up to date when opened, its data kept.
#[test]
fn a_version_1_file_gains_the_workspace_tables_when_opened() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let env = wawe::env::Env::open(&path, Default::default()).unwrap();
        env.put_value(&agent("a"), "kept", "yes", None, None)
            .await
            .unwrap();
        env.close();
    });
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(
        "DROP TABLE workspace; DROP TABLE workspace_files;
         DROP INDEX signals_by_rank; ALTER TABLE signals DROP COLUMN rank;
         PRAGMA user_version = 1;",
    )
    .unwrap();
    drop(conn);
    rt.block_on(async {
        let env = wawe::env::Env::open(&path, Default::default()).unwrap();
        assert_eq!(env.get_value("kept").await.unwrap().unwrap().value, "yes");
        let record = WorkspaceRecord {
            id: "w".into(),
            path: "/w".into(),
            host: "h".into(),
        };
        env.register_workspace(record).await.unwrap();
        env.close();
    });
    let conn = rusqlite::Connection::open(&path).unwrap();
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, wawe::env::SCHEMA_VERSION);
}
