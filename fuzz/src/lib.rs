//! Invariants of the reply parsers and the output plan (flattener) under arbitrary input,
//! shared by the cargo-fuzz targets (`fuzz_targets/`) and the proptest suite of the main crate
//! (`tests/it/properties.rs` includes this file with `#[path]`). Every check panics when an
//! invariant breaks and returns quietly otherwise; errors returned by the tap are fine.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use serde_json::{Map, Value};
use tap_withings::api::envelope::{classify, Endpoint, Outcome};
use tap_withings::conform::{ConformError, Flattening, OutputPlan, SpanCache};
use tap_withings::streams::sources::StreamBuilder;
use tap_withings::streams::{self, Record, ReplyError, STREAMS};

/// A signal's recording id in the checks (any value: the builders copy it into the records).
const RECORDING_ID: i64 = 4_242;

/// Every stream's record builder, from the tap's source table.
fn builders() -> Vec<(&'static str, StreamBuilder)> {
    streams::sources::stream_builders()
}

fn build(builder: StreamBuilder, body: &Value, userid: i64) -> Result<Vec<Record>, ReplyError> {
    match builder {
        StreamBuilder::Rows(f) => f(body, userid),
        StreamBuilder::Signal(f) => f(body, userid, RECORDING_ID),
    }
}

/// A compiled plan of a stream and the validator of the schema it writes to.
pub struct Compiled {
    pub stream: &'static str,
    pub keys: &'static [&'static str],
    pub flattening: Flattening,
    pub plan: OutputPlan,
    pub validator: jsonschema::Validator,
}

/// Plans of every stream under three flattenings (the default, one level, none).
pub fn plans() -> &'static [Compiled] {
    static PLANS: OnceLock<Vec<Compiled>> = OnceLock::new();
    PLANS.get_or_init(|| {
        let mut out = Vec::new();
        for def in STREAMS {
            for (enabled, max_depth) in [(true, 10), (true, 1), (false, 0)] {
                let flattening = Flattening { enabled, max_depth };
                let plan = OutputPlan::new(&def.schema(), def.keys, None, flattening)
                    .unwrap_or_else(|e| panic!("{}: the stream's own schema: {e}", def.name));
                let validator = jsonschema::options()
                    .should_validate_formats(true)
                    .build(plan.schema())
                    .unwrap_or_else(|e| panic!("{}: plan schema compiles: {e}", def.name));
                out.push(Compiled {
                    stream: def.name,
                    keys: def.keys,
                    flattening,
                    plan,
                    validator,
                });
            }
        }
        out
    })
}

thread_local! {
    /// Whether free-form columns must validate too. Off until the known bug is fixed (see
    /// `a_free_form_property_of_the_wrong_type_still_validates`): free-form properties are
    /// written as sent, so a string where the schema says object fails its SCHEMA.
    pub static STRICT_FREE_FORM: std::cell::Cell<bool> = const { std::cell::Cell::new(true) };
}

/// Columns of a plan schema that are free-form: an object (or array) without `properties`
/// (or `items`), or `properties` without a `type`.
pub fn free_form_columns(schema: &Value) -> Vec<String> {
    schema["properties"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(_, s)| !typed_schema(s))
        .map(|(k, _)| k.clone())
        .collect()
}

fn typed_schema(s: &Value) -> bool {
    let Some(o) = s.as_object() else { return true };
    let types: Vec<&str> = match o.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let free_form = (types.contains(&"object") && !o.contains_key("properties"))
        || (types.contains(&"array") && !o.contains_key("items"))
        || (types.is_empty() && (o.contains_key("properties") || o.contains_key("items")));
    !free_form
        && o.get("properties")
            .and_then(Value::as_object)
            .is_none_or(|p| p.values().all(typed_schema))
        && o.get("items").is_none_or(typed_schema)
}

/// Writes `record` with `plan`; checks the bytes are one JSON object, the same on a second
/// write, valid against the plan's schema, with non-null keys. None when the plan refuses the
/// record (a key is missing, or a value cannot be read as its type).
pub fn write_checked(c: &Compiled, record: &Map<String, Value>) -> Option<Value> {
    let (mut first, mut again) = (Vec::new(), Vec::new());
    let written = c.plan.write(record, &mut first);
    let rewritten = c.plan.write(record, &mut again);
    assert_eq!(written, rewritten, "{}: write is deterministic", c.stream);
    assert_eq!(first, again, "{}: write is deterministic", c.stream);
    if written.is_err() {
        assert!(
            first.is_empty(),
            "{}: a refused record writes nothing",
            c.stream
        );
        return None;
    }
    let value: Value = serde_json::from_slice(&first).unwrap_or_else(|e| {
        panic!(
            "{}: written record is not JSON ({e}): {}",
            c.stream,
            String::from_utf8_lossy(&first)
        )
    });
    let object = value.as_object().expect("a record is a JSON object");
    let columns = c.plan.schema()["properties"]
        .as_object()
        .map_or(0, Map::len);
    assert_eq!(
        object.len(),
        columns,
        "{}: one value per column, no column written twice",
        c.stream
    );
    let free = if STRICT_FREE_FORM.with(|s| s.get()) {
        Vec::new()
    } else {
        free_form_columns(c.plan.schema())
    };
    let errors: Vec<String> = c
        .validator
        .iter_errors(&value)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .filter(|e| {
            !free.iter().any(|col| {
                e.ends_with(&format!(" at /{col}")) || e.contains(&format!(" at /{col}/"))
            })
        })
        .collect();
    assert!(
        errors.is_empty(),
        "{} ({:?}): record invalid against its schema: {errors:?}\n{value}",
        c.stream,
        c.flattening
    );
    for key in c.keys {
        assert!(
            !value[*key].is_null(),
            "{}: key `{key}` written as null",
            c.stream
        );
    }
    Some(value)
}

/// Every builder on `body` (and on `body.body` when it is an envelope): never panics, gives
/// the same records twice, and every record it gives is written validly by its stream's plans.
/// Returns how many records were written.
pub fn check_reply(body: &Value) -> usize {
    let mut targets = vec![body];
    if let Some(inner) = body.get("body") {
        targets.push(inner);
    }
    let mut written = 0;
    for target in targets {
        for (stream, builder) in builders() {
            let first = build(builder, target, USERID);
            let again = build(builder, target, USERID);
            assert_eq!(first, again, "{stream}: the builder is deterministic");
            let Ok(records) = first else { continue };
            for c in plans().iter().filter(|c| c.stream == stream) {
                for record in &records {
                    written += usize::from(write_checked(c, record).is_some());
                }
            }
        }
    }
    written
}

/// The measures records of a getmeas body as the plan writes them (one line each), or the
/// first error (the reply's or the plan's) as text, read by the typed reader (None when it
/// leaves the body to the lenient one) and by the lenient one.
#[allow(clippy::type_complexity)]
pub fn measures_both_ways(
    body: &[u8],
    plan: &OutputPlan,
) -> (
    Option<Result<Vec<String>, String>>,
    Result<Vec<String>, String>,
) {
    let line = |write: &mut dyn FnMut(&mut Vec<u8>) -> Result<(), ConformError>| {
        let mut out = Vec::new();
        write(&mut out).map_err(|e| e.to_string())?;
        Ok(String::from_utf8(out).expect("records are UTF-8"))
    };
    let fast = streams::measure::fast_page(body).map(|page| {
        // Through one span cache, as a batch writes a page.
        let mut cache = SpanCache::default();
        page.rows(USERID)
            .map(|row| line(&mut |out| plan.write_cached(&row, out, &mut cache)))
            .collect()
    });
    let lenient = serde_json::from_slice::<Value>(body)
        .map_err(|e| format!("not JSON: {e}"))
        .and_then(|v| streams::measure::measures_records(&v, USERID).map_err(|e| e.0))
        .and_then(|(records, _)| {
            records
                .iter()
                .map(|r| line(&mut |out| plan.write(r, out)))
                .collect()
        });
    (fast, lenient)
}

const USERID: i64 = 1_000_001;

/// The typed getmeas reader (production's first choice, `measure::fast_page` + `MeasureRow`)
/// agrees with the lenient one (`measures_records`) on every body it accepts: the same
/// record lines under every measures plan, or the same error. Compared on bodies the lenient
/// reader can take at all, i.e. that parse as a JSON value: a typed read skips unknown fields
/// without checking their strings' UTF-8 (production hands it only bodies the envelope kept,
/// which serde_json checked) or their numbers' range (a number beyond f64 in a field neither
/// reader uses).
pub fn check_measures_readers(body: &[u8]) {
    if serde_json::from_slice::<Value>(body).is_err() {
        return;
    }
    // The whole-reply reader (production reads a getmeas reply as it arrives with it) takes
    // a body wrapped in a status-0 envelope exactly as the body reader takes the body.
    let mut reply = br#"{"status":0,"body":"#.to_vec();
    reply.extend_from_slice(body);
    reply.push(b'}');
    let rows = |page: streams::measure::FastPage| {
        let rows: Vec<String> = page.rows(USERID).map(|r| format!("{r:?}")).collect();
        rows
    };
    assert_eq!(
        streams::measure::fast_reply(&reply).map(rows),
        streams::measure::fast_page(body).map(rows),
        "the whole-reply and body readers differ on {}",
        String::from_utf8_lossy(body)
    );
    for c in plans().iter().filter(|c| c.stream == "measures") {
        let (fast, lenient) = measures_both_ways(body, &c.plan);
        if let Some(fast) = fast {
            assert_eq!(
                fast,
                lenient,
                "{:?}: the typed and lenient getmeas readers differ on {}",
                c.flattening,
                String::from_utf8_lossy(body)
            );
        }
        // The same records, or both refuse the page. Not always the same error: read one by
        // one, a group's value the plan refuses is met before a later group's value the
        // reader refuses, which the lenient reader meets first (it reads the whole page
        // before the plan writes any of it).
        if let Some(parts) = measures_by_parts(&reply, body, &c.plan) {
            assert!(
                parts == lenient || (parts.is_err() && lenient.is_err()),
                "{:?}: the groups read one by one ({parts:?}) differ from the lenient reader ({lenient:?}) on {}",
                c.flattening,
                String::from_utf8_lossy(body)
            );
        }
    }
}

/// The measures records of a status-0 `reply` (wrapping `body`) as the plan writes them,
/// read as production reads a page as it arrives: its groups framed from chunks (of a size
/// that depends on the reply) and read one by one (`measure::read_groups`). None when that
/// path does not apply: the body's `timezone` is not a string (such a page is read whole)
/// or it has no list of groups.
pub fn measures_by_parts(
    reply: &[u8],
    body: &[u8],
    plan: &OutputPlan,
) -> Option<Result<Vec<String>, String>> {
    use streams::frame::{ListFramer, Step};
    use streams::measure::{read_groups, GroupsError, Part};
    let value: Value = serde_json::from_slice(body).ok()?;
    let timezone = value.get("timezone")?.as_str()?;
    value.get("measuregrps")?.as_array()?;
    let mut framer = ListFramer::new("measuregrps");
    let (mut lines, mut groups) = (Vec::new(), 0);
    let mut cache = SpanCache::default();
    for chunk in reply.chunks(1 + reply.len() % 97) {
        let mut step = framer.push(chunk);
        while step == Ok(Step::ListStarts) {
            step = framer.push(&[]);
        }
        if step.is_err() {
            // Not framed as JSON: the lenient reader refuses it too (it parsed, so this is
            // a nesting the framer does not take; compared only when framed).
            return None;
        }
        let texts: Vec<&[u8]> = framer.elements().collect();
        let read = read_groups(&texts, groups, timezone, USERID);
        groups += texts.len();
        drop(texts);
        framer.consume();
        let parts = match read {
            Ok(parts) => parts,
            Err(GroupsError::Refused(e)) => return Some(Err(e.0)),
            Err(GroupsError::NotJson) => panic!("a framed group of a JSON reply is not JSON"),
        };
        for part in parts {
            let written: Result<(), String> = match part {
                Part::Typed(page) => page.rows(USERID).try_for_each(|row| {
                    let mut out = Vec::new();
                    plan.write_cached(&row, &mut out, &mut cache)
                        .map_err(|e| e.to_string())?;
                    lines.push(String::from_utf8(out).expect("records are UTF-8"));
                    Ok(())
                }),
                Part::Records(records) => records.iter().try_for_each(|r| {
                    let mut out = Vec::new();
                    plan.write(r, &mut out).map_err(|e| e.to_string())?;
                    lines.push(String::from_utf8(out).expect("records are UTF-8"));
                    Ok(())
                }),
            };
            if let Err(e) = written {
                return Some(Err(e));
            }
        }
    }
    let skeleton = framer.finish().expect("a whole reply ends its list");
    // A reply giving a field twice is refused (after its first groups were written); the
    // lenient reader takes the last of them.
    match streams::measure::page_skeleton(&skeleton) {
        streams::measure::Skeleton::Whole => Some(Ok(lines)),
        _ => None,
    }
}

/// Arbitrary bytes as a reply: classified under every endpoint and a few HTTP statuses (a
/// kept body through [`check_measures_readers`]), then, when they are JSON, [`check_reply`];
/// the bytes themselves as a getmeas body too.
pub fn check_reply_bytes(data: &[u8]) {
    for http in [200, 401, 429, 502] {
        for endpoint in [Endpoint::Data, Endpoint::Token] {
            let outcome = classify(http, data, endpoint);
            // A body kept as text is exactly the envelope's `body`, and both getmeas readers
            // agree on it (what sync_measures does with it).
            if let Outcome::Ok(reply) = outcome {
                if let Some(kept) = reply.raw_body() {
                    check_measures_readers(kept);
                    // A kept body is valid JSON text, though a number in it may be out of
                    // range for a value (`1E700000000`): then reading it as a value fails,
                    // which the tap reports as an unreadable reply (never a panic).
                    match serde_json::from_slice::<Value>(data) {
                        Ok(envelope) => assert_eq!(
                            reply.into_value().ok().as_ref(),
                            Some(&envelope["body"]),
                            "the kept body is the envelope's"
                        ),
                        Err(e) => assert!(
                            reply.into_value().is_err(),
                            "a body kept from a reply that is not a JSON value ({e}) reads as one"
                        ),
                    }
                }
            }
        }
    }
    check_measures_readers(data);
    if let Ok(value) = serde_json::from_slice::<Value>(data) {
        check_reply(&value);
    }
}

/// The columns flattening `props` must give (the Meltano SDK rule the plan follows): an
/// object property with known properties becomes `parent__child` columns while
/// `depth < max_depth`; anything else is one column.
pub fn expected_columns(
    props: &Map<String, Value>,
    prefix: &str,
    depth: usize,
    f: Flattening,
    out: &mut Vec<String>,
) {
    for (name, schema) in props {
        let full = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}__{name}")
        };
        let types: Vec<&str> = match &schema["type"] {
            Value::String(s) => vec![s.as_str()],
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        let concrete: Vec<&str> = types.into_iter().filter(|t| *t != "null").collect();
        match schema["properties"].as_object() {
            Some(inner) if concrete == ["object"] && f.enabled && depth < f.max_depth => {
                expected_columns(inner, &full, depth + 1, f, out)
            }
            _ => out.push(full),
        }
    }
}

/// An arbitrary object schema and record: the plan refuses exactly the flattenings whose
/// columns collide, otherwise has exactly the expected columns and writes the record validly
/// and deterministically, one value per column.
pub fn check_flatten(props: &Map<String, Value>, record: &Value, f: Flattening) {
    let schema = serde_json::json!({"type": "object", "properties": props});
    let mut columns = Vec::new();
    expected_columns(props, "", 0, f, &mut columns);
    let unique: BTreeSet<&String> = columns.iter().collect();
    let plan = OutputPlan::new(&schema, &[], None, f);
    let plan = match plan {
        Err(e) => {
            assert!(
                unique.len() < columns.len(),
                "refused a flattening without collisions ({e}): {columns:?}"
            );
            return;
        }
        Ok(plan) => {
            assert_eq!(
                unique.len(),
                columns.len(),
                "two columns were merged silently: {columns:?}"
            );
            plan
        }
    };
    let got: BTreeSet<&String> = plan.schema()["properties"]
        .as_object()
        .expect("plan schema has properties")
        .keys()
        .collect();
    assert_eq!(got, unique, "the plan's columns are the expected ones");
    let again = OutputPlan::new(&schema, &[], None, f).expect("same input, same plan");
    assert_eq!(plan.schema(), again.schema(), "planning is deterministic");
    let Ok(validator) = jsonschema::options()
        .should_validate_formats(true)
        .build(plan.schema())
    else {
        // An arbitrary schema may be invalid JSON Schema (e.g. an unknown format); the
        // tap's own schemas are checked in `plans()`.
        return;
    };
    let c = Compiled {
        stream: "arbitrary",
        keys: &[],
        flattening: f,
        plan,
        validator,
    };
    let empty = Map::new();
    write_checked(&c, record.as_object().unwrap_or(&empty));
}

/// Arbitrary bytes for [`check_flatten`]: JSON `{"schema": {properties}, "record": {..},
/// "max_depth": N, "enabled": bool}`; anything else is ignored.
pub fn check_flatten_bytes(data: &[u8]) {
    let Ok(input) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let Some(props) = input["schema"].as_object() else {
        return;
    };
    if !props.values().all(plain_schema) {
        return;
    }
    // Non-nullable properties are written as null when a value is missing (a known bug, see
    // the ignored test `a_non_nullable_property_without_a_value_still_validates`): fuzz the
    // nullable schemas the tap uses until it is fixed.
    let props: Map<String, Value> = props
        .iter()
        .map(|(k, v)| (k.clone(), nullable(v)))
        .collect();
    let props = &props;
    let f = Flattening {
        enabled: input["enabled"].as_bool().unwrap_or(true),
        max_depth: input["max_depth"].as_u64().unwrap_or(10).min(20) as usize,
    };
    check_flatten(props, &input["record"], f);
}

/// `schema` with "null" added to every `type` (nested properties and items too).
fn nullable(schema: &Value) -> Value {
    let mut s = schema.clone();
    if let Some(o) = s.as_object_mut() {
        match o.get_mut("type") {
            Some(Value::String(t)) if t != "null" => {
                let t = t.clone();
                o.insert("type".into(), serde_json::json!([t, "null"]));
            }
            Some(Value::Array(types)) if !types.iter().any(|t| t == "null") => {
                types.push("null".into())
            }
            _ => {}
        }
        if let Some(items) = o.get("items").map(nullable) {
            o.insert("items".into(), items);
        }
        if let Some(Value::Object(props)) = o.get_mut("properties") {
            for v in props.values_mut() {
                *v = nullable(v);
            }
        }
    }
    s
}

/// Keywords of the schemas the flattener is meant for: the shape keywords it plans with and
/// annotations. Value constraints (`enum`, `const`, `minimum`, `pattern`, …) are not
/// enforced by the plan (the tap's schemas have none), so a schema using them is skipped.
const PLAIN_KEYWORDS: &[&str] = &[
    "type",
    "format",
    "items",
    "properties",
    "description",
    "title",
    "$comment",
];

/// Schemas the flattener is meant for: objects whose `type`, `format`, `items` and
/// `properties` have JSON Schema's shapes, typed where they nest (the tap's schemas are).
fn plain_schema(s: &Value) -> bool {
    let Some(o) = s.as_object() else { return false };
    if !o.keys().all(|k| PLAIN_KEYWORDS.contains(&k.as_str())) {
        return false;
    }
    let type_ok = match o.get("type") {
        None => true,
        Some(Value::String(_)) => true,
        Some(Value::Array(a)) => a.iter().all(Value::is_string),
        _ => false,
    };
    // Free-form properties are written unchecked (see `STRICT_FREE_FORM`): leave them out.
    let typed = typed_schema(s);
    type_ok
        && typed
        && o.get("format").is_none_or(Value::is_string)
        && o.get("items").is_none_or(plain_schema)
        && o.get("properties")
            .is_none_or(|p| p.as_object().is_some_and(|p| p.values().all(plain_schema)))
}
