//! SIGKILL at many points of a sync (after N lines, with a slow reply pending, right after the
//! simulator rotated a refresh token), then a rerun from the last complete STATE line: the
//! union of both runs' records equals the ground truth, the token store is always valid JSON,
//! and no STATE ever points past the records written before it. And SIGKILL at the two
//! critical points of the sync's own token refresh (the token reply received, the store
//! written), after which the next run still authenticates.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use withings_sim::{Faults, SimConfig};

use crate::auth::{
    assert_store_intact, edit_store, no_refresh_token_refused, read_store, sync_goals,
    token_grants, Running,
};
use crate::streams::{assert_stream_equals, expected, ALL};
use crate::support::{sim_config, Msg, Run, World};

/// What a watched run of the binary left behind.
pub(crate) struct Watched {
    /// Exit code; None when the test killed it.
    pub code: Option<i32>,
    /// Every complete stdout line, parsed strictly (a partial last line is left out).
    pub messages: Vec<Msg>,
    /// Bytes after the last newline (a line cut by the kill).
    pub tail: String,
    /// Bytes of stdout in all.
    pub bytes: usize,
    /// Stdout as text (for runs that do not write Singer messages).
    pub stdout: String,
    pub stderr: String,
}

impl Watched {
    /// The last STATE value, if any.
    pub fn last_state(&self) -> Option<Value> {
        self.messages.iter().rev().find_map(|m| match m {
            Msg::State { value } => Some(value.clone()),
            _ => None,
        })
    }

    /// As a `Run`, for the ground-truth helpers of `streams`.
    pub fn as_run(&self) -> Run {
        Run {
            code: self.code.unwrap_or(-9),
            stdout: String::new(),
            stderr: self.stderr.clone(),
            messages: self.messages.clone(),
        }
    }
}

/// The sync arguments for `world` selecting `streams`, with an optional input state.
pub(crate) fn sync_args(world: &World, streams: &[&str], state: Option<&Value>) -> Vec<String> {
    let mut args = vec![
        "--config".to_string(),
        world.config.display().to_string(),
        "--catalog".into(),
        world.catalog(streams).display().to_string(),
    ];
    if let Some(state) = state {
        let path = world.path("state-in.json");
        std::fs::write(&path, serde_json::to_vec(state).unwrap()).unwrap();
        args.push("--state".into());
        args.push(path.display().to_string());
    }
    args
}

/// Runs the binary with `args`, draining stdout on a thread; every 2 ms `tick` sees the stdout
/// bytes so far and says whether to SIGKILL the process now. Stderr goes to a file in the
/// world's temp dir. Gives up (kills) after `limit`.
pub(crate) fn watch(
    world: &World,
    args: &[String],
    env: &[(&str, &str)],
    limit: Duration,
    tick: impl FnMut(&[u8]) -> bool,
) -> Watched {
    watch_stalled(world, args, env, limit, usize::MAX, tick)
}

/// As [`watch`], but stdout is read only up to `stall_at` bytes until the process ends or is
/// killed, so the tap blocks on a full pipe in the middle of a write.
pub(crate) fn watch_stalled(
    world: &World,
    args: &[String],
    env: &[(&str, &str)],
    limit: Duration,
    stall_at: usize,
    mut tick: impl FnMut(&[u8]) -> bool,
) -> Watched {
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    let n = RUNS.fetch_add(1, Ordering::Relaxed);
    let stderr_path: PathBuf = world.path(&format!("stderr-{n}.log"));
    let mut cmd = crate::support::tap_command(args);
    cmd.stdout(Stdio::piped())
        .stderr(std::fs::File::create(&stderr_path).unwrap());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("tap starts");
    let mut stdout = child.stdout.take().unwrap();
    let buf = Arc::new(Mutex::new(Vec::new()));
    let read_limit = Arc::new(AtomicUsize::new(stall_at));
    let reader = {
        let (buf, read_limit) = (buf.clone(), read_limit.clone());
        std::thread::spawn(move || {
            let mut chunk = [0u8; 8192];
            loop {
                let have = buf.lock().unwrap().len();
                let room = read_limit.load(Ordering::SeqCst).saturating_sub(have);
                if room == 0 {
                    std::thread::sleep(Duration::from_millis(2));
                    continue;
                }
                match stdout.read(&mut chunk[..room.min(8192)]) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.lock().unwrap().extend_from_slice(&chunk[..n]),
                }
            }
        })
    };
    let started = Instant::now();
    let mut killed = false;
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            read_limit.store(usize::MAX, Ordering::SeqCst);
            break status.code();
        }
        let seen = buf.lock().unwrap().clone();
        if tick(&seen) || started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            read_limit.store(usize::MAX, Ordering::SeqCst);
            killed = true;
            break None;
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    reader.join().unwrap();
    let bytes = buf.lock().unwrap().clone();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let (complete, tail) = match text.rfind('\n') {
        Some(i) => (&text[..=i], text[i + 1..].to_string()),
        None => ("", text.clone()),
    };
    let singer = !args
        .iter()
        .any(|a| ["--test", "auth", "--discover", "--about"].contains(&a.as_str()));
    let messages = complete
        .lines()
        .filter(|_| singer)
        .map(|l| {
            serde_json::from_str::<Msg>(l)
                .unwrap_or_else(|e| panic!("not a Singer message ({e}): {l}"))
        })
        .collect();
    let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    Watched {
        code: if killed { None } else { code },
        messages,
        tail,
        bytes: bytes.len(),
        stdout: text.clone(),
        stderr,
    }
}

/// Complete stdout lines so far.
pub(crate) fn lines(bytes: &[u8]) -> usize {
    bytes.iter().filter(|b| **b == b'\n').count()
}

/// Epoch seconds of an RFC 3339 value.
fn epoch(v: &Value) -> Option<i64> {
    v.as_str()
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        .map(|d| d.timestamp())
}

/// Checks that no STATE of `messages` (one or more runs, in order) holds a bookmark past the
/// largest replication value of that stream's records, for that user, written before it.
pub(crate) fn assert_states_never_pass_records(messages: &[Msg], initial: Option<&Value>) {
    let mut max_written: BTreeMap<(String, i64), i64> = BTreeMap::new();
    let initial_marks = initial.map(bookmarks).unwrap_or_default();
    let mut state_count = 0;
    for m in messages {
        match m {
            Msg::Record { stream, record, .. } => {
                let def = tap_withings::streams::find(stream).expect("known stream");
                let Some(key) = def.replication_key() else {
                    continue;
                };
                let userid = record["userid"].as_i64().expect("records carry userid");
                if let Some(t) = epoch(&record[key]) {
                    let e = max_written.entry((stream.clone(), userid)).or_insert(t);
                    *e = (*e).max(t);
                }
            }
            Msg::State { value } => {
                state_count += 1;
                for ((stream, userid), mark) in bookmarks(value) {
                    if initial_marks.get(&(stream.clone(), userid)) == Some(&mark) {
                        continue;
                    }
                    let written = max_written.get(&(stream.clone(), userid)).copied();
                    assert!(
                        written.is_some_and(|w| mark <= w),
                        "STATE #{state_count} puts {stream} (user {userid}) at {mark} but the records \
                         written before it reach only {written:?}"
                    );
                }
            }
            Msg::Schema { .. } | Msg::ActivateVersion { .. } | Msg::Batch { .. } => {}
        }
    }
}

/// (stream, userid) → bookmark epoch of a state value.
pub(crate) fn bookmarks(state: &Value) -> BTreeMap<(String, i64), i64> {
    let mut out = BTreeMap::new();
    for (stream, entry) in state["bookmarks"].as_object().into_iter().flatten() {
        for p in entry["partitions"].as_array().into_iter().flatten() {
            let userid = p["context"]["userid"].as_i64().expect("partition userid");
            let value = &p["replication_key_value"];
            if value.is_null() {
                continue;
            }
            let mark = epoch(value)
                .unwrap_or_else(|| panic!("{stream}: bookmark {value} is not RFC 3339"));
            out.insert((stream.clone(), userid), mark);
        }
    }
    out
}

/// The token store, when it exists, is complete JSON with a refresh token per user.
pub(crate) fn assert_token_store_valid(world: &World, when: &str) {
    let path = world.path("tokens.json");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return;
    };
    let store: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{when}: token store is not JSON ({e}): {text:?}"));
    for (id, user) in store["users"].as_object().expect("users object") {
        assert!(
            user["refresh_token"]
                .as_str()
                .is_some_and(|t| !t.is_empty()),
            "{when}: user {id} has no refresh token in the store"
        );
    }
}

/// measures (grpid, type, position) → (raw value, unit) of the truth's category-1 groups.
pub(crate) fn truth_measures(world: &World, userid: u64) -> BTreeMap<(i64, i64, i64), Value> {
    let mut out = BTreeMap::new();
    for g in world.sim.truth("getmeas", userid).as_array().unwrap() {
        if g["category"] != 1 {
            continue;
        }
        for m in g["measures"].as_array().unwrap() {
            out.insert(
                (
                    g["grpid"].as_i64().unwrap(),
                    m["type"].as_i64().unwrap(),
                    m["position"].as_i64().unwrap_or(-1),
                ),
                json!([m["value"], m["unit"]]),
            );
        }
    }
    out
}

/// Every stream of `run` (records of one or more runs) equals the ground truth for `userid`.
pub(crate) fn assert_equals_ground_truth(world: &World, run: &Run, userid: u64, context: &str) {
    let got: BTreeMap<(i64, i64, i64), Value> = run
        .records("measures")
        .iter()
        .filter(|r| r["userid"] == json!(userid))
        .map(|r| {
            (
                (
                    r["grpid"].as_i64().unwrap(),
                    r["type"].as_i64().unwrap(),
                    r["position"].as_i64().unwrap(),
                ),
                json!([r["raw_value"], r["unit"]]),
            )
        })
        .collect();
    let want = truth_measures(world, userid);
    if got != want {
        let missing = want.keys().filter(|k| !got.contains_key(k)).count();
        let extra = got.keys().filter(|k| !want.contains_key(k)).count();
        panic!(
            "{context}: measures differ from the ground truth ({missing} missing, {extra} extra)"
        );
    }
    for (stream, want) in expected(world, userid) {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            assert_stream_equals(run, world, userid, stream, &want)
        }));
        if let Err(e) = result {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .unwrap_or_else(|| "?".into());
            panic!("{context}: {msg}");
        }
    }
}

/// Where to kill the tap.
#[derive(Debug, Clone, Copy)]
enum KillAt {
    /// After this many complete stdout lines.
    Lines(usize),
    /// When the simulator has answered this many requests (with `delay_ms`, the next one is
    /// then pending), after a further pause of the given milliseconds.
    Requests(usize, u64),
    /// As soon as the simulator has rotated the refresh token this many times (its token
    /// reply may not have reached the tap or its store yet).
    Refreshes(usize),
    /// Stdout is read up to this many bytes and then not at all: the tap blocks on the full
    /// pipe in the middle of writing a line, and is killed there.
    Stalled(usize),
}

fn kill_world(delay_ms: u64, guard: f64) -> World {
    let mut cfg: SimConfig = sim_config(1, 3);
    cfg.page_getmeas = 20;
    cfg.page_getactivity = 2;
    cfg.page_getworkouts = 1;
    cfg.page_getsummary = 2;
    cfg.page_heart_list = 1;
    cfg.intraday_samples_per_day = 24;
    cfg.faults = Faults {
        repeat_guard_secs: guard,
        delay_ms,
        access_token_max_calls: Some(20),
        ..Faults::default()
    };
    World::with_settings(
        cfg,
        json!({"repeat_guard_seconds": guard, "max_retries": 4, "max_retry_seconds": 20}),
    )
}

/// Kills, checks what the killed run left, reruns from its last STATE, checks the union.
/// Returns the complete lines of the killed run, whether it left a partial line, and whether
/// it was killed at all.
fn kill_and_resume(kill: KillAt, delay_ms: u64, guard: f64) -> (usize, bool, bool) {
    let world = kill_world(delay_ms, guard);
    let userid = world.userid();
    let args = sync_args(&world, ALL, None);
    let stall_at = match kill {
        KillAt::Stalled(bytes) => bytes,
        _ => usize::MAX,
    };
    let mut stalled_since: Option<Instant> = None;
    let killed = watch_stalled(
        &world,
        &args,
        &[],
        Duration::from_secs(30),
        stall_at,
        |out| match kill {
            KillAt::Stalled(bytes) => {
                // Give the tap time to fill the pipe and block in a write.
                out.len() >= bytes
                    && stalled_since.get_or_insert_with(Instant::now).elapsed()
                        > Duration::from_millis(300)
            }
            KillAt::Lines(n) => lines(out) >= n,
            KillAt::Requests(n, pause) => {
                if world.sim.requests().len() >= n {
                    std::thread::sleep(Duration::from_millis(pause));
                    true
                } else {
                    false
                }
            }
            KillAt::Refreshes(n) => {
                world
                    .sim
                    .requests()
                    .iter()
                    .filter(|r| r.action == "requesttoken" && r.status == 0)
                    .count()
                    >= n
            }
        },
    );
    let context = format!("{kill:?}");
    if killed.code.is_some() {
        // The kill came too late (output arrives in bursts): a complete run, still checked.
        assert_eq!(killed.code, Some(0), "{context}: {}", killed.stderr);
        assert_equals_ground_truth(&world, &killed.as_run(), userid, &context);
        return (killed.messages.len(), false, false);
    }
    assert!(
        !killed.stderr.contains("panicked"),
        "{context}: {}",
        killed.stderr
    );
    assert_token_store_valid(&world, &context);
    assert_states_never_pass_records(&killed.messages, None);
    let resume = killed.last_state();
    let args = sync_args(&world, ALL, resume.as_ref());
    let rerun = watch(&world, &args, &[], Duration::from_secs(60), |_| false);
    assert_eq!(
        rerun.code,
        Some(0),
        "{context}: the rerun failed: {}",
        rerun.stderr
    );
    rerun.as_run().check();
    assert_token_store_valid(&world, &format!("{context}, after the rerun"));
    assert_states_never_pass_records(&rerun.messages, resume.as_ref());
    let mut union = killed.as_run();
    union.messages.extend(rerun.messages.iter().cloned());
    assert_states_never_pass_records(&union.messages, None);
    assert_equals_ground_truth(&world, &union, userid, &context);
    (killed.messages.len(), !killed.tail.is_empty(), true)
}

#[test]
fn a_killed_sync_resumed_from_its_last_state_loses_nothing() {
    // A complete run's length, to spread the kill points over it.
    let probe = kill_world(0, 0.0);
    let full_started = Instant::now();
    let full = watch(
        &probe,
        &sync_args(&probe, ALL, None),
        &[],
        Duration::from_secs(30),
        |_| false,
    );
    assert_eq!(full.code, Some(0), "{}", full.stderr);
    let total = full.messages.len();
    let bytes = full.bytes;
    let requests = probe.sim.requests().len();
    let refreshes = probe
        .sim
        .requests()
        .iter()
        .filter(|r| r.action == "requesttoken")
        .count();
    let probe_time = full_started.elapsed();
    drop(probe);
    let (mut cuts, mut kills) = (0, 0);
    let mut points = Vec::new();
    for n in [1, 20, 150, total * 3 / 10, total * 6 / 10] {
        points.push(KillAt::Lines(n));
    }
    for fraction in [5, 40] {
        points.push(KillAt::Stalled(bytes * fraction / 100));
    }
    for k in [0, 1, requests / 2] {
        points.push(KillAt::Requests(k, 40));
    }
    let delay = |k: &KillAt| match k {
        KillAt::Requests(..) => 120,
        _ => 0,
    };
    for n in 1..=refreshes {
        points.push(KillAt::Refreshes(n));
    }
    for kill in &points {
        let started = Instant::now();
        let (written, cut, was_killed) = kill_and_resume(*kill, delay(kill), 0.0);
        cuts += usize::from(cut);
        kills += usize::from(was_killed);
        println!(
            "kill at {kill:?}: killed {was_killed}, {written} complete lines before the kill, partial last line: {cut} ({:.1} s)",
            started.elapsed().as_secs_f64()
        );
    }
    println!(
        "{kills} kills at {} points over a run of {total} lines ({bytes} bytes), {requests} requests and {refreshes} token refreshes ({:.1} s); {cuts} left a partial line",
        points.len(),
        probe_time.as_secs_f64()
    );
    assert!(
        kills + 1 >= points.len(),
        "most kill points must land before the run ends"
    );
    assert!(cuts >= 1, "a stalled pipe leaves a partial line");
}

#[test]
fn a_rerun_right_after_a_kill_honours_the_repeat_guard() {
    // The rerun repeats the killed run's last request at once: Withings answers 601 with
    // `wait_seconds`, which the new process must honour.
    let (written, _, killed) = kill_and_resume(KillAt::Requests(4, 0), 0, 1.0);
    assert!(killed);
    println!("killed after 4 requests ({written} lines), reran within the 1 s repeat guard");
}

/// Starts a sync of `goals` paused at `point` of its own token refresh and SIGKILLs it there.
fn kill_sync_refresh_at(world: &World, point: &str) {
    let args = sync_args(world, &["goals"], None);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut running = Running::start(&args, &[("TAP_WITHINGS_DEBUG_PAUSE", point)]);
    running.wait_for(&format!("debug pause at {point}"));
    running.kill();
}

#[test]
fn a_sync_killed_inside_its_own_token_refresh_authenticates_on_the_next_run() {
    for point in ["token_reply", "store_written"] {
        let world = World::new(sim_config(1, 3));
        let uid = world.userid();
        let store = world.path("tokens.json");

        // No store yet: the sync refreshes the configured token.
        kill_sync_refresh_at(&world, point);
        assert_eq!(
            token_grants(&world),
            1,
            "{point}: the token endpoint answered"
        );
        match point {
            "token_reply" => assert!(!store.exists(), "nothing stored before the kill"),
            _ => {
                assert_store_intact(&store);
            }
        }
        sync_goals(&world, &world.config);
        let after_first = assert_store_intact(&store);

        // A stored chain whose access token expired: the sync refreshes the stored token.
        edit_store(&store, uid, |u| u["expires_at"] = json!(0));
        let before = read_store(&store);
        let grants = token_grants(&world);
        kill_sync_refresh_at(&world, point);
        assert_eq!(token_grants(&world), grants + 1, "{point}");
        let left = assert_store_intact(&store);
        match point {
            "token_reply" => assert_eq!(left, before, "the store is unchanged"),
            _ => assert_ne!(
                left["users"][uid.to_string()]["refresh_token"],
                after_first["users"][uid.to_string()]["refresh_token"],
                "the rotated refresh token is stored"
            ),
        }
        // The next run authenticates (refreshing the stored token when its access token is
        // the expired one), and so does the one after it from the rotated token.
        sync_goals(&world, &world.config);
        edit_store(&store, uid, |u| u["expires_at"] = json!(0));
        sync_goals(&world, &world.config);
        assert!(
            no_refresh_token_refused(&world),
            "{point}: a refresh token was refused"
        );
    }
}
