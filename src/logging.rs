//! Log lines on stderr: human text by default, or JSON objects in the Meltano SDK's structured
//! shape (`level`, `pid`, `logger_name`, `ts`, `thread_name`, `app_name`, `stream_name`,
//! `message`) with `--log-format json`, so Meltano can parse them.

use std::fmt;

use serde_json::{json, Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

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

/// Builds one SDK-shaped log object (pure, for tests).
pub fn sdk_line(
    level: &str,
    ts: f64,
    thread: &str,
    message: &str,
    extra: Map<String, Value>,
) -> Value {
    let stream = extra.get("stream").cloned().unwrap_or(Value::Null);
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
        _ctx: &FmtContext<'_, S, N>,
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
        let line = sdk_line(
            level_name(event.metadata().level()),
            ts,
            &thread,
            &fields.message,
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
        let line = sdk_line("info", 1.5, "main", "Syncing.", extra);
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
        assert_eq!(line["stream_name"], "measures");
        assert_eq!(
            sdk_line("warning", 0.0, "t", "m", Map::new())["stream_name"],
            Value::Null
        );
    }
}
