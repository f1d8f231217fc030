//! The binary's command-line contract: --about, --version, exit codes, one-line errors.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use crate::streams::ALL;
use crate::support::{sim_config, tap, tap_env, write_json, Msg, Run, World};

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

/// A string as Python's `json.dumps` writes it (non-ASCII as `\\u` escapes), as
/// scripts/sync-meltano-settings writes descriptions.
pub(crate) fn python_json(text: &str) -> String {
    let mut out = String::new();
    for c in serde_json::to_string(text).unwrap().chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}

#[test]
fn the_meltano_files_declare_every_setting_as_about_describes_it() {
    let about: Value = serde_json::from_str(&tap(&["--about"]).stdout).unwrap();
    let settings = about["settings"]["properties"].as_object().unwrap();
    for file in ["meltano/meltano.yml", "meltano/extractors/tap-withings.yml"] {
        let path = format!("{}/{file}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap();
        for (name, setting) in settings {
            let description = python_json(setting["description"].as_str().unwrap());
            let entry = text
                .split("- name: ")
                .find(|e| e.starts_with(&format!("{name}\n")));
            assert!(
                entry.is_some_and(|e| e.contains(&format!("description: {description}\n"))),
                "{file}: setting {name} is missing or described otherwise than by --about: run scripts/sync-meltano-settings"
            );
        }
    }
}

/// A full sync of every stream (7 days: every stream has data), with extra environment.
fn full_sync(world: &World, env: &[(&str, &str)]) -> Run {
    let catalog = world.catalog(ALL);
    let run = tap_env(
        &[
            "--config",
            &world.config.display().to_string(),
            "--catalog",
            &catalog.display().to_string(),
        ],
        env,
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    run.check();
    for stream in ALL {
        assert!(!run.records(stream).is_empty(), "no {stream} records");
    }
    run
}

fn record_counts(run: &Run) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for m in &run.messages {
        if let Msg::Record { stream, .. } = m {
            *counts.entry(stream.clone()).or_default() += 1;
        }
    }
    counts
}

/// Every `METRIC: {...}` of a text-format stderr, parsed.
fn metric_points(stderr: &str) -> Vec<Value> {
    stderr
        .lines()
        .filter_map(|l| l.split_once("METRIC: ").map(|(_, json)| json))
        .map(|json| serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {json}")))
        .collect()
}

fn keys(v: &Value) -> BTreeSet<&str> {
    v.as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default()
}

#[test]
fn metrics_are_in_the_sdk_shape_per_stream() {
    let world = World::new(sim_config(1, 7));
    let userid = world.userid() as i64;
    let run = full_sync(&world, &[]);
    let records = record_counts(&run);
    let points = metric_points(&run.stderr);
    let pid = points
        .iter()
        .find_map(|p| p["tags"].get("pid"))
        .expect("a point with a pid")
        .clone();
    assert!(pid.is_u64());
    let mut requests: BTreeMap<String, u64> = BTreeMap::new();
    let mut counted: BTreeMap<String, u64> = BTreeMap::new();
    let mut timed: BTreeMap<String, u64> = BTreeMap::new();
    for p in &points {
        assert_eq!(
            keys(p),
            BTreeSet::from(["type", "metric", "value", "tags"]),
            "{p}"
        );
        assert!(p["value"].as_f64().is_some_and(|v| v >= 0.0), "{p}");
        let tags = &p["tags"];
        match p["metric"].as_str().unwrap() {
            "http_request_duration" => {
                assert_eq!(p["type"], "timer", "{p}");
                for tag in ["stream", "endpoint", "http_status_code", "status"] {
                    assert!(tags.get(tag).is_some(), "{tag} missing: {p}");
                }
                assert!(["succeeded", "failed"].contains(&tags["status"].as_str().unwrap()));
                assert!(tags["http_status_code"].is_u64(), "{p}");
                match tags["stream"].as_str() {
                    // Only the token refresh that identifies the user runs outside a stream.
                    None => assert_eq!(tags["endpoint"], "/v2/oauth2", "{p}"),
                    Some(stream) => {
                        assert!(ALL.contains(&stream), "{p}");
                        assert_eq!(tags["context"], json!({"userid": userid}), "{p}");
                        *requests.entry(stream.to_string()).or_default() += 1;
                    }
                }
                if tags["action"] == "get" && tags["endpoint"] == "/v2/heart" {
                    assert_eq!(
                        tags["stream"], "ecg_signals",
                        "a signal is fetched for its stream"
                    );
                }
            }
            "record_count" => {
                assert_eq!(p["type"], "counter", "{p}");
                assert_eq!(
                    keys(tags),
                    BTreeSet::from(["stream", "context", "pid"]),
                    "{p}"
                );
                assert_eq!(tags["context"], json!({"userid": userid}), "{p}");
                assert_eq!(tags["pid"], pid);
                *counted
                    .entry(tags["stream"].as_str().unwrap().to_string())
                    .or_default() += p["value"].as_u64().expect("a count");
            }
            "sync_duration" => {
                assert_eq!(p["type"], "timer", "{p}");
                assert_eq!(
                    keys(tags),
                    BTreeSet::from(["stream", "context", "status", "pid"]),
                    "{p}"
                );
                assert_eq!(tags["context"], json!({"userid": userid}));
                assert_eq!(tags["status"], "succeeded");
                assert_eq!(tags["pid"], pid);
                *timed
                    .entry(tags["stream"].as_str().unwrap().to_string())
                    .or_default() += 1;
            }
            other => panic!("unexpected metric {other}: {p}"),
        }
    }
    let all: BTreeSet<String> = ALL.iter().map(|s| s.to_string()).collect();
    assert_eq!(
        counted, records,
        "record_count adds up to the records written"
    );
    assert_eq!(timed.keys().cloned().collect::<BTreeSet<_>>(), all);
    assert!(
        timed.values().all(|n| *n == 1),
        "one sync_duration per stream and user"
    );
    // The summary: one line per stream, with the records written and the requests tagged, in
    // its fields and in its message (what Meltano's console shows).
    let summaries: BTreeMap<String, (u64, u64)> = run
        .stderr
        .lines()
        .filter(|l| l.contains("Stream summary:"))
        .inspect(|l| {
            let stream = l
                .split("stream=")
                .nth(1)
                .unwrap()
                .split(' ')
                .next()
                .unwrap();
            let n = records.get(stream).copied().unwrap_or(0);
            let text = format!("Stream summary: {stream}: {} record", thousands(n));
            assert!(l.contains(&text), "{text:?} not in {l}");
            let reqs = requests.get(stream).copied().unwrap_or(0);
            let text = format!(", {} request", thousands(reqs));
            assert!(l.contains(&text), "{text:?} not in {l}");
        })
        .map(|l| {
            let field = |name: &str| {
                l.split_whitespace()
                    .find_map(|w| w.strip_prefix(&format!("{name}=")))
                    .unwrap_or_else(|| panic!("{name} missing: {l}"))
                    .to_string()
            };
            (
                field("stream"),
                (
                    field("records").parse().unwrap(),
                    field("requests").parse().unwrap(),
                ),
            )
        })
        .collect();
    assert_eq!(summaries.keys().cloned().collect::<BTreeSet<_>>(), all);
    for (stream, (n, reqs)) in &summaries {
        assert_eq!(Some(n), records.get(stream), "{stream} records");
        assert_eq!(
            *reqs,
            requests.get(stream).copied().unwrap_or(0),
            "{stream} requests"
        );
    }
    assert!(requests["ecg_signals"] >= 1 && requests["stetho_signals"] >= 1);
    let total: u64 = records.values().sum();
    let text = format!(
        "Sync summary: {} records in {} streams, ",
        thousands(total),
        ALL.len()
    );
    assert!(run.stderr.contains(&text), "{text:?} not in {}", run.stderr);
}

/// `n` with thousands separators, as the summaries write counts.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[test]
fn json_logs_are_sdk_shaped_and_name_the_stream() {
    let world = World::new(sim_config(1, 7));
    // The environment variable (Meltano passes only --config/--catalog/--state).
    let run = full_sync(&world, &[("TAP_WITHINGS_LOG_FORMAT", "json")]);
    let lines: Vec<Value> = run
        .stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(lines.len() > 20);
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
    let message = |l: &Value| l["message"].as_str().unwrap().to_string();
    let mut syncing = BTreeSet::new();
    for line in &lines {
        let text = message(line);
        if text == "Syncing." {
            syncing.insert(
                line["stream_name"]
                    .as_str()
                    .expect("stream work names its stream"),
            );
        }
        if let Some(json) = text.strip_prefix("METRIC: ") {
            let point: Value = serde_json::from_str(json).unwrap();
            if let Some(stream) = point["tags"]["stream"].as_str() {
                assert_eq!(line["stream_name"], stream, "{line}");
            }
        }
        if text.starts_with("Stream summary: ") {
            let stream = line["extra"]["stream"].as_str().unwrap();
            assert!(
                text.starts_with(&format!("Stream summary: {stream}: ")),
                "{line}"
            );
            assert_eq!(line["stream_name"], line["extra"]["stream"], "{line}");
        }
    }
    // One task per source; each names the first stream it feeds (getintradayactivity and
    // sleep get are read by the getactivity and getsummary tasks, where those indexes say).
    assert_eq!(syncing.len(), 8, "{syncing:?}");
    let with_stream = lines
        .iter()
        .filter(|l| l["stream_name"].is_string())
        .count();
    assert!(
        with_stream * 10 > lines.len() * 9,
        "{with_stream} of {}",
        lines.len()
    );
}

/// A cheap sync (goals only) with `args` and `env` added.
fn goals_sync(world: &World, args: &[&str], env: &[(&str, &str)]) -> Run {
    let catalog = world.catalog(&["goals"]);
    let config = world.config.display().to_string();
    let catalog = catalog.display().to_string();
    let mut all = vec!["--config", &config, "--catalog", &catalog];
    all.extend_from_slice(args);
    let run = tap_env(&all, env);
    assert_eq!(run.code, 0, "{args:?} {env:?}: {}", run.stderr);
    assert_eq!(run.records("goals").len(), 1);
    run
}

#[test]
fn log_level_and_format_follow_flags_then_the_environment() {
    let world = World::new(sim_config(1, 2));
    let sdk_config = world.path("sdk-logging.json");
    std::fs::write(
        &sdk_config,
        r#"{"version": 1, "formatters": {"singer_formatter": {"()": "singer_sdk.logging.StructuredFormatter"}},
            "root": {"handlers": ["console"], "level": "WARNING"}}"#,
    )
    .unwrap();
    let sdk_config = sdk_config.display().to_string();
    let has = |run: &Run, text: &str| run.stderr.contains(text);
    let all_json = |run: &Run| {
        run.stderr
            .lines()
            .all(|l| serde_json::from_str::<Value>(l).is_ok_and(|v| v.get("stream_name").is_some()))
    };

    let info = goals_sync(&world, &[], &[]);
    assert!(has(&info, "METRIC: ") && has(&info, "Stream summary:"));
    assert!(!has(&info, "Request."), "debug lines are off at info");
    assert!(!all_json(&info));

    for (args, env) in [
        (vec!["--log-level", "warning"], vec![]),
        (vec!["--log-level", "ERROR"], vec![("RUST_LOG", "debug")]),
        (vec![], vec![("TAP_WITHINGS_LOGLEVEL", "warning")]),
        (vec![], vec![("LOGLEVEL", "error")]),
        (vec![], vec![("RUST_LOG", "warn")]),
        (
            vec![],
            vec![
                ("RUST_LOG", ""),
                ("SINGER_SDK_LOG_CONFIG", sdk_config.as_str()),
            ],
        ),
    ] {
        let quiet = goals_sync(&world, &args, &env);
        assert!(
            !has(&quiet, "METRIC: ") && !has(&quiet, "Stream summary") && !has(&quiet, "INFO"),
            "{args:?} {env:?}: {}",
            quiet.stderr
        );
    }

    let debug = goals_sync(&world, &["--log-level", "debug"], &[]);
    assert!(
        has(&debug, "DEBUG") && has(&debug, "Request."),
        "{}",
        debug.stderr
    );
    let debug = goals_sync(&world, &[], &[("TAP_WITHINGS_LOGLEVEL", "DEBUG")]);
    assert!(has(&debug, "Request."));

    // Meltano's structured-logging config asks for JSON; the flag and variable override it.
    let sdk = goals_sync(
        &world,
        &["--log-level", "info"],
        &[("SINGER_SDK_LOG_CONFIG", &sdk_config)],
    );
    assert!(all_json(&sdk) && has(&sdk, "METRIC: "), "{}", sdk.stderr);
    let text = goals_sync(
        &world,
        &["--log-format", "text"],
        &[
            ("SINGER_SDK_LOG_CONFIG", &sdk_config),
            ("TAP_WITHINGS_LOG_FORMAT", "json"),
        ],
    );
    assert!(!all_json(&text) && has(&text, "METRIC: "));
    let json = goals_sync(&world, &[], &[("TAP_WITHINGS_LOG_FORMAT", "json")]);
    assert!(all_json(&json));

    // A bad value is a usage error naming the variable's flag.
    let bad = tap_env(&["--about"], &[("TAP_WITHINGS_LOG_FORMAT", "xml")]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(bad.stderr.contains("--log-format"), "{}", bad.stderr);
}

/// GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// Every `](target)` link of a Markdown text.
fn links(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("](") {
        rest = &rest[i + 2..];
        if let Some(end) = rest.find(')') {
            out.push(rest[..end].to_string());
            rest = &rest[end..];
        }
    }
    out
}

#[test]
fn every_relative_link_of_the_readme_resolves() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let mut in_code = false;
    let mut anchors = BTreeSet::new();
    for line in readme.lines() {
        if line.starts_with("```") {
            in_code = !in_code;
        } else if !in_code && line.starts_with('#') {
            anchors.insert(anchor(line.trim_start_matches('#')));
        }
    }
    let mut relative = 0;
    for link in links(&readme) {
        if link.starts_with("http://")
            || link.starts_with("https://")
            || link.starts_with("mailto:")
        {
            continue;
        }
        relative += 1;
        let (path, fragment) = link.split_once('#').unwrap_or((&link, ""));
        if path.is_empty() {
            assert!(
                anchors.contains(fragment),
                "README link {link}: no such heading"
            );
            continue;
        }
        let target = root.join(path);
        assert!(
            target.exists()
                && target
                    .canonicalize()
                    .unwrap()
                    .starts_with(root.canonicalize().unwrap()),
            "README link {link}: no such file in the repository"
        );
    }
    assert!(relative >= 4, "{relative} relative links");
    assert_eq!(
        anchor("API quirks the tap handles"),
        "api-quirks-the-tap-handles"
    );
    assert_eq!(
        anchor(" Running `tap-withings auth`"),
        "running-tap-withings-auth"
    );
}

#[test]
fn a_first_run_names_a_state_file_that_does_not_exist_yet() {
    let world = World::new(sim_config(1, 2));
    let state = world.dir.path().join("state.json");
    let state = state.display().to_string();
    let run = goals_sync(&world, &["--state", &state], &[]);
    let warnings: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.contains("does not exist yet"))
        .collect();
    assert_eq!(warnings.len(), 1, "{}", run.stderr);
    assert!(warnings[0].contains(&state), "{}", warnings[0]);
    assert!(!run.stderr.contains("No --catalog given"), "{}", run.stderr);
}
