//! Hardening against a hostile or careless server: no call follows a redirect (a token request
//! re-posted elsewhere would carry the client secret and the refresh token), and an `api_url`
//! whose user information hides a remote host is refused.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serde_json::json;

use crate::support::{tap, write_json};

/// A loopback server answering every request with `reply`, counting connections; it stops
/// with the test process (bounded: at most `max` connections are served).
fn serve(reply: String, max: usize) -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&count);
    std::thread::spawn(move || {
        for stream in listener.incoming().take(max) {
            let Ok(mut stream) = stream else { continue };
            seen.fetch_add(1, Ordering::SeqCst);
            let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(2)));
            let mut buf = [0u8; 8192];
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(reply.as_bytes());
        }
    });
    (port, count)
}

#[test]
fn no_call_follows_a_redirect_and_the_failure_names_where_it_pointed() {
    // Where a followed redirect would re-post the secrets.
    let (elsewhere, reached) = serve(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}".into(),
        10,
    );
    for status in [
        "307 Temporary Redirect",
        "308 Permanent Redirect",
        "302 Found",
    ] {
        let (port, _) = serve(
            format!(
                "HTTP/1.1 {status}\r\nLocation: http://localhost:{elsewhere}/steal\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            ),
            10,
        );
        let dir = tempfile::tempdir().unwrap();
        let config = write_json(
            dir.path(),
            "config.json",
            &json!({
                "client_id": "id",
                "client_secret": "the-client-secret",
                "refresh_token": "the-refresh-token",
                "api_url": format!("http://127.0.0.1:{port}"),
                "token_store": dir.path().join("tokens.json"),
                "max_retries": 1,
                "max_retry_seconds": 2,
            }),
        );
        let out = tap(&["--config", config.to_str().unwrap(), "--test"]);
        assert_eq!(out.code, 1, "{status}: {}", out.stderr);
        let last = out.stderr.lines().last().unwrap_or_default();
        assert!(
            last.contains("redirects to localhost") && last.contains("not followed"),
            "{status}: {last}"
        );
        assert!(
            !out.stderr.contains("the-client-secret") && !out.stderr.contains("the-refresh-token")
        );
    }
    assert_eq!(
        reached.load(Ordering::SeqCst),
        0,
        "nothing reached the redirect's target"
    );
}

#[test]
fn an_api_url_whose_user_information_hides_a_remote_host_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_json(
        dir.path(),
        "config.json",
        &json!({
            "client_id": "id",
            "client_secret": "s",
            "refresh_token": "r",
            "api_url": "http://localhost:x@vm",
            "token_store": dir.path().join("tokens.json"),
        }),
    );
    let out = tap(&["--config", config.to_str().unwrap(), "--test"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let last = out.stderr.lines().last().unwrap_or_default();
    assert!(
        last.contains("api_url") && last.contains("user name"),
        "{last}"
    );
}

#[test]
fn processes_sharing_a_token_store_never_lose_a_rotation() {
    // Four users on one store. The simulator kills an old refresh token as soon as its
    // successor is issued (`rotation_grace_secs` 0), so a process that writes the store from
    // a copy read before another process's rotation leaves that user with a dead token, and
    // the user's next refresh fails. Access tokens live 1 s, so every sync refreshes too.
    let cfg = withings_sim::SimConfig {
        access_token_ttl_secs: 1,
        faults: withings_sim::Faults {
            rotation_grace_secs: Some(0.0),
            repeat_guard_secs: 0.0,
            ..withings_sim::Faults::default()
        },
        ..crate::support::sim_config(4, 2)
    };
    let probe = withings_sim::Sim::start(cfg.clone()).unwrap();
    let ids = probe.userids();
    let others: Vec<serde_json::Value> = ids[1..]
        .iter()
        .map(|u| json!({"refresh_token": probe.refresh_token(*u)}))
        .collect();
    drop(probe);
    let world = crate::support::World::with_settings(cfg, json!({"users": others}));
    let config = world.config.display().to_string();
    let catalog = world.catalog(&["goals"]).display().to_string();
    let sync = || tap(&["--config", config.as_str(), "--catalog", catalog.as_str()]);
    let refresh_all = || tap(&["auth", "--refresh", "--config", config.as_str()]);
    let first = refresh_all();
    assert_eq!(first.code, 0, "{}", first.stderr);
    for round in 0..10 {
        let outcomes: Vec<(String, i32, String)> = std::thread::scope(|s| {
            let mut handles = Vec::new();
            for id in &ids {
                let user = id.to_string();
                let config = config.clone();
                handles.push(s.spawn(move || {
                    let r = tap(&["auth", "--refresh", "--config", &config, "--user", &user]);
                    (format!("auth --refresh --user {user}"), r.code, r.stderr)
                }));
            }
            if round % 3 == 0 {
                handles.push(s.spawn(move || {
                    let r = sync();
                    ("a sync".to_string(), r.code, r.stderr)
                }));
            }
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (what, code, stderr) in outcomes {
            assert_eq!(code, 0, "round {round}, {what}: {stderr}");
        }
    }
    // Every chain is still valid: one more refresh of every user, then a sync of all of them.
    let last = refresh_all();
    assert_eq!(last.code, 0, "{}", last.stderr);
    let refreshed: serde_json::Value = serde_json::from_str(&last.stdout).unwrap();
    assert_eq!(
        refreshed["refreshed"].as_array().map(Vec::len),
        Some(ids.len()),
        "{}",
        last.stdout
    );
    let synced = sync();
    assert_eq!(synced.code, 0, "{}", synced.stderr);
    let users: std::collections::BTreeSet<i64> = synced
        .records("goals")
        .iter()
        .map(|r| r["userid"].as_i64().unwrap())
        .collect();
    assert_eq!(
        users.len(),
        ids.len(),
        "every user synced: {}",
        synced.stderr
    );
}

/// A canned reply for `--test` (the token call and then the data call), as raw bytes.
fn serve_bytes(head: String, body: Vec<u8>, max: usize) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(max) {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(2)));
            let mut buf = [0u8; 8192];
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&body);
        }
    });
    port
}

#[test]
fn a_reply_larger_than_the_cap_fails_at_once_compressed_or_not() {
    // 40 MiB of JSON whitespace inside a valid envelope: plain, and as a gzip bomb of a few
    // dozen kilobytes that inflates past the 32 MiB default.
    let mut json = b"{\"status\":0,\"body\":{\"userid\":1,\"access_token\":\"a\",".to_vec();
    json.extend(std::iter::repeat_n(b' ', 40 << 20));
    json.extend_from_slice(b"}}");
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("reply.json");
    std::fs::write(&raw, &json).unwrap();
    let gz = std::process::Command::new("gzip")
        .arg("-c")
        .arg(&raw)
        .output()
        .expect("gzip runs");
    assert!(gz.status.success());
    let bomb = gz.stdout;
    assert!(bomb.len() < 1 << 20, "a small compressed body");
    let cases = [
        (
            "plain",
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                json.len()
            ),
            json.clone(),
        ),
        (
            "gzip",
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                bomb.len()
            ),
            bomb,
        ),
    ];
    for (what, head, body) in cases {
        let port = serve_bytes(head, body, 5);
        let config = write_json(
            dir.path(),
            &format!("config-{what}.json"),
            &json!({
                "client_id": "id",
                "client_secret": "s",
                "refresh_token": "r",
                "api_url": format!("http://127.0.0.1:{port}"),
                "token_store": dir.path().join(format!("tokens-{what}.json")),
                "max_retries": 3,
            }),
        );
        let out = tap(&["--config", config.to_str().unwrap(), "--test"]);
        assert_eq!(out.code, 1, "{what}: {}", out.stderr);
        let last = out.stderr.lines().last().unwrap_or_default();
        assert!(last.contains("max_reply_megabytes"), "{what}: {last}");
        assert!(
            !out.stderr.contains("Retrying"),
            "{what}: refused without retrying"
        );
    }
}

/// Checks that server text reached `stderr` only through the redaction gate: no secret, no
/// forged line, no terminal escape, and the error line shows where a secret was.
fn assert_server_text_defused(what: &str, stderr: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(
            !stderr.contains(secret),
            "{what}: stderr shows {secret}:\n{stderr}"
        );
    }
    assert!(
        !stderr.contains('\u{1b}'),
        "{what}: an ANSI escape: {stderr}"
    );
    assert!(
        !stderr.contains('\r'),
        "{what}: a carriage return: {stderr}"
    );
    // The forged text stays inside the line of the message that carried it.
    for line in stderr.lines().filter(|l| l.contains("FORGED")) {
        assert!(
            line.contains("Invalid Params") && !line.starts_with("2026-01-01T00:00:00Z"),
            "{what}: a forged log line: {line}"
        );
    }
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.contains("[redacted]") && last.contains("\\n") && last.contains("FORGED"),
        "{what}: the server's text is shown, defused: {last}"
    );
}

#[test]
fn server_text_echoing_secrets_and_forged_log_lines_is_redacted_and_escaped() {
    // The simulator's error texts echo the request's client secret, refresh token and code,
    // then a newline, an ANSI escape and a forged log line.
    let cfg = withings_sim::SimConfig {
        code_ttl_secs: 0,
        faults: withings_sim::Faults {
            echo_secrets_in_errors: true,
            repeat_guard_secs: 0.0,
            ..withings_sim::Faults::default()
        },
        ..crate::support::sim_config(1, 2)
    };
    let dead = "a-refresh-token-the-server-does-not-know";
    let world = crate::support::World::with_settings(
        cfg,
        json!({"refresh_token": dead, "redirect_uri": "https://tap.example/cb"}),
    );
    let secret = world.sim.client_secret().to_string();
    let config = world.config.display().to_string();
    let catalog = world.catalog(&["goals"]).display().to_string();
    let runs = [
        ("--test", tap(&["--config", config.as_str(), "--test"])),
        (
            "a sync",
            tap(&["--config", config.as_str(), "--catalog", catalog.as_str()]),
        ),
        (
            "auth --refresh",
            tap(&["auth", "--refresh", "--config", config.as_str()]),
        ),
    ];
    for (what, run) in runs {
        assert_eq!(run.code, 1, "{what}: {}", run.stderr);
        assert!(
            run.stderr.contains("invalid refresh_token"),
            "{what}: {}",
            run.stderr
        );
        assert_server_text_defused(what, &run.stderr, &[&secret, dead]);
    }
    // The code exchange: an expired code, echoed back with the secret.
    let mut auth = crate::auth::start_auth_with(&world.config, &[], &[]);
    let (_, location, _) = crate::auth::http_get(&auth.authorize_url());
    let location = location.expect("a redirect");
    let code = location
        .split("code=")
        .nth(1)
        .and_then(|rest| rest.split('&').next())
        .expect("a code")
        .to_string();
    auth.paste(&location);
    let run = auth.finish();
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("invalid code"), "{}", run.stderr);
    assert_server_text_defused("the code exchange", &run.stderr, &[&secret, &code]);
}
