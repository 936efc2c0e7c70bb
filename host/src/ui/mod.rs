//! `wawe ui`: a live web view of an environment, served over HTTP.
//!
//! One page (its assets are built into the binary) and a JSON API read
//! through [`Env`], so it works on every backend. The page is kept current by
//! server-sent events fed from one journal tail per server (`live.rs`), never
//! by pages polling. Read-only unless started with operator actions allowed;
//! bound anywhere but loopback only with a token (`access.rs`).
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use wawe::env::{Env, EnvOptions};
//! use wawe::ui::{Ui, UiOptions};
//!
//! let env = Env::open_existing("swarm.db", EnvOptions::default())?;
//! let ui = Ui::start(env, UiOptions::default()).await?;
//! println!("open {}", ui.url());
//! ui.stopped().await?;
//! # Ok(()) }
//! ```

mod access;
mod api;
mod assets;
mod live;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::env::{Durability, Env};

/// How long stopping waits for open connections to close.
pub const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Where the view listens unless told otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7878";

/// How a view is served.
#[derive(Debug, Clone)]
pub struct UiOptions {
    /// The address to listen on (port 0: any free port).
    pub listen: SocketAddr,
    /// The token every request must carry. Required (and made up when
    /// `None`) for any address but loopback.
    pub token: Option<String>,
    /// Allow operator actions (retry and cancel a task).
    pub actions: bool,
    /// The durability the watched swarm commits with, shown on the page,
    /// when the view runs beside it (`wawe run --ui`). A separate `wawe ui`
    /// cannot know: each host sets its own.
    pub durability: Option<Durability>,
}

impl Default for UiOptions {
    fn default() -> Self {
        UiOptions {
            listen: DEFAULT_LISTEN.parse().expect("a socket address"),
            token: None,
            actions: false,
            durability: None,
        }
    }
}

/// A running view: its address, and the server until [`Ui::stop`].
pub struct Ui {
    addr: SocketAddr,
    token: Option<String>,
    stop: watch::Sender<bool>,
    server: JoinHandle<std::io::Result<()>>,
    tail: JoinHandle<()>,
}

/// What every request handler shares.
pub(crate) struct Shared {
    pub(crate) env: Env,
    pub(crate) live: Arc<live::Live>,
    pub(crate) access: access::Access,
    pub(crate) actions: bool,
    pub(crate) stop: watch::Receiver<bool>,
}

impl Ui {
    /// Bind `opts.listen` and serve the view of `env` in the background.
    pub async fn start(env: Env, opts: UiOptions) -> anyhow::Result<Ui> {
        let loopback = opts.listen.ip().is_loopback();
        let token = match opts.token {
            Some(t) => {
                access::check_token(&t)?;
                Some(t)
            }
            None if loopback => None,
            None => Some(access::new_token()?),
        };
        let listener = tokio::net::TcpListener::bind(opts.listen)
            .await
            .with_context(|| {
                format!(
                    "cannot listen on {}: is another `wawe ui` (or something else) using it? \
                     Pick another with --listen ADDR:PORT (port 0 takes any free one)",
                    opts.listen
                )
            })?;
        let addr = listener.local_addr()?;
        let (stop, stopping) = watch::channel(false);
        let (live, tail) =
            live::Live::start(env.clone(), opts.actions, opts.durability, stopping.clone());
        let shared = Arc::new(Shared {
            live,
            env,
            access: access::Access::new(token.clone(), addr.port(), loopback),
            actions: opts.actions,
            stop: stopping.clone(),
        });
        let app = api::router(shared);
        let mut stopping = stopping;
        let server = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopping.wait_for(|s| *s).await;
                })
                .await
        });
        Ok(Ui {
            addr,
            token,
            stop,
            server,
            tail,
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The token requests must carry, if any.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// The URL to open: with the token in it when there is one (the page
    /// keeps it in a cookie and drops it from the address bar).
    pub fn url(&self) -> String {
        let host = match self.addr.ip() {
            ip if ip.is_unspecified() => "127.0.0.1".to_owned(),
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
            ip => ip.to_string(),
        };
        match &self.token {
            Some(t) => format!("http://{host}:{}/?token={t}", self.addr.port()),
            None => format!("http://{host}:{}/", self.addr.port()),
        }
    }

    /// Wait until the server ends (it runs until [`Ui::stop`] or an error).
    pub async fn stopped(mut self) -> anyhow::Result<()> {
        let served = (&mut self.server).await;
        self.finish(served).await
    }

    /// Close every page's stream and stop serving. A page that stopped
    /// reading is not waited for longer than [`STOP_GRACE`].
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        let served = match tokio::time::timeout(STOP_GRACE, &mut self.server).await {
            Ok(served) => served,
            Err(_) => {
                self.server.abort();
                Ok(Ok(()))
            }
        };
        self.finish(served).await
    }

    async fn finish(
        self,
        served: Result<std::io::Result<()>, tokio::task::JoinError>,
    ) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        self.tail.await?;
        served?.context("the view's server failed")
    }
}
