//! Every withings-sim fault, alone and all together, against the ground truth: what each one
//! costs in retries (a report on stderr, shown by scripts/test), that retries are bounded, that
//! no identical request is repeated within the guard, and that a run whose retries are
//! exhausted exits 1 naming the stream and status with a correct last STATE.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use withings_sim::{Faults, SimConfig};

use crate::kills::{
    assert_equals_ground_truth, assert_states_never_pass_records, bookmarks, sync_args, watch,
};
use crate::streams::ALL;
use crate::support::{http, sim_config, Msg, World};

/// Small data with several pages per paged stream.
fn small(faults: Faults) -> SimConfig {
    let mut cfg = sim_config(1, 3);
    cfg.page_getmeas = 20;
    cfg.page_getactivity = 2;
    cfg.page_getworkouts = 1;
    cfg.page_getsummary = 2;
    cfg.page_heart_list = 1;
    cfg.intraday_samples_per_day = 24;
    cfg.faults = faults;
    cfg
}

/// `requests=N retries=M` of the tap's "Sync summary:" line.
fn summary(stderr: &str) -> (u64, u64) {
    let line = stderr
        .lines()
        .rev()
        .find(|l| l.contains("Sync summary:"))
        .unwrap_or_else(|| panic!("no Sync summary line:\n{stderr}"));
    let field = |name: &str| -> u64 {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{name}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name}= in {line}"))
    };
    (field("requests"), field("retries"))
}

fn count(stats: &Value, path: &[&str]) -> u64 {
    let mut v = stats;
    for p in path {
        v = &v[*p];
    }
    v.as_u64().unwrap_or(0)
}

/// Faults the simulator injected, by kind.
fn injected(stats: &Value) -> BTreeMap<String, u64> {
    stats["faults"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect()
}

const TAP: fn(f64) -> Value = |guard| {
    json!({
        "repeat_guard_seconds": guard,
        "max_retries": 8,
        "max_retry_seconds": 120,
        "max_requests_per_minute": 100000,
    })
};

#[test]
fn each_fault_alone_loses_nothing_and_costs_bounded_retries() {
    let off = Faults {
        repeat_guard_secs: 0.0,
        ..Faults::default()
    };
    let cases: Vec<(&str, Faults, f64)> = vec![
        ("none", off.clone(), 0.0),
        (
            "html_5xx_every 5",
            Faults {
                html_5xx_every: Some(5),
                ..off.clone()
            },
            0.0,
        ),
        (
            "status_522_every 5",
            Faults {
                status_522_every: Some(5),
                ..off.clone()
            },
            0.0,
        ),
        (
            "truncated_every 5",
            Faults {
                truncated_every: Some(5),
                ..off.clone()
            },
            0.0,
        ),
        (
            "access_token_max_calls 15",
            Faults {
                access_token_max_calls: Some(15),
                ..off.clone()
            },
            0.0,
        ),
        (
            "lying_more",
            Faults {
                lying_more: true,
                ..off.clone()
            },
            0.0,
        ),
        (
            "shape_quirks",
            Faults {
                shape_quirks: true,
                ..off.clone()
            },
            0.0,
        ),
        (
            "unknown_fields",
            Faults {
                unknown_fields: true,
                ..off.clone()
            },
            0.0,
        ),
        (
            "repeat_guard 10 s (tap 10 s)",
            Faults {
                repeat_guard_secs: GUARD,
                ..off.clone()
            },
            GUARD,
        ),
        (
            "delay_ms 25",
            Faults {
                delay_ms: 25,
                ..off.clone()
            },
            0.0,
        ),
    ];
    let mut baseline_requests = 0;
    let mut report = vec![format!(
        "{:<28} {:>8} {:>7} {:>10} {:>8} {:>6}  injected",
        "fault", "requests", "retries", "refreshes", "601s", "secs"
    )];
    for (name, faults, guard) in cases {
        let world = World::with_settings(small(faults), TAP(guard));
        let started = Instant::now();
        let run = world.sync(ALL, None);
        let secs = started.elapsed().as_secs_f64();
        assert_equals_ground_truth(&world, &run, world.userid(), name);
        assert_states_never_pass_records(&run.messages, None);
        let (requests, retries) = summary(&run.stderr);
        let retry_lines = run
            .stderr
            .lines()
            .filter(|l| l.contains("Retrying."))
            .count() as u64;
        assert_eq!(
            retry_lines, retries,
            "{name}: one `Retrying.` line per retry"
        );
        let stats = world.sim.stats();
        let faults = injected(&stats);
        let refreshes = count(&stats, &["token_refreshes"]);
        let replies_601 = count(&stats, &["replies_601"]);
        report.push(format!(
            "{name:<28} {requests:>8} {retries:>7} {refreshes:>10} {replies_601:>8} {secs:>6.1}  {faults:?}"
        ));
        let injected_of = |k: &str| faults.get(k).copied().unwrap_or(0);
        match name {
            "none" => {
                baseline_requests = requests;
                assert_eq!(retries, 0);
            }
            n if n.starts_with("html_5xx") => {
                assert!(injected_of("html_5xx") > 0);
                assert_eq!(retries, injected_of("html_5xx"), "one retry per 502");
            }
            n if n.starts_with("status_522") => {
                assert!(injected_of("status_522") > 0);
                assert_eq!(retries, injected_of("status_522"), "one retry per 522");
            }
            n if n.starts_with("truncated") => {
                assert!(injected_of("truncated") > 0);
                assert_eq!(retries, injected_of("truncated"), "one retry per cut body");
            }
            n if n.starts_with("access_token") => {
                let refused = injected_of("access_token_max_calls");
                assert!(refused > 0, "tokens ran out during the run");
                assert_eq!(retries, 0, "a refused token costs a refresh, not a retry");
                assert!(
                    refreshes <= 1 + refused,
                    "at most one refresh per refused call"
                );
                assert!(requests <= baseline_requests + refused + refreshes);
            }
            n if n.starts_with("repeat_guard") => {
                assert_eq!(
                    injected_of("repeat_guard"),
                    0,
                    "no identical request within the guard"
                );
                assert_eq!(retries, 0);
            }
            _ => {
                assert_eq!(retries, 0, "{name}: no retries");
                // A lying `more` costs one extra request per full page at most.
                assert!(
                    requests <= baseline_requests * 2,
                    "{name}: {requests} requests"
                );
            }
        }
    }
    let mut lines =
        vec!["Retry cost of each fault alone (1 user, 3 days, small pages):".to_string()];
    lines.extend(report.iter().map(|l| format!("  {l}")));
    print_report(&lines);
}

/// The Withings repeat guard, in the simulator and the tap alike.
const GUARD: f64 = 10.0;

/// Seconds the simulator delays its replies during the slow phase, against the tap's
/// `request_timeout_seconds` of 1.
const SLOW_MS: u64 = 1_500;

#[test]
fn all_faults_together_still_give_the_ground_truth() {
    let faults = Faults {
        html_5xx_every: Some(7),
        status_522_every: Some(11),
        truncated_every: Some(13),
        access_token_max_calls: Some(15),
        lying_more: true,
        shape_quirks: true,
        unknown_fields: true,
        // The real API's guard: every retry of a request waits it out.
        repeat_guard_secs: GUARD,
        // Records every accepted request without refusing any; lowered mid-run below so the
        // 601 comes with a `wait_seconds` the tap must honour.
        rate_limit_per_minute: Some(100_000),
        // Slow replies all along; slower than the tap's timeout for a while (phase 3).
        delay_ms: 30,
        // A reply shape rather than a fault (the ground truth keeps `modified`): see streams.
        no_modified: false,
        keyless_rows: false,
        // Extra rows dated after the window asked for: dropped, so the truth still holds.
        rows_outside_window: true,
        // Withings' 8 h grace for a rotated refresh token; server texts without secrets
        // (both are checked on their own in hardening.rs).
        rotation_grace_secs: None,
        echo_secrets_in_errors: false,
    };
    let mut settings = TAP(GUARD);
    settings["request_timeout_seconds"] = json!(1);
    let world = World::with_settings(small(faults.clone()), settings);
    let started = Instant::now();
    // Phase 1: after 15 requests, the budget becomes what was already used, so the next
    // request gets 601 with `wait_seconds` (until the oldest leaves the rolling 60 s window).
    // Phase 2: once that 601 was answered the budget is restored, so one wait is all it costs.
    // Phase 3: once requests flow again, replies take longer than the tap's timeout for a
    // second and a half (the requests sent meanwhile time out and are retried); phase 4: back
    // to slow replies.
    let mut phase = 0;
    let (mut throttled_at, mut slow_at) = (Duration::ZERO, Duration::ZERO);
    let mut resumed_from = 0;
    let run = watch(
        &world,
        &sync_args(&world, ALL, None),
        &[],
        Duration::from_secs(240),
        |_| {
            let log = world.sim.requests();
            if phase == 0 && log.len() >= 15 {
                let accepted = log
                    .iter()
                    .filter(|r| !matches!(r.fault.as_deref(), Some("html_5xx" | "status_522")))
                    .count() as u32;
                world.sim.set_faults(Faults {
                    rate_limit_per_minute: Some(accepted),
                    ..faults.clone()
                });
                throttled_at = started.elapsed();
                phase = 1;
            } else if phase == 1 && log.iter().any(|r| r.fault.as_deref() == Some("rate_limit")) {
                world.sim.set_faults(faults.clone());
                resumed_from = log.len();
                phase = 2;
            } else if phase == 2 && log.len() >= resumed_from + 5 {
                world.sim.set_faults(Faults {
                    delay_ms: SLOW_MS,
                    ..faults.clone()
                });
                slow_at = started.elapsed();
                phase = 3;
            } else if phase == 3 && started.elapsed() > slow_at + Duration::from_millis(1_500) {
                world.sim.set_faults(faults.clone());
                phase = 4;
            }
            false
        },
    );
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(phase, 4, "the sync ended before the slow phase was over");
    let run_ = run.as_run();
    run_.check();
    assert_equals_ground_truth(&world, &run_, world.userid(), "all faults");
    assert_states_never_pass_records(&run.messages, None);
    let (requests, retries) = summary(&run.stderr);
    let stats = world.sim.stats();
    let faults = injected(&stats);
    let reasons: BTreeMap<String, u64> = run
        .stderr
        .lines()
        .filter(|l| l.contains("Retrying."))
        .fold(BTreeMap::new(), |mut m, l| {
            let reason = l
                .split("reason=")
                .nth(1)
                .map(|r| r.split(" attempt=").next().unwrap_or(r).to_string())
                .unwrap_or_default();
            let family: String = reason
                .trim_matches('"')
                .split_whitespace()
                .take(2)
                .collect::<Vec<_>>()
                .join(" ");
            *m.entry(family).or_default() += 1;
            m
        });
    let timed_out = reasons.get("request timed").copied().unwrap_or(0);
    let mut report = vec![format!(
        "All faults together (1 user, 3 days, small pages, {GUARD} s repeat guard, 1 s timeout): \
         {requests} requests, {retries} retries, {} refreshes in {secs:.1} s \
         (rate limit lowered after {:.1} s, replies slower than the timeout from {:.1} s)",
        count(&stats, &["token_refreshes"]),
        throttled_at.as_secs_f64(),
        slow_at.as_secs_f64(),
    )];
    report.push(format!("  {:<24} {:>8}  retries", "fault", "injected"));
    for (fault, reason) in [
        ("html_5xx", "HTTP 502"),
        ("status_522", "status 522"),
        ("truncated", "truncated JSON"),
        ("rate_limit", "status 601"),
        ("access_token_max_calls", "-"),
    ] {
        let n = faults.get(fault).copied().unwrap_or(0);
        let cost = reasons.get(reason).copied().unwrap_or(0);
        let cost = if reason == "-" {
            "refresh, no retry".to_string()
        } else {
            cost.to_string()
        };
        report.push(format!("  {fault:<24} {n:>8}  {cost}"));
    }
    report.push(format!(
        "  {:<24} {:>8}  {timed_out}",
        "reply after the timeout", "-"
    ));
    report.push(format!("  retries by reason: {reasons:?}"));
    let rate_limited = faults.get("rate_limit").copied().unwrap_or(0);
    assert!(rate_limited >= 1, "the rate limit was hit: {stats}");
    // wait_seconds honoured: after the first 601 (and the requests already in flight), nothing
    // is sent until the oldest accepted request has left the 60 s window.
    let log = world.sim.requests();
    let first = log
        .iter()
        .find(|r| r.fault.as_deref() == Some("rate_limit"))
        .unwrap();
    let oldest = log
        .iter()
        .filter(|r| !matches!(r.fault.as_deref(), Some("html_5xx" | "status_522")))
        .map(|r| r.at)
        .fold(f64::INFINITY, f64::min);
    let asked = (oldest + 60.0 - first.at).ceil().max(1.0);
    let early: Vec<f64> = log
        .iter()
        .map(|r| r.at - first.at)
        .filter(|d| *d > 0.5 && *d < asked - 1.0)
        .collect();
    assert!(
        early.is_empty(),
        "requests {early:?} s after a 601 asking {asked} s"
    );
    report.push(format!(
        "  the first 601 asked for {asked} s; the next request came {:.1} s later",
        log.iter()
            .map(|r| r.at - first.at)
            .filter(|d| *d > 0.5)
            .fold(f64::INFINITY, f64::min)
    ));
    let repeats = faults.get("repeat_guard").copied().unwrap_or(0);
    report.push(format!(
        "  601s for an identical request within the guard: {repeats}"
    ));
    print_report(&report);
    assert_eq!(repeats, 0, "no identical request within {GUARD} s");
    for kind in [
        "html_5xx",
        "status_522",
        "truncated",
        "access_token_max_calls",
    ] {
        assert!(faults.contains_key(kind), "{kind} was injected: {faults:?}");
    }
    assert!(timed_out > 0, "a reply came after the timeout: {reasons:?}");
    let transient: u64 = ["html_5xx", "status_522", "truncated", "rate_limit"]
        .iter()
        .map(|k| faults.get(*k).copied().unwrap_or(0))
        .sum();
    assert_eq!(
        retries,
        transient + timed_out,
        "one retry per transient fault and per timeout"
    );
}

/// The retry report on stderr (scripts/test runs the fault tests with `--nocapture`, so CI
/// shows it).
fn print_report(lines: &[String]) {
    for line in lines {
        eprintln!("{line}");
    }
}

/// Runs a sync and, once `trigger` holds for the stdout so far, switches every request to fail.
fn exhaust(
    world: &World,
    broken: Faults,
    trigger: impl Fn(&[u8]) -> bool,
) -> (crate::kills::Watched, f64) {
    let started = Instant::now();
    let mut switched = false;
    let run = watch(
        world,
        &sync_args(world, ALL, None),
        &[],
        Duration::from_secs(60),
        |out| {
            if !switched && trigger(out) {
                world.sim.set_faults(broken.clone());
                switched = true;
            }
            false
        },
    );
    (run, started.elapsed().as_secs_f64())
}

/// The last stderr line, the final STATE and the records written agree after a failed run.
fn assert_failed_cleanly(run: &crate::kills::Watched, secs: f64, status: &str, names_stream: bool) {
    assert_eq!(run.code, Some(1), "exit 1: {}", run.stderr);
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    assert!(run.tail.is_empty(), "stdout ends with a complete line");
    let last = run.stderr.lines().last().unwrap_or_default();
    assert!(last.starts_with("tap-withings: "), "last line: {last}");
    assert!(last.contains(status), "last line names {status}: {last}");
    if names_stream {
        assert!(
            ALL.iter().any(|s| last.contains(&format!("stream {s} "))),
            "last line names the stream: {last}"
        );
    }
    println!("failed after {secs:.1} s with: {last}");
    // The run ends with a STATE, no STATE passes the records written, and the final STATE
    // keeps every bookmark an earlier STATE gave.
    assert!(
        matches!(run.messages.last(), Some(Msg::State { .. })),
        "ends with STATE"
    );
    assert_states_never_pass_records(&run.messages, None);
    let last_state = bookmarks(&run.last_state().unwrap());
    for m in &run.messages {
        if let Msg::State { value } = m {
            for (k, mark) in bookmarks(value) {
                assert!(
                    last_state.get(&k).is_some_and(|l| *l >= mark),
                    "final STATE lost {k:?} at {mark}"
                );
            }
        }
    }
}

#[test]
fn exhausted_retries_exit_1_naming_stream_and_status_with_a_correct_last_state() {
    // Every request fails with an HTML 502 once some records are out. Slow replies make the
    // sync outlast the tap's one-second STATE interval, so a STATE comes out mid-run.
    let world = World::with_settings(
        small(Faults {
            repeat_guard_secs: 0.0,
            delay_ms: 400,
            ..Faults::default()
        }),
        json!({"max_retries": 2, "max_retry_seconds": 30, "repeat_guard_seconds": 0}),
    );
    let broken = Faults {
        html_5xx_every: Some(1),
        repeat_guard_secs: 0.0,
        ..Faults::default()
    };
    let (run, secs) = exhaust(&world, broken, |out| {
        String::from_utf8_lossy(out).contains("\"type\":\"STATE\"")
    });
    assert_failed_cleanly(&run, secs, "HTTP 502", true);
    assert!(
        secs < 20.0,
        "2 retries with backoff take seconds, not {secs:.1}"
    );
    // The first STATE may hold only scan progress (a window without records), so progress is
    // any record or any state partition.
    let state = run.last_state().unwrap();
    let partitions = state["bookmarks"].as_object().is_some_and(|b| {
        b.values()
            .any(|s| s["partitions"].as_array().is_some_and(|p| !p.is_empty()))
    });
    assert!(
        run.as_run()
            .messages
            .iter()
            .any(|m| matches!(m, Msg::Record { .. }))
            || partitions,
        "some progress was written before the failure"
    );
}

#[test]
fn retries_are_bounded_by_total_time_and_name_the_withings_status() {
    // Envelope 522 on every request from the start: the token refresh gives up after
    // max_retry_seconds even though max_retries is large.
    let world = World::with_settings(
        small(Faults {
            status_522_every: Some(1),
            repeat_guard_secs: 0.0,
            ..Faults::default()
        }),
        json!({"max_retries": 50, "max_retry_seconds": 3, "repeat_guard_seconds": 0}),
    );
    let started = Instant::now();
    let run = watch(
        &world,
        &sync_args(&world, ALL, None),
        &[],
        Duration::from_secs(30),
        |_| false,
    );
    let secs = started.elapsed().as_secs_f64();
    assert_failed_cleanly(&run, secs, "522", false);
    assert!(
        secs < 10.0,
        "max_retry_seconds 3 bounds the run: {secs:.1} s"
    );
    assert!(run.as_run().records("measures").is_empty());
}

#[test]
fn access_tokens_that_run_out_quickly_under_concurrent_streams_still_sync() {
    // Withings can refuse an access token at any time (expiry, revocation); with the
    // simulator's 401 after 3 calls, concurrent streams share each refreshed token.
    let world = World::with_settings(
        small(Faults {
            access_token_max_calls: Some(3),
            repeat_guard_secs: 0.0,
            ..Faults::default()
        }),
        TAP(0.0),
    );
    let run = world.sync(ALL, None);
    assert_equals_ground_truth(&world, &run, world.userid(), "access_token_max_calls 3");
}

#[test]
fn retries_never_repeat_an_identical_request_within_the_guard() {
    // Every other reply is cut short after the API accepted the request (which starts its
    // guard), so the retry, identical, goes out right at the guard. A 1 s guard: the rule
    // does not depend on its length, and with the real 10 s (asserted in the all-faults test)
    // these dozen retry chains take over a minute.
    let world = World::with_settings(
        small(Faults {
            truncated_every: Some(2),
            repeat_guard_secs: 1.0,
            ..Faults::default()
        }),
        TAP(1.0),
    );
    let run = world.sync(ALL, None);
    assert_equals_ground_truth(&world, &run, world.userid(), "truncated_every 2");
    let repeats: Vec<String> = world
        .sim
        .requests()
        .iter()
        .filter(|r| r.fault.as_deref() == Some("repeat_guard"))
        .map(|r| format!("{} {:?}", r.action, r.params))
        .collect();
    assert!(
        repeats.is_empty(),
        "601 for identical requests: {repeats:?}"
    );
}

#[test]
fn shape_quirks_are_normalised_to_the_ground_truth() {
    // The simulator's --shape-quirks: `intense: 0` sent as `false`, a one-row page of
    // `activities` as an object, userid as a string in token replies. Every numeric field
    // of every activity day must equal the ground truth (false is 0, not null).
    let mut cfg = sim_config(1, 10);
    cfg.page_getactivity = 1;
    cfg.faults.shape_quirks = true;
    let world = World::new(cfg);
    let run = world.sync(&["activity"], None);
    assert_eq!(run.code, 0, "{}", run.stderr);
    run.check();
    let truth = world.sim.truth("getactivity", world.userid());
    let truth = truth.as_array().unwrap();
    let got: BTreeMap<String, Value> = run
        .records("activity")
        .into_iter()
        .map(|r| (r["date"].as_str().unwrap().to_string(), r))
        .collect();
    assert_eq!(got.len(), truth.len(), "one record per day");
    let mut zeros = 0;
    for day in truth {
        let date = day["date"].as_str().unwrap();
        let record = &got[date];
        for (field, want) in day.as_object().unwrap() {
            // Epochs are written as RFC 3339 date-times (checked by the streams tests).
            if !want.is_number() || field == "modified" {
                continue;
            }
            assert_eq!(
                record[field].as_f64(),
                want.as_f64(),
                "{date}: {field} is {} in the record, {want} in the ground truth",
                record[field]
            );
        }
        zeros += usize::from(day["intense"] == json!(0));
    }
    assert!(zeros > 0, "no day had `intense: 0`, so no `false` was sent");
}

/// A refresh token of the simulator's first user granting only `scope` (consent, then the
/// code exchange, as `tap-withings auth` does).
fn refresh_token_with_scope(world: &World, scope: &str) -> String {
    let sim = &world.sim;
    let redirect = "http%3A%2F%2F127.0.0.1%3A9%2Fcb";
    let (status, location, body) = http(
        &format!(
            "{}/oauth2_user/authorize2?response_type=code&client_id={}&scope={scope}&redirect_uri={redirect}&state=s",
            sim.url(),
            sim.client_id()
        ),
        "GET",
        "",
    );
    assert_eq!(status, 302, "{body}");
    let location = location.unwrap();
    let code = location
        .split(['?', '&'])
        .find_map(|p| p.strip_prefix("code="))
        .unwrap();
    let form = format!(
        "action=requesttoken&grant_type=authorization_code&client_id={}&client_secret={}&code={code}&redirect_uri={redirect}",
        sim.client_id(),
        sim.client_secret()
    );
    let (_, _, body) = http(&format!("{}/v2/oauth2", sim.url()), "POST", &form);
    let reply: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(reply["status"], 0, "{reply}");
    assert_eq!(reply["body"]["scope"], json!(scope));
    reply["body"]["refresh_token"].as_str().unwrap().to_string()
}

#[test]
fn a_full_table_stream_skipped_for_a_missing_scope_is_not_activated() {
    // devices and goals need user.info: without it Withings answers 277 and the tap skips
    // them with a warning. Activating their new (empty) version would make the target
    // soft-delete every device and goal of the user.
    let world = World::new(sim_config(1, 2));
    let token = refresh_token_with_scope(&world, "user.metrics,user.activity");
    let mut config: Value =
        serde_json::from_str(&std::fs::read_to_string(&world.config).unwrap()).unwrap();
    config["refresh_token"] = json!(token);
    std::fs::write(&world.config, config.to_string()).unwrap();
    let run = world.sync(&["devices", "goals", "measures"], None);
    assert_eq!(run.code, 0, "{}", run.stderr);
    run.check();
    assert!(
        run.stderr.contains("Skipping") && run.stderr.contains("277"),
        "{}",
        run.stderr
    );
    assert!(run.records("devices").is_empty() && run.records("goals").is_empty());
    assert!(
        !run.records("measures").is_empty(),
        "the other streams are read"
    );
    let activated: Vec<&String> = run
        .messages
        .iter()
        .filter_map(|m| match m {
            Msg::ActivateVersion { stream, .. } => Some(stream),
            _ => None,
        })
        .collect();
    assert!(activated.is_empty(), "activated {activated:?}");
}
