//! Request log and statistics (`GET /_sim/stats`, `GET /_sim/requests`).

use serde::Serialize;
use serde_json::{json, Value};
use std::collections::{BTreeMap, VecDeque};

/// Parameters whose values never appear in the log.
const SECRET_PARAMS: &[&str] = &["client_secret", "refresh_token", "code", "access_token"];

/// One API request as the simulator received and answered it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RequestLog {
    /// 1-based sequence number over the simulator's life.
    pub seq: u64,
    /// Arrival time, epoch seconds.
    pub at: f64,
    pub path: String,
    /// The module (`getmeas`, `sleep_get`, `heart_list`, `requesttoken`, `authorize2`, ...) or
    /// the raw action for unknown ones.
    pub action: String,
    /// Request parameters (query and form), secrets replaced by `[redacted]`.
    pub params: BTreeMap<String, String>,
    /// The user the bearer token (or the token grant) belongs to.
    pub userid: Option<u64>,
    /// Envelope status (-1 when the reply had no envelope: HTML 5xx or redirect).
    pub status: i64,
    pub http_status: u16,
    /// The injected fault, if any (`html_5xx`, `status_522`, `truncated`, `rate_limit`,
    /// `repeat_guard`, `access_token_max_calls`).
    pub fault: Option<String>,
}

/// Replaces secret parameter values by `[redacted]`.
pub fn redact(params: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    params
        .iter()
        .map(|(k, v)| {
            let v = if SECRET_PARAMS.contains(&k.as_str()) {
                "[redacted]".to_string()
            } else {
                v.clone()
            };
            (k.clone(), v)
        })
        .collect()
}

/// Counters since the start (or the last reset).
#[derive(Debug, Default)]
pub struct Stats {
    pub requests_total: u64,
    pub by_action: BTreeMap<String, u64>,
    pub by_status: BTreeMap<String, u64>,
    pub faults: BTreeMap<String, u64>,
    pub token_refreshes: u64,
    pub code_exchanges: u64,
    pub replies_601: u64,
    pub max_requests_in_any_60s: usize,
    window: VecDeque<f64>,
    pub log: Vec<RequestLog>,
}

impl Stats {
    /// Records one answered API request.
    pub fn record(&mut self, entry: RequestLog) {
        self.requests_total += 1;
        *self.by_action.entry(entry.action.clone()).or_default() += 1;
        let status_key = if entry.status < 0 {
            format!("http_{}", entry.http_status)
        } else {
            entry.status.to_string()
        };
        *self.by_status.entry(status_key).or_default() += 1;
        if let Some(f) = &entry.fault {
            *self.faults.entry(f.clone()).or_default() += 1;
        }
        if entry.status == 601 {
            self.replies_601 += 1;
        }
        while self.window.front().is_some_and(|t| *t <= entry.at - 60.0) {
            self.window.pop_front();
        }
        self.window.push_back(entry.at);
        self.max_requests_in_any_60s = self.max_requests_in_any_60s.max(self.window.len());
        self.log.push(entry);
    }

    pub fn to_json(&self) -> Value {
        json!({
            "requests_total": self.requests_total,
            "by_action": self.by_action,
            "by_status": self.by_status,
            "faults": self.faults,
            "token_refreshes": self.token_refreshes,
            "code_exchanges": self.code_exchanges,
            "replies_601": self.replies_601,
            "max_requests_in_any_60s": self.max_requests_in_any_60s,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(at: f64, status: i64) -> RequestLog {
        RequestLog {
            seq: 0,
            at,
            path: "/measure".into(),
            action: "getmeas".into(),
            params: BTreeMap::new(),
            userid: None,
            status,
            http_status: 200,
            fault: None,
        }
    }

    #[test]
    fn window_max_counts_requests_in_60s() {
        let mut s = Stats::default();
        for t in [0.0, 10.0, 59.0, 60.0, 61.0, 130.0] {
            s.record(entry(t, 0));
        }
        s.record(entry(131.0, 601));
        assert_eq!(s.max_requests_in_any_60s, 4);
        assert_eq!(s.replies_601, 1);
        assert_eq!(s.requests_total, 7);
    }

    #[test]
    fn secrets_are_redacted() {
        let mut p = BTreeMap::new();
        p.insert("client_secret".to_string(), "s".to_string());
        p.insert("action".to_string(), "requesttoken".to_string());
        let r = redact(&p);
        assert_eq!(r["client_secret"], "[redacted]");
        assert_eq!(r["action"], "requesttoken");
    }
}
