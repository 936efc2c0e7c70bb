//! Wake-ups from other hosts: one connection per host LISTENs on the
//! environment's channel, where every committed batch of any host sends one
//! notification carrying the journal head. After a reconnect (notifications
//! sent meanwhile are lost) and on a slow timer while anyone waits, it reads
//! the head itself, in case a notification went missing.

use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::{mpsc, watch};
use tokio_postgres::{AsyncMessage, NoTls};

use super::{channel, connect};
use crate::env::EnvOptions;
use crate::env::location::PgTarget;

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
    mut stop: watch::Receiver<bool>,
) {
    let fallback = Duration::from_millis(opts.notify_fallback_ms.max(10));
    let mut retry = Duration::from_millis(50);
    loop {
        tokio::select! {
            _ = listen(&target, &opts, &changed, fallback) => {}
            _ = stop.changed() => return,
        }
        tokio::select! {
            _ = tokio::time::sleep(retry) => {}
            _ = stop.changed() => return,
        }
        retry = (retry * 2).min(Duration::from_secs(2));
    }
}

/// One connection's life: returns when it is lost.
async fn listen(
    target: &PgTarget,
    opts: &EnvOptions,
    changed: &watch::Sender<u64>,
    fallback: Duration,
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
                        let _ = heads_tx.send(seq);
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
    match start.await {
        Ok(row) => publish(changed, row.get::<_, i64>(0) as u64),
        Err(e) => {
            tracing::debug!("the journal listener cannot start: {e}");
            driver.abort();
            return;
        }
    }
    let mut timer = tokio::time::interval(fallback);
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            head = heads.recv() => match head {
                Some(seq) => publish(changed, seq),
                None => break,
            },
            _ = timer.tick() => {
                // Someone besides the store itself is waiting.
                if changed.receiver_count() == 0 {
                    continue;
                }
                match client.query_one(&head_sql, &[]).await {
                    Ok(row) => publish(changed, row.get::<_, i64>(0) as u64),
                    Err(_) => break,
                }
            }
        }
    }
    driver.abort();
}
