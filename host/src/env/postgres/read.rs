//! Read connections: a few per host, each shared by concurrent readers
//! (tokio-postgres pipelines their statements), made on the backend's own
//! runtime and replaced when their connection dies.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::runtime::Handle;
use tokio_postgres::{Client, Row};

use super::{Params, Prepared, connect};
use crate::env::location::PgTarget;
use crate::env::{EnvError, EnvOptions, EnvResult};

/// How many read connections a host keeps.
const READERS: usize = 3;

struct Reader {
    client: Client,
    prepared: Prepared,
}

/// The read connections of one host.
pub(crate) struct Readers {
    target: PgTarget,
    shown: String,
    rt: Handle,
    opts: EnvOptions,
    slots: Vec<Mutex<Option<Arc<Reader>>>>,
    next: AtomicUsize,
}

impl Readers {
    pub(crate) fn new(target: PgTarget, shown: String, rt: Handle, opts: EnvOptions) -> Readers {
        Readers {
            target,
            shown,
            rt,
            opts,
            slots: (0..READERS).map(|_| Mutex::new(None)).collect(),
            next: AtomicUsize::new(0),
        }
    }

    /// Rows of one statement, on the next read connection in turn.
    pub(crate) async fn query(&self, sql: &str, params: Params<'_>) -> EnvResult<Vec<Row>> {
        let reader = self.reader().await?;
        let stmt = reader.prepared.get(&reader.client, sql).await?;
        Ok(reader.client.query(&stmt, params).await?)
    }

    /// A new connection, driven by the backend's runtime (whose thread runs
    /// it for as long as the store lives): for the pool, or for a read that
    /// spans several statements.
    pub(crate) async fn dedicated(&self) -> EnvResult<Client> {
        let (target, shown, opts, rt) = (
            self.target.clone(),
            self.shown.clone(),
            self.opts.clone(),
            self.rt.clone(),
        );
        self.rt
            .spawn(async move { connect::connect(&target, &shown, &opts, &rt).await })
            .await
            .map_err(|_| EnvError::Unavailable("the database thread stopped".into()))?
            .map_err(|e| EnvError::Unavailable(e.to_string()))
    }

    async fn reader(&self) -> EnvResult<Arc<Reader>> {
        let slot = &self.slots[self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len()];
        if let Some(r) = slot.lock().expect("reader slot poisoned").as_ref()
            && !r.client.is_closed()
        {
            return Ok(r.clone());
        }
        let client = self.dedicated().await?;
        let reader = Arc::new(Reader {
            client,
            prepared: Prepared::default(),
        });
        *slot.lock().expect("reader slot poisoned") = Some(reader.clone());
        Ok(reader)
    }
}
