//! The journal, waiting, group commit, and opening files.

#[macro_use]
mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{agent, open, res};
use wawe::env::{
    Env, EnvError, EnvOptions, EventFilter, ManualClock, Mode, OpenError, PushOptions,
};

async fn every_change_appends_exactly_one_event_and_failures_none() {
    let t = open();
    let (a, b) = (agent("a"), agent("b"));
    let env = &t.env;
    let mut seq = env.latest_seq().await.unwrap();
    let expect = async |kind: &str, seq: &mut u64| {
        let events = env
            .read_events(*seq, &EventFilter::default(), 100)
            .await
            .unwrap();
        assert_eq!(events.len(), 1, "after {kind}: {events:?}");
        assert_eq!(events[0].kind, kind);
        *seq = events[0].seq;
    };
    let lease = env
        .reserve(&a, &res(&["r"]), Mode::Exclusive, 10_000, 0)
        .await
        .unwrap();
    expect("lease.granted", &mut seq).await;
    env.renew(&a, lease.id, 10_000).await.unwrap();
    expect("lease.renewed", &mut seq).await;
    env.reserve(&b, &res(&["r"]), Mode::Exclusive, 10_000, 0)
        .await
        .unwrap_err();
    env.release(&a, lease.id).await.unwrap();
    expect("lease.released", &mut seq).await;
    let id = env
        .push(&a, "q", "x", PushOptions::default())
        .await
        .unwrap()
        .id;
    expect("task.pushed", &mut seq).await;
    let c = env.claim(&b, "q", 10_000, 0).await.unwrap().unwrap();
    expect("task.claimed", &mut seq).await;
    env.complete(&a, id, c.token, "").await.unwrap_err();
    env.extend(&b, id, c.token, 10_000).await.unwrap();
    expect("task.extended", &mut seq).await;
    env.complete(&b, id, c.token, "done").await.unwrap();
    expect("task.completed", &mut seq).await;
    let l = env.record_learning(&a, "t", "body", &[]).await.unwrap();
    expect("learning.recorded", &mut seq).await;
    env.endorse(&b, l).await.unwrap();
    expect("learning.endorsed", &mut seq).await;
    env.deposit(&a, "trail", 1.0, None).await.unwrap();
    expect("signal.deposited", &mut seq).await;
    env.put_value(&a, "k", "v", None, None).await.unwrap();
    expect("value.put", &mut seq).await;
    env.put_value(&a, "k", "v", Some(5), None)
        .await
        .unwrap_err();
    env.delete_value(&a, "k", None, None).await.unwrap();
    expect("value.deleted", &mut seq).await;
    assert_eq!(env.latest_seq().await.unwrap(), seq);
    let events = env
        .read_events(0, &EventFilter::default(), 100)
        .await
        .unwrap();
    assert!(events.iter().all(
        |e| !e.agent.is_empty() && serde_json::from_str::<serde_json::Value>(&e.detail).is_ok()
    ));
    assert_eq!(
        events
            .iter()
            .find(|e| e.kind == "task.completed")
            .unwrap()
            .agent,
        "b"
    );
}

async fn events_filter_by_kind_prefix_and_subject_prefix() {
    let t = open();
    let a = agent("a");
    let id = t
        .env
        .push(&a, "q", "x", PushOptions::default())
        .await
        .unwrap()
        .id;
    t.env
        .push(&a, "q", "y", PushOptions::default())
        .await
        .unwrap();
    t.env.put_value(&a, "k", "v", None, None).await.unwrap();
    let tasks = EventFilter {
        kinds: vec!["task.".into()],
        ..Default::default()
    };
    assert_eq!(t.env.read_events(0, &tasks, 100).await.unwrap().len(), 2);
    let one = EventFilter {
        subject_prefix: format!("task/{id}"),
        ..Default::default()
    };
    assert_eq!(t.env.read_events(0, &one, 100).await.unwrap().len(), 1);
    assert_eq!(
        t.env
            .read_events(0, &EventFilter::default(), 2)
            .await
            .unwrap()
            .len(),
        2
    );
}

async fn a_blocked_wait_is_woken_by_a_change() {
    let t = open();
    let after = t.env.latest_seq().await.unwrap();
    let env = t.env.clone();
    let filter = EventFilter {
        kinds: vec!["value.".into()],
        ..Default::default()
    };
    let waiter = tokio::spawn(async move { env.wait_events(after, &filter, 30_000).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    t.env
        .push(&agent("a"), "q", "not a value", PushOptions::default())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        !waiter.is_finished(),
        "woke for an event the filter excludes"
    );
    t.env
        .put_value(&agent("a"), "k", "v", None, None)
        .await
        .unwrap();
    let events = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind, "value.put");
}

async fn a_wait_is_woken_by_a_commit_through_another_connection() {
    let t = open();
    let other = Env::open_with_clock(
        t.env.location(),
        EnvOptions::default(),
        Arc::new(t.clock.clone()),
    )
    .unwrap();
    let env = t.env.clone();
    let waiter = tokio::spawn(async move { env.claim(&agent("w"), "q", 10_000, 30_000).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let id = other
        .push(&agent("p"), "q", "x", PushOptions::default())
        .await
        .unwrap()
        .id;
    let claimed = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(claimed.unwrap().id, id);
}

async fn a_wait_with_nothing_to_see_returns_empty_at_its_timeout() {
    let t = open();
    let events = t
        .env
        .wait_events(
            t.env.latest_seq().await.unwrap(),
            &EventFilter::default(),
            30,
        )
        .await
        .unwrap();
    assert!(events.is_empty());
}

async fn retention_prunes_old_events_and_never_reuses_sequence_numbers() {
    let t = common::open_with(EnvOptions {
        event_retention_ms: 1_000,
        ..Default::default()
    });
    let a = agent("a");
    t.env.put_value(&a, "k", "1", None, None).await.unwrap();
    t.clock.advance(2_000);
    t.env.put_value(&a, "k", "2", None, None).await.unwrap();
    let before = t.env.latest_seq().await.unwrap();
    assert_eq!(t.env.prune_events().await.unwrap(), 1);
    let left = t
        .env
        .read_events(0, &EventFilter::default(), 100)
        .await
        .unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].seq, before);
    t.env.put_value(&a, "k", "3", None, None).await.unwrap();
    assert_eq!(t.env.latest_seq().await.unwrap(), before + 1);
}

async fn group_commit_keeps_each_operations_own_outcome() {
    let t = open();
    let a = agent("a");
    t.env.put_value(&a, "k", "0", None, None).await.unwrap();
    // 100 concurrent compare-and-swaps on version 1: exactly one wins, the
    // others fail alone; 100 pushes alongside all succeed.
    let mut handles = Vec::new();
    for i in 0..100 {
        let env = t.env.clone();
        handles.push(tokio::spawn(async move {
            let a = agent("a");
            let cas = env.put_value(&a, "k", &i.to_string(), Some(1), None).await;
            let push = env
                .push(&a, "q", &i.to_string(), PushOptions::default())
                .await;
            (cas, push)
        }));
    }
    let mut wins = 0;
    for h in handles {
        let (cas, push) = h.await.unwrap();
        push.unwrap();
        match cas {
            Ok(2) => wins += 1,
            Err(EnvError::VersionMismatch { .. }) => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(wins, 1);
    assert_eq!(
        t.env
            .list_tasks(Some("q"), None, 1_000)
            .await
            .unwrap()
            .len(),
        100
    );
    // And they were committed together: fewer transactions than operations.
    assert!(
        t.env.commits() < t.env.operations(),
        "{} commits for {} operations",
        t.env.commits(),
        t.env.operations()
    );
}

async fn an_answered_write_is_already_committed() {
    let t = open();
    let other = Env::open(t.env.location(), EnvOptions::default()).unwrap();
    for i in 0..50 {
        let id = t
            .env
            .push(&agent("a"), "q", &i.to_string(), PushOptions::default())
            .await
            .unwrap()
            .id;
        assert_eq!(other.get_task(id).await.unwrap().payload, i.to_string());
    }
}

/// Several hosts (each its own connections and writer) commit at once while
/// a follower reads the journal after the last sequence number it saw: it
/// sees every event exactly once, in order, with no gap. (On PostgreSQL,
/// numbers drawn from a plain sequence would commit out of order and the
/// follower would skip some.)
async fn a_follower_sees_every_event_once_in_commit_order_under_concurrent_writers() {
    const HOSTS: usize = 4;
    const PUSHES: usize = 150;
    let t = open();
    let start = t.env.latest_seq().await.unwrap();
    let mut writers = Vec::new();
    for h in 0..HOSTS {
        let env = Env::open_with_clock(
            t.env.location(),
            EnvOptions::default(),
            Arc::new(t.clock.clone()),
        )
        .unwrap();
        writers.push(tokio::spawn(async move {
            let me = agent(&format!("host{h}"));
            let mut pushing = Vec::new();
            for i in 0..PUSHES {
                let env = env.clone();
                let me = me.clone();
                pushing.push(tokio::spawn(async move {
                    env.push(&me, "q", &i.to_string(), PushOptions::default())
                        .await
                        .unwrap()
                }));
                if i % 10 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            for p in pushing {
                p.await.unwrap();
            }
        }));
    }
    let mut seen = Vec::new();
    let mut after = start;
    while seen.len() < HOSTS * PUSHES {
        let events = t
            .env
            .wait_events(after, &EventFilter::default(), 10_000)
            .await
            .unwrap();
        assert!(!events.is_empty(), "the journal stopped growing");
        for e in events {
            assert_eq!(
                e.seq,
                after + 1,
                "after {after} came {}: a gap or a repeat",
                e.seq
            );
            after = e.seq;
            seen.push(e);
        }
    }
    for w in writers {
        w.await.unwrap();
    }
    let all = t
        .env
        .read_events(start, &EventFilter::default(), 10_000)
        .await
        .unwrap();
    assert_eq!(all.len(), HOSTS * PUSHES);
    assert_eq!(all, seen);
}

fn snapshot(path: &std::path::Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

#[test]
fn a_file_that_is_not_a_database_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    std::fs::write(&path, "these are my notes, not a database\n".repeat(100)).unwrap();
    let before = snapshot(&path);
    let err = Env::open(&path, EnvOptions::default()).unwrap_err();
    assert!(matches!(err, OpenError::NotADatabase { .. }), "{err}");
    assert!(err.to_string().contains("not a wawe environment"));
    assert_eq!(snapshot(&path), before);
    assert!(!dir.path().join("notes.txt-wal").exists());
}

#[test]
fn a_database_of_another_application_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.db");
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO customers VALUES (1, 'x');").unwrap();
    }
    let before = snapshot(&path);
    let err = Env::open(&path, EnvOptions::default()).unwrap_err();
    assert!(matches!(err, OpenError::Foreign { .. }), "{err}");
    assert_eq!(snapshot(&path), before);
}

async fn make_env_file(dir: &tempfile::TempDir) -> std::path::PathBuf {
    let path = dir.path().join("env.db");
    let env = Env::open(&path, EnvOptions::default()).unwrap();
    env.push(&agent("a"), "q", "keep me", PushOptions::default())
        .await
        .unwrap();
    env.close();
    // Fold the WAL into the main file so the file alone holds everything.
    let c = rusqlite::Connection::open(&path).unwrap();
    c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE); PRAGMA journal_mode = DELETE;")
        .unwrap();
    path
}

#[tokio::test]
async fn a_database_from_a_newer_wawe_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = make_env_file(&dir).await;
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch(&format!(
            "PRAGMA user_version = {}",
            wawe::env::SCHEMA_VERSION + 1
        ))
        .unwrap();
    }
    let before = snapshot(&path);
    let err = Env::open(&path, EnvOptions::default()).unwrap_err();
    assert!(matches!(err, OpenError::NewerVersion { .. }), "{err}");
    assert!(err.to_string().contains("upgrade wawe"));
    assert_eq!(snapshot(&path), before);
}

#[tokio::test]
async fn a_corrupt_database_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = make_env_file(&dir).await;
    let mut bytes = snapshot(&path);
    let page = 4096;
    assert!(bytes.len() > 3 * page);
    for b in &mut bytes[page..] {
        *b = 0xA5;
    }
    std::fs::write(&path, &bytes).unwrap();
    let err = Env::open(&path, EnvOptions::default()).unwrap_err();
    assert!(
        matches!(
            err,
            OpenError::Corrupt { .. } | OpenError::NotADatabase { .. }
        ),
        "{err}"
    );
    assert_eq!(snapshot(&path), bytes);
}

#[tokio::test]
async fn an_environment_reopens_with_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = make_env_file(&dir).await;
    let env =
        Env::open_with_clock(&path, EnvOptions::default(), Arc::new(ManualClock::new(0))).unwrap();
    let tasks = env.list_tasks(None, None, 10).await.unwrap();
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0].payload, "keep me");
}

#[tokio::test]
async fn an_empty_file_becomes_an_environment() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.db");
    std::fs::write(&path, b"").unwrap();
    let env = Env::open(&path, EnvOptions::default()).unwrap();
    assert_eq!(env.stats().await.unwrap().events, 0);
}

#[tokio::test]
async fn the_wal_grows_under_a_long_reader_and_is_cut_back_after_it_ends() {
    let limit = WAL_LIMIT;
    let (t, wal) = with_wal_limit();
    let a = agent("a");
    t.env.put_value(&a, "k", "0", None, None).await.unwrap();
    // A reader that holds its snapshot keeps checkpoints from finishing.
    let reader = rusqlite::Connection::open(t.env.file().unwrap()).unwrap();
    reader
        .execute_batch("BEGIN; SELECT count(*) FROM events;")
        .unwrap();
    let body = "x".repeat(1000);
    for i in 0..2_000 {
        t.env
            .put_value(&a, &format!("k{i}"), &body, None, None)
            .await
            .unwrap();
    }
    t.env.sweep().await.unwrap();
    let grown = std::fs::metadata(&wal).unwrap().len();
    assert!(
        grown > 4 * limit,
        "the WAL should have grown under the reader: {grown}"
    );
    reader.execute_batch("COMMIT").unwrap();
    drop(reader);
    // A checkpoint (the sweep's, or the checkpoint thread's if it holds the
    // checkpoint lock just then) catches up; the next write starts the log over.
    t.env.sweep().await.unwrap();
    let cut = write_until_wal_at_most(&t.env, limit).await;
    assert!(cut <= limit, "the WAL was not cut back: {cut} bytes");
}

#[tokio::test]
async fn the_wal_is_checkpointed_as_writes_go_on_without_a_sweep() {
    let limit = WAL_LIMIT;
    let (t, wal) = with_wal_limit();
    let a = agent("a");
    // Well past the size limit, well short of the writer's own checkpoint
    // threshold (4,000 pages): only the checkpoint thread can cut this back.
    let body = "x".repeat(500);
    for i in 0..600 {
        t.env
            .put_value(&a, &format!("k{i}"), &body, None, None)
            .await
            .unwrap();
    }
    assert!(std::fs::metadata(&wal).unwrap().len() > limit);
    // The checkpoint thread catches up within moments; the next write then
    // starts the log over and cuts it back to the limit.
    let size = write_until_wal_at_most(&t.env, limit).await;
    assert!(
        size <= limit,
        "the WAL was never checkpointed: {size} bytes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wal_stays_bounded_under_writes_that_never_pause() {
    let t = open();
    let wal = wal_of(&t.env);
    // Four writers that never pause write far more log than the bound below;
    // a checkpoint must catch up with the log now and then for it to start
    // over, or it grows for as long as the writes go on.
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let env = t.env.clone();
            tokio::spawn(async move {
                let a = agent("a");
                let body = "y".repeat(300);
                for i in 0..4_000 {
                    env.put_value(&a, &format!("w{w}/{}", i % 500), &body, None, None)
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    let mut largest = 0;
    while !writers.iter().all(|w| w.is_finished()) {
        largest = largest.max(std::fs::metadata(&wal).map_or(0, |m| m.len()));
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    for w in writers {
        w.await.unwrap();
    }
    let bound = 16 << 20;
    assert!(
        largest <= bound,
        "the log reached {largest} bytes (bound {bound})"
    );
}

/// The write-ahead log file of `env`.
fn wal_of(env: &Env) -> std::path::PathBuf {
    let mut p = env.file().unwrap().as_os_str().to_owned();
    p.push("-wal");
    p.into()
}

/// Write now and then until the log is at most `limit` bytes (for up to
/// 5 s; checkpoints run on their own thread): its last size.
async fn write_until_wal_at_most(env: &Env, limit: u64) -> u64 {
    let mut size = u64::MAX;
    for _ in 0..100 {
        env.put_value(&agent("a"), "after", "x", None, None)
            .await
            .unwrap();
        size = std::fs::metadata(wal_of(env)).unwrap().len();
        if size <= limit {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    size
}

/// The WAL size limit the log tests use.
const WAL_LIMIT: u64 = 256 << 10;

/// An environment whose log is cut back to [`WAL_LIMIT`], and its log file.
fn with_wal_limit() -> (common::TestEnv, std::path::PathBuf) {
    let t = common::open_with(EnvOptions {
        wal_size_limit_bytes: WAL_LIMIT,
        ..Default::default()
    });
    let wal = wal_of(&t.env);
    (t, wal)
}

every_backend!(
    every_change_appends_exactly_one_event_and_failures_none,
    events_filter_by_kind_prefix_and_subject_prefix,
    a_blocked_wait_is_woken_by_a_change,
    a_wait_is_woken_by_a_commit_through_another_connection,
    a_wait_with_nothing_to_see_returns_empty_at_its_timeout,
    retention_prunes_old_events_and_never_reuses_sequence_numbers,
    group_commit_keeps_each_operations_own_outcome,
    an_answered_write_is_already_committed,
    a_follower_sees_every_event_once_in_commit_order_under_concurrent_writers,
);
