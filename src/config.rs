//! Settings: the `SETTINGS` table (what `--about` publishes), merging `--config` files and
//! `TAP_WITHINGS_*` environment variables into a raw JSON map, and validating that map into a
//! [`Config`]. Pure: files are read by the caller, the environment and `now` are arguments.

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::secret::Secret;

/// The JSON type of a setting, as published in `--about`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    String,
    Integer,
    Number,
    Boolean,
    DateTime,
    Array,
    Object,
}

/// One setting of the tap.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    pub name: &'static str,
    pub kind: Kind,
    pub secret: bool,
    pub required: bool,
    pub default: Option<&'static str>,
    pub description: &'static str,
}

const fn setting(
    name: &'static str,
    kind: Kind,
    default: Option<&'static str>,
    description: &'static str,
) -> Setting {
    Setting {
        name,
        kind,
        secret: false,
        required: false,
        default,
        description,
    }
}

/// The default API root (the EU/public cloud).
pub const DEFAULT_API_URL: &str = "https://wbsapi.withings.net";
/// The default `start_date`: the first Withings devices shipped in 2009.
pub const DEFAULT_START_DATE: &str = "2009-01-01T00:00:00Z";

/// Every setting the tap accepts, in `--about` order.
pub const SETTINGS: &[Setting] = &[
    Setting {
        required: true,
        ..setting("client_id", Kind::String, None, "Client ID of your Withings developer app.")
    },
    Setting {
        secret: true,
        required: true,
        ..setting("client_secret", Kind::String, None, "Client secret of your Withings developer app.")
    },
    Setting {
        secret: true,
        ..setting(
            "refresh_token",
            Kind::String,
            None,
            "A user's refresh token obtained elsewhere; not needed after `tap-withings auth`, which writes the token store. Withings rotates it on every refresh: the newest one is kept in `token_store`, which wins over this value once it is newer.",
        )
    },
    Setting {
        secret: true,
        ..setting(
            "users",
            Kind::Array,
            None,
            "Several users in one run: a list of `{\"refresh_token\": ..., \"token_store\": ...}` (token_store optional, default the main one). Users already in the token store are synced too.",
        )
    },
    setting(
        "token_store",
        Kind::String,
        Some("$XDG_STATE_HOME/tap-withings/tokens.json (else ~/.local/state/tap-withings/tokens.json)"),
        "Path of the token store, where every rotated token is written (mode 0600) before it is used. Keep it between runs.",
    ),
    setting(
        "start_date",
        Kind::DateTime,
        Some(DEFAULT_START_DATE),
        "Earliest data to extract on a first sync (RFC 3339 or YYYY-MM-DD, UTC).",
    ),
    setting(
        "end_date",
        Kind::DateTime,
        None,
        "Latest data to extract (RFC 3339 or YYYY-MM-DD). Default: now.",
    ),
    setting(
        "lookback_hours",
        Kind::Integer,
        Some("24"),
        "Only with `calendar_walk`: hours re-read behind the bookmarks (or the end of the last scan, when later) of intraday_activity and sleep_series/sleep_vitals on every run, to catch data that reached Withings late. Without it (the default) nothing is re-read by the hour: the days and sleep sessions that Withings lists as changed are read again, whatever their delay.",
    ),
    setting(
        "late_sync_days",
        Kind::Integer,
        Some("3"),
        "Only with `calendar_walk`: a device that has sent nothing since a stream's latest record is read again from just after that record, for up to this many days behind the last scan, at the cost of up to that many extra 24 h windows per stream and user while the device is quiet (0: only lookback_hours).",
    ),
    setting(
        "calendar_walk",
        Kind::Boolean,
        Some("false"),
        "Read intraday_activity and sleep_series/sleep_vitals by walking every 24 h window from start_date (later runs: from lookback_hours and late_sync_days behind the last scan) instead of the local days that getactivity lists and the sleep sessions that sleep getsummary lists as new or changed. Costs a request per 24 h of calendar per stream (about 6,500 each from the default start_date); only for data those lists miss.",
    ),
    setting(
        "reconcile_days",
        Kind::Integer,
        Some("30"),
        "Deletion detection: measures, workouts and sleep_summaries of the last N days are re-scanned and those deleted in Withings are emitted again as tombstones with `_sdc_deleted_at` (0 disables).",
    ),
    setting(
        "reconcile_every_hours",
        Kind::Integer,
        Some("24"),
        "How often the deletion re-scan runs (it costs a few requests per stream and user).",
    ),
    setting(
        "api_url",
        Kind::String,
        Some(DEFAULT_API_URL),
        "Withings API root; the token endpoint is `{api_url}/v2/oauth2`. Must be https unless it is a loopback address.",
    ),
    setting(
        "max_requests_per_minute",
        Kind::Integer,
        Some("120"),
        "Request budget of the whole run (all streams and users together); Withings allows 120 per app.",
    ),
    setting(
        "redirect_uri",
        Kind::String,
        None,
        "Callback URL registered for your Withings app, used by `tap-withings auth`. A loopback URL (http://127.0.0.1:PORT/...) is received by the tap itself; otherwise paste the redirect URL.",
    ),
    setting(
        "scopes",
        Kind::String,
        Some("user.info,user.metrics,user.activity,user.sleepevents"),
        "Comma-separated OAuth scopes asked for by `tap-withings auth`.",
    ),
    setting(
        "include_objectives",
        Kind::Boolean,
        Some("false"),
        "Also extract getmeas category 2 (user objectives) into `measures`. Category 2 keeps its own bookmark (`objectives_modified` in the state partition), so switching this on later backfills the objectives from `start_date`.",
    ),
    setting(
        "flattening_enabled",
        Kind::Boolean,
        Some("true"),
        "Flatten nested objects into `parent__child` columns (Meltano SDK semantics).",
    ),
    setting(
        "flattening_max_depth",
        Kind::Integer,
        Some("10"),
        "How many levels of nesting to flatten.",
    ),
    setting(
        "flattening_separator",
        Kind::String,
        Some("__"),
        "Separator of flattened names (Meltano SDK setting); only `__` is supported.",
    ),
    setting(
        "flattening_max_key_length",
        Kind::Integer,
        Some("255"),
        "Longest flattened name (Meltano SDK setting). Any value from the longest name the tap produces up changes nothing; a smaller one is refused (names are never shortened).",
    ),
    setting(
        "stream_maps",
        Kind::Object,
        None,
        "Inline stream maps, with the Meltano SDK's syntax: per stream, `null` to drop it, or an object with `__alias__`, `__filter__`, `__key_properties__`, `__else__` and property → expression or `null`. See the README's Stream maps section.",
    ),
    setting(
        "stream_map_config",
        Kind::Object,
        None,
        "Values that stream map expressions read as `config` (e.g. a salt for `md5(config['salt'] + str(userid))`).",
    ),
    setting(
        "faker_config",
        Kind::Object,
        None,
        "Accepted for Meltano SDK compatibility: it only serves the `fake` object of map expressions, which this tap does not provide.",
    ),
    setting(
        "max_retries",
        Kind::Integer,
        Some("8"),
        "Retries of one request after a transient failure (601, 522, 5xx, HTML, truncated body, timeout).",
    ),
    setting(
        "max_retry_seconds",
        Kind::Integer,
        Some("900"),
        "Longest total time spent retrying one request before the run fails.",
    ),
    setting(
        "request_timeout_seconds",
        Kind::Integer,
        Some("60"),
        "Timeout of one HTTP request.",
    ),
    setting(
        "max_reply_megabytes",
        Kind::Integer,
        Some("32"),
        "Largest reply body accepted, decompressed (MiB); a larger one fails its request at once, without retrying. The largest real replies (a day of intraday samples at one a second) are about 17 MiB.",
    ),
    setting(
        "batch_config",
        Kind::Object,
        None,
        "Send BATCH messages (Meltano SDK) instead of RECORD messages: `{\"encoding\": {\"format\": \"jsonl\", \"compression\": \"gzip\"}, \"storage\": {\"root\": \"file:///path/to/dir\", \"prefix\": \"...\"}, \"batch_size\": 10000}`. Records go to JSON-lines files under the root (gzip or none; at most batch_size records each), which the target reads; nobody deletes them.",
    ),
    setting(
        "repeat_guard_seconds",
        Kind::Number,
        Some("10"),
        "Minimum time between two identical requests (Withings answers 601 to a repeat within 10 s).",
    ),
];

/// Looks a setting up by name.
pub fn find_setting(name: &str) -> Option<&'static Setting> {
    SETTINGS.iter().find(|s| s.name == name)
}

/// Validated settings for a run.
#[derive(Debug, Clone)]
pub struct Config {
    pub client_id: String,
    pub client_secret: Secret,
    pub refresh_token: Option<Secret>,
    /// Extra users (the `users` setting).
    pub users: Vec<UserSetting>,
    pub token_store: PathBuf,
    pub redirect_uri: Option<String>,
    pub scopes: Vec<String>,
    pub start_date: DateTime<Utc>,
    pub end_date: Option<DateTime<Utc>>,
    pub api_url: String,
    pub max_requests_per_minute: u32,
    pub include_objectives: bool,
    pub lookback_hours: u32,
    /// See the `late_sync_days` setting.
    pub late_sync_days: u32,
    /// See the `calendar_walk` setting.
    pub calendar_walk: bool,
    pub reconcile_days: u32,
    pub reconcile_every_hours: u32,
    pub flattening_enabled: bool,
    pub flattening_max_depth: usize,
    pub max_retries: u32,
    pub max_retry_seconds: u64,
    pub request_timeout_seconds: u64,
    /// See the `max_reply_megabytes` setting.
    pub max_reply_megabytes: u64,
    pub repeat_guard_seconds: f64,
    /// `stream_maps` and `stream_map_config`, checked (None: no map).
    pub stream_maps: Option<crate::maps::Maps>,
    /// See the `batch_config` setting (None: RECORD messages).
    pub batch_config: Option<crate::singer::batch::BatchConfig>,
}

/// One entry of the `users` setting.
#[derive(Debug, Clone, PartialEq)]
pub struct UserSetting {
    pub refresh_token: Option<Secret>,
    pub token_store: Option<PathBuf>,
}

/// Where a setting came from, for error messages.
fn origin(sources: &BTreeMap<String, String>, name: &str) -> String {
    sources
        .get(name)
        .cloned()
        .unwrap_or_else(|| "config".to_string())
}

/// Settings merged from config files and the environment, before validation.
#[derive(Debug, Clone, Default)]
pub struct RawConfig {
    pub values: Map<String, Value>,
    /// Setting name → where it came from (file name or `TAP_WITHINGS_X`).
    pub sources: BTreeMap<String, String>,
}

impl RawConfig {
    /// Adds one parsed config file; later files override earlier ones.
    pub fn add_file(&mut self, name: &str, text: &str) -> Result<()> {
        let value: Value = serde_json::from_str(text)
            .map_err(|e| Error::input(format!("cannot parse config file {name}: {e}")))?;
        let Value::Object(map) = value else {
            return Err(Error::input(format!(
                "config file {name} must hold a JSON object"
            )));
        };
        for (key, value) in map {
            if find_setting(&key).is_none() {
                let hint = nearest_setting(&key)
                    .map(|n| format!("did you mean `{n}`? "))
                    .unwrap_or_default();
                return Err(Error::input(format!(
                    "config file {name}: unknown setting `{key}` ({hint}see `tap-withings --about`)"
                )));
            }
            if value.is_null() {
                continue;
            }
            self.sources
                .insert(key.clone(), format!("config file {name}"));
            self.values.insert(key, value);
        }
        Ok(())
    }

    /// Fills settings that no file set from `TAP_WITHINGS_<SETTING>` variables (Meltano SDK
    /// convention). Names with a double underscore (`TAP_WITHINGS__SELECT`) are Meltano's own.
    pub fn add_env(&mut self, env: &BTreeMap<String, String>) -> Result<()> {
        for setting in SETTINGS {
            if self.values.contains_key(setting.name) {
                continue;
            }
            let var = format!("TAP_WITHINGS_{}", setting.name.to_ascii_uppercase());
            let Some(text) = env.get(&var) else { continue };
            if text.is_empty() {
                continue;
            }
            let value = parse_env_value(setting, text)
                .map_err(|why| Error::input(format!("environment variable {var}: {why}")))?;
            self.sources.insert(
                setting.name.to_string(),
                format!("environment variable {var}"),
            );
            self.values.insert(setting.name.to_string(), value);
        }
        Ok(())
    }

    fn get(&self, name: &str) -> Option<&Value> {
        self.values.get(name)
    }

    fn string(&self, name: &str) -> Result<Option<String>> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(self.wrong_type(name, "a string")),
        }
    }

    fn integer(&self, name: &str, default: i64, min: i64, max: i64) -> Result<i64> {
        let value = match self.get(name) {
            None => default,
            Some(Value::Number(n)) => n
                .as_i64()
                .ok_or_else(|| self.wrong_type(name, "an integer"))?,
            Some(Value::String(s)) => s
                .trim()
                .parse()
                .map_err(|_| self.wrong_type(name, "an integer"))?,
            Some(_) => return Err(self.wrong_type(name, "an integer")),
        };
        if value < min || value > max {
            return Err(Error::input(format!(
                "{}: setting `{name}` must be between {min} and {max}, got {value}",
                origin(&self.sources, name)
            )));
        }
        Ok(value)
    }

    fn number(&self, name: &str, default: f64, min: f64, max: f64) -> Result<f64> {
        let value = match self.get(name) {
            None => default,
            Some(Value::Number(n)) => n
                .as_f64()
                .ok_or_else(|| self.wrong_type(name, "a number"))?,
            Some(Value::String(s)) => s
                .trim()
                .parse()
                .map_err(|_| self.wrong_type(name, "a number"))?,
            Some(_) => return Err(self.wrong_type(name, "a number")),
        };
        if !(min..=max).contains(&value) {
            return Err(Error::input(format!(
                "{}: setting `{name}` must be between {min} and {max}, got {value}",
                origin(&self.sources, name)
            )));
        }
        Ok(value)
    }

    fn boolean(&self, name: &str, default: bool) -> Result<bool> {
        match self.get(name) {
            None => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(Value::String(s)) => {
                parse_bool(s).ok_or_else(|| self.wrong_type(name, "true or false"))
            }
            Some(_) => Err(self.wrong_type(name, "true or false")),
        }
    }

    fn wrong_type(&self, name: &str, expected: &str) -> Error {
        Error::input(format!(
            "{}: setting `{name}` must be {expected}",
            origin(&self.sources, name)
        ))
    }

    /// An object setting: a JSON object, or a string holding one (as an environment
    /// variable or Meltano may pass it).
    fn object(&self, name: &str) -> Result<Option<Value>> {
        match self.get(name) {
            None => Ok(None),
            Some(v @ Value::Object(_)) => Ok(Some(v.clone())),
            Some(Value::String(text)) => match serde_json::from_str::<Value>(text) {
                Ok(v @ Value::Object(_)) => Ok(Some(v)),
                _ => Err(self.wrong_type(name, "a JSON object")),
            },
            Some(_) => Err(self.wrong_type(name, "a JSON object")),
        }
    }

    /// `flattening_separator` and `flattening_max_key_length`, the SDK's other flattening
    /// settings: accepted where they change nothing.
    fn check_flattening_names(&self) -> Result<()> {
        if let Some(sep) = self.string("flattening_separator")? {
            if sep != "__" {
                return Err(Error::input(format!(
                    "{}: setting `flattening_separator` must be `__` (the only separator this tap supports), got {sep:?}",
                    origin(&self.sources, "flattening_separator")
                )));
            }
        }
        let limit = self.integer("flattening_max_key_length", 255, 1, 100_000)?;
        let (longest, name) = longest_flattened_name();
        if (limit as usize) < longest {
            return Err(Error::input(format!(
                "{}: setting `flattening_max_key_length` ({limit}) is below the longest flattened name the tap produces ({longest} characters: {name}); names are never shortened",
                origin(&self.sources, "flattening_max_key_length")
            )));
        }
        Ok(())
    }

    fn stream_maps(&self) -> Result<Option<crate::maps::Maps>> {
        let maps = self.object("stream_maps")?;
        let map_config = self.object("stream_map_config")?;
        // Accepted, checked for its type, and otherwise unused (no `fake` here).
        self.object("faker_config")?;
        crate::maps::Maps::parse(maps.as_ref(), map_config.as_ref()).map_err(|why| {
            let place = if why.starts_with("setting `stream_map_config`") {
                "stream_map_config"
            } else {
                "stream_maps"
            };
            Error::input(format!("{}: {why}", origin(&self.sources, place)))
        })
    }

    fn users(&self) -> Result<Vec<UserSetting>> {
        let list =
            match self.get("users") {
                None => return Ok(Vec::new()),
                Some(Value::Array(list)) => list,
                Some(Value::String(text)) => {
                    return match serde_json::from_str::<Value>(text) {
                        Ok(v @ Value::Array(_)) => {
                            let mut copy = self.clone();
                            copy.values.insert("users".into(), v);
                            copy.users()
                        }
                        _ => Err(self
                            .wrong_type("users", "a list of {refresh_token, token_store} objects")),
                    };
                }
                Some(_) => {
                    return Err(
                        self.wrong_type("users", "a list of {refresh_token, token_store} objects")
                    )
                }
            };
        let place = origin(&self.sources, "users");
        list.iter()
            .enumerate()
            .map(|(i, entry)| {
                let obj = entry.as_object().ok_or_else(|| {
                    Error::input(format!("{place}: `users[{i}]` must be an object"))
                })?;
                for key in obj.keys() {
                    if key != "refresh_token" && key != "token_store" {
                        return Err(Error::input(format!(
                            "{place}: `users[{i}]` has unknown field `{key}`"
                        )));
                    }
                }
                let text = |k: &str| match obj.get(k) {
                    None | Some(Value::Null) => Ok(None),
                    Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
                    Some(_) => Err(Error::input(format!(
                        "{place}: `users[{i}].{k}` must be a non-empty string"
                    ))),
                };
                let refresh_token = text("refresh_token")?.map(Secret::new);
                let token_store = text("token_store")?.map(PathBuf::from);
                if refresh_token.is_none() && token_store.is_none() {
                    return Err(Error::input(format!(
                        "{place}: `users[{i}]` needs a refresh_token or a token_store"
                    )));
                }
                Ok(UserSetting {
                    refresh_token,
                    token_store,
                })
            })
            .collect()
    }

    fn batch_config(&self) -> Result<Option<crate::singer::batch::BatchConfig>> {
        let Some(value) = self.get("batch_config") else {
            return Ok(None);
        };
        crate::singer::batch::parse_batch_config(value)
            .map(Some)
            .map_err(|why| {
                Error::input(format!(
                    "{}: setting `batch_config`: {why}",
                    origin(&self.sources, "batch_config")
                ))
            })
    }

    fn date(&self, name: &str) -> Result<Option<DateTime<Utc>>> {
        match self.string(name)? {
            None => Ok(None),
            Some(text) => parse_date_time(&text).map(Some).ok_or_else(|| {
                Error::input(format!(
                    "{}: setting `{name}` must be an RFC 3339 date-time or YYYY-MM-DD, got {text:?}",
                    origin(&self.sources, name)
                ))
            }),
        }
    }

    /// Validates everything a sync (or `--test`) needs. `now` bounds the dates.
    pub fn validate(&self, env: &BTreeMap<String, String>, now: DateTime<Utc>) -> Result<Config> {
        let missing: Vec<&str> = SETTINGS
            .iter()
            .filter(|s| s.required && self.get(s.name).is_none_or(|v| v.as_str() == Some("")))
            .map(|s| s.name)
            .collect();
        if !missing.is_empty() {
            return Err(Error::input(format!(
                "missing required setting{} {} (in a --config file or TAP_WITHINGS_* variables)",
                if missing.len() > 1 { "s" } else { "" },
                missing
                    .iter()
                    .map(|m| format!("`{m}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let client_id = self.string("client_id")?.unwrap_or_default();
        let client_secret = Secret::new(self.string("client_secret")?.unwrap_or_default());
        let start_date = match self.date("start_date")? {
            Some(d) => d,
            None => parse_date_time(DEFAULT_START_DATE).unwrap_or_default(),
        };
        if start_date > now {
            return Err(Error::input(format!(
                "{}: setting `start_date` ({}) is in the future",
                origin(&self.sources, "start_date"),
                start_date.to_rfc3339()
            )));
        }
        let end_date = self.date("end_date")?;
        if let Some(end) = end_date {
            if end < start_date {
                return Err(Error::input(format!(
                    "{}: setting `end_date` ({}) is before `start_date` ({})",
                    origin(&self.sources, "end_date"),
                    end.to_rfc3339(),
                    start_date.to_rfc3339()
                )));
            }
        }
        let api_url = self
            .string("api_url")?
            .unwrap_or_else(|| DEFAULT_API_URL.to_string())
            .trim_end_matches('/')
            .to_string();
        check_api_url(&api_url).map_err(|why| {
            Error::input(format!(
                "{}: setting `api_url` {why}",
                origin(&self.sources, "api_url")
            ))
        })?;
        let token_store = match self.string("token_store")? {
            Some(p) if !p.is_empty() => PathBuf::from(p),
            _ => default_token_store(env),
        };
        let users = self.users()?;
        let scopes: Vec<String> = self
            .string("scopes")?
            .unwrap_or_else(|| "user.info,user.metrics,user.activity,user.sleepevents".into())
            .split([',', ' '])
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        Ok(Config {
            client_id,
            client_secret,
            users,
            redirect_uri: self.string("redirect_uri")?.filter(|s| !s.is_empty()),
            scopes,
            refresh_token: self
                .string("refresh_token")?
                .filter(|t| !t.is_empty())
                .map(Secret::new),
            token_store,
            start_date,
            end_date,
            api_url,
            max_requests_per_minute: self.integer("max_requests_per_minute", 120, 1, 100_000)?
                as u32,
            include_objectives: self.boolean("include_objectives", false)?,
            lookback_hours: self.integer("lookback_hours", 24, 0, 24 * 366)? as u32,
            late_sync_days: self.integer("late_sync_days", 3, 0, 366)? as u32,
            calendar_walk: self.boolean("calendar_walk", false)?,
            reconcile_days: self.integer("reconcile_days", 30, 0, 3660)? as u32,
            reconcile_every_hours: self.integer("reconcile_every_hours", 24, 0, 24 * 366)? as u32,
            flattening_enabled: self.boolean("flattening_enabled", true)?,
            flattening_max_depth: self.integer("flattening_max_depth", 10, 0, 100)? as usize,
            max_retries: self.integer("max_retries", 8, 0, 100)? as u32,
            max_retry_seconds: self.integer("max_retry_seconds", 900, 0, 86_400)? as u64,
            request_timeout_seconds: self.integer("request_timeout_seconds", 60, 1, 3_600)? as u64,
            max_reply_megabytes: self.integer("max_reply_megabytes", 32, 1, 4_096)? as u64,
            repeat_guard_seconds: self.number("repeat_guard_seconds", 10.0, 0.0, 3_600.0)?,
            stream_maps: self.stream_maps()?,
            batch_config: self.batch_config()?,
        })
        .and_then(|cfg| self.check_flattening_names().map(|()| cfg))
    }
}

fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

fn parse_env_value(setting: &Setting, text: &str) -> std::result::Result<Value, String> {
    Ok(match setting.kind {
        Kind::String | Kind::DateTime => Value::String(text.to_string()),
        Kind::Integer => Value::from(
            text.trim()
                .parse::<i64>()
                .map_err(|_| "must be an integer")?,
        ),
        Kind::Number => {
            let n: f64 = text.trim().parse().map_err(|_| "must be a number")?;
            serde_json::Number::from_f64(n)
                .map(Value::Number)
                .ok_or("must be a finite number")?
        }
        Kind::Boolean => Value::Bool(parse_bool(text).ok_or("must be true or false")?),
        Kind::Array => {
            serde_json::from_str(text).map_err(|e| format!("must be a JSON array: {e}"))?
        }
        Kind::Object => match serde_json::from_str(text) {
            Ok(v @ Value::Object(_)) => v,
            Ok(_) => return Err("must be a JSON object".into()),
            Err(e) => return Err(format!("must be a JSON object: {e}")),
        },
    })
}

/// The longest name flattening can give a property of any stream (every level of nesting
/// joined by `__`), and that name.
pub fn longest_flattened_name() -> (usize, String) {
    fn walk(schema: &Value, prefix: &str, best: &mut (usize, String)) {
        let Some(props) = schema.get("properties").and_then(Value::as_object) else {
            return;
        };
        for (name, sub) in props {
            let full = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}__{name}")
            };
            if full.chars().count() > best.0 {
                *best = (full.chars().count(), full.clone());
            }
            walk(sub, &full, best);
        }
    }
    let mut best = (0, String::new());
    for def in crate::streams::STREAMS {
        walk(&def.schema(), "", &mut best);
    }
    best
}

/// The setting whose name is closest to a mistyped one (at most a third of its letters
/// off), for "did you mean".
pub fn nearest_setting(name: &str) -> Option<&'static str> {
    fn distance(a: &str, b: &str) -> usize {
        let b: Vec<char> = b.chars().collect();
        let mut row: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut prev = row[0];
            row[0] = i + 1;
            for (j, cb) in b.iter().enumerate() {
                let here = row[j + 1];
                row[j + 1] = (prev + usize::from(ca != *cb))
                    .min(row[j] + 1)
                    .min(here + 1);
                prev = here;
            }
        }
        row[b.len()]
    }
    let lower = name.to_ascii_lowercase();
    SETTINGS
        .iter()
        .map(|s| (distance(&lower, s.name), s.name))
        .filter(|(d, n)| *d <= (n.len().max(3) / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, n)| n)
}

/// Parses RFC 3339 or a bare `YYYY-MM-DD` (midnight UTC).
pub fn parse_date_time(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if let Ok(dt) = DateTime::parse_from_rfc3339(text) {
        return Some(dt.with_timezone(&Utc));
    }
    let date = NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
    Some(Utc.from_utc_datetime(&date.and_hms_opt(0, 0, 0)?))
}

/// `api_url` must be an http(s) URL with a host and no user information, and https unless
/// the host is a loopback address. Parsed with the URL parser the HTTP client uses, so the
/// host checked is the host connected to (`http://localhost:x@vm` is refused, not taken for
/// localhost).
fn check_api_url(url: &str) -> std::result::Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|_| "must be an absolute http(s) URL")?;
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("must not hold a user name or password (`user:password@`)".into());
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err("has no host".into());
    }
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if url_host_is_loopback(&parsed) => Ok(()),
        "http" => Err("must use https (plain http is only allowed for loopback addresses)".into()),
        _ => Err("must be an http(s) URL".into()),
    }
}

/// Whether a parsed URL's host is `localhost` or a loopback IP.
fn url_host_is_loopback(url: &reqwest::Url) -> bool {
    url.host_str().is_some_and(is_loopback_host)
}

/// Whether `api_url` (validated) points at this machine.
pub fn api_url_is_loopback(url: &str) -> bool {
    reqwest::Url::parse(url).is_ok_and(|u| url_host_is_loopback(&u))
}

/// `localhost` (any case), or an IPv4/IPv6 loopback address (brackets allowed).
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The default token store: `$XDG_STATE_HOME/tap-withings/tokens.json`, else
/// `$HOME/.local/state/tap-withings/tokens.json`, else `./tap-withings-tokens.json`.
pub fn default_token_store(env: &BTreeMap<String, String>) -> PathBuf {
    if let Some(dir) = env.get("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("tap-withings").join("tokens.json");
    }
    if let Some(home) = env.get("HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(home).join(".local/state/tap-withings/tokens.json");
    }
    PathBuf::from("tap-withings-tokens.json")
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    fn now() -> DateTime<Utc> {
        parse_date_time("2026-11-25T12:00:00Z").unwrap()
    }

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn raw(text: &str) -> RawConfig {
        let mut raw = RawConfig::default();
        raw.add_file("c.json", text).unwrap();
        raw
    }

    const MINIMAL: &str = r#"{"client_id": "id", "client_secret": "s", "refresh_token": "r"}"#;

    #[test]
    fn defaults_fill_every_optional_setting() {
        let cfg = raw(MINIMAL)
            .validate(&env(&[("HOME", "/home/u")]), now())
            .unwrap();
        assert_eq!(cfg.api_url, DEFAULT_API_URL);
        assert_eq!(cfg.max_requests_per_minute, 120);
        assert_eq!(cfg.start_date, parse_date_time("2009-01-01").unwrap());
        assert_eq!(
            cfg.token_store,
            PathBuf::from("/home/u/.local/state/tap-withings/tokens.json")
        );
        assert!(cfg.flattening_enabled);
        assert_eq!(cfg.repeat_guard_seconds, 10.0);
    }

    #[test]
    fn env_fills_what_files_leave_out_and_ignores_meltano_internals() {
        let mut r = raw(r#"{"client_id": "from-file"}"#);
        r.add_env(&env(&[
            ("TAP_WITHINGS_CLIENT_ID", "from-env"),
            ("TAP_WITHINGS_CLIENT_SECRET", "sec"),
            ("TAP_WITHINGS_MAX_REQUESTS_PER_MINUTE", "60"),
            ("TAP_WITHINGS_FLATTENING_ENABLED", "false"),
            ("TAP_WITHINGS__SELECT", "[\"x\"]"),
        ]))
        .unwrap();
        let cfg = r.validate(&env(&[]), now()).unwrap();
        assert_eq!(cfg.client_id, "from-file");
        assert_eq!(cfg.client_secret.expose(), "sec");
        assert_eq!(cfg.max_requests_per_minute, 60);
        assert!(!cfg.flattening_enabled);
    }

    #[test]
    fn later_files_override_earlier_ones() {
        let mut r = raw(MINIMAL);
        r.add_file("b.json", r#"{"client_id": "second"}"#).unwrap();
        assert_eq!(r.validate(&env(&[]), now()).unwrap().client_id, "second");
    }

    #[test]
    fn bad_settings_give_one_line_errors_naming_the_setting() {
        let cases = [
            (
                r#"{"client_id": "id"}"#,
                "missing required setting `client_secret`",
            ),
            (
                r#"{"client_id": "i", "client_secret": "s", "start_date": "2999-01-01"}"#,
                "is in the future",
            ),
            (
                r#"{"client_id": "i", "client_secret": "s", "start_date": "yesterday"}"#,
                "`start_date` must be an RFC 3339",
            ),
            (
                r#"{"client_id": "i", "client_secret": "s", "start_date": "2020-01-02", "end_date": "2020-01-01"}"#,
                "`end_date` (2020-01-01T00:00:00+00:00) is before",
            ),
            (
                r#"{"client_id": "i", "client_secret": "s", "max_requests_per_minute": "lots"}"#,
                "must be an integer",
            ),
            (
                r#"{"client_id": "i", "client_secret": "s", "max_requests_per_minute": 0}"#,
                "between 1 and",
            ),
            (
                r#"{"client_id": "i", "client_secret": "s", "api_url": "http://example.com"}"#,
                "must use https",
            ),
            (
                r#"{"client_id": 5, "client_secret": "s"}"#,
                "`client_id` must be a string",
            ),
        ];
        for (text, expected) in cases {
            let err = raw(text)
                .validate(&env(&[]), now())
                .unwrap_err()
                .to_string();
            assert!(err.contains(expected), "{text}: {err}");
            assert!(!err.contains('\n'));
        }
    }

    #[test]
    fn unknown_settings_and_garbage_files_are_rejected() {
        let mut r = RawConfig::default();
        let err = r
            .add_file("c.json", r#"{"client_idd": "x"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown setting `client_idd`"), "{err}");
        assert!(err.contains("did you mean `client_id`?"), "{err}");
        let err = r
            .add_file("c.json", r#"{"stream_map": {}}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("did you mean `stream_maps`?"), "{err}");
        let err = r
            .add_file("c.json", r#"{"zzz": 1}"#)
            .unwrap_err()
            .to_string();
        assert!(!err.contains("did you mean"), "{err}");
        let err = r.add_file("c.json", "{nope").unwrap_err().to_string();
        assert!(err.starts_with("cannot parse config file c.json"), "{err}");
        let err = r.add_file("c.json", "[1]").unwrap_err().to_string();
        assert!(err.contains("must hold a JSON object"), "{err}");
    }

    #[test]
    fn users_are_a_list_of_tokens_or_stores() {
        let cfg = raw(r#"{"client_id": "i", "client_secret": "s", "users": [{"refresh_token": "a"}, {"token_store": "/t.json"}]}"#)
            .validate(&env(&[]), now())
            .unwrap();
        assert_eq!(cfg.users.len(), 2);
        assert_eq!(cfg.users[1].token_store, Some(PathBuf::from("/t.json")));
        let mut r = RawConfig::default();
        r.add_env(&env(&[
            ("TAP_WITHINGS_USERS", r#"[{"refresh_token": "x"}]"#),
            ("TAP_WITHINGS_CLIENT_ID", "i"),
            ("TAP_WITHINGS_CLIENT_SECRET", "s"),
        ]))
        .unwrap();
        assert_eq!(r.validate(&env(&[]), now()).unwrap().users.len(), 1);
        for (text, expected) in [
            (
                r#"{"client_id": "i", "client_secret": "s", "users": [{}]}"#,
                "needs a refresh_token or a token_store",
            ),
            (
                r#"{"client_id": "i", "client_secret": "s", "users": [{"refresh": "x"}]}"#,
                "unknown field `refresh`",
            ),
            (
                r#"{"client_id": "i", "client_secret": "s", "users": 3}"#,
                "`users` must be a list",
            ),
        ] {
            let err = raw(text)
                .validate(&env(&[]), now())
                .unwrap_err()
                .to_string();
            assert!(err.contains(expected), "{err}");
        }
    }

    #[test]
    fn sdk_standard_settings_are_accepted_and_maps_checked() {
        let cfg = raw(r#"{"client_id": "i", "client_secret": "s", "stream_maps": {"devices": {"mac_address": null}}, "stream_map_config": {"salt": "x"}, "faker_config": {"seed": 1}, "flattening_enabled": true, "flattening_max_depth": 2}"#)
            .validate(&env(&[]), now())
            .unwrap();
        assert!(cfg.stream_maps.is_some());
        let (longest, _) = longest_flattened_name();
        assert!(longest > 10 && longest < 255, "{longest}");
        let ok = format!(
            r#"{{"client_id": "i", "client_secret": "s", "flattening_separator": "__", "flattening_max_key_length": {longest}}}"#
        );
        raw(&ok).validate(&env(&[]), now()).unwrap();
        for (text, expected) in [
            (
                format!(
                    r#"{{"client_id": "i", "client_secret": "s", "flattening_max_key_length": {}}}"#,
                    longest - 1
                ),
                "`flattening_max_key_length` (".to_string(),
            ),
            (
                r#"{"client_id": "i", "client_secret": "s", "flattening_separator": "."}"#
                    .to_string(),
                "`flattening_separator` must be `__`".to_string(),
            ),
        ] {
            let err = raw(&text)
                .validate(&env(&[]), now())
                .unwrap_err()
                .to_string();
            assert!(err.contains(&expected), "{err}");
        }
        assert!(raw(MINIMAL)
            .validate(&env(&[]), now())
            .unwrap()
            .stream_maps
            .is_none());
        let mut r = raw(MINIMAL);
        r.add_env(&env(&[("TAP_WITHINGS_STREAM_MAPS", r#"{"goals": null}"#)]))
            .unwrap();
        assert!(r.validate(&env(&[]), now()).unwrap().stream_maps.is_some());
        for (text, expected) in [
            (
                r#"{"client_id": "i", "client_secret": "s", "stream_maps": {"devices": {"x": "sha1(userid)"}}}"#,
                "config file c.json: stream_maps.devices.x: unknown function `sha1`",
            ),
            (
                r#"{"client_id": "i", "client_secret": "s", "stream_maps": [1]}"#,
                "setting `stream_maps` must be a JSON object",
            ),
            (
                r#"{"client_id": "i", "client_secret": "s", "faker_config": 1}"#,
                "setting `faker_config` must be a JSON object",
            ),
        ] {
            let err = raw(text)
                .validate(&env(&[]), now())
                .unwrap_err()
                .to_string();
            assert!(err.contains(expected), "{err}");
            assert!(!err.contains('\n'));
        }
        let mut r = RawConfig::default();
        let err = r
            .add_env(&env(&[("TAP_WITHINGS_STREAM_MAPS", "[1]")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("must be a JSON object"), "{err}");
    }

    #[test]
    fn scopes_default_to_all_four() {
        let cfg = raw(MINIMAL).validate(&env(&[]), now()).unwrap();
        assert_eq!(
            cfg.scopes,
            [
                "user.info",
                "user.metrics",
                "user.activity",
                "user.sleepevents"
            ]
        );
    }

    #[test]
    fn loopback_http_is_allowed_for_the_simulator() {
        for url in [
            "http://127.0.0.1:8080",
            "http://localhost:1",
            "http://[::1]:9",
            "https://x.example",
        ] {
            assert_eq!(check_api_url(url), Ok(()), "{url}");
        }
        for url in [
            "ftp://x",
            "http://10.0.0.1",
            "wbsapi.withings.net",
            "https://",
        ] {
            assert!(check_api_url(url).is_err(), "{url}");
        }
    }

    #[test]
    fn user_information_cannot_pass_a_remote_host_for_loopback() {
        // The host connected to is `vm`, not localhost: refused, in clear text or not.
        for url in [
            "http://localhost:x@vm",
            "http://localhost@vm:80",
            "https://user:secret@wbsapi.withings.net",
            "http://127.0.0.1:1@example.com",
        ] {
            let err = check_api_url(url).unwrap_err();
            assert!(err.contains("user name"), "{url}: {err}");
        }
        assert!(check_api_url("http://LOCALHOST:8787").is_ok());
        assert!(api_url_is_loopback("http://[::1]:8787/x"));
        assert!(!api_url_is_loopback("http://localhost.example.com"));
        assert!(!api_url_is_loopback("https://wbsapi.withings.net"));
    }

    #[test]
    fn token_store_default_follows_xdg() {
        assert_eq!(
            default_token_store(&env(&[("XDG_STATE_HOME", "/s"), ("HOME", "/h")])),
            PathBuf::from("/s/tap-withings/tokens.json")
        );
        assert_eq!(
            default_token_store(&env(&[])),
            PathBuf::from("tap-withings-tokens.json")
        );
    }

    #[test]
    fn settings_table_has_unique_names_and_secrets_marked() {
        let mut names: Vec<_> = SETTINGS.iter().map(|s| s.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), SETTINGS.len());
        for name in ["client_secret", "refresh_token"] {
            assert!(find_setting(name).unwrap().secret);
        }
    }
}
