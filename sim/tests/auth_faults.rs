//! OAuth (code flow, rotation, 401, scopes) and faults (601 rate limit and repeat guard,
//! HTML 5xx, 522, truncation, access-token call limits), with stats and the request log.

mod common;

use common::*;
use serde_json::{json, Value};
use withings_sim::{Faults, SimConfig};

fn authorize(sim: &withings_sim::Sim, scope: &str, redirect: &str) -> Resp {
    let q = form(&[
        ("response_type", "code"),
        ("client_id", sim.client_id()),
        ("scope", scope),
        ("redirect_uri", redirect),
        ("state", "st4te"),
    ]);
    http(
        &sim.url(),
        "GET",
        &format!("/oauth2_user/authorize2?{q}"),
        "",
        &[],
    )
}

fn code_of(location: &str) -> String {
    let q = location.split_once('?').unwrap().1;
    q.split('&')
        .find_map(|kv| kv.strip_prefix("code="))
        .unwrap()
        .to_string()
}

fn exchange(sim: &withings_sim::Sim, code: &str, redirect: &str) -> Value {
    post(
        sim,
        "/v2/oauth2",
        &[
            ("action", "requesttoken"),
            ("grant_type", "authorization_code"),
            ("client_id", sim.client_id()),
            ("client_secret", sim.client_secret()),
            ("code", code),
            ("redirect_uri", redirect),
        ],
        None,
    )
    .json()
}

#[test]
fn code_flow_single_use_same_redirect_and_scopes() {
    let sim = start(cfg());
    let cb = "https://tap.example/callback";
    let r = authorize(&sim, "user.metrics", cb);
    assert_eq!(r.status, 302);
    let loc = r.header("location").unwrap().to_string();
    assert!(loc.starts_with(cb) && loc.contains("state=st4te"), "{loc}");
    let code = code_of(&loc);
    let bad = exchange(&sim, &code, "https://other.example/cb");
    assert_eq!(bad["status"], 503);
    let code = code_of(
        authorize(&sim, "user.metrics", cb)
            .header("location")
            .unwrap(),
    );
    let ok = exchange(&sim, &code, cb);
    assert_eq!(ok["status"], 0, "{ok}");
    assert_eq!(ok["body"]["scope"], "user.metrics");
    assert_eq!(ok["body"]["expires_in"], 10_800);
    assert_eq!(ok["body"]["token_type"], "Bearer");
    assert_eq!(ok["body"]["userid"], json!(sim.userids()[0]));
    let again = exchange(&sim, &code, cb);
    assert_eq!(
        again,
        json!({"status": 503, "body": {}, "error": "Invalid Params: invalid code"})
    );
    // Scope not granted: 277; granted: 0.
    let t = ok["body"]["access_token"].as_str().unwrap();
    assert_eq!(
        call(
            &sim,
            "/v2/measure",
            &[("action", "getactivity"), ("lastupdate", "0")],
            t
        )["status"],
        277
    );
    assert_eq!(
        call(&sim, "/measure", &[("action", "getmeas")], t)["status"],
        0
    );
    // Space-separated scopes are refused.
    assert_eq!(
        authorize(&sim, "user.metrics user.activity", cb).status,
        400
    );
    assert_eq!(sim.stats()["code_exchanges"], 1);
}

#[test]
fn refresh_rotation_rules() {
    let sim = start(cfg());
    let uid = sim.userids()[0];
    let initial = sim.refresh_token(uid);
    let a = refresh(&sim, &initial);
    let b = refresh(&sim, &initial);
    assert_eq!(a["status"], 0);
    assert_eq!(
        b["status"], 0,
        "the old token works until a successor's access token is used"
    );
    assert_ne!(a["body"]["refresh_token"], b["body"]["refresh_token"]);
    let tb = b["body"]["access_token"].as_str().unwrap();
    assert_eq!(
        call(&sim, "/v2/user", &[("action", "getdevice")], tb)["status"],
        0
    );
    let dead = refresh(&sim, &initial);
    assert_eq!(
        dead,
        json!({"status": 503, "body": {}, "error": "Invalid Params: invalid refresh_token"})
    );
    // The successors live on.
    let next = refresh(&sim, a["body"]["refresh_token"].as_str().unwrap());
    assert_eq!(next["status"], 0);
    // The old access token stays valid until it expires.
    let ta = a["body"]["access_token"].as_str().unwrap();
    assert_eq!(
        call(&sim, "/v2/user", &[("action", "getgoals")], ta)["status"],
        0
    );
    assert_eq!(sim.stats()["token_refreshes"], 3);
    // Wrong secret.
    let r = post(
        &sim,
        "/v2/oauth2",
        &[
            ("action", "requesttoken"),
            ("grant_type", "refresh_token"),
            ("client_id", "sim-client-id"),
            ("client_secret", "x"),
            ("refresh_token", "y"),
        ],
        None,
    )
    .json();
    assert_eq!(r["status"], 503);
}

#[test]
fn missing_or_unknown_token_is_401_with_http_200() {
    let sim = start(cfg());
    let r = post(&sim, "/measure", &[("action", "getmeas")], None);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.json()["status"], 401);
    assert_eq!(
        r.json()["error"],
        "XRequestID: Not provided invalid_token: The access token provided is invalid"
    );
    assert_eq!(
        call(&sim, "/measure", &[("action", "getmeas")], "garbage")["status"],
        401
    );
    // Unknown action: 2554; GET with a query string works too.
    let t = token(&sim, sim.userids()[0]);
    assert_eq!(
        call(&sim, "/v2/measure", &[("action", "nope")], &t)["status"],
        2554
    );
    let r = http(
        &sim.url(),
        "GET",
        "/v2/user?action=getgoals",
        "",
        &[("Authorization", &format!("Bearer {t}"))],
    );
    assert_eq!(r.json()["status"], 0);
}

#[test]
fn access_token_max_calls() {
    let sim = start(SimConfig {
        faults: Faults {
            access_token_max_calls: Some(2),
            repeat_guard_secs: 0.0,
            ..Faults::default()
        },
        ..cfg()
    });
    let t = token(&sim, sim.userids()[0]);
    let goals = [("action", "getgoals")];
    assert_eq!(call(&sim, "/v2/user", &goals, &t)["status"], 0);
    assert_eq!(call(&sim, "/v2/user", &goals, &t)["status"], 0);
    assert_eq!(call(&sim, "/v2/user", &goals, &t)["status"], 401);
    assert_eq!(sim.stats()["faults"]["access_token_max_calls"], 1);
}

#[test]
fn rate_limit_answers_601_with_wait_seconds() {
    let sim = start(SimConfig {
        faults: Faults {
            rate_limit_per_minute: Some(3),
            repeat_guard_secs: 0.0,
            ..Faults::default()
        },
        ..cfg()
    });
    let t = token(&sim, sim.userids()[0]); // 1 (token endpoint counts)
    assert_eq!(
        call(&sim, "/v2/user", &[("action", "getgoals")], &t)["status"],
        0
    );
    assert_eq!(
        call(&sim, "/v2/user", &[("action", "getdevice")], &t)["status"],
        0
    );
    let r = call(&sim, "/v2/user", &[("action", "getgoals")], &t);
    assert_eq!(r["status"], 601);
    let wait = r["body"]["wait_seconds"].as_i64().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    let stats = sim.stats();
    assert_eq!(stats["replies_601"], 1);
    assert_eq!(stats["faults"]["rate_limit"], 1);
    assert_eq!(stats["requests_total"], 4);
    assert_eq!(stats["max_requests_in_any_60s"], 4);
    assert_eq!(stats["by_status"]["601"], 1);
    let log = sim.requests();
    assert_eq!(log.last().unwrap().fault.as_deref(), Some("rate_limit"));
    assert_eq!(log[0].params["refresh_token"], "[redacted]");
    assert_eq!(log[0].params["client_secret"], "[redacted]");
    assert_eq!(log[1].userid, Some(sim.userids()[0]));
    assert_eq!(log[1].action, "getgoals");
}

#[test]
fn repeat_guard_rejects_identical_requests() {
    let sim = start(SimConfig {
        anchor: Some(ANCHOR),
        ..SimConfig::default()
    });
    let t = token(&sim, sim.userids()[0]);
    let p = [("action", "getactivity"), ("lastupdate", "0")];
    assert_eq!(call(&sim, "/v2/measure", &p, &t)["status"], 0);
    let r = call(&sim, "/v2/measure", &p, &t);
    assert_eq!(r["status"], 601);
    assert_eq!(r["error"], "Same arguments in less than 10 seconds");
    assert!(r["body"]["wait_seconds"].as_i64().unwrap() >= 1);
    let other = [
        ("action", "getactivity"),
        ("lastupdate", "0"),
        ("offset", "200"),
    ];
    assert_eq!(call(&sim, "/v2/measure", &other, &t)["status"], 0);
    // Refreshing twice with the same arguments is also a repeat.
    let initial = sim.refresh_token(sim.userids()[0]);
    assert_eq!(refresh(&sim, &initial)["status"], 601);
    assert_eq!(
        sim.requests().last().unwrap().fault.as_deref(),
        Some("repeat_guard")
    );
}

#[test]
fn every_nth_gateway_faults_and_truncation() {
    let sim = start(cfg());
    let t = token(&sim, sim.userids()[0]);
    sim.set_faults(Faults {
        html_5xx_every: Some(2),
        status_522_every: Some(3),
        truncated_every: Some(5),
        repeat_guard_secs: 0.0,
        ..Faults::default()
    });
    let goals = [("action", "getgoals")];
    let r1 = post(&sim, "/v2/user", &goals, Some(&t));
    assert_eq!(r1.json()["status"], 0);
    let r2 = post(&sim, "/v2/user", &goals, Some(&t));
    assert_eq!(r2.status, 502);
    assert!(r2.header("content-type").unwrap().starts_with("text/html"));
    assert!(r2.body.contains("502 Bad Gateway"));
    let r3 = post(&sim, "/v2/user", &goals, Some(&t));
    assert_eq!(r3.json()["status"], 522);
    let _r4 = post(&sim, "/v2/user", &goals, Some(&t));
    let r5 = post(&sim, "/v2/user", &goals, Some(&t));
    assert!(
        serde_json::from_str::<Value>(&r5.body).is_err(),
        "truncated: {}",
        r5.body
    );
    let f = &sim.stats()["faults"];
    assert_eq!(
        (
            f["html_5xx"].as_i64(),
            f["status_522"].as_i64(),
            f["truncated"].as_i64()
        ),
        (Some(2), Some(1), Some(1))
    );
}

#[test]
fn admin_interface() {
    let sim = start(SimConfig { users: 2, ..cfg() });
    let url = sim.url();
    let users = http(&url, "GET", "/_sim/users", "", &[]).json();
    assert_eq!(users[1]["userid"], 1_000_002);
    assert_eq!(users[1]["refresh_token"], "sim-refresh-1000002");
    assert_eq!(users[0]["timezone"], "Europe/Paris");
    let truth = http(
        &url,
        "GET",
        "/_sim/truth?module=getgoals&userid=1000002",
        "",
        &[],
    )
    .json();
    assert_eq!(truth, json!([]));
    assert_eq!(
        http(&url, "GET", "/_sim/truth?module=x&userid=1", "", &[]).status,
        404
    );
    let m = r#"{"op":"modify","module":"getgoals","userid":1000002}"#;
    let r = http(
        &url,
        "POST",
        "/_sim/mutate",
        m,
        &[("Content-Type", "application/json")],
    )
    .json();
    assert!(r["goals"]["steps"].is_i64(), "{r}");
    assert_eq!(http(&url, "POST", "/_sim/mutate", "{}", &[]).status, 400);
    let f = r#"{"lying_more":true}"#;
    let r = http(&url, "POST", "/_sim/faults", f, &[]).json();
    assert_eq!(r["faults"]["lying_more"], true);
    assert_eq!(r["faults"]["repeat_guard_secs"], 10.0);
    assert!(sim.faults().lying_more);
    let _ = token(&sim, 1_000_001);
    assert_eq!(
        http(&url, "GET", "/_sim/stats", "", &[]).json()["requests_total"],
        1
    );
    assert_eq!(
        http(&url, "GET", "/_sim/requests", "", &[])
            .json()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    http(&url, "POST", "/_sim/reset-stats", "", &[]);
    assert_eq!(sim.stats()["requests_total"], 0);
}
