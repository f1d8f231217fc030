//! Recognisable fake secrets through a full sync (with token refreshes), `--test`,
//! `auth --refresh`, `auth --status`, a consent (the code exchange) and a sync after it: none
//! may appear on stdout, on stderr (even at trace level) or in any file of the run's folder
//! except the token store, and the client secret not even there.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use withings_sim::Faults;

use crate::auth::{consent_via_listener, free_port, start_auth_with};
use crate::kills::{sync_args, watch, Watched};
use crate::streams::ALL;
use crate::support::{sim_config, World};

const CLIENT_SECRET: &str = "CLIENT-SECRET-7f3a9c1e5d";

/// Every token in the token store right now.
fn stored_tokens(path: &Path, into: &mut BTreeSet<String>) {
    let Ok(text) = std::fs::read_to_string(path) else {
        return;
    };
    let Ok(store) = serde_json::from_str::<Value>(&text) else {
        return;
    };
    for user in store["users"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(_, u)| u)
    {
        for k in ["access_token", "refresh_token"] {
            if let Some(t) = user[k].as_str().filter(|t| t.len() >= 8) {
                into.insert(t.to_string());
            }
        }
    }
}

fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files(&path, out);
        } else {
            out.push(path);
        }
    }
}

#[test]
fn no_secret_reaches_stdout_stderr_or_any_file_but_the_token_store() {
    let mut cfg = sim_config(1, 3);
    cfg.client_secret = CLIENT_SECRET.to_string();
    cfg.faults = Faults {
        access_token_max_calls: Some(10),
        repeat_guard_secs: 0.0,
        ..Faults::default()
    };
    let port = free_port();
    let world = World::with_settings(
        cfg,
        json!({"redirect_uri": format!("http://127.0.0.1:{port}/callback")}),
    );
    let store = world.path("tokens.json");
    let mut secrets: BTreeSet<String> = [
        CLIENT_SECRET.to_string(),
        world.sim.refresh_token(world.userid()),
    ]
    .into();
    let mut runs: Vec<(String, Watched)> = Vec::new();
    let debug = [("RUST_LOG", "trace")];
    let config = world.config.display().to_string();
    let commands: Vec<(&str, Vec<String>)> = vec![
        ("sync", sync_args(&world, ALL, None)),
        (
            "--test",
            vec!["--config".into(), config.clone(), "--test".into()],
        ),
        (
            "auth --refresh",
            vec![
                "auth".into(),
                "--refresh".into(),
                "--config".into(),
                config.clone(),
            ],
        ),
        (
            "auth --status",
            vec![
                "auth".into(),
                "--status".into(),
                "--config".into(),
                config.clone(),
            ],
        ),
        ("sync again", sync_args(&world, ALL, None)),
    ];
    for (name, args) in commands {
        let run = watch(&world, &args, &debug, Duration::from_secs(60), |_| {
            stored_tokens(&store, &mut secrets);
            false
        });
        stored_tokens(&store, &mut secrets);
        assert_eq!(run.code, Some(0), "{name}: {}", run.stderr);
        runs.push((name.to_string(), run));
    }
    // A consent: the code exchange's tokens go to the store only.
    let mut consent = start_auth_with(&world.config, &[], &debug);
    consent_via_listener(&mut consent);
    let consent = consent.finish();
    stored_tokens(&store, &mut secrets);
    assert_eq!(consent.code, 0, "consent: {}", consent.stderr);
    assert_eq!(
        world.sim.stats()["code_exchanges"],
        json!(1),
        "the code was exchanged"
    );
    runs.push((
        "auth (consent)".to_string(),
        Watched {
            code: Some(consent.code),
            messages: Vec::new(),
            tail: String::new(),
            bytes: consent.stdout.len(),
            stdout: consent.stdout,
            stderr: consent.stderr,
        },
    ));
    let after = watch(
        &world,
        &sync_args(&world, ALL, None),
        &debug,
        Duration::from_secs(60),
        |_| {
            stored_tokens(&store, &mut secrets);
            false
        },
    );
    stored_tokens(&store, &mut secrets);
    assert_eq!(
        after.code,
        Some(0),
        "sync after the consent: {}",
        after.stderr
    );
    runs.push(("sync after the consent".to_string(), after));
    let refreshes = world.sim.stats()["token_refreshes"].as_u64().unwrap_or(0);
    assert!(refreshes >= 3, "several refreshes happened: {refreshes}");
    // Each refresh hands out a new refresh and access token: most were seen in the store.
    assert!(
        secrets.len() as u64 >= refreshes,
        "{} secrets collected for {refreshes} refreshes",
        secrets.len()
    );
    let mut leaks = Vec::new();
    for (name, run) in &runs {
        for secret in &secrets {
            if run.stdout.contains(secret.as_str()) {
                leaks.push(format!("{name}: stdout holds {secret}"));
            }
            if run.stderr.contains(secret.as_str()) {
                leaks.push(format!("{name}: stderr holds {secret}"));
            }
        }
    }
    let mut all = Vec::new();
    files(world.dir.path(), &mut all);
    for path in &all {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name == "config.json" {
            continue; // the test's own input
        }
        let text = String::from_utf8_lossy(&std::fs::read(path).unwrap()).into_owned();
        for secret in &secrets {
            let allowed = name == "tokens.json" && secret != CLIENT_SECRET;
            if !allowed && text.contains(secret.as_str()) {
                leaks.push(format!("file {name} holds {secret}"));
            }
        }
    }
    println!(
        "{} secrets ({refreshes} refreshes) checked in {} runs and {} files",
        secrets.len(),
        runs.len(),
        all.len()
    );
    assert!(leaks.is_empty(), "secrets leaked:\n{}", leaks.join("\n"));
}
