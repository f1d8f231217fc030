//! `tap-withings auth` end to end against withings-sim: the consent flow through the loopback
//! listener and through a pasted URL, a wrong state, an expired code, the scopes asked for,
//! `--refresh`, `--status`, SIGKILL at the two critical points of a token exchange, and no
//! secret in any output. Then the sync's own token handling: which chain of a user wins, a
//! refresh before expiry, single-flight refreshes, and a dead refresh token or a refused new
//! access token stopping the user after one token request.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tap_withings::auth::token_store::fingerprint;
use withings_sim::SimConfig;

use crate::support::{sim_config, tap, tap_env, write_json, Run, World};

const ALL_SCOPES: [&str; 4] = [
    "user.info",
    "user.metrics",
    "user.activity",
    "user.sleepevents",
];

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A world whose config has `redirect_uri` set.
fn auth_world(cfg: SimConfig, redirect_uri: &str) -> World {
    World::with_settings(cfg, json!({ "redirect_uri": redirect_uri }))
}

/// A plain HTTP/1.1 GET that does not follow redirects: (status, Location, body).
pub(crate) fn http_get(url: &str) -> (u16, Option<String>, String) {
    crate::support::http(url, "GET", "")
}

/// `tap-withings ...` running in the background, its stderr read line by line.
pub(crate) struct Running {
    child: Child,
    lines: Receiver<String>,
    stderr: Vec<String>,
}

impl Running {
    pub(crate) fn start(args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut cmd = crate::support::tap_command(args);
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env("RUST_LOG", "debug");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("tap starts");
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Running {
            child,
            lines,
            stderr: Vec::new(),
        }
    }

    /// Waits for a stderr line containing `needle`.
    pub(crate) fn wait_for(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.stderr.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(e) => panic!(
                    "no stderr line with {needle:?} ({e:?}); stderr so far:\n{}",
                    self.stderr.join("\n")
                ),
            }
        }
    }

    /// The authorization URL printed on stderr.
    pub(crate) fn authorize_url(&mut self) -> String {
        let line = self.wait_for("/oauth2_user/authorize2?");
        line.trim().to_string()
    }

    pub(crate) fn paste(&mut self, text: &str) {
        let stdin = self.child.stdin.as_mut().unwrap();
        writeln!(stdin, "{text}").unwrap();
        stdin.flush().unwrap();
    }

    /// Waits for the exit: the code and the whole stdout and stderr.
    pub(crate) fn finish(mut self) -> Run {
        drop(self.child.stdin.take());
        let mut stdout = String::new();
        self.child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut stdout)
            .unwrap();
        let status = self.child.wait().unwrap();
        self.stderr.extend(self.lines.iter());
        Run {
            code: status.code().unwrap_or(-1),
            stdout,
            stderr: self.stderr.join("\n"),
            messages: Vec::new(),
        }
    }

    /// SIGKILLs the process (`Child::kill` sends SIGKILL on unix).
    pub(crate) fn kill(mut self) {
        self.child.kill().unwrap();
        let status = self.child.wait().unwrap();
        assert_eq!(status.code(), None, "killed by a signal");
    }
}

impl Drop for Running {
    /// A test that fails while `auth` waits leaves no process behind.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn read_store(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("token store exists"))
        .expect("token store is valid JSON")
}

/// The store is valid JSON, private (0600) and no temp file is left beside it.
pub(crate) fn assert_store_intact(path: &Path) -> Value {
    let store = read_store(path);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let leftovers: Vec<PathBuf> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
    store
}

/// Every token in the store.
fn stored_tokens(path: &Path) -> Vec<String> {
    let store = read_store(path);
    let mut tokens = Vec::new();
    for user in store["users"].as_object().unwrap().values() {
        for k in ["access_token", "refresh_token"] {
            tokens.push(user[k].as_str().unwrap().to_string());
        }
    }
    tokens
}

fn assert_no_secrets(what: &str, text: &str, secrets: &[String]) {
    for secret in secrets {
        assert!(!secret.is_empty());
        assert!(
            !text.contains(secret.as_str()),
            "{what} shows a secret ({secret}):\n{text}"
        );
    }
}

/// Successful `requesttoken` calls the simulator answered so far.
/// Whether Withings (the simulator) refused no refresh token so far.
pub(crate) fn no_refresh_token_refused(world: &World) -> bool {
    world
        .sim
        .requests()
        .iter()
        .all(|r| r.action != "requesttoken" || r.status == 0)
}

pub(crate) fn token_grants(world: &World) -> usize {
    world
        .sim
        .requests()
        .iter()
        .filter(|r| r.action == "requesttoken" && r.status == 0)
        .count()
}

/// A sync of `goals` with `config`; it must succeed with records for the user.
pub(crate) fn sync_goals(world: &World, config: &Path) -> Run {
    let catalog = world.catalog(&["goals"]);
    let run = tap_env(
        &[
            "--config",
            &config.display().to_string(),
            "--catalog",
            &catalog.display().to_string(),
        ],
        &[("RUST_LOG", "debug")],
    );
    assert_eq!(run.code, 0, "sync failed: {}", run.stderr);
    assert!(run.stdout.contains("\"RECORD\""), "{}", run.stdout);
    run
}

fn auth_cmd(config: &Path, extra: &[&str]) -> Vec<String> {
    let mut args = vec![
        "auth".to_string(),
        "--config".to_string(),
        config.display().to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

fn run_auth(world: &World, extra: &[&str], env: &[(&str, &str)]) -> Run {
    run_auth_with(&world.config, extra, env)
}

/// `tap-withings auth --config CONFIG EXTRA..`.
pub(crate) fn run_auth_with(config: &Path, extra: &[&str], env: &[(&str, &str)]) -> Run {
    let args = auth_cmd(config, extra);
    let mut env = env.to_vec();
    env.push(("RUST_LOG", "debug"));
    tap_env(&args.iter().map(String::as_str).collect::<Vec<_>>(), &env)
}

fn start_auth(world: &World, extra: &[&str], env: &[(&str, &str)]) -> Running {
    start_auth_with(&world.config, extra, env)
}

/// `tap-withings auth --config CONFIG EXTRA..` in the background.
pub(crate) fn start_auth_with(config: &Path, extra: &[&str], env: &[(&str, &str)]) -> Running {
    let args = auth_cmd(config, extra);
    Running::start(&args.iter().map(String::as_str).collect::<Vec<_>>(), env)
}

/// Plays the browser of a consent whose `redirect_uri` is a loopback listener: opens the
/// authorization URL, then follows the redirect to the listener.
pub(crate) fn consent_via_listener(auth: &mut Running) {
    let (status, location, _) = http_get(&auth.authorize_url());
    assert_eq!(status, 302);
    let (status, _, page) = http_get(&location.expect("a redirect"));
    assert_eq!(status, 200, "{page}");
}

/// A config for a sync from the token store alone: the lines a consent prints, the client
/// secret and the sync settings.
fn store_only_config(world: &World, name: &str, printed: &Value) -> PathBuf {
    let mut config = printed.clone();
    for (k, v) in [
        ("client_secret", json!(world.sim.client_secret())),
        ("start_date", json!("2000-01-01")),
        ("repeat_guard_seconds", json!(0)),
    ] {
        config[k] = v;
    }
    write_json(world.dir.path(), name, &config)
}

/// Changes the stored tokens of `userid` in the store at `path`.
pub(crate) fn edit_store(path: &Path, userid: u64, edit: impl FnOnce(&mut Value)) {
    let mut store = read_store(path);
    edit(&mut store["users"][userid.to_string()]);
    std::fs::write(path, serde_json::to_vec_pretty(&store).unwrap()).unwrap();
}

/// Sets (or, with `Null`, removes) a setting of the config file at `path`.
pub(crate) fn set_setting(path: &Path, key: &str, value: Value) {
    let mut config: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    match value {
        Value::Null => {
            config.as_object_mut().unwrap().remove(key);
        }
        v => config[key] = v,
    }
    std::fs::write(path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// `requesttoken` calls (any outcome) the simulator received so far.
fn token_requests(world: &World) -> usize {
    world
        .sim
        .requests()
        .iter()
        .filter(|r| r.action == "requesttoken")
        .count()
}

fn error_line(run: &Run) -> String {
    let lines: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("tap-withings: "))
        .collect();
    assert_eq!(lines.len(), 1, "one error line expected:\n{}", run.stderr);
    lines[0].to_string()
}

/// Checks a successful consent's stdout and store; returns the printed config lines. No token
/// and not the client secret appear on stdout or stderr.
fn check_consent(world: &World, run: &Run) -> Value {
    check_consent_of(world, run, &ALL_SCOPES)
}

fn check_consent_of(world: &World, run: &Run, scopes: &[&str]) -> Value {
    assert_eq!(run.code, 0, "auth failed: {}", run.stderr);
    let out: Value = serde_json::from_str(&run.stdout).expect("auth prints one JSON object");
    let store_path = world.path("tokens.json");
    assert_eq!(out["userid"], json!(world.userid()));
    assert_eq!(out["scopes"], json!(scopes));
    assert_eq!(out["token_store"], json!(store_path.display().to_string()));
    assert_eq!(
        out["config"],
        json!({
            "client_id": world.sim.client_id(),
            "token_store": store_path.display().to_string(),
            "api_url": world.sim.url(),
        }),
        "the config lines point at the token store"
    );
    let store = assert_store_intact(&store_path);
    let user = &store["users"][world.userid().to_string()];
    let refresh = user["refresh_token"].as_str().unwrap();
    assert_eq!(user["seeded_from"], json!(fingerprint(refresh)));
    assert_eq!(user["scope"], json!(scopes.join(",")));
    let mut secrets = stored_tokens(&store_path);
    secrets.push(world.sim.client_secret().to_string());
    assert_no_secrets("auth stderr", &run.stderr, &secrets);
    assert_no_secrets("auth stdout", &run.stdout, &secrets);
    out["config"].clone()
}

#[test]
fn auth_receives_the_redirect_on_a_loopback_listener_and_a_sync_then_uses_the_stored_tokens() {
    let port = free_port();
    let redirect = format!("http://127.0.0.1:{port}/callback");
    let world = auth_world(sim_config(1, 3), &redirect);
    let mut auth = start_auth(&world, &[], &[]);
    let url = auth.authorize_url();
    assert!(
        url.starts_with(&format!("{}/oauth2_user/authorize2?", world.sim.url())),
        "{url}"
    );
    for part in [
        "response_type=code".to_string(),
        format!("client_id={}", world.sim.client_id()),
        format!("scope={}", ALL_SCOPES.join(",")),
        format!("redirect_uri=http%3A%2F%2F127.0.0.1%3A{port}%2Fcallback"),
    ] {
        assert!(url.contains(&part), "{part} missing in {url}");
    }
    assert!(!url.contains("mode=demo"));
    let state = url
        .split("state=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap();
    assert_eq!(state.len(), 32);

    let (status, location, _) = http_get(&url);
    assert_eq!(status, 302);
    let location = location.expect("a redirect");
    assert!(location.starts_with(&redirect), "{location}");
    let (status, _, page) = http_get(&location);
    assert_eq!(status, 200);
    assert!(page.contains("Access granted"), "{page}");
    let printed = check_consent(&world, &auth.finish());

    // A config of the printed lines syncs from the token store: no new token request.
    let grants = token_grants(&world);
    let config = store_only_config(&world, "printed.json", &printed);
    let sync = sync_goals(&world, &config);
    assert_eq!(
        token_grants(&world),
        grants,
        "the stored access token was used"
    );
    let mut secrets = stored_tokens(&world.path("tokens.json"));
    secrets.push(world.sim.client_secret().to_string());
    assert_no_secrets("sync stdout", &sync.stdout, &secrets);
    assert_no_secrets("sync stderr", &sync.stderr, &secrets);

    // The first config still holds the older token: `--refresh` rotates that user once.
    let run = run_auth(&world, &["--refresh"], &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let out: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(out["refreshed"].as_array().unwrap().len(), 1, "{out}");
}

#[test]
fn auth_reads_the_pasted_redirect_url_with_no_listen_and_asks_for_demo_mode() {
    let port = free_port();
    let redirect = format!("http://127.0.0.1:{port}/cb");
    let world = auth_world(sim_config(1, 3), &redirect);
    let mut auth = start_auth(&world, &["--no-listen", "--demo"], &[]);
    let url = auth.authorize_url();
    assert!(url.contains("&mode=demo"), "{url}");
    auth.wait_for("paste");
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "--no-listen opens no listener"
    );
    let (status, location, _) = http_get(&url);
    assert_eq!(status, 302);
    auth.paste("");
    auth.paste(&location.unwrap());
    check_consent(&world, &auth.finish());
}

#[test]
fn a_non_loopback_redirect_uri_is_pasted_on_stdin() {
    let world = auth_world(sim_config(1, 3), "https://tap.example/withings/callback");
    let mut auth = start_auth(&world, &[], &[]);
    let url = auth.authorize_url();
    auth.wait_for("paste");
    let (_, location, _) = http_get(&url);
    let location = location.unwrap();
    assert!(
        location.starts_with("https://tap.example/withings/callback?code="),
        "{location}"
    );
    auth.paste(&location);
    check_consent(&world, &auth.finish());
}

fn with_forged_state(location: &str) -> String {
    let (head, tail) = location.split_once("state=").unwrap();
    let rest = tail
        .split_once('&')
        .map(|(_, r)| format!("&{r}"))
        .unwrap_or_default();
    format!("{head}state=forged{rest}")
}

fn assert_refused_state(world: &World, run: &Run) {
    assert_eq!(run.code, 1, "{}", run.stderr);
    let line = error_line(run);
    assert!(
        line.contains("state does not match") && line.contains("tap-withings auth"),
        "{line}"
    );
    assert!(run.stdout.is_empty());
    assert!(!world.path("tokens.json").exists(), "nothing stored");
}

#[test]
fn a_forged_state_on_the_listener_gets_a_400_and_the_real_redirect_still_links() {
    let port = free_port();
    let world = auth_world(
        sim_config(1, 3),
        &format!("http://127.0.0.1:{port}/callback"),
    );
    let mut auth = start_auth(&world, &[], &[]);
    let (_, location, _) = http_get(&auth.authorize_url());
    let location = location.unwrap();
    // Anyone local can send a request on the callback path: it must not end `auth`.
    for forged in [
        with_forged_state(&location),
        format!("http://127.0.0.1:{port}/callback?code=stolen"),
    ] {
        let (status, _, page) = http_get(&forged);
        assert_eq!(status, 400, "{forged}");
        assert!(page.contains("Authorization failed"), "{page}");
    }
    auth.wait_for("another state");
    let (status, _, page) = http_get(&location);
    assert_eq!(status, 200, "{page}");
    check_consent(&world, &auth.finish());
    assert_eq!(token_grants(&world), 1, "only the real code was exchanged");
}

#[test]
fn idle_connections_to_the_listener_do_not_delay_the_redirect() {
    let port = free_port();
    let world = auth_world(
        sim_config(1, 3),
        &format!("http://127.0.0.1:{port}/callback"),
    );
    let mut auth = start_auth(&world, &[], &[]);
    let (_, location, _) = http_get(&auth.authorize_url());
    // Four connections that send nothing, and one that sends half a request line.
    let mut idle: Vec<TcpStream> = (0..4)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    let mut slow = TcpStream::connect(("127.0.0.1", port)).unwrap();
    slow.write_all(b"GET /callback?code=").unwrap();
    idle.push(slow);
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    let (status, _, page) = http_get(&location.unwrap());
    let took = started.elapsed();
    assert_eq!(status, 200, "{page}");
    assert!(
        took < Duration::from_secs(2),
        "the redirect waited {took:?} behind idle connections"
    );
    check_consent(&world, &auth.finish());
    drop(idle);
}

#[test]
fn a_wrong_state_pasted_on_stdin_is_rejected() {
    let world = auth_world(sim_config(1, 3), "http://127.0.0.1:9/callback");
    let mut auth = start_auth(&world, &["--no-listen"], &[]);
    let (_, location, _) = http_get(&auth.authorize_url());
    auth.paste(&with_forged_state(&location.unwrap()));
    assert_refused_state(&world, &auth.finish());
    assert_eq!(token_grants(&world), 0, "no code was exchanged");
}

#[test]
fn the_listener_ignores_other_paths_until_the_redirect_arrives() {
    let port = free_port();
    let world = auth_world(
        sim_config(1, 3),
        &format!("http://localhost:{port}/callback"),
    );
    let mut auth = start_auth(&world, &[], &[]);
    let url = auth.authorize_url();
    assert_eq!(
        http_get(&format!("http://127.0.0.1:{port}/favicon.ico")).0,
        404
    );
    let (_, location, _) = http_get(&url);
    let location = location.unwrap().replace("localhost", "127.0.0.1");
    assert_eq!(http_get(&location).0, 200);
    check_consent(&world, &auth.finish());
}

#[test]
fn an_expired_code_says_to_run_auth_again_quickly() {
    let cfg = SimConfig {
        code_ttl_secs: 0,
        ..sim_config(1, 3)
    };
    let world = auth_world(cfg, "https://tap.example/cb");
    let mut auth = start_auth(&world, &[], &[]);
    let (_, location, _) = http_get(&auth.authorize_url());
    auth.paste(&location.unwrap());
    let run = auth.finish();
    assert_eq!(run.code, 1, "{}", run.stderr);
    let line = error_line(&run);
    assert!(
        line.contains("invalid code")
            && line.contains("30 seconds")
            && line.contains("run `tap-withings auth` again"),
        "{line}"
    );
    assert!(run.stdout.is_empty());
    assert!(!world.path("tokens.json").exists());
}

#[test]
fn auth_without_redirect_uri_is_a_one_line_config_error() {
    let world = World::new(sim_config(1, 3));
    let run = run_auth(&world, &[], &[]);
    assert_eq!(run.code, 1);
    assert!(
        error_line(&run).contains("setting `redirect_uri` is required"),
        "{}",
        run.stderr
    );
    assert_eq!(
        tap(&[
            "auth",
            "--config",
            &world.config.display().to_string(),
            "--discover"
        ])
        .code,
        2
    );
}

#[test]
fn refresh_and_status_show_users_and_expiry_but_never_a_token() {
    let world = World::new(sim_config(1, 3));
    let store_path = world.path("tokens.json");
    let status = run_auth(&world, &["--status"], &[]);
    assert_eq!(status.code, 0, "{}", status.stderr);
    let out: Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(out["token_stores"][0]["users"], json!([]));

    let refresh = run_auth(&world, &["--refresh"], &[]);
    assert_eq!(refresh.code, 0, "{}", refresh.stderr);
    let out: Value = serde_json::from_str(&refresh.stdout).unwrap();
    assert_eq!(out["refreshed"][0]["userid"], json!(world.userid()));
    assert!(out["refreshed"][0]["access_token_expires_at"]
        .as_str()
        .unwrap()
        .ends_with('Z'));
    let store = assert_store_intact(&store_path);
    let user = &store["users"][world.userid().to_string()];
    assert_eq!(
        user["seeded_from"],
        json!(fingerprint(&world.sim.refresh_token(world.userid())))
    );

    // A second refresh rotates the stored chain (the configured token is its seed).
    let first_refresh = user["refresh_token"].clone();
    let mut seen = stored_tokens(&store_path);
    let again = run_auth(
        &world,
        &["--refresh", "--user", &world.userid().to_string()],
        &[],
    );
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_ne!(
        read_store(&store_path)["users"][world.userid().to_string()]["refresh_token"],
        first_refresh
    );

    let status = run_auth(&world, &["--status"], &[]);
    assert_eq!(status.code, 0, "{}", status.stderr);
    let out: Value = serde_json::from_str(&status.stdout).unwrap();
    let users = &out["token_stores"][0]["users"];
    assert_eq!(users.as_array().unwrap().len(), 1);
    assert_eq!(users[0]["userid"], json!(world.userid()));
    assert_eq!(users[0]["scopes"], json!(ALL_SCOPES));
    assert_eq!(users[0]["access_token_expired"], json!(false));
    assert_eq!(users[0]["from_configured_refresh_token"], json!(true));

    let sync = sync_goals(&world, &world.config);
    seen.extend(stored_tokens(&store_path));
    seen.push(world.sim.refresh_token(world.userid()));
    seen.push(world.sim.client_secret().to_string());
    for (what, run) in [
        ("status", &status),
        ("refresh", &refresh),
        ("second refresh", &again),
        ("sync", &sync),
    ] {
        assert_no_secrets(&format!("{what} stdout"), &run.stdout, &seen);
        assert_no_secrets(&format!("{what} stderr"), &run.stderr, &seen);
    }

    let unknown = run_auth(&world, &["--refresh", "--user", "42"], &[]);
    assert_eq!(unknown.code, 1);
    assert!(
        error_line(&unknown).contains("user 42 is in no token store"),
        "{}",
        unknown.stderr
    );
}

#[test]
fn a_refused_refresh_token_says_to_run_auth_again() {
    let world = World::with_settings(sim_config(1, 3), json!({"refresh_token": "revoked-token"}));
    let run = run_auth(&world, &["--refresh"], &[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let line = error_line(&run);
    assert!(
        // Against withings-sim (loopback) the advice that works: the store holds tokens this
        // server does not know; delete it.
        line.contains("invalid refresh_token")
            && line.contains("tokens this server does not know")
            && line.contains("delete it"),
        "{line}"
    );
    assert!(!line.contains("revoked-token"));
}

/// Starts `auth --refresh` paused at `point` and SIGKILLs it there.
fn kill_refresh_at(world: &World, point: &str) {
    let mut running = start_auth(
        world,
        &["--refresh"],
        &[("TAP_WITHINGS_DEBUG_PAUSE", point)],
    );
    running.wait_for(&format!("debug pause at {point}"));
    running.kill();
}

#[test]
fn a_kill_right_after_the_token_reply_leaves_the_old_refresh_token_working() {
    let world = World::new(sim_config(1, 3));
    let store_path = world.path("tokens.json");

    // No store yet: the killed run answered nothing to disk, and the next sync refreshes with
    // the configured token, which is still alive because the new access token was never used.
    kill_refresh_at(&world, "token_reply");
    assert_eq!(
        token_grants(&world),
        1,
        "the token endpoint answered before the kill"
    );
    assert!(!store_path.exists());
    sync_goals(&world, &world.config);
    assert_eq!(token_grants(&world), 2);
    let before = assert_store_intact(&store_path);

    // With a stored chain: the killed run's rotation is lost, the stored refresh token is not.
    kill_refresh_at(&world, "token_reply");
    assert_eq!(token_grants(&world), 3);
    assert_eq!(
        assert_store_intact(&store_path),
        before,
        "the store is unchanged"
    );
    let run = run_auth(&world, &["--refresh"], &[]);
    assert_eq!(
        run.code, 0,
        "the stored refresh token still works: {}",
        run.stderr
    );
    assert_ne!(assert_store_intact(&store_path), before);
    sync_goals(&world, &world.config);
}

#[test]
fn a_kill_right_after_the_store_is_written_loses_nothing() {
    let world = World::new(sim_config(1, 3));
    let store_path = world.path("tokens.json");
    kill_refresh_at(&world, "store_written");
    let store = assert_store_intact(&store_path);
    let user = &store["users"][world.userid().to_string()];
    assert_eq!(
        user["seeded_from"],
        json!(fingerprint(&world.sim.refresh_token(world.userid())))
    );
    let grants = token_grants(&world);

    // The next run uses the stored access token as is (that kills the configured token) ...
    sync_goals(&world, &world.config);
    assert_eq!(token_grants(&world), grants, "no refresh needed");
    // ... and the stored rotated refresh token goes on working.
    let run = run_auth(&world, &["--refresh"], &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_store_intact(&store_path);
    sync_goals(&world, &world.config);
}

#[test]
fn auth_asks_for_the_configured_scopes_comma_separated() {
    let port = free_port();
    let world = World::with_settings(
        sim_config(1, 3),
        json!({
            "redirect_uri": format!("http://127.0.0.1:{port}/callback"),
            "scopes": "user.metrics, user.activity",
        }),
    );
    let mut auth = start_auth(&world, &[], &[]);
    let url = auth.authorize_url();
    assert!(url.contains("&scope=user.metrics,user.activity&"), "{url}");
    let (_, location, _) = http_get(&url);
    assert_eq!(http_get(&location.unwrap()).0, 200);
    let run = auth.finish();
    check_consent_of(&world, &run, &["user.metrics", "user.activity"]);
    assert!(!run.stderr.contains("did not grant"), "{}", run.stderr);
}

#[test]
fn an_empty_scopes_setting_is_a_one_line_config_error() {
    for scopes in ["", " , "] {
        let world = World::with_settings(
            sim_config(1, 3),
            json!({"redirect_uri": "https://tap.example/cb", "scopes": scopes}),
        );
        let run = run_auth(&world, &[], &[]);
        assert_eq!(run.code, 1, "{}", run.stderr);
        assert!(
            error_line(&run).contains("setting `scopes` is empty"),
            "{scopes:?}: {}",
            run.stderr
        );
        assert!(run.stdout.is_empty());
        assert!(
            !run.stderr.contains("authorize2?"),
            "no authorization URL is shown"
        );
    }
}

#[test]
fn a_localhost_redirect_fails_naming_an_address_another_program_holds() {
    // Another local program on [::1]:PORT would receive the code of a browser that resolves
    // `localhost` to ::1: `auth` must refuse to start rather than listen on 127.0.0.1 only.
    let mut cases = vec![("127.0.0.1", "127.0.0.1")];
    if std::net::TcpListener::bind("[::1]:0").is_ok() {
        cases.push(("::1", "[::1]"));
    } else {
        println!("no ::1 on this host: only the IPv4 address is checked");
    }
    for (ip, shown) in cases {
        let port = free_port();
        let _holder = std::net::TcpListener::bind((ip, port)).expect("the address is free");
        let world = auth_world(
            sim_config(1, 3),
            &format!("http://localhost:{port}/callback"),
        );
        let mut auth = start_auth(&world, &[], &[]);
        auth.wait_for("cannot listen");
        let run = auth.finish();
        assert_eq!(run.code, 1, "{}", run.stderr);
        let line = error_line(&run);
        assert!(
            line.contains(&format!("cannot listen on {shown}:{port}"))
                && line.contains("--no-listen"),
            "{line}"
        );
        assert!(
            !run.stderr.contains("authorize2?"),
            "no authorization URL is shown"
        );
    }
}

#[test]
fn a_localhost_redirect_is_received_over_ipv4_and_ipv6() {
    let families: &[&str] = if std::net::TcpListener::bind("[::1]:0").is_ok() {
        &["127.0.0.1", "[::1]"]
    } else {
        // A host without IPv6 loopback: the tap listens on 127.0.0.1 only.
        println!("no ::1 on this host; only the IPv4 listener is checked");
        &["127.0.0.1"]
    };
    for family in families {
        let port = free_port();
        let world = auth_world(
            sim_config(1, 3),
            &format!("http://localhost:{port}/callback"),
        );
        let mut auth = start_auth(&world, &[], &[]);
        let (_, location, _) = http_get(&auth.authorize_url());
        // The browser resolved `localhost` to this address.
        let location = location.unwrap().replace("localhost", family);
        assert!(location.contains(&format!("{family}:{port}")), "{location}");
        let (status, _, page) = http_get(&location);
        assert_eq!(status, 200, "{family}: {page}");
        check_consent(&world, &auth.finish());
    }
}

#[test]
fn a_consent_killed_right_after_storing_its_tokens_leaves_a_working_token_store() {
    let port = free_port();
    let world = auth_world(sim_config(1, 3), &format!("http://127.0.0.1:{port}/cb"));
    let store_path = world.path("tokens.json");
    let mut auth = start_auth(
        &world,
        &[],
        &[("TAP_WITHINGS_DEBUG_PAUSE", "store_written")],
    );
    consent_via_listener(&mut auth);
    auth.wait_for("debug pause at store_written");
    auth.kill();
    let store = assert_store_intact(&store_path);
    let user = &store["users"][world.userid().to_string()];
    assert_eq!(user["scope"], json!(ALL_SCOPES.join(",")));
    assert_eq!(token_grants(&world), 1, "the code exchange only");

    // The config a consent prints (no refresh_token): the sync uses the stored tokens, then
    // the stored refresh token rotates, and the rotated one works too.
    let config = store_only_config(
        &world,
        "printed.json",
        &json!({
            "client_id": world.sim.client_id(),
            "api_url": world.sim.url(),
            "token_store": store_path,
        }),
    );
    sync_goals(&world, &config);
    assert_eq!(token_grants(&world), 1, "the stored access token was used");
    let refresh = run_auth_with(&config, &["--refresh"], &[]);
    assert_eq!(refresh.code, 0, "{}", refresh.stderr);
    assert_eq!(token_grants(&world), 2);
    edit_store(&store_path, world.userid(), |u| u["expires_at"] = json!(0));
    sync_goals(&world, &config);
    assert_eq!(token_grants(&world), 3, "the expired token was refreshed");
}

#[test]
fn a_newer_configured_token_of_a_stored_user_replaces_its_chain_without_refreshing_the_old_one() {
    let world = World::new(sim_config(1, 3));
    let uid = world.userid();
    let store_path = world.path("tokens.json");
    // The store holds the chain grown from the initial token; its access token has expired.
    let run = run_auth(&world, &["--refresh"], &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    edit_store(&store_path, uid, |u| u["expires_at"] = json!(0));
    // A later consent, made with another token store, put its refresh token in the config.
    let port = free_port();
    let other_store = world.path("other-tokens.json");
    let other = write_json(
        world.dir.path(),
        "other.json",
        &json!({
            "client_id": world.sim.client_id(),
            "client_secret": world.sim.client_secret(),
            "api_url": world.sim.url(),
            "token_store": other_store,
            "redirect_uri": format!("http://127.0.0.1:{port}/cb"),
        }),
    );
    let mut auth = start_auth_with(&other, &[], &[]);
    consent_via_listener(&mut auth);
    assert_eq!(auth.finish().code, 0);
    let newer = read_store(&other_store)["users"][uid.to_string()]["refresh_token"]
        .as_str()
        .unwrap()
        .to_string();
    set_setting(&world.config, "refresh_token", json!(newer));

    // Run 1 refreshes the newer token only, and its chain replaces the old one in the store.
    let before = token_requests(&world);
    let first = sync_goals(&world, &world.config);
    assert_eq!(
        token_requests(&world) - before,
        1,
        "the older chain is not refreshed"
    );
    assert!(
        !first.stderr.contains("Two configured tokens"),
        "{}",
        first.stderr
    );
    let store = assert_store_intact(&store_path);
    let user = &store["users"][uid.to_string()];
    assert_eq!(user["seeded_from"], json!(fingerprint(&newer)));
    assert_eq!(
        user["previous_seeds"],
        json!([fingerprint(&world.sim.refresh_token(uid))])
    );

    // Run 2 refreshes the rotated token of the newer chain (the config's token is dead now).
    edit_store(&store_path, uid, |u| u["expires_at"] = json!(0));
    let before = token_grants(&world);
    sync_goals(&world, &world.config);
    assert_eq!(token_grants(&world) - before, 1);
    assert!(
        no_refresh_token_refused(&world),
        "a refresh token was refused"
    );
}

#[test]
fn a_configured_token_from_before_a_new_consent_gives_way_to_the_stored_chain() {
    let port = free_port();
    let world = auth_world(sim_config(1, 3), &format!("http://127.0.0.1:{port}/cb"));
    let uid = world.userid();
    let store_path = world.path("tokens.json");
    // A sync from the configured token: its successor is used, so the token itself is dead.
    sync_goals(&world, &world.config);
    // The user links the account again and leaves the old token in the config.
    let mut auth = start_auth(&world, &[], &[]);
    consent_via_listener(&mut auth);
    let consent = auth.finish();
    check_consent(&world, &consent);
    assert!(
        consent.stderr.contains("remove it from the config"),
        "{}",
        consent.stderr
    );
    let status = run_auth(&world, &["--status"], &[]);
    let out: Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(
        out["token_stores"][0]["users"][0]["from_configured_refresh_token"],
        json!(true)
    );
    // Each later run uses (and rotates) the consent's chain; the old token is never sent.
    for _ in 0..2 {
        edit_store(&store_path, uid, |u| u["expires_at"] = json!(0));
        let before = token_grants(&world);
        sync_goals(&world, &world.config);
        assert_eq!(token_grants(&world) - before, 1);
    }
    assert!(
        no_refresh_token_refused(&world),
        "a refresh token was refused"
    );
}

/// The sync arguments for every stream.
fn sync_all(world: &World) -> Vec<String> {
    vec![
        "--config".into(),
        world.config.display().to_string(),
        "--catalog".into(),
        world.catalog(crate::streams::ALL).display().to_string(),
    ]
}

fn sync_all_run(world: &World) -> Run {
    let args = sync_all(world);
    tap(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// A world whose store holds a fresh chain for its user.
fn stored_world(faults: withings_sim::Faults) -> World {
    let world = World::new(SimConfig {
        faults,
        ..sim_config(1, 3)
    });
    let run = run_auth(&world, &["--refresh"], &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    world
}

fn error_log_lines(run: &Run) -> Vec<&str> {
    run.stderr.lines().filter(|l| l.contains("ERROR")).collect()
}

#[test]
fn a_refresh_token_found_dead_mid_sync_costs_one_token_request_and_one_error_line() {
    let world = stored_world(withings_sim::Faults {
        repeat_guard_secs: 0.0,
        ..Default::default()
    });
    edit_store(&world.path("tokens.json"), world.userid(), |u| {
        u["refresh_token"] = json!("revoked-refresh-token")
    });
    // The stored access token works for a few calls, then every stream task is refused.
    world.sim.set_faults(withings_sim::Faults {
        access_token_max_calls: Some(4),
        repeat_guard_secs: 0.0,
        ..Default::default()
    });
    world.sim.reset_stats();
    let run = sync_all_run(&world);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(
        token_requests(&world),
        1,
        "one refresh for the whole user: {}",
        run.stderr
    );
    let refused = world
        .sim
        .requests()
        .iter()
        .filter(|r| r.action != "requesttoken" && r.status == 401)
        .count();
    assert!(refused >= 1, "the access token ran out mid-sync");
    let errors = error_log_lines(&run);
    assert_eq!(errors.len(), 1, "one ERROR line:\n{}", run.stderr);
    assert!(errors[0].contains("invalid refresh_token"), "{}", errors[0]);
    let last = run.stderr.lines().last().unwrap();
    assert!(
        last.starts_with("tap-withings: ")
            && last.contains("invalid refresh_token")
            && last.contains("tokens this server does not know")
            && last.contains("token store"),
        "{last}"
    );
    assert!(!run.stderr.contains("revoked-refresh-token"));
}

#[test]
fn an_access_token_refused_even_after_a_refresh_costs_one_refresh_and_says_so() {
    let world = stored_world(withings_sim::Faults {
        repeat_guard_secs: 0.0,
        ..Default::default()
    });
    // Every data call is refused, whatever the token.
    world.sim.set_faults(withings_sim::Faults {
        access_token_max_calls: Some(0),
        repeat_guard_secs: 0.0,
        ..Default::default()
    });
    world.sim.reset_stats();
    let run = sync_all_run(&world);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(token_requests(&world), 1, "exactly one refresh");
    assert_eq!(token_grants(&world), 1);
    assert_eq!(error_log_lines(&run).len(), 1, "{}", run.stderr);
    let last = run.stderr.lines().last().unwrap();
    assert!(
        last.contains("refused the access token it had just issued")
            && last.contains("run `tap-withings auth` again"),
        "{last}"
    );
}

#[test]
fn concurrent_refusals_across_stream_tasks_share_one_refresh() {
    let world = stored_world(withings_sim::Faults {
        repeat_guard_secs: 0.0,
        // Replies take a while, so every task's first call is out before any refusal is back.
        delay_ms: 30,
        ..Default::default()
    });
    edit_store(&world.path("tokens.json"), world.userid(), |u| {
        u["access_token"] = json!("an-access-token-withings-does-not-know")
    });
    world.sim.reset_stats();
    let run = sync_all_run(&world);
    assert_eq!(run.code, 0, "{}", run.stderr);
    run.check();
    let refused = world
        .sim
        .requests()
        .iter()
        .filter(|r| r.action != "requesttoken" && r.status == 401)
        .count();
    assert!(
        refused >= 2,
        "several stream tasks were refused at once ({refused})"
    );
    assert_eq!(
        token_requests(&world),
        1,
        "one refresh for {refused} refusals"
    );
}

#[test]
fn an_access_token_near_or_past_expiry_is_refreshed_before_the_first_data_call() {
    let world = stored_world(withings_sim::Faults {
        repeat_guard_secs: 0.0,
        ..Default::default()
    });
    let store_path = world.path("tokens.json");
    // Still accepted by Withings, but within the margin, then past its expiry.
    for expires_at in [now() + 100, now() - 10] {
        edit_store(&store_path, world.userid(), |u| {
            u["expires_at"] = json!(expires_at)
        });
        world.sim.reset_stats();
        sync_goals(&world, &world.config);
        let requests = world.sim.requests();
        assert_eq!(requests[0].action, "requesttoken", "{expires_at}");
        assert_eq!(token_requests(&world), 1);
        assert!(requests.iter().all(|r| r.status == 0), "nothing refused");
        let stored = read_store(&store_path)["users"][world.userid().to_string()]["expires_at"]
            .as_i64()
            .unwrap();
        assert!(stored > now() + 3600, "the new expiry is stored");
    }
}
