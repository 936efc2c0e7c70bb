//! The config map an agent is run with (from the swarm manifest).

use std::fmt::Display;
use std::str::FromStr;

/// The key/value pairs the host hands to an agent's `run`, with lookup helpers.
///
/// When a key appears more than once, the last occurrence wins.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Config {
    entries: Vec<(String, String)>,
}

impl Config {
    /// Wraps the raw `list<tuple<string, string>>` from the WIT `run` export.
    pub fn new(entries: Vec<(String, String)>) -> Self {
        Config { entries }
    }

    /// The value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The value of `key`, or `default` when it is not set.
    pub fn get_or<'a>(&'a self, key: &str, default: &'a str) -> &'a str {
        self.get(key).unwrap_or(default)
    }

    /// The value of `key`, or an error naming the key when it is not set.
    pub fn require(&self, key: &str) -> Result<&str, String> {
        self.get(key)
            .ok_or_else(|| format!("config `{key}` is required"))
    }

    /// The value of `key` parsed as a `T`, or `default` when it is not set;
    /// an error names the key and the bad value.
    pub fn parse<T>(&self, key: &str, default: T) -> Result<T, String>
    where
        T: FromStr,
        T::Err: Display,
    {
        match self.get(key) {
            None => Ok(default),
            Some(text) => text
                .trim()
                .parse()
                .map_err(|e| format!("config `{key}` = {text:?}: {e}")),
        }
    }

    /// True when `key` is set.
    pub fn contains(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Every pair, in the order the host gave them.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The number of pairs.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when the agent was given no config at all.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl From<Vec<(String, String)>> for Config {
    fn from(entries: Vec<(String, String)>) -> Self {
        Config::new(entries)
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Config {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Config::new(
            iter.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_and_defaults() {
        let config: Config = [("queue", "jobs"), ("tasks", " 12 "), ("queue", "later")]
            .into_iter()
            .collect();
        assert_eq!(config.get("queue"), Some("later"));
        assert_eq!(config.get_or("missing", "work"), "work");
        assert_eq!(config.parse("tasks", 20u32), Ok(12));
        assert_eq!(config.parse("absent", 20u32), Ok(20));
        assert_eq!(
            config.require("nope"),
            Err("config `nope` is required".into())
        );
        assert!(config.contains("tasks") && config.len() == 3 && !config.is_empty());
    }

    #[test]
    fn parse_errors_name_the_key_and_value() {
        let config: Config = [("tasks", "many")].into_iter().collect();
        let error = config.parse("tasks", 1u32).unwrap_err();
        assert!(error.starts_with("config `tasks` = \"many\": "), "{error}");
    }
}
