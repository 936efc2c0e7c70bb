//! Logging to the host log, attributed to the agent: functions and `format!`-style macros.
//!
//! ```no_run
//! let task = 7;
//! wawe_sdk::info!("claimed task {task}");
//! wawe_sdk::log::warn("running low on work");
//! ```

use crate::bindings::wawe::env::logging as raw;

pub use raw::Level;

/// Writes `message` to the host log at `level`.
pub fn log(level: Level, message: &str) {
    raw::log(level, message);
}

/// Writes `message` at trace level.
pub fn trace(message: &str) {
    log(Level::Trace, message);
}

/// Writes `message` at debug level.
pub fn debug(message: &str) {
    log(Level::Debug, message);
}

/// Writes `message` at info level.
pub fn info(message: &str) {
    log(Level::Info, message);
}

/// Writes `message` at warn level.
pub fn warn(message: &str) {
    log(Level::Warn, message);
}

/// Writes `message` at error level.
pub fn error(message: &str) {
    log(Level::Error, message);
}

/// Formats its arguments like `format!` and logs them at trace level.
#[macro_export]
macro_rules! trace {
    ($($arg:tt)+) => {
        $crate::log::trace(&::std::format!($($arg)+))
    };
}

/// Formats its arguments like `format!` and logs them at debug level.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)+) => {
        $crate::log::debug(&::std::format!($($arg)+))
    };
}

/// Formats its arguments like `format!` and logs them at info level.
#[macro_export]
macro_rules! info {
    ($($arg:tt)+) => {
        $crate::log::info(&::std::format!($($arg)+))
    };
}

/// Formats its arguments like `format!` and logs them at warn level.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)+) => {
        $crate::log::warn(&::std::format!($($arg)+))
    };
}

/// Formats its arguments like `format!` and logs them at error level.
#[macro_export]
macro_rules! error {
    ($($arg:tt)+) => {
        $crate::log::error(&::std::format!($($arg)+))
    };
}
