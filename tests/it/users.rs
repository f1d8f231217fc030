//! Several users in one run: per-user state, a user added later, a revoked user.

use serde_json::{json, Value};

use crate::support::{sim_config, tap, World};

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
