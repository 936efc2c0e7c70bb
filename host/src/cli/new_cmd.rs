//! `wawe new`: scaffold an agent project and print the commands that build and run it.

use std::path::PathBuf;

use clap::Args;

use crate::scaffold::{self, Sdk};

/// Arguments of `wawe new`.
#[derive(Debug, Args)]
pub struct NewArgs {
    /// The agent's name: the crate, its `.wasm` and the project directory.
    pub name: String,

    /// Where to create the project (default: `./NAME`).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,

    /// Where the project takes `wawe-sdk` from: the SDK's directory, or a git
    /// URL. Default: the clone this `wawe` was built from, else the project's
    /// git repository.
    #[arg(long, value_name = "DIR|URL")]
    pub sdk: Option<String>,
}

/// Runs `wawe new`.
pub fn run(args: NewArgs) -> anyhow::Result<()> {
    let sdk = match &args.sdk {
        Some(text) => Sdk::parse(text)?,
        None => Sdk::default_for_this_build(),
    };
    let dir = args.dir.unwrap_or_else(|| PathBuf::from(&args.name));
    let created = scaffold::create(&args.name, &dir, &sdk)?;
    println!(
        "created {} ({}), with wawe-sdk from {sdk}",
        created.dir.display(),
        created.files.join(", ")
    );
    println!("build and run it:");
    println!("  cd {}", shell_word(&created.dir.to_string_lossy()));
    println!("  rustup target add wasm32-wasip2");
    println!("  cargo build --release --target wasm32-wasip2");
    println!("  {} run swarm.toml", shell_word(&this_command()));
    Ok(())
}

/// How to call this `wawe` from a shell: `wawe` when that name on `PATH` is
/// this very binary, else its full path (as after `cargo run`).
fn this_command() -> String {
    let Ok(me) = std::env::current_exe().and_then(|p| p.canonicalize()) else {
        return "wawe".to_owned();
    };
    let on_path = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|dir| dir.join("wawe"))
        .find(|candidate| candidate.is_file());
    match on_path.and_then(|p| p.canonicalize().ok()) {
        Some(found) if found == me => "wawe".to_owned(),
        _ => me.to_string_lossy().into_owned(),
    }
}

/// `text` quoted for a POSIX shell when it needs to be.
fn shell_word(text: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./+:@=,".contains(c);
    if !text.is_empty() && text.chars().all(plain) {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_words_are_quoted_only_when_needed() {
        assert_eq!(shell_word("/tmp/a-b_c.d"), "/tmp/a-b_c.d");
        assert_eq!(shell_word("/tmp/with space"), "'/tmp/with space'");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
    }
}
