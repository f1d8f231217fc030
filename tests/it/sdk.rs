//! Where the tap behaves as a Meltano SDK tap does: `--test[=all|schema]`, the declared
//! capabilities, and the Meltano files kept in step with `--about` by
//! scripts/sync-meltano-settings.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::index::requests;
use crate::streams::ALL;
use crate::support::{schemas, sim_config, tap, Msg, World};

const REPO: &str = env!("CARGO_MANIFEST_DIR");

#[test]
fn test_schema_writes_every_streams_schema_and_nothing_else() {
    let world = World::new(sim_config(1, 2));
    let config = world.config.display().to_string();
    // A catalog selecting one stream does not narrow it (as the SDK's --test=schema).
    let catalog = world.catalog(&["goals"]).display().to_string();
    for args in [
        vec!["--config", &config, "--test", "schema"],
        vec!["--config", &config, "--test=schema", "--catalog", &catalog],
    ] {
        let run = tap(&args);
        assert_eq!(run.code, 0, "{args:?}: {}", run.stderr);
        assert_eq!(
            run.messages.len(),
            schemas(&run.messages).len(),
            "SCHEMA messages only: {}",
            run.stdout
        );
        let streams: Vec<String> = schemas(&run.messages).into_iter().map(|s| s.0).collect();
        assert_eq!(streams, ALL, "every stream once, in catalog order");
    }
    assert_eq!(
        requests(&world).values().sum::<u64>(),
        0,
        "--test schema makes no request"
    );
    assert!(
        !world.path("tokens.json").exists(),
        "--test schema does not touch the token store"
    );
    // The very SCHEMA a sync sends.
    let test = tap(&["--config", &config, "--test", "schema"]);
    let sync = world.sync(&["goals"], None);
    let goals = |m: &[Msg]| schemas(m).into_iter().find(|s| s.0 == "goals").unwrap();
    assert_eq!(goals(&test.messages), goals(&sync.messages));
}

#[test]
fn test_schema_follows_the_flattening_settings() {
    let world = World::with_settings(
        sim_config(1, 2),
        serde_json::json!({"flattening_enabled": true, "flattening_max_depth": 1}),
    );
    let config = world.config.display().to_string();
    let run = tap(&["--config", &config, "--test", "schema"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let workouts = schemas(&run.messages)
        .into_iter()
        .find(|s| s.0 == "workouts")
        .unwrap()
        .1;
    let props = workouts["properties"].as_object().unwrap();
    assert!(
        props.keys().any(|k| k.starts_with("data__")) && !props.contains_key("data"),
        "{workouts}"
    );
}

#[test]
fn test_modes_validate_the_config_and_refuse_unknown_modes() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.json");
    std::fs::write(&config, r#"{"client_id": "x"}"#).unwrap();
    let config = config.display().to_string();
    let run = tap(&["--config", &config, "--test", "schema"]);
    assert_eq!(run.code, 1);
    assert!(run.stdout.is_empty());
    assert!(
        run.stderr
            .contains("missing required setting `client_secret`"),
        "{}",
        run.stderr
    );
    let run = tap(&["--config", &config, "--test=records"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("records"), "{}", run.stderr);
    assert!(!run.stderr.contains("panicked"));
}

#[test]
fn test_all_is_the_connection_test() {
    let world = World::new(sim_config(1, 2));
    let config = world.config.display().to_string();
    for mode in [&["--test"][..], &["--test", "all"][..]] {
        let mut args = vec!["--config", config.as_str()];
        args.extend_from_slice(mode);
        let run = tap(&args);
        assert_eq!(run.code, 0, "{mode:?}: {}", run.stderr);
        assert!(run.stdout.is_empty(), "{}", run.stdout);
        assert!(
            run.stderr.contains("connection test succeeded"),
            "{}",
            run.stderr
        );
    }
    assert!(requests(&world).values().sum::<u64>() >= 2);
}

/// The `capabilities:` list of a Meltano YAML file (block style, as the files are written).
fn yaml_capabilities(text: &str) -> BTreeSet<String> {
    let mut lines = text.lines().skip_while(|l| l.trim() != "capabilities:");
    let head = lines.next().expect("a capabilities: key");
    let indent = head.len() - head.trim_start().len();
    lines
        .take_while(|l| {
            let i = l.len() - l.trim_start().len();
            i > indent || (i == indent && l.trim_start().starts_with("- "))
        })
        .filter_map(|l| l.trim().strip_prefix("- ").map(str::to_string))
        .collect()
}

#[test]
fn capabilities_declare_activate_version_in_about_and_the_meltano_files() {
    let about: Value = serde_json::from_str(&tap(&["--about"]).stdout).unwrap();
    let capabilities: BTreeSet<String> = about["capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    for c in ["activate-version", "test", "about", "state", "catalog"] {
        assert!(capabilities.contains(c), "{c}: {capabilities:?}");
    }
    let md = tap(&["--about", "--format", "markdown"]).stdout;
    assert!(md.contains("* `activate-version`"), "{md}");
    for file in ["meltano/meltano.yml", "meltano/extractors/tap-withings.yml"] {
        let text = std::fs::read_to_string(Path::new(REPO).join(file)).unwrap();
        assert_eq!(
            yaml_capabilities(&text),
            capabilities,
            "{file}: capabilities differ from --about"
        );
    }
}

// ---------------------------------------------------------------- sync-meltano-settings

fn sync_settings(files: &[&Path]) -> std::process::Output {
    Command::new(Path::new(REPO).join("scripts/sync-meltano-settings"))
        .arg(env!("CARGO_BIN_EXE_tap-withings"))
        .args(files)
        .output()
        .expect("scripts/sync-meltano-settings runs (python3)")
}

/// Every --about setting is declared with its description (as the script writes it).
fn declares_every_setting(text: &str) -> Result<(), String> {
    let about: Value = serde_json::from_str(&tap(&["--about"]).stdout).unwrap();
    for (name, setting) in about["settings"]["properties"].as_object().unwrap() {
        let description = crate::cli::python_json(setting["description"].as_str().unwrap());
        let entry = text
            .split("- name: ")
            .find(|e| e.starts_with(&format!("{name}\n")))
            .ok_or(format!("no setting {name}"))?;
        let entry = entry.split("\n    - ").next().unwrap();
        if !entry.contains(&format!("description: {description}\n")) {
            return Err(format!("{name}: {entry}"));
        }
    }
    Ok(())
}

#[test]
fn sync_meltano_settings_updates_a_file_meltano_config_set_rewrote() {
    // meltano/meltano.yml as `meltano config set` wrote it back: its BEGIN comment gone, the
    // settings re-ordered and re-quoted, its config set.
    let fixture =
        std::fs::read_to_string(Path::new(REPO).join("tests/fixtures/meltano-config-set.yml"))
            .unwrap();
    assert!(!fixture.contains("BEGIN generated settings"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meltano.yml");
    // One setting dropped and one described otherwise: the script must restore both.
    let stale = fixture
        .replace("    - name: end_date\n", "    - name: end_date_old\n")
        .replace(
            "description: Client ID of your Withings developer app.",
            "description: old text",
        );
    std::fs::write(&path, &stale).unwrap();
    assert!(declares_every_setting(&stale).is_err());
    let out = sync_settings(&[&path]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let synced = std::fs::read_to_string(&path).unwrap();
    declares_every_setting(&synced).unwrap();
    assert!(!synced.contains("end_date_old") && !synced.contains("old text"));
    // Everything outside the settings list is kept line for line.
    let outside = |text: &str| -> Vec<String> {
        let mut keep = Vec::new();
        let mut inside = false;
        for line in text.lines() {
            if line == "    settings:" {
                inside = true;
                keep.push(line.to_string());
                continue;
            }
            if inside {
                let deeper = line.starts_with("    - ")
                    || line.starts_with("      ")
                    || line.trim().starts_with('#');
                if deeper {
                    continue;
                }
                inside = false;
            }
            keep.push(line.to_string());
        }
        keep
    };
    assert_eq!(outside(&synced), outside(&stale));
    for kept in [
        "      start_date: '2025-01-01T00:00:00Z'",
        "      lookback_hours: 3",
        "  - name: target-jsonl",
    ] {
        assert!(synced.contains(kept), "{kept} kept:\n{synced}");
    }
    // A second run changes nothing.
    assert!(sync_settings(&[&path]).status.success());
    assert_eq!(std::fs::read_to_string(&path).unwrap(), synced);
}

#[test]
fn sync_meltano_settings_keeps_the_committed_files_as_they_are() {
    let dir = tempfile::tempdir().unwrap();
    for file in ["meltano/meltano.yml", "meltano/extractors/tap-withings.yml"] {
        let committed = std::fs::read_to_string(Path::new(REPO).join(file)).unwrap();
        let path = dir.path().join(Path::new(file).file_name().unwrap());
        std::fs::write(&path, &committed).unwrap();
        let out = sync_settings(&[&path]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            committed,
            "{file} is not what scripts/sync-meltano-settings writes: run it"
        );
    }
}

#[test]
fn sync_meltano_settings_refuses_a_file_without_the_tap_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meltano.yml");
    let text = "plugins:\n  extractors:\n  - name: tap-other\n    settings:\n    - name: x\n";
    std::fs::write(&path, text).unwrap();
    let out = sync_settings(&[&path]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("no extractor named tap-withings"),
        "{stderr}"
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text, "left alone");
}
