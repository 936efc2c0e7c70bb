//! An agent's stdout and stderr: split into lines and written to the host
//! log under the agent's id; the last lines are kept to explain a crash
//! (a Rust panic message arrives on stderr just before the trap).

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

use crate::env::AgentId;

/// The longest line kept whole; longer output is cut into pieces this long.
const MAX_LINE: usize = 4096;
/// Lines of stderr kept for crash reports.
const KEPT_LINES: usize = 16;

/// Which stream a line came from.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Stream {
    Stdout,
    Stderr,
}

/// The captured output of one agent instance.
#[derive(Clone)]
pub(crate) struct Output {
    agent: AgentId,
    stream: Stream,
    inner: Arc<Mutex<Lines>>,
}

#[derive(Default)]
struct Lines {
    partial: Vec<u8>,
    tail: VecDeque<String>,
}

impl Output {
    pub(crate) fn new(agent: AgentId, stream: Stream) -> Self {
        Self {
            agent,
            stream,
            inner: Arc::default(),
        }
    }

    /// The last lines written (and any unfinished one), oldest first.
    pub(crate) fn tail(&self) -> Vec<String> {
        let lines = self.inner.lock().expect("output poisoned");
        let mut out: Vec<String> = lines.tail.iter().cloned().collect();
        if !lines.partial.is_empty() {
            out.push(String::from_utf8_lossy(&lines.partial).into_owned());
        }
        out
    }

    fn write(&self, buf: &[u8]) {
        let mut lines = self.inner.lock().expect("output poisoned");
        for &b in buf {
            if b == b'\n' || lines.partial.len() >= MAX_LINE {
                let line = String::from_utf8_lossy(&lines.partial).into_owned();
                lines.partial.clear();
                if b != b'\n' {
                    lines.partial.push(b);
                }
                self.emit(&line);
                if lines.tail.len() == KEPT_LINES {
                    lines.tail.pop_front();
                }
                lines.tail.push_back(line);
            } else {
                lines.partial.push(b);
            }
        }
    }

    fn emit(&self, line: &str) {
        // Rust's panic hint: there is no environment to set in the sandbox,
        // and the crash reason carries a wasm backtrace anyway.
        if line.starts_with("note: run with `RUST_BACKTRACE=1`") {
            return;
        }
        let agent = self.agent.as_str();
        match self.stream {
            Stream::Stdout => {
                tracing::info!(target: "wawe::agent", agent, stream = "stdout", "{line}")
            }
            Stream::Stderr => {
                tracing::info!(target: "wawe::agent", agent, stream = "stderr", "{line}")
            }
        }
    }
}

impl IsTerminal for Output {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for Output {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl AsyncWrite for Output {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.write(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
