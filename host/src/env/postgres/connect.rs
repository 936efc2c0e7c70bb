//! Connecting: session settings every connection of a host shares, and
//! connection failures told apart (unreachable, login refused, no database).

use std::time::Duration;

use tokio::runtime::Handle;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};

use crate::env::location::PgTarget;
use crate::env::{Durability, EnvOptions, OpenError};

/// Give up on a server that does not answer within this (unless the URL says).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection silent this long is dead (keepalive probes and unacknowledged
/// sends), so a half-open link cannot keep locks for minutes.
const DEAD_LINK: Duration = Duration::from_secs(10);

/// Open a connection whose driving task runs on `rt`, with the
/// environment's session settings.
pub(crate) async fn connect(
    target: &PgTarget,
    shown: &str,
    opts: &EnvOptions,
    rt: &Handle,
) -> Result<Client, OpenError> {
    let config = config(target);
    let (client, connection) = config
        .connect(NoTls)
        .await
        .map_err(|e| classify(shown, target, &e))?;
    rt.spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!("a PostgreSQL connection ended: {e}");
        }
    });
    configure(&client, target, opts)
        .await
        .map_err(|e| classify(shown, target, &e))?;
    Ok(client)
}

/// The connection settings: the URL's, with a connect timeout and keepalives
/// unless it sets its own.
pub(crate) fn config(target: &PgTarget) -> tokio_postgres::Config {
    let mut config = target.config.clone();
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if config.get_application_name().is_none() {
        // Operators (and tests) tell an environment's connections apart by it.
        config.application_name(format!("wawe/{}", target.schema));
    }
    config
        .keepalives(true)
        .keepalives_idle(DEAD_LINK / 2)
        .keepalives_interval(Duration::from_secs(1))
        .keepalives_retries(5)
        .tcp_user_timeout(DEAD_LINK);
    config
}

/// Session settings: the schema, the durability, and no transaction left
/// open by a host that went away.
///
/// A host cut off in the middle of a transaction holds its locks (a task's
/// row, the journal's head) until the server rolls the transaction back;
/// every other host waits on them meanwhile. Its transactions never pause
/// between statements for long (a batch takes milliseconds), so the server
/// ends one idle for [`IDLE_IN_TRANSACTION`]; and it probes the connection
/// itself, so a dead host's session does not linger for the system's default
/// two hours either.
pub(crate) async fn configure(
    client: &Client,
    target: &PgTarget,
    opts: &EnvOptions,
) -> Result<(), tokio_postgres::Error> {
    let sync = match opts.durability {
        Durability::Normal => "off",
        Durability::Full => "on",
    };
    client
        .batch_execute(&format!(
            "SET search_path TO {schema}, pg_catalog;
             SET synchronous_commit TO {sync};
             SET idle_in_transaction_session_timeout TO {idle};
             SET tcp_keepalives_idle TO 5;
             SET tcp_keepalives_interval TO 1;
             SET tcp_keepalives_count TO 5;
             SET tcp_user_timeout TO {dead};
             SET lock_timeout TO '30s'",
            schema = target.schema,
            idle = IDLE_IN_TRANSACTION.as_millis(),
            dead = DEAD_LINK.as_millis(),
        ))
        .await
}

/// How long the server lets a transaction of a host wait for its next
/// statement before rolling it back (and so how long a host cut off mid-batch
/// can hold others up).
pub(crate) const IDLE_IN_TRANSACTION: Duration = Duration::from_secs(1);

/// Name what went wrong connecting, with what to do.
pub(crate) fn classify(shown: &str, target: &PgTarget, e: &tokio_postgres::Error) -> OpenError {
    let url = shown.to_owned();
    match e.code() {
        Some(c)
            if *c == SqlState::INVALID_PASSWORD
                || *c == SqlState::INVALID_AUTHORIZATION_SPECIFICATION =>
        {
            OpenError::LoginRefused {
                url,
                detail: message(e),
            }
        }
        Some(c) if *c == SqlState::INVALID_CATALOG_NAME => OpenError::NoDatabase {
            url,
            database: target.config.get_dbname().unwrap_or_default().to_owned(),
        },
        Some(_) => OpenError::Other {
            path: url.into(),
            detail: message(e),
        },
        None => OpenError::Unreachable {
            url,
            detail: message(e),
        },
    }
}

fn message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => db.message().to_owned(),
        None => {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(s) = source {
                let more = s.to_string();
                if !text.contains(&more) {
                    text = format!("{text}: {more}");
                }
                source = s.source();
            }
            text
        }
    }
}
