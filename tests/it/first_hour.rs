//! The first hour of a new user, as the README tells it: a first run with `--state` naming a
//! file that does not exist yet, a catalog passed as the state by mistake, a sync without
//! `--catalog`.

use serde_json::json;

use crate::support::{sim_config, tap, World};

fn args<'a>(world: &'a World, extra: &[&'a str]) -> Vec<String> {
    let mut v = vec!["--config".to_string(), world.config.display().to_string()];
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

fn run(args: &[String]) -> crate::support::Run {
    tap(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

#[test]
fn a_first_run_with_a_state_file_that_does_not_exist_yet_syncs_from_start_date() {
    let world = World::new(sim_config(1, 3));
    let catalog = world.catalog(&["measures"]);
    let state = world.path("state.json");
    assert!(!state.exists());
    let first = run(&args(
        &world,
        &[
            "--catalog",
            catalog.to_str().unwrap(),
            "--state",
            state.to_str().unwrap(),
        ],
    ));
    assert_eq!(first.code, 0, "{}", first.stderr);
    first.check();
    let warned: Vec<&str> = first
        .stderr
        .lines()
        .filter(|l| l.contains("does not exist yet"))
        .collect();
    assert_eq!(warned.len(), 1, "one warning: {}", first.stderr);
    assert!(warned[0].contains("state.json"), "it names the file");
    assert!(!first.records("measures").is_empty(), "a full first sync");
}

#[test]
fn a_catalog_passed_as_the_state_is_refused_in_one_line() {
    let world = World::new(sim_config(1, 3));
    let catalog = world.catalog(&["measures"]);
    let out = run(&args(
        &world,
        &[
            "--catalog",
            catalog.to_str().unwrap(),
            "--state",
            catalog.to_str().unwrap(),
        ],
    ));
    assert_eq!(out.code, 1, "{}", out.stderr);
    let last = out.stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("tap-withings: ") && last.contains("looks like a catalog"),
        "{last}"
    );
    assert!(out.stdout.is_empty(), "nothing synced");
}

#[test]
fn a_sync_without_a_catalog_says_once_that_it_syncs_every_stream() {
    let world = World::with_settings(sim_config(1, 2), json!({}));
    let out = run(&args(&world, &[]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    out.check();
    let said = out
        .stderr
        .lines()
        .filter(|l| l.contains("no --catalog given"))
        .count();
    assert_eq!(said, 1, "{}", out.stderr);
    // With a catalog, not a word of it.
    let with = world.sync(&["measures"], None);
    assert!(!with.stderr.contains("no --catalog given"));
}

#[test]
fn a_connection_test_against_a_server_that_is_down_fails_without_retrying() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let config = crate::support::write_json(
        dir.path(),
        "config.json",
        &json!({
            "client_id": "id",
            "client_secret": "s",
            "refresh_token": "r",
            "api_url": format!("http://127.0.0.1:{port}"),
            "token_store": dir.path().join("tokens.json"),
        }),
    );
    let out = tap(&["--config", config.to_str().unwrap(), "--test"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let last = out.stderr.lines().last().unwrap_or_default();
    assert!(last.contains("cannot connect to"), "{last}");
    assert!(
        !out.stderr.contains("Retrying"),
        "not retried: {}",
        out.stderr
    );
}
