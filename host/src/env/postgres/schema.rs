//! The tables of an environment in its PostgreSQL schema, and checking a
//! schema before anything is written to it.
//!
//! Paths, keys, queues and trails sort bytewise (`COLLATE "C"`), as in
//! SQLite, so prefix range scans mean the same on both.

use tokio_postgres::Client;

use crate::env::location::PgTarget;
use crate::env::{OpenError, SCHEMA_VERSION};

/// The application name recorded in every wawe schema.
const APPLICATION: &str = "wawe";

/// Creates every table of a new environment (run once, in one transaction,
/// with `search_path` set to the new schema).
const CREATE: &str = r#"
CREATE TABLE environment (
    application    TEXT NOT NULL,
    schema_version BIGINT NOT NULL
);

CREATE TABLE journal_head (seq BIGINT NOT NULL);
INSERT INTO journal_head (seq) VALUES (0);

CREATE SEQUENCE fence CACHE 1;
CREATE SEQUENCE host_numbers CACHE 1;

CREATE TABLE hosts (
    id             TEXT COLLATE "C" PRIMARY KEY,
    hostname       TEXT NOT NULL,
    pid            BIGINT NOT NULL,
    started_at     BIGINT NOT NULL,
    last_heartbeat BIGINT NOT NULL,
    ttl_ms         BIGINT NOT NULL,
    state          TEXT NOT NULL
);

CREATE TABLE agents (
    id         TEXT COLLATE "C" PRIMARY KEY,
    name       TEXT NOT NULL,
    replica    BIGINT NOT NULL,
    host       TEXT COLLATE "C" NOT NULL,
    digest     TEXT NOT NULL,
    state      TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    last_seen  BIGINT NOT NULL,
    ended_at   BIGINT,
    end_reason TEXT,
    restarts   BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX agents_by_host ON agents (host, state);

CREATE TABLE leases (
    id         BIGSERIAL PRIMARY KEY,
    agent      TEXT COLLATE "C" NOT NULL,
    mode       TEXT NOT NULL,
    token      BIGINT NOT NULL,
    granted_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    ttl_ms     BIGINT NOT NULL
);
CREATE INDEX leases_by_agent ON leases (agent);
CREATE INDEX leases_by_expiry ON leases (expires_at);

CREATE TABLE lease_resources (
    lease    BIGINT NOT NULL REFERENCES leases (id) ON DELETE CASCADE,
    resource TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (resource, lease)
);
CREATE INDEX lease_resources_by_lease ON lease_resources (lease);

CREATE TABLE reservation_waiters (
    id        BIGSERIAL PRIMARY KEY,
    agent     TEXT COLLATE "C" NOT NULL,
    mode      TEXT NOT NULL,
    resources TEXT NOT NULL,
    deadline  BIGINT NOT NULL
);

CREATE TABLE tasks (
    id            BIGSERIAL PRIMARY KEY,
    queue         TEXT COLLATE "C" NOT NULL,
    payload       TEXT NOT NULL,
    state         TEXT NOT NULL,
    priority      BIGINT NOT NULL,
    attempts      BIGINT NOT NULL DEFAULT 0,
    max_attempts  BIGINT NOT NULL,
    not_before    BIGINT NOT NULL,
    dedupe_key    TEXT COLLATE "C",
    claimed_by    TEXT COLLATE "C",
    claim_token   BIGINT,
    claim_expires BIGINT,
    result        TEXT,
    last_error    TEXT,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    -- dependencies not yet done: a blocked task becomes ready at 0
    pending_deps  BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX tasks_ready ON tasks (queue, priority DESC, id) WHERE state = 'ready';
CREATE INDEX tasks_claimed ON tasks (claim_expires) WHERE state = 'claimed';
CREATE INDEX tasks_by_claimer ON tasks (claimed_by) WHERE state = 'claimed';
CREATE INDEX tasks_by_state ON tasks (state, queue);
CREATE UNIQUE INDEX tasks_live_dedupe ON tasks (queue, dedupe_key)
    WHERE dedupe_key IS NOT NULL AND state IN ('blocked', 'ready', 'claimed');

CREATE TABLE task_deps (
    task       BIGINT NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    depends_on BIGINT NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    PRIMARY KEY (task, depends_on)
);
CREATE INDEX task_deps_reverse ON task_deps (depends_on, task);

-- English stemming like SQLite's porter tokenizer, and like it no stop words:
-- every word of a learning can be searched for.
CREATE TEXT SEARCH DICTIONARY english_stem_all (TEMPLATE = snowball, LANGUAGE = english);
CREATE TEXT SEARCH CONFIGURATION learning_words (COPY = english);
ALTER TEXT SEARCH CONFIGURATION learning_words
    ALTER MAPPING FOR asciiword, asciihword, hword_asciipart, word, hword, hword_part
    WITH english_stem_all;

CREATE TABLE learnings (
    id               BIGSERIAL PRIMARY KEY,
    author           TEXT COLLATE "C" NOT NULL,
    topic            TEXT COLLATE "C" NOT NULL,
    body             TEXT NOT NULL,
    tags             TEXT NOT NULL,
    tag_words        TEXT NOT NULL DEFAULT '',
    created_at       BIGINT NOT NULL,
    endorsements     BIGINT NOT NULL DEFAULT 0,
    last_endorsed_at BIGINT,
    -- ASCII punctuation cut out first: searches cut their text there too,
    -- and PostgreSQL's parser would keep `a/b` or `x.y` as one token.
    words            TSVECTOR GENERATED ALWAYS AS (
        to_tsvector('learning_words', regexp_replace(
            topic || ' ' || body || ' ' || tag_words, '[!-/:-@[-`{-~]', ' ', 'g'))) STORED
);
CREATE INDEX learnings_by_topic ON learnings (topic, id DESC);
CREATE INDEX learnings_words ON learnings USING GIN (words);

CREATE TABLE learning_endorsements (
    learning BIGINT NOT NULL REFERENCES learnings (id) ON DELETE CASCADE,
    agent    TEXT COLLATE "C" NOT NULL,
    at       BIGINT NOT NULL,
    PRIMARY KEY (learning, agent)
);

CREATE TABLE signals (
    trail        TEXT COLLATE "C" PRIMARY KEY,
    strength     DOUBLE PRECISION NOT NULL,
    half_life_ms BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);

CREATE TABLE kv (
    key        TEXT COLLATE "C" PRIMARY KEY,
    value      TEXT NOT NULL,
    version    BIGINT NOT NULL,
    fence      BIGINT NOT NULL DEFAULT 0,
    deleted    BOOLEAN NOT NULL DEFAULT false,
    updated_by TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE events (
    seq     BIGINT PRIMARY KEY,
    at      BIGINT NOT NULL,
    agent   TEXT NOT NULL,
    kind    TEXT NOT NULL,
    subject TEXT COLLATE "C" NOT NULL,
    detail  TEXT NOT NULL
);
CREATE INDEX events_by_time ON events (at);
"#;

/// Version 2: the shared workspace's identity and the last token that wrote
/// each of its paths (created with every new environment, and added to
/// version 1 schemas when they are opened).
const WORKSPACE: &str = r#"
CREATE TABLE IF NOT EXISTS workspace (
    id            TEXT NOT NULL,
    path          TEXT NOT NULL,
    host          TEXT NOT NULL,
    registered_at BIGINT NOT NULL
);

CREATE TABLE IF NOT EXISTS workspace_files (
    path       TEXT COLLATE "C" PRIMARY KEY,
    token      BIGINT NOT NULL,
    size       BIGINT,
    hash       TEXT,
    deleted    BOOLEAN NOT NULL DEFAULT false,
    agent      TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
"#;

/// Version 4: an index of trails by rank per half-life (on the expression
/// `signals::RANK`, so every host's deposits keep it current), for `strongest`.
/// (Version 3, on main for a day and never released, indexed the journal by
/// subject instead; that index is dropped on the way.)
fn signal_rank() -> String {
    format!(
        "DROP INDEX IF EXISTS events_by_subject;
         CREATE INDEX IF NOT EXISTS signals_by_rank ON signals (half_life_ms, {} DESC NULLS LAST, trail);",
        super::signals::RANK
    )
}

/// What a schema holds.
enum Found {
    /// Nothing (or no schema): an environment may be created.
    Empty,
    /// A wawe environment of this version or older (which).
    Ours(i64),
}

async fn inspect(client: &Client, target: &PgTarget, shown: &str) -> Result<Found, OpenError> {
    let other = |e: tokio_postgres::Error| OpenError::Other {
        path: shown.into(),
        detail: e.to_string(),
    };
    let schema = target.schema.as_str();
    let row = client
        .query_one(
            "SELECT (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                     WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'v', 'm', 'f')),
                    to_regclass(quote_ident($1) || '.environment') IS NOT NULL",
            &[&schema],
        )
        .await
        .map_err(other)?;
    let (tables, marked): (i64, bool) = (row.get(0), row.get(1));
    if tables == 0 {
        return Ok(Found::Empty);
    }
    let foreign = || OpenError::ForeignSchema {
        url: shown.to_owned(),
        schema: schema.to_owned(),
    };
    if !marked {
        return Err(foreign());
    }
    let sql = format!("SELECT application, schema_version FROM {schema}.environment");
    let rows = client.query(&sql, &[]).await.map_err(|_| foreign())?;
    let Some(row) = rows.first() else {
        return Err(foreign());
    };
    let (app, version): (String, i64) = (
        row.try_get(0).map_err(|_| foreign())?,
        row.try_get(1).map_err(|_| foreign())?,
    );
    if app != APPLICATION {
        return Err(foreign());
    }
    if version > SCHEMA_VERSION {
        return Err(OpenError::NewerVersion {
            path: shown.into(),
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    Ok(Found::Ours(version))
}

/// Check the schema and, if it is empty and `may_create`, create the
/// environment in one transaction. Hosts creating the same new schema at
/// once are serialized by an advisory lock; the later ones find it done.
pub(crate) async fn prepare(
    client: &Client,
    target: &PgTarget,
    shown: &str,
    may_create: bool,
) -> Result<(), OpenError> {
    let found = inspect(client, target, shown).await?;
    if let Found::Ours(version) = found {
        if version < SCHEMA_VERSION {
            return migrate(client, target, shown).await;
        }
        return Ok(());
    }
    if !may_create {
        return Err(OpenError::Missing { path: shown.into() });
    }
    let other = |e: tokio_postgres::Error| OpenError::Other {
        path: shown.into(),
        detail: format!("cannot create the environment: {e}"),
    };
    client
        .batch_execute("BEGIN; SELECT pg_advisory_xact_lock(hashtext('wawe schema creation'))")
        .await
        .map_err(other)?;
    let created = async {
        if let Found::Ours(_) = inspect(client, target, shown).await? {
            return Ok(());
        }
        let schema = &target.schema;
        let rank = signal_rank();
        client
            .batch_execute(&format!(
                "CREATE SCHEMA IF NOT EXISTS {schema}; SET LOCAL search_path TO {schema}, pg_catalog; {CREATE} {WORKSPACE} {rank}
                 INSERT INTO environment (application, schema_version) VALUES ('{APPLICATION}', {SCHEMA_VERSION});"
            ))
            .await
            .map_err(other)
    }
    .await;
    match created {
        Ok(()) => client.batch_execute("COMMIT").await.map_err(other),
        Err(e) => {
            let _ = client.batch_execute("ROLLBACK").await;
            Err(e)
        }
    }
}

/// Bring an environment of an older schema version up to this one, in one
/// transaction under the same lock as creation (each step only adds tables
/// and indexes).
async fn migrate(client: &Client, target: &PgTarget, shown: &str) -> Result<(), OpenError> {
    let other = |e: tokio_postgres::Error| OpenError::Other {
        path: shown.into(),
        detail: format!("cannot upgrade the environment to schema version {SCHEMA_VERSION}: {e}"),
    };
    let schema = &target.schema;
    let rank = signal_rank();
    let upgraded = client
        .batch_execute(&format!(
            "BEGIN; SELECT pg_advisory_xact_lock(hashtext('wawe schema creation'));
             SET LOCAL search_path TO {schema}, pg_catalog; {WORKSPACE} {rank}
             UPDATE environment SET schema_version = {SCHEMA_VERSION}
                 WHERE schema_version < {SCHEMA_VERSION};
             COMMIT"
        ))
        .await;
    if let Err(e) = upgraded {
        let _ = client.batch_execute("ROLLBACK").await;
        return Err(other(e));
    }
    Ok(())
}
