//! Where an environment lives: a SQLite file (the embedded default) or a
//! schema in a PostgreSQL database, named by a `postgres://` URL.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use super::OpenError;

/// The schema a PostgreSQL URL uses when it names none.
pub const DEFAULT_SCHEMA: &str = "wawe";

/// An environment's address, as `--env`, `WAWE_ENV` and a manifest's `env =`
/// spell it: a file path, or `postgres://user@host:port/db?schema=NAME`.
#[derive(Clone, PartialEq, Eq)]
pub enum EnvLocation {
    /// A SQLite file.
    File(PathBuf),
    /// A PostgreSQL URL, exactly as given (checked when opened).
    Postgres(String),
}

impl EnvLocation {
    /// Read `text` as a location: a `postgres://` or `postgresql://` URL, else a path.
    pub fn parse(text: &str) -> EnvLocation {
        if is_postgres_url(text) {
            EnvLocation::Postgres(text.to_owned())
        } else {
            EnvLocation::File(PathBuf::from(text))
        }
    }

    /// A manifest's `env =`: a path relative to the manifest's folder `base`, or a URL.
    pub fn relative_to(text: &str, base: &Path) -> EnvLocation {
        match EnvLocation::parse(text) {
            EnvLocation::File(p) => EnvLocation::File(base.join(p)),
            url => url,
        }
    }

    /// The location as `--env` takes it (with any password: for handing to
    /// a child process, never for showing).
    pub fn to_env_arg(&self) -> String {
        match self {
            EnvLocation::File(p) => p.display().to_string(),
            EnvLocation::Postgres(url) => url.clone(),
        }
    }

    /// The same PostgreSQL server and database with another schema (`None`
    /// for a file, or a URL that cannot be read).
    pub fn with_schema(&self, schema: &str) -> Option<EnvLocation> {
        let EnvLocation::Postgres(raw) = self else {
            return None;
        };
        let mut url = url::Url::parse(raw).ok()?;
        take_schema(&mut url);
        url.query_pairs_mut().append_pair("schema", schema);
        Some(EnvLocation::Postgres(url.into()))
    }

    /// The file, for a SQLite environment.
    pub fn as_file(&self) -> Option<&Path> {
        match self {
            EnvLocation::File(p) => Some(p),
            EnvLocation::Postgres(_) => None,
        }
    }
}

/// Remove the `schema` parameter from `url` (tokio-postgres knows no such
/// option); returns its value.
fn take_schema(url: &mut url::Url) -> Option<String> {
    let mut schema = None;
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .filter_map(|(k, v)| {
            if k == "schema" {
                schema = Some(v.into_owned());
                None
            } else {
                Some((k.into_owned(), v.into_owned()))
            }
        })
        .collect();
    if kept.is_empty() {
        url.set_query(None);
    } else {
        url.query_pairs_mut().clear().extend_pairs(kept);
    }
    schema
}

fn is_postgres_url(text: &str) -> bool {
    let lower = text.get(..13).unwrap_or(text).to_ascii_lowercase();
    lower.starts_with("postgres://") || lower.starts_with("postgresql://")
}

impl From<&str> for EnvLocation {
    fn from(s: &str) -> Self {
        EnvLocation::parse(s)
    }
}
impl From<String> for EnvLocation {
    fn from(s: String) -> Self {
        EnvLocation::parse(&s)
    }
}
impl From<&String> for EnvLocation {
    fn from(s: &String) -> Self {
        EnvLocation::parse(s)
    }
}
impl From<&Path> for EnvLocation {
    fn from(p: &Path) -> Self {
        match p.to_str() {
            Some(s) if is_postgres_url(s) => EnvLocation::Postgres(s.to_owned()),
            _ => EnvLocation::File(p.to_path_buf()),
        }
    }
}
impl From<PathBuf> for EnvLocation {
    fn from(p: PathBuf) -> Self {
        EnvLocation::from(p.as_path())
    }
}
impl From<&PathBuf> for EnvLocation {
    fn from(p: &PathBuf) -> Self {
        EnvLocation::from(p.as_path())
    }
}
impl From<&EnvLocation> for EnvLocation {
    fn from(l: &EnvLocation) -> Self {
        l.clone()
    }
}

impl FromStr for EnvLocation {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(EnvLocation::parse(s))
    }
}

/// Shows a file as its path and a URL without its password.
impl fmt::Display for EnvLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EnvLocation::File(p) => write!(f, "{}", p.display()),
            EnvLocation::Postgres(raw) => match url::Url::parse(raw) {
                Ok(mut u) => {
                    if u.password().is_some() {
                        let _ = u.set_password(Some("***"));
                    }
                    write!(f, "{u}")
                }
                Err(_) => write!(f, "{}", raw.split('@').next_back().unwrap_or(raw)),
            },
        }
    }
}

impl fmt::Debug for EnvLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

/// A PostgreSQL location taken apart: the connection settings, and the schema.
#[derive(Debug, Clone)]
pub(crate) struct PgTarget {
    /// Connection settings for tokio-postgres (the `schema` parameter removed).
    pub(crate) config: tokio_postgres::Config,
    /// The schema holding the environment's tables.
    pub(crate) schema: String,
}

impl PgTarget {
    /// Parse `raw`; a malformed URL or schema name is refused with what to write instead.
    pub(crate) fn parse(raw: &str) -> Result<PgTarget, OpenError> {
        let shown = EnvLocation::Postgres(raw.to_owned()).to_string();
        let bad = |detail: String| OpenError::BadUrl {
            url: shown.clone(),
            detail,
        };
        let mut url = url::Url::parse(raw).map_err(|e| {
            bad(format!(
                "{e}; write it as postgres://USER@HOST:PORT/DATABASE?schema=NAME"
            ))
        })?;
        let schema = take_schema(&mut url).unwrap_or_else(|| DEFAULT_SCHEMA.to_owned());
        let valid = !schema.is_empty()
            && schema.len() <= 40
            && schema.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
            && schema
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !valid || schema.starts_with("pg_") {
            return Err(bad(format!(
                "schema {schema:?} is not a plain name: use lower-case letters, digits and '_' \
                 (at most 40, not starting with a digit or pg_), e.g. ?schema=team_a"
            )));
        }
        let config: tokio_postgres::Config =
            url.as_str().parse().map_err(|e| bad(format!("{e}")))?;
        if config.get_dbname().is_none() {
            return Err(bad(
                "it names no database: add one, e.g. postgres://127.0.0.1:5432/wawe".into(),
            ));
        }
        Ok(PgTarget { config, schema })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_paths_are_told_apart() {
        assert!(matches!(
            EnvLocation::parse("postgres://h/db"),
            EnvLocation::Postgres(_)
        ));
        assert!(matches!(
            EnvLocation::parse("PostgreSQL://h/db"),
            EnvLocation::Postgres(_)
        ));
        assert!(matches!(
            EnvLocation::parse("swarm.db"),
            EnvLocation::File(_)
        ));
        assert_eq!(
            EnvLocation::relative_to("state.db", Path::new("dir")),
            EnvLocation::File(PathBuf::from("dir/state.db"))
        );
        assert_eq!(
            EnvLocation::relative_to("postgres://h/db", Path::new("dir")),
            EnvLocation::Postgres("postgres://h/db".into())
        );
    }

    #[test]
    fn another_schema_replaces_the_one_named_and_keeps_the_rest() {
        let l = EnvLocation::parse("postgres://u@h/db?schema=a&connect_timeout=3");
        let other = l.with_schema("b").unwrap().to_env_arg();
        let t = PgTarget::parse(&other).unwrap();
        assert_eq!(t.schema, "b");
        assert_eq!(
            t.config.get_connect_timeout(),
            Some(&std::time::Duration::from_secs(3))
        );
        assert_eq!(EnvLocation::parse("x.db").with_schema("b"), None);
    }

    #[test]
    fn a_password_is_never_shown() {
        let l = EnvLocation::parse("postgres://me:secret@h:5432/db?schema=a");
        let shown = l.to_string();
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains("me:***@h:5432/db"), "{shown}");
    }

    #[test]
    fn the_schema_comes_out_of_the_url_and_is_checked() {
        let t = PgTarget::parse("postgres://u@127.0.0.1:5432/test?schema=team_a&connect_timeout=3")
            .unwrap();
        assert_eq!(t.schema, "team_a");
        assert_eq!(t.config.get_dbname(), Some("test"));
        assert_eq!(
            PgTarget::parse("postgres://u@h/test").unwrap().schema,
            DEFAULT_SCHEMA
        );
        for bad in [
            "postgres://u@h/test?schema=Team",
            "postgres://u@h/test?schema=a;drop",
            "postgres://u@h/test?schema=pg_catalog",
            "postgres://u@h/test?schema=",
            "postgres://u@h",
            "postgres://u@h:notaport/test",
        ] {
            let err = PgTarget::parse(bad).unwrap_err().to_string();
            assert!(err.contains("postgres://"), "{bad}: {err}");
        }
    }
}
