//! Simulated pages of the live view, for benchmarks: each opens the stream
//! and re-fetches what a page on the tasks view would, as a browser does.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::task::JoinHandle;

/// How long a page waits after a journal frame before re-fetching its list
/// (what the page's debounce does).
const DEBOUNCE: Duration = Duration::from_millis(1000);

/// `n` open pages, closed when dropped.
pub(super) struct Pages {
    tasks: Vec<JoinHandle<()>>,
    /// Frames the pages received.
    pub(super) frames: Arc<AtomicU64>,
    /// Requests the pages made besides their stream.
    pub(super) fetches: Arc<AtomicU64>,
}

impl Drop for Pages {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// One GET on its own connection: status and body.
pub(super) async fn get(addr: SocketAddr, path: &str) -> anyhow::Result<(u16, Bytes)> {
    let res = send(addr, path).await?;
    let status = res.status().as_u16();
    Ok((status, res.into_body().collect().await?.to_bytes()))
}

async fn send(addr: SocketAddr, path: &str) -> anyhow::Result<hyper::Response<Incoming>> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let req = http::Request::get(path)
        .header("host", addr.to_string())
        .body(Empty::<Bytes>::new())?;
    Ok(sender.send_request(req).await?)
}

/// Open `n` pages on the view at `addr`; each has loaded the overview and
/// a page of tasks and holds its stream open before this returns.
pub(super) async fn open(addr: SocketAddr, n: u32) -> anyhow::Result<Pages> {
    let frames = Arc::new(AtomicU64::new(0));
    let fetches = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..n {
        get(addr, "/api/overview").await?;
        get(addr, "/api/tasks?limit=100").await?;
        let stream = send(addr, "/api/stream").await?;
        anyhow::ensure!(
            stream.status() == 200,
            "the stream answered {}",
            stream.status()
        );
        let (frames, fetches) = (frames.clone(), fetches.clone());
        tasks.push(tokio::spawn(async move {
            let _ = follow(addr, stream.into_body(), &frames, &fetches).await;
        }));
    }
    Ok(Pages {
        tasks,
        frames,
        fetches,
    })
}

/// Read the stream; after journal frames, re-fetch the task list at most
/// once per [`DEBOUNCE`].
async fn follow(
    addr: SocketAddr,
    mut body: Incoming,
    frames: &AtomicU64,
    fetches: &AtomicU64,
) -> anyhow::Result<()> {
    let mut due: Option<Instant> = None;
    loop {
        let wait = due.map_or(Duration::from_secs(3600), |d| {
            d.saturating_duration_since(Instant::now())
        });
        tokio::select! {
            frame = body.frame() => {
                let Some(frame) = frame else { return Ok(()) };
                if let Ok(data) = frame?.into_data() {
                    let text = String::from_utf8_lossy(&data);
                    let n = text.matches("\n\n").count() as u64;
                    frames.fetch_add(n, Ordering::Relaxed);
                    if text.contains("event: journal") && due.is_none() {
                        due = Some(Instant::now() + DEBOUNCE);
                    }
                }
            }
            _ = tokio::time::sleep(wait) => {
                due = None;
                get(addr, "/api/tasks?limit=100").await?;
                fetches.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// This process's resident memory, in KiB (Linux; 0 elsewhere).
pub(super) fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4)
}

/// One open stream, read as text.
pub(super) struct Stream {
    body: Incoming,
    seen: String,
}

impl Stream {
    /// Open the view's stream at `addr`.
    pub(super) async fn open(addr: SocketAddr) -> anyhow::Result<Stream> {
        let res = send(addr, "/api/stream").await?;
        anyhow::ensure!(res.status() == 200, "the stream answered {}", res.status());
        Ok(Stream {
            body: res.into_body(),
            seen: String::new(),
        })
    }

    /// Read until what arrived since the last match satisfies `found`.
    pub(super) async fn until(
        &mut self,
        wait: Duration,
        found: impl Fn(&str) -> bool,
    ) -> anyhow::Result<()> {
        let until = tokio::time::Instant::now() + wait;
        while !found(&self.seen) {
            let frame = tokio::time::timeout_at(until, self.body.frame())
                .await
                .map_err(|_| anyhow::anyhow!("nothing arrived on the stream within {wait:?}"))?
                .ok_or_else(|| anyhow::anyhow!("the stream ended"))??;
            if let Ok(data) = frame.into_data() {
                self.seen.push_str(&String::from_utf8_lossy(&data));
            }
        }
        self.seen.clear();
        Ok(())
    }
}
