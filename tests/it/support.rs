//! Test support: a simulator per test, config files in a temp dir, running the real binary,
//! and a strict parser of its Singer output.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use serde_json::{json, Value};
use tempfile::TempDir;
use withings_sim::{Faults, Mutation, Sim, SimConfig};

/// A Singer message as the tap must write it (unknown fields are an error).
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", deny_unknown_fields)]
pub enum Msg {
    #[serde(rename = "SCHEMA")]
    Schema {
        stream: String,
        schema: Value,
        key_properties: Vec<String>,
        #[serde(default)]
        bookmark_properties: Vec<String>,
    },
    #[serde(rename = "RECORD")]
    Record {
        stream: String,
        record: Value,
        time_extracted: String,
        #[serde(default)]
        version: Option<i64>,
    },
    #[serde(rename = "ACTIVATE_VERSION")]
    ActivateVersion { stream: String, version: i64 },
    #[serde(rename = "STATE")]
    State { value: Value },
    /// Finished batch files of a stream (with `batch_config`; see `batch.rs`).
    #[serde(rename = "BATCH")]
    Batch {
        stream: String,
        encoding: Value,
        manifest: Vec<String>,
    },
}

/// Simulator settings for fast tests: no repeat guard unless a test asks for it.
pub fn sim_config(users: u32, days: u32) -> SimConfig {
    SimConfig {
        users,
        days,
        faults: Faults {
            repeat_guard_secs: 0.0,
            ..Faults::default()
        },
        ..SimConfig::default()
    }
}

/// A simulator and a temp dir with a tap config for its first user.
pub struct World {
    pub sim: Sim,
    pub dir: TempDir,
    pub config: PathBuf,
}

impl World {
    /// Adds `count` rows of a module for a user in the simulator (at `at`, else its default
    /// place); the simulator's account of what it added.
    pub fn add(&self, module: &str, userid: u64, count: u32, at: Option<i64>) -> Value {
        self.mutate(Mutation::Add {
            module: module.into(),
            userid,
            count,
            at,
        })
    }

    /// Changes `count` rows of a module for a user in the simulator.
    pub fn modify(&self, module: &str, userid: u64, count: u32) -> Value {
        self.mutate(Mutation::Modify {
            module: module.into(),
            userid,
            count,
        })
    }

    /// Deletes `count` rows of a module for a user in the simulator.
    pub fn delete(&self, module: &str, userid: u64, count: u32) -> Value {
        self.mutate(Mutation::Delete {
            module: module.into(),
            userid,
            count,
        })
    }

    fn mutate(&self, mutation: Mutation) -> Value {
        self.sim
            .mutate(mutation)
            .unwrap_or_else(|e| panic!("simulator mutation: {e}"))
    }

    pub fn new(cfg: SimConfig) -> Self {
        Self::with_settings(cfg, json!({}))
    }

    pub fn with_settings(cfg: SimConfig, extra: Value) -> Self {
        let sim = Sim::start(cfg).expect("simulator starts");
        let dir = tempfile::tempdir().expect("temp dir");
        let userid = sim.userids()[0];
        let start = sim.anchor() - i64::from(sim_days(&sim)) * 86_400 - 86_400;
        let mut config = json!({
            "client_id": sim.client_id(),
            "client_secret": sim.client_secret(),
            "refresh_token": sim.refresh_token(userid),
            "api_url": sim.url(),
            "token_store": dir.path().join("tokens.json"),
            "start_date": chrono::DateTime::from_timestamp(start, 0).unwrap().to_rfc3339(),
            "repeat_guard_seconds": 0,
            "max_requests_per_minute": 100000,
        });
        for (k, v) in extra.as_object().unwrap() {
            config[k] = v.clone();
        }
        let path = dir.path().join("config.json");
        std::fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
        World {
            sim,
            dir,
            config: path,
        }
    }

    pub fn userid(&self) -> u64 {
        self.sim.userids()[0]
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes a catalog selecting only `streams`.
    pub fn catalog(&self, streams: &[&str]) -> PathBuf {
        let mut catalog = discover();
        for entry in catalog["streams"].as_array_mut().unwrap() {
            let name = entry["tap_stream_id"].as_str().unwrap().to_string();
            entry["metadata"][0]["metadata"]["selected"] = json!(streams.contains(&name.as_str()));
        }
        let path = self.path(&format!("catalog-{}.json", streams.join("-")));
        std::fs::write(&path, serde_json::to_vec(&catalog).unwrap()).unwrap();
        path
    }

    /// Runs a sync of `streams` (with an optional state value) and checks its output.
    pub fn sync(&self, streams: &[&str], state: Option<&Value>) -> Run {
        let catalog = self.catalog(streams);
        let mut args = vec![
            "--config".to_string(),
            self.config.display().to_string(),
            "--catalog".into(),
            catalog.display().to_string(),
        ];
        if let Some(state) = state {
            let path = self.path("state.json");
            std::fs::write(&path, serde_json::to_vec(state).unwrap()).unwrap();
            args.push("--state".into());
            args.push(path.display().to_string());
        }
        let run = tap(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(run.code, 0, "tap failed: {}", run.stderr);
        run.check();
        run
    }
}

fn sim_days(sim: &Sim) -> u32 {
    // Data spans `days` before the anchor; the earliest groundtruth date tells us.
    let min = sim
        .truth("getmeas", sim.userids()[0])
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|g| g["date"].as_i64())
        .min()
        .unwrap_or(sim.anchor());
    ((sim.anchor() - min) / 86_400 + 1) as u32
}

/// The output of one run of the binary.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub messages: Vec<Msg>,
}

/// Runs the binary with `args`, without any TAP_WITHINGS_* variables of the outer world.
pub fn tap(args: &[&str]) -> Run {
    tap_env(args, &[])
}

/// The tap binary with `args`, stdin empty, none of the outer world's TAP_WITHINGS_*
/// variables and `RUST_LOG=info`: the one way every test starts the tap (stdout and stderr
/// are the caller's to set).
pub fn tap_command<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tap-withings"));
    cmd.args(args).stdin(std::process::Stdio::null());
    for (k, _) in std::env::vars() {
        if k.starts_with("TAP_WITHINGS") {
            cmd.env_remove(k);
        }
    }
    cmd.env("RUST_LOG", "info");
    cmd
}

pub fn tap_env(args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = tap_command(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("tap runs");
    let stdout = String::from_utf8(out.stdout).expect("stdout is UTF-8");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let messages = if ["--discover", "--about", "--version", "--help", "auth"]
        .iter()
        .any(|a| args.contains(a))
    {
        Vec::new()
    } else {
        stdout
            .lines()
            .map(|l| {
                serde_json::from_str::<Msg>(l)
                    .unwrap_or_else(|e| panic!("not a Singer message ({e}): {l}"))
            })
            .collect()
    };
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout,
        stderr,
        messages,
    }
}

/// The SCHEMA messages in order: (stream, schema, key properties, bookmark properties).
pub fn schemas(messages: &[Msg]) -> Vec<(String, Value, Vec<String>, Vec<String>)> {
    messages
        .iter()
        .filter_map(|m| match m {
            Msg::Schema {
                stream,
                schema,
                key_properties,
                bookmark_properties,
            } => Some((
                stream.clone(),
                schema.clone(),
                key_properties.clone(),
                bookmark_properties.clone(),
            )),
            _ => None,
        })
        .collect()
}

/// The discovered catalog.
pub fn discover() -> Value {
    let run = tap(&["--discover"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    serde_json::from_str(&run.stdout).expect("catalog is JSON")
}

impl Run {
    /// Records of a stream, in output order.
    pub fn records(&self, stream: &str) -> Vec<Value> {
        self.messages
            .iter()
            .filter_map(|m| match m {
                Msg::Record {
                    stream: s, record, ..
                } if s == stream => Some(record.clone()),
                _ => None,
            })
            .collect()
    }

    /// The last STATE value.
    pub fn last_state(&self) -> Value {
        self.messages
            .iter()
            .rev()
            .find_map(|m| match m {
                Msg::State { value } => Some(value.clone()),
                _ => None,
            })
            .expect("a STATE message")
    }

    /// Conformance: SCHEMA before RECORDs, every record valid against its stream's schema,
    /// key properties non-null and unique, a final STATE.
    pub fn check(&self) {
        let mut validators: BTreeMap<String, (jsonschema::Validator, Vec<String>)> =
            BTreeMap::new();
        let mut keys_seen: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for m in &self.messages {
            match m {
                Msg::Schema {
                    stream,
                    schema,
                    key_properties,
                    ..
                } => {
                    let v = jsonschema::options()
                        .should_validate_formats(true)
                        .build(schema)
                        .expect("schema compiles");
                    validators.insert(stream.clone(), (v, key_properties.clone()));
                }
                Msg::ActivateVersion { stream, .. } => {
                    assert!(
                        validators.contains_key(stream),
                        "ACTIVATE_VERSION of {stream} before its SCHEMA"
                    );
                }
                Msg::Record {
                    stream,
                    record,
                    time_extracted,
                    ..
                } => {
                    let (v, keys) = validators
                        .get(stream)
                        .unwrap_or_else(|| panic!("RECORD of {stream} before its SCHEMA"));
                    let errors: Vec<String> = v
                        .iter_errors(record)
                        .map(|e| format!("{e} at {}", e.instance_path()))
                        .collect();
                    assert!(
                        errors.is_empty(),
                        "{stream} record invalid: {errors:?}\n{record}"
                    );
                    let key: Vec<&Value> = keys.iter().map(|k| &record[k]).collect();
                    assert!(
                        key.iter().all(|v| !v.is_null()),
                        "{stream}: null key {key:?}"
                    );
                    let key = serde_json::to_string(&key).unwrap();
                    assert!(
                        keys_seen
                            .entry(stream.clone())
                            .or_default()
                            .insert(key.clone()),
                        "{stream}: duplicate key {key}"
                    );
                    assert!(chrono::DateTime::parse_from_rfc3339(time_extracted).is_ok());
                }
                Msg::State { value } => {
                    assert!(value["bookmarks"].is_object(), "STATE without bookmarks")
                }
                Msg::Batch { stream, .. } => {
                    assert!(
                        validators.contains_key(stream),
                        "BATCH of {stream} before its SCHEMA"
                    );
                }
            }
        }
        assert!(
            matches!(self.messages.last(), Some(Msg::State { .. })),
            "the run ends with a STATE"
        );
    }
}

/// Writes `value` to a file in `dir`.
pub fn write_json(dir: &Path, name: &str, value: &Value) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_vec_pretty(value).unwrap()).unwrap();
    path
}

/// One plain HTTP/1.1 request, form-encoded body, no redirects followed: status, Location
/// header, body.
pub fn http(url: &str, method: &str, form: &str) -> (u16, Option<String>, String) {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").expect("an http URL");
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let mut stream = std::net::TcpStream::connect(host).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
        form.len()
    )
    .unwrap();
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).unwrap();
    let reply = String::from_utf8_lossy(&reply).into_owned();
    let (head, body) = reply.split_once("\r\n\r\n").unwrap_or((&reply, ""));
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let location = head.lines().find_map(|l| {
        l.split_once(':')
            .filter(|(k, _)| k.eq_ignore_ascii_case("location"))
            .map(|(_, v)| v.trim().to_string())
    });
    (status, location, body.to_string())
}
