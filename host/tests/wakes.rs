//! Targeted wake-ups: a commit wakes only the waiters it concerns, whether
//! it was made through the same handle or another one (another process or
//! host), counted by [`Env::wake_tally`]; and reads never hold up the async
//! workers that deliver those wake-ups.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{agent, eventually, open, res};
use futures_util::future::join_all;
use wawe::env::{Direction, Env, EnvLocation, EventFilter, Mode, PushOptions, WakeTally};

const LEASE: u64 = 60_000;
const LONG: u64 = 30_000;

/// Let commits and their wake-ups (and read-backs from other handles) land.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(300)).await;
}

async fn push_many(env: &Env, queue: &str, n: usize) {
    for i in 0..n {
        env.push(&agent("p"), queue, &i.to_string(), PushOptions::default())
            .await
            .unwrap();
    }
}

async fn a_push_wakes_a_claim_on_its_queue_and_none_on_another() {
    let t = open();
    let env = t.env.clone();
    let on_b = tokio::spawn(async move { env.claim(&agent("w"), "b", LEASE, LONG).await });
    settle().await;
    push_many(&t.env, "a", 20).await;
    settle().await;
    assert!(!on_b.is_finished(), "a push to a woke a claim on b");
    assert_eq!(t.env.wake_tally(), WakeTally::default());
    let id = t
        .env
        .push(&agent("p"), "b", "for b", PushOptions::default())
        .await
        .unwrap()
        .id;
    let claimed = tokio::time::timeout(Duration::from_secs(10), on_b)
        .await
        .expect("the claim on b was not woken")
        .unwrap()
        .unwrap()
        .expect("a task");
    assert_eq!(claimed.id, id);
    let tally = t.env.wake_tally();
    assert_eq!(tally.targeted, 1, "{tally:?}");
    assert_eq!(tally.general, 0, "{tally:?}");
}

async fn another_handles_push_is_read_back_into_the_same_targeted_wake() {
    let t = open();
    let other = t.another();
    let env = t.env.clone();
    let on_b = tokio::spawn(async move { env.claim(&agent("w"), "b", LEASE, LONG).await });
    settle().await;
    push_many(&other, "a", 20).await;
    settle().await;
    assert!(!on_b.is_finished(), "another handle's push to a woke b");
    assert_eq!(t.env.wake_tally(), WakeTally::default());
    other
        .push(&agent("p"), "b", "for b", PushOptions::default())
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), on_b)
        .await
        .expect("the claim on b was not woken by the other handle's push")
        .unwrap()
        .unwrap()
        .expect("a task");
    let tally = t.env.wake_tally();
    assert_eq!(tally.targeted, 1, "{tally:?}");
    assert_eq!(tally.general, 0, "{tally:?}");
    other.close();
}

async fn one_push_wakes_one_of_many_claims_on_its_queue() {
    let t = open();
    let waiting: Vec<_> = (0..5)
        .map(|n| {
            let env = t.env.clone();
            tokio::spawn(async move { env.claim(&agent(&format!("w{n}")), "q", LEASE, LONG).await })
        })
        .collect();
    settle().await;
    push_many(&t.env, "q", 1).await;
    eventually(async || waiting.iter().filter(|w| w.is_finished()).count() == 1).await;
    settle().await;
    assert_eq!(waiting.iter().filter(|w| w.is_finished()).count(), 1);
    assert_eq!(t.env.wake_tally().targeted, 1);
    push_many(&t.env, "q", 4).await;
    let claimed = join_all(waiting).await;
    assert!(claimed.into_iter().all(|c| c.unwrap().unwrap().is_some()));
    // A claimer rung again while still taking its first task passes the
    // extra wake-up on as it leaves: more than one per task, never general.
    let tally = t.env.wake_tally();
    assert!(tally.targeted >= 5, "{tally:?}");
    assert_eq!(tally.general, 0, "{tally:?}");
}

async fn a_release_wakes_only_reserves_on_resources_it_overlaps() {
    let t = open();
    let (x, y) = (agent("x"), agent("y"));
    let on_x = t
        .env
        .reserve(&x, &res(&["src/a.rs"]), Mode::Exclusive, LEASE, 0)
        .await
        .unwrap();
    let on_y = t
        .env
        .reserve(&y, &res(&["docs/"]), Mode::Exclusive, LEASE, 0)
        .await
        .unwrap();
    let env = t.env.clone();
    let waiting = tokio::spawn(async move {
        env.reserve(
            &agent("w"),
            &res(&["docs/guide.md"]),
            Mode::Exclusive,
            LEASE,
            LONG,
        )
        .await
    });
    settle().await;
    t.env.release(&x, on_x.id).await.unwrap();
    settle().await;
    assert!(!waiting.is_finished());
    assert_eq!(t.env.wake_tally(), WakeTally::default());
    t.env.release(&y, on_y.id).await.unwrap();
    let lease = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the reserve was not woken by the release")
        .unwrap()
        .unwrap();
    assert_eq!(lease.resources, res(&["docs/guide.md"]));
    assert!(t.env.wake_tally().targeted >= 1);
    assert_eq!(t.env.wake_tally().general, 0);
}

async fn an_events_wait_wakes_only_for_events_its_filter_passes() {
    let t = open();
    let after = t.env.latest_seq().await.unwrap();
    let env = t.env.clone();
    let filter = EventFilter {
        kinds: vec!["value.".into()],
        subject_prefix: "value/watched".into(),
        ..EventFilter::default()
    };
    let waiting = tokio::spawn(async move { env.wait_events(after, &filter, LONG).await });
    settle().await;
    for n in 0..10 {
        t.env
            .put_value(&agent("a"), &format!("other/{n}"), "v", None, None)
            .await
            .unwrap();
    }
    push_many(&t.env, "q", 5).await;
    settle().await;
    assert!(!waiting.is_finished());
    assert_eq!(t.env.wake_tally(), WakeTally::default());
    t.env
        .put_value(&agent("a"), "watched", "v", None, None)
        .await
        .unwrap();
    let events = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the wait was not woken")
        .unwrap()
        .unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(t.env.wake_tally().targeted, 1);
}

every_backend!(
    a_push_wakes_a_claim_on_its_queue_and_none_on_another,
    another_handles_push_is_read_back_into_the_same_targeted_wake,
    one_push_wakes_one_of_many_claims_on_its_queue,
    a_release_wakes_only_reserves_on_resources_it_overlaps,
    an_events_wait_wakes_only_for_events_its_filter_passes,
);

/// On a runtime with one thread, many long reads at once (each looks
/// through 50,000 events) and a claim waiting for a push from elsewhere: the
/// claim is woken and answered while the reads are still going, because
/// reads run on the blocking pool, not on the thread that runs the claim.
#[test]
fn slow_reads_do_not_hold_up_a_claims_wake_up() {
    const READS: usize = 40;
    let dir = tempfile::tempdir().unwrap();
    let location = EnvLocation::File(dir.path().join("env.db"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let env = Env::open(&location, Default::default()).unwrap();
        let filler = agent("filler");
        for chunk in (0..wawe::env::MAX_EVENTS_SCANNED + 1_000)
            .collect::<Vec<_>>()
            .chunks(2_000)
        {
            let puts = chunk.iter().map(|n| {
                let (env, filler) = (env.clone(), filler.clone());
                async move {
                    env.put_value(&filler, &format!("k{}", n % 100), "v", None, None)
                        .await
                }
            });
            for put in join_all(puts).await {
                put.unwrap();
            }
        }
        let claimer = env.clone();
        let claim = tokio::spawn(async move { claimer.claim(&agent("w"), "q", LEASE, LONG).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let done = Arc::new(AtomicUsize::new(0));
        let nothing = EventFilter {
            kinds: vec!["no.such.kind".into()],
            ..EventFilter::default()
        };
        let reads: Vec<_> = (0..READS)
            .map(|_| {
                let (env, done, nothing) = (env.clone(), done.clone(), nothing.clone());
                tokio::spawn(async move {
                    let page = env
                        .events_page(0, Direction::Back, &nothing, 10)
                        .await
                        .unwrap();
                    assert!(page.events.is_empty());
                    done.fetch_add(1, Ordering::SeqCst);
                })
            })
            .collect();
        // The push comes from another thread, as from another agent's host.
        let pusher = env.clone();
        std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(pusher.push(&agent("p"), "q", "x", PushOptions::default()))
                .unwrap();
        });
        let claimed = claim.await.unwrap().unwrap();
        let finished = done.load(Ordering::SeqCst);
        assert!(claimed.is_some());
        assert!(
            finished < READS / 2,
            "the claim was answered only after {finished} of {READS} reads had finished"
        );
        join_all(reads).await;
        env.close();
    });
}
