//! Map expressions: the Meltano SDK's Python-style expression strings (which the SDK gives to
//! simpleeval) compiled by [rhai](https://rhai.rs) and evaluated over a record. Pure.
//!
//! An expression is first rewritten token by token into rhai (`and` → `&&`, `None` → `()`,
//! `'text'` → `"text"`, ...). Every name it uses is renamed into a namespace of its own —
//! variables `__v_x`, functions `__f_md5(..)`, methods `.__m_isoformat()`, attributes
//! `.__a_datetime()` — so only what this module registers can be called: rhai's own functions
//! are out of reach, an unknown function is a config error before the run, and what an
//! expression can do is bounded (no statements, no loops, an operation limit).

use std::collections::BTreeSet;
use std::sync::OnceLock;

use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, NaiveDateTime, Timelike};
use md5::Digest as _;
use rhai::{Dynamic, Engine, EvalAltResult, ImmutableString, Scope, AST, FLOAT, INT};
use serde_json::{Map, Number, Value};

/// Functions an expression may call, as the SDK names them.
pub const FUNCTIONS: &[&str] = &[
    "md5", "sha256", "str", "int", "float", "round", "bool", "len", "abs", "min", "max",
];

/// Methods (`value.name(...)`): of strings, of `datetime` values, of the `json` and
/// `datetime` modules.
pub const METHODS: &[&str] = &[
    "lower",
    "upper",
    "strip",
    "replace",
    "startswith",
    "endswith",
    "isoformat",
    "strftime",
    "timestamp",
    "date",
    "fromisoformat",
    "fromtimestamp",
    "strptime",
    "dumps",
    "loads",
];

/// Attributes (`value.name`): `datetime.datetime`, `datetime.date` and the parts of a date.
pub const ATTRIBUTES: &[&str] = &[
    "datetime",
    "date",
    "year",
    "month",
    "day",
    "hour",
    "minute",
    "second",
    "microsecond",
];

/// Names every expression can use besides the record's properties.
pub const BUILTIN_NAMES: &[&str] = &[
    "_",
    "record",
    "config",
    "self",
    "datetime",
    "json",
    "__stream_name__",
    "__original_stream_name__",
];

/// A compiled expression.
#[derive(Debug, Clone)]
pub struct Expr {
    source: String,
    ast: AST,
    /// The free names it reads (record properties or [`BUILTIN_NAMES`]).
    names: BTreeSet<String>,
}

impl Expr {
    /// Compiles an expression; the error says what is wrong with it (unknown function,
    /// unsupported syntax, ...).
    pub fn compile(source: &str) -> Result<Expr, String> {
        let (rhai_source, names) = translate(source)?;
        if rhai_source.trim().is_empty() {
            return Err("the expression is empty".into());
        }
        let ast = engine()
            .compile_expression(&rhai_source)
            .map_err(|e| format!("cannot parse `{source}`: {}", clean(&e.to_string())))?;
        Ok(Expr {
            source: source.to_string(),
            ast,
            names,
        })
    }

    /// The expression as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The free names it reads.
    pub fn names(&self) -> &BTreeSet<String> {
        &self.names
    }

    /// Evaluates it with the variables of `scope` (see [`Names`]).
    pub fn eval(&self, names: &mut Names) -> Result<Value, String> {
        let result = engine()
            .eval_ast_with_scope::<Dynamic>(&mut names.scope, &self.ast)
            .map_err(|e| format!("`{}` failed: {}", self.source, clean(&e.to_string())))?;
        to_json(&result).map_err(|why| format!("`{}` {why}", self.source))
    }
}

/// The variables an expression sees: the record's properties, `_`/`record`, `config`,
/// `self`, the stream names and the modules.
pub struct Names {
    scope: Scope<'static>,
}

impl Names {
    /// Variables for one record. Only the names in `used` are set (what the stream's
    /// expressions read); `properties` are the names the schema declares, absent ones are
    /// `None`.
    pub fn new(
        record: &Map<String, Value>,
        used: &BTreeSet<String>,
        config: &Dynamic,
        stream: &str,
        original: &str,
    ) -> Names {
        let mut scope = Scope::new();
        for name in used {
            let value = match name.as_str() {
                "_" | "record" => Dynamic::from_map(to_map(record)),
                "config" => config.clone(),
                "self" => Dynamic::UNIT,
                "datetime" => Dynamic::from(DatetimeModule),
                "json" => Dynamic::from(JsonModule),
                "__stream_name__" => Dynamic::from(stream.to_string()),
                "__original_stream_name__" => Dynamic::from(original.to_string()),
                prop => record.get(prop).map_or(Dynamic::UNIT, to_dynamic),
            };
            scope.push_dynamic(var(name), value);
        }
        Names { scope }
    }

    /// Sets `self` (the property's value before the map) for the next expression.
    pub fn set_self(&mut self, value: Option<&Value>) {
        let value = value.map_or(Dynamic::UNIT, to_dynamic);
        self.scope.set_or_push("__v_self", value);
    }
}

fn var(name: &str) -> String {
    format!("__v_{name}")
}

/// Removes the namespace prefixes from an engine message.
fn clean(message: &str) -> String {
    message
        .replace("__v_", "")
        .replace("__f_", "")
        .replace("__m_", "")
        .replace("__a_", "")
}

/// One token of the Python-style source.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Tok {
    Ident(String),
    Str(String),
    Num(String),
    Op(&'static str),
}

const OPS: &[&str] = &[
    "**", "==", "!=", "<=", ">=", "//", "+", "-", "*", "/", "%", "<", ">", "(", ")", "[", "]", ",",
    ".", "&", "|", "^",
];

pub(super) fn tokens(source: &str) -> Result<Vec<Tok>, String> {
    let chars: Vec<char> = source.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '\'' || c == '"' {
            let mut text = String::new();
            i += 1;
            loop {
                let Some(&ch) = chars.get(i) else {
                    return Err(format!("unterminated string in `{source}`"));
                };
                i += 1;
                if ch == c {
                    break;
                }
                if ch != '\\' {
                    text.push(ch);
                    continue;
                }
                let Some(&esc) = chars.get(i) else {
                    return Err(format!("unterminated string in `{source}`"));
                };
                i += 1;
                match esc {
                    'n' => text.push('\n'),
                    't' => text.push('\t'),
                    'r' => text.push('\r'),
                    '\\' | '\'' | '"' => text.push(esc),
                    other => {
                        text.push('\\');
                        text.push(other);
                    }
                }
            }
            out.push(Tok::Str(text));
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            let start = i;
            while i < chars.len() {
                let ch = chars[i];
                let exponent_sign = (ch == '+' || ch == '-')
                    && matches!(chars.get(i.wrapping_sub(1)), Some('e' | 'E'));
                if ch.is_ascii_alphanumeric() || ch == '.' || ch == '_' || exponent_sign {
                    i += 1;
                } else {
                    break;
                }
            }
            let text: String = chars[start..i].iter().filter(|&&ch| ch != '_').collect();
            let text = if text.chars().all(|ch| ch.is_ascii_digit()) {
                text
            } else {
                // A float: written out in full, the form rhai reads (`.5`, `1.`, `1e3` are not).
                let f: f64 = text
                    .parse()
                    .map_err(|_| format!("bad number `{text}` in `{source}`"))?;
                let full = format!("{f}");
                if full.contains('.') || !f.is_finite() {
                    full
                } else {
                    format!("{full}.0")
                }
            };
            out.push(Tok::Num(text));
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            if matches!(chars.get(i), Some('\'' | '"')) {
                return Err(format!(
                    "string prefixes (`{word}'...'`, f-strings) are not supported in `{source}`"
                ));
            }
            out.push(Tok::Ident(word));
        } else {
            let rest: String = chars[i..chars.len().min(i + 2)].iter().collect();
            let Some(op) = OPS.iter().find(|op| rest.starts_with(**op)) else {
                return Err(format!("unexpected `{c}` in `{source}`"));
            };
            i += op.chars().count();
            out.push(Tok::Op(op));
        }
    }
    Ok(out)
}

/// Rewrites a Python-style expression into namespaced rhai; returns it and the free names.
fn translate(source: &str) -> Result<(String, BTreeSet<String>), String> {
    let toks = tokens(source)?;
    let mut out = String::new();
    let mut names = BTreeSet::new();
    for (i, tok) in toks.iter().enumerate() {
        let after_dot = i > 0 && toks[i - 1] == Tok::Op(".");
        let called = toks.get(i + 1) == Some(&Tok::Op("("));
        let piece = match tok {
            Tok::Str(text) => {
                let mut quoted = String::from("\"");
                for ch in text.chars() {
                    match ch {
                        '"' => quoted.push_str("\\\""),
                        '\\' => quoted.push_str("\\\\"),
                        '\n' => quoted.push_str("\\n"),
                        '\t' => quoted.push_str("\\t"),
                        '\r' => quoted.push_str("\\r"),
                        other => quoted.push(other),
                    }
                }
                quoted.push('"');
                quoted
            }
            Tok::Num(text) => text.clone(),
            Tok::Op("//") => {
                return Err(format!(
                    "`//` is not supported in `{source}` (use int(a / b))"
                ))
            }
            Tok::Op(op) => (*op).to_string(),
            Tok::Ident(word) if after_dot => {
                if called {
                    if !METHODS.contains(&word.as_str()) {
                        return Err(format!(
                            "unknown method `.{word}()` in `{source}` (available: {})",
                            METHODS.join(", ")
                        ));
                    }
                    format!("__m_{word}")
                } else {
                    if !ATTRIBUTES.contains(&word.as_str()) {
                        return Err(format!(
                            "unknown attribute `.{word}` in `{source}` (use `x['{word}']` for a key)"
                        ));
                    }
                    format!("__a_{word}()")
                }
            }
            Tok::Ident(word) => match word.as_str() {
                "and" => "&&".into(),
                "or" => "||".into(),
                "not" => "!".into(),
                "in" => "in".into(),
                "is" if toks.get(i + 1) == Some(&Tok::Ident("not".into())) => "!=".into(),
                "is" => "==".into(),
                "True" => "true".into(),
                "False" => "false".into(),
                "None" => "()".into(),
                "if" | "else" | "lambda" | "for" | "while" | "import" | "def" | "class" => {
                    return Err(format!(
                        "`{word}` is not supported in `{source}` (conditional expressions, comprehensions and statements are not available)"
                    ))
                }
                _ if called => {
                    if !FUNCTIONS.contains(&word.as_str()) {
                        let hint = if word == "fake" {
                            " (faker is not available in this tap)".to_string()
                        } else {
                            format!(" (available: {})", FUNCTIONS.join(", "))
                        };
                        return Err(format!("unknown function `{word}` in `{source}`{hint}"));
                    }
                    format!("__f_{word}")
                }
                "fake" => {
                    return Err(format!(
                        "`fake` is not available in this tap (no faker) in `{source}`"
                    ))
                }
                _ => {
                    names.insert(word.clone());
                    var(word)
                }
            },
        };
        // `is not` → `!=`: the `not` is consumed.
        if let (Tok::Ident(w), Some(Tok::Ident(prev))) = (tok, i.checked_sub(1).map(|p| &toks[p])) {
            if w == "not" && prev == "is" {
                continue;
            }
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&piece);
    }
    // `a not in b` became `a ! in b`: rhai spells it `!in`.
    let out = out.replace("! in ", "!in ");
    Ok((out, names))
}

fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(build_engine)
}

type Fallible<T> = Result<T, Box<EvalAltResult>>;

fn fail<T>(message: String) -> Fallible<T> {
    Err(message.into())
}

/// The `json` module.
#[derive(Debug, Clone, Copy)]
struct JsonModule;
/// The `datetime` module.
#[derive(Debug, Clone, Copy)]
struct DatetimeModule;
/// `datetime.datetime`.
#[derive(Debug, Clone, Copy)]
struct DatetimeClass;
/// `datetime.date`.
#[derive(Debug, Clone, Copy)]
struct DateClass;

/// A `datetime.datetime`: naive or with an offset.
#[derive(Debug, Clone, Copy, PartialEq)]
struct PyDateTime {
    local: NaiveDateTime,
    offset: Option<FixedOffset>,
}

impl PyDateTime {
    /// The instant, a naive value taken as UTC.
    fn utc(&self) -> NaiveDateTime {
        match self.offset {
            Some(o) => self.local - chrono::Duration::seconds(i64::from(o.local_minus_utc())),
            None => self.local,
        }
    }

    /// Python's `isoformat()`.
    fn isoformat(&self) -> String {
        let mut text = if self.local.nanosecond() / 1000 == 0 {
            self.local.format("%Y-%m-%dT%H:%M:%S").to_string()
        } else {
            self.local.format("%Y-%m-%dT%H:%M:%S%.6f").to_string()
        };
        if let Some(o) = self.offset {
            text.push_str(&o.to_string());
        }
        text
    }

    /// As a record value: RFC 3339 (a naive value taken as UTC).
    fn to_json_text(self) -> String {
        let aware = PyDateTime {
            offset: Some(self.offset.unwrap_or_else(utc_offset)),
            ..self
        };
        aware.isoformat()
    }
}

fn utc_offset() -> FixedOffset {
    // Zero is always a valid offset.
    FixedOffset::east_opt(0).unwrap_or_else(|| unreachable!())
}

/// A `datetime.date`.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
struct PyDate(NaiveDate);

fn parse_iso_datetime(text: &str) -> Fallible<PyDateTime> {
    let t = text.trim();
    if let Ok(dt) = DateTime::parse_from_rfc3339(t) {
        return Ok(PyDateTime {
            local: dt.naive_local(),
            offset: Some(*dt.offset()),
        });
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f%:z", "%Y-%m-%d %H:%M:%S%.f%:z"] {
        if let Ok(dt) = DateTime::parse_from_str(t, fmt) {
            return Ok(PyDateTime {
                local: dt.naive_local(),
                offset: Some(*dt.offset()),
            });
        }
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(local) = NaiveDateTime::parse_from_str(t, fmt) {
            return Ok(PyDateTime {
                local,
                offset: None,
            });
        }
    }
    if let Ok(date) = NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        return Ok(PyDateTime {
            local: date.and_time(chrono::NaiveTime::MIN),
            offset: None,
        });
    }
    fail(format!("invalid isoformat string: '{text}'"))
}

/// Python's `str()`.
fn py_str(value: &Dynamic) -> String {
    if value.is_unit() {
        return "None".into();
    }
    if let Some(b) = value.clone().try_cast::<bool>() {
        return if b { "True" } else { "False" }.into();
    }
    if let Some(f) = value.clone().try_cast::<FLOAT>() {
        return py_float(f);
    }
    if let Some(dt) = value.clone().try_cast::<PyDateTime>() {
        return dt.isoformat().replacen('T', " ", 1);
    }
    if let Some(d) = value.clone().try_cast::<PyDate>() {
        return d.0.format("%Y-%m-%d").to_string();
    }
    if value.is_string() || value.is_int() || value.is_char() {
        return value.to_string();
    }
    match to_json(value) {
        Ok(v) => v.to_string(),
        Err(_) => value.to_string(),
    }
}

/// Python's `repr` of a float: shortest round trip, `.0` on whole numbers, exponent form
/// outside 1e-4..1e16.
fn py_float(f: FLOAT) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf" } else { "-inf" }.into();
    }
    let abs = f.abs();
    if abs != 0.0 && !(1e-4..1e16).contains(&abs) {
        let text = format!("{f:e}");
        let (mantissa, exp) = text.split_once('e').unwrap_or((&text, "0"));
        let exp: i32 = exp.parse().unwrap_or(0);
        let sign = if exp < 0 { '-' } else { '+' };
        return format!("{mantissa}e{sign}{:02}", exp.abs());
    }
    let text = format!("{f}");
    if text.contains('.') {
        text
    } else {
        format!("{text}.0")
    }
}

fn py_int(value: &Dynamic) -> Fallible<INT> {
    if let Some(i) = value.clone().try_cast::<INT>() {
        return Ok(i);
    }
    if let Some(b) = value.clone().try_cast::<bool>() {
        return Ok(INT::from(b));
    }
    if let Some(f) = value.clone().try_cast::<FLOAT>() {
        if f.is_finite() && f.abs() < 9.2e18 {
            return Ok(f.trunc() as INT);
        }
        return fail(format!("cannot convert float {} to integer", py_float(f)));
    }
    if let Some(s) = value.clone().try_cast::<ImmutableString>() {
        return s.trim().replace('_', "").parse().or_else(|_| {
            fail(format!(
                "invalid literal for int() with base 10: '{}'",
                s.as_str()
            ))
        });
    }
    fail(format!(
        "int() argument must be a string or a number, not {}",
        type_name(value)
    ))
}

fn py_float_of(value: &Dynamic) -> Fallible<FLOAT> {
    if let Some(f) = value.clone().try_cast::<FLOAT>() {
        return Ok(f);
    }
    if let Some(i) = value.clone().try_cast::<INT>() {
        return Ok(i as FLOAT);
    }
    if let Some(b) = value.clone().try_cast::<bool>() {
        return Ok(if b { 1.0 } else { 0.0 });
    }
    if let Some(s) = value.clone().try_cast::<ImmutableString>() {
        return s.trim().parse().or_else(|_| {
            fail(format!(
                "could not convert string to float: '{}'",
                s.as_str()
            ))
        });
    }
    fail(format!(
        "float() argument must be a string or a number, not {}",
        type_name(value)
    ))
}

/// Python's truthiness.
fn py_bool(value: &Dynamic) -> bool {
    if value.is_unit() {
        return false;
    }
    if let Some(b) = value.clone().try_cast::<bool>() {
        return b;
    }
    if let Some(i) = value.clone().try_cast::<INT>() {
        return i != 0;
    }
    if let Some(f) = value.clone().try_cast::<FLOAT>() {
        return f != 0.0;
    }
    if let Some(s) = value.clone().try_cast::<ImmutableString>() {
        return !s.is_empty();
    }
    if let Some(a) = value.read_lock::<rhai::Array>() {
        return !a.is_empty();
    }
    if let Some(m) = value.read_lock::<rhai::Map>() {
        return !m.is_empty();
    }
    true
}

fn type_name(value: &Dynamic) -> &'static str {
    if value.is_unit() {
        "NoneType"
    } else if value.is_string() {
        "str"
    } else if value.is_int() {
        "int"
    } else if value.is_float() {
        "float"
    } else if value.is_bool() {
        "bool"
    } else if value.is_array() {
        "list"
    } else if value.is_map() {
        "dict"
    } else {
        "object"
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn number(value: &Dynamic) -> Option<FLOAT> {
    if let Some(i) = value.clone().try_cast::<INT>() {
        return Some(i as FLOAT);
    }
    value.clone().try_cast::<FLOAT>()
}

fn pick(a: Dynamic, b: Dynamic, want_max: bool) -> Fallible<Dynamic> {
    let first_wins = match (number(&a), number(&b)) {
        (Some(x), Some(y)) => (x >= y) == want_max,
        _ => match (
            a.clone().try_cast::<ImmutableString>(),
            b.clone().try_cast::<ImmutableString>(),
        ) {
            (Some(x), Some(y)) => (x >= y) == want_max,
            _ => {
                return fail(format!(
                    "cannot compare {} and {}",
                    type_name(&a),
                    type_name(&b)
                ))
            }
        },
    };
    Ok(if first_wins { a } else { b })
}

fn build_engine() -> Engine {
    let mut e = Engine::new();
    e.set_max_operations(100_000);
    e.set_max_string_size(1 << 20);
    e.set_max_array_size(100_000);
    e.set_max_map_size(100_000);
    e.set_max_expr_depths(64);
    // `/` of two integers gives a float, as in Python: the overload needs the operator table.
    e.set_fast_operators(false);
    e.register_fn("/", |a: INT, b: INT| -> Fallible<FLOAT> {
        if b == 0 {
            return fail("division by zero".into());
        }
        Ok(a as FLOAT / b as FLOAT)
    });
    e.register_type_with_name::<JsonModule>("json")
        .register_type_with_name::<DatetimeModule>("datetime")
        .register_type_with_name::<DatetimeClass>("datetime.datetime")
        .register_type_with_name::<DateClass>("datetime.date")
        .register_type_with_name::<PyDateTime>("datetime")
        .register_type_with_name::<PyDate>("date");

    e.register_fn("__f_md5", |x: Dynamic| hex(&md5::Md5::digest(py_str(&x))));
    e.register_fn("__f_sha256", |x: Dynamic| {
        hex(&sha2::Sha256::digest(py_str(&x)))
    });
    e.register_fn("__f_str", |x: Dynamic| py_str(&x));
    e.register_fn("__f_int", |x: Dynamic| py_int(&x));
    e.register_fn("__f_float", |x: Dynamic| py_float_of(&x));
    e.register_fn("__f_bool", |x: Dynamic| py_bool(&x));
    e.register_fn("__f_round", |x: Dynamic| -> Fallible<INT> {
        match x.clone().try_cast::<INT>() {
            Some(i) => Ok(i),
            None => py_int(&Dynamic::from(py_float_of(&x)?.round_ties_even())),
        }
    });
    e.register_fn("__f_round", |x: Dynamic, digits: INT| -> Fallible<FLOAT> {
        let f = py_float_of(&x)?;
        let scale = 10f64.powi(digits.clamp(-300, 300) as i32);
        Ok((f * scale).round_ties_even() / scale)
    });
    e.register_fn("__f_len", |x: Dynamic| -> Fallible<INT> {
        if let Some(s) = x.clone().try_cast::<ImmutableString>() {
            return Ok(s.chars().count() as INT);
        }
        if let Some(a) = x.read_lock::<rhai::Array>() {
            return Ok(a.len() as INT);
        }
        if let Some(m) = x.read_lock::<rhai::Map>() {
            return Ok(m.len() as INT);
        }
        fail(format!("object of type '{}' has no len()", type_name(&x)))
    });
    e.register_fn("__f_abs", |x: Dynamic| -> Fallible<Dynamic> {
        if let Some(i) = x.clone().try_cast::<INT>() {
            return Ok(Dynamic::from(i.wrapping_abs()));
        }
        if let Some(f) = x.clone().try_cast::<FLOAT>() {
            return Ok(Dynamic::from(f.abs()));
        }
        fail(format!("bad operand type for abs(): '{}'", type_name(&x)))
    });
    e.register_fn("__f_min", |a: Dynamic, b: Dynamic| pick(a, b, false));
    e.register_fn("__f_max", |a: Dynamic, b: Dynamic| pick(a, b, true));

    e.register_fn("__m_lower", |s: &str| s.to_lowercase());
    e.register_fn("__m_upper", |s: &str| s.to_uppercase());
    e.register_fn("__m_strip", |s: &str| s.trim().to_string());
    e.register_fn("__m_replace", |s: &str, from: &str, to: &str| {
        s.replace(from, to)
    });
    e.register_fn("__m_startswith", |s: &str, p: &str| s.starts_with(p));
    e.register_fn("__m_endswith", |s: &str, p: &str| s.ends_with(p));

    e.register_fn(
        "__m_dumps",
        |_: JsonModule, x: Dynamic| -> Fallible<String> {
            to_json(&x)
                .map(|v| py_json_dumps(&v))
                .or_else(|why| fail(format!("json.dumps: value {why}")))
        },
    );
    e.register_fn("__m_loads", |_: JsonModule, s: &str| -> Fallible<Dynamic> {
        serde_json::from_str::<Value>(s)
            .map(|v| to_dynamic(&v))
            .or_else(|err| fail(format!("json.loads: {err}")))
    });

    e.register_fn("__a_datetime", |_: DatetimeModule| DatetimeClass);
    e.register_fn("__a_date", |_: DatetimeModule| DateClass);
    e.register_fn("__m_fromisoformat", |_: DatetimeClass, s: &str| {
        parse_iso_datetime(s)
    });
    e.register_fn(
        "__m_fromisoformat",
        |_: DateClass, s: &str| -> Fallible<PyDate> {
            NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
                .map(PyDate)
                .or_else(|_| fail(format!("invalid isoformat string: '{s}'")))
        },
    );
    e.register_fn(
        "__m_fromtimestamp",
        |_: DatetimeClass, ts: Dynamic| -> Fallible<PyDateTime> {
            let secs = py_float_of(&ts)?;
            let whole = secs.floor();
            let nanos = ((secs - whole) * 1e9).round() as u32;
            DateTime::from_timestamp(whole as i64, nanos.min(999_999_999))
                .map(|dt| PyDateTime {
                    local: dt.naive_utc(),
                    offset: None,
                })
                .map_or_else(|| fail(format!("timestamp {secs} out of range")), Ok)
        },
    );
    e.register_fn(
        "__m_strptime",
        |_: DatetimeClass, s: &str, fmt: &str| -> Fallible<PyDateTime> {
            if let Ok(dt) = DateTime::parse_from_str(s, fmt) {
                return Ok(PyDateTime {
                    local: dt.naive_local(),
                    offset: Some(*dt.offset()),
                });
            }
            if let Ok(local) = NaiveDateTime::parse_from_str(s, fmt) {
                return Ok(PyDateTime {
                    local,
                    offset: None,
                });
            }
            NaiveDate::parse_from_str(s, fmt)
                .map(|d| PyDateTime {
                    local: d.and_time(chrono::NaiveTime::MIN),
                    offset: None,
                })
                .or_else(|_| fail(format!("time data '{s}' does not match format '{fmt}'")))
        },
    );
    e.register_fn("__m_isoformat", |d: PyDateTime| d.isoformat());
    e.register_fn("__m_isoformat", |d: PyDate| {
        d.0.format("%Y-%m-%d").to_string()
    });
    e.register_fn("__m_date", |d: PyDateTime| PyDate(d.local.date()));
    e.register_fn("__m_timestamp", |d: PyDateTime| {
        let utc = d.utc().and_utc();
        utc.timestamp() as FLOAT + f64::from(utc.timestamp_subsec_nanos()) / 1e9
    });
    e.register_fn(
        "__m_strftime",
        |d: PyDateTime, fmt: &str| -> Fallible<String> {
            strftime(fmt, |f| match d.offset {
                Some(o) => d
                    .local
                    .and_local_timezone(o)
                    .single()
                    .map(|t| t.format(f).to_string()),
                None => Some(d.local.format(f).to_string()),
            })
        },
    );
    e.register_fn("__m_strftime", |d: PyDate, fmt: &str| -> Fallible<String> {
        strftime(fmt, |f| Some(d.0.format(f).to_string()))
    });
    e.register_fn("__a_year", |d: PyDateTime| INT::from(d.local.year()));
    e.register_fn("__a_month", |d: PyDateTime| INT::from(d.local.month()));
    e.register_fn("__a_day", |d: PyDateTime| INT::from(d.local.day()));
    e.register_fn("__a_hour", |d: PyDateTime| INT::from(d.local.hour()));
    e.register_fn("__a_minute", |d: PyDateTime| INT::from(d.local.minute()));
    e.register_fn("__a_second", |d: PyDateTime| INT::from(d.local.second()));
    e.register_fn("__a_microsecond", |d: PyDateTime| {
        INT::from(d.local.nanosecond() / 1000)
    });
    e.register_fn("__a_year", |d: PyDate| INT::from(d.0.year()));
    e.register_fn("__a_month", |d: PyDate| INT::from(d.0.month()));
    e.register_fn("__a_day", |d: PyDate| INT::from(d.0.day()));
    macro_rules! compare {
        ($ty:ty, $key:expr) => {
            e.register_fn("==", |a: $ty, b: $ty| $key(&a) == $key(&b));
            e.register_fn("!=", |a: $ty, b: $ty| $key(&a) != $key(&b));
            e.register_fn("<", |a: $ty, b: $ty| $key(&a) < $key(&b));
            e.register_fn("<=", |a: $ty, b: $ty| $key(&a) <= $key(&b));
            e.register_fn(">", |a: $ty, b: $ty| $key(&a) > $key(&b));
            e.register_fn(">=", |a: $ty, b: $ty| $key(&a) >= $key(&b));
        };
    }
    compare!(PyDateTime, PyDateTime::utc);
    compare!(PyDate, |d: &PyDate| d.0);
    e
}

/// Formats with a Python strftime pattern (chrono's specifiers are Python's for the common
/// ones); a pattern chrono cannot format is an error, not a panic.
fn strftime(fmt: &str, format: impl FnOnce(&str) -> Option<String>) -> Fallible<String> {
    use chrono::format::{Item, StrftimeItems};
    if StrftimeItems::new(fmt).any(|i| matches!(i, Item::Error)) {
        return fail(format!("bad strftime format '{fmt}'"));
    }
    format(fmt).map_or_else(|| fail(format!("cannot format with '{fmt}'")), Ok)
}

/// `json.dumps` with Python's default separators (`", "`, `": "`).
fn py_json_dumps(v: &Value) -> String {
    match v {
        Value::Array(items) => format!(
            "[{}]",
            items
                .iter()
                .map(py_json_dumps)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Value::Object(map) => format!(
            "{{{}}}",
            map.iter()
                .map(|(k, v)| format!("{}: {}", Value::String(k.clone()), py_json_dumps(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => other.to_string(),
    }
}

/// A JSON value as an engine value.
pub fn to_dynamic(v: &Value) -> Dynamic {
    match v {
        Value::Null => Dynamic::UNIT,
        Value::Bool(b) => Dynamic::from(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Dynamic::from(i),
            None => Dynamic::from(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => Dynamic::from(s.clone()),
        Value::Array(items) => Dynamic::from_array(items.iter().map(to_dynamic).collect()),
        Value::Object(map) => Dynamic::from_map(to_map(map)),
    }
}

fn to_map(map: &Map<String, Value>) -> rhai::Map {
    map.iter()
        .map(|(k, v)| (k.as_str().into(), to_dynamic(v)))
        .collect()
}

/// An engine value as JSON; the error says why it cannot be one.
pub fn to_json(d: &Dynamic) -> Result<Value, String> {
    if d.is_unit() {
        return Ok(Value::Null);
    }
    if let Some(b) = d.clone().try_cast::<bool>() {
        return Ok(Value::Bool(b));
    }
    if let Some(i) = d.clone().try_cast::<INT>() {
        return Ok(Value::from(i));
    }
    if let Some(f) = d.clone().try_cast::<FLOAT>() {
        return Number::from_f64(f)
            .map(Value::Number)
            .ok_or_else(|| format!("gave {}, which JSON cannot hold", py_float(f)));
    }
    if let Some(s) = d.clone().try_cast::<ImmutableString>() {
        return Ok(Value::String(s.to_string()));
    }
    if let Some(c) = d.clone().try_cast::<char>() {
        return Ok(Value::String(c.to_string()));
    }
    if let Some(dt) = d.clone().try_cast::<PyDateTime>() {
        return Ok(Value::String(dt.to_json_text()));
    }
    if let Some(date) = d.clone().try_cast::<PyDate>() {
        return Ok(Value::String(date.0.format("%Y-%m-%d").to_string()));
    }
    if let Some(items) = d.read_lock::<rhai::Array>() {
        return items
            .iter()
            .map(to_json)
            .collect::<Result<_, _>>()
            .map(Value::Array);
    }
    if let Some(map) = d.read_lock::<rhai::Map>() {
        return map
            .iter()
            .map(|(k, v)| Ok((k.to_string(), to_json(v)?)))
            .collect::<Result<Map<_, _>, String>>()
            .map(Value::Object);
    }
    Err(format!(
        "gave a {}, which is no record value",
        clean(d.type_name())
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;
    use serde_json::json;

    fn eval_with(source: &str, record: Value, config: Value) -> Result<Value, String> {
        let expr = Expr::compile(source)?;
        let record = record.as_object().unwrap().clone();
        let mut names = Names::new(&record, expr.names(), &to_dynamic(&config), "s", "orig");
        names.set_self(record.get("me"));
        expr.eval(&mut names)
    }

    fn eval(source: &str) -> Value {
        eval_with(
            source,
            json!({"userid": 123, "w": 72.5, "name": "Ab", "at": "2024-03-01T10:20:30Z", "me": 5, "none": null}),
            json!({"salt": "pepper"}),
        )
        .unwrap_or_else(|e| panic!("{source}: {e}"))
    }

    #[test]
    fn sdk_style_expressions_give_python_results() {
        let cases = [
            ("md5('abc')", json!("900150983cd24fb0d6963f7d28e17f72")),
            (
                "md5(config['salt'] + str(userid))",
                json!(format!("{:x}", md5::Md5::digest(b"pepper123"))),
            ),
            ("sha256('abc')", json!("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")),
            ("str(userid) + '-' + name", json!("123-Ab")),
            ("str(w)", json!("72.5")),
            ("str(2.0)", json!("2.0")),
            ("str(None)", json!("None")),
            ("str(True)", json!("True")),
            ("int(w)", json!(72)),
            ("int('42')", json!(42)),
            ("float(userid)", json!(123.0)),
            ("round(w)", json!(72)),
            ("round(73.5)", json!(74)),
            ("round(w * 3.3333, 2)", json!(241.66)),
            ("userid / 2", json!(61.5)),
            ("userid * 2 + 1", json!(247)),
            ("userid % 10", json!(3)),
            ("2 ** 10", json!(1024)),
            ("userid > 100 and w < 80", json!(true)),
            ("not (userid == 123) or False", json!(false)),
            ("none is None", json!(true)),
            ("name is not None", json!(true)),
            ("'b' in name.lower()", json!(true)),
            ("'z' not in name", json!(true)),
            ("_['userid'] == record['userid']", json!(true)),
            ("self + 1", json!(6)),
            ("bool('')", json!(false)),
            ("len(name)", json!(2)),
            ("max(userid, 7)", json!(123)),
            ("abs(-3)", json!(3)),
            ("name.upper().replace('A', 'a')", json!("aB")),
            ("__stream_name__ + '/' + __original_stream_name__", json!("s/orig")),
            ("datetime.datetime.fromisoformat(at).date()", json!("2024-03-01")),
            ("datetime.datetime.fromisoformat(at).isoformat()", json!("2024-03-01T10:20:30+00:00")),
            ("datetime.datetime.fromisoformat(at).strftime('%Y/%m')", json!("2024/03")),
            ("datetime.datetime.fromisoformat(at).year", json!(2024)),
            ("datetime.datetime.fromisoformat(at).timestamp()", json!(1709288430.0)),
            ("datetime.datetime.fromtimestamp(0)", json!("1970-01-01T00:00:00+00:00")),
            ("datetime.datetime.fromisoformat(at) > datetime.datetime.fromisoformat('2024-01-01')", json!(true)),
            ("datetime.date.fromisoformat('2024-02-29').isoformat()", json!("2024-02-29")),
            ("datetime.datetime.strptime('01/02/2024', '%d/%m/%Y')", json!("2024-02-01T00:00:00+00:00")),
        ];
        for (source, expected) in cases {
            assert_eq!(eval(source), expected, "{source}");
        }
        assert_eq!(eval("json.dumps([1, 'x'])"), json!("[1, \"x\"]"));
        assert_eq!(eval("json.loads('{\"a\": [1]}')['a'][0]"), json!(1));
    }

    #[test]
    fn free_names_are_collected_and_calls_are_not_names() {
        let e = Expr::compile("md5(config['salt'] + str(userid)) + _['x'] + self").unwrap();
        let names: Vec<&str> = e.names().iter().map(String::as_str).collect();
        assert_eq!(names, ["_", "config", "self", "userid"]);
        let e = Expr::compile("datetime.datetime.fromisoformat(created).date()").unwrap();
        let names: Vec<&str> = e.names().iter().map(String::as_str).collect();
        assert_eq!(names, ["created", "datetime"]);
    }

    #[test]
    fn bad_expressions_are_refused_at_compile_time() {
        for (source, expected) in [
            ("sha1(x)", "unknown function `sha1`"),
            ("print(x)", "unknown function `print`"),
            ("fake.name()", "`fake` is not available"),
            ("fake(1)", "faker is not available"),
            ("x.pop()", "unknown method `.pop()`"),
            ("a if b else c", "`if` is not supported"),
            ("a // 2", "`//` is not supported"),
            ("x = 1", "unexpected `=`"),
            ("'open", "unterminated string"),
            ("f'{x}'", "string prefixes"),
            ("(1 + ", "cannot parse"),
            ("", "empty"),
            ("x; y", "unexpected `;`"),
            ("{'a': 1}", "unexpected `{`"),
        ] {
            let err = Expr::compile(source).unwrap_err();
            assert!(err.contains(expected), "{source}: {err}");
            assert!(!err.contains("__"), "{source}: {err}");
        }
    }

    #[test]
    fn failures_at_run_time_are_messages_not_panics() {
        for (source, expected) in [
            ("int(name)", "invalid literal for int()"),
            ("userid / 0", "division by zero"),
            ("float('x')", "could not convert"),
            (
                "datetime.datetime.fromisoformat('noon')",
                "invalid isoformat",
            ),
            ("datetime + 1", "failed"),
            ("datetime", "no record value"),
        ] {
            let err = eval_with(source, json!({"userid": 1, "name": "Ab"}), json!({})).unwrap_err();
            assert!(err.contains(expected), "{source}: {err}");
            assert!(!err.contains("__v_"), "{source}: {err}");
        }
    }

    #[test]
    fn python_float_text() {
        for (f, text) in [
            (1.0, "1.0"),
            (0.1, "0.1"),
            (72.5, "72.5"),
            (1e16, "1e+16"),
            (1.5e-5, "1.5e-05"),
            (-0.0, "-0.0"),
            (123456789.25, "123456789.25"),
        ] {
            assert_eq!(py_float(f), text);
        }
    }
}
