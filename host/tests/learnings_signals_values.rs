//! Learnings, signals and shared values.

#[macro_use]
mod common;

use common::{agent, open};
use futures_util::future::join_all;
use std::sync::Arc;

use wawe::env::{Clock, Env, EnvError, EnvLocation, EnvOptions, ManualClock};

async fn search_ranks_by_relevance() {
    let t = open();
    let a = agent("a");
    let weak = t
        .env
        .record_learning(&a, "build", "the cache directory can be shared", &[])
        .await
        .unwrap();
    let strong = t
        .env
        .record_learning(
            &a,
            "build",
            "sqlite cache: the sqlite page cache size matters for sqlite",
            &["sqlite".into()],
        )
        .await
        .unwrap();
    t.env
        .record_learning(&a, "misc", "nothing to see here", &[])
        .await
        .unwrap();
    let found = t.env.search_learnings("sqlite cache", 10).await.unwrap();
    let ids: Vec<u64> = found.iter().map(|l| l.id).collect();
    assert_eq!(ids, [strong, weak]);
    assert!(found[0].score > found[1].score);
    assert_eq!(found[0].tags, ["sqlite"]);
}

async fn endorsements_raise_rank_and_count_once_per_other_agent() {
    let t = open();
    let (a, b, c) = (agent("a"), agent("b"), agent("c"));
    let first = t
        .env
        .record_learning(&a, "t", "retry the flaky network call", &[])
        .await
        .unwrap();
    let second = t
        .env
        .record_learning(&a, "t", "retry the flaky network call", &[])
        .await
        .unwrap();
    // Equal text: the newer wins the tie.
    assert_eq!(
        t.env.search_learnings("flaky network", 10).await.unwrap()[0].id,
        second
    );
    assert_eq!(t.env.endorse(&b, first).await.unwrap(), 1);
    assert_eq!(t.env.endorse(&b, first).await.unwrap(), 1);
    assert_eq!(t.env.endorse(&c, first).await.unwrap(), 2);
    assert_eq!(
        t.env.search_learnings("flaky network", 10).await.unwrap()[0].id,
        first
    );
    assert!(matches!(
        t.env.endorse(&a, first).await,
        Err(EnvError::InvalidArgument(_))
    ));
    assert!(matches!(
        t.env.endorse(&b, 999).await,
        Err(EnvError::NotFound(_))
    ));
}

async fn old_unconfirmed_learnings_fade_behind_fresh_ones() {
    let t = open();
    let a = agent("a");
    let old = t
        .env
        .record_learning(&a, "t", "use the fast linker", &[])
        .await
        .unwrap();
    t.clock.advance(30 * 24 * 3_600_000);
    let fresh = t
        .env
        .record_learning(&a, "t", "use the fast linker", &[])
        .await
        .unwrap();
    let found = t.env.search_learnings("linker", 10).await.unwrap();
    assert_eq!(found.iter().map(|l| l.id).collect::<Vec<_>>(), [fresh, old]);
    assert!(found[1].score < found[0].score / 10.0);
}

/// Words glued to ASCII punctuation (paths, dotted names, addresses) are
/// found one by one, as the search text is cut there too: every backend's
/// tokenizer sees the same words.
async fn words_between_ascii_punctuation_are_found_each() {
    let t = open();
    let id = t
        .env
        .record_learning(
            &agent("a"),
            "notes",
            "see src/main.rs, cache.hit and ops@example.org; under_score",
            &["build-cache".into()],
        )
        .await
        .unwrap();
    for word in [
        "src", "main", "rs", "hit", "ops", "example", "org", "under", "score", "build",
    ] {
        let found = t.env.search_learnings(word, 10).await.unwrap();
        assert_eq!(found.first().map(|l| l.id), Some(id), "{word}");
    }
}

async fn search_text_is_words_never_query_syntax() {
    let t = open();
    let a = agent("a");
    let id = t
        .env
        .record_learning(&a, "t", "NEAR the AND gate; quote \" here", &[])
        .await
        .unwrap();
    for hostile in [
        "\"",
        "AND OR NOT",
        "body:*",
        "NEAR(",
        "') DROP TABLE learnings; --",
        "a*",
    ] {
        let r = t.env.search_learnings(hostile, 10).await;
        assert!(
            r.is_ok() || matches!(r, Err(EnvError::InvalidArgument(_))),
            "{hostile}: {r:?}"
        );
    }
    assert_eq!(
        t.env.search_learnings("near AND gate", 10).await.unwrap()[0].id,
        id
    );
    assert!(matches!(
        t.env.search_learnings("  ;; ", 10).await,
        Err(EnvError::InvalidArgument(_))
    ));
    assert_eq!(
        t.env.recent_learnings(Some("t"), 10).await.unwrap().len(),
        1
    );
}

async fn recent_lists_newest_first_by_topic() {
    let t = open();
    let a = agent("a");
    let one = t.env.record_learning(&a, "x", "one", &[]).await.unwrap();
    t.env.record_learning(&a, "y", "other", &[]).await.unwrap();
    let two = t.env.record_learning(&a, "x", "two", &[]).await.unwrap();
    let recent = t.env.recent_learnings(Some("x"), 10).await.unwrap();
    assert_eq!(recent.iter().map(|l| l.id).collect::<Vec<_>>(), [two, one]);
    assert_eq!(t.env.recent_learnings(Some("x"), 1).await.unwrap().len(), 1);
}

async fn signal_strength_decays_by_half_life_when_read() {
    let t = open();
    let a = agent("a");
    assert_eq!(
        t.env
            .deposit(&a, "food/north", 8.0, Some(1_000))
            .await
            .unwrap(),
        8.0
    );
    t.clock.advance(1_000);
    assert!((t.env.sense("food/north").await.unwrap() - 4.0).abs() < 1e-9);
    t.clock.advance(2_000);
    assert!((t.env.sense("food/north").await.unwrap() - 1.0).abs() < 1e-9);
    // A deposit adds to the decayed strength and keeps the trail's half-life.
    assert!((t.env.deposit(&a, "food/north", 1.0, None).await.unwrap() - 2.0).abs() < 1e-9);
    t.clock.advance(1_000);
    assert!((t.env.sense("food/north").await.unwrap() - 1.0).abs() < 1e-9);
    assert_eq!(t.env.sense("never/laid").await.unwrap(), 0.0);
    // Strength never goes below zero.
    assert_eq!(
        t.env.deposit(&a, "food/north", -100.0, None).await.unwrap(),
        0.0
    );
}

async fn strongest_orders_trails_under_a_prefix_by_decayed_strength() {
    let t = open();
    let a = agent("a");
    t.env
        .deposit(&a, "food/a", 10.0, Some(1_000))
        .await
        .unwrap();
    t.env
        .deposit(&a, "food/b", 6.0, Some(1_000_000))
        .await
        .unwrap();
    t.env.deposit(&a, "food/c", 1.0, None).await.unwrap();
    t.env.deposit(&a, "water/x", 100.0, None).await.unwrap();
    t.clock.advance(2_000); // food/a decays to 2.5; food/b barely moves
    let top = t.env.strongest("food/", 2).await.unwrap();
    assert_eq!(
        top.iter().map(|s| s.trail.as_str()).collect::<Vec<_>>(),
        ["food/b", "food/a"]
    );
    assert!((top[1].strength - 2.5).abs() < 1e-9);
    assert!(matches!(
        t.env.deposit(&a, "x", f64::NAN, None).await,
        Err(EnvError::InvalidArgument(_))
    ));
}

/// More trails under a prefix than `strongest` reads whole (4,096), in three
/// half-lives: the walk down the rank index per half-life finds the same
/// trails as reading them all would, as the short-lived ones fade below the
/// long-lived ones.
async fn strongest_over_many_trails_matches_reading_them_all() {
    let t = open();
    let a = agent("a");
    let half_lives = [500u64, 5_000, 60_000];
    let start = t.clock.now_ms();
    // (trail, amount, half-life, laid at)
    let mut laid: Vec<(String, f64, u64, u64)> = Vec::new();
    let mut seed = 7u64;
    let mut next = move || {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        (seed >> 33) as f64 / (1u64 << 31) as f64
    };
    for round in 0..6u64 {
        let mut batch = Vec::new();
        for k in 0..1_000u64 {
            let prefix = if k % 50 == 0 { "narrow" } else { "wide" };
            let trail = format!("{prefix}/{round}-{k:04}");
            let amount = 1.0 + 999.0 * next();
            let half_life = half_lives[(k % 3) as usize];
            laid.push((trail, amount, half_life, start + round * 100));
        }
        for (trail, amount, half_life, _) in &laid[laid.len() - 1_000..] {
            batch.push(t.env.deposit(&a, trail, *amount, Some(*half_life)));
        }
        for done in join_all(batch).await {
            done.unwrap();
        }
        t.clock.advance(100);
    }
    for (after, prefix, n) in [
        (0, "wide/", 10),
        (0, "", 25),
        (0, "narrow/", 5),
        (2_000, "wide/", 10),
        (2_000, "", 40),
        (60_000, "wide/", 10),
        (60_000, "wide/1-", 3),
    ] {
        let now = start + 600 + after;
        t.clock.set(now);
        let mut expected: Vec<(&str, f64)> = laid
            .iter()
            .filter(|(trail, ..)| trail.starts_with(prefix))
            .map(|(trail, amount, half_life, at)| {
                let strength = amount * 0.5f64.powf((now - at) as f64 / *half_life as f64);
                (trail.as_str(), strength)
            })
            .collect();
        expected.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
        expected.truncate(n);
        let top = t.env.strongest(prefix, n as u32).await.unwrap();
        let got: Vec<&str> = top.iter().map(|s| s.trail.as_str()).collect();
        let want: Vec<&str> = expected.iter().map(|e| e.0).collect();
        assert_eq!(got, want, "strongest({prefix:?}, {n}) {after} ms on");
        for (s, e) in top.iter().zip(&expected) {
            assert!(
                (s.strength - e.1).abs() <= 1e-9 * e.1.max(1.0),
                "{s:?} vs {e:?}"
            );
        }
    }
}

async fn compare_and_swap_refuses_the_wrong_version() {
    let t = open();
    let (a, b) = (agent("a"), agent("b"));
    assert_eq!(
        t.env.put_value(&a, "k", "1", Some(0), None).await.unwrap(),
        1
    );
    assert_eq!(
        t.env.put_value(&b, "k", "x", Some(0), None).await,
        Err(EnvError::VersionMismatch {
            expected: Some(0),
            actual: Some(1)
        })
    );
    assert_eq!(
        t.env.put_value(&b, "k", "2", Some(1), None).await.unwrap(),
        2
    );
    assert_eq!(
        t.env.put_value(&a, "k", "stale", Some(1), None).await,
        Err(EnvError::VersionMismatch {
            expected: Some(1),
            actual: Some(2)
        })
    );
    let v = t.env.get_value("k").await.unwrap().unwrap();
    assert_eq!((v.value.as_str(), v.version), ("2", 2));
    assert_eq!(t.env.put_value(&a, "k", "3", None, None).await.unwrap(), 3);
    assert_eq!(
        t.env.delete_value(&a, "k", Some(2), None).await,
        Err(EnvError::VersionMismatch {
            expected: Some(2),
            actual: Some(3)
        })
    );
    t.env.delete_value(&a, "k", Some(3), None).await.unwrap();
    assert_eq!(t.env.get_value("k").await.unwrap(), None);
    assert!(matches!(
        t.env.delete_value(&a, "k", None, None).await,
        Err(EnvError::NotFound(_))
    ));
    assert_eq!(t.env.list_values("").await.unwrap().len(), 0);
}

async fn versions_and_fences_survive_a_delete() {
    let t = open();
    let (a, b) = (agent("a"), agent("b"));
    let old = t
        .env
        .reserve(&a, &["k".to_string()], wawe::env::Mode::Exclusive, 1_000, 0)
        .await
        .unwrap();
    t.clock.advance(1_000);
    let new = t
        .env
        .reserve(&b, &["k".to_string()], wawe::env::Mode::Exclusive, 1_000, 0)
        .await
        .unwrap();
    assert_eq!(
        t.env
            .put_value(&b, "k", "v1", None, Some(new.token))
            .await
            .unwrap(),
        1
    );
    // The old holder can neither delete with its stale token...
    assert_eq!(
        t.env.delete_value(&a, "k", None, Some(old.token)).await,
        Err(EnvError::StaleToken(old.token))
    );
    t.env
        .delete_value(&b, "k", Some(1), Some(new.token))
        .await
        .unwrap();
    assert_eq!(t.env.get_value("k").await.unwrap(), None);
    // ...nor write after the delete: the fence outlives it.
    assert_eq!(
        t.env
            .put_value(&a, "k", "stale", None, Some(old.token))
            .await,
        Err(EnvError::StaleToken(old.token))
    );
    // A compare-and-swap against the version read before the delete fails
    // even once the key is written again (no ABA).
    assert_eq!(
        t.env.put_value(&b, "k", "v3", Some(0), None).await.unwrap(),
        3
    );
    assert_eq!(
        t.env.put_value(&a, "k", "x", Some(1), None).await,
        Err(EnvError::VersionMismatch {
            expected: Some(1),
            actual: Some(3)
        })
    );
}

async fn oversized_values_and_names_are_refused() {
    let t = common::open_with(EnvOptions {
        max_payload_bytes: 10,
        max_name_bytes: 8,
        ..Default::default()
    });
    let a = agent("a");
    assert!(matches!(
        t.env.put_value(&a, "k", &"v".repeat(11), None, None).await,
        Err(EnvError::TooLarge { .. })
    ));
    assert!(matches!(
        t.env.put_value(&a, "a-long-key", "v", None, None).await,
        Err(EnvError::TooLarge { .. })
    ));
    assert!(matches!(
        t.env.record_learning(&a, "t", &"b".repeat(11), &[]).await,
        Err(EnvError::TooLarge { .. })
    ));
    assert!(matches!(
        t.env.put_value(&a, "", "v", None, None).await,
        Err(EnvError::InvalidArgument(_))
    ));
}

/// A file from before trails were ranked (schema version 2, or the version 3
/// that indexed the journal by subject) gets the rank column and index when
/// opened, with every trail's rank filled in, so a `strongest` over more
/// trails than it reads whole still finds the top; version 3's journal index
/// is dropped.
#[test]
fn a_version_2_or_3_file_has_its_trails_ranked_when_opened() {
    for old in [2, 3] {
        an_old_file_has_its_trails_ranked_when_opened(old);
    }
}

fn an_old_file_has_its_trails_ranked_when_opened(old: i64) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let a = agent("a");
    let clock = ManualClock::new(1_700_000_000_000);
    let location = EnvLocation::File(path.clone());
    let open =
        || Env::open_with_clock(&location, EnvOptions::default(), Arc::new(clock.clone())).unwrap();
    rt.block_on(async {
        let env = open();
        let trails: Vec<String> = (0..5_000).map(|k| format!("t/{k:05}")).collect();
        let deposits = trails.iter().enumerate().map(|(k, trail)| {
            let half_life = if k % 2 == 0 { 1_000 } else { 3_600_000 };
            env.deposit(&a, trail, k as f64, Some(half_life))
        });
        for done in join_all(deposits).await {
            done.unwrap();
        }
        env.close();
    });
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(&format!(
        "DROP INDEX signals_by_rank; ALTER TABLE signals DROP COLUMN rank; PRAGMA user_version = {old};"
    ))
    .unwrap();
    if old == 3 {
        conn.execute_batch("CREATE INDEX events_by_subject ON events (subject, seq)")
            .unwrap();
    }
    drop(conn);
    rt.block_on(async {
        let env = open();
        let top = env.strongest("t/", 3).await.unwrap();
        let got: Vec<&str> = top.iter().map(|s| s.trail.as_str()).collect();
        assert_eq!(got, ["t/04999", "t/04998", "t/04997"]);
        // Even ones halve every second, odd ones every hour.
        clock.advance(10_000);
        let top = env.strongest("t/", 3).await.unwrap();
        let got: Vec<&str> = top.iter().map(|s| s.trail.as_str()).collect();
        assert_eq!(got, ["t/04999", "t/04997", "t/04995"]);
        env.close();
    });
    let conn = rusqlite::Connection::open(&path).unwrap();
    let (version, unranked, subject_index): (i64, i64, i64) = conn
        .query_row(
            "SELECT (SELECT user_version FROM pragma_user_version),
                    (SELECT count(*) FROM signals WHERE rank IS NULL AND strength > 0),
                    (SELECT count(*) FROM sqlite_schema WHERE name = 'events_by_subject')",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(
        (version, unranked, subject_index),
        (wawe::env::SCHEMA_VERSION, 0, 0)
    );
}

every_backend!(
    words_between_ascii_punctuation_are_found_each,
    search_ranks_by_relevance,
    endorsements_raise_rank_and_count_once_per_other_agent,
    old_unconfirmed_learnings_fade_behind_fresh_ones,
    search_text_is_words_never_query_syntax,
    recent_lists_newest_first_by_topic,
    signal_strength_decays_by_half_life_when_read,
    strongest_orders_trails_under_a_prefix_by_decayed_strength,
    strongest_over_many_trails_matches_reading_them_all,
    compare_and_swap_refuses_the_wrong_version,
    versions_and_fences_survive_a_delete,
    oversized_values_and_names_are_refused,
);
