//! Property-based fuzzing of the inputs agents and users control: manifests,
//! resource paths (against the environment's own conflict checks) and
//! learnings search text. `cargo fuzz` needs a nightly toolchain, which this
//! project does not use; proptest runs on stable, shrinks failures to a
//! minimal input, and records it in `fuzz.proptest-regressions` beside this
//! file (commit that file: the case is then replayed first, every run).
//!
//! CI runs a bounded number of cases. A long run, for hours if you like:
//!
//! ```text
//! PROPTEST_CASES=200000 cargo test -p wawe --test fuzz --release
//! ```

mod common;

use std::path::Path;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};

use proptest::prelude::*;
use wawe::env::{AgentId, EnvError, Mode, overlaps, validate_resource};
use wawe::manifest::Manifest;

/// Cases per property: `PROPTEST_CASES`, or a CI-sized default.
fn cases(default: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

/// A manifest that parses, to mutate.
const MANIFEST: &str = r#"
env = "state.db"
durability = "normal"

[agents.worker]
module = "w.wasm"
replicas = 3
restart = "on-failure"
memory = "32 MiB"
cpu = "2s"
calls_per_second = 100
max_pushes = 10

[agents.worker.config]
queue = "jobs"
"#;

/// Text that is mostly a manifest: one line of it replaced by anything.
fn mutated_manifest() -> impl Strategy<Value = String> {
    let lines: Vec<&'static str> = MANIFEST.lines().collect();
    (0..lines.len(), any::<String>()).prop_map(move |(at, junk)| {
        let mut out = lines.clone();
        out[at] = &junk;
        out.join("\n")
    })
}

/// Manifest-shaped text: keys and values from the real grammar, in any order.
fn manifest_like() -> impl Strategy<Value = String> {
    let key = prop::sample::select(vec![
        "env",
        "durability",
        "module",
        "replicas",
        "restart",
        "memory",
        "cpu",
        "wall",
        "instances",
        "table_elements",
        "calls_per_second",
        "max_writes",
        "max_pushes",
    ]);
    let value = prop::sample::select(vec![
        "\"x.wasm\"",
        "0",
        "-1",
        "18446744073709551616",
        "\"64 MiB\"",
        "\"0 B\"",
        "\"1e9 GiB\"",
        "\"never\"",
        "\"soon\"",
        "true",
        "[]",
        "{}",
        "\"\"",
        "\"../../etc/passwd\"",
        "1.5",
    ]);
    let table = prop::sample::select(vec![
        "",
        "[agents.a]",
        "[agents.a.config]",
        "[agents.\"\"]",
        "[agents]",
        "[[agents.b]]",
    ]);
    prop::collection::vec((table, key, value), 0..12).prop_map(|lines| {
        lines
            .into_iter()
            .map(|(t, k, v)| format!("{t}\n{k} = {v}"))
            .collect::<Vec<_>>()
            .join("\n")
    })
}

/// Resource names from a small alphabet chosen to collide: shared prefixes,
/// the characters around '/' in byte order ('.', '-', '0'), quotes, LIKE and
/// GLOB wildcards, non-ASCII, and directories (a trailing '/').
fn resource() -> impl Strategy<Value = String> {
    let segment = prop::sample::select(vec![
        "a", "b", "a0", "a-", "a.b", "ab", "%", "_", "*", "'", "é", "A",
    ]);
    (prop::collection::vec(segment, 1..4), any::<bool>()).prop_map(|(segs, dir)| {
        let mut r = segs.join("/");
        if dir {
            r.push('/');
        }
        r
    })
}

proptest! {
    #![proptest_config(cases(512))]

    #[test]
    fn any_text_as_a_manifest_is_parsed_or_refused_with_a_message_naming_the_file(
        text in prop_oneof![any::<String>(), mutated_manifest(), manifest_like()]
    ) {
        if let Err(e) = Manifest::parse(&text, Path::new("swarm/fuzz.toml")) {
            let message = e.to_string();
            prop_assert!(message.contains("fuzz.toml") || message.contains("agent"), "{message}");
        }
    }

    #[test]
    fn any_text_as_a_resource_is_accepted_or_refused_and_overlap_is_symmetric(
        a in prop_oneof![any::<String>(), resource()],
        b in prop_oneof![any::<String>(), resource()],
    ) {
        let ok_a = validate_resource(&a, 256).is_ok();
        if ok_a {
            prop_assert!(!a.is_empty() && !a.starts_with('/') && !a.contains("//"));
            prop_assert!(overlaps(&a, &a));
        }
        if ok_a && validate_resource(&b, 256).is_ok() {
            prop_assert_eq!(overlaps(&a, &b), overlaps(&b, &a));
        }
    }
}

/// One environment per property and backend (opening one per case would
/// dominate the run); every case works under a prefix of its own, which keeps
/// the overlap relation of its names unchanged.
struct Fuzzed {
    t: common::TestEnv,
    rt: tokio::runtime::Runtime,
    case: AtomicU64,
}

impl Fuzzed {
    /// `None` where `backend` cannot be reached here (said on one line; a
    /// failure under `CI=true`).
    fn on(backend: common::Backend) -> Option<Fuzzed> {
        if !common::on_backend(backend) {
            return None;
        }
        let t = common::open();
        common::on_backend(common::Backend::Sqlite);
        Some(Fuzzed {
            t,
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
            case: AtomicU64::new(0),
        })
    }
}

/// A second exclusive lease is granted exactly when the names do not overlap.
fn grants_by_overlap(f: &Fuzzed, a: &str, b: &str) -> Result<(), TestCaseError> {
    let n = f.case.fetch_add(1, Ordering::Relaxed);
    let (a, b) = (format!("case{n}/{a}"), format!("case{n}/{b}"));
    let env = &f.t.env;
    f.rt.block_on(async {
        let first = env
            .reserve(
                &AgentId::new("one"),
                std::slice::from_ref(&a),
                Mode::Exclusive,
                60_000,
                0,
            )
            .await
            .unwrap();
        let second = env
            .reserve(
                &AgentId::new("two"),
                std::slice::from_ref(&b),
                Mode::Exclusive,
                60_000,
                0,
            )
            .await;
        match (&second, overlaps(&a, &b)) {
            (Ok(_), false) | (Err(EnvError::Conflict { .. }), true) => {}
            _ => panic!(
                "{a:?} then {b:?}: {second:?} (overlap: {})",
                overlaps(&a, &b)
            ),
        }
        env.release(&AgentId::new("one"), first.id).await.unwrap();
        if let Ok(lease) = second {
            env.release(&AgentId::new("two"), lease.id).await.unwrap();
        }
    });
    Ok(())
}

/// Any search text finds or says it has no words; any learning is stored or
/// refused; a stored one is found by any plain word of its body.
fn search_finds_plain_words(
    f: &Fuzzed,
    topic: &str,
    body: &str,
    query: &str,
) -> Result<(), TestCaseError> {
    let (env, rt) = (&f.t.env, &f.rt);
    let who = AgentId::new("fuzz");
    let recorded = rt.block_on(env.record_learning(&who, topic, body, &[query.to_owned()]));
    prop_assert!(
        matches!(
            recorded,
            Ok(_) | Err(EnvError::InvalidArgument(_)) | Err(EnvError::TooLarge { .. })
        ),
        "{recorded:?}"
    );
    for text in [query, body, topic] {
        let found = rt.block_on(env.search_learnings(text, 10));
        prop_assert!(
            matches!(found, Ok(_) | Err(EnvError::InvalidArgument(_))),
            "search {text:?}: {found:?}"
        );
    }
    // A learning is found by any plain word of its body: a run of ASCII
    // letters and digits between spaces or ASCII punctuation. (Which other
    // characters make words is up to the backend's tokenizer; the query hands
    // such pieces to the same tokenizer.)
    if let Ok(id) = recorded
        && let Some(word) = body
            .split(|c: char| c.is_ascii() && !c.is_ascii_alphanumeric())
            .find(|w| !w.is_empty() && w.chars().all(|c| c.is_ascii_alphanumeric()))
    {
        // Among all matches (unless there are more than a search returns).
        let found = rt.block_on(env.search_learnings(word, 1_000)).unwrap();
        prop_assert!(
            found.iter().any(|l| l.id == id) || found.len() == 1_000,
            "{word:?} in {body:?} not found"
        );
    }
    Ok(())
}

fn query() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        Just("\"NEAR(a b) OR body:* ^\\\"".to_string()),
        Just("* AND - OR NOT".to_string()),
        Just("a/b x.y foo@bar.com http://q.org/z under_score".to_string()),
    ]
}

static SQLITE: LazyLock<Fuzzed> =
    LazyLock::new(|| Fuzzed::on(common::Backend::Sqlite).expect("SQLite is always there"));

proptest! {
    #![proptest_config(cases(128))]

    #[test]
    fn the_environment_grants_a_second_exclusive_lease_exactly_when_the_names_do_not_overlap(
        a in resource(),
        b in resource(),
    ) {
        grants_by_overlap(&SQLITE, &a, &b)?;
    }

    #[test]
    fn any_search_text_finds_or_says_it_has_no_words_and_any_learning_is_stored_or_refused(
        topic in any::<String>(),
        body in any::<String>(),
        query in query(),
    ) {
        search_finds_plain_words(&SQLITE, &topic, &body, &query)?;
    }
}

// The same properties on PostgreSQL, on an environment that lives (and whose
// schema is dropped) within the test.
#[test]
fn on_postgres_a_second_exclusive_lease_is_granted_exactly_when_the_names_do_not_overlap() {
    let Some(f) = Fuzzed::on(common::Backend::Postgres) else {
        return;
    };
    proptest!(cases(64), |(a in resource(), b in resource())| {
        grants_by_overlap(&f, &a, &b)?;
    });
}

#[test]
fn on_postgres_any_search_text_finds_or_says_it_has_no_words_and_any_learning_is_stored() {
    let Some(f) = Fuzzed::on(common::Backend::Postgres) else {
        return;
    };
    proptest!(cases(64), |(topic in any::<String>(), body in any::<String>(), query in query())| {
        search_finds_plain_words(&f, &topic, &body, &query)?;
    });
}

/// Found by the fuzzer: a word glued to a character that Rust counts as a
/// separator but FTS5's tokenizer counts as part of the word.
#[test]
fn a_word_glued_to_an_emoji_is_found_as_typed() {
    let t = common::open();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let body = "🕴rH<N{🕴< and more";
    rt.block_on(t.env.record_learning(&AgentId::new("a"), "t", body, &[]))
        .unwrap();
    assert_eq!(
        rt.block_on(t.env.search_learnings("🕴rH", 5)).unwrap().len(),
        1
    );
    assert_eq!(
        rt.block_on(t.env.search_learnings("more", 5))
            .unwrap()
            .len(),
        1
    );
}
