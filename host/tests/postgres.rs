//! What only the PostgreSQL backend has: connection URLs and what is wrong
//! with them, schemas of other applications or of a newer wawe, and
//! connections that die under a running environment. (The rules themselves
//! are the conformance suite, run on both backends.)

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{agent, drop_schema, postgres, postgres_url};
use wawe::env::{Env, EnvOptions, EventFilter, ManualClock, OpenError, PushOptions};

/// A fresh schema name for one test, dropped when the guard goes.
struct Schema(String);

impl Schema {
    fn new(tag: &str) -> Option<Schema> {
        postgres()?;
        Some(Schema(format!("wt_{tag}_{}", std::process::id())))
    }
    fn url(&self) -> String {
        postgres_url(&self.0)
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        drop_schema(&self.0);
    }
}

/// A connection to the suite's server, driven in the background.
async fn client() -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(postgres().unwrap(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
}

/// Run `sql` on the suite's server.
async fn sql(statements: &str) {
    client().await.batch_execute(statements).await.unwrap();
}

/// Whether `schema` exists, and how many tables it has.
async fn tables_in(schema: &str) -> Option<i64> {
    let row = client()
        .await
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1),
                    (SELECT count(*) FROM pg_tables WHERE schemaname = $1)",
            &[&schema],
        )
        .await
        .unwrap();
    row.get::<_, bool>(0).then(|| row.get(1))
}

/// The same server and database as the suite's, as another user or database.
fn with(user: &str, db: &str) -> String {
    let mut u = url::Url::parse(postgres().unwrap()).unwrap();
    u.set_username(user).unwrap();
    u.set_path(db);
    u.to_string()
}

#[tokio::test]
async fn a_url_that_cannot_be_used_is_refused_saying_how_to_write_it() {
    let Some(_) = postgres() else { return };
    for bad in [
        "postgres://me@127.0.0.1:notaport/test",
        "postgres://me@127.0.0.1/test?schema=Not-Plain",
        "postgres://me@127.0.0.1",
    ] {
        let err = Env::open(bad, EnvOptions::default()).unwrap_err();
        assert!(matches!(err, OpenError::BadUrl { .. }), "{bad}: {err}");
        assert!(err.to_string().contains("postgres://"), "{err}");
    }
}

#[tokio::test]
async fn no_server_refused_login_and_missing_database_each_say_what_to_do() {
    let Some(_) = postgres() else { return };
    let err = Env::open("postgres://root@127.0.0.1:1/test", EnvOptions::default()).unwrap_err();
    assert!(matches!(err, OpenError::Unreachable { .. }), "{err}");
    assert!(err.to_string().contains("start the server"), "{err}");

    let err = Env::open(with("no_such_wawe_user", "test"), EnvOptions::default()).unwrap_err();
    assert!(matches!(err, OpenError::LoginRefused { .. }), "{err}");
    assert!(err.to_string().contains("check the user"), "{err}");

    let err = Env::open(with("root", "no_such_wawe_db"), EnvOptions::default()).unwrap_err();
    assert!(matches!(err, OpenError::NoDatabase { .. }), "{err}");
    assert!(
        err.to_string().contains("createdb no_such_wawe_db"),
        "{err}"
    );
}

#[tokio::test]
async fn a_schema_of_another_application_is_refused_untouched() {
    let Some(s) = Schema::new("foreign") else {
        return;
    };
    sql(&format!(
        "CREATE SCHEMA {0}; CREATE TABLE {0}.users (id int); INSERT INTO {0}.users VALUES (7)",
        s.0
    ))
    .await;
    let err = Env::open(s.url(), EnvOptions::default()).unwrap_err();
    assert!(matches!(err, OpenError::ForeignSchema { .. }), "{err}");
    assert!(err.to_string().contains("?schema="), "{err}");
    assert_eq!(tables_in(&s.0).await, Some(1), "nothing was created");
}

#[tokio::test]
async fn a_schema_from_a_newer_wawe_is_refused_untouched() {
    let Some(s) = Schema::new("newer") else {
        return;
    };
    let env = Env::open(s.url(), EnvOptions::default()).unwrap();
    env.push(&agent("a"), "q", "keep", PushOptions::default())
        .await
        .unwrap();
    env.close();
    drop(env);
    sql(&format!(
        "UPDATE {}.environment SET schema_version = 99",
        s.0
    ))
    .await;
    let err = Env::open(s.url(), EnvOptions::default()).unwrap_err();
    assert!(
        matches!(err, OpenError::NewerVersion { found: 99, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("upgrade wawe"), "{err}");
}

/// A schema from before trails were ranked (version 2, or the version 3 that
/// indexed the journal by subject) gets the rank index when opened, and loses
/// version 3's journal index; its data stays.
#[tokio::test]
async fn an_older_schema_gets_the_rank_index_when_opened() {
    for old in [2, 3] {
        let Some(s) = Schema::new(&format!("older{old}")) else {
            return;
        };
        let env = Env::open(s.url(), EnvOptions::default()).unwrap();
        env.deposit(&agent("a"), "kept", 3.0, None).await.unwrap();
        env.close();
        drop(env);
        let subject = if old == 3 {
            "CREATE INDEX events_by_subject ON events (subject, seq);"
        } else {
            ""
        };
        sql(&format!(
            "SET search_path TO {0}; DROP INDEX signals_by_rank; {subject}
             UPDATE environment SET schema_version = {old}",
            s.0
        ))
        .await;
        let env = Env::open(s.url(), EnvOptions::default()).unwrap();
        assert!(env.sense("kept").await.unwrap() > 2.9);
        env.close();
        let row = client()
            .await
            .query_one(
                &format!(
                    "SELECT (SELECT schema_version FROM {0}.environment),
                            (SELECT count(*) FROM pg_indexes WHERE schemaname = $1
                                 AND indexname = 'signals_by_rank'),
                            (SELECT count(*) FROM pg_indexes WHERE schemaname = $1
                                 AND indexname = 'events_by_subject')",
                    s.0
                ),
                &[&s.0],
            )
            .await
            .unwrap();
        let got: (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
        assert_eq!(got, (wawe::env::SCHEMA_VERSION, 1, 0), "from version {old}");
    }
}

#[tokio::test]
async fn looking_at_a_missing_environment_creates_nothing() {
    let Some(s) = Schema::new("missing") else {
        return;
    };
    let err = Env::open_existing(s.url(), EnvOptions::default()).unwrap_err();
    assert!(matches!(err, OpenError::Missing { .. }), "{err}");
    assert_eq!(tables_in(&s.0).await, None, "no schema was created");
}

#[tokio::test]
async fn two_environments_share_a_database_in_schemas_of_their_own() {
    let (Some(a), Some(b)) = (Schema::new("team_a"), Schema::new("team_b")) else {
        return;
    };
    let (ea, eb) = (
        Env::open(a.url(), EnvOptions::default()).unwrap(),
        Env::open(b.url(), EnvOptions::default()).unwrap(),
    );
    ea.push(&agent("a"), "q", "for a", PushOptions::default())
        .await
        .unwrap();
    assert_eq!(ea.list_tasks(None, None, 10).await.unwrap().len(), 1);
    assert!(eb.list_tasks(None, None, 10).await.unwrap().is_empty());
    ea.close();
    eb.close();
}

/// Terminate every connection of the environment in `schema` (its writers,
/// readers and listener), as an operator or a failing network would.
async fn kill_connections(schema: &str) -> i64 {
    let (client, conn) = tokio_postgres::connect(postgres().unwrap(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let row = client
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
             WHERE application_name = $1",
            &[&format!("wawe/{schema}")],
        )
        .await
        .unwrap();
    row.get(0)
}

/// Retry `op` while the environment reports itself unavailable (a lost
/// connection is reported, never hidden), up to a few seconds.
async fn retried<T, F, Fut>(mut op: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = wawe::env::EnvResult<T>>,
{
    for _ in 0..100 {
        match op().await {
            Ok(v) => return v,
            Err(wawe::env::EnvError::Unavailable(why)) => {
                assert!(why.contains("PostgreSQL"), "{why}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("{e}"),
        }
    }
    panic!("the environment did not come back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_connections_are_replaced_and_waits_still_wake() {
    let Some(s) = Schema::new("killed") else {
        return;
    };
    let clock = ManualClock::new(common::T0);
    let open = || Env::open_with_clock(s.url(), EnvOptions::default(), Arc::new(clock.clone()));
    let (host1, host2) = (open().unwrap(), open().unwrap());
    let w = agent("w");
    host1
        .push(&w, "warm", "", PushOptions::default())
        .await
        .unwrap();
    assert!(
        kill_connections(&s.0).await >= 4,
        "writers, readers and listeners"
    );

    // Both hosts reconnect: writes and reads work again.
    let first = retried(|| host1.push(&w, "q", "after", PushOptions::default())).await;
    let task = retried(|| host2.get_task(first.id)).await;
    assert_eq!(task.payload, "after");

    // A wait on one host is woken by a commit of the other (the listener
    // reconnected and LISTENs again).
    let waiter = {
        let host2 = host2.clone();
        tokio::spawn(async move {
            let from = host2.latest_seq().await.unwrap();
            let filter = EventFilter {
                kinds: vec!["value.".into()],
                ..Default::default()
            };
            host2.wait_events(from, &filter, 20_000).await.unwrap()
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    retried(|| host1.put_value(&w, "k", "v", None, None)).await;
    let seen = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .expect("the waiter was woken")
        .unwrap();
    assert_eq!(seen.len(), 1);
    host1.close();
    host2.close();
}

/// A host that cannot renew its heartbeat (here: another session holds the
/// `hosts` table locked, as a stuck link would hold its writes) stops its
/// agents on its own, before its ttl is up and others may reap it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_that_cannot_renew_its_heartbeat_stops_its_agents_before_its_ttl() {
    use wawe::runtime::{AgentSpec, Limits, RestartPolicy, Runtime, RuntimeOptions};
    let Some(s) = Schema::new("cutoff") else {
        return;
    };
    let env = Env::open(s.url(), EnvOptions::default()).unwrap();
    let ttl = Duration::from_secs(2);
    let runtime = Runtime::new(RuntimeOptions {
        host_ttl: ttl,
        ..RuntimeOptions::default()
    })
    .unwrap();
    let host = runtime.start(env.clone()).await.unwrap();
    let hello = runtime
        .load(std::path::Path::new(env!("WAWE_AGENT_HELLO")))
        .unwrap();
    let agent = host.spawn(
        &hello,
        AgentSpec {
            name: "hello".into(),
            replica: 0,
            limits: Limits::default(),
            restart: RestartPolicy::Always,
            config: vec![("idle_ms".into(), "600000".into())],
            grants: Default::default(),
        },
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !agent.is_finished(),
        "the agent runs while the host is alive"
    );

    // Block the heartbeat: the keepalive's update waits behind this lock.
    let (client, conn) = tokio_postgres::connect(postgres().unwrap(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
        .batch_execute(&format!(
            "BEGIN; LOCK TABLE {}.hosts IN ACCESS EXCLUSIVE MODE",
            s.0
        ))
        .await
        .unwrap();
    let blocked = tokio::time::Instant::now();
    // Stopped means its instance is gone (recording its end must wait for
    // the database, as on a dead link).
    while host.counters().running > 0 && blocked.elapsed() < ttl * 2 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = blocked.elapsed();
    client.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(host.counters().stopped, 1, "the agent was not stopped");
    assert!(
        took < ttl,
        "stopped {took:?} after the heartbeat stopped: not before the ttl of {ttl:?}"
    );
    // Once the database answers again, its end is recorded and it stays stopped.
    let end = tokio::time::timeout(Duration::from_secs(10), agent.join()).await;
    assert!(
        end.is_ok(),
        "the agent's end was not recorded once the lock went"
    );
    env.close();
}

/// Everything an environment holds, as its readers see it.
async fn contents(env: &Env) -> String {
    use wawe::env::EventFilter;
    format!(
        "{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}",
        env.list_tasks(None, None, 1_000).await.unwrap(),
        env.list_reservations("").await.unwrap(),
        env.read_events(0, &EventFilter::default(), 10_000)
            .await
            .unwrap(),
        env.list_values("").await.unwrap(),
        env.strongest("", 100).await.unwrap(),
        env.recent_learnings(None, 100).await.unwrap(),
        env.list_agents().await.unwrap(),
        env.stats().await.unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_environment_moves_from_sqlite_to_postgres_and_back_whole() {
    use wawe::env::{AgentEnd, Mode};
    let Some(s) = Schema::new("copy") else { return };
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(common::T0);
    let open = |at: &str| Env::open_with_clock(at, EnvOptions::default(), Arc::new(clock.clone()));
    let first = dir.path().join("first.db");
    let sqlite = open(first.to_str().unwrap()).unwrap();
    let (a, b) = (agent("a"), agent("b"));
    // A little of everything: tasks done, claimed, blocked on a dependency;
    // a lease held; a learning endorsed; a signal; a value and a tombstone;
    // a host and an agent.
    let host = sqlite.register_host("m1", 1, 10_000).await.unwrap();
    let worker = sqlite.agent_started(&host, "w", 0, "digest").await.unwrap();
    let dep = sqlite
        .push(&a, "q", "dep", PushOptions::default())
        .await
        .unwrap()
        .id;
    let blocked = sqlite
        .push(
            &a,
            "q",
            "after",
            PushOptions {
                depends_on: vec![dep],
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .id;
    let held = sqlite
        .claim(&worker, "q", 60_000, 0)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(held.id, dep);
    let lease = sqlite
        .reserve(&worker, &["src/".to_string()], Mode::Exclusive, 60_000, 0)
        .await
        .unwrap();
    let l = sqlite
        .record_learning(&a, "t", "caches help", &["perf".into()])
        .await
        .unwrap();
    sqlite.endorse(&b, l).await.unwrap();
    sqlite
        .deposit(&a, "trail/x", 3.0, Some(60_000))
        .await
        .unwrap();
    sqlite
        .put_value(&a, "k", "v1", None, Some(lease.token))
        .await
        .unwrap();
    sqlite.put_value(&a, "gone", "x", None, None).await.unwrap();
    sqlite.delete_value(&a, "gone", None, None).await.unwrap();
    let before = contents(&sqlite).await;

    let pg = open(&s.url()).unwrap();
    let copied = sqlite.copy_to(&pg).await.unwrap();
    assert_eq!(copied.last_token, lease.token);
    assert_eq!(contents(&pg).await, before, "the copy reads the same");
    // A target that holds anything is refused, and left as it was.
    let err = sqlite.copy_to(&pg).await.unwrap_err();
    assert!(err.to_string().contains("not empty"), "{err}");
    assert_eq!(contents(&pg).await, before);

    // The copy carries on where the original stood: the claim completes with
    // its token and readies the dependent; new numbers follow the old ones.
    pg.complete(&worker, held.id, held.token, "ok")
        .await
        .unwrap();
    assert_eq!(
        pg.get_task(blocked).await.unwrap().state,
        wawe::env::TaskState::Ready
    );
    let next = pg
        .push(&a, "q", "new", PushOptions::default())
        .await
        .unwrap()
        .id;
    assert!(next > blocked);
    let put = pg.put_value(&a, "k", "v2", None, Some(lease.token)).await;
    assert!(put.is_ok(), "the lease's token is still current: {put:?}");
    let newer = pg
        .reserve(&b, &["other".to_string()], Mode::Exclusive, 60_000, 0)
        .await
        .unwrap();
    assert!(newer.token > lease.token);
    assert_eq!(pg.search_learnings("caches", 5).await.unwrap()[0].id, l);
    pg.agent_ended(&worker, AgentEnd::Exited, "done")
        .await
        .unwrap();
    let moved_on = contents(&pg).await;

    // And back to a new SQLite file.
    let second = dir.path().join("second.db");
    let back = open(second.to_str().unwrap()).unwrap();
    pg.copy_to(&back).await.unwrap();
    assert_eq!(contents(&back).await, moved_on);
    assert_eq!(back.search_learnings("caches", 5).await.unwrap()[0].id, l);
    let last = back.latest_seq().await.unwrap();
    back.push(&a, "q", "later", PushOptions::default())
        .await
        .unwrap();
    assert_eq!(back.latest_seq().await.unwrap(), last + 1);
    for env in [sqlite, pg, back] {
        env.close();
    }
}

/// `wawe run demo/swarm.toml --env postgres://…` ends as on SQLite: every
/// task done (the workspace edits checked by the demo's `editor`), crashes
/// healed, no lease held.
#[test]
fn the_demo_swarm_ends_on_postgres_as_on_sqlite() {
    let Some(s) = Schema::new("demo") else { return };
    let dir = tempfile::tempdir().unwrap();
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../demo/swarm.toml");
    let summary = |env: &str| -> serde_json::Value {
        // A workspace of its own for each run, outside the repository.
        let files = tempfile::tempdir_in(dir.path()).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_wawe"))
            .arg("run")
            .arg(&manifest)
            .args(["--env", env, "--json", "--reset", "--workspace"])
            .arg(files.path())
            .current_dir(dir.path())
            .env_remove("WAWE_ENV")
            .env_remove("WAWE_LOG")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{env}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_str(stdout.trim()).unwrap()
    };
    let on_postgres = summary(&s.url());
    let on_sqlite = summary(dir.path().join("demo.db").to_str().unwrap());
    for key in ["tasks", "leases_held"] {
        assert_eq!(on_postgres[key], on_sqlite[key], "{key}");
    }
    assert!(
        on_postgres["runs"]["crashed"].as_u64().unwrap() >= 1,
        "{on_postgres}"
    );
    assert_eq!(on_postgres["runs"]["failed"], 0, "{on_postgres}");
}

/// Writers keep pushing while their connections are killed again and again
/// (`pg_terminate_backend`, mid-batch): every push acknowledged is there
/// exactly once, one refused is there at most once, and they carry on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_killed_mid_batch_lose_nothing_acknowledged_and_do_nothing_twice() {
    use wawe::env::{Durability, EnvError};
    let Some(s) = Schema::new("midbatch") else {
        return;
    };
    let env = Env::open(
        s.url(),
        EnvOptions {
            durability: Durability::Full,
            ..EnvOptions::default()
        },
    )
    .unwrap();
    const WRITERS: usize = 16;
    const PUSHES: usize = 100;
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let env = env.clone();
            tokio::spawn(async move {
                let me = agent(&format!("writer{w}"));
                let (mut acked, mut refused) = (Vec::new(), Vec::new());
                for i in 0..PUSHES {
                    let payload = format!("{w}-{i}");
                    match env.push(&me, "q", &payload, PushOptions::default()).await {
                        Ok(_) => acked.push(payload),
                        Err(EnvError::Unavailable(_)) => refused.push(payload),
                        Err(e) => panic!("{e}"),
                    }
                }
                (acked, refused)
            })
        })
        .collect();
    let mut killed = 0;
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(60)).await;
        killed += kill_connections(&s.0).await;
    }
    let mut outcomes = Vec::new();
    for w in writers {
        outcomes.push(w.await.unwrap());
    }
    assert!(
        killed > 0,
        "no connection was killed: the test proves nothing"
    );
    let tasks = retried(|| env.list_tasks(None, None, 100_000)).await;
    let mut seen = std::collections::BTreeMap::new();
    for t in &tasks {
        *seen.entry(t.payload.clone()).or_insert(0u32) += 1;
    }
    assert!(seen.values().all(|&n| n == 1), "a push was done twice");
    let (mut acked, mut refused) = (0, 0);
    for (ok, failed) in &outcomes {
        acked += ok.len();
        refused += failed.len();
        for p in ok {
            assert_eq!(seen.get(p), Some(&1), "acknowledged push {p} was lost");
        }
    }
    assert!(refused > 0, "no batch was cut: the test proves nothing");
    assert!(tasks.len() >= acked && tasks.len() <= acked + refused);
    env.close();
}
