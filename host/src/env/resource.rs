//! Resource paths: validation and the overlap rule.
//!
//! A resource is a `/`-separated path. A name ending in `/` is a directory:
//! it covers itself (with or without the slash) and everything under it.

use super::error::EnvError;

/// Check that `resource` is a well-formed path no longer than `max_len` bytes.
pub fn validate_resource(resource: &str, max_len: usize) -> Result<(), EnvError> {
    if resource.is_empty() {
        return Err(EnvError::invalid("resource names must not be empty"));
    }
    if resource.len() > max_len {
        return Err(EnvError::TooLarge {
            what: "resource name".into(),
            limit: max_len as u64,
            actual: resource.len() as u64,
        });
    }
    if resource.starts_with('/') {
        return Err(EnvError::invalid(format!(
            "resource {resource:?} starts with '/': paths are relative, e.g. \"src/main.rs\""
        )));
    }
    let body = resource.strip_suffix('/').unwrap_or(resource);
    if body.split('/').any(|seg| seg.is_empty()) {
        return Err(EnvError::invalid(format!(
            "resource {resource:?} has an empty path segment ('//')"
        )));
    }
    if body.split('/').any(|seg| seg == "." || seg == "..") {
        return Err(EnvError::invalid(format!(
            "resource {resource:?} has a '.' or '..' segment: name resources by their plain path"
        )));
    }
    if resource.chars().any(|c| c.is_control()) {
        return Err(EnvError::invalid(format!(
            "resource {resource:?} contains a control character"
        )));
    }
    Ok(())
}

/// Whether two (valid) resources overlap: equal, or one is a directory
/// (`a/`) covering the other.
pub fn overlaps(a: &str, b: &str) -> bool {
    covers(a, b) || covers(b, a)
}

/// Whether resource `dir` covers `other`: equal, or `dir` is a directory
/// (`a/`) with `other` in it (or `other` is `a` itself).
pub(crate) fn covers(dir: &str, other: &str) -> bool {
    match dir.strip_suffix('/') {
        Some(base) => other == base || other.starts_with(dir),
        None => dir == other,
    }
}

/// The exclusive upper bound of the names a directory covers, for index range
/// scans: every name starting with `dir` (which ends in `/`) sorts in
/// `[dir, upper)` because `'0'` follows `'/'`.
pub(crate) fn dir_range_end(dir: &str) -> String {
    let mut end = dir[..dir.len() - 1].to_string();
    end.push('0');
    end
}

/// The directories that would cover `resource`: `a/`, `a/b/`, ... (and the
/// resource itself as a directory when it is a plain name).
pub(crate) fn covering_dirs(resource: &str) -> Vec<String> {
    let body = resource.strip_suffix('/').unwrap_or(resource);
    let mut dirs = Vec::new();
    for (i, c) in body.char_indices() {
        if c == '/' {
            dirs.push(body[..=i].to_string());
        }
    }
    dirs.push(format!("{body}/"));
    dirs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_covers_itself_and_descendants_only() {
        assert!(overlaps("src/", "src/main.rs"));
        assert!(overlaps("src/", "src"));
        assert!(overlaps("src/", "src/a/b/"));
        assert!(overlaps("src/a/", "src/"));
        assert!(!overlaps("src/", "srcs/x"));
        assert!(!overlaps("src", "src/main.rs"));
        assert!(!overlaps("a", "b"));
        assert!(overlaps("a", "a"));
    }

    #[test]
    fn malformed_resources_are_rejected_with_a_reason() {
        assert!(validate_resource("", 10).is_err());
        assert!(validate_resource("/abs", 10).is_err());
        assert!(validate_resource("a//b", 10).is_err());
        assert!(validate_resource("a\nb", 10).is_err());
        assert!(validate_resource("a/../b", 10).is_err());
        assert!(validate_resource("./a", 10).is_err());
        assert!(matches!(
            validate_resource("abcdefghijk", 10),
            Err(EnvError::TooLarge { .. })
        ));
        assert!(validate_resource("a/b/", 10).is_ok());
    }

    #[test]
    fn covering_dirs_lists_every_ancestor() {
        assert_eq!(covering_dirs("a/b/c"), vec!["a/", "a/b/", "a/b/c/"]);
        assert_eq!(covering_dirs("a/"), vec!["a/"]);
        assert_eq!(dir_range_end("src/"), "src0");
    }
}
