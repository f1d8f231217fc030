//! SIGTERM and SIGINT: the tap stops requesting, writes a final STATE that is true for what it
//! emitted (no STATE ever points past the records written before it), exits 130 promptly, and
//! a rerun from that STATE completes the ground truth. A second signal quits at once, even
//! when the tap is stuck writing to a full pipe.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::kills::{assert_equals_ground_truth, assert_states_never_pass_records, sync_args};
use crate::streams::ALL;
use crate::support::{sim_config, Msg, Run, World};

/// The tap's process, killed when a failed assertion leaves it running.
struct Tap(Child);

impl Drop for Tap {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn spawn(args: &[String], stdout: Stdio, stderr: Stdio) -> Tap {
    let mut cmd = crate::support::tap_command(args);
    cmd.stdout(stdout).stderr(stderr);
    Tap(cmd.spawn().expect("tap starts"))
}

fn send(Tap(child): &Tap, signal: &str) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{signal}");
}

/// Waits up to `limit` for the child to exit.
fn wait_for(Tap(child): &mut Tap, limit: Duration) -> Option<i32> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

fn parse(stdout: &str) -> Vec<Msg> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("a whole Singer line"))
        .collect()
}

fn a_signal_stops_promptly_with_a_true_final_state(signal: &str) {
    let mut cfg = sim_config(1, 5);
    cfg.faults.delay_ms = 300;
    let world = World::new(cfg);
    let userid = world.userid();
    let mut tap = spawn(
        &sync_args(&world, ALL, None),
        Stdio::piped(),
        Stdio::piped(),
    );
    // Let the first pages arrive (the first replies take ~600 ms: token, then data).
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        tap.0.try_wait().unwrap().is_none(),
        "the sync ended before the signal"
    );
    let requests_at_signal = world.sim.requests().len();
    send(&tap, signal);
    let child = &mut tap.0;
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
        "{signal}: stopped in {:?}",
        signalled.elapsed()
    );
    assert_eq!(code, Some(130), "{signal}: {stderr}");
    assert!(
        stderr
            .lines()
            .last()
            .unwrap_or_default()
            .contains("interrupted"),
        "{signal}: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    // It stopped requesting: at most the requests already in flight (one per task) followed.
    let after = world.sim.requests().len() - requests_at_signal;
    assert!(
        after <= ALL.len(),
        "{signal}: {after} requests after the signal"
    );
    let messages = parse(&stdout);
    let run = Run {
        code: 130,
        stdout,
        stderr,
        messages,
    };
    run.check();
    assert_states_never_pass_records(&run.messages, None);
    // Resuming from the final STATE loses nothing.
    let last = run.last_state();
    let rerun = world.sync(ALL, Some(&last));
    assert_states_never_pass_records(&rerun.messages, Some(&last));
    let mut union = run;
    union.messages.extend(rerun.messages);
    assert_equals_ground_truth(&world, &union, userid, signal);
}

#[test]
fn sigterm_stops_promptly_with_a_true_final_state() {
    a_signal_stops_promptly_with_a_true_final_state("TERM");
}

#[test]
fn sigint_stops_promptly_with_a_true_final_state() {
    a_signal_stops_promptly_with_a_true_final_state("INT");
}

#[test]
fn a_second_signal_quits_at_once() {
    let world = World::new(sim_config(1, 5));
    let stderr_path = world.path("stderr.log");
    // Stdout is never read: the tap fills the pipe and blocks writing, so after the first
    // signal it cannot write its final STATE and stays.
    let mut tap = spawn(
        &sync_args(&world, ALL, None),
        Stdio::piped(),
        Stdio::from(std::fs::File::create(&stderr_path).unwrap()),
    );
    std::thread::sleep(Duration::from_millis(2000));
    assert!(
        tap.0.try_wait().unwrap().is_none(),
        "the sync ended although nobody read its output"
    );
    send(&tap, "INT");
    assert_eq!(
        wait_for(&mut tap, Duration::from_millis(1000)),
        None,
        "blocked on the full pipe, the first signal cannot finish the run"
    );
    send(&tap, "INT");
    let signalled = Instant::now();
    let code = wait_for(&mut tap, Duration::from_secs(3));
    let stderr = std::fs::read_to_string(&stderr_path).unwrap();
    assert_eq!(
        code,
        Some(130),
        "quit in {:?}: {stderr}",
        signalled.elapsed()
    );
    assert!(
        stderr
            .lines()
            .last()
            .unwrap_or_default()
            .contains("second signal"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}
