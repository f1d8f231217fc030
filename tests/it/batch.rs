//! BATCH messages (`batch_config`) from the real binary against withings-sim: the batch files
//! hold exactly the records a RECORD run sends, every manifest file exists and is complete
//! gzip'd (or plain) JSON lines valid against the stream's SCHEMA, no STATE comes before the
//! BATCH of what it covers (a finished, a failed and a killed run), and a bad batch_config
//! stops the run with one line before any request.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};
use withings_sim::Faults;

use crate::kills::{
    assert_equals_ground_truth, assert_states_never_pass_records, sync_args, watch,
};
use crate::streams::ALL;
use crate::support::{sim_config, tap, Msg, Run, World};

/// A copy of the world's config with `batch_config` set; its path.
fn batch_config(world: &World, name: &str, batch: Value) -> PathBuf {
    let mut config: Value = serde_json::from_slice(&std::fs::read(&world.config).unwrap()).unwrap();
    config["batch_config"] = batch;
    let path = world.path(name);
    std::fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
    path
}

/// The `batch_config` of files under `root` (gzip unless told).
fn under(root: &Path, compression: &str, batch_size: u64) -> Value {
    json!({
        "encoding": {"format": "jsonl", "compression": compression},
        "storage": {"root": format!("file://{}", root.display()), "prefix": "withings-"},
        "batch_size": batch_size,
    })
}

/// The records of a batch file (by its `file://` URL), each line a JSON object.
fn read_batch_file(url: &str, compression: &str) -> Vec<Value> {
    let path = url
        .strip_prefix("file://")
        .unwrap_or_else(|| panic!("manifest entry is not a file:// URL: {url}"));
    assert!(!path.ends_with(".partial"), "{url}");
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("manifest file {url}: {e}"));
    let text = match compression {
        "gzip" => {
            let mut text = String::new();
            flate2::read::GzDecoder::new(&bytes[..])
                .read_to_string(&mut text)
                .unwrap_or_else(|e| panic!("{url} is not complete gzip: {e}"));
            text
        }
        _ => String::from_utf8(bytes).unwrap(),
    };
    assert!(text.ends_with('\n'), "{url} ends with a whole line");
    text.lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{url}: {e}: {l}"));
            assert!(v.is_object(), "{url}: a line is not a record: {l}");
            v
        })
        .collect()
}

/// The messages with every BATCH replaced by RECORD messages of its files' records, in place
/// (so the conformance and STATE-order checks of RECORD runs apply); also the files seen.
fn expand(messages: &[Msg]) -> (Vec<Msg>, BTreeSet<String>) {
    let mut out = Vec::new();
    let mut files = BTreeSet::new();
    for m in messages {
        match m {
            Msg::Batch {
                stream,
                encoding,
                manifest,
            } => {
                assert_eq!(encoding["format"], "jsonl", "{encoding}");
                let compression = encoding["compression"].as_str().unwrap();
                assert!(!manifest.is_empty(), "an empty manifest for {stream}");
                for url in manifest {
                    assert!(files.insert(url.clone()), "{url} named twice");
                    for record in read_batch_file(url, compression) {
                        out.push(Msg::Record {
                            stream: stream.clone(),
                            record,
                            time_extracted: "2024-01-01T00:00:00Z".into(),
                            version: None,
                        });
                    }
                }
            }
            Msg::Record { stream, .. } => panic!("a RECORD of {stream} in a batch run"),
            other => out.push(other.clone()),
        }
    }
    (out, files)
}

fn as_run(run: &Run, messages: Vec<Msg>) -> Run {
    Run {
        code: run.code,
        stdout: String::new(),
        stderr: run.stderr.clone(),
        messages,
    }
}

/// Records per stream as a set of JSON texts.
fn record_sets(run: &Run) -> BTreeMap<String, BTreeSet<String>> {
    let mut sets: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for m in &run.messages {
        if let Msg::Record { stream, record, .. } = m {
            sets.entry(stream.clone())
                .or_default()
                .insert(record.to_string());
        }
    }
    sets
}

fn without_run_time(mut state: Value) -> Value {
    for entry in state["bookmarks"].as_object_mut().unwrap().values_mut() {
        for p in entry["partitions"].as_array_mut().unwrap() {
            p.as_object_mut().unwrap().remove("reconciled_at");
        }
    }
    state
}

fn files_in(root: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn run_with(world: &World, config: &Path, state: Option<&Value>) -> Run {
    let mut args = sync_args(world, ALL, state);
    args[1] = config.display().to_string();
    tap(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

#[test]
fn a_batch_run_hands_over_exactly_the_records_of_a_record_run() {
    let world = World::new(sim_config(1, 12));
    let records = world.sync(ALL, None);
    let root = world.path("batches");
    let config = batch_config(&world, "config-batch.json", under(&root, "gzip", 10_000));
    let run = run_with(&world, &config, None);
    assert_eq!(run.code, 0, "{}", run.stderr);
    // SCHEMA for every stream as before; no RECORD; a BATCH per stream that had records.
    let schemas: BTreeSet<&str> = run
        .messages
        .iter()
        .filter_map(|m| match m {
            Msg::Schema { stream, .. } => Some(stream.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(schemas, ALL.iter().copied().collect());
    let (expanded, files) = expand(&run.messages);
    let batched = as_run(&run, expanded);
    // Every record validates against its SCHEMA, keys unique, a final STATE.
    batched.check();
    assert_eq!(
        record_sets(&batched),
        record_sets(&records),
        "the batch files hold the RECORD run's records, per stream"
    );
    assert_states_never_pass_records(&batched.messages, None);
    // The same bookmarks as the RECORD run (the deletion re-scan's time aside).
    assert_eq!(
        without_run_time(batched.last_state()),
        without_run_time(records.last_state())
    );
    // The files on disk are exactly those named, complete (no temporary file left).
    let on_disk: BTreeSet<String> = files_in(&root)
        .into_iter()
        .map(|n| format!("file://{}", root.join(n).display()))
        .collect();
    assert_eq!(on_disk, files);
    for f in &files {
        assert!(f.contains("/withings-tap-withings--"), "{f}");
        assert!(f.ends_with(".json.gz"), "{f}");
    }
    // Full-table streams: ACTIVATE_VERSION first, then their BATCH (their rows carry no table
    // version, so a target applies the version to the older rows only).
    for stream in ["devices", "goals"] {
        let at = |want: &str| {
            run.messages.iter().position(|m| match m {
                Msg::ActivateVersion { stream: s, .. } => want == "ACTIVATE" && s == stream,
                Msg::Batch { stream: s, .. } => want == "BATCH" && s == stream,
                _ => false,
            })
        };
        let (activate, batch) = (at("ACTIVATE").unwrap(), at("BATCH").unwrap());
        assert!(
            activate < batch,
            "{stream}: ACTIVATE_VERSION after its BATCH"
        );
    }
}

#[test]
fn small_batches_split_files_and_an_incremental_run_batches_only_what_is_new() {
    let world = World::new(sim_config(1, 6));
    let root = world.path("plain");
    let config = batch_config(&world, "config-batch.json", under(&root, "none", 7));
    let first = run_with(&world, &config, None);
    assert_eq!(first.code, 0, "{}", first.stderr);
    let (expanded, files) = expand(&first.messages);
    let first_run = as_run(&first, expanded);
    first_run.check();
    assert_states_never_pass_records(&first_run.messages, None);
    let mut per_stream: BTreeMap<String, usize> = BTreeMap::new();
    for f in &files {
        assert!(f.ends_with(".json"), "{f}");
        let n = read_batch_file(f, "none").len();
        assert!((1..=7).contains(&n), "{f} holds {n} records");
        let stream = f.split("tap-withings--").nth(1).unwrap();
        *per_stream
            .entry(stream.split('-').next().unwrap().to_string())
            .or_default() += 1;
    }
    assert!(
        per_stream.values().any(|n| *n > 1),
        "a stream split over several files: {per_stream:?}"
    );
    // Every file but a stream's last of a hand-over is full.
    let full = files
        .iter()
        .filter(|f| read_batch_file(f, "none").len() == 7)
        .count();
    assert!(
        full * 2 >= files.len(),
        "{full} of {} files full",
        files.len()
    );
    // New data, then an incremental run from the last STATE: only the new records, batched.
    world.add("getmeas", world.userid(), 2, None);
    let state = first.last_state();
    let second = run_with(&world, &config, Some(&state));
    assert_eq!(second.code, 0, "{}", second.stderr);
    let (expanded, _) = expand(&second.messages);
    let second_run = as_run(&second, expanded);
    second_run.check();
    assert_states_never_pass_records(&second_run.messages, Some(&state));
    let mut union = as_run(&first, first_run.messages.clone());
    union.messages.extend(second_run.messages.iter().cloned());
    assert_equals_ground_truth(&world, &union, world.userid(), "batch runs");
}

#[test]
fn a_failed_run_s_last_state_covers_only_handed_over_batches() {
    let mut cfg = sim_config(1, 6);
    cfg.page_getmeas = 5;
    cfg.faults = Faults {
        repeat_guard_secs: 0.0,
        truncated_every: Some(9),
        ..Faults::default()
    };
    let world = World::with_settings(cfg, json!({"max_retries": 0}));
    let root = world.path("batches");
    let config = batch_config(&world, "config-batch.json", under(&root, "gzip", 3));
    let run = run_with(&world, &config, None);
    assert_ne!(
        run.code, 0,
        "a truncated reply without retries fails the run"
    );
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    let (expanded, files) = expand(&run.messages);
    assert!(
        !files.is_empty(),
        "the streams that went on were handed over"
    );
    assert!(
        matches!(expanded.last(), Some(Msg::State { .. })),
        "a failed run still ends with a STATE"
    );
    assert_states_never_pass_records(&expanded, None);
    assert!(
        files_in(&root).iter().all(|n| !n.ends_with(".partial")),
        "every file was finished: {:?}",
        files_in(&root)
    );
}

#[test]
fn a_killed_run_s_last_state_covers_only_handed_over_batches_and_a_rerun_completes_it() {
    // Slow replies and small pages, so the run lasts several seconds past its second STATE
    // (STATE comes at most once a second) even on an idle machine.
    let mut cfg = sim_config(1, 6);
    cfg.page_getmeas = 10;
    cfg.page_getactivity = 2;
    cfg.page_getsummary = 2;
    cfg.faults = Faults {
        repeat_guard_secs: 0.0,
        delay_ms: 150,
        ..Faults::default()
    };
    let world = World::new(cfg);
    let root = world.path("batches");
    let config = batch_config(&world, "config-batch.json", under(&root, "gzip", 4));
    let mut args = sync_args(&world, ALL, None);
    args[1] = config.display().to_string();
    // Killed once two STATE lines are out (one comes every second at most).
    let killed = watch(&world, &args, &[], Duration::from_secs(60), |out| {
        String::from_utf8_lossy(out)
            .matches("\"type\":\"STATE\"")
            .count()
            >= 2
    });
    assert_eq!(
        killed.code, None,
        "the run ended before its kill (after its second STATE): {}",
        killed.stderr
    );
    let (expanded, files) = expand(&killed.messages);
    assert!(!files.is_empty());
    assert_states_never_pass_records(&expanded, None);
    let resume = killed.last_state().expect("a STATE before the kill");
    let mut rerun_args = sync_args(&world, ALL, Some(&resume));
    rerun_args[1] = config.display().to_string();
    let rerun = watch(&world, &rerun_args, &[], Duration::from_secs(120), |_| {
        false
    });
    assert_eq!(rerun.code, Some(0), "{}", rerun.stderr);
    let (rerun_expanded, _) = expand(&rerun.messages);
    assert_states_never_pass_records(&rerun_expanded, Some(&resume));
    let mut union = killed.as_run();
    union.messages = expanded;
    union.messages.extend(rerun_expanded);
    assert_equals_ground_truth(&world, &union, world.userid(), "killed, then rerun");
}

#[test]
fn a_bad_batch_config_stops_the_run_with_one_line_before_any_request() {
    let world = World::new(sim_config(1, 2));
    let file = world.path("a-file");
    std::fs::write(&file, "x").unwrap();
    let cases = [
        (
            json!({"encoding": {"format": "parquet"}, "storage": {"root": "file:///tmp/x"}}),
            "setting `batch_config`: `encoding.format` must be \"jsonl\"",
        ),
        (
            json!({"encoding": {"format": "jsonl", "compression": "bz2"}, "storage": {"root": "file:///tmp/x"}}),
            "`encoding.compression` must be \"gzip\" or \"none\"",
        ),
        (
            json!({"encoding": {"format": "jsonl"}, "storage": {"root": "s3://bucket/prefix"}}),
            "setting `batch_config`: `storage.root` must be a file:// URL",
        ),
        (
            json!({"encoding": {"format": "jsonl"}, "storage": {"root": format!("file://{}/below", file.display())}}),
            "setting `batch_config`: cannot create storage.root",
        ),
        (
            json!(17),
            "setting `batch_config`: `batch_config` must be an object",
        ),
    ];
    for (i, (batch, want)) in cases.into_iter().enumerate() {
        let config = batch_config(&world, &format!("config-bad-{i}.json"), batch.clone());
        let before = world.sim.requests().len();
        let run = run_with(&world, &config, None);
        assert_ne!(run.code, 0, "{batch}");
        let lines: Vec<&str> = run
            .stderr
            .lines()
            .filter(|l| l.starts_with("tap-withings:"))
            .collect();
        assert_eq!(lines.len(), 1, "{batch}: {}", run.stderr);
        assert!(lines[0].contains(want), "{batch}: {}", lines[0]);
        assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
        assert!(run.stdout.is_empty(), "{batch}: {}", run.stdout);
        assert_eq!(
            world.sim.requests().len(),
            before,
            "{batch}: no request before the error"
        );
    }
    // The environment's JSON text is read like the file's object.
    let root = world.path("from-env");
    let text = under(&root, "gzip", 100).to_string();
    let args = sync_args(&world, &["goals"], None);
    let run = crate::support::tap_env(
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        &[("TAP_WITHINGS_BATCH_CONFIG", text.as_str())],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run
        .messages
        .iter()
        .any(|m| matches!(m, Msg::Batch { stream, .. } if stream == "goals")));
}

#[test]
fn with_stream_maps_the_batch_files_hold_the_mapped_records_under_the_alias() {
    let world = World::new(sim_config(1, 5));
    let root = world.path("batches-mapped");
    let mut config: Value = serde_json::from_slice(&std::fs::read(&world.config).unwrap()).unwrap();
    config["batch_config"] = under(&root, "gzip", 10_000);
    config["stream_maps"] = json!({
        "devices": {"__alias__": "withings_devices", "mac_address": null},
        "measures": {"__alias__": "weights", "__filter__": "type == 1"},
        "goals": null,
    });
    let path = world.path("config-batch-mapped.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
    let mut args = sync_args(&world, &["devices", "goals", "measures"], None);
    args[1] = path.display().to_string();
    let run = tap(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(run.code, 0, "{}", run.stderr);
    let (expanded, _) = expand(&run.messages);
    let batched = as_run(&run, expanded);
    // Every mapped record validates against the mapped SCHEMA sent for it.
    batched.check();
    let named: BTreeSet<&str> = run
        .messages
        .iter()
        .filter_map(|m| match m {
            Msg::Batch { stream, .. } | Msg::Schema { stream, .. } => Some(stream.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(named, BTreeSet::from(["weights", "withings_devices"]));
    let devices = batched.records("withings_devices");
    assert!(!devices.is_empty());
    assert!(devices.iter().all(|r| r.get("mac_address").is_none()));
    let weights = batched.records("weights");
    assert!(!weights.is_empty());
    assert!(
        weights.iter().all(|r| r["type"] == json!(1)),
        "the filter holds"
    );
    // The aliased full-table stream's files come after its ACTIVATE_VERSION, under the alias.
    let position = |f: &dyn Fn(&Msg) -> bool| run.messages.iter().position(f).unwrap();
    let activate = position(
        &|m| matches!(m, Msg::ActivateVersion { stream, .. } if stream == "withings_devices"),
    );
    let batch =
        position(&|m| matches!(m, Msg::Batch { stream, .. } if stream == "withings_devices"));
    assert!(activate < batch);
    // Bookmarks stay under the tap's own stream name.
    let state = run.last_state();
    assert!(state["bookmarks"].get("measures").is_some(), "{state}");
    assert!(state["bookmarks"].get("weights").is_none(), "{state}");
}
