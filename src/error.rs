//! The tap's error type: every failure is one complete line for stderr, with one exit-code
//! mapping (usage errors 2, everything else 1).

use std::fmt;

/// What went wrong, worded for the person running the tap.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Wrong command-line usage (exit 2).
    #[error("{0}")]
    Usage(String),
    /// A config, state, catalog or token-store file or setting is wrong.
    #[error("{0}")]
    Input(String),
    /// The Withings API failed in a way retries could not fix.
    #[error("{0}")]
    Api(String),
    /// Authentication failed: the user must act (re-run `tap-withings auth`).
    #[error("{0}")]
    Auth(String),
    /// Writing output or files failed.
    #[error("{0}")]
    Io(String),
    /// The run was interrupted (SIGINT/SIGTERM) after writing a final STATE.
    #[error("interrupted: stopped after writing the last complete state")]
    Interrupted,
}

impl Error {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) => 2,
            Error::Interrupted => 130,
            _ => 1,
        }
    }

    /// Builds an [`Error::Input`] from anything printable.
    pub fn input(msg: impl fmt::Display) -> Self {
        Error::Input(msg.to_string())
    }

    /// Builds an [`Error::Io`] naming what was being done.
    pub fn io(what: impl fmt::Display, err: impl fmt::Display) -> Self {
        Error::Io(format!("{what}: {err}"))
    }
}

/// Result alias used across the tap.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_errors_exit_two_and_others_one() {
        assert_eq!(Error::Usage("x".into()).exit_code(), 2);
        assert_eq!(Error::Input("x".into()).exit_code(), 1);
        assert_eq!(Error::Api("x".into()).exit_code(), 1);
        assert_eq!(Error::Interrupted.exit_code(), 130);
    }
}
