//! Shared setup for environment tests: the conformance suite.
//!
//! Each rule is written once, as a plain `async fn`, and stamped once per
//! backend by [`every_backend!`]: `sqlite::rule` runs it on a fresh database
//! file in a temp dir, `postgres::rule` on a fresh schema it drops afterwards.
//! Both run with a manual clock, which on PostgreSQL replaces the database's.
//!
//! The PostgreSQL half needs a server: `WAWE_TEST_POSTGRES` (default
//! `postgres://root@127.0.0.1:5432/test`). Where none answers it says so on
//! one line and does not run; under `CI=true` that is a failure.
#![allow(dead_code)]

use std::cell::Cell;
use std::future::Future;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use wawe::env::{AgentId, Env, EnvLocation, EnvOptions, ManualClock};

/// Which backend a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

thread_local! {
    /// The backend [`open`] uses on this thread (the one running the test).
    static BACKEND: Cell<Backend> = const { Cell::new(Backend::Sqlite) };
}

/// Stamp each listed `async fn` rule as a test per backend.
#[macro_export]
macro_rules! every_backend {
    ($($rule:ident),* $(,)?) => {
        $crate::every_backend!(@on sqlite, Sqlite, $($rule),*);
        $crate::every_backend!(@on postgres, Postgres, $($rule),*);
    };
    (@on $module:ident, $backend:ident, $($rule:ident),*) => {
        mod $module {
            $(
                #[test]
                fn $rule() {
                    $crate::common::run($crate::common::Backend::$backend, super::$rule);
                }
            )*
        }
    };
}

/// Run `rule` on `backend` in a runtime of its own (two worker threads).
pub fn run<F, Fut>(backend: Backend, rule: F)
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = ()>,
{
    if !on_backend(backend) {
        return;
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(rule());
}

/// Make [`open`] on this thread use `backend`; false (after saying why) when
/// that backend cannot be reached here.
pub fn on_backend(backend: Backend) -> bool {
    if backend == Backend::Postgres && postgres().is_none() {
        return false;
    }
    BACKEND.set(backend);
    true
}

/// The PostgreSQL server the suite uses, if one answers. Where none does, one
/// line says so (once per test binary, past the test harness's capture);
/// under `CI=true` every PostgreSQL test fails instead.
pub fn postgres() -> Option<&'static str> {
    static URL: OnceLock<Result<String, String>> = OnceLock::new();
    let found = URL.get_or_init(|| {
        let url = std::env::var("WAWE_TEST_POSTGRES")
            .unwrap_or_else(|_| "postgres://root@127.0.0.1:5432/test".into());
        match reachable(&url) {
            Ok(()) => Ok(url),
            Err(why) => {
                let line = format!(
                    "wawe: the PostgreSQL half of the environment suite is NOT RUN: {why}; \
                     set WAWE_TEST_POSTGRES=postgres://USER@HOST:PORT/DB to point it at a server"
                );
                let _ = writeln!(std::io::stderr(), "{line}");
                Err(line)
            }
        }
    });
    match found {
        Ok(url) => Some(url.as_str()),
        Err(line) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("{line} (CI=true: a backend that cannot be tested is a failure)")
        }
        Err(_) => None,
    }
}

fn reachable(url: &str) -> Result<(), String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("{url} is not a URL ({e})"))?;
    let host = parsed.host_str().unwrap_or("localhost").to_owned();
    let port = parsed.port().unwrap_or(5432);
    let addrs = std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), port))
        .map_err(|e| format!("cannot resolve {host}: {e}"))?;
    for addr in addrs {
        if std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok() {
            return Ok(());
        }
    }
    Err(format!("no server answers at {host}:{port}"))
}

/// A fresh schema name, unique across runs and processes.
fn fresh_schema() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "wt_{}_{}_{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// The URL of `schema` on the suite's server.
pub fn postgres_url(schema: &str) -> String {
    let base = postgres().expect("PostgreSQL is reachable");
    EnvLocation::parse(base)
        .with_schema(schema)
        .expect("WAWE_TEST_POSTGRES is a postgres:// URL")
        .to_env_arg()
}

/// Drop `schema` (with everything in it) on the suite's server.
pub fn drop_schema(schema: &str) {
    let Some(url) = postgres() else { return };
    let (url, schema) = (url.to_owned(), schema.to_owned());
    // A thread of its own: this runs from `Drop`, maybe inside a runtime.
    let dropped = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        rt.block_on(async {
            let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
            tokio::spawn(conn);
            client
                .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                .await
        })
    })
    .join();
    if let Ok(Err(e)) = dropped {
        let _ = writeln!(std::io::stderr(), "cannot drop test schema: {e}");
    }
}

/// An environment of its own on the test's backend, driven by a manual clock.
pub struct TestEnv {
    pub env: Env,
    pub clock: ManualClock,
    pub dir: tempfile::TempDir,
    /// Where it lives, for [`TestEnv::another`].
    pub location: EnvLocation,
    /// The PostgreSQL schema to drop afterwards.
    schema: Option<String>,
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        if let Some(schema) = &self.schema {
            self.env.close();
            drop_schema(schema);
        }
    }
}

pub const T0: u64 = 1_700_000_000_000;

pub fn open() -> TestEnv {
    open_with(EnvOptions::default())
}

pub fn open_with(opts: EnvOptions) -> TestEnv {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = ManualClock::new(T0);
    let (location, schema) = match BACKEND.get() {
        Backend::Sqlite => (EnvLocation::File(dir.path().join("env.db")), None),
        Backend::Postgres => {
            let schema = fresh_schema();
            (EnvLocation::parse(&postgres_url(&schema)), Some(schema))
        }
    };
    let env =
        Env::open_with_clock(&location, opts, Arc::new(clock.clone())).expect("open environment");
    TestEnv {
        env,
        clock,
        dir,
        location,
        schema,
    }
}

impl TestEnv {
    /// A second handle on the same environment, as another process (or
    /// host) would have: its own writer, its own waiters.
    pub fn another(&self) -> Env {
        Env::open_with_clock(
            &self.location,
            self.env.options().clone(),
            Arc::new(self.clock.clone()),
        )
        .expect("open the environment again")
    }
}

pub fn agent(name: &str) -> AgentId {
    AgentId::new(name)
}

pub fn res(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// Wait (up to 10 s, checking every 10 ms) until `cond` holds; panic if it never does.
pub async fn eventually(cond: impl AsyncFn() -> bool) {
    let until = std::time::Instant::now() + Duration::from_secs(10);
    while !cond().await {
        assert!(std::time::Instant::now() < until, "condition never held");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
