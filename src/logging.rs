//! Log lines on stderr: human text by default, or JSON objects in the Meltano SDK's structured
//! shape (`level`, `pid`, `logger_name`, `ts`, `thread_name`, `app_name`, `stream_name`,
//! `message`), so Meltano can parse them. [`choose`] picks the level and format from the flags
//! and the environment (the SDK's variables and the logging config Meltano hands every Singer
//! plugin); `stream_name` is the stream of the `stream` span the line was logged in (see
//! `metrics::in_stream`), or the event's own `stream` field.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::{json, Map, Value};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

use crate::metrics::SPAN_TARGET;

/// The level filter and line format of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSetup {
    /// `EnvFilter` directives (always enabling the per-stream spans).
    pub directives: String,
    pub json: bool,
}

/// A level name of the SDK's vocabulary (any case) as a tracing level.
fn level(name: &str) -> Option<&'static str> {
    match name.trim().to_ascii_lowercase().as_str() {
        "debug" => Some("debug"),
        "info" => Some("info"),
        "warning" | "warn" => Some("warn"),
        "error" | "critical" => Some("error"),
        _ => None,
    }
}

/// What Meltano's `SINGER_SDK_LOG_CONFIG` file (a Python logging dictConfig, JSON) asks for:
/// the root level, and whether a formatter is the SDK's `StructuredFormatter` (Meltano's
/// `structured-logging` capability).
fn sdk_log_config(text: &str) -> (Option<&'static str>, bool) {
    let Ok(config) = serde_json::from_str::<Value>(text) else {
        return (None, false);
    };
    let root = config["root"]["level"].as_str().and_then(level);
    let structured = config["formatters"].as_object().is_some_and(|formatters| {
        formatters.values().any(|f| {
            f["()"]
                .as_str()
                .is_some_and(|class| class.ends_with("StructuredFormatter"))
        })
    });
    (root, structured)
}

/// Picks the log level and format (pure; `read` reads a file).
///
/// Level: `--log-level` or `TAP_WITHINGS_LOGLEVEL` (passed in as `flag_level`), else
/// `LOGLEVEL` (the SDK's names), else `RUST_LOG` directives, else the root level of
/// `SINGER_SDK_LOG_CONFIG`, else info. Format: `--log-format` or `TAP_WITHINGS_LOG_FORMAT`
/// (`flag_format`), else json when `SINGER_SDK_LOG_CONFIG` uses the SDK's structured
/// formatter, else text.
pub fn choose(
    flag_level: Option<&str>,
    flag_format: Option<&str>,
    env: &BTreeMap<String, String>,
    read: impl Fn(&str) -> Option<String>,
) -> LogSetup {
    let (sdk_level, sdk_json) = env
        .get("SINGER_SDK_LOG_CONFIG")
        .filter(|p| !p.is_empty())
        .and_then(|p| read(p))
        .map_or((None, false), |text| sdk_log_config(&text));
    let base = flag_level
        .and_then(level)
        .or_else(|| env.get("LOGLEVEL").and_then(|l| level(l)))
        .map(str::to_string)
        .or_else(|| {
            env.get("RUST_LOG")
                .filter(|d| !d.trim().is_empty() && EnvFilter::try_new(d.as_str()).is_ok())
                .cloned()
        })
        .or_else(|| sdk_level.map(str::to_string))
        .unwrap_or_else(|| "info".to_string());
    let json = match flag_format {
        Some(format) => format.eq_ignore_ascii_case("json"),
        None => sdk_json,
    };
    LogSetup {
        directives: format!("{base},{SPAN_TARGET}=info"),
        json,
    }
}

/// Installs the global subscriber for `setup` (stderr).
pub fn init(setup: &LogSetup) {
    let filter = EnvFilter::try_new(&setup.directives)
        .unwrap_or_else(|_| EnvFilter::new(format!("info,{SPAN_TARGET}=info")));
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(|| crate::secret::redact::RedactingStderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let registry = tracing_subscriber::registry()
        .with(filter)
        .with(StreamSpans);
    if setup.json {
        registry.with(fmt.event_format(SdkJson)).init();
    } else {
        registry.with(fmt).init();
    }
}

/// The stream of a `stream` span.
struct StreamName(String);

/// Remembers the `stream` field of each new span, for [`SdkJson`].
pub struct StreamSpans;

impl<S> Layer<S> for StreamSpans
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        if let (Some(Value::String(name)), Some(span)) = (fields.extra.get("stream"), ctx.span(id))
        {
            span.extensions_mut().insert(StreamName(name.clone()));
        }
    }
}

/// Formats events as SDK-shaped JSON lines.
pub struct SdkJson;

#[derive(Default)]
struct Fields {
    message: String,
    extra: Map<String, Value>,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let text = format!("{value:?}");
        if field.name() == "message" {
            self.message = text;
        } else {
            self.extra
                .insert(field.name().to_string(), Value::String(text));
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_string();
        } else {
            self.extra
                .insert(field.name().to_string(), Value::String(value.to_string()));
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.extra
            .insert(field.name().to_string(), Value::from(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.extra
            .insert(field.name().to_string(), Value::from(value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.extra
            .insert(field.name().to_string(), Value::from(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.extra
            .insert(field.name().to_string(), Value::from(value));
    }
}

/// The SDK's level names.
fn level_name(level: &tracing::Level) -> &'static str {
    match *level {
        tracing::Level::ERROR => "error",
        tracing::Level::WARN => "warning",
        tracing::Level::INFO => "info",
        tracing::Level::DEBUG | tracing::Level::TRACE => "debug",
    }
}

/// Builds one SDK-shaped log object (pure, for tests): `stream_name` is the event's `stream`
/// field, else the stream of the span it was logged in.
pub fn sdk_line(
    level: &str,
    ts: f64,
    thread: &str,
    message: &str,
    span_stream: Option<&str>,
    extra: Map<String, Value>,
) -> Value {
    let stream = match extra.get("stream") {
        Some(Value::String(s)) => Value::String(s.clone()),
        _ => span_stream.map_or(Value::Null, |s| Value::String(s.to_string())),
    };
    let mut line = json!({
        "level": level,
        "pid": std::process::id(),
        "logger_name": "tap-withings",
        "ts": ts,
        "thread_name": thread,
        "app_name": "tap-withings",
        "stream_name": stream,
        "message": message,
    });
    if !extra.is_empty() {
        line["extra"] = Value::Object(extra);
    }
    line
}

impl<S, N> FormatEvent<S, N> for SdkJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let ts = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or_default();
        let thread = std::thread::current().name().unwrap_or("main").to_string();
        let span_stream = ctx.event_scope().and_then(|scope| {
            scope
                .into_iter()
                .find_map(|span| span.extensions().get::<StreamName>().map(|n| n.0.clone()))
        });
        let line = sdk_line(
            level_name(event.metadata().level()),
            ts,
            &thread,
            &fields.message,
            span_stream.as_deref(),
            fields.extra,
        );
        writeln!(writer, "{line}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sdk_lines_have_every_structured_field() {
        let mut extra = Map::new();
        extra.insert("stream".into(), json!("measures"));
        let line = sdk_line("info", 1.5, "main", "Syncing.", Some("devices"), extra);
        for key in [
            "level",
            "pid",
            "logger_name",
            "ts",
            "thread_name",
            "app_name",
            "stream_name",
            "message",
        ] {
            assert!(line.get(key).is_some(), "{key}");
        }
        assert_eq!(line["stream_name"], "measures", "the event's field wins");
        assert_eq!(
            sdk_line("warning", 0.0, "t", "m", Some("goals"), Map::new())["stream_name"],
            "goals"
        );
        assert_eq!(
            sdk_line("warning", 0.0, "t", "m", None, Map::new())["stream_name"],
            Value::Null
        );
    }

    const MELTANO_STRUCTURED: &str = r#"{"version": 1, "disable_existing_loggers": false,
        "formatters": {"singer_formatter": {"()": "singer_sdk.logging.StructuredFormatter"}},
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "singer_formatter"}},
        "root": {"handlers": ["console"], "level": "DEBUG"}}"#;
    const MELTANO_PLAIN: &str = r#"{"version": 1,
        "formatters": {"singer_formatter": {"format": "%(message)s"}},
        "root": {"handlers": ["console"], "level": "WARNING"}}"#;

    #[test]
    fn level_and_format_come_from_flags_then_the_environment() {
        let files = |path: &str| match path {
            "structured.json" => Some(MELTANO_STRUCTURED.to_string()),
            "plain.json" => Some(MELTANO_PLAIN.to_string()),
            "yaml.yml" => Some("version: 1\nroot: {level: DEBUG}\n".to_string()),
            _ => None,
        };
        // (flag level, flag format, environment, expected base directives, expected json)
        type Case<'a> = (
            Option<&'a str>,
            Option<&'a str>,
            &'a [(&'a str, &'a str)],
            &'a str,
            bool,
        );
        let cases: &[Case] = &[
            (None, None, &[], "info", false),
            (
                Some("warning"),
                None,
                &[("RUST_LOG", "debug")],
                "warn",
                false,
            ),
            (Some("CRITICAL"), Some("json"), &[], "error", true),
            (
                None,
                None,
                &[("LOGLEVEL", "Debug"), ("RUST_LOG", "error")],
                "debug",
                false,
            ),
            (
                None,
                None,
                &[("LOGLEVEL", "loud"), ("RUST_LOG", "tap_withings=debug")],
                "tap_withings=debug",
                false,
            ),
            (
                None,
                None,
                &[("SINGER_SDK_LOG_CONFIG", "structured.json")],
                "debug",
                true,
            ),
            (
                None,
                Some("text"),
                &[("SINGER_SDK_LOG_CONFIG", "structured.json")],
                "debug",
                false,
            ),
            (
                Some("info"),
                None,
                &[("SINGER_SDK_LOG_CONFIG", "structured.json")],
                "info",
                true,
            ),
            (
                None,
                None,
                &[("SINGER_SDK_LOG_CONFIG", "plain.json")],
                "warn",
                false,
            ),
            (
                None,
                None,
                &[
                    ("SINGER_SDK_LOG_CONFIG", "plain.json"),
                    ("RUST_LOG", "info"),
                ],
                "info",
                false,
            ),
            (
                None,
                None,
                &[("SINGER_SDK_LOG_CONFIG", "yaml.yml")],
                "info",
                false,
            ),
            (
                None,
                None,
                &[("SINGER_SDK_LOG_CONFIG", "missing.json")],
                "info",
                false,
            ),
            (None, None, &[("RUST_LOG", "")], "info", false),
        ];
        for (flag_level, flag_format, env, base, json) in cases {
            let env: BTreeMap<String, String> = env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let got = choose(*flag_level, *flag_format, &env, files);
            assert_eq!(
                got,
                LogSetup {
                    directives: format!("{base},{SPAN_TARGET}=info"),
                    json: *json
                },
                "{flag_level:?} {flag_format:?} {env:?}"
            );
        }
    }
}
