//! Typed errors: the WIT `error` variant as an idiomatic Rust error.

use std::fmt;

use crate::bindings::wawe::env::types as raw;
use crate::{Timestamp, Token};

/// Why an environment operation failed; mirrors the WIT `error` variant case for case,
/// plus [`Error::Json`] for the SDK's own JSON helpers.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// Another holder has an overlapping, incompatible reservation.
    Conflict {
        /// The id of the agent holding (or queued first for) the resource.
        holder: String,
        /// The resource, as that holder named it.
        resource: String,
        /// When the holder's claim ends unless renewed, in ms since the Unix epoch.
        expires_at: Timestamp,
    },
    /// The token presented is no longer the current one (the claim lapsed or
    /// was re-claimed, or a newer fencing token was already used).
    StaleToken(Token),
    /// No such lease, task, learning or key visible to the caller.
    NotFound(String),
    /// A payload, name or list exceeds the environment's limit.
    TooLarge {
        /// What was too large, e.g. "payload" or "resource".
        what: String,
        /// The limit in bytes (or items).
        limit: u64,
        /// The size that was offered.
        actual: u64,
    },
    /// A compare-and-swap found another version than it expected.
    VersionMismatch {
        /// The version the caller expected (`None`: any; `Some(0)`: absent).
        expected: Option<u64>,
        /// The version actually there (`None` when the key is absent).
        actual: Option<u64>,
    },
    /// An argument is malformed; the message says which and why.
    InvalidArgument(String),
    /// The environment itself failed; the operation did not happen and may be retried.
    Unavailable(String),
    /// A value could not be turned into JSON, or JSON into the requested type.
    Json(serde_json::Error),
}

impl Error {
    /// True for [`Error::Conflict`]: someone else holds an overlapping resource.
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Conflict { .. })
    }

    /// True for [`Error::StaleToken`]: the caller's claim or fence is no longer current.
    pub fn is_stale_token(&self) -> bool {
        matches!(self, Error::StaleToken(_))
    }

    /// True for [`Error::NotFound`].
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound(_))
    }

    /// True when trying again later may succeed: a conflict, or the environment being unavailable.
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Conflict { .. } | Error::Unavailable(_))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Conflict {
                holder,
                resource,
                expires_at,
            } => write!(
                f,
                "conflict: `{resource}` is held by `{holder}` until {expires_at}"
            ),
            Error::StaleToken(token) => write!(f, "stale token {token}"),
            Error::NotFound(what) => write!(f, "not found: {what}"),
            Error::TooLarge {
                what,
                limit,
                actual,
            } => write!(f, "{what} too large: {actual} over the limit of {limit}"),
            Error::VersionMismatch { expected, actual } => {
                write!(
                    f,
                    "version mismatch: expected {}, found {}",
                    version(*expected),
                    version(*actual)
                )
            }
            Error::InvalidArgument(message) => write!(f, "invalid argument: {message}"),
            Error::Unavailable(message) => write!(f, "environment unavailable: {message}"),
            Error::Json(error) => write!(f, "JSON: {error}"),
        }
    }
}

/// Describes an optional version the way [`Error::VersionMismatch`] means it.
fn version(v: Option<u64>) -> String {
    match v {
        None => "none".to_owned(),
        Some(0) => "absent".to_owned(),
        Some(v) => format!("version {v}"),
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Json(error) => Some(error),
            _ => None,
        }
    }
}

impl From<raw::Error> for Error {
    fn from(error: raw::Error) -> Self {
        match error {
            raw::Error::Conflict(c) => Error::Conflict {
                holder: c.holder,
                resource: c.resource,
                expires_at: c.expires_at,
            },
            raw::Error::StaleToken(token) => Error::StaleToken(token),
            raw::Error::NotFound(what) => Error::NotFound(what),
            raw::Error::TooLarge(t) => Error::TooLarge {
                what: t.what,
                limit: t.limit,
                actual: t.actual,
            },
            raw::Error::VersionMismatch(v) => Error::VersionMismatch {
                expected: v.expected,
                actual: v.actual,
            },
            raw::Error::InvalidArgument(message) => Error::InvalidArgument(message),
            raw::Error::Unavailable(message) => Error::Unavailable(message),
        }
    }
}

impl From<serde_json::Error> for Error {
    fn from(error: serde_json::Error) -> Self {
        Error::Json(error)
    }
}

/// Lets `?` turn an [`Error`] into the `String` an agent's `run` returns.
impl From<Error> for String {
    fn from(error: Error) -> Self {
        error.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_every_wit_case() {
        let conflict = Error::from(raw::Error::Conflict(raw::Conflict {
            holder: "worker/0".into(),
            resource: "files/3".into(),
            expires_at: 42,
        }));
        assert!(conflict.is_conflict() && conflict.is_transient());
        assert_eq!(
            conflict.to_string(),
            "conflict: `files/3` is held by `worker/0` until 42"
        );

        let stale = Error::from(raw::Error::StaleToken(7));
        assert!(stale.is_stale_token() && !stale.is_transient());
        assert_eq!(stale.to_string(), "stale token 7");

        let too_large = Error::from(raw::Error::TooLarge(raw::TooLarge {
            what: "payload".into(),
            limit: 10,
            actual: 11,
        }));
        assert_eq!(
            too_large.to_string(),
            "payload too large: 11 over the limit of 10"
        );

        let mismatch = Error::from(raw::Error::VersionMismatch(raw::VersionMismatch {
            expected: Some(0),
            actual: Some(3),
        }));
        assert_eq!(
            mismatch.to_string(),
            "version mismatch: expected absent, found version 3"
        );

        assert!(Error::from(raw::Error::NotFound("task 9".into())).is_not_found());
        assert!(Error::from(raw::Error::Unavailable("disk full".into())).is_transient());
        assert_eq!(
            String::from(Error::from(raw::Error::InvalidArgument(
                "empty topic".into()
            ))),
            "invalid argument: empty topic"
        );
    }

    #[test]
    fn json_errors_keep_their_source() {
        let error = Error::from(serde_json::from_str::<u32>("nope").unwrap_err());
        assert!(std::error::Error::source(&error).is_some());
        assert!(error.to_string().starts_with("JSON: "));
    }
}
