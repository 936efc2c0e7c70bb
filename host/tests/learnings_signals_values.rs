//! Learnings, signals and shared values.

#[macro_use]
mod common;

use common::{agent, open};
use wawe::env::{EnvError, EnvOptions};

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

every_backend!(
    words_between_ascii_punctuation_are_found_each,
    search_ranks_by_relevance,
    endorsements_raise_rank_and_count_once_per_other_agent,
    old_unconfirmed_learnings_fade_behind_fresh_ones,
    search_text_is_words_never_query_syntax,
    recent_lists_newest_first_by_topic,
    signal_strength_decays_by_half_life_when_read,
    strongest_orders_trails_under_a_prefix_by_decayed_strength,
    compare_and_swap_refuses_the_wrong_version,
    versions_and_fences_survive_a_delete,
    oversized_values_and_names_are_refused,
);
