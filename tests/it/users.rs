//! Several users in one run: per-user state, a user added later, a revoked user, a `users`
//! entry naming a token store (every user it holds; a missing or broken one fails alone).

use serde_json::{json, Value};

use crate::auth::{read_store, run_auth_with};
use crate::support::{sim_config, tap, write_json, World};

fn set_users(world: &World, users: Value) {
    let mut config: Value = serde_json::from_slice(&std::fs::read(&world.config).unwrap()).unwrap();
    config["users"] = users;
    std::fs::write(&world.config, serde_json::to_vec(&config).unwrap()).unwrap();
}

fn measures_of(records: &[Value], userid: u64) -> usize {
    records
        .iter()
        .filter(|r| r["userid"] == json!(userid))
        .count()
}

fn truth_measures(world: &World, userid: u64) -> usize {
    world
        .sim
        .truth("getmeas", userid)
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| g["category"] == 1)
        .map(|g| g["measures"].as_array().unwrap().len())
        .sum()
}

#[test]
fn a_user_added_later_gets_a_full_backfill_while_the_first_stays_incremental() {
    let world = World::new(sim_config(2, 6));
    let (first_user, second_user) = (world.sim.userids()[0], world.sim.userids()[1]);
    let first = world.sync(&["measures"], None);
    assert_eq!(
        measures_of(&first.records("measures"), first_user),
        truth_measures(&world, first_user)
    );
    set_users(
        &world,
        json!([{"refresh_token": world.sim.refresh_token(second_user)}]),
    );
    let second = world.sync(&["measures"], Some(&first.last_state()));
    let records = second.records("measures");
    assert_eq!(
        measures_of(&records, first_user),
        0,
        "the first user is incremental"
    );
    assert_eq!(
        measures_of(&records, second_user),
        truth_measures(&world, second_user),
        "the new user is backfilled"
    );
    let parts = second.last_state()["bookmarks"]["measures"]["partitions"]
        .as_array()
        .unwrap()
        .clone();
    let users: Vec<&Value> = parts.iter().map(|p| &p["context"]["userid"]).collect();
    assert_eq!(users.len(), 2, "{users:?}");
}

#[test]
fn one_users_revoked_consent_does_not_stop_the_others() {
    let world = World::new(sim_config(1, 4));
    set_users(&world, json!([{"refresh_token": "revoked-or-never-valid"}]));
    let catalog = world.catalog(&["measures"]);
    let run = tap(&[
        "--config",
        &world.config.display().to_string(),
        "--catalog",
        &catalog.display().to_string(),
    ]);
    assert_eq!(run.code, 1, "the run ends non-zero: {}", run.stderr);
    run.check();
    assert_eq!(
        measures_of(&run.records("measures"), world.userid()),
        truth_measures(&world, world.userid())
    );
    let last = run.stderr.lines().last().unwrap_or_default();
    assert!(last.starts_with("tap-withings: "), "{last}");
    assert!(
        last.contains("users[0]") && last.contains("tap-withings auth"),
        "{last}"
    );
    assert!(
        !run.stderr.contains("revoked-or-never-valid"),
        "the token is not echoed"
    );
}

/// Links users 2.. of the simulator into a token store of their own at `store` (through
/// `auth --refresh` on a config of their initial refresh tokens).
fn link_into_store(world: &World, store: &std::path::Path) {
    let users: Vec<Value> = world.sim.userids()[1..]
        .iter()
        .map(|u| json!({"refresh_token": world.sim.refresh_token(*u)}))
        .collect();
    let config = write_json(
        world.dir.path(),
        "link.json",
        &json!({
            "client_id": world.sim.client_id(),
            "client_secret": world.sim.client_secret(),
            "api_url": world.sim.url(),
            "token_store": store,
            "users": users,
        }),
    );
    let run = run_auth_with(&config, &["--refresh"], &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let stored = read_store(store);
    assert_eq!(stored["users"].as_object().unwrap().len(), users.len());
}

#[test]
fn a_users_entry_naming_a_token_store_syncs_every_user_it_holds() {
    let world = World::new(sim_config(3, 4));
    let store = world.path("family-tokens.json");
    link_into_store(&world, &store);
    set_users(&world, json!([{"token_store": store}]));
    let run = world.sync(&["measures"], None);
    let records = run.records("measures");
    for userid in world.sim.userids() {
        assert_eq!(
            measures_of(&records, userid),
            truth_measures(&world, userid),
            "user {userid}"
        );
    }
    // `auth --refresh` on the same config agrees: the three users, each once.
    let refresh = run_auth_with(&world.config, &["--refresh"], &[]);
    assert_eq!(refresh.code, 0, "{}", refresh.stderr);
    let out: Value = serde_json::from_str(&refresh.stdout).unwrap();
    assert_eq!(out["refreshed"].as_array().unwrap().len(), 3, "{out}");
}

#[test]
fn a_missing_or_unreadable_users_token_store_fails_that_entry_only() {
    let world = World::new(sim_config(1, 4));
    let corrupt = world.path("corrupt-tokens.json");
    std::fs::write(&corrupt, "{half a store").unwrap();
    set_users(
        &world,
        json!([
            {"token_store": world.path("missing-tokens.json")},
            {"token_store": corrupt},
        ]),
    );
    let catalog = world.catalog(&["measures"]);
    let run = tap(&[
        "--config",
        &world.config.display().to_string(),
        "--catalog",
        &catalog.display().to_string(),
    ]);
    assert_eq!(run.code, 1, "the run ends non-zero: {}", run.stderr);
    run.check();
    assert_eq!(
        measures_of(&run.records("measures"), world.userid()),
        truth_measures(&world, world.userid()),
        "the configured user is synced"
    );
    let errors: Vec<&str> = run.stderr.lines().filter(|l| l.contains("ERROR")).collect();
    assert_eq!(errors.len(), 2, "{}", run.stderr);
    assert!(errors[0].contains("users[0]") && errors[0].contains("holds no user"));
    assert!(errors[1].contains("users[1]") && errors[1].contains("cannot parse token store"));
    let last = run.stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("tap-withings: ") && last.contains("users[0], users[1]"),
        "{last}"
    );
}
