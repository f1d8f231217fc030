//! Command-line flags (Singer/Meltano SDK conventions). Types only; `lib::run` acts on them.

use std::path::PathBuf;

use clap::{Parser, ValueEnum};

/// `--about` output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AboutFormat {
    Json,
    Markdown,
}

/// Singer tap for the Withings health-data API.
#[derive(Debug, Clone, Parser)]
#[command(name = "tap-withings", version, about, long_about = None)]
pub struct Cli {
    /// Config file (repeatable; later files override earlier ones). The literal word ENV reads
    /// every setting from TAP_WITHINGS_* variables, which also fill settings files leave out.
    #[arg(long, value_name = "FILE")]
    pub config: Vec<String>,

    /// State file from a previous run (bookmarks per stream and user).
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,

    /// Catalog file selecting streams and properties.
    #[arg(long, value_name = "FILE", conflicts_with = "properties")]
    pub catalog: Option<PathBuf>,

    /// Legacy name of --catalog.
    #[arg(long, value_name = "FILE")]
    pub properties: Option<PathBuf>,

    /// Print the catalog of every stream and exit (needs no credentials).
    #[arg(long, conflicts_with_all = ["about", "test"])]
    pub discover: bool,

    /// Print the tap's name, version, capabilities and settings, and exit.
    #[arg(long, conflicts_with = "test")]
    pub about: bool,

    /// Output format of --about.
    #[arg(long, value_enum, default_value = "json", requires = "about")]
    pub format: AboutFormat,

    /// Check the credentials with one cheap authenticated call, and exit.
    #[arg(long)]
    pub test: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn singer_flags_parse() {
        let cli = Cli::try_parse_from(["tap-withings", "--config", "a.json", "--config", "ENV", "--state", "s.json", "--catalog", "c.json"]).unwrap();
        assert_eq!(cli.config, ["a.json", "ENV"]);
        assert!(!cli.discover);
        let cli = Cli::try_parse_from(["tap-withings", "--about", "--format", "markdown"]).unwrap();
        assert_eq!(cli.format, AboutFormat::Markdown);
    }

    #[test]
    fn contradictory_flags_are_usage_errors() {
        for args in [
            vec!["tap-withings", "--discover", "--about"],
            vec!["tap-withings", "--catalog", "a", "--properties", "b"],
            vec!["tap-withings", "--format", "json"],
            vec!["tap-withings", "--nope"],
        ] {
            assert!(Cli::try_parse_from(&args).is_err(), "{args:?}");
        }
    }
}
