//! Wake-ups from other hosts: one connection per host LISTENs on the
//! environment's channel, where every committed batch of any host sends one
//! notification carrying the journal head. After a reconnect (notifications
//! sent meanwhile are lost) and on a slow timer while anyone waits, it reads
//! the head itself, in case a notification went missing.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::{mpsc, watch};
use tokio_postgres::{AsyncMessage, Client, NoTls};

use super::{channel, connect};
use crate::env::EnvOptions;
use crate::env::location::PgTarget;
use crate::env::wake::{READ_BACK, Touched, Wakes};

/// Publish `seq` if it is newer than what waiters last saw.
pub(crate) fn publish(changed: &watch::Sender<u64>, seq: u64) {
    changed.send_if_modified(|v| {
        let newer = seq > *v;
        if newer {
            *v = seq;
        }
        newer
    });
}

/// Listen until `stop` turns true, reconnecting when the connection drops.
pub(crate) async fn run(
    target: PgTarget,
    opts: EnvOptions,
    changed: watch::Sender<u64>,
    wakes: Arc<Wakes>,
    own: Arc<Mutex<Vec<i32>>>,
    mut stop: watch::Receiver<bool>,
) {
    let fallback = Duration::from_millis(opts.notify_fallback_ms.max(10));
    let mut retry = Duration::from_millis(50);
    let mut first = true;
    loop {
        tokio::select! {
            _ = listen(&target, &opts, &changed, &wakes, &own, fallback, first) => {}
            _ = stop.changed() => return,
        }
        tokio::select! {
            _ = tokio::time::sleep(retry) => {}
            _ = stop.changed() => return,
        }
        retry = (retry * 2).min(Duration::from_secs(2));
        first = false;
    }
}

/// One connection's life: returns when it is lost. After the first, the
/// notifications sent while it was down are lost: every waiter is woken.
async fn listen(
    target: &PgTarget,
    opts: &EnvOptions,
    changed: &watch::Sender<u64>,
    wakes: &Wakes,
    own: &Mutex<Vec<i32>>,
    fallback: Duration,
    first: bool,
) {
    let (client, mut connection) = match connect::config(target).connect(NoTls).await {
        Ok(pair) => pair,
        Err(e) => {
            tracing::debug!("the journal listener cannot connect: {e}");
            return;
        }
    };
    let (heads_tx, mut heads) = mpsc::unbounded_channel();
    let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
    let driver = tokio::spawn(async move {
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(n)) => {
                    if let Ok(seq) = n.payload().parse::<u64>() {
                        let _ = heads_tx.send((seq, Some(n.process_id())));
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!("the journal listener's connection failed: {e}");
                    break;
                }
            }
        }
    });
    let head_sql = format!("SELECT seq FROM {}.journal_head", target.schema);
    let start = async {
        connect::configure(&client, target, opts).await?;
        client
            .batch_execute(&format!("LISTEN {}", channel(&target.schema)))
            .await?;
        client.query_one(&head_sql, &[]).await
    };
    let mut cursor = match start.await {
        Ok(row) => row.get::<_, i64>(0) as u64,
        Err(e) => {
            tracing::debug!("the journal listener cannot start: {e}");
            driver.abort();
            return;
        }
    };
    if !first {
        let mut all = Touched::default();
        all.everything();
        wakes.dispatch(all);
    }
    publish(changed, cursor);
    let events_sql = format!(
        "SELECT at, agent, kind, subject, detail FROM {}.events WHERE seq > $1 AND seq <= $2",
        target.schema
    );
    let mut timer = tokio::time::interval(fallback);
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // A notification is one batch's commit, in commit order: the
        // journal after `cursor` up to its head is that batch.
        let (head, from) = tokio::select! {
            head = heads.recv() => match head {
                Some(notified) => notified,
                None => break,
            },
            _ = timer.tick() => {
                if changed.receiver_count() == 0 && !wakes.anyone_waiting() {
                    continue;
                }
                match client.query_one(&head_sql, &[]).await {
                    Ok(row) => (row.get::<_, i64>(0) as u64, None),
                    Err(_) => break,
                }
            }
        };
        if head > cursor {
            // This handle's own commits woke their waiters already.
            let mine =
                from.is_some_and(|pid| own.lock().expect("backend list poisoned").contains(&pid));
            if !mine && wakes.anyone_waiting() {
                let touched = read_back(&client, &events_sql, wakes, cursor, head).await;
                wakes.dispatch(touched);
            }
            cursor = head;
        }
        publish(changed, head);
    }
    driver.abort();
}

/// What the events other hosts committed after `from` up to `to` touched
/// (everything, when there are too many or they cannot be read).
async fn read_back(client: &Client, sql: &str, wakes: &Wakes, from: u64, to: u64) -> Touched {
    let mut touched = Touched::default();
    if to - from > READ_BACK {
        touched.everything();
        return touched;
    }
    match client.query(sql, &[&(from as i64), &(to as i64)]).await {
        Ok(rows) => {
            for r in &rows {
                touched.note_stored(
                    wakes,
                    r.get::<_, i64>(0) as u64,
                    r.get(1),
                    r.get(2),
                    r.get(3),
                    r.get(4),
                );
            }
        }
        Err(e) => {
            tracing::debug!("reading back other hosts' events failed: {e}");
            touched.everything();
        }
    }
    touched
}
