//! Schema-driven output: an [`OutputPlan`] compiled from a stream's schema, its selected
//! properties and the flattening settings projects each record onto the schema (unknown
//! fields dropped), coerces values to the declared types and writes the RECORD JSON directly,
//! flattening nested objects into `parent__child` columns. Coercion normalises the known reply
//! quirks (numeric strings, `false`/`true` for an integer or number, `""` or `[]` for no
//! value, epoch seconds for a date-time) and refuses anything else it cannot interpret (a
//! non-numeric string for a number, a number out of the integer range, an object where a
//! scalar is expected...): such a record is not written, so a sync never silently nulls data. The same plan gives the SCHEMA it matches,
//! so every record validates against the schema sent for it. The plan reads the keywords
//! `type`, `format`, `properties` and `items`; value constraints such as `enum` or `minimum`
//! are not enforced (the tap's schemas declare none). Pure.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use crate::timefmt;

/// The value kind a property declares.
#[derive(Debug, Clone, PartialEq)]
enum Kind {
    Integer,
    Number,
    String,
    DateTime,
    Date,
    Boolean,
    /// An object whose properties are known.
    Object(Vec<Field>),
    /// An array whose items have this kind.
    Array(Box<Kind>, bool),
    /// Free-form JSON of these JSON types (empty: any type).
    Any(Vec<String>),
}

#[derive(Debug, Clone, PartialEq)]
struct Field {
    name: String,
    /// Where the value sits in the record (`data.hr_average` for a flattened child), for errors.
    path: String,
    /// `"name":` pre-encoded for the output.
    json_key: Vec<u8>,
    kind: Kind,
    nullable: bool,
    /// Flattened columns replacing this object property (None when not flattened; an
    /// object without properties flattens to no column, as in the SDK).
    flat: Option<Vec<Field>>,
}

/// Why a record could not be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConformError {
    #[error("key property `{0}` is missing or null")]
    MissingKey(String),
    /// A value that cannot be read as its declared type (the record is not written).
    #[error("field `{field}` is {found}, expected {expected}")]
    BadValue {
        field: String,
        found: &'static str,
        expected: String,
    },
}

/// Why a value cannot be coerced: where below the property (`""`, `.x`, `[2]`), what it is
/// and what the schema asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Bad {
    at: String,
    found: &'static str,
    expected: String,
}

impl Bad {
    fn new(found: &'static str, kind: &Kind) -> Self {
        Bad {
            at: String::new(),
            found,
            expected: expected(kind),
        }
    }

    /// The same problem one level further out (`at` prefixed with `step`).
    fn under(mut self, step: &str) -> Self {
        self.at.insert_str(0, step);
        self
    }

    fn error(self, path: &str) -> ConformError {
        ConformError::BadValue {
            field: format!("{path}{}", self.at),
            found: self.found,
            expected: self.expected,
        }
    }
}

/// What a kind asks for, in words.
fn expected(kind: &Kind) -> String {
    match kind {
        Kind::Integer => "an integer".into(),
        Kind::Number => "a number".into(),
        Kind::String => "a string".into(),
        Kind::DateTime => "a date-time (epoch seconds or RFC 3339)".into(),
        Kind::Date => "a date (YYYY-MM-DD)".into(),
        Kind::Boolean => "a boolean".into(),
        Kind::Object(_) => "an object".into(),
        Kind::Array(..) => "a list".into(),
        Kind::Any(types) if types.is_empty() => "any JSON value".into(),
        Kind::Any(types) => types.join(" or "),
    }
}

/// The JSON kind of a value, in words, for error messages ("a string", "a number", ...).
pub fn found(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

const OUT_OF_RANGE: &str = "a number out of the integer range";
const FRACTIONAL: &str = "a fractional number";
const NOT_A_NUMBER: &str = "a string that is not a number";

/// An integer where one is expected, read by the one rule of the tap ([`read_integer`]):
/// what the output would write as that integer (numbers, `false`/`true` as 0/1, numeric
/// strings), `None` for no value or anything that is not one. Bookmarks, keys, dates and
/// record fields all read integers this way.
pub fn integer(v: &Value) -> Option<i64> {
    read_integer(v).ok().flatten()
}

/// The integer a reply value stands for: None for null, `""` (no value); `false`/`true` are 0
/// and 1 (Withings sends integers as `false`), numeric strings and integral floats are read;
/// anything else (a fraction, a number beyond i64, a non-numeric string, an object, a list)
/// is refused with what it is.
pub fn read_integer(v: &Value) -> Result<Option<i64>, &'static str> {
    fn from_f64(f: f64) -> Result<i64, &'static str> {
        // i64::MAX as f64 is 2^63, just past the range: an exclusive bound.
        if f.fract() != 0.0 {
            Err(FRACTIONAL)
        } else if (i64::MIN as f64..i64::MAX as f64).contains(&f) {
            Ok(f as i64)
        } else {
            Err(OUT_OF_RANGE)
        }
    }
    match v {
        Value::Null => Ok(None),
        Value::Bool(b) => Ok(Some(i64::from(*b))),
        Value::Number(n) => match (n.as_i64(), n.is_u64()) {
            (Some(i), _) => Ok(Some(i)),
            (None, true) => Err(OUT_OF_RANGE),
            (None, false) => from_f64(n.as_f64().unwrap_or(f64::NAN)).map(Some),
        },
        Value::String(s) => {
            let s = s.trim();
            if s.is_empty() {
                return Ok(None);
            }
            if let Ok(i) = s.parse::<i64>() {
                return Ok(Some(i));
            }
            match s.parse::<f64>() {
                Ok(f) if f.is_finite() => from_f64(f).map(Some),
                Ok(_) if s.chars().any(|c| c.is_ascii_digit()) => Err(OUT_OF_RANGE),
                _ => Err(NOT_A_NUMBER),
            }
        }
        Value::Array(_) => Err("an array"),
        Value::Object(_) => Err("an object"),
    }
}

/// Flattening settings (Meltano SDK names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flattening {
    pub enabled: bool,
    pub max_depth: usize,
}

/// A compiled projection of one stream's records onto its (selected, flattened) schema.
#[derive(Debug, Clone)]
pub struct OutputPlan {
    fields: Vec<Field>,
    schema: Value,
    keys: Vec<String>,
}

/// Problems in a schema or a flattening that would make output ambiguous.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PlanError(pub String);

/// One property's value in a record, as the plan reads it: typed reply rows hand over
/// numbers and borrowed strings without building a [`Value`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Val<'a> {
    Missing,
    Null,
    Int(i64),
    Float(f64),
    Str(&'a str),
    Json(&'a Value),
}

impl Val<'_> {
    fn is_null(self) -> bool {
        matches!(self, Val::Missing | Val::Null | Val::Json(Value::Null))
    }
}

impl<'a> From<Option<i64>> for Val<'a> {
    fn from(v: Option<i64>) -> Self {
        v.map_or(Val::Missing, Val::Int)
    }
}

impl<'a> From<Option<&'a str>> for Val<'a> {
    fn from(v: Option<&'a str>) -> Self {
        v.map_or(Val::Missing, Val::Str)
    }
}

/// A record an [`OutputPlan`] can write: a JSON object, or a typed row of a reply.
pub trait Fields {
    /// The value of a top-level property.
    fn get(&self, name: &str) -> Val<'_>;

    /// Properties whose values are the same for a run of consecutive records, and an id of
    /// the current run (e.g. a measure group's fields): [`OutputPlan::write_cached`] writes
    /// them once per run and copies the bytes. None: nothing is shared.
    fn shared(&self) -> Option<(u64, &'static [&'static str])> {
        None
    }
}

/// Bytes of shared columns kept between records by [`OutputPlan::write_cached`]. Keep one
/// per sequence of records whose shared ids are unique (e.g. one page).
#[derive(Debug, Default)]
pub struct SpanCache {
    /// The shared-names list the segments were computed for (its address).
    names: usize,
    /// Consecutive top-level fields: shared (with its cached bytes) or not.
    segments: Vec<Segment>,
    id: Option<u64>,
}

#[derive(Debug)]
struct Segment {
    fields: std::ops::Range<usize>,
    /// For a shared segment: its bytes for the current id, with a leading comma.
    shared: Option<Option<Vec<u8>>>,
}

impl Fields for Map<String, Value> {
    fn get(&self, name: &str) -> Val<'_> {
        Map::get(self, name).map_or(Val::Missing, Val::Json)
    }
}

fn type_names(schema: &Value) -> Vec<&str> {
    match &schema["type"] {
        Value::String(s) => vec![s.as_str()],
        Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

fn kind_of(schema: &Value) -> (Kind, bool) {
    let types = type_names(schema);
    let nullable = types.contains(&"null") || types.is_empty();
    let concrete: Vec<&str> = types.iter().copied().filter(|t| *t != "null").collect();
    let kind = match concrete.as_slice() {
        ["integer"] => Kind::Integer,
        ["number"] | ["integer", "number"] | ["number", "integer"] => Kind::Number,
        ["boolean"] => Kind::Boolean,
        ["string"] => match schema["format"].as_str() {
            Some("date-time") => Kind::DateTime,
            Some("date") => Kind::Date,
            _ => Kind::String,
        },
        // A type naming only "null": nothing but null fits (properties or not).
        [] if !types.is_empty() => Kind::Any(vec!["null".into()]),
        // `properties` without a `type` still describes an object.
        [] if schema["properties"].is_object() => Kind::Object(
            schema["properties"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(n, s)| field(n, s))
                .collect(),
        ),
        ["object"] => match schema["properties"].as_object() {
            Some(props) => Kind::Object(props.iter().map(|(n, s)| field(n, s)).collect()),
            None => Kind::Any(vec!["object".into()]),
        },
        ["array"] => {
            let (item, item_nullable) = kind_of(&schema["items"]);
            Kind::Array(Box::new(item), item_nullable)
        }
        other => Kind::Any(other.iter().map(|t| t.to_string()).collect()),
    };
    (kind, nullable)
}

fn field(name: &str, schema: &Value) -> Field {
    let (kind, nullable) = kind_of(schema);
    Field {
        name: name.to_string(),
        path: name.to_string(),
        json_key: json_key(name),
        kind,
        nullable,
        flat: None,
    }
}

fn json_key(name: &str) -> Vec<u8> {
    let mut key = serde_json::to_vec(name).unwrap_or_default();
    key.push(b':');
    key
}

/// Flattens object properties with known properties into `parent__child` fields, up to
/// `max_depth` levels (SDK semantics: depth 1 flattens one level), and returns the flattened
/// schema properties alongside.
fn flatten_fields(
    prefix: &str,
    path: &str,
    props: &Map<String, Value>,
    depth: usize,
    flattening: Flattening,
    out_props: &mut Map<String, Value>,
) -> Vec<Field> {
    let mut fields = Vec::new();
    for (name, schema) in props {
        let full = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}__{name}")
        };
        let mut f = field(name, schema);
        f.path = format!("{path}{name}");
        // The SDK flattens a property whose `type` names "object" and that lists properties;
        // one without a type, or typed only "null", is one column even with `properties`.
        let inner = schema["properties"]
            .as_object()
            .filter(|_| type_names(schema).contains(&"object"));
        if let (Kind::Object(_), Some(inner), true) = (
            &f.kind,
            inner,
            flattening.enabled && depth < flattening.max_depth,
        ) {
            let child_path = format!("{}.", f.path);
            let mut sub =
                flatten_fields(&full, &child_path, inner, depth + 1, flattening, out_props);
            for s in &mut sub {
                s.nullable = true;
            }
            f.flat = Some(sub);
        } else {
            let mut s = schema.clone();
            if !prefix.is_empty() {
                s = with_null(s);
            }
            out_props.insert(full.clone(), s);
            f.name = name.clone();
            f.json_key = json_key(&full);
        }
        fields.push(f);
    }
    fields
}

/// A flattened child of a nullable parent is itself nullable.
fn with_null(mut schema: Value) -> Value {
    match schema.get_mut("type") {
        Some(Value::String(t)) if t != "null" => {
            let t = t.clone();
            schema["type"] = Value::from(vec![t, "null".to_string()]);
        }
        Some(Value::Array(types)) if !types.iter().any(|t| t == "null") => {
            types.push("null".into())
        }
        _ => {}
    }
    schema
}

impl OutputPlan {
    /// Compiles a plan from a stream schema, the selected top-level properties (None: all)
    /// and the flattening settings. Key properties are always kept.
    pub fn new(
        schema: &Value,
        keys: &[&str],
        selected: Option<&BTreeSet<String>>,
        flattening: Flattening,
    ) -> Result<Self, PlanError> {
        let props = schema["properties"]
            .as_object()
            .ok_or_else(|| PlanError("schema has no properties".into()))?;
        let kept: Map<String, Value> = props
            .iter()
            .filter(|(name, _)| {
                keys.contains(&name.as_str()) || selected.is_none_or(|s| s.contains(*name))
            })
            .map(|(n, s)| (n.clone(), s.clone()))
            .collect();
        let mut out_props = Map::new();
        let fields = flatten_fields("", "", &kept, 0, flattening, &mut out_props);
        let mut seen = BTreeSet::new();
        collect_columns(&fields, &mut seen)?;
        // Replies leave values out or send null (or `""`) for them, so every non-key column
        // must admit null.
        for (name, prop) in out_props.iter_mut() {
            if !keys.contains(&name.as_str()) {
                *prop = with_null(prop.clone());
            }
        }
        let mut out_schema = schema.clone();
        out_schema["properties"] = Value::Object(out_props);
        Ok(OutputPlan {
            fields,
            schema: out_schema,
            keys: keys.iter().map(|k| k.to_string()).collect(),
        })
    }

    /// The schema records written by this plan conform to (the SCHEMA message's `schema`).
    pub fn schema(&self) -> &Value {
        &self.schema
    }

    /// Writes `record` as conformed JSON into `out` (appending). Fails, writing nothing, when
    /// a key property is missing or null, or a value cannot be read as its declared type.
    pub fn write<F: Fields + ?Sized>(
        &self,
        record: &F,
        out: &mut Vec<u8>,
    ) -> Result<(), ConformError> {
        self.write_cached(record, out, &mut SpanCache::default())
    }

    /// As [`OutputPlan::write`], reusing the bytes of the record's shared columns (see
    /// [`Fields::shared`]) from the previous record of the same run. The output is the same.
    pub fn write_cached<F: Fields + ?Sized>(
        &self,
        record: &F,
        out: &mut Vec<u8>,
        cache: &mut SpanCache,
    ) -> Result<(), ConformError> {
        for key in &self.keys {
            if record.get(key).is_null() {
                return Err(ConformError::MissingKey(key.clone()));
            }
        }
        let start = out.len();
        out.push(b'{');
        let mut first = true;
        let result = match record.shared() {
            None => write_fields(
                &self.fields,
                Some(record),
                out,
                &mut first,
                &self.keys,
                true,
            ),
            Some((id, names)) => {
                self.segment(cache, names);
                if cache.id != Some(id) {
                    cache.id = Some(id);
                    for seg in &mut cache.segments {
                        if let Some(bytes) = &mut seg.shared {
                            *bytes = None;
                        }
                    }
                }
                self.write_segments(record, out, &mut first, cache)
            }
        };
        if let Err(e) = result {
            out.truncate(start);
            return Err(e);
        }
        out.push(b'}');
        Ok(())
    }

    /// Splits the top-level fields into runs of shared and other columns (once per list).
    fn segment(&self, cache: &mut SpanCache, names: &'static [&'static str]) {
        let tag = names.as_ptr() as usize;
        if cache.names == tag && !cache.segments.is_empty() {
            return;
        }
        let is_shared = |f: &Field| {
            f.flat.is_none() && names.contains(&f.name.as_str()) && !self.keys.contains(&f.name)
        };
        let mut segments: Vec<Segment> = Vec::new();
        for (i, f) in self.fields.iter().enumerate() {
            let shared = is_shared(f);
            match segments.last_mut() {
                Some(seg) if seg.shared.is_some() == shared => seg.fields.end = i + 1,
                _ => segments.push(Segment {
                    fields: i..i + 1,
                    shared: shared.then_some(None),
                }),
            }
        }
        cache.names = tag;
        cache.segments = segments;
        cache.id = None;
    }

    fn write_segments<F: Fields + ?Sized>(
        &self,
        record: &F,
        out: &mut Vec<u8>,
        first: &mut bool,
        cache: &mut SpanCache,
    ) -> Result<(), ConformError> {
        for seg in &mut cache.segments {
            let fields = &self.fields[seg.fields.clone()];
            match &mut seg.shared {
                Some(Some(bytes)) => {
                    out.extend_from_slice(if *first { &bytes[1..] } else { bytes });
                    *first = false;
                }
                Some(slot) => {
                    let at = out.len();
                    let was_first = *first;
                    write_fields(fields, Some(record), out, first, &self.keys, true)?;
                    let mut bytes = Vec::with_capacity(out.len() - at + 1);
                    if was_first {
                        bytes.push(b',');
                    }
                    bytes.extend_from_slice(&out[at..]);
                    *slot = Some(bytes);
                }
                None => write_fields(fields, Some(record), out, first, &self.keys, true)?,
            }
        }
        Ok(())
    }
}

fn collect_columns(fields: &[Field], seen: &mut BTreeSet<Vec<u8>>) -> Result<(), PlanError> {
    for f in fields {
        if let Some(flat) = &f.flat {
            collect_columns(flat, seen)?;
        } else if !seen.insert(f.json_key.clone()) {
            return Err(PlanError(format!(
                "flattening makes two columns named {}",
                String::from_utf8_lossy(&f.json_key[..f.json_key.len() - 1])
            )));
        }
    }
    Ok(())
}

fn write_fields<F: Fields + ?Sized>(
    fields: &[Field],
    record: Option<&F>,
    out: &mut Vec<u8>,
    first: &mut bool,
    keys: &[String],
    top: bool,
) -> Result<(), ConformError> {
    for f in fields {
        let raw = record.map_or(Val::Missing, |r| r.get(&f.name));
        if let Some(flat) = &f.flat {
            let inner = match raw {
                Val::Json(Value::Object(o)) => Some(o),
                // `[]`: the PHP encoding of an empty map.
                Val::Json(Value::Array(a)) if a.is_empty() => None,
                v if v.is_null() => None,
                v => return Err(Bad::new(val_found(v), &f.kind).error(&f.path)),
            };
            write_fields::<Map<String, Value>>(flat, inner, out, first, keys, false)?;
            continue;
        }
        if !*first {
            out.push(b',');
        }
        *first = false;
        out.extend_from_slice(&f.json_key);
        let wrote_null = write_val(&f.kind, raw, out).map_err(|bad| bad.error(&f.path))?;
        if wrote_null && top && keys.contains(&f.name) {
            return Err(ConformError::MissingKey(f.name.clone()));
        }
    }
    Ok(())
}

/// The kind of a record value, in words (for errors).
fn val_found(v: Val<'_>) -> &'static str {
    match v {
        Val::Missing | Val::Null => "null",
        Val::Int(_) | Val::Float(_) => "a number",
        Val::Str(_) => "a string",
        Val::Json(v) => found(v),
    }
}

/// Writes a number or string (writing into a Vec<u8> cannot fail).
fn put<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, v: &T) {
    let _ = serde_json::to_writer(&mut *out, v);
}

/// Writes `val` as `kind`: Ok(whether null was written), or why it cannot be coerced (then
/// nothing is written; boxed, to keep the per-field result small). The common cases write
/// without building a [`Value`].
fn write_val(kind: &Kind, val: Val<'_>, out: &mut Vec<u8>) -> Result<bool, Box<Bad>> {
    match (kind, val) {
        (_, v) if v.is_null() => {
            out.extend_from_slice(b"null");
            return Ok(true);
        }
        (Kind::Integer | Kind::Number, Val::Int(i)) => put(out, &i),
        (Kind::Number, Val::Float(x)) if x.is_finite() => put(out, &x),
        (Kind::DateTime, Val::Int(secs)) => {
            out.push(b'"');
            if !timefmt::write_rfc3339(out, secs) {
                out.pop();
                return Err(Box::new(Bad::new(DATE_OUT_OF_RANGE, kind)));
            }
            out.push(b'"');
        }
        (Kind::String, Val::Str(s)) => put(out, &s),
        (Kind::String, Val::Json(Value::String(s))) => put(out, s),
        (Kind::Integer, Val::Json(Value::Number(n))) if n.is_i64() => put(out, n),
        (Kind::Number, Val::Json(Value::Number(n))) => put(out, n),
        (_, v) => {
            let owned;
            let value = match v {
                Val::Json(v) => v,
                Val::Int(i) => {
                    owned = Value::from(i);
                    &owned
                }
                Val::Float(x) => {
                    owned = Value::from(x);
                    &owned
                }
                Val::Str(s) => {
                    owned = Value::String(s.to_owned());
                    &owned
                }
                Val::Missing | Val::Null => return Ok(true),
            };
            let c = coerce(kind, value).map_err(Box::new)?;
            write_value(kind, &c, out);
            return Ok(c.is_null());
        }
    }
    Ok(false)
}

fn write_value(kind: &Kind, value: &Value, out: &mut Vec<u8>) {
    if let (Kind::DateTime, Value::Number(n)) = (kind, value) {
        // coerce() leaves in-range epochs as numbers for DateTime: format them here
        // without an intermediate String.
        if let Some(secs) = n.as_i64() {
            out.push(b'"');
            timefmt::write_rfc3339(out, secs);
            out.push(b'"');
            return;
        }
    }
    // Writing a Value into a Vec<u8> cannot fail.
    let _ = serde_json::to_writer(&mut *out, value);
}

/// Does a value have this JSON Schema type?
fn json_type_fits(t: &str, v: &Value) -> bool {
    match (t, v) {
        ("object", Value::Object(_))
        | ("array", Value::Array(_))
        | ("string", Value::String(_)) => true,
        ("boolean", Value::Bool(_)) | ("null", Value::Null) => true,
        ("number", Value::Number(_)) => true,
        ("integer", Value::Number(n)) => n.is_i64() || n.is_u64(),
        _ => false,
    }
}

/// Turns a coerced DateTime epoch into its RFC 3339 text (for values that are not written
/// through `write_value`).
fn finish(kind: &Kind, value: Value) -> Value {
    match (kind, &value) {
        (Kind::DateTime, Value::Number(n)) => n
            .as_i64()
            .and_then(timefmt::rfc3339)
            .map_or(Value::Null, Value::String),
        _ => value,
    }
}

const DATE_OUT_OF_RANGE: &str = "a number out of the date-time range";

/// A string holding no value (`""`, spaces), which replies send for a missing number or date.
fn blank(v: &Value) -> bool {
    matches!(v, Value::String(s) if s.trim().is_empty())
}

/// Coerces a reply value to a kind: null stays null, the known quirks are normalised, and
/// anything else that does not fit is refused with what it is. DateTime epochs stay numbers
/// (written as RFC 3339 by `write_value`).
fn coerce(kind: &Kind, v: &Value) -> Result<Value, Bad> {
    if v.is_null() {
        return Ok(Value::Null);
    }
    let bad = |found: &'static str| Bad::new(found, kind);
    match kind {
        Kind::Any(types) => {
            let fits = |v: &Value| types.is_empty() || types.iter().any(|t| json_type_fits(t, v));
            if fits(v) {
                return Ok(v.clone());
            }
            match v {
                // `[]`: the PHP encoding of an empty map.
                Value::Array(a) if a.is_empty() && fits(&Value::Object(Map::new())) => {
                    Ok(Value::Object(Map::new()))
                }
                // A free-form object or list sent as JSON text.
                Value::String(s) => serde_json::from_str::<Value>(s)
                    .ok()
                    .filter(|p| !p.is_string() && fits(p))
                    .ok_or_else(|| bad("a string that is not JSON of that type")),
                other => Err(bad(found(other))),
            }
        }
        Kind::Integer => read_integer(v)
            .map(|i| i.map_or(Value::Null, Value::from))
            .map_err(bad),
        Kind::Number => match v {
            Value::Number(_) => Ok(v.clone()),
            Value::Bool(b) => Ok(Value::from(i64::from(*b))),
            _ if blank(v) => Ok(Value::Null),
            Value::String(s) => match s.trim().parse::<f64>() {
                Ok(f) if f.is_finite() => Ok(Value::from(f)),
                Ok(_) if s.chars().any(|c| c.is_ascii_digit()) => Err(bad("a number out of range")),
                _ => Err(bad(NOT_A_NUMBER)),
            },
            other => Err(bad(found(other))),
        },
        Kind::String => match v {
            Value::String(_) => Ok(v.clone()),
            Value::Number(n) => Ok(Value::String(n.to_string())),
            Value::Bool(b) => Ok(Value::String(b.to_string())),
            other => Err(bad(found(other))),
        },
        Kind::Boolean => match v {
            Value::Bool(_) => Ok(v.clone()),
            Value::Number(n) => match n.as_i64() {
                Some(0) => Ok(Value::Bool(false)),
                Some(1) => Ok(Value::Bool(true)),
                _ => Err(bad("a number other than 0 or 1")),
            },
            _ if blank(v) => Ok(Value::Null),
            Value::String(s) => match s.trim() {
                "true" | "1" => Ok(Value::Bool(true)),
                "false" | "0" => Ok(Value::Bool(false)),
                _ => Err(bad("a string that is not a boolean")),
            },
            other => Err(bad(found(other))),
        },
        Kind::DateTime => {
            let secs = match v {
                // An epoch sent as `false` is no date (0 would be 1970).
                Value::Bool(false) => return Ok(Value::Null),
                _ if blank(v) => return Ok(Value::Null),
                Value::Number(n) => n.as_i64().or_else(|| {
                    n.as_f64()
                        .filter(|f| f.is_finite() && f.abs() < 9.2e18)
                        .map(|f| f.floor() as i64)
                }),
                Value::String(s) => {
                    let s = s.trim();
                    match s.parse::<i64>() {
                        Ok(secs) => Some(secs),
                        Err(_) => match timefmt::parse_rfc3339(s) {
                            Some(secs) => Some(secs),
                            None => s
                                .parse::<f64>()
                                .ok()
                                .filter(|f| f.is_finite() && f.abs() < 9.2e18)
                                .map(|f| f.floor() as i64)
                                .ok_or_else(|| bad("a string that is not a date-time"))
                                .map(Some)?,
                        },
                    }
                }
                other => return Err(bad(found(other))),
            };
            match secs {
                Some(secs) if timefmt::rfc3339(secs).is_some() => Ok(Value::from(secs)),
                _ => Err(bad(DATE_OUT_OF_RANGE)),
            }
        }
        Kind::Date => match v {
            _ if blank(v) => Ok(Value::Null),
            Value::String(s) if timefmt::parse_ymd(s.trim()).is_some() => {
                Ok(Value::String(s.trim().to_string()))
            }
            Value::String(_) => Err(bad("a string that is not a date")),
            other => Err(bad(found(other))),
        },
        Kind::Object(fields) => {
            let empty = Map::new();
            let obj = match v {
                Value::Object(o) => o,
                // `[]`: the PHP encoding of an empty map.
                Value::Array(a) if a.is_empty() => &empty,
                other => return Err(bad(found(other))),
            };
            let mut out = Map::new();
            for f in fields {
                let value = match obj.get(&f.name) {
                    None => Value::Null,
                    Some(x) => coerce(&f.kind, x).map_err(|b| b.under(&format!(".{}", f.name)))?,
                };
                out.insert(f.name.clone(), finish(&f.kind, value));
            }
            Ok(Value::Object(out))
        }
        Kind::Array(item, item_nullable) => {
            let items = match v {
                Value::Array(items) => items.as_slice(),
                // `{}`: an empty list encoded as a map.
                Value::Object(o) if o.is_empty() => &[],
                other => return Err(bad(found(other))),
            };
            let mut out = Vec::with_capacity(items.len());
            for (i, x) in items.iter().enumerate() {
                match coerce(item, x).map_err(|b| b.under(&format!("[{i}]")))? {
                    Value::Null if !item_nullable => {}
                    c => out.push(finish(item, c)),
                }
            }
            Ok(Value::Array(out))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;
    use serde_json::json;

    const ON: Flattening = Flattening {
        enabled: true,
        max_depth: 10,
    };
    const OFF: Flattening = Flattening {
        enabled: false,
        max_depth: 0,
    };

    fn schema() -> Value {
        json!({"type": "object", "properties": {
            "id": {"type": "integer"},
            "n": {"type": ["number", "null"]},
            "i": {"type": ["integer", "null"]},
            "s": {"type": ["string", "null"]},
            "b": {"type": ["boolean", "null"]},
            "t": {"type": ["string", "null"], "format": "date-time"},
            "d": {"type": ["string", "null"], "format": "date"},
            "free": {"type": ["object", "null"]},
            "arr": {"type": ["array", "null"], "items": {"type": "integer"}},
            "data": {"type": ["object", "null"], "properties": {
                "x": {"type": ["integer", "null"]},
                "deep": {"type": ["object", "null"], "properties": {"y": {"type": ["string", "null"]}}}
            }}
        }})
    }

    fn write(plan: &OutputPlan, record: Value) -> Value {
        let mut out = Vec::new();
        plan.write(record.as_object().unwrap(), &mut out).unwrap();
        serde_json::from_slice(&out).unwrap()
    }

    fn refusal(plan: &OutputPlan, record: Value) -> ConformError {
        let mut out = b"prefix".to_vec();
        let err = plan
            .write(record.as_object().unwrap(), &mut out)
            .unwrap_err();
        assert_eq!(out, b"prefix", "a refused record writes nothing");
        err
    }

    #[test]
    fn records_are_projected_coerced_and_flattened() {
        let plan = OutputPlan::new(&schema(), &["id"], None, ON).unwrap();
        let row = write(
            &plan,
            json!({"id": "7", "n": "1.5", "i": false, "s": 12, "b": 1, "t": 1700000000, "d": "2024-02-29",
                   "free": {"a": 1}, "arr": [1, "2", null], "data": {"x": 3.0, "deep": {"y": "z"}}, "unknown": 1}),
        );
        assert_eq!(
            row,
            json!({"id": 7, "n": 1.5, "i": 0, "s": "12", "b": true, "t": "2023-11-14T22:13:20Z", "d": "2024-02-29",
                   "free": {"a": 1}, "arr": [1, 2], "data__x": 3, "data__deep__y": "z"})
        );
    }

    #[test]
    fn nulls_and_known_quirks_are_normalised_never_refused() {
        let plan = OutputPlan::new(&schema(), &["id"], None, ON).unwrap();
        let row = write(
            &plan,
            json!({"id": 1, "n": true, "i": true, "s": false, "b": "", "t": false, "d": "",
                   "free": [], "arr": {}, "data": []}),
        );
        assert_eq!(
            row,
            json!({"id": 1, "n": 1, "i": 1, "s": "false", "b": null, "t": null, "d": null,
                   "free": {}, "arr": [], "data__x": null, "data__deep__y": null})
        );
        let row = write(
            &plan,
            json!({"id": 1, "n": null, "i": "", "data": {"x": null, "deep": null}}),
        );
        assert_eq!(row["i"], Value::Null);
        assert_eq!(row["data__x"], Value::Null);
        let nested = OutputPlan::new(&schema(), &["id"], None, OFF).unwrap();
        let row = write(&nested, json!({"id": 1, "data": []}));
        assert_eq!(row["data"], json!({"x": null, "deep": null}));
    }

    #[test]
    fn uninterpretable_values_are_refused_naming_field_and_kind() {
        let cases = [
            (
                json!({"i": "abc"}),
                ON,
                "field `i` is a string that is not a number, expected an integer",
            ),
            (
                json!({"i": 99999999999999999999999.0}),
                ON,
                "field `i` is a number out of the integer range, expected an integer",
            ),
            (
                json!({"i": 18446744073709551615u64}),
                ON,
                "field `i` is a number out of the integer range",
            ),
            (
                json!({"i": "1e400"}),
                ON,
                "field `i` is a number out of the integer range",
            ),
            (json!({"i": 2.5}), ON, "field `i` is a fractional number"),
            (
                json!({"i": {"a": 1}}),
                ON,
                "field `i` is an object, expected an integer",
            ),
            (
                json!({"n": "x"}),
                ON,
                "field `n` is a string that is not a number, expected a number",
            ),
            (
                json!({"n": [1]}),
                ON,
                "field `n` is an array, expected a number",
            ),
            (
                json!({"s": {"a": 1}}),
                ON,
                "field `s` is an object, expected a string",
            ),
            (
                json!({"b": 2}),
                ON,
                "field `b` is a number other than 0 or 1, expected a boolean",
            ),
            (
                json!({"b": "maybe"}),
                ON,
                "field `b` is a string that is not a boolean",
            ),
            (
                json!({"t": "yesterday"}),
                ON,
                "field `t` is a string that is not a date-time",
            ),
            (
                json!({"t": 9223372036854775807i64}),
                ON,
                "field `t` is a number out of the date-time range",
            ),
            (
                json!({"t": 1e300}),
                ON,
                "field `t` is a number out of the date-time range",
            ),
            (json!({"t": true}), ON, "field `t` is a boolean"),
            (
                json!({"d": "2024-13-01"}),
                ON,
                "field `d` is a string that is not a date",
            ),
            (
                json!({"free": "x"}),
                ON,
                "field `free` is a string that is not JSON of that type, expected object",
            ),
            (
                json!({"free": 3}),
                ON,
                "field `free` is a number, expected object",
            ),
            (
                json!({"arr": [1, "x"]}),
                ON,
                "field `arr[1]` is a string that is not a number, expected an integer",
            ),
            (
                json!({"arr": 5}),
                ON,
                "field `arr` is a number, expected a list",
            ),
            (
                json!({"data": 5}),
                ON,
                "field `data` is a number, expected an object",
            ),
            (
                json!({"data": {"x": "x"}}),
                ON,
                "field `data.x` is a string that is not a number",
            ),
            (
                json!({"data": {"deep": {"y": [1]}}}),
                ON,
                "field `data.deep.y` is an array, expected a string",
            ),
            (
                json!({"data": {"x": "x"}}),
                OFF,
                "field `data.x` is a string that is not a number",
            ),
            (
                json!({"data": {"deep": "z"}}),
                OFF,
                "field `data.deep` is a string, expected an object",
            ),
        ];
        for (mut record, flattening, want) in cases {
            record["id"] = json!(1);
            let plan = OutputPlan::new(&schema(), &["id"], None, flattening).unwrap();
            let err = refusal(&plan, record.clone());
            assert!(err.to_string().starts_with(want), "{record}: {err}");
        }
    }

    #[test]
    fn the_plan_schema_matches_what_it_writes() {
        let plan = OutputPlan::new(&schema(), &["id"], None, ON).unwrap();
        let props = plan.schema()["properties"].as_object().unwrap();
        let names: Vec<_> = props.keys().cloned().collect();
        assert_eq!(
            names,
            [
                "id",
                "n",
                "i",
                "s",
                "b",
                "t",
                "d",
                "free",
                "arr",
                "data__x",
                "data__deep__y"
            ]
        );
        assert_eq!(props["data__x"]["type"], json!(["integer", "null"]));
    }

    #[test]
    fn max_depth_keeps_deeper_objects_nested() {
        let plan = OutputPlan::new(
            &schema(),
            &["id"],
            None,
            Flattening {
                enabled: true,
                max_depth: 1,
            },
        )
        .unwrap();
        let row = write(
            &plan,
            json!({"id": 1, "data": {"x": 1, "deep": {"y": "z", "extra": 1}}}),
        );
        assert_eq!(row["data__deep"], json!({"y": "z"}));
        assert!(plan.schema()["properties"]["data__deep"]["properties"]["y"].is_object());
    }

    #[test]
    fn without_flattening_objects_are_conformed_in_place() {
        let plan = OutputPlan::new(&schema(), &["id"], None, OFF).unwrap();
        let row = write(
            &plan,
            json!({"id": 1, "data": {"x": "4", "deep": null, "junk": 2}}),
        );
        assert_eq!(row["data"], json!({"x": 4, "deep": null}));
        assert_eq!(row["t"], Value::Null);
    }

    #[test]
    fn deselected_properties_are_dropped_but_keys_kept() {
        let selected: BTreeSet<String> = ["n".to_string()].into();
        let plan = OutputPlan::new(&schema(), &["id"], Some(&selected), ON).unwrap();
        let row = write(&plan, json!({"id": 1, "n": 2, "s": "x"}));
        assert_eq!(row, json!({"id": 1, "n": 2}));
    }

    #[test]
    fn a_missing_key_is_an_error_and_writes_nothing() {
        let plan = OutputPlan::new(&schema(), &["id"], None, ON).unwrap();
        let mut out = b"prefix".to_vec();
        let err = plan
            .write(json!({"n": 1}).as_object().unwrap(), &mut out)
            .unwrap_err();
        assert_eq!(err, ConformError::MissingKey("id".into()));
        let err = plan
            .write(json!({"id": ""}).as_object().unwrap(), &mut out)
            .unwrap_err();
        assert_eq!(err, ConformError::MissingKey("id".into()));
        let err = plan
            .write(json!({"id": "x"}).as_object().unwrap(), &mut out)
            .unwrap_err();
        assert!(
            matches!(err, ConformError::BadValue { ref field, .. } if field == "id"),
            "{err}"
        );
        assert_eq!(out, b"prefix");
    }

    #[test]
    fn colliding_flattened_names_are_refused() {
        let s = json!({"type": "object", "properties": {
            "a__b": {"type": "integer"}, "a": {"type": "object", "properties": {"b": {"type": "integer"}}}}});
        assert!(OutputPlan::new(&s, &[], None, ON)
            .unwrap_err()
            .0
            .contains("a__b"));
        assert!(OutputPlan::new(&s, &[], None, OFF).is_ok());
    }

    /// A record sharing `s` and `t` with the other records of run `run`.
    struct Shared {
        run: u64,
        id: i64,
        t: i64,
    }

    impl Fields for Shared {
        fn get(&self, name: &str) -> Val<'_> {
            match name {
                "id" => Val::Int(self.id),
                "s" => Val::Str("group text"),
                "t" => Val::Int(self.t),
                "n" => Val::Float(self.id as f64 / 2.0),
                _ => Val::Missing,
            }
        }
        fn shared(&self) -> Option<(u64, &'static [&'static str])> {
            Some((self.run, &["s", "t", "b", "d"]))
        }
    }

    #[test]
    fn shared_columns_are_written_once_per_run_with_the_same_output() {
        let some: BTreeSet<String> = ["s", "t", "n"].iter().map(|s| s.to_string()).collect();
        for selected in [None, Some(&some)] {
            let plan = OutputPlan::new(&schema(), &["id"], selected, ON).unwrap();
            let mut cache = SpanCache::default();
            for (run, id, t) in [
                (1, 1, 100),
                (1, 2, 100),
                (2, 3, 200),
                (2, 4, 200),
                (1, 5, 300),
            ] {
                let r = Shared { run, id, t };
                let (mut plain, mut cached) = (Vec::new(), Vec::new());
                plan.write(&r, &mut plain).unwrap();
                plan.write_cached(&r, &mut cached, &mut cache).unwrap();
                assert_eq!(
                    String::from_utf8(cached).unwrap(),
                    String::from_utf8(plain).unwrap()
                );
            }
        }
    }

    #[test]
    fn an_object_without_properties_flattens_to_no_column() {
        let s = json!({"type": "object", "properties": {
            "a": {"type": "object", "properties": {}}, "a__b": {"type": "integer"}}});
        let plan = OutputPlan::new(&s, &[], None, ON).unwrap();
        let written = write(&plan, json!({"a": {"b": 1}, "a__b": 2}));
        assert_eq!(written, json!({"a__b": 2}));
        assert_eq!(
            plan.schema()["properties"],
            json!({"a__b": {"type": ["integer", "null"]}})
        );
    }

    #[test]
    fn only_a_type_naming_object_is_flattened() {
        // Found by the flatten fuzz target: `properties` under a type of only "null", or
        // under no type, is one column (the SDK flattens only what `type` calls an object).
        let s = json!({"type": "object", "properties": {
            "n": {"type": ["null"], "properties": {"b": {"type": "integer"}}},
            "u": {"properties": {"b": {"type": "integer"}}},
            "o": {"type": ["object", "null"], "properties": {"b": {"type": "integer"}}}}});
        let plan = OutputPlan::new(&s, &[], None, ON).unwrap();
        let columns: Vec<&String> = plan.schema()["properties"]
            .as_object()
            .unwrap()
            .keys()
            .collect();
        assert_eq!(columns, vec!["n", "u", "o__b"]);
        let written = write(&plan, json!({"n": null, "u": {"b": 1}, "o": {"b": 2}}));
        assert_eq!(written, json!({"n": null, "u": {"b": 1}, "o__b": 2}));
        // Nothing but null fits a null-only type: an object there is refused, not passed on
        // against a SCHEMA that says null.
        let err = refusal(&plan, json!({"n": {"b": 1}, "u": null, "o": null}));
        assert!(err.to_string().contains('n'), "{err}");
    }

    #[test]
    fn coercion_table() {
        let cases = [
            (Kind::Integer, json!(3.0), Some(json!(3))),
            (Kind::Integer, json!(3.5), None),
            (Kind::Integer, json!(" 12 "), Some(json!(12))),
            (Kind::Integer, json!("12.0"), Some(json!(12))),
            (Kind::Integer, json!(false), Some(json!(0))),
            (Kind::Integer, json!(true), Some(json!(1))),
            (Kind::Integer, json!(""), Some(Value::Null)),
            (
                Kind::Integer,
                json!(-9223372036854775808i64),
                Some(json!(-9223372036854775808i64)),
            ),
            (Kind::Integer, json!(9223372036854775808u64), None),
            (Kind::Integer, json!("NaN"), None),
            (Kind::Number, json!("x"), None),
            (Kind::Number, json!(2), Some(json!(2))),
            (Kind::Number, json!(" 2.5 "), Some(json!(2.5))),
            (Kind::Number, json!(false), Some(json!(0))),
            (Kind::Number, json!("inf"), None),
            (Kind::Boolean, json!("false"), Some(json!(false))),
            (Kind::Boolean, json!(2), None),
            (Kind::DateTime, json!("1700000000"), Some(json!(1700000000))),
            (Kind::DateTime, json!(1700000000.5), Some(json!(1700000000))),
            (
                Kind::DateTime,
                json!("2023-11-14T22:13:20+01:00"),
                Some(json!(1699996400)),
            ),
            (Kind::DateTime, json!(1e300), None),
            (Kind::DateTime, json!(false), Some(Value::Null)),
            (Kind::Date, json!("2024-13-01"), None),
            (Kind::Date, json!(" 2024-02-29 "), Some(json!("2024-02-29"))),
            (Kind::String, json!(1.5), Some(json!("1.5"))),
            (Kind::String, json!({"a": 1}), None),
        ];
        for (kind, input, expected) in cases {
            assert_eq!(coerce(&kind, &input).ok(), expected, "{kind:?} {input}");
        }
    }
}
