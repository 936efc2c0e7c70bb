//! The database schema and its version.

/// The schema version this build writes; files with a newer one are refused.
pub const SCHEMA_VERSION: i64 = 4;

/// `PRAGMA application_id` of every wawe environment: "WAWE" in ASCII.
pub(crate) const APPLICATION_ID: i64 = 0x5741_5745;

/// Creates every table of a new environment (run once, in one transaction).
pub(crate) const CREATE: &str = r#"
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO meta (key, value) VALUES ('fence', 0);

CREATE TABLE hosts (
    id             TEXT PRIMARY KEY,
    hostname       TEXT NOT NULL,
    pid            INTEGER NOT NULL,
    started_at     INTEGER NOT NULL,
    last_heartbeat INTEGER NOT NULL,
    ttl_ms         INTEGER NOT NULL,
    state          TEXT NOT NULL
);

CREATE TABLE agents (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    replica    INTEGER NOT NULL,
    host       TEXT NOT NULL,
    digest     TEXT NOT NULL,
    state      TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    last_seen  INTEGER NOT NULL,
    ended_at   INTEGER,
    end_reason TEXT,
    restarts   INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX agents_by_host ON agents (host, state);

CREATE TABLE leases (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    agent      TEXT NOT NULL,
    mode       TEXT NOT NULL,
    token      INTEGER NOT NULL,
    granted_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    ttl_ms     INTEGER NOT NULL
);
CREATE INDEX leases_by_agent ON leases (agent);
CREATE INDEX leases_by_expiry ON leases (expires_at);

CREATE TABLE lease_resources (
    lease    INTEGER NOT NULL REFERENCES leases (id) ON DELETE CASCADE,
    resource TEXT NOT NULL,
    PRIMARY KEY (resource, lease)
) WITHOUT ROWID;
CREATE INDEX lease_resources_by_lease ON lease_resources (lease);

CREATE TABLE reservation_waiters (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    agent     TEXT NOT NULL,
    mode      TEXT NOT NULL,
    resources TEXT NOT NULL,
    deadline  INTEGER NOT NULL
);

CREATE TABLE tasks (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    queue         TEXT NOT NULL,
    payload       TEXT NOT NULL,
    state         TEXT NOT NULL,
    priority      INTEGER NOT NULL,
    attempts      INTEGER NOT NULL DEFAULT 0,
    max_attempts  INTEGER NOT NULL,
    not_before    INTEGER NOT NULL,
    dedupe_key    TEXT,
    claimed_by    TEXT,
    claim_token   INTEGER,
    claim_expires INTEGER,
    result        TEXT,
    last_error    TEXT,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);
CREATE INDEX tasks_ready ON tasks (queue, priority DESC, id) WHERE state = 'ready';
CREATE INDEX tasks_claimed ON tasks (claim_expires) WHERE state = 'claimed';
CREATE INDEX tasks_by_claimer ON tasks (claimed_by) WHERE state = 'claimed';
CREATE INDEX tasks_by_state ON tasks (state, queue);
CREATE UNIQUE INDEX tasks_live_dedupe ON tasks (queue, dedupe_key)
    WHERE dedupe_key IS NOT NULL AND state IN ('blocked', 'ready', 'claimed');

CREATE TABLE task_deps (
    task       INTEGER NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    depends_on INTEGER NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    PRIMARY KEY (task, depends_on)
) WITHOUT ROWID;
CREATE INDEX task_deps_reverse ON task_deps (depends_on, task);

CREATE TABLE learnings (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    author           TEXT NOT NULL,
    topic            TEXT NOT NULL,
    body             TEXT NOT NULL,
    tags             TEXT NOT NULL,
    created_at       INTEGER NOT NULL,
    endorsements     INTEGER NOT NULL DEFAULT 0,
    last_endorsed_at INTEGER
);
CREATE INDEX learnings_by_topic ON learnings (topic, id DESC);

CREATE VIRTUAL TABLE learnings_fts USING fts5 (
    topic, body, tags,
    content = 'learnings', content_rowid = 'id',
    tokenize = 'porter unicode61'
);

CREATE TABLE learning_endorsements (
    learning INTEGER NOT NULL REFERENCES learnings (id) ON DELETE CASCADE,
    agent    TEXT NOT NULL,
    at       INTEGER NOT NULL,
    PRIMARY KEY (learning, agent)
) WITHOUT ROWID;

CREATE TABLE signals (
    trail        TEXT PRIMARY KEY,
    strength     REAL NOT NULL,
    half_life_ms INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE kv (
    key        TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    version    INTEGER NOT NULL,
    fence      INTEGER NOT NULL DEFAULT 0,
    deleted    INTEGER NOT NULL DEFAULT 0,
    updated_by TEXT NOT NULL,
    updated_at INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE events (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    at      INTEGER NOT NULL,
    agent   TEXT NOT NULL,
    kind    TEXT NOT NULL,
    subject TEXT NOT NULL,
    detail  TEXT NOT NULL
);
CREATE INDEX events_by_time ON events (at);
"#;

/// Version 2: the shared workspace's identity and the last token that wrote
/// each of its paths (created with every new environment, and added to
/// version 1 files when they are opened).
pub(crate) const WORKSPACE: &str = r#"
CREATE TABLE IF NOT EXISTS workspace (
    id            TEXT NOT NULL,
    path          TEXT NOT NULL,
    host          TEXT NOT NULL,
    registered_at INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS workspace_files (
    path       TEXT PRIMARY KEY,
    token      INTEGER NOT NULL,
    size       INTEGER,
    hash       TEXT,
    deleted    INTEGER NOT NULL DEFAULT 0,
    agent      TEXT NOT NULL,
    updated_at INTEGER NOT NULL
) WITHOUT ROWID;
"#;

/// Version 4: each trail's rank (`policy::signal_rank`, written with every
/// deposit) and an index on it per half-life, so `strongest` reads the top of
/// the index instead of every trail. Migrated files get their ranks filled in.
/// (Version 3, on main for a day and never released, indexed the journal by
/// subject instead; that index is dropped on the way.)
pub(crate) const SIGNAL_RANK: &str = r#"
ALTER TABLE signals ADD COLUMN rank REAL;
CREATE INDEX signals_by_rank ON signals (half_life_ms, rank DESC, trail);
"#;
