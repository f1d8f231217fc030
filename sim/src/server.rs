//! HTTP front: the axum router, the API request pipeline (faults, auth, scopes, dispatch,
//! envelope, log) and the server thread.

use crate::admin;
use crate::api::params::{parse_urlencoded, ApiError, Params};
use crate::api::{self, oauth, Opts, Route};
use crate::auth::AuthFail;
use crate::clock;
use crate::faults::{FaultState, Gateway};
use crate::state::{Shared, State};
use crate::stats::{redact, RequestLog};
use axum::body::{Body, Bytes};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, LOCATION};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use axum::Router;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// The 401 text of the real API.
pub const INVALID_TOKEN: &str =
    "XRequestID: Not provided invalid_token: The access token provided is invalid";

const HTML_502: &str = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";

/// What goes back on the wire.
#[derive(Debug)]
pub struct Reply {
    pub http: u16,
    pub content_type: &'static str,
    pub body: String,
    pub location: Option<String>,
}

impl Reply {
    fn json(body: String) -> Self {
        Reply {
            http: 200,
            content_type: "application/json",
            body,
            location: None,
        }
    }

    fn into_response(self) -> Response {
        let mut b = Response::builder()
            .status(StatusCode::from_u16(self.http).unwrap_or(StatusCode::OK))
            .header(CONTENT_TYPE, self.content_type);
        if let Some(l) = self.location {
            b = b.header(LOCATION, l);
        }
        b.body(Body::from(self.body))
            .unwrap_or_else(|_| Response::new(Body::empty()))
    }
}

fn error_envelope(status: i64, error: &str, body: Value) -> String {
    json!({"status": status, "body": body, "error": error}).to_string()
}

/// The result of the pipeline before logging.
struct Outcome {
    reply: Reply,
    status: i64,
    fault: Option<&'static str>,
    userid: Option<u64>,
}

impl Outcome {
    fn error(status: i64, error: &str, fault: Option<&'static str>) -> Self {
        Outcome {
            reply: Reply::json(error_envelope(status, error, json!({}))),
            status,
            fault,
            userid: None,
        }
    }

    fn api_error(e: ApiError) -> Self {
        Outcome::error(e.status, &e.error, None)
    }

    fn wait(wait_seconds: u64, error: &str, fault: &'static str) -> Self {
        Outcome {
            reply: Reply::json(error_envelope(
                601,
                error,
                json!({"wait_seconds": wait_seconds}),
            )),
            status: 601,
            fault: Some(fault),
            userid: None,
        }
    }
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_string())
        .filter(|t| !t.is_empty())
}

/// The `echo_secrets_in_errors` tail of an error text: the request's secrets, then a newline,
/// an ANSI escape and a forged log line.
fn echoed_secrets(params: &BTreeMap<String, String>, bearer: Option<&str>) -> String {
    let mut text = String::new();
    for key in ["client_secret", "refresh_token", "code"] {
        if let Some(v) = params.get(key) {
            text.push_str(&format!(" {key}={v}"));
        }
    }
    if let Some(b) = bearer {
        text.push_str(&format!(" bearer={b}"));
    }
    text.push_str("\n\u{1b}[2K2026-01-01T00:00:00Z ERROR tap-withings: FORGED log line\r\n");
    text
}

fn action_name(route: Option<Route>, action: &str) -> String {
    match route {
        Some(Route::Data(m, _)) => m.to_string(),
        Some(Route::Token) => "requesttoken".to_string(),
        None if action.is_empty() => "(none)".to_string(),
        None => action.to_string(),
    }
}

/// Runs one API request through faults, auth and the module handler; logs it.
fn process(
    shared: &Shared,
    path: &str,
    params: BTreeMap<String, String>,
    token: Option<String>,
) -> Reply {
    let now = clock::now();
    let mut guard = shared.lock();
    let st: &mut State = &mut guard;
    st.seq += 1;
    let seq = st.seq;
    let action = params.get("action").cloned().unwrap_or_default();
    let route = api::route(path, &action);
    let mut entry = RequestLog {
        seq,
        at: now,
        path: path.to_string(),
        action: action_name(route, &action),
        params: redact(&params),
        userid: token.as_deref().and_then(|t| st.auth.peek(t)),
        status: 0,
        http_status: 200,
        fault: None,
    };
    let n = st.fault_state.tick();
    let echo = st
        .faults
        .echo_secrets_in_errors
        .then(|| echoed_secrets(&params, token.as_deref()));
    let mut out = pipeline(
        shared,
        st,
        path,
        &action,
        route,
        Params(params),
        token,
        now,
        n,
    );
    if let Some(echo) = echo.filter(|_| out.status > 0) {
        if let Ok(mut envelope) = serde_json::from_str::<Value>(&out.reply.body) {
            let text = envelope["error"].as_str().unwrap_or("").to_string();
            envelope["error"] = json!(format!("{text}{echo}"));
            out.reply.body = envelope.to_string();
            out.fault = out.fault.or(Some("echo_secrets_in_errors"));
        }
    }
    let faults = &st.faults;
    if out.reply.http == 200 && FaultState::truncated(faults, n) {
        let cut = out.reply.body.len() / 2;
        out.reply.body.truncate(cut);
        out.fault = out.fault.or(Some("truncated"));
    }
    entry.status = out.status;
    entry.http_status = out.reply.http;
    entry.fault = out.fault.map(str::to_string);
    entry.userid = out.userid.or(entry.userid);
    st.stats.record(entry);
    out.reply
}

#[allow(clippy::too_many_arguments)]
fn pipeline(
    shared: &Shared,
    st: &mut State,
    path: &str,
    action: &str,
    route: Option<Route>,
    p: Params,
    token: Option<String>,
    now: f64,
    n: u64,
) -> Outcome {
    let faults = st.faults.clone();
    match FaultState::gateway(&faults, n) {
        Some(Gateway::Html5xx) => {
            return Outcome {
                reply: Reply {
                    http: 502,
                    content_type: "text/html",
                    body: HTML_502.to_string(),
                    location: None,
                },
                status: -1,
                fault: Some("html_5xx"),
                userid: None,
            }
        }
        Some(Gateway::Status522) => {
            return Outcome::error(
                522,
                "Timeout: the request took too long, please retry",
                Some("status_522"),
            )
        }
        None => {}
    }
    if let Err(w) = st.fault_state.rate_limit(now, faults.rate_limit_per_minute) {
        return Outcome::wait(w, "Too many requests", "rate_limit");
    }
    let canonical: Vec<String> = p.0.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let key = format!(
        "{path}?{}|{}",
        canonical.join("&"),
        token.as_deref().unwrap_or("")
    );
    if let Err(w) = st
        .fault_state
        .repeat_guard(key, now, faults.repeat_guard_secs)
    {
        let text = format!(
            "Same arguments in less than {} seconds",
            faults.repeat_guard_secs
        );
        return Outcome::wait(w, &text, "repeat_guard");
    }
    match route {
        None if api::PATHS.contains(&path) && action.is_empty() => {
            Outcome::api_error(ApiError::missing("action"))
        }
        None => Outcome::api_error(ApiError::new(
            2554,
            format!("Not implemented: no service for path {path} action={action:?}"),
        )),
        Some(Route::Token) => {
            let grace = faults
                .rotation_grace_secs
                .unwrap_or(crate::auth::ROTATION_GRACE_SECS);
            match oauth::requesttoken(
                &p,
                &shared.cfg,
                &mut st.auth,
                now,
                faults.shape_quirks,
                grace,
            ) {
                Ok((body, grant, userid)) => {
                    match grant {
                        oauth::Grant::Code => st.stats.code_exchanges += 1,
                        oauth::Grant::Refresh => st.stats.token_refreshes += 1,
                    }
                    success(api::Body::Value(body), Some(userid), faults.unknown_fields)
                }
                Err(e) => Outcome::api_error(e),
            }
        }
        Some(Route::Data(module, scope)) => {
            let Some(token) = token else {
                return Outcome::error(401, INVALID_TOKEN, None);
            };
            let (userid, granted) =
                match st
                    .auth
                    .authenticate(&token, now, faults.access_token_max_calls)
                {
                    Ok(v) => v,
                    Err(AuthFail::Invalid) => return Outcome::error(401, INVALID_TOKEN, None),
                    Err(AuthFail::MaxCalls) => {
                        return Outcome::error(401, INVALID_TOKEN, Some("access_token_max_calls"))
                    }
                };
            let result = if !api::has_scope(&granted, scope) {
                Err(ApiError::new(
                    277,
                    format!("Unauthorized: scope {scope} was not granted"),
                ))
            } else if let Some(user) = st.data.user(userid) {
                let opts = Opts {
                    no_modified: faults.no_modified,
                    ..Opts::new(
                        &shared.cfg,
                        faults.lying_more,
                        faults.shape_quirks,
                        now as i64,
                    )
                };
                let body = api::serve(module, user, &p, &opts);
                let body = if faults.rows_outside_window {
                    let end = p.int("enddate").ok().flatten();
                    body.map(|b| {
                        let mut v = b.into_value();
                        crate::faults::outside_window(module, end, &mut v);
                        api::Body::Value(v)
                    })
                } else {
                    body
                };
                if faults.keyless_rows {
                    body.map(|b| {
                        let mut v = b.into_value();
                        crate::faults::strip_keys(module, &mut v);
                        api::Body::Value(v)
                    })
                } else {
                    body
                }
            } else {
                Err(ApiError::new(401, INVALID_TOKEN))
            };
            let mut out = match result {
                Ok(body) => success(body, None, faults.unknown_fields),
                Err(e) => Outcome::api_error(e),
            };
            out.userid = Some(userid);
            out
        }
    }
}

/// A status-0 envelope around `body`.
fn success(body: api::Body, userid: Option<u64>, unknown_fields: bool) -> Outcome {
    let body = if unknown_fields {
        let mut v = body.into_value();
        api::add_unknown_fields(&mut v);
        v.to_string()
    } else {
        body.into_string()
    };
    Outcome {
        reply: Reply::json(format!("{{\"status\":0,\"body\":{body}}}")),
        status: 0,
        fault: None,
        userid,
    }
}

/// `GET /oauth2_user/authorize2`: not subject to API faults, but logged.
fn authorize(shared: &Shared, path: &str, params: BTreeMap<String, String>) -> Reply {
    let now = clock::now();
    let userids = shared.userids();
    let mut guard = shared.lock();
    let st: &mut State = &mut guard;
    st.seq += 1;
    let p = Params(params);
    let result = oauth::authorize(&p, &shared.cfg, &mut st.auth, &userids, now);
    let (reply, userid) = match result {
        Ok((location, userid)) => (
            Reply {
                http: 302,
                content_type: "text/html",
                body: String::new(),
                location: Some(location),
            },
            Some(userid),
        ),
        Err(text) => (
            Reply {
                http: 400,
                content_type: "text/html",
                body: format!("<html><body><h1>Error</h1><p>{text}</p></body></html>"),
                location: None,
            },
            None,
        ),
    };
    st.stats.record(RequestLog {
        seq: st.seq,
        at: now,
        path: path.to_string(),
        action: "authorize2".to_string(),
        params: redact(&p.0),
        userid,
        status: -1,
        http_status: reply.http,
        fault: None,
    });
    reply
}

async fn api_handler(
    axum::extract::State(shared): axum::extract::State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut params = BTreeMap::new();
    if let Some(q) = uri.query() {
        parse_urlencoded(q, &mut params);
    }
    if !body.is_empty() {
        parse_urlencoded(&String::from_utf8_lossy(&body), &mut params);
    }
    let path = uri.path().to_string();
    if path == "/oauth2_user/authorize2" {
        return authorize(&shared, &path, params).into_response();
    }
    let delay = shared.lock().faults.delay_ms;
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    process(&shared, &path, params, bearer(&headers)).into_response()
}

/// The whole HTTP surface: admin routes plus the API catch-all.
pub fn router(shared: Arc<Shared>) -> Router {
    admin::routes().fallback(api_handler).with_state(shared)
}

/// A running server thread.
pub struct Running {
    pub addr: SocketAddr,
    pub shutdown: tokio::sync::oneshot::Sender<()>,
    pub thread: JoinHandle<()>,
}

/// Resolves `host`, which must be a loopback address.
pub fn loopback(host: &str) -> Result<IpAddr, String> {
    let ip: IpAddr = if host == "localhost" {
        IpAddr::from([127, 0, 0, 1])
    } else {
        host.parse().map_err(|_| format!("invalid host {host:?}"))?
    };
    if ip.is_loopback() {
        Ok(ip)
    } else {
        Err(format!(
            "refusing to bind {host}: withings-sim binds loopback addresses only"
        ))
    }
}

/// Binds, then serves on a new thread with its own 2-worker runtime; returns once listening.
pub fn spawn(shared: Arc<Shared>, host: &str, port: u16) -> Result<Running, String> {
    let ip = loopback(host)?;
    let listener = std::net::TcpListener::bind((ip, port))
        .map_err(|e| format!("cannot bind {ip}:{port}: {e}"))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("cannot configure listener: {e}"))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("cannot read local address: {e}"))?;
    let (shutdown, stop) = tokio::sync::oneshot::channel::<()>();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
    let thread = std::thread::Builder::new()
        .name("withings-sim".to_string())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(format!("cannot start runtime: {e}")));
                    return;
                }
            };
            rt.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => l,
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("cannot register listener: {e}")));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(()));
                tokio::select! {
                    _ = axum::serve(listener, router(shared)) => {}
                    _ = stop => {}
                }
            });
            rt.shutdown_background();
        })
        .map_err(|e| format!("cannot spawn server thread: {e}"))?;
    ready_rx
        .recv()
        .map_err(|_| "server thread ended before listening".to_string())??;
    Ok(Running {
        addr,
        shutdown,
        thread,
    })
}
