//! The baseline `bench/run` measures the tap against: a bare typed-serde getmeas reader. It
//! fetches every category-1 page of one user's `lastupdate` chain one after the other (no
//! prefetch, no retries, no state, no de-duplication), reads each reply into owned typed
//! structs with serde, and writes one small JSON line per measure to stdout. What it costs in
//! memory and time is what any reader of these pages costs; the tap's figures are compared
//! with it in the same run.
//!
//! usage: bare_getmeas API_URL ACCESS_TOKEN LASTUPDATE

use std::io::Write;

use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct Envelope {
    status: i64,
    #[serde(default)]
    body: Option<Page>,
}

#[derive(Deserialize)]
struct Page {
    #[serde(default)]
    measuregrps: Vec<Group>,
    timezone: Option<String>,
}

#[derive(Deserialize)]
struct Group {
    grpid: i64,
    date: Option<i64>,
    modified: Option<i64>,
    category: Option<i64>,
    deviceid: Option<String>,
    #[serde(default)]
    measures: Vec<Measure>,
}

#[derive(Deserialize)]
struct Measure {
    value: Option<i64>,
    #[serde(rename = "type")]
    kind: i64,
    unit: Option<i64>,
}

#[derive(Serialize)]
struct Line<'a> {
    grpid: i64,
    #[serde(rename = "type")]
    kind: i64,
    value: Option<f64>,
    unit: Option<i64>,
    date: Option<i64>,
    modified: Option<i64>,
    category: Option<i64>,
    deviceid: Option<&'a str>,
    timezone: Option<&'a str>,
}

async fn run(url: &str, token: &str, lastupdate: &str) -> Result<(u64, u64), String> {
    let http = reqwest::Client::new();
    let mut out = std::io::BufWriter::with_capacity(256 * 1024, std::io::stdout().lock());
    let (mut offset, mut pages, mut measures) = (0usize, 0u64, 0u64);
    loop {
        let mut form = vec![
            ("action", "getmeas".to_string()),
            ("category", "1".to_string()),
            ("lastupdate", lastupdate.to_string()),
        ];
        if offset > 0 {
            form.push(("offset", offset.to_string()));
        }
        let reply = http
            .post(format!("{url}/measure"))
            .bearer_auth(token)
            .form(&form)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| format!("request failed: {e}"))?;
        let bytes = reply
            .bytes()
            .await
            .map_err(|e| format!("reply cut off: {e}"))?;
        let envelope: Envelope =
            serde_json::from_slice(&bytes).map_err(|e| format!("unreadable reply: {e}"))?;
        drop(bytes);
        if envelope.status != 0 {
            return Err(format!("status {}", envelope.status));
        }
        pages += 1;
        let page = envelope.body.unwrap_or(Page {
            measuregrps: Vec::new(),
            timezone: None,
        });
        if page.measuregrps.is_empty() {
            break;
        }
        offset += page.measuregrps.len();
        for g in &page.measuregrps {
            for m in &g.measures {
                let value = match (m.value, m.unit) {
                    (Some(v), Some(u)) if (-22..=22).contains(&u) => {
                        Some(v as f64 * 10f64.powi(u as i32))
                    }
                    _ => None,
                };
                let line = Line {
                    grpid: g.grpid,
                    kind: m.kind,
                    value,
                    unit: m.unit,
                    date: g.date,
                    modified: g.modified,
                    category: g.category,
                    deviceid: g.deviceid.as_deref(),
                    timezone: page.timezone.as_deref(),
                };
                serde_json::to_writer(&mut out, &line).map_err(|e| e.to_string())?;
                out.write_all(b"\n").map_err(|e| e.to_string())?;
                measures += 1;
            }
        }
    }
    out.flush().map_err(|e| e.to_string())?;
    Ok((pages, measures))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, token, lastupdate] = args.as_slice() else {
        eprintln!("usage: bare_getmeas API_URL ACCESS_TOKEN LASTUPDATE");
        std::process::exit(2);
    };
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
        .and_then(|rt| rt.block_on(run(url, token, lastupdate)));
    match result {
        Ok((pages, measures)) => eprintln!("bare_getmeas: {pages} pages, {measures} measures"),
        Err(e) => {
            eprintln!("bare_getmeas: {e}");
            std::process::exit(1);
        }
    }
}
