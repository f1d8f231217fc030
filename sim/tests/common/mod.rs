//! Test helpers: a minimal blocking HTTP/1.1 client (no extra dependencies) and shortcuts
//! for the simulator's API.
#![allow(dead_code)]

use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use withings_sim::{Faults, Sim, SimConfig};

/// A fixed anchor (2023-11-14 00:00 UTC) so tests do not depend on the day they run.
pub const ANCHOR: i64 = 1_699_920_000;

pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

pub fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// One HTTP request with `Connection: close`.
pub fn http(url: &str, method: &str, target: &str, body: &str, headers: &[(&str, &str)]) -> Resp {
    let hostport = url.trim_start_matches("http://");
    let mut s = TcpStream::connect(hostport).expect("connect");
    let mut req = format!("{method} {target} HTTP/1.1\r\nHost: {hostport}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    if !body.is_empty() {
        req.push_str("Content-Type: application/x-www-form-urlencoded\r\n");
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).expect("write");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("http head");
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .expect("status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Resp {
        status,
        headers,
        body: body.to_string(),
    }
}

/// POST a form to an API path, optionally with a bearer token.
pub fn post(sim: &Sim, path: &str, pairs: &[(&str, &str)], token: Option<&str>) -> Resp {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
    http(&sim.url(), "POST", path, &form(pairs), &headers)
}

/// POST and parse the envelope.
pub fn call(sim: &Sim, path: &str, pairs: &[(&str, &str)], token: &str) -> Value {
    post(sim, path, pairs, Some(token)).json()
}

pub fn refresh(sim: &Sim, refresh_token: &str) -> Value {
    post(
        sim,
        "/v2/oauth2",
        &[
            ("action", "requesttoken"),
            ("grant_type", "refresh_token"),
            ("client_id", sim.client_id()),
            ("client_secret", sim.client_secret()),
            ("refresh_token", refresh_token),
        ],
        None,
    )
    .json()
}

/// An access token for a user (via its initial refresh token).
pub fn token(sim: &Sim, userid: u64) -> String {
    let r = refresh(sim, &sim.refresh_token(userid));
    assert_eq!(r["status"], 0, "{r}");
    r["body"]["access_token"]
        .as_str()
        .expect("access_token")
        .to_string()
}

/// A config with a fixed anchor and no repeat guard (tests repeat requests on purpose).
pub fn cfg() -> SimConfig {
    SimConfig {
        anchor: Some(ANCHOR),
        faults: Faults {
            repeat_guard_secs: 0.0,
            ..Faults::default()
        },
        ..SimConfig::default()
    }
}

pub fn start(cfg: SimConfig) -> Sim {
    Sim::start(cfg).expect("sim starts")
}

pub fn s(v: i64) -> String {
    v.to_string()
}
