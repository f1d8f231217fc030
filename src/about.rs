//! `--about`: name, version, capabilities and the settings schema, as JSON or Markdown (the
//! README's settings table is generated from the Markdown form). Pure.

use serde_json::{json, Map, Value};

use crate::config::{Kind, Setting, SETTINGS};

/// Capabilities in the Meltano SDK's vocabulary. `structured-logging`: the tap writes the SDK's
/// JSON log lines when Meltano's `SINGER_SDK_LOG_CONFIG` asks for them (see `logging`), and
/// Meltano parses them.
pub const CAPABILITIES: &[&str] = &[
    "catalog",
    "discover",
    "state",
    "about",
    "test",
    "activate-version",
    "schema-flattening",
    "structured-logging",
    "stream-maps",
    "batch",
];

fn setting_schema(s: &Setting) -> Value {
    let mut p = Map::new();
    let (ty, format) = match s.kind {
        Kind::String => ("string", None),
        Kind::Integer => ("integer", None),
        Kind::Number => ("number", None),
        Kind::Boolean => ("boolean", None),
        Kind::DateTime => ("string", Some("date-time")),
        Kind::Array => ("array", None),
        Kind::Object => ("object", None),
    };
    p.insert("type".into(), json!(ty));
    if let Some(f) = format {
        p.insert("format".into(), json!(f));
    }
    // A default that depends on the environment is not a value Meltano could pass on: it
    // is told in the description instead.
    match s.default.filter(|d| d.starts_with('$')) {
        Some(d) => p.insert(
            "description".into(),
            json!(format!("{} Default: {d}.", s.description)),
        ),
        None => p.insert("description".into(), json!(s.description)),
    };
    if let Some(d) = s.default.filter(|d| !d.starts_with('$')) {
        let value = match s.kind {
            Kind::Integer => d
                .parse::<i64>()
                .map(Value::from)
                .unwrap_or_else(|_| json!(d)),
            Kind::Number => d
                .parse::<f64>()
                .map(Value::from)
                .unwrap_or_else(|_| json!(d)),
            Kind::Boolean => json!(d == "true"),
            _ => json!(d),
        };
        p.insert("default".into(), value);
    }
    if s.secret {
        p.insert("secret".into(), json!(true));
        p.insert("writeOnly".into(), json!(true));
    }
    Value::Object(p)
}

/// The `--about --format json` document.
pub fn about_json() -> Value {
    let properties: Map<String, Value> = SETTINGS
        .iter()
        .map(|s| (s.name.to_string(), setting_schema(s)))
        .collect();
    let required: Vec<&str> = SETTINGS
        .iter()
        .filter(|s| s.required)
        .map(|s| s.name)
        .collect();
    json!({
        "name": "tap-withings",
        "description": env!("CARGO_PKG_DESCRIPTION"),
        "version": env!("CARGO_PKG_VERSION"),
        "capabilities": CAPABILITIES,
        "settings": {"type": "object", "properties": properties, "required": required},
    })
}

/// The `--about --format markdown` document.
pub fn about_markdown() -> String {
    let mut md = format!(
        "# `tap-withings`\n\n{}\n\nVersion {}.\n\n## Capabilities\n\n",
        env!("CARGO_PKG_DESCRIPTION"),
        env!("CARGO_PKG_VERSION")
    );
    for c in CAPABILITIES {
        md.push_str(&format!("* `{c}`\n"));
    }
    md.push_str("\n## Settings\n\n| Setting | Required | Default | Description |\n|:--------|:--------:|:-------:|:------------|\n");
    for s in SETTINGS {
        let secret = if s.secret { " (secret)" } else { "" };
        md.push_str(&format!(
            "| {} | {} | {} | {}{} |\n",
            s.name,
            if s.required { "True" } else { "False" },
            s.default.unwrap_or("None"),
            s.description.replace('|', "\\|"),
            secret
        ));
    }
    md.push_str("\nEvery setting can also be given as an environment variable `TAP_WITHINGS_<SETTING>` (upper case), e.g. `TAP_WITHINGS_CLIENT_SECRET`.\n");
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn about_marks_secrets_and_required_settings() {
        let a = about_json();
        assert_eq!(a["name"], "tap-withings");
        assert_eq!(a["settings"]["properties"]["client_secret"]["secret"], true);
        assert_eq!(
            a["settings"]["properties"]["max_requests_per_minute"]["default"],
            120
        );
        assert_eq!(
            a["settings"]["properties"]["token_store"].get("default"),
            None
        );
        assert_eq!(
            a["settings"]["required"],
            json!(["client_id", "client_secret"])
        );
        for c in [
            "catalog",
            "discover",
            "state",
            "about",
            "test",
            "schema-flattening",
            "structured-logging",
            "stream-maps",
            "batch",
        ] {
            assert!(a["capabilities"].as_array().unwrap().contains(&json!(c)));
        }
    }

    #[test]
    fn markdown_lists_every_setting() {
        let md = about_markdown();
        for s in SETTINGS {
            assert!(md.contains(&format!("| {} |", s.name)), "{}", s.name);
        }
    }
}
