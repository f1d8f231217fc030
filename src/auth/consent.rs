//! `tap-withings auth`: the consent flow (authorization URL, a loopback listener that serves
//! every connection on its own until this run's redirect comes, or a pasted redirect URL; the
//! code exchange), `--refresh` and `--status`. Every token reply is
//! written to the token store before anything else happens. No token ever reaches stdout,
//! stderr or the logs: a consent prints the config lines that point at the token store.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tracing::{info, warn};

use super::refresh::{self, debug_pause, parse_token_reply, store_reply, token_call_error};
use super::refresh::{App, TokenReply};
use super::roster::{self, Start};
use super::token_store::{self, fingerprint, StoredUser};
use crate::api::cancel::Cancel;
use crate::api::client::{ApiClient, CallError};
use crate::api::envelope::{ApiFailure, Endpoint, FailKind};
use crate::cli::{AuthArgs, Cli};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::secret::Secret;

/// Withings' consent page (fact sheet §2.1).
pub const AUTHORIZE_URL: &str = "https://account.withings.com/oauth2_user/authorize2";

/// Path of the consent page, appended to a loopback `api_url` (the simulator serves it there).
pub const AUTHORIZE_PATH: &str = "/oauth2_user/authorize2";

pub use super::refresh::{pause_point, DEBUG_PAUSE, DEBUG_PAUSE_VAR};

/// How long the loopback listener waits for the browser's redirect.
pub const LISTEN_TIMEOUT: Duration = Duration::from_secs(600);

/// The account host of the US medical cloud (`api_url` https://wbsapi.us.withingsmed.net).
pub const US_ACCOUNT_HOST: &str = "https://account.us.withingsmed.com";

/// The consent page for `api_url`: `{api_url}/oauth2_user/authorize2` when `api_url` is a
/// loopback address (withings-sim serves consent on the API listener), the US medical
/// cloud's account host for `*.us.withingsmed.net`, else Withings' account host.
pub fn authorize_base(api_url: &str) -> String {
    match Url::parse(api_url) {
        Ok(url) if url.host_str().is_some_and(is_loopback_host) => {
            format!("{}{AUTHORIZE_PATH}", api_url.trim_end_matches('/'))
        }
        // The US medical (HIPAA) cloud has its own account host (fact sheet §1).
        Ok(url)
            if url
                .host_str()
                .is_some_and(|h| h.ends_with(".us.withingsmed.net")) =>
        {
            format!("{US_ACCOUNT_HOST}{AUTHORIZE_PATH}")
        }
        _ => AUTHORIZE_URL.to_string(),
    }
}

/// The authorization URL: `response_type=code`, `client_id`, comma-separated `scope`,
/// `redirect_uri`, `state` and, for Withings' demo account, `mode=demo` (fact sheet §2.1:
/// a space-separated scope is wrong).
pub fn authorize_url(
    base: &str,
    client_id: &str,
    scopes: &[String],
    redirect_uri: &str,
    state: &str,
    demo: bool,
) -> String {
    let scope = scopes.join(",");
    let mut params = vec![
        ("response_type", "code"),
        ("client_id", client_id),
        ("scope", scope.as_str()),
        ("redirect_uri", redirect_uri),
        ("state", state),
    ];
    if demo {
        params.push(("mode", "demo"));
    }
    let query: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect();
    format!("{base}?{}", query.join("&"))
}

/// Percent-encodes a query value, keeping RFC 3986 unreserved characters and commas.
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b',' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub use crate::config::is_loopback_host;

/// Where to listen for the redirect: `redirect_uri` must be plain http on a loopback host with
/// an explicit port. `localhost` listens on 127.0.0.1 and on ::1 (a browser may resolve it to
/// either). Empty: the user pastes the URL.
pub fn listen_addrs(redirect_uri: &str) -> Vec<SocketAddr> {
    let Ok(url) = Url::parse(redirect_uri) else {
        return Vec::new();
    };
    let (Some(port), Some(host)) = (url.port(), url.host_str()) else {
        return Vec::new();
    };
    if url.scheme() != "http" {
        return Vec::new();
    }
    if host.eq_ignore_ascii_case("localhost") {
        return vec![
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port),
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), port),
        ];
    }
    match host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        Ok(ip) if ip.is_loopback() => vec![SocketAddr::new(ip, port)],
        _ => Vec::new(),
    }
}

/// Every address to listen on for `redirect_uri`: those of [`listen_addrs`] and, for a
/// `localhost` redirect, every loopback address the system resolves `localhost` to (a
/// browser may use any of them).
async fn listen_plan(redirect_uri: &str) -> Vec<SocketAddr> {
    let mut addrs = listen_addrs(redirect_uri);
    let localhost = Url::parse(redirect_uri)
        .ok()
        .and_then(|u| u.host_str().map(|h| h.eq_ignore_ascii_case("localhost")))
        .unwrap_or(false);
    if let Some(port) = addrs.first().map(SocketAddr::port).filter(|_| localhost) {
        // Bounded: a resolver that hangs on `localhost` leaves the two fixed addresses.
        let lookup = tokio::net::lookup_host(("localhost", port));
        if let Ok(Ok(resolved)) = tokio::time::timeout(Duration::from_secs(2), lookup).await {
            for addr in resolved {
                if addr.ip().is_loopback() && !addrs.contains(&addr) {
                    addrs.push(addr);
                } else if !addr.ip().is_loopback() {
                    warn!(%addr, "`localhost` resolves to an address that is not loopback; not listening there.");
                }
            }
        }
    }
    addrs
}

/// Whether this host has the address `ip` at all (a host without IPv6 has no ::1): nobody
/// can listen on an address the host does not have.
fn host_has(ip: IpAddr) -> bool {
    std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}

/// Binds every address, or fails naming the one that cannot be bound (another program
/// holding it would receive the code). Only an address this host does not have is skipped.
async fn bind_all(addrs: &[SocketAddr]) -> Result<Vec<TcpListener>> {
    let mut listeners = Vec::new();
    for addr in addrs {
        match TcpListener::bind(addr).await {
            Ok(l) => listeners.push(l),
            Err(e) if addrs.len() > 1 && !host_has(addr.ip()) => {
                tracing::debug!(%addr, error = %e, "This host has no such address; not listening there.");
            }
            Err(e) => {
                return Err(Error::io(
                    format!(
                    "cannot listen on {addr} for the redirect{} (free the port or use --no-listen)",
                    if addrs.len() > 1 {
                        ", one of the addresses a browser may use for `localhost`"
                    } else {
                        ""
                    }
                ),
                    e,
                ))
            }
        }
    }
    if listeners.is_empty() && !addrs.is_empty() {
        return Err(Error::Io(format!(
            "cannot listen on any of {} for the redirect: use --no-listen",
            addrs
                .iter()
                .map(SocketAddr::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    Ok(listeners)
}

/// What a redirect to `redirect_uri` carried.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Redirect {
    /// The path of the redirect (to tell the callback from a browser's other requests).
    pub path: String,
    pub code: Option<String>,
    pub state: Option<String>,
    pub error: Option<String>,
}

/// Parses a redirect: a full URL (pasted), a request target (`/callback?code=..`) or a bare
/// query (`code=..&state=..`).
pub fn parse_redirect(text: &str) -> std::result::Result<Redirect, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("the redirect URL is empty".into());
    }
    let url = if text.contains("://") {
        Url::parse(text).map_err(|e| format!("cannot parse the redirect URL: {e}"))?
    } else {
        let base = Url::parse("http://127.0.0.1/").map_err(|e| e.to_string())?;
        let target = if text.starts_with('/') || text.starts_with('?') {
            text.to_string()
        } else {
            format!("/?{text}")
        };
        base.join(&target)
            .map_err(|e| format!("cannot parse the redirect URL: {e}"))?
    };
    let mut redirect = Redirect {
        path: url.path().to_string(),
        ..Redirect::default()
    };
    for (k, v) in url.query_pairs() {
        let slot = match k.as_ref() {
            "code" => &mut redirect.code,
            "state" => &mut redirect.state,
            "error" => &mut redirect.error,
            _ => continue,
        };
        if slot.is_none() {
            *slot = Some(v.into_owned()).filter(|v| !v.is_empty());
        }
    }
    Ok(redirect)
}

/// The code of a redirect whose `state` is this run's; a refusal or a wrong state is an error.
pub fn check_redirect(redirect: &Redirect, expected_state: &str) -> Result<String> {
    if redirect.state.as_deref() != Some(expected_state) {
        return Err(Error::Auth(
            "the redirect's state does not match this run's (a stale or forged redirect): run `tap-withings auth` again and use the new URL"
                .into(),
        ));
    }
    if let Some(error) = &redirect.error {
        let error = crate::secret::redact::server_text(error);
        return Err(Error::Auth(format!(
            "Withings did not grant access ({error}): run `tap-withings auth` again"
        )));
    }
    redirect.code.clone().ok_or_else(|| {
        Error::Auth("the redirect has no `code`: run `tap-withings auth` again".into())
    })
}

/// A random `state` (128 bits, hex).
fn random_state() -> Result<String> {
    let mut bytes = [0u8; 16];
    getrandom::getrandom(&mut bytes).map_err(|e| Error::io("cannot draw a random state", e))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn rfc3339(epoch: i64) -> String {
    chrono::DateTime::from_timestamp(epoch, 0).map_or_else(
        || epoch.to_string(),
        |d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    )
}

fn split_scopes(scope: &str) -> Vec<String> {
    scope
        .split([',', ' '])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// Runs `tap-withings auth` (consent, `--refresh` or `--status`); `input` is where a pasted
/// redirect URL is read from (stdin).
pub async fn run<W, R>(
    cli: &Cli,
    args: &AuthArgs,
    env: &BTreeMap<String, String>,
    mut stdout: W,
    input: R,
    cancel: Cancel,
) -> Result<()>
where
    W: Write,
    R: BufRead + Send + 'static,
{
    // Meltano passes --catalog and --state to every invocation: they are ignored here, as
    // discovery ignores them.
    if cli.discover || cli.about || cli.test.is_some() {
        return Err(Error::Usage(
            "`tap-withings auth` takes only --config and its own flags (not --discover, --about or --test)".into(),
        ));
    }
    let now = cancel.clock().now();
    let cfg = crate::load_raw_config(cli, env)?.validate(env, now)?;
    let result = if args.status {
        status(&cfg, now.timestamp())?
    } else if args.refresh {
        let client = ApiClient::new(&cfg, cancel)?;
        refresh(&cfg, &client, env, args.user).await?
    } else {
        let client = ApiClient::new(&cfg, cancel.clone())?;
        consent(&cfg, &client, args, env, input, &cancel).await?
    };
    serde_json::to_writer_pretty(&mut stdout, &result)
        .map_err(|e| Error::io("cannot write to stdout", e))?;
    writeln!(stdout)
        .and_then(|_| stdout.flush())
        .map_err(|e| Error::io("cannot write to stdout", e))
}

async fn consent<R: BufRead + Send + 'static>(
    cfg: &Config,
    client: &ApiClient,
    args: &AuthArgs,
    env: &BTreeMap<String, String>,
    input: R,
    cancel: &Cancel,
) -> Result<Value> {
    let redirect_uri = cfg.redirect_uri.clone().ok_or_else(|| {
        Error::input(
            "setting `redirect_uri` is required by `tap-withings auth`: the callback URL registered for your Withings app (a loopback URL such as http://127.0.0.1:8765/callback is received by the tap itself)",
        )
    })?;
    if cfg.scopes.is_empty() {
        return Err(Error::input(
            "setting `scopes` is empty: list the OAuth scopes to ask for, comma-separated (default user.info,user.metrics,user.activity,user.sleepevents)",
        ));
    }
    let state = random_state()?;
    let url = authorize_url(
        &authorize_base(&cfg.api_url),
        &cfg.client_id,
        &cfg.scopes,
        &redirect_uri,
        &state,
        args.demo,
    );
    let listen = if args.no_listen {
        Vec::new()
    } else {
        listen_plan(&redirect_uri).await
    };
    // Bind before showing the URL, so the redirect cannot arrive before the listener.
    let listeners = bind_all(&listen).await?;
    eprintln!(
        "Open this URL in a browser and allow access{}:",
        if args.demo {
            " (Withings demo account)"
        } else {
            ""
        }
    );
    eprintln!("  {url}");
    let wait = async {
        if listeners.is_empty() {
            eprintln!("Then paste here the full URL your browser was sent to (it starts with {redirect_uri}) and press Enter:");
            check_redirect(&read_pasted(input).await?, &state)
        } else {
            eprintln!("Waiting for the redirect to {redirect_uri} ...");
            receive_redirect(listeners, &redirect_uri, &state).await
        }
    };
    let code = tokio::select! {
        code = wait => code?,
        _ = cancel.cancelled() => {
            return Err(Error::Auth("interrupted while waiting for the redirect: nothing was stored".into()))
        }
    };
    // A secret from now on: a code-exchange error that echoes it is redacted.
    crate::secret::redact::register(&code);
    // Codes live 30 s: exchange at once, before anything else.
    let reply = exchange_code(cfg, client, &code, &redirect_uri).await?;
    debug_pause(pause_point(env), "token_reply").await;
    let stored = {
        let _store_lock = token_store::lock(&cfg.token_store).await?;
        store_reply(
            &cfg.token_store,
            &reply,
            fingerprint(&reply.refresh_token),
            client.clock().now().timestamp(),
        )?
    };
    debug_pause(pause_point(env), "store_written").await;
    let granted = split_scopes(&reply.scope);
    let missing: Vec<&str> = cfg
        .scopes
        .iter()
        .map(String::as_str)
        .filter(|s| !granted.iter().any(|g| g == s))
        .collect();
    info!(
        userid = reply.userid,
        scope = reply.scope,
        "Linked the Withings account and stored its tokens."
    );
    if cfg.refresh_token.is_some() {
        eprintln!(
            "tap-withings: the `refresh_token` setting holds an older token: remove it from the config, the token store holds this consent's tokens"
        );
    }
    if !missing.is_empty() {
        eprintln!(
            "tap-withings: user {} did not grant {}; streams that need it will fail",
            reply.userid,
            missing.join(", ")
        );
    }
    eprintln!(
        "tap-withings: linked Withings user {} (scopes {}); tokens stored in {}. Put the `config` lines printed on stdout in your config (with your client_secret) and keep the token store",
        reply.userid,
        granted.join(","),
        cfg.token_store.display()
    );
    Ok(json!({
        "userid": reply.userid,
        "scopes": granted,
        "access_token_expires_at": rfc3339(stored.expires_at),
        "token_store": cfg.token_store.display().to_string(),
        "config": config_lines(cfg),
    }))
}

/// The settings a sync of the linked user needs, the client secret and tokens excepted: the
/// tokens are in the token store, the secret is the user's to supply.
fn config_lines(cfg: &Config) -> Value {
    let mut lines = json!({
        "client_id": cfg.client_id,
        "token_store": cfg.token_store.display().to_string(),
    });
    if cfg.api_url.trim_end_matches('/') != crate::config::DEFAULT_API_URL {
        lines["api_url"] = json!(cfg.api_url);
    }
    lines
}

/// Reads the first non-blank line of `input` as the pasted redirect URL.
async fn read_pasted<R: BufRead + Send + 'static>(mut input: R) -> Result<Redirect> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    // A detached thread, not `spawn_blocking`: the runtime's shutdown would wait for a blocked
    // read of stdin after Ctrl-C; the process exit does not.
    std::thread::spawn(move || {
        let mut line = String::new();
        let read = loop {
            line.clear();
            match input.read_line(&mut line) {
                Ok(0) => break Ok(None),
                Ok(_) if !line.trim().is_empty() => break Ok(Some(line)),
                Ok(_) => {}
                Err(e) => break Err(e),
            }
        };
        let _ = tx.send(read);
    });
    let line = rx
        .await
        .map_err(|e| Error::io("cannot read stdin", e))?
        .map_err(|e| Error::io("cannot read stdin", e))?
        .ok_or_else(|| {
            Error::input("no redirect URL on stdin: paste the URL your browser was sent to")
        })?;
    parse_redirect(&line).map_err(Error::Input)
}

const SUCCESS_PAGE: &str = "<!doctype html><html><head><meta charset=\"utf-8\"><title>tap-withings</title></head><body><h1>Access granted</h1><p>tap-withings received the authorization. You can close this tab.</p></body></html>";
const FAILURE_PAGE: &str = "<!doctype html><html><head><meta charset=\"utf-8\"><title>tap-withings</title></head><body><h1>Authorization failed</h1><p>See the terminal where <code>tap-withings auth</code> runs, and run it again.</p></body></html>";
const STALE_PAGE: &str = "<!doctype html><html><head><meta charset=\"utf-8\"><title>tap-withings</title></head><body><h1>Authorization failed</h1><p>This redirect is not the one the running <code>tap-withings auth</code> waits for (its state does not match): open the URL it printed.</p></body></html>";
const WAITING_PAGE: &str = "<!doctype html><html><head><meta charset=\"utf-8\"><title>tap-withings</title></head><body><p>tap-withings is waiting for the Withings redirect here.</p></body></html>";

/// What a request to the listener is.
#[derive(Debug, PartialEq, Eq)]
enum Judged {
    /// Not the callback (a favicon, a probe): 404, keep waiting.
    Elsewhere,
    /// The callback path with another state (a stale tab or a forged request): 400, keep
    /// waiting for the real redirect.
    WrongState,
    /// The redirect of this run: its code, or why there is none (access denied).
    Redirect(std::result::Result<String, String>),
}

/// Judges the request target of one connection (pure).
fn judge(target: &str, expected_path: &str, state: &str) -> Judged {
    let redirect = match parse_redirect(target) {
        Ok(r)
            if r.path == expected_path
                && (r.code.is_some() || r.state.is_some() || r.error.is_some()) =>
        {
            r
        }
        _ => return Judged::Elsewhere,
    };
    if redirect.state.as_deref() != Some(state) {
        return Judged::WrongState;
    }
    Judged::Redirect(check_redirect(&redirect, state).map_err(|e| e.to_string()))
}

/// How long one connection may take to send its request head: an idle or slow connection
/// is dropped after this, and never delays another (each has its own task).
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves the listeners until the browser brings this run's redirect, or [`LISTEN_TIMEOUT`]:
/// every connection in its own task, answered with a short page. Other paths get a 404 and
/// a request on the callback path with another state a 400; the listener keeps waiting.
async fn receive_redirect(
    listeners: Vec<TcpListener>,
    redirect_uri: &str,
    state: &str,
) -> Result<String> {
    let expected_path: Arc<str> = Url::parse(redirect_uri)
        .map(|u| u.path().to_string())
        .unwrap_or_else(|_| "/".into())
        .into();
    let state: Arc<str> = state.into();
    let (tx, mut verdicts) = tokio::sync::mpsc::channel(1);
    // One accepting task per listener (127.0.0.1 and ::1 for `localhost`); they and their
    // connections end with the set, when this returns.
    let mut accepting = tokio::task::JoinSet::new();
    for listener in listeners {
        accepting.spawn(accept(
            listener,
            Arc::clone(&expected_path),
            Arc::clone(&state),
            tx.clone(),
        ));
    }
    drop(tx);
    match tokio::time::timeout(LISTEN_TIMEOUT, verdicts.recv()).await {
        Err(_) => Err(Error::Auth(format!(
            "no redirect reached {redirect_uri} within {} s: run `tap-withings auth` again",
            LISTEN_TIMEOUT.as_secs()
        ))),
        Ok(None) => Err(Error::Auth(format!(
            "the listener for {redirect_uri} stopped: run `tap-withings auth` again"
        ))),
        Ok(Some(Ok(code))) => Ok(code),
        Ok(Some(Err(why))) => Err(Error::Auth(why)),
    }
}

type Verdicts = tokio::sync::mpsc::Sender<std::result::Result<String, String>>;

/// Accepts connections on one listener, a task each, until the redirect has come.
async fn accept(listener: TcpListener, path: Arc<str>, state: Arc<str>, tx: Verdicts) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = tx.closed() => break,
        };
        match accepted {
            Ok((stream, _)) => {
                connections.spawn(serve(
                    stream,
                    Arc::clone(&path),
                    Arc::clone(&state),
                    tx.clone(),
                ));
            }
            Err(e) => {
                // Out of file descriptors (many connections at once) or a connection reset
                // before it was accepted: the listener stays, the next accept may work.
                tracing::debug!(error = %e, "Cannot accept a connection.");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        while connections.try_join_next().is_some() {}
    }
}

/// One connection: reads its request (within [`CONNECTION_TIMEOUT`]), answers it, and
/// passes this run's redirect on (after the browser has its page).
async fn serve(mut stream: TcpStream, path: Arc<str>, state: Arc<str>, tx: Verdicts) {
    let Some(target) = read_request_target(&mut stream).await else {
        return;
    };
    match judge(&target, &path, &state) {
        Judged::Elsewhere => respond(&mut stream, "404 Not Found", WAITING_PAGE).await,
        Judged::WrongState => {
            warn!("A request on the redirect path carried another state (a stale tab or a forged request); answered 400 and still waiting for the redirect.");
            respond(&mut stream, "400 Bad Request", STALE_PAGE).await;
        }
        Judged::Redirect(verdict) => {
            let (status, page) = match &verdict {
                Ok(_) => ("200 OK", SUCCESS_PAGE),
                Err(_) => ("400 Bad Request", FAILURE_PAGE),
            };
            respond(&mut stream, status, page).await;
            let _ = tx.send(verdict).await;
        }
    }
}

/// The request target of an HTTP request line (`GET /callback?code=.. HTTP/1.1`), read
/// within [`CONNECTION_TIMEOUT`].
async fn read_request_target(stream: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::with_capacity(1024);
    let read = async {
        let mut chunk = [0u8; 1024];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 16 * 1024 {
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        Some(())
    };
    tokio::time::timeout(CONNECTION_TIMEOUT, read)
        .await
        .ok()??;
    let head = String::from_utf8_lossy(&buf);
    let mut words = head.lines().next()?.split_whitespace();
    match (words.next(), words.next()) {
        (Some("GET"), Some(target)) => Some(target.to_string()),
        _ => None,
    }
}

async fn respond(stream: &mut TcpStream, status: &str, page: &str) {
    let reply = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n{page}",
        page.len()
    );
    // The browser page is a courtesy: the terminal has the outcome even if this write fails.
    let _ = stream.write_all(reply.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// Exchanges a code for tokens (grant_type=authorization_code); a refused code is an
/// [`Error::Auth`] that says to start again quickly (codes live 30 s and work once).
async fn exchange_code(
    cfg: &Config,
    client: &ApiClient,
    code: &str,
    redirect_uri: &str,
) -> Result<TokenReply> {
    let params = [
        ("action", "requesttoken".to_string()),
        ("grant_type", "authorization_code".to_string()),
        ("client_id", cfg.client_id.clone()),
        ("client_secret", cfg.client_secret.expose().to_string()),
        ("code", code.to_string()),
        ("redirect_uri", redirect_uri.to_string()),
    ];
    let body = client.request("/v2/oauth2", &params, None, Endpoint::Token).await.map_err(|e| match e {
        CallError::Failed(ApiFailure { kind: FailKind::Auth, status, message }) => Error::Auth(format!(
            "Withings refused the authorization code (status {status}: {message}); codes work once and live 30 seconds: run `tap-withings auth` again and finish the consent quickly"
        )),
        other => token_call_error("the code exchange", other),
    })?;
    parse_token_reply(&body).map_err(|why| Error::Api(format!("the code exchange failed: {why}")))
}

/// One refresh to do: the token store, the user (once known), the refresh token and the
/// chain it belongs to.
struct Target {
    label: String,
    store: PathBuf,
    userid: Option<i64>,
    refresh_token: Secret,
    seeded_from: String,
}

/// Every token store of the config: the main one, then those of `users` entries.
fn stores(cfg: &Config) -> Vec<PathBuf> {
    let mut stores = vec![cfg.token_store.clone()];
    for user in &cfg.users {
        if let Some(store) = &user.token_store {
            if !stores.contains(store) {
                stores.push(store.clone());
            }
        }
    }
    stores
}

/// Which tokens `--refresh` rotates, as a sync picks them (see [`roster::plan`]): configured
/// tokens no stored chain knows first, then one stored chain per user; with `--user`, only
/// that user. Also the entries that cannot be used.
fn refresh_targets(plan: roster::Plan, user: Option<i64>) -> (Vec<Target>, Vec<(String, Error)>) {
    let mut targets: Vec<Target> = plan
        .users
        .into_iter()
        .map(|p| match p.start {
            Start::Stored(u) => Target {
                label: p.label,
                store: p.store,
                userid: Some(u.userid),
                refresh_token: Secret::new(u.refresh_token),
                seeded_from: u.seeded_from,
            },
            Start::Seed {
                refresh,
                fingerprint,
            } => Target {
                label: p.label,
                store: p.store,
                userid: None,
                refresh_token: refresh,
                seeded_from: fingerprint,
            },
        })
        .collect();
    if let Some(id) = user {
        targets.retain(|t| t.userid == Some(id));
    }
    let failures = if user.is_some() {
        Vec::new()
    } else {
        plan.failures
    };
    (targets, failures)
}

/// `auth --refresh`: rotates each target's tokens, storing every reply before going on; a
/// refused user (or an unusable `users` entry) does not stop the others.
async fn refresh(
    cfg: &Config,
    client: &ApiClient,
    env: &BTreeMap<String, String>,
    user: Option<i64>,
) -> Result<Value> {
    let (targets, mut failed) = refresh_targets(roster::plan(cfg, token_store::load), user);
    if targets.is_empty() && failed.is_empty() {
        return Err(Error::Auth(match user {
            Some(id) => format!("user {id} is in no token store of this config: run `tap-withings auth` to link it"),
            None => format!(
                "no refresh token: token store {} is empty and `refresh_token` is not set; run `tap-withings auth` first",
                cfg.token_store.display()
            ),
        }));
    }
    for (who, e) in &failed {
        warn!(user = who, error = %e, "Cannot refresh this user.");
    }
    let mut refreshed = Vec::new();
    // The users refreshed so far and the store each one's tokens went to.
    let mut done: BTreeMap<i64, PathBuf> = BTreeMap::new();
    for target in targets {
        // Configured tokens no store knows come first: a stored chain of a user one of them
        // turned out to be is older, and left alone.
        if target.userid.is_some_and(|id| done.contains_key(&id)) {
            continue;
        }
        let who = target
            .userid
            .map_or_else(|| target.label.clone(), |u| format!("user {u}"));
        match refresh_one(cfg, client, env, &target, &done).await {
            Ok(Refreshed::Stored(stored)) => {
                done.insert(stored.userid, target.store.clone());
                info!(
                    userid = stored.userid,
                    expires_at = stored.expires_at,
                    "Refreshed the access token and stored the rotated refresh token."
                );
                eprintln!(
                    "tap-withings: refreshed user {}; access token valid until {}",
                    stored.userid,
                    rfc3339(stored.expires_at)
                );
                refreshed.push(json!({
                    "userid": stored.userid,
                    "scopes": split_scopes(&stored.scope),
                    "access_token_expires_at": rfc3339(stored.expires_at),
                    "token_store": target.store.display().to_string(),
                }));
            }
            Ok(Refreshed::Duplicate(userid)) => {
                warn!(
                    userid,
                    "Two configured tokens belong to the same user; the second is left as is."
                );
            }
            Err(Error::Interrupted) => return Err(Error::Interrupted),
            Err(e) => {
                warn!(user = who, error = %e, "Token refresh failed.");
                failed.push((who, e));
            }
        }
    }
    match failed.len() {
        0 => Ok(json!({"refreshed": refreshed})),
        1 if refreshed.is_empty() => Err(failed.remove(0).1),
        _ => Err(Error::Auth(format!(
            "the refresh failed for {}; run `tap-withings auth` again for them (details above)",
            failed
                .iter()
                .map(|(who, _)| who.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// What a refresh did.
enum Refreshed {
    Stored(StoredUser),
    /// A configured token of a user refreshed already: its reply is not stored (its access
    /// token is never used, so the token stays valid) and it is noted as superseded.
    Duplicate(i64),
}

async fn refresh_one(
    cfg: &Config,
    client: &ApiClient,
    env: &BTreeMap<String, String>,
    target: &Target,
    done: &BTreeMap<i64, PathBuf>,
) -> Result<Refreshed> {
    // Held from re-reading the store, across the token call, through the new store's rename.
    let _store_lock = token_store::lock(&target.store).await?;
    // A chain another process rotated since the roster read it: rotate the stored token.
    let mut refresh_token = target.refresh_token.clone();
    if let Some(u) = token_store::rotated_elsewhere(
        &token_store::load(&target.store)?,
        target.userid,
        &target.seeded_from,
        refresh_token.expose(),
    ) {
        info!(
            userid = u.userid,
            "Another process rotated this user's refresh token; refreshing the stored one."
        );
        refresh_token = Secret::new(u.refresh_token);
    }
    let app = App {
        client_id: &cfg.client_id,
        client_secret: &cfg.client_secret,
    };
    let reply = refresh::rotate(client, app, &refresh_token, target.userid, &target.store).await?;
    if let Some(store) = done.get(&reply.userid) {
        // Another store than the one locked above (one process holds each lock once).
        let _other = match store != &target.store {
            true => Some(token_store::lock(store).await?),
            false => None,
        };
        let mut file = token_store::load(store)?;
        if file.supersede(reply.userid, &target.seeded_from) {
            token_store::save(store, &file)?;
        }
        return Ok(Refreshed::Duplicate(reply.userid));
    }
    debug_pause(pause_point(env), "token_reply").await;
    let stored = store_reply(
        &target.store,
        &reply,
        target.seeded_from.clone(),
        client.clock().now().timestamp(),
    )?;
    debug_pause(pause_point(env), "store_written").await;
    Ok(Refreshed::Stored(stored))
}

/// `auth --status`: per token store and stored user, the userid, scopes, access-token expiry
/// and last update.
fn status(cfg: &Config, now: i64) -> Result<Value> {
    let mut configured: Vec<&str> = cfg.refresh_token.iter().map(|rt| rt.expose()).collect();
    configured.extend(
        cfg.users
            .iter()
            .filter_map(|u| u.refresh_token.as_ref())
            .map(|rt| rt.expose()),
    );
    let mut out = Vec::new();
    for store in stores(cfg) {
        let file = token_store::load(&store)?;
        let users: Vec<Value> = file
            .users
            .values()
            .map(|u| {
                json!({
                    "userid": u.userid,
                    "scopes": split_scopes(&u.scope),
                    "access_token_expires_at": rfc3339(u.expires_at),
                    "access_token_expired": u.expires_at <= now,
                    "updated_at": rfc3339(u.updated_at),
                    "from_configured_refresh_token": configured.iter().any(|rt| u.grew_from(rt)),
                })
            })
            .collect();
        if users.is_empty() {
            eprintln!(
                "tap-withings: token store {} holds no users; run `tap-withings auth` to link one",
                store.display()
            );
        }
        out.push(json!({"token_store": store.display().to_string(), "users": users}));
    }
    Ok(json!({"token_stores": out}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::token_store::TokenFile;
    use pretty_assertions::assert_eq;
    use std::path::Path;

    fn scopes(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn authorize_url_has_every_parameter_with_comma_separated_scopes() {
        let url = authorize_url(
            AUTHORIZE_URL,
            "cid",
            &scopes(&["user.info", "user.metrics"]),
            "https://x.example/cb?a=1",
            "s1",
            false,
        );
        assert_eq!(
            url,
            "https://account.withings.com/oauth2_user/authorize2?response_type=code&client_id=cid&scope=user.info,user.metrics&redirect_uri=https%3A%2F%2Fx.example%2Fcb%3Fa%3D1&state=s1"
        );
        let demo = authorize_url(
            "http://127.0.0.1:9/oauth2_user/authorize2",
            "c d",
            &scopes(&["user.info"]),
            "http://127.0.0.1:8/",
            "s",
            true,
        );
        assert!(demo.ends_with("&state=s&mode=demo"), "{demo}");
        assert!(demo.contains("client_id=c%20d&"), "{demo}");
    }

    #[test]
    fn the_consent_page_follows_a_loopback_api_url_only() {
        let cases = [
            (
                "http://127.0.0.1:4567",
                "http://127.0.0.1:4567/oauth2_user/authorize2",
            ),
            (
                "http://localhost:1/",
                "http://localhost:1/oauth2_user/authorize2",
            ),
            ("http://[::1]:80", "http://[::1]:80/oauth2_user/authorize2"),
            ("https://wbsapi.withings.net", AUTHORIZE_URL),
            (
                "https://wbsapi.us.withingsmed.net",
                "https://account.us.withingsmed.com/oauth2_user/authorize2",
            ),
            (
                "https://staging-wbsapi.us.withingsmed.net",
                "https://account.us.withingsmed.com/oauth2_user/authorize2",
            ),
            ("not a url", AUTHORIZE_URL),
        ];
        for (api, expected) in cases {
            assert_eq!(authorize_base(api), expected, "{api}");
        }
    }

    #[test]
    fn only_loopback_http_redirects_with_a_port_are_listened_for() {
        let cases: [(&str, &[&str]); 11] = [
            ("http://127.0.0.1:8765/callback", &["127.0.0.1:8765"]),
            (
                "http://localhost:8765/cb",
                &["127.0.0.1:8765", "[::1]:8765"],
            ),
            ("http://LOCALHOST:1", &["127.0.0.1:1", "[::1]:1"]),
            ("http://[::1]:9000/", &["[::1]:9000"]),
            ("http://127.5.0.1:9000/", &["127.5.0.1:9000"]),
            ("http://127.0.0.1/callback", &[]),
            ("https://127.0.0.1:8765/callback", &[]),
            ("http://10.0.0.1:8765/", &[]),
            ("http://example.com:8765/", &[]),
            ("https://example.com/withings", &[]),
            ("garbage", &[]),
        ];
        for (uri, expected) in cases {
            let got: Vec<String> = listen_addrs(uri).iter().map(|a| a.to_string()).collect();
            assert_eq!(got, expected, "{uri}");
        }
        for host in ["localhost", "127.0.0.1", "::1", "[::1]", "127.1.2.3"] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in ["10.0.0.1", "example.com", "::2", ""] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }

    fn redirect(
        path: &str,
        code: Option<&str>,
        state: Option<&str>,
        error: Option<&str>,
    ) -> Redirect {
        let s = |v: Option<&str>| v.map(str::to_string);
        Redirect {
            path: path.into(),
            code: s(code),
            state: s(state),
            error: s(error),
        }
    }

    #[test]
    fn redirects_parse_from_urls_request_targets_and_bare_queries() {
        let cases = [
            (
                "https://x.example/cb?code=abc&state=s1",
                redirect("/cb", Some("abc"), Some("s1"), None),
            ),
            (
                "  http://127.0.0.1:8/cb?state=s%201&code=a%2Bb&x=1\n",
                redirect("/cb", Some("a+b"), Some("s 1"), None),
            ),
            (
                "/callback?code=c&state=s",
                redirect("/callback", Some("c"), Some("s"), None),
            ),
            ("code=c&state=s", redirect("/", Some("c"), Some("s"), None)),
            (
                "/cb?error=access_denied&state=s",
                redirect("/cb", None, Some("s"), Some("access_denied")),
            ),
            ("/favicon.ico", redirect("/favicon.ico", None, None, None)),
            ("/cb?code=&state=s", redirect("/cb", None, Some("s"), None)),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_redirect(text).unwrap(), expected, "{text}");
        }
        assert!(parse_redirect("  ").is_err());
        assert!(parse_redirect("http://[bad").is_err());
    }

    #[test]
    fn a_redirect_gives_its_code_only_with_this_runs_state() {
        assert_eq!(
            check_redirect(&redirect("/", Some("c"), Some("s"), None), "s").unwrap(),
            "c"
        );
        let cases = [
            (
                redirect("/", Some("c"), Some("other"), None),
                "state does not match",
            ),
            (redirect("/", Some("c"), None, None), "state does not match"),
            (
                redirect("/", None, Some("s"), Some("access_denied")),
                "did not grant access (access_denied)",
            ),
            (redirect("/", None, Some("s"), None), "has no `code`"),
            // A hostile `error` cannot start a line of its own.
            (
                redirect("/", None, Some("s"), Some("denied\nERROR forged\u{1b}[2K")),
                "did not grant access (denied\\nERROR forged\\u{1b}[2K)",
            ),
        ];
        for (r, expected) in cases {
            let err = check_redirect(&r, "s").unwrap_err();
            assert!(matches!(err, Error::Auth(_)));
            let text = err.to_string();
            assert!(
                text.contains(expected)
                    && text.contains("tap-withings auth")
                    && !text.contains('\n'),
                "{text}"
            );
        }
    }

    fn stored(userid: i64, refresh: &str, seeded_from: &str) -> StoredUser {
        StoredUser {
            userid,
            access_token: format!("a{userid}"),
            refresh_token: refresh.into(),
            expires_at: 0,
            scope: String::new(),
            updated_at: 0,
            seeded_from: seeded_from.into(),
            previous_seeds: Vec::new(),
        }
    }

    fn config(settings: &str) -> Config {
        let mut raw = crate::config::RawConfig::default();
        raw.add_file("c.json", settings).unwrap();
        raw.validate(&BTreeMap::new(), chrono::Utc::now()).unwrap()
    }

    #[test]
    fn refresh_targets_are_the_unknown_configured_tokens_then_each_stored_user_once() {
        let cfg = config(
            r#"{"client_id": "i", "client_secret": "s", "refresh_token": "cfg", "token_store": "/t.json", "users": [{"refresh_token": "new-consent"}, {"token_store": "/empty.json"}]}"#,
        );
        let mut file = TokenFile::default();
        for u in [
            stored(1, "r1", &fingerprint("cfg")),
            stored(2, "r2", &fingerprint("old")),
            stored(3, "r3", ""),
        ] {
            file.put(u);
        }
        let load = |p: &Path| {
            Ok(if p == Path::new("/t.json") {
                file.clone()
            } else {
                TokenFile::default()
            })
        };
        let summary = |user: Option<i64>| -> (Vec<(Option<i64>, String)>, Vec<String>) {
            let (targets, failures) = refresh_targets(roster::plan(&cfg, load), user);
            (
                targets
                    .into_iter()
                    .map(|t| (t.userid, t.refresh_token.expose().to_string()))
                    .collect(),
                failures.into_iter().map(|(who, _)| who).collect(),
            )
        };
        assert_eq!(
            summary(None),
            (
                vec![
                    (None, "new-consent".into()),
                    (Some(1), "r1".into()),
                    (Some(2), "r2".into()),
                    (Some(3), "r3".into())
                ],
                vec!["users[1]".to_string()]
            )
        );
        assert_eq!(summary(Some(3)), (vec![(Some(3), "r3".into())], vec![]));
        assert!(summary(Some(9)).0.is_empty());
        let none = config(r#"{"client_id": "i", "client_secret": "s", "token_store": "/t.json"}"#);
        let (targets, failures) =
            refresh_targets(roster::plan(&none, |_| Ok(TokenFile::default())), None);
        assert!(targets.is_empty() && failures.is_empty());
    }

    #[test]
    fn the_listener_waits_through_other_paths_and_other_states_for_this_runs_redirect() {
        let cases = [
            ("/favicon.ico", Judged::Elsewhere),
            ("/cb", Judged::Elsewhere),
            ("/other?code=c&state=s", Judged::Elsewhere),
            ("/cb?code=c&state=forged", Judged::WrongState),
            ("/cb?code=c", Judged::WrongState),
            ("/cb?error=access_denied", Judged::WrongState),
            ("/cb?code=c&state=s", Judged::Redirect(Ok("c".into()))),
        ];
        for (target, expected) in cases {
            assert_eq!(judge(target, "/cb", "s"), expected, "{target}");
        }
        let Judged::Redirect(Err(why)) = judge("/cb?error=access_denied&state=s", "/cb", "s")
        else {
            panic!("a refusal with this run's state ends the wait")
        };
        assert!(why.contains("did not grant access"), "{why}");
    }

    #[test]
    fn the_host_has_its_ipv4_loopback_and_not_a_foreign_address() {
        assert!(host_has(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        assert!(
            !host_has("192.0.2.1".parse().unwrap()),
            "TEST-NET-1 is nobody's"
        );
    }

    #[test]
    fn states_are_random_hex() {
        let (a, b) = (random_state().unwrap(), random_state().unwrap());
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
