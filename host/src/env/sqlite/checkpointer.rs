//! Checkpoints off the writer's thread.
//!
//! SQLite's automatic checkpoint runs inside the commit that crosses its
//! threshold: that commit (and every caller in its batch) waits while pages
//! are copied into the database and the file is synced, which is what the
//! slowest commits are made of. The writer turns it off and pokes this thread
//! after its commits instead; here a passive checkpoint (which never blocks
//! the writer or readers) runs at most every [`MIN_GAP`]. The writer keeps a
//! high automatic threshold as a backstop (see `Env::open`).

use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use rusqlite::Connection;

/// The shortest time between two checkpoints.
const MIN_GAP: Duration = Duration::from_millis(50);

/// The writer's side: says that there are new commits to checkpoint.
#[derive(Clone)]
pub(crate) struct Poke(SyncSender<()>);

impl Poke {
    /// Note new commits; never blocks (one pending poke is enough).
    pub(crate) fn poke(&self) {
        match self.0.try_send(()) {
            Ok(()) | Err(TrySendError::Full(())) | Err(TrySendError::Disconnected(())) => {}
        }
    }
}

/// A poke handle and the receiving end for [`run`].
pub(crate) fn channel() -> (Poke, Receiver<()>) {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    (Poke(tx), rx)
}

/// Checkpoint after pokes until every [`Poke`] is dropped.
pub(crate) fn run(conn: Connection, pokes: Receiver<()>) {
    let mut last: Option<Instant> = None;
    while pokes.recv().is_ok() {
        if let Some(gap) = last.and_then(|t| MIN_GAP.checked_sub(t.elapsed())) {
            std::thread::sleep(gap);
        }
        // Pokes that came meanwhile are covered by this checkpoint.
        while pokes.try_recv().is_ok() {}
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::debug!("checkpoint failed (the next one retries): {e}");
        }
        last = Some(Instant::now());
    }
}
