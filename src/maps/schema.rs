//! The SCHEMA of a mapped stream: what a property computed by an expression holds, read from
//! the expression's shape (as the SDK does, a little more precisely). Pure.

use serde_json::{json, Value};

use super::expr::Tok;

/// The parts of an expression that decide its type, in order: a chain of names and calls
/// (`datetime.datetime.fromisoformat(x).date()`), or `None` when the expression is anything
/// else at its top level (arithmetic, a comparison, ...).
#[derive(Debug, PartialEq)]
enum Shape {
    /// `a.b(..).c`: each segment's name and whether it is called.
    Chain(Vec<(String, bool)>),
    /// A single string literal.
    Literal,
    /// A comparison, `in`, `is`, `and`, `or` or `not` outside parentheses: a boolean.
    Boolean,
    Other,
}

fn shape(source: &str) -> Shape {
    // The expression's own tokens, a string literal as `'` (its text does not matter here).
    let Ok(tokens) = super::expr::tokens(source.trim()) else {
        return Shape::Other;
    };
    let toks: Vec<String> = tokens
        .into_iter()
        .map(|t| match t {
            Tok::Ident(name) | Tok::Num(name) => name,
            Tok::Str(_) => "'".into(),
            Tok::Op(op) => op.into(),
        })
        .collect();
    if toks.len() == 1 && toks[0] == "'" {
        return Shape::Literal;
    }
    let mut depth = 0i32;
    let mut top = Vec::new();
    for t in &toks {
        match t.as_str() {
            "(" | "[" => depth += 1,
            ")" | "]" => depth -= 1,
            _ if depth == 0 => top.push(t.as_str()),
            _ => {}
        }
    }
    if top.iter().any(|t| {
        [
            "==", "!=", "<", "<=", ">", ">=", "and", "or", "not", "in", "is",
        ]
        .contains(t)
    }) {
        return Shape::Boolean;
    }
    // A chain: name [(...)] (. name [(...)])*
    let mut segments = Vec::new();
    let mut k = 0;
    loop {
        let Some(name) = toks.get(k) else {
            return Shape::Other;
        };
        if !name.starts_with(|c: char| c.is_alphabetic() || c == '_') {
            return Shape::Other;
        }
        k += 1;
        let mut called = false;
        if toks.get(k).map(String::as_str) == Some("(") {
            called = true;
            let mut depth = 0;
            while let Some(t) = toks.get(k) {
                match t.as_str() {
                    "(" | "[" => depth += 1,
                    ")" | "]" => depth -= 1,
                    _ => {}
                }
                k += 1;
                if depth == 0 {
                    break;
                }
            }
        }
        segments.push((name.clone(), called));
        match toks.get(k).map(String::as_str) {
            None => return Shape::Chain(segments),
            Some(".") => k += 1,
            Some(_) => return Shape::Other,
        }
    }
}

fn string() -> Value {
    json!({"type": "string"})
}

/// The schema of a property computed by `source`. `existing` finds the schema of a property
/// of the stream by name (before the map), `stream_schema` is the whole record's.
/// Anything whose type cannot be read from its shape is `{}` (any value): wrap it in
/// `str()`, `int()`, `float()` or `bool()` to type it.
pub fn infer(
    source: &str,
    prop: &str,
    existing: impl Fn(&str) -> Option<Value>,
    stream_schema: &Value,
) -> Value {
    let segments = match shape(source) {
        Shape::Literal => return string(),
        Shape::Boolean => return json!({"type": "boolean"}),
        Shape::Other => return json!({}),
        Shape::Chain(s) => s,
    };
    let names: Vec<&str> = segments.iter().map(|(n, _)| n.as_str()).collect();
    let (last, last_called) = segments
        .last()
        .map(|(n, c)| (n.as_str(), *c))
        .unwrap_or(("", false));
    if segments.len() == 1 {
        return match (last, last_called) {
            ("md5" | "sha256" | "str", true) => string(),
            ("int" | "len", true) => json!({"type": "integer"}),
            ("float" | "round", true) => json!({"type": "number"}),
            ("bool", true) => json!({"type": "boolean"}),
            ("record" | "_", false) => stream_schema.clone(),
            ("self", false) => existing(prop).unwrap_or_else(|| json!({})),
            (name, false) => existing(name).unwrap_or_else(|| json!({})),
            _ => json!({}),
        };
    }
    match (last, last_called) {
        ("isoformat" | "strftime" | "lower" | "upper" | "strip" | "replace", true) => {
            return string()
        }
        ("dumps", true) if names[0] == "json" => return string(),
        ("startswith" | "endswith", true) => return json!({"type": "boolean"}),
        ("timestamp", true) => return json!({"type": "number"}),
        ("date", true) => return json!({"type": "string", "format": "date"}),
        ("year" | "month" | "day" | "hour" | "minute" | "second" | "microsecond", false) => {
            return json!({"type": "integer"})
        }
        _ => {}
    }
    if names.len() == 3 && names[0] == "datetime" {
        match (names[1], last) {
            ("datetime", "fromisoformat" | "fromtimestamp" | "strptime") => {
                return json!({"type": "string", "format": "date-time"})
            }
            ("date", "fromisoformat") => return json!({"type": "string", "format": "date"}),
            _ => {}
        }
    }
    json!({})
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    fn infer_one(source: &str) -> Value {
        let existing = |name: &str| match name {
            "weight" => Some(json!({"type": ["number", "null"]})),
            _ => None,
        };
        infer(source, "weight", existing, &json!({"type": "object"}))
    }

    #[test]
    fn types_follow_the_expression() {
        let s = json!({"type": "string"});
        for (source, expected) in [
            ("md5(config['salt'] + str(userid))", s.clone()),
            ("sha256(x)", s.clone()),
            ("str(userid)", s.clone()),
            ("'constant'", s.clone()),
            ("int(weight)", json!({"type": "integer"})),
            ("float(x)", json!({"type": "number"})),
            ("round(x, 2)", json!({"type": "number"})),
            ("bool(x)", json!({"type": "boolean"})),
            ("x > 3 and y", json!({"type": "boolean"})),
            ("'a' in name", json!({"type": "boolean"})),
            ("x is None", json!({"type": "boolean"})),
            ("weight", json!({"type": ["number", "null"]})),
            ("self", json!({"type": ["number", "null"]})),
            ("record", json!({"type": "object"})),
            ("unknown_name", json!({})),
            ("weight * 2", json!({})),
            ("int(x) + 0.5", json!({})),
            ("str(x) + 'a'", json!({})),
            ("name.lower()", s.clone()),
            ("json.dumps(record)", s.clone()),
            (
                "datetime.datetime.fromisoformat(at)",
                json!({"type": "string", "format": "date-time"}),
            ),
            (
                "datetime.datetime.fromisoformat(at).date()",
                json!({"type": "string", "format": "date"}),
            ),
            (
                "datetime.date.fromisoformat(d)",
                json!({"type": "string", "format": "date"}),
            ),
            (
                "datetime.datetime.fromisoformat(at).strftime('%Y')",
                s.clone(),
            ),
            (
                "datetime.datetime.fromisoformat(at).year",
                json!({"type": "integer"}),
            ),
            (
                "datetime.datetime.fromisoformat(at).timestamp()",
                json!({"type": "number"}),
            ),
            ("(x == 1)", json!({})),
        ] {
            assert_eq!(infer_one(source), expected, "{source}");
        }
    }
}
