//! The binary's command-line contract: --about, --version, exit codes, one-line errors.

use serde_json::{json, Value};

use crate::support::{tap, tap_env, write_json};

#[test]
fn about_json_lists_capabilities_and_secret_settings() {
    let run = tap(&["--about"]);
    assert_eq!(run.code, 0);
    let about: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(about["name"], "tap-withings");
    assert_eq!(
        about["settings"]["properties"]["client_secret"]["secret"],
        true
    );
    assert!(about["capabilities"]
        .as_array()
        .unwrap()
        .contains(&json!("discover")));
}

#[test]
fn about_markdown_is_a_settings_table() {
    let run = tap(&["--about", "--format", "markdown"]);
    assert_eq!(run.code, 0);
    assert!(run.stdout.contains("| client_id | True |"));
}

#[test]
fn version_prints_the_package_version() {
    let run = tap(&["--version"]);
    assert_eq!(run.code, 0);
    assert_eq!(
        run.stdout.trim(),
        format!("tap-withings {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn usage_errors_exit_two() {
    assert_eq!(tap(&["--bogus"]).code, 2);
    assert_eq!(tap(&["--discover", "--about"]).code, 2);
}

#[test]
fn bad_config_exits_one_with_a_single_line_naming_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let missing = write_json(dir.path(), "c.json", &json!({"client_id": "x"}));
    let garbage = dir.path().join("g.json");
    std::fs::write(&garbage, "{not json").unwrap();
    let cases = [
        (
            vec!["--config".to_string(), missing.display().to_string()],
            "missing required setting `client_secret`",
        ),
        (
            vec!["--config".to_string(), garbage.display().to_string()],
            "cannot parse config file",
        ),
        (
            vec!["--config".to_string(), "/nonexistent/c.json".to_string()],
            "cannot read config file /nonexistent/c.json",
        ),
    ];
    for (args, expected) in cases {
        let run = tap(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(run.code, 1, "{args:?}");
        let err_lines: Vec<&str> = run
            .stderr
            .lines()
            .filter(|l| l.starts_with("tap-withings:"))
            .collect();
        assert_eq!(err_lines.len(), 1, "{}", run.stderr);
        assert!(err_lines[0].contains(expected), "{}", err_lines[0]);
        assert!(!run.stderr.contains("panicked"));
        assert!(run.stdout.is_empty());
    }
}

#[test]
fn config_env_reads_tap_withings_variables() {
    let run = tap_env(
        &["--config", "ENV", "--test"],
        &[("TAP_WITHINGS_CLIENT_ID", "x")],
    );
    assert_eq!(run.code, 1);
    assert!(
        run.stderr
            .contains("missing required setting `client_secret`"),
        "{}",
        run.stderr
    );
}

fn settings_table(text: &str) -> Vec<String> {
    text.lines()
        .skip_while(|l| !l.starts_with("| Setting |"))
        .take_while(|l| l.starts_with('|'))
        .map(str::to_string)
        .collect()
}

#[test]
fn the_readme_settings_table_is_the_about_markdown_table() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let about = tap(&["--about", "--format", "markdown"]).stdout;
    let expected = settings_table(&about);
    assert!(expected.len() > 5);
    assert_eq!(
        settings_table(&readme),
        expected,
        "regenerate the README table from `tap-withings --about --format markdown`"
    );
}

#[test]
fn sigterm_stops_promptly_with_a_final_state() {
    use std::io::Read;
    use std::time::{Duration, Instant};
    let mut cfg = crate::support::sim_config(1, 5);
    cfg.faults.delay_ms = 300;
    let world = crate::support::World::new(cfg);
    let catalog = world.catalog(&[
        "measures",
        "intraday_activity",
        "sleep_series",
        "sleep_vitals",
    ]);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tap-withings"))
        .args([
            "--config",
            &world.config.display().to_string(),
            "--catalog",
            &catalog.display().to_string(),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let signalled = Instant::now();
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let code = child.wait().unwrap().code();
    assert!(
        signalled.elapsed() < Duration::from_secs(5),
        "stopped in {:?}",
        signalled.elapsed()
    );
    assert_eq!(code, Some(130), "{stderr}");
    assert!(
        stderr
            .lines()
            .last()
            .unwrap_or_default()
            .contains("interrupted"),
        "{stderr}"
    );
    let messages: Vec<crate::support::Msg> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("a whole Singer line"))
        .collect();
    let run = crate::support::Run {
        code: 130,
        stdout,
        stderr,
        messages,
    };
    run.check();
    assert!(
        world
            .sim
            .requests()
            .iter()
            .filter(|r| r.action == "getintradayactivity")
            .count()
            < 6,
        "it stopped requesting"
    );
}

#[test]
fn json_logs_are_sdk_shaped_objects() {
    let world = crate::support::World::new(crate::support::sim_config(1, 2));
    let catalog = world.catalog(&["goals"]);
    let run = tap(&[
        "--config",
        &world.config.display().to_string(),
        "--catalog",
        &catalog.display().to_string(),
        "--log-format",
        "json",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let lines: Vec<Value> = run
        .stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(lines.len() > 3);
    for line in &lines {
        for key in [
            "level",
            "pid",
            "logger_name",
            "ts",
            "thread_name",
            "app_name",
            "stream_name",
            "message",
        ] {
            assert!(line.get(key).is_some(), "{key} missing in {line}");
        }
    }
    assert!(lines
        .iter()
        .any(|l| l["message"].as_str().unwrap().starts_with("METRIC: ")));
}
