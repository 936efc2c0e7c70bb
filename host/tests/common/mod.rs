//! Shared setup for environment tests: a fresh database file in a temp dir,
//! with a manual clock.
#![allow(dead_code)]

use std::sync::Arc;

use wawe::env::{AgentId, Env, EnvOptions, ManualClock};

/// An environment in its own temp dir, driven by a manual clock.
pub struct TestEnv {
    pub env: Env,
    pub clock: ManualClock,
    pub dir: tempfile::TempDir,
}

pub const T0: u64 = 1_700_000_000_000;

pub fn open() -> TestEnv {
    open_with(EnvOptions::default())
}

pub fn open_with(opts: EnvOptions) -> TestEnv {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = ManualClock::new(T0);
    let env = Env::open_with_clock(dir.path().join("env.db"), opts, Arc::new(clock.clone()))
        .expect("open environment");
    TestEnv { env, clock, dir }
}

pub fn agent(name: &str) -> AgentId {
    AgentId::new(name)
}

pub fn res(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}
