//! New agent projects: `wawe new NAME` writes a crate that builds and runs as
//! it is, from the templates in this folder.
//!
//! The project depends on the SDK by path (a clone of the repository) or by
//! git; [`Sdk::default_for_this_build`] picks the clone this `wawe` was built
//! from when it is still there.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// Where the new project takes `wawe-sdk` from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sdk {
    /// A directory holding the SDK crate (`guest-sdk/` of a clone, or an
    /// unpacked `wawe-sdk-*.crate`).
    Path(PathBuf),
    /// A git repository whose workspace holds the SDK.
    Git(String),
}

impl Sdk {
    /// The SDK of the clone this binary was built from, if it still exists;
    /// otherwise the project's git repository.
    pub fn default_for_this_build() -> Sdk {
        let clone = Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest-sdk");
        match clone.join("Cargo.toml").is_file() {
            true => Sdk::Path(clone.canonicalize().unwrap_or(clone)),
            false => Sdk::Git(env!("CARGO_PKG_REPOSITORY").to_owned()),
        }
    }

    /// Reads `--sdk`: a URL (`https://…`, `ssh://…`, `git@…`, `file://…`) is a
    /// git repository, anything else a directory, which must hold a `Cargo.toml`.
    pub fn parse(text: &str) -> anyhow::Result<Sdk> {
        if text.contains("://") || text.starts_with("git@") {
            return Ok(Sdk::Git(text.to_owned()));
        }
        let dir = PathBuf::from(text);
        if !dir.join("Cargo.toml").is_file() {
            bail!(
                "--sdk {text}: no Cargo.toml there; give the SDK's directory (`guest-sdk/` \
                 in a clone of wawe) or a git URL"
            );
        }
        Ok(Sdk::Path(dir.canonicalize().unwrap_or(dir)))
    }

    /// The dependency as an inline TOML table.
    fn toml(&self) -> String {
        let table = match self {
            Sdk::Path(dir) => format!("path = {}", toml_string(&dir.to_string_lossy())),
            Sdk::Git(url) => format!("git = {}", toml_string(url)),
        };
        format!("{{ {table} }}")
    }
}

impl fmt::Display for Sdk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Sdk::Path(dir) => write!(f, "{}", dir.display()),
            Sdk::Git(url) => write!(f, "{url} (git)"),
        }
    }
}

/// A TOML basic string holding `text` (JSON's escapes are TOML's).
fn toml_string(text: &str) -> String {
    serde_json::to_string(text).expect("a string always serializes")
}

/// The files of a Rust agent project, by path within it, with their templates.
const RUST: &[(&str, &str)] = &[
    ("Cargo.toml", include_str!("rust/Cargo.toml.tmpl")),
    ("src/lib.rs", include_str!("rust/lib.rs.tmpl")),
    ("swarm.toml", include_str!("rust/swarm.toml.tmpl")),
    ("README.md", include_str!("rust/README.md.tmpl")),
    (".gitignore", include_str!("rust/gitignore.tmpl")),
];

/// The guide for agent authors, as the generated README links it.
const GUIDE: &str = concat!(env!("CARGO_PKG_REPOSITORY"), "/blob/main/docs/agents.md");

/// What [`create`] made.
#[derive(Debug)]
pub struct Created {
    /// The project directory.
    pub dir: PathBuf,
    /// The files written, relative to it.
    pub files: Vec<&'static str>,
}

/// Writes a new agent project named `name` into `dir` (which must not exist,
/// or be empty), depending on `sdk`.
pub fn create(name: &str, dir: &Path, sdk: &Sdk) -> anyhow::Result<Created> {
    check_name(name)?;
    if dir.exists() {
        let empty = dir.is_dir()
            && std::fs::read_dir(dir)
                .with_context(|| format!("cannot list {}", dir.display()))?
                .next()
                .is_none();
        if !empty {
            bail!(
                "{} already exists and is not empty; choose another name or remove it",
                dir.display()
            );
        }
    }
    let module = name.replace('-', "_");
    for (path, template) in RUST {
        let text = template
            .replace("{{name}}", name)
            .replace("{{module}}", &module)
            .replace("{{sdk}}", &sdk.toml())
            .replace("{{guide}}", GUIDE);
        let path = dir.join(path);
        let parent = path.parent().expect("every template path has a parent");
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(Created {
        dir: dir.to_owned(),
        files: RUST.iter().map(|(path, _)| *path).collect(),
    })
}

/// A project name must be a cargo package name that is also a fine file name:
/// a letter, then letters, digits, `-` or `_`.
fn check_name(name: &str) -> anyhow::Result<()> {
    let mut chars = name.chars();
    let starts_well = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !starts_well || !rest_ok || name.len() > 64 {
        bail!(
            "`{name}` cannot name an agent crate: use a letter, then letters, digits, `-` or `_` \
             (at most 64), e.g. `word-count`"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_be_crate_names() {
        assert!(check_name("word-count").is_ok());
        assert!(check_name("a1_b").is_ok());
        for bad in ["", "1abc", "has space", "dot.name", "ünï", "../up"] {
            let error = check_name(bad).unwrap_err().to_string();
            assert!(
                error.contains("cannot name an agent crate"),
                "{bad}: {error}"
            );
        }
    }

    #[test]
    fn sdk_urls_are_git_and_paths_must_hold_a_crate() {
        assert_eq!(
            Sdk::parse("https://example.com/wawe").unwrap(),
            Sdk::Git("https://example.com/wawe".into())
        );
        let error = Sdk::parse("/nowhere/at/all").unwrap_err().to_string();
        assert!(error.contains("no Cargo.toml there"), "{error}");
        assert_eq!(
            Sdk::Git("file:///x \"y\"".into()).toml(),
            r#"{ git = "file:///x \"y\"" }"#
        );
    }

    #[test]
    fn a_project_is_written_with_every_placeholder_filled() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("word-count");
        let created = create("word-count", &dir, &Sdk::Git("https://x/y".into())).unwrap();
        for file in created.files {
            let text = std::fs::read_to_string(dir.join(file)).unwrap();
            assert!(!text.contains("{{"), "{file} keeps a placeholder:\n{text}");
        }
        let swarm = std::fs::read_to_string(dir.join("swarm.toml")).unwrap();
        assert!(swarm.contains("target/wasm32-wasip2/release/word_count.wasm"));
        let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
        assert!(manifest.contains(r#"wawe-sdk = { git = "https://x/y" }"#));
        let refused = create("word-count", &dir, &Sdk::Git("https://x/y".into()));
        assert!(refused.unwrap_err().to_string().contains("not empty"));
    }
}
