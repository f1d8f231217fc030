//! Command-line flags (Singer/Meltano SDK conventions). Types only; `lib::run` acts on them.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// `--about` output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AboutFormat {
    Json,
    Markdown,
}

/// `--test` modes (the Meltano SDK's `--test[=all|schema]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TestMode {
    /// Check the credentials with one cheap authenticated call per user.
    All,
    /// Write the SCHEMA message of every stream (as a sync would send it), and nothing else:
    /// no request, no credentials used.
    Schema,
}

/// Singer tap for the Withings health-data API.
#[derive(Debug, Clone, Parser)]
#[command(name = "tap-withings", version, about, long_about = None)]
pub struct Cli {
    /// Config file (repeatable; later files override earlier ones). The literal word ENV reads
    /// every setting from TAP_WITHINGS_* variables, which also fill settings files leave out.
    #[arg(long, value_name = "FILE", global = true)]
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

    /// Test and exit: `--test` (or `--test all`) checks the credentials with one cheap
    /// authenticated call per user; `--test schema` prints the SCHEMA message of every stream.
    #[arg(long, value_enum, value_name = "MODE", num_args = 0..=1, default_missing_value = "all")]
    pub test: Option<TestMode>,

    /// Log level on stderr: debug, info, warning or error. Without it: LOGLEVEL, then RUST_LOG,
    /// then the level of Meltano's SINGER_SDK_LOG_CONFIG, then info.
    #[arg(long, global = true, value_name = "LEVEL", env = "TAP_WITHINGS_LOGLEVEL", ignore_case = true,
          value_parser = ["debug", "info", "warning", "warn", "error", "critical"])]
    pub log_level: Option<String>,

    /// Log line format on stderr: text, or json (the Meltano SDK's structured shape). Without
    /// it: json when Meltano's SINGER_SDK_LOG_CONFIG asks for the SDK's structured logs.
    #[arg(long, global = true, value_name = "FORMAT", env = "TAP_WITHINGS_LOG_FORMAT", ignore_case = true,
          value_parser = ["text", "json"])]
    pub log_format: Option<String>,

    /// Without a subcommand the tap runs as a Singer tap (sync, --discover, --about, --test).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands besides the Singer flags.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Link a Withings account (OAuth consent) and store its tokens; or, with --refresh or
    /// --status, rotate or show the stored tokens.
    Auth(AuthArgs),
}

/// Flags of `tap-withings auth`.
#[derive(Debug, Clone, Default, Args)]
pub struct AuthArgs {
    /// Log in to Withings' demo account (mode=demo) instead of a real one.
    #[arg(long, conflicts_with_all = ["refresh", "status"])]
    pub demo: bool,

    /// Read the pasted redirect URL from stdin even when `redirect_uri` is a loopback address.
    #[arg(long, conflicts_with_all = ["refresh", "status"])]
    pub no_listen: bool,

    /// Refresh the stored access token now (Withings rotates the refresh token) and print the
    /// new expiry.
    #[arg(long, conflicts_with = "status")]
    pub refresh: bool,

    /// Show each stored user's userid, scopes and token expiry (never the tokens).
    #[arg(long)]
    pub status: bool,

    /// With --refresh: refresh only this stored user.
    #[arg(long, value_name = "USERID", requires = "refresh")]
    pub user: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn singer_flags_parse() {
        let cli = Cli::try_parse_from([
            "tap-withings",
            "--config",
            "a.json",
            "--config",
            "ENV",
            "--state",
            "s.json",
            "--catalog",
            "c.json",
        ])
        .unwrap();
        assert_eq!(cli.config, ["a.json", "ENV"]);
        assert!(!cli.discover);
        let cli = Cli::try_parse_from(["tap-withings", "--about", "--format", "markdown"]).unwrap();
        assert_eq!(cli.format, AboutFormat::Markdown);
        assert!(cli.command.is_none());
        assert_eq!(cli.test, None);
    }

    #[test]
    fn test_takes_an_optional_mode_as_the_sdk() {
        let mode = |args: &[&str]| Cli::try_parse_from(args).map(|c| c.test);
        assert_eq!(mode(&["t", "--test"]).unwrap(), Some(TestMode::All));
        assert_eq!(mode(&["t", "--test", "all"]).unwrap(), Some(TestMode::All));
        assert_eq!(
            mode(&["t", "--test=schema"]).unwrap(),
            Some(TestMode::Schema)
        );
        assert_eq!(
            mode(&["t", "--test", "schema", "--config", "c.json"]).unwrap(),
            Some(TestMode::Schema)
        );
        assert_eq!(
            mode(&["t", "--test", "--config", "c.json"]).unwrap(),
            Some(TestMode::All)
        );
        assert!(mode(&["t", "--test=records"]).is_err());
        assert!(mode(&["t", "--test", "--discover"]).is_err());
    }

    #[test]
    fn auth_takes_its_flags_and_the_config_files() {
        let cli = Cli::try_parse_from([
            "tap-withings",
            "auth",
            "--config",
            "a.json",
            "--config",
            "b.json",
            "--demo",
            "--no-listen",
        ])
        .unwrap();
        assert_eq!(cli.config, ["a.json", "b.json"]);
        let Some(Command::Auth(args)) = cli.command else {
            panic!("auth subcommand")
        };
        assert!(args.demo && args.no_listen && !args.refresh && !args.status);
        let cli = Cli::try_parse_from([
            "tap-withings",
            "--config",
            "a.json",
            "auth",
            "--refresh",
            "--user",
            "7",
        ])
        .unwrap();
        assert_eq!(cli.config, ["a.json"]);
        let Some(Command::Auth(args)) = cli.command else {
            panic!("auth subcommand")
        };
        assert_eq!((args.refresh, args.user), (true, Some(7)));
    }

    #[test]
    fn contradictory_flags_are_usage_errors() {
        for args in [
            vec!["tap-withings", "--discover", "--about"],
            vec!["tap-withings", "--catalog", "a", "--properties", "b"],
            vec!["tap-withings", "--format", "json"],
            vec!["tap-withings", "--nope"],
            vec!["tap-withings", "auth", "--refresh", "--status"],
            vec!["tap-withings", "auth", "--demo", "--refresh"],
            vec!["tap-withings", "auth", "--user", "1"],
            vec!["tap-withings", "auth", "--discover"],
        ] {
            assert!(Cli::try_parse_from(&args).is_err(), "{args:?}");
        }
    }
}
