//! Table-driven bad input: malformed or wrong config, state and catalog files, and hostile API
//! replies served by a tiny loopback server. Each must end the run within seconds with a
//! non-zero exit, one `tap-withings: ...` line naming the file, setting, field or stream, no
//! panic text, and nothing on stdout that is not a Singer message.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::{discover, Msg};

/// What a case must produce.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// Exit non-zero with one `tap-withings:` line containing every fragment.
    Fails(&'static [&'static str]),
    /// Any exit, but no panic, valid stdout and, when non-zero, one `tap-withings:` line.
    NoPanic,
}

/// The result of one case, checked; `Err` says what was wrong.
fn check(name: &str, dir: &Path, args: &[String], expect: Expect) -> Result<String, String> {
    let out_path = dir.join(format!("{name}.stdout"));
    let err_path = dir.join(format!("{name}.stderr"));
    let mut cmd = crate::support::tap_command(args);
    cmd.stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap());
    let started = Instant::now();
    let mut child = cmd.spawn().unwrap();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if started.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let secs = started.elapsed().as_secs_f64();
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    let mut problems = Vec::new();
    let Some(status) = status else {
        return Err(format!("{name}: still running after 20 s\n{stderr}"));
    };
    let code = status.code().unwrap_or(-1);
    if stderr.contains("panicked") || stderr.contains("RUST_BACKTRACE") || code == 101 {
        let at = stderr
            .lines()
            .skip_while(|l| !l.contains("panicked"))
            .take(2)
            .collect::<Vec<_>>()
            .join(" ");
        problems.push(format!("panic text on stderr: {at}"));
    }
    let mut delivered = Vec::new();
    for line in stdout.lines() {
        match serde_json::from_str::<Msg>(line) {
            Err(e) => problems.push(format!("stdout line is not a Singer message ({e}): {line}")),
            Ok(Msg::Record { stream, .. }) => delivered.push(format!("a {stream} record")),
            Ok(Msg::ActivateVersion { stream, .. }) => {
                delivered.push(format!("ACTIVATE_VERSION {stream}"))
            }
            Ok(Msg::State { value })
                if value["bookmarks"]
                    .as_object()
                    .is_some_and(|b| !b.is_empty()) =>
            {
                delivered.push(format!("a bookmark {value}"))
            }
            Ok(_) => {}
        }
    }
    // Every reply of a failing case is the bad one: nothing may be delivered or bookmarked.
    if matches!(expect, Expect::Fails(_)) && !delivered.is_empty() {
        problems.push(format!("a failed run delivered {delivered:?}"));
    }
    if !stdout.is_empty() && !stdout.ends_with('\n') {
        problems.push("stdout ends in a partial line".into());
    }
    let last = stderr.lines().last().unwrap_or_default().to_string();
    let ours = stderr
        .lines()
        .filter(|l| l.starts_with("tap-withings: "))
        .count();
    match expect {
        Expect::Fails(fragments) => {
            if code == 0 {
                problems.push("exit 0".into());
            }
            if !last.starts_with("tap-withings: ") || ours != 1 {
                problems.push(format!("not one `tap-withings:` line at the end ({ours})"));
            }
            for f in fragments {
                if !last.contains(f) {
                    problems.push(format!("message does not name {f:?}"));
                }
            }
        }
        Expect::NoPanic => {
            if code != 0 && (!last.starts_with("tap-withings: ") || ours != 1) {
                problems.push(format!("exit {code} without one `tap-withings:` line"));
            }
        }
    }
    if secs > 15.0 {
        problems.push(format!("took {secs:.1} s"));
    }
    if problems.is_empty() {
        Ok(format!("{name:<34} exit {code} in {secs:.1} s: {last}"))
    } else {
        let warnings: Vec<&str> = stderr
            .lines()
            .filter(|l| l.contains(" WARN "))
            .take(3)
            .collect();
        Err(format!(
            "{name}: {}\n    exit {code}, last stderr line: {last}\n    warnings: {warnings:?}\n    stdout: {}",
            problems.join("; "),
            stdout.chars().take(400).collect::<String>()
        ))
    }
}

/// Runs every case on its own thread; fails listing every case that went wrong.
fn run_table(dir: &Path, cases: Vec<(String, Vec<String>, Expect)>) {
    let results: Vec<Result<String, String>> = std::thread::scope(|s| {
        let handles: Vec<_> = cases
            .iter()
            .map(|(name, args, expect)| s.spawn(move || check(name, dir, args, *expect)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut failures = Vec::new();
    for r in results {
        match r {
            Ok(line) => println!("  ok  {line}"),
            Err(e) => failures.push(e),
        }
    }
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn base_config(dir: &Path, api_url: &str) -> Value {
    json!({
        "client_id": "bad-input-client",
        "client_secret": "bad-input-secret",
        "refresh_token": "bad-input-refresh",
        "api_url": api_url,
        "token_store": dir.join("tokens.json"),
        "start_date": (chrono::Utc::now() - chrono::Duration::days(2)).format("%Y-%m-%d").to_string(),
        "max_retries": 1,
        "max_retry_seconds": 5,
        "repeat_guard_seconds": 0,
        "request_timeout_seconds": 5,
        // The hostile server answers every call with the same reply, so it cannot be an
        // activity or summary index pointing at the windows whose replies are under test: the
        // windowed streams are read by the calendar walk (the index-driven reads call the same
        // reply builders).
        "calendar_walk": true,
    })
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn args(parts: &[&Path]) -> Vec<String> {
    parts.iter().map(|p| p.display().to_string()).collect()
}

/// A catalog selecting `streams`.
fn catalog_selecting(streams: &[&str]) -> Value {
    let mut catalog = discover();
    for entry in catalog["streams"].as_array_mut().unwrap() {
        let name = entry["tap_stream_id"].as_str().unwrap().to_string();
        entry["metadata"][0]["metadata"]["selected"] = json!(streams.contains(&name.as_str()));
    }
    catalog
}

#[test]
fn malformed_or_wrong_config_state_and_catalog_fail_with_one_line_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Nothing listens on port 9 of loopback: a case that gets as far as the network fails
    // differently from the message it should give.
    let base = base_config(d, "http://127.0.0.1:9");
    let good_catalog = write(
        d,
        "catalog.json",
        &catalog_selecting(&["measures"]).to_string(),
    );
    let mut cases: Vec<(String, Vec<String>, Expect)> = Vec::new();
    let with = |f: &dyn Fn(&mut Value)| {
        let mut c = base.clone();
        f(&mut c);
        c.to_string()
    };
    let config_cases: Vec<(&str, String, &'static [&'static str])> = vec![
        (
            "config garbage",
            "{not json".into(),
            &["cannot parse config file", "config-garbage.json"],
        ),
        (
            "config empty",
            String::new(),
            &["config file", "config-empty.json"],
        ),
        (
            "config array",
            "[1, 2]".into(),
            &["config-array.json", "JSON object"],
        ),
        (
            "config unknown setting",
            with(&|c| c["colour"] = json!("blue")),
            &["`colour`"],
        ),
        (
            "config missing secret",
            with(&|c| {
                c.as_object_mut().unwrap().remove("client_secret");
            }),
            &["`client_secret`"],
        ),
        (
            "config missing id and secret",
            with(&|c| {
                let o = c.as_object_mut().unwrap();
                o.remove("client_id");
                o.remove("client_secret");
            }),
            &["`client_id`", "`client_secret`"],
        ),
        (
            "config client_id number",
            with(&|c| c["client_id"] = json!(42)),
            &["`client_id`"],
        ),
        (
            "config max_retries text",
            with(&|c| c["max_retries"] = json!("many")),
            &["`max_retries`"],
        ),
        (
            "config max_retries negative",
            with(&|c| c["max_retries"] = json!(-1)),
            &["`max_retries`"],
        ),
        (
            "config max_retries huge",
            r#"{"client_id":"a","client_secret":"b","max_retries":99999999999999999999999}"#.into(),
            &["`max_retries`"],
        ),
        (
            "config max_retries 1e400",
            r#"{"client_id":"a","client_secret":"b","max_retries":1e400}"#.into(),
            &["config file"],
        ),
        (
            "config guard text",
            with(&|c| c["repeat_guard_seconds"] = json!("soon")),
            &["`repeat_guard_seconds`"],
        ),
        (
            "config objectives text",
            with(&|c| c["include_objectives"] = json!("maybe")),
            &["`include_objectives`"],
        ),
        (
            "config start in future",
            with(&|c| c["start_date"] = json!("2999-01-01")),
            &["`start_date`", "future"],
        ),
        (
            "config start garbage",
            with(&|c| c["start_date"] = json!("last tuesday")),
            &["`start_date`"],
        ),
        (
            "config end before start",
            with(&|c| c["end_date"] = json!("2001-01-01")),
            &["`end_date`", "`start_date`"],
        ),
        (
            "config api_url plain http",
            with(&|c| c["api_url"] = json!("http://example.com")),
            &["`api_url`"],
        ),
        (
            "config api_url garbage",
            with(&|c| c["api_url"] = json!("not a url")),
            &["`api_url`"],
        ),
        (
            "config users not a list",
            with(&|c| c["users"] = json!(5)),
            &["`users`"],
        ),
        (
            "config users wrong entry",
            with(&|c| c["users"] = json!([{"refresh_token": 5}])),
            &["users[0]"],
        ),
        (
            "config users unknown field",
            with(&|c| c["users"] = json!([{"refresh_token": "x", "colour": 1}])),
            &["users[0]", "colour"],
        ),
        (
            "config no refresh token",
            with(&|c| {
                c.as_object_mut().unwrap().remove("refresh_token");
            }),
            &["refresh_token"],
        ),
    ];
    for (name, text, fragments) in config_cases {
        let path = write(d, &format!("{}.json", name.replace(' ', "-")), &text);
        cases.push((
            name.into(),
            args(&[
                Path::new("--config"),
                &path,
                Path::new("--catalog"),
                &good_catalog,
            ]),
            Expect::Fails(fragments),
        ));
    }
    let config = write(d, "config.json", &base.to_string());
    cases.push((
        "config file missing".into(),
        args(&[Path::new("--config"), &d.join("nope.json")]),
        Expect::Fails(&["cannot read config file", "nope.json"]),
    ));
    // A token store that is not JSON.
    let store_dir = d.join("store");
    std::fs::create_dir_all(&store_dir).unwrap();
    write(&store_dir, "tokens.json", "{\"users\": ");
    let store_config = write(
        d,
        "config-store.json",
        &with(&|c| c["token_store"] = json!(store_dir.join("tokens.json"))),
    );
    cases.push((
        "token store garbage".into(),
        args(&[
            Path::new("--config"),
            &store_config,
            Path::new("--catalog"),
            &good_catalog,
        ]),
        Expect::Fails(&["token store", "tokens.json"]),
    ));
    let state_cases: Vec<(&str, String, &'static [&'static str])> = vec![
        ("state garbage", "{\"bookmarks\": {".into(), &["cannot parse state file", "state-garbage.json"]),
        ("state empty", String::new(), &["state file", "state-empty.json"]),
        ("state array", "[]".into(), &["state file", "state-array.json"]),
        ("state bookmarks number", r#"{"bookmarks": 5}"#.into(), &["state file", "`bookmarks`"]),
        ("state bookmark string", r#"{"bookmarks": {"measures": "x"}}"#.into(), &["state file", "measures"]),
        ("state partitions object", r#"{"bookmarks": {"measures": {"partitions": {}}}}"#.into(), &["state file", "partitions"]),
        ("state partition no context", r#"{"bookmarks": {"measures": {"partitions": [{"replication_key_value": "2024-01-01T00:00:00Z"}]}}}"#.into(), &["state file", "context"]),
        ("state is a catalog", catalog_selecting(&["measures"]).to_string(), &["state-is-a-catalog.json", "looks like a catalog", "--catalog"]),
    ];
    for (name, text, fragments) in state_cases {
        let path = write(d, &format!("{}.json", name.replace(' ', "-")), &text);
        cases.push((
            name.into(),
            args(&[
                Path::new("--config"),
                &config,
                Path::new("--catalog"),
                &good_catalog,
                Path::new("--state"),
                &path,
            ]),
            Expect::Fails(fragments),
        ));
    }
    let entry = |f: &dyn Fn(&mut Value)| {
        let mut c = catalog_selecting(&["measures"]);
        f(&mut c);
        c.to_string()
    };
    let catalog_cases: Vec<(&str, String, &'static [&'static str])> = vec![
        (
            "catalog garbage",
            "{\"streams\": [".into(),
            &["cannot parse catalog file", "catalog-garbage.json"],
        ),
        (
            "catalog empty",
            String::new(),
            &["catalog file", "catalog-empty.json"],
        ),
        (
            "catalog streams number",
            r#"{"streams": 5}"#.into(),
            &["catalog file", "`streams`"],
        ),
        (
            "catalog unknown stream",
            r#"{"streams": [{"tap_stream_id": "nope", "metadata": []}]}"#.into(),
            &["catalog file", "`nope`"],
        ),
        (
            "catalog entry without id",
            r#"{"streams": [{"metadata": []}]}"#.into(),
            &["catalog file", "tap_stream_id"],
        ),
        (
            "catalog metadata string",
            entry(&|c| c["streams"][0]["metadata"] = json!("x")),
            &["catalog file", "`metadata`"],
        ),
        (
            "catalog metadata no breadcrumb",
            entry(&|c| c["streams"][0]["metadata"] = json!([{"metadata": {"selected": true}}])),
            &["catalog file", "breadcrumb"],
        ),
    ];
    for (name, text, fragments) in catalog_cases {
        let path = write(d, &format!("{}.json", name.replace(' ', "-")), &text);
        cases.push((
            name.into(),
            args(&[
                Path::new("--config"),
                &config,
                Path::new("--catalog"),
                &path,
            ]),
            Expect::Fails(fragments),
        ));
    }
    run_table(d, cases);
}

#[test]
fn a_bookmark_value_of_the_wrong_shape_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let config = write(
        d,
        "config.json",
        &base_config(d, "http://127.0.0.1:9").to_string(),
    );
    let catalog = write(
        d,
        "catalog.json",
        &catalog_selecting(&["measures"]).to_string(),
    );
    let mut cases = Vec::new();
    for (name, value) in [
        ("state bookmark text", json!("yesterday")),
        ("state bookmark object", json!({"a": 1})),
    ] {
        let state = json!({"bookmarks": {"measures": {"partitions": [
            {"context": {"userid": 1}, "replication_key": "modified", "replication_key_value": value}
        ]}}});
        let path = write(
            d,
            &format!("{}.json", name.replace(' ', "-")),
            &state.to_string(),
        );
        cases.push((
            name.to_string(),
            args(&[
                Path::new("--config"),
                &config,
                Path::new("--catalog"),
                &catalog,
                Path::new("--state"),
                &path,
            ]),
            Expect::Fails(&["state file", "measures"]),
        ));
    }
    run_table(d, cases);
}

#[test]
fn catalog_metadata_of_the_wrong_type_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let config = write(
        d,
        "config.json",
        &base_config(d, "http://127.0.0.1:9").to_string(),
    );
    let mut catalog = catalog_selecting(&["measures"]);
    catalog["streams"][0]["metadata"][0]["metadata"]["selected"] = json!("no");
    let path = write(d, "catalog-selected-text.json", &catalog.to_string());
    run_table(
        d,
        vec![(
            "catalog selected text".into(),
            args(&[
                Path::new("--config"),
                &config,
                Path::new("--catalog"),
                &path,
            ]),
            Expect::Fails(&["catalog file", "measures", "selected"]),
        )],
    );
}

/// One canned HTTP reply.
#[derive(Debug, Clone)]
struct Canned {
    status: u16,
    content_type: &'static str,
    body: String,
}

fn ok_json(body: &str) -> Canned {
    Canned {
        status: 200,
        content_type: "application/json",
        body: body.to_string(),
    }
}

fn envelope(body: &str) -> Canned {
    ok_json(&format!(r#"{{"status":0,"body":{body}}}"#))
}

const GOOD_TOKEN: &str = r#"{"userid":1,"access_token":"hostile-access","refresh_token":"hostile-refresh","expires_in":10800,"scope":"user.info,user.metrics,user.activity","token_type":"Bearer"}"#;

/// A loopback HTTP server answering the token endpoint with `token` and everything else
/// with `data`, one connection at a time, `Connection: close`.
struct Hostile {
    url: String,
    stop: Arc<AtomicBool>,
    pub requests: Arc<AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Hostile {
    fn start(token: Canned, data: Canned) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(AtomicUsize::new(0));
        let thread = {
            let (stop, requests) = (stop.clone(), requests.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    requests.fetch_add(1, Ordering::SeqCst);
                    let (token, data) = (token.clone(), data.clone());
                    std::thread::spawn(move || answer(stream, &token, &data));
                }
            })
        };
        Hostile {
            url,
            stop,
            requests,
            thread: Some(thread),
        }
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.url.trim_start_matches("http://"));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn answer(stream: TcpStream, token: &Canned, data: &Canned) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut reader = BufReader::new(stream);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0u8; length];
    let _ = reader.read_exact(&mut body);
    let reply = if request_line.contains("/v2/oauth2") {
        token
    } else {
        data
    };
    let mut stream = reader.into_inner();
    let head = format!(
        "HTTP/1.1 {} X\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        reply.status,
        reply.content_type,
        reply.body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(reply.body.as_bytes());
    let _ = stream.flush();
}

type HostileCase = (&'static str, &'static str, Canned, Canned, Expect);

fn run_hostile(cases: Vec<HostileCase>) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut servers = Vec::new();
    let mut table = Vec::new();
    for (name, stream, token, data, expect) in cases {
        let server = Hostile::start(token, data);
        let case_dir = d.join(name.replace(' ', "-"));
        std::fs::create_dir_all(&case_dir).unwrap();
        let config = write(
            &case_dir,
            "config.json",
            &base_config(&case_dir, &server.url).to_string(),
        );
        let catalog = write(
            &case_dir,
            "catalog.json",
            &catalog_selecting(&[stream]).to_string(),
        );
        table.push((
            name.to_string(),
            args(&[
                Path::new("--config"),
                &config,
                Path::new("--catalog"),
                &catalog,
            ]),
            expect,
        ));
        servers.push(server);
    }
    run_table(d, table);
    for s in &servers {
        // max_retries 1: the token call and at most two tries of the failing call, and a
        // handful of other calls.
        assert!(
            s.requests.load(Ordering::SeqCst) <= 8,
            "retries are bounded"
        );
    }
}

#[test]
fn hostile_api_replies_fail_within_seconds_naming_the_stream() {
    let good = || envelope(GOOD_TOKEN);
    // An instant and a day inside the synced range (see `base_config`).
    let recent = chrono::Utc::now().timestamp() - 6 * 3600;
    let recent_end = recent + 3600;
    // An instant in the first 24 h window of the synced range (`start_date` is two days ago).
    let early = (chrono::Utc::now() - chrono::Duration::days(2))
        .date_naive()
        .and_hms_opt(1, 0, 0)
        .unwrap()
        .and_utc()
        .timestamp();
    let early_end = early + 600;
    let today = chrono::DateTime::from_timestamp(recent, 0)
        .unwrap()
        .format("%Y-%m-%d");
    let html = Canned {
        status: 200,
        content_type: "text/html",
        body: "<html><body>maintenance</body></html>".into(),
    };
    let cases: Vec<HostileCase> = vec![
        (
            "data not JSON",
            "measures",
            good(),
            ok_json("hello"),
            Expect::Fails(&["stream measures", "not JSON"]),
        ),
        (
            "data HTML",
            "measures",
            good(),
            html,
            Expect::Fails(&["stream measures", "HTML"]),
        ),
        (
            "data empty body",
            "measures",
            good(),
            ok_json(""),
            Expect::Fails(&["stream measures", "empty"]),
        ),
        (
            "data truncated",
            "measures",
            good(),
            ok_json(r#"{"status":0,"body":{"measuregrps":[{"grpid":1,"#),
            Expect::Fails(&["stream measures", "truncated"]),
        ),
        (
            "data HTTP 500",
            "measures",
            good(),
            Canned {
                status: 500,
                content_type: "text/plain",
                body: "oops".into(),
            },
            Expect::Fails(&["stream measures", "500"]),
        ),
        (
            "data HTTP 404",
            "measures",
            good(),
            Canned {
                status: 404,
                content_type: "text/plain",
                body: "".into(),
            },
            Expect::Fails(&["stream measures", "404"]),
        ),
        (
            "data status as text",
            "measures",
            good(),
            ok_json(r#"{"status":"0","body":{}}"#),
            Expect::Fails(&["stream measures", "status"]),
        ),
        (
            "data status 2554",
            "measures",
            good(),
            ok_json(r#"{"status":2554,"error":"Not implemented"}"#),
            Expect::Fails(&["stream measures", "2554"]),
        ),
        (
            "measuregrps text",
            "measures",
            good(),
            envelope(r#"{"measuregrps":"x"}"#),
            Expect::Fails(&["stream measures", "measuregrps"]),
        ),
        (
            "measuregrps 1e400",
            "measures",
            good(),
            envelope(r#"{"measuregrps":[{"grpid":1e400,"measures":[]}]}"#),
            Expect::Fails(&["stream measures"]),
        ),
        (
            "activities number",
            "activity",
            good(),
            envelope(r#"{"activities":5,"more":false,"offset":0}"#),
            Expect::Fails(&["stream activity", "activities"]),
        ),
        (
            "workouts series text",
            "workouts",
            good(),
            envelope(r#"{"series":"x","more":false,"offset":0}"#),
            Expect::Fails(&["stream workouts", "series"]),
        ),
        (
            "devices text",
            "devices",
            good(),
            envelope(r#"{"devices":"x"}"#),
            Expect::Fails(&["stream devices", "devices"]),
        ),
        (
            "sleep series number",
            "sleep_series",
            good(),
            envelope(r#"{"series":7,"model":32}"#),
            Expect::Fails(&["stream sleep_series", "series"]),
        ),
        (
            "body number",
            "activity",
            good(),
            envelope("5"),
            Expect::Fails(&["stream activity", "body"]),
        ),
        (
            "ecg series text",
            "ecg_recordings",
            good(),
            envelope(r#"{"series":"x","more":false,"offset":0}"#),
            Expect::Fails(&["stream ecg_recordings", "series"]),
        ),
        (
            "huge measure value",
            "measures",
            good(),
            envelope(
                r#"{"measuregrps":[{"grpid":1,"date":1700000000,"modified":1700000000,"category":1,"measures":[{"type":1,"unit":-3,"value":99999999999999999999999}]}]}"#,
            ),
            Expect::Fails(&["stream measures", "value", "out of the integer range"]),
        ),
        (
            "huge unit",
            "measures",
            good(),
            envelope(
                r#"{"measuregrps":[{"grpid":1,"date":1700000000,"modified":1700000000,"category":1,"measures":[{"type":1,"unit":-9223372036854775808,"value":1}]}]}"#,
            ),
            Expect::Fails(&["stream measures", "unit"]),
        ),
        (
            "huge date",
            "measures",
            good(),
            envelope(
                r#"{"measuregrps":[{"grpid":1,"date":9223372036854775807,"modified":9223372036854775807,"category":1,"measures":[{"type":1,"unit":0,"value":1}]}]}"#,
            ),
            Expect::Fails(&["stream measures", "date", "out of the date-time range"]),
        ),
        (
            "measure value text",
            "measures",
            good(),
            envelope(
                r#"{"measuregrps":[{"grpid":1,"date":"yesterday","modified":1700000000,"category":1,"measures":[{"type":1,"unit":0,"value":"abc"}]}]}"#,
            ),
            Expect::Fails(&["stream measures", "value", "a string that is not a number"]),
        ),
        (
            "measure date text",
            "measures",
            good(),
            envelope(
                r#"{"measuregrps":[{"grpid":1,"date":"yesterday","modified":1700000000,"category":1,"measures":[{"type":1,"unit":0,"value":1}]}]}"#,
            ),
            Expect::Fails(&["stream measures", "`date`", "not a date-time"]),
        ),
        (
            "measure algo object",
            "measures",
            good(),
            envelope(
                r#"{"measuregrps":[{"grpid":1,"category":1,"measures":[{"type":1,"unit":0,"value":1,"algo":{"v":2}}]}]}"#,
            ),
            Expect::Fails(&["stream measures", "`algo`", "an object"]),
        ),
        (
            "activity steps text",
            "activity",
            good(),
            // Rows inside the synced range (rows outside it are filtered out, unread).
            envelope(&format!(
                r#"{{"activities":[{{"date":"{today}","steps":"many","modified":{recent}}}],"more":false,"offset":0}}"#
            )),
            Expect::Fails(&["stream activity", "`steps`", "not a number"]),
        ),
        (
            "activity date number",
            "activity",
            good(),
            envelope(r#"{"activities":[{"date":20240102,"steps":5}],"more":false,"offset":0}"#),
            Expect::Fails(&["stream activity", "`date`", "a number"]),
        ),
        (
            "intraday steps huge",
            "intraday_activity",
            good(),
            // In the first window: a record dated outside the window asked for is dropped
            // before it is read.
            envelope(&format!(
                r#"{{"series":{{"{early}":{{"steps":1e30,"duration":60}}}}}}"#
            )),
            Expect::Fails(&[
                "stream intraday_activity",
                "`steps`",
                "out of the integer range",
            ]),
        ),
        (
            "intraday key text",
            "intraday_activity",
            good(),
            envelope(r#"{"series":{"noon":{"steps":5,"duration":60}}}"#),
            Expect::Fails(&["stream intraday_activity", "\"noon\"", "epoch seconds"]),
        ),
        (
            "workout calories object",
            "workouts",
            good(),
            envelope(&format!(
                r#"{{"series":[{{"id":7,"startdate":{recent},"enddate":{recent_end},"data":{{"calories":{{"kcal":5}}}}}}],"more":false,"offset":0}}"#
            )),
            Expect::Fails(&["stream workouts", "`data.calories`", "an object"]),
        ),
        (
            "sleep summary hr text",
            "sleep_summaries",
            good(),
            envelope(&format!(
                r#"{{"series":[{{"id":3,"startdate":{recent},"enddate":{recent_end},"data":{{"hr_average":"fast"}}}}],"more":false,"offset":0}}"#
            )),
            Expect::Fails(&[
                "stream sleep_summaries",
                "`data.hr_average`",
                "not a number",
            ]),
        ),
        (
            "sleep state list",
            "sleep_series",
            good(),
            envelope(&format!(
                r#"{{"series":[{{"startdate":{early},"enddate":{early_end},"state":[1]}}],"model":32}}"#
            )),
            Expect::Fails(&["stream sleep_series", "`state`", "an array"]),
        ),
        (
            "ecg heart rate text",
            "ecg_recordings",
            good(),
            envelope(
                r#"{"series":[{"ecg":{"signalid":5,"afib":0},"heart_rate":"fast"}],"more":false,"offset":0}"#,
            ),
            Expect::Fails(&["stream ecg_recordings", "`heart_rate`", "not a number"]),
        ),
        (
            "device battery object",
            "devices",
            good(),
            envelope(r#"{"devices":[{"hash_deviceid":"h1","battery":{"level":"low"}}]}"#),
            Expect::Fails(&["stream devices", "`battery`", "an object"]),
        ),
        (
            "goal steps huge",
            "goals",
            good(),
            envelope(r#"{"goals":{"steps":18446744073709551616,"sleep":28800}}"#),
            Expect::Fails(&["stream goals", "`steps`", "out of the integer range"]),
        ),
        (
            "token not JSON",
            "measures",
            ok_json("hello"),
            envelope("{}"),
            Expect::Fails(&["token", "not JSON"]),
        ),
        (
            "token empty body",
            "measures",
            ok_json(""),
            envelope("{}"),
            Expect::Fails(&["token", "empty"]),
        ),
        (
            "token without access_token",
            "measures",
            envelope(r#"{"userid":1,"refresh_token":"r","expires_in":10800}"#),
            envelope("{}"),
            Expect::Fails(&["access_token"]),
        ),
        (
            "token huge userid",
            "measures",
            envelope(
                r#"{"userid":99999999999999999999999,"access_token":"a","refresh_token":"r","expires_in":10800}"#,
            ),
            envelope("{}"),
            Expect::Fails(&["userid"]),
        ),
        (
            "token refused",
            "measures",
            ok_json(r#"{"status":503,"error":"Invalid Params: invalid refresh_token"}"#),
            envelope("{}"),
            Expect::Fails(&["refresh token", "auth"]),
        ),
    ];
    run_hostile(cases);
}

#[test]
fn a_reply_body_that_is_not_an_object_is_refused() {
    let good = || envelope(GOOD_TOKEN);
    run_hostile(vec![(
        "body text",
        "measures",
        good(),
        envelope(r#""x""#),
        Expect::Fails(&["stream measures", "body"]),
    )]);
}

#[test]
fn a_key_too_large_for_an_integer_is_refused() {
    let good = || envelope(GOOD_TOKEN);
    run_hostile(vec![(
        "huge grpid",
        "measures",
        good(),
        envelope(
            r#"{"measuregrps":[{"grpid":99999999999999999999999,"date":1700000000,"modified":1700000000,"category":1,"measures":[{"type":1,"unit":0,"value":1}]}]}"#,
        ),
        Expect::Fails(&["stream measures", "grpid"]),
    )]);
}

#[test]
fn a_token_reply_with_a_huge_expires_in_does_not_panic() {
    let token = envelope(
        r#"{"userid":1,"access_token":"a","refresh_token":"r","expires_in":9223372036854775807}"#,
    );
    run_hostile(vec![(
        "token huge expires_in",
        "devices",
        token,
        envelope(r#"{"devices":[]}"#),
        Expect::NoPanic,
    )]);
}

/// Runs the tap with `args` writing to a pipe nobody reads (closed before the tap starts):
/// exit code and stderr.
fn with_closed_stdout(args: &[String]) -> (i32, String) {
    // A pipe whose only reader, `true`, has exited.
    let mut reader = Command::new("true").stdin(Stdio::piped()).spawn().unwrap();
    let writer = reader.stdin.take().unwrap();
    reader.wait().unwrap();
    let mut cmd = crate::support::tap_command(args);
    cmd.stdout(writer).stderr(Stdio::piped());
    // spawn, not output(): output() would capture stdout instead of the pipe given.
    let out = cmd.spawn().unwrap().wait_with_output().unwrap();
    assert!(out.stdout.is_empty());
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_closed_stdout_is_quiet_for_about_and_discover_but_fails_a_sync() {
    // `--about | head`: the reader wanted no more; not an error (Singer convention).
    for args in [
        vec!["--about"],
        vec!["--about", "--format", "markdown"],
        vec!["--discover"],
    ] {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let (code, stderr) = with_closed_stdout(&args);
        assert_eq!((code, stderr.as_str()), (0, ""), "{args:?}");
    }
    // A sync whose output cannot be delivered fails, with one line saying why.
    let world = crate::support::World::new(crate::support::sim_config(1, 1));
    let args = crate::kills::sync_args(&world, &["devices"], None);
    let (code, stderr) = with_closed_stdout(&args);
    assert_eq!(code, 1, "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert_eq!(
        last,
        "tap-withings: stdout was closed by the target (broken pipe); stopping"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn a_device_listed_twice_is_written_once_and_a_device_without_ids_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let devices = r#"{"devices":[
        {"type":"Scale","model":"Body+","hash_deviceid":"h1","deviceid":"d1","battery":"high"},
        {"type":"Scale","model":"","hash_deviceid":"h1","deviceid":"d1","battery":"low"},
        {"type":"Scale","model":"Body","battery":"unknown"},
        {"type":"Activity Tracker","model":"ScanWatch","deviceid":"d2","battery":"medium"}]}"#;
    let server = Hostile::start(envelope(GOOD_TOKEN), envelope(devices));
    let config = write(
        dir.path(),
        "config.json",
        &base_config(dir.path(), &server.url).to_string(),
    );
    let catalog = write(
        dir.path(),
        "catalog.json",
        &catalog_selecting(&["devices"]).to_string(),
    );
    let out = crate::support::tap_command(&[
        "--config".as_ref(),
        config.as_os_str(),
        "--catalog".as_ref(),
        catalog.as_os_str(),
    ])
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let records: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|m| m["type"] == "RECORD")
        .map(|m| m["record"].clone())
        .collect();
    let keys: Vec<&str> = records
        .iter()
        .map(|r| r["hash_deviceid"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["h1", "d2"]);
    assert_eq!(
        records[0]["battery"],
        json!("high"),
        "the first row of a key is kept"
    );
    assert!(stderr.contains("more than once"), "{stderr}");
    assert!(stderr.contains("without a key property"), "{stderr}");
}
