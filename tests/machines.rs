//! Hosts on several machines, and faults of the database itself.
//!
//! Three `wawe run` processes, each in a network namespace of its own, reach
//! one PostgreSQL over a veth link of their own. One host is SIGKILLed, one is
//! cut off from the network mid-work, one keeps going: the survivor finishes
//! every task, each completed exactly once, no lease left held; the cut-off
//! host stops its agents before it is reaped, and nothing its agents try once
//! the link is back completes anything. And a server restarted (crashed) under
//! running writers loses nothing acknowledged at `full` and does nothing twice.
//!
//! Each test runs a PostgreSQL cluster of its own (`initdb`, `pg_ctl`) in a
//! temp dir, so the machine's own server stays as it is. They need root, `ip`
//! and PostgreSQL's server binaries; without them they say so on one line,
//! and under `CI=true` they fail.

mod support;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use support::{KillOnDrop, agent, block, cache_dir, wait_for};
use wawe::env::{Env, EnvOptions, EventFilter, TaskState};

/// Run a command; its failure is the test's.
fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

fn ip(args: &[&str]) {
    run(Command::new("ip").args(args));
}

/// PostgreSQL's server binaries, if installed.
fn pg_bin() -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| Some(e.ok()?.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    found.sort();
    found.pop()
}

/// Whether this machine can run the test: why not, if not.
fn missing() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("it needs root (network namespaces)".into());
    }
    if Command::new("ip").arg("-V").output().is_err() {
        return Some("`ip` (iproute2) is not installed".into());
    }
    if pg_bin().is_none() {
        return Some("PostgreSQL's server binaries (initdb) are not installed".into());
    }
    let postgres_user = Command::new("id").arg("postgres").output();
    if !postgres_user.is_ok_and(|o| o.status.success()) {
        return Some("there is no `postgres` user to run a cluster as".into());
    }
    None
}

/// Three namespaces, each with a veth link to this one; removed on drop.
struct Machines {
    prefix: String,
    subnet: u32,
}

impl Machines {
    fn new() -> Machines {
        let pid = std::process::id();
        let m = Machines {
            prefix: format!("ww{}", pid % 100_000),
            subnet: 100 + pid % 100,
        };
        for i in 1..=3 {
            let (ns, here, there) = (m.ns(i), m.link(i), format!("{}p{i}", m.prefix));
            ip(&["netns", "add", &ns]);
            ip(&["link", "add", &here, "type", "veth", "peer", "name", &there]);
            ip(&["link", "set", &there, "netns", &ns]);
            ip(&["addr", "add", &format!("{}/24", m.server(i)), "dev", &here]);
            ip(&["link", "set", &here, "up"]);
            let addr = format!("10.{}.{i}.2/24", m.subnet);
            ip(&[
                "netns", "exec", &ns, "ip", "addr", "add", &addr, "dev", &there,
            ]);
            ip(&["netns", "exec", &ns, "ip", "link", "set", &there, "up"]);
            ip(&["netns", "exec", &ns, "ip", "link", "set", "lo", "up"]);
        }
        m
    }

    fn ns(&self, i: u32) -> String {
        format!("{}n{i}", self.prefix)
    }

    /// This side of machine `i`'s link.
    fn link(&self, i: u32) -> String {
        format!("{}h{i}", self.prefix)
    }

    /// The server's address as machine `i` reaches it.
    fn server(&self, i: u32) -> String {
        format!("10.{}.{i}.1", self.subnet)
    }
}

impl Drop for Machines {
    fn drop(&mut self) {
        for i in 1..=3 {
            let _ = Command::new("ip")
                .args(["link", "del", &self.link(i)])
                .output();
            let _ = Command::new("ip")
                .args(["netns", "del", &self.ns(i)])
                .output();
        }
    }
}

/// A PostgreSQL cluster of the test's own; stopped on drop.
struct Cluster {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Cluster {
    fn start(listen: &[String]) -> Cluster {
        let bin = pg_bin().unwrap();
        let dir = tempfile::tempdir().unwrap();
        run(Command::new("chown").arg("postgres").arg(dir.path()));
        let data = dir.path().join("data");
        // A port no one uses now (tests of this file may run at once).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let as_postgres = |tool: &str| {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(bin.join(tool));
            c
        };
        run(as_postgres("initdb").arg("-D").arg(&data).args([
            "-A",
            "trust",
            "-U",
            "root",
            "--no-sync",
        ]));
        let mut conf = std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .unwrap();
        let mut addresses = vec!["127.0.0.1".to_owned()];
        addresses.extend_from_slice(listen);
        writeln!(
            conf,
            "listen_addresses = '{}'\nport = {port}\nunix_socket_directories = '{}'",
            addresses.join(","),
            dir.path().display()
        )
        .unwrap();
        let mut hba = std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("pg_hba.conf"))
            .unwrap();
        writeln!(hba, "host all all 10.0.0.0/8 trust").unwrap();
        run(as_postgres("pg_ctl")
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(dir.path().join("server.log"))
            .args(["-w", "start"]));
        Cluster {
            bin,
            data,
            port,
            _dir: dir,
        }
    }

    /// Stop the server as a crash would (no shutdown checkpoint), then start
    /// it. (Its output goes to the log: a pipe held by the new server would
    /// never reach its end.)
    fn crash_and_restart(&self) {
        run(Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(self._dir.path().join("server.log"))
            .args(["-m", "immediate", "-w", "restart"]));
    }

    /// The environment's URL as seen from `host` (an address of the server).
    fn url(&self, host: &str) -> String {
        format!(
            "postgres://root@{host}:{}/postgres?schema=machines",
            self.port
        )
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "stop"])
            .output();
    }
}

/// `wawe run manifest` as a host on machine `ns`, its stderr to `log`.
fn host_on(ns: &str, dir: &Path, manifest: &Path, url: &str, log: &Path) -> KillOnDrop {
    let child = Command::new("ip")
        .args(["netns", "exec", ns])
        .arg(env!("CARGO_BIN_EXE_wawe"))
        .arg("run")
        .arg(manifest)
        .args(["--env", url, "--host-ttl", "4s", "--quiet"])
        .current_dir(dir)
        .env_remove("WAWE_ENV")
        .env_remove("WAWE_LOG")
        .env("WAWE_CACHE_DIR", cache_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    KillOnDrop(child)
}

fn manifest(dir: &Path, name: &str, text: String) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// When (ms since the epoch) a host's log says it stopped its agents for
/// want of a heartbeat.
fn self_stop_at(log: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(log).ok()?;
    let line = text
        .lines()
        .find(|l| l.contains("could not renew its heartbeat"))?;
    let stamp = line.split_whitespace().next()?;
    let at = humantime::parse_rfc3339_weak(stamp.trim_end_matches('Z')).ok()?;
    Some(at.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis() as u64)
}

/// Whether the test can run here; if not, says why on one line (and fails
/// under `CI=true`).
fn can_run(what: &str) -> bool {
    let Some(why) = missing() else {
        return true;
    };
    let line = format!("wawe: the test of {what} is NOT RUN: {why}");
    assert!(
        std::env::var("CI").ok().as_deref() != Some("true"),
        "{line} (CI=true: a test that cannot run is a failure)"
    );
    let _ = writeln!(std::io::stderr(), "{line}");
    false
}

#[test]
fn hosts_on_three_machines_one_killed_one_cut_off_the_survivor_finishes_every_task_once() {
    if !can_run("hosts on several machines") {
        return;
    }
    let machines = Machines::new();
    let cluster = Cluster::start(&(1..=3).map(|i| machines.server(i)).collect::<Vec<_>>());
    let dir = tempfile::tempdir().unwrap();
    let (worker, producer) = (agent("worker"), agent("producer"));
    let workers = |n: u32| {
        format!(
            "[agents.worker]\nmodule = \"{}\"\nreplicas = {n}\n\
             [agents.worker.config]\nwork_scale = \"400000\"\nlease_ms = \"2000\"\n",
            worker.display()
        )
    };
    let killed = manifest(dir.path(), "killed.toml", workers(2));
    let cut = manifest(dir.path(), "cut.toml", workers(2));
    let survivor = manifest(
        dir.path(),
        "survivor.toml",
        format!(
            "[agents.producer]\nmodule = \"{}\"\n[agents.producer.config]\ntasks = \"40\"\n\
             max_attempts = \"10\"\n\n{}",
            producer.display(),
            workers(2)
        ),
    );
    let log = |name: &str| dir.path().join(format!("{name}.log"));
    // The survivor first: its producer creates the work.
    let on = |i: u32, manifest: &Path, name: &str| {
        let url = cluster.url(&machines.server(i));
        host_on(&machines.ns(i), dir.path(), manifest, &url, &log(name))
    };
    let mut c = on(3, &survivor, "survivor");
    let env = wait_for("the environment", Duration::from_secs(60), || {
        Env::open_existing(cluster.url("127.0.0.1"), EnvOptions::default()).ok()
    });
    let mut a = on(1, &killed, "killed");
    let mut b = on(2, &cut, "cut");

    // Each host's id names its process (`ip netns exec` execs wawe in place).
    let host_of = |child: &KillOnDrop| -> String {
        let pid = format!("-{}-", child.0.id());
        wait_for("the host to register", Duration::from_secs(60), || {
            block(env.list_hosts())
                .ok()?
                .into_iter()
                .find(|h| h.id.contains(&pid))
                .map(|h| h.id)
        })
    };
    let (killed_host, cut_host) = (host_of(&a), host_of(&b));
    wait_for(
        "the killed and cut-off hosts to hold tasks",
        Duration::from_secs(90),
        || {
            let tasks = block(env.list_tasks(None, None, 1_000)).ok()?;
            let held_by = |host: &str| {
                tasks.iter().any(|t| {
                    t.claimed_by
                        .as_deref()
                        .is_some_and(|by| by.ends_with(&format!("@{host}")))
                })
            };
            let done = tasks.iter().filter(|t| t.state == TaskState::Done).count();
            (done >= 2 && held_by(&killed_host) && held_by(&cut_host)).then_some(())
        },
    );
    a.0.kill().unwrap();
    a.0.wait().unwrap();
    ip(&["link", "set", &machines.link(2), "down"]);

    let deadline = std::time::Instant::now() + Duration::from_secs(240);
    let status = loop {
        if let Some(status) = c.0.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let tasks = block(env.list_tasks(None, None, 1_000)).unwrap_or_default();
            let open: Vec<String> = tasks
                .iter()
                .filter(|t| t.state != TaskState::Done)
                .map(|t| format!("{} {:?} {:?}", t.id, t.state, t.claimed_by))
                .collect();
            panic!(
                "the survivor did not finish in 240 s; tasks not done: {open:?}\n{}",
                std::fs::read_to_string(log("survivor")).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let survivor_log = std::fs::read_to_string(log("survivor")).unwrap_or_default();
    assert!(
        status.success(),
        "the survivor failed: {status}\n{survivor_log}"
    );
    ip(&["link", "set", &machines.link(2), "up"]);
    let ended = wait_for("the cut-off host to end", Duration::from_secs(60), || {
        b.0.try_wait().unwrap()
    });
    let cut_log = std::fs::read_to_string(log("cut")).unwrap_or_default();
    assert!(
        !ended.success() && cut_log.contains("start it again to rejoin"),
        "the cut-off host must end saying it lost its place: {ended}\n{cut_log}"
    );

    // Every task done, each completed exactly once; nothing left held.
    let tasks = block(env.list_tasks(None, None, 1_000)).unwrap();
    assert_eq!(tasks.len(), 40);
    assert!(
        tasks.iter().all(|t| t.state == TaskState::Done),
        "{tasks:?}"
    );
    let completed = EventFilter {
        kinds: vec!["task.completed".into()],
        ..Default::default()
    };
    let completions = block(env.read_events(0, &completed, 10_000)).unwrap();
    let mut per_task: BTreeMap<&str, u32> = BTreeMap::new();
    for e in &completions {
        *per_task.entry(e.subject.as_str()).or_default() += 1;
    }
    assert_eq!(per_task.len(), 40);
    assert!(per_task.values().all(|&n| n == 1), "{per_task:?}");
    let held = block(env.list_reservations("")).unwrap();
    if !held.is_empty() {
        let story: Vec<String> = block(env.read_events(0, &EventFilter::default(), 100_000))
            .unwrap()
            .into_iter()
            .filter(|e| {
                e.kind.starts_with("host.")
                    || held.iter().any(|h| {
                        e.subject.starts_with(&format!("lease/{}", h.lease)) || e.agent == h.holder
                    })
            })
            .map(|e| format!("{} {} {} {} {}", e.at, e.agent, e.kind, e.subject, e.detail))
            .collect();
        panic!("still held: {held:?}\n{}", story.join("\n"));
    }

    // Both lost hosts were reaped; the cut-off one had stopped its agents
    // before, and nothing of its agents completed anything after.
    let hosts = block(env.list_hosts()).unwrap();
    let state = |id: &str| hosts.iter().find(|h| h.id == id).unwrap().state.clone();
    assert_eq!(state(&killed_host), "lost");
    assert_eq!(state(&cut_host), "lost");
    let lost = EventFilter {
        kinds: vec!["host.lost".into()],
        subject_prefix: format!("host/{cut_host}"),
        ..Default::default()
    };
    let reaped = block(env.read_events(0, &lost, 10))
        .unwrap()
        .into_iter()
        .next()
        .expect("the cut-off host's reaping is journaled");
    let stopped = self_stop_at(&log("cut")).unwrap_or_else(|| {
        panic!(
            "the cut-off host did not stop its agents on its own:\n{}",
            std::fs::read_to_string(log("cut")).unwrap_or_default()
        )
    });
    assert!(
        stopped < reaped.at,
        "the cut-off host stopped its agents at {stopped}, after it was reaped at {}",
        reaped.at
    );
    assert!(
        completions
            .iter()
            .filter(|e| e.agent.ends_with(&format!("@{cut_host}")))
            .all(|e| e.seq < reaped.seq),
        "an agent of the cut-off host completed a task after it was reaped"
    );
    env.close();
    drop(machines);
    drop(cluster);
}

/// Writers keep pushing, each push answered after its commit, while the
/// server crashes and comes back: every push acknowledged before, during or
/// after is there exactly once; one refused as unavailable is there at most
/// once (never done twice); the writers carry on once it is back.
#[test]
fn a_server_crash_mid_run_loses_nothing_acknowledged_at_full_and_does_nothing_twice() {
    use wawe::env::{AgentId, Durability, EnvError, PushOptions};
    if !can_run("a server crash") {
        return;
    }
    let cluster = Cluster::start(&[]);
    let env = Env::open(
        cluster.url("127.0.0.1"),
        EnvOptions {
            durability: Durability::Full,
            ..EnvOptions::default()
        },
    )
    .unwrap();
    const WRITERS: usize = 8;
    const PUSHES: usize = 150;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let env = env.clone();
            rt.spawn(async move {
                let me = AgentId::new(format!("writer{w}"));
                let (mut acked, mut refused) = (Vec::new(), Vec::new());
                for i in 0..PUSHES {
                    let payload = format!("{w}-{i}");
                    match env.push(&me, "q", &payload, PushOptions::default()).await {
                        Ok(_) => acked.push(payload),
                        Err(EnvError::Unavailable(_)) => {
                            refused.push(payload);
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        Err(e) => panic!("{e}"),
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                (acked, refused)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    cluster.crash_and_restart();
    let outcomes: Vec<(Vec<String>, Vec<String>)> = writers
        .into_iter()
        .map(|w| rt.block_on(w).unwrap())
        .collect();
    let tasks = block(env.list_tasks(None, None, 100_000)).unwrap();
    let mut seen: BTreeMap<&str, u32> = BTreeMap::new();
    for t in &tasks {
        *seen.entry(t.payload.as_str()).or_default() += 1;
    }
    assert!(seen.values().all(|&n| n == 1), "a push was done twice");
    let (mut acked, mut refused) = (0, 0);
    for (ok, failed) in &outcomes {
        acked += ok.len();
        refused += failed.len();
        for p in ok {
            assert_eq!(
                seen.get(p.as_str()),
                Some(&1),
                "acknowledged push {p} was lost"
            );
        }
    }
    assert!(
        refused > 0,
        "the crash went unnoticed: the test proves nothing"
    );
    assert!(acked > WRITERS * PUSHES / 2, "the writers did not carry on");
    assert!(tasks.len() >= acked && tasks.len() <= acked + refused);
    env.close();
}
