//! Inline stream maps with the Meltano SDK's semantics and syntax (`stream_maps`,
//! `stream_map_config`): per stream, drop it (`null`), rename it (`__alias__`), filter its
//! records (`__filter__`), set its key (`__key_properties__`), drop properties (`null`) or
//! compute them from expressions ([`expr`]), keep only the named ones (`__else__: null`);
//! a top-level `__else__: null` drops every stream not named. Stream names may be globs
//! (`*`, `?`). The SCHEMA sent follows the map ([`schema`]). Pure: [`Maps::parse`] checks the
//! settings, [`Maps::route`] compiles a stream's map against its schema, and
//! [`StreamMapper::apply`] maps one record.

pub mod expr;
pub mod schema;

use std::collections::BTreeSet;
use std::sync::Arc;

use rhai::Dynamic;
use serde_json::{json, Map, Value};

use self::expr::{Expr, Names, BUILTIN_NAMES};

const ELSE: &str = "__else__";
const FILTER: &str = "__filter__";
const ALIAS: &str = "__alias__";
const KEYS: &str = "__key_properties__";
const SOURCE: &str = "__source__";
/// The SDK's spelling of null where a null cannot be written (environment variables).
const NULL_STRING: &str = "__NULL__";

fn is_null(v: &Value) -> bool {
    v.is_null() || v.as_str() == Some(NULL_STRING)
}

/// A property's map: dropped, or computed.
#[derive(Debug, Clone)]
enum PropMap {
    Drop,
    Compute(Expr),
}

/// The map of the streams one `stream_maps` key names.
#[derive(Debug, Clone)]
struct MapDef {
    alias: Option<String>,
    filter: Option<Expr>,
    /// `Some(vec![])` for `__key_properties__: null` (no key).
    keys: Option<Vec<String>>,
    else_drop: bool,
    props: Vec<(String, PropMap)>,
}

/// The `stream_maps` and `stream_map_config` settings, checked.
#[derive(Debug, Clone)]
pub struct Maps {
    /// Stream name or glob → map (`None`: drop the stream), in config order.
    entries: Vec<(String, Option<MapDef>)>,
    /// Top-level `__else__: null`: streams no key names are dropped.
    else_drop: bool,
    config: Value,
}

/// What the maps do with one stream.
#[derive(Debug, Clone)]
pub enum Route {
    /// Sent as it is.
    Same,
    /// Not sent at all (its bookmarks still move, as in the SDK).
    Removed,
    /// Sent through a map.
    Mapped(Arc<StreamMapper>),
}

impl Maps {
    /// Checks `stream_maps` (an object) and `stream_map_config` (an object, given to
    /// expressions as `config`). None when no map is set. Errors name the place:
    /// `stream_maps.<stream>.<property>: ...`.
    pub fn parse(
        stream_maps: Option<&Value>,
        map_config: Option<&Value>,
    ) -> Result<Option<Maps>, String> {
        let config = match map_config {
            None | Some(Value::Null) => json!({}),
            Some(v @ Value::Object(_)) => v.clone(),
            Some(_) => return Err("setting `stream_map_config` must be an object".into()),
        };
        let maps = match stream_maps {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::Object(m)) => m,
            Some(_) => {
                return Err("setting `stream_maps` must be an object (stream name → map)".into())
            }
        };
        if maps.is_empty() {
            return Ok(None);
        }
        let mut entries = Vec::new();
        let mut else_drop = false;
        for (key, value) in maps {
            let at = format!("stream_maps.{key}");
            if key == ELSE {
                if !is_null(value) {
                    return Err(format!(
                        "{at}: only null (drop every stream not named) is supported"
                    ));
                }
                else_drop = true;
                continue;
            }
            if key.starts_with("__") {
                return Err(format!(
                    "{at}: unknown option (a stream name cannot start with `__`)"
                ));
            }
            if is_null(value) {
                entries.push((key.clone(), None));
                continue;
            }
            let Value::Object(def) = value else {
                return Err(format!(
                    "{at}: must be an object (the stream's map) or null (drop the stream)"
                ));
            };
            entries.push((key.clone(), Some(parse_def(&at, def)?)));
        }
        Ok(Some(Maps {
            entries,
            else_drop,
            config,
        }))
    }

    /// The route of a stream whose records have `schema` (an object schema, as sent without
    /// maps), `keys` and `bookmarks` (bookmark properties). The last key of `stream_maps`
    /// naming the stream (exactly or as a glob) decides, as in the SDK.
    pub fn route(
        &self,
        stream: &str,
        schema: &Value,
        keys: &[&str],
        bookmarks: &[&str],
    ) -> Result<Route, String> {
        let Some((key, def)) = self
            .entries
            .iter()
            .rev()
            .find(|(pattern, _)| pattern == stream || glob_match(pattern, stream))
        else {
            return Ok(if self.else_drop {
                Route::Removed
            } else {
                Route::Same
            });
        };
        let Some(def) = def else {
            return Ok(Route::Removed);
        };
        StreamMapper::new(key, def, stream, schema, keys, bookmarks, &self.config)
            .map(|m| Route::Mapped(Arc::new(m)))
    }
}

fn parse_def(at: &str, def: &Map<String, Value>) -> Result<MapDef, String> {
    let mut out = MapDef {
        alias: None,
        filter: None,
        keys: None,
        else_drop: false,
        props: Vec::new(),
    };
    for (name, value) in def {
        let here = format!("{at}.{name}");
        match name.as_str() {
            ALIAS => match value {
                Value::String(s) if !s.trim().is_empty() => out.alias = Some(s.clone()),
                _ => return Err(format!("{here}: must be the new stream name (a string)")),
            },
            FILTER => match value {
                Value::String(s) => {
                    out.filter = Some(Expr::compile(s).map_err(|e| format!("{here}: {e}"))?)
                }
                _ => return Err(format!("{here}: must be an expression (a string)")),
            },
            KEYS => {
                out.keys = Some(match value {
                    v if is_null(v) => Vec::new(),
                    Value::Array(items) => items
                        .iter()
                        .map(|i| i.as_str().map(str::to_string))
                        .collect::<Option<Vec<_>>>()
                        .ok_or_else(|| format!("{here}: must be a list of property names"))?,
                    _ => return Err(format!("{here}: must be a list of property names or null")),
                })
            }
            ELSE => {
                if !is_null(value) {
                    return Err(format!(
                        "{here}: only null (drop every property not named) is supported"
                    ));
                }
                out.else_drop = true;
            }
            SOURCE => {
                return Err(format!(
                    "{here}: copying a stream into a second one is not supported by this tap (use `__alias__` to rename it)"
                ))
            }
            other if other.starts_with("__") => {
                return Err(format!(
                    "{here}: unknown option (known: __alias__, __filter__, __key_properties__, __else__)"
                ))
            }
            _ => out.props.push((
                name.clone(),
                match value {
                    v if is_null(v) => PropMap::Drop,
                    Value::String(s) => {
                        PropMap::Compute(Expr::compile(s).map_err(|e| format!("{here}: {e}"))?)
                    }
                    _ => {
                        return Err(format!(
                            "{here}: must be an expression (a string) or null (drop the property)"
                        ))
                    }
                },
            )),
        }
    }
    Ok(out)
}

/// fnmatch's `*` (any run) and `?` (any one character); everything else is literal.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    fn go(p: &[char], n: &[char]) -> bool {
        match p.split_first() {
            None => n.is_empty(),
            Some(('*', rest)) => (0..=n.len()).any(|i| go(rest, &n[i..])),
            Some(('?', rest)) => !n.is_empty() && go(rest, &n[1..]),
            Some((c, rest)) => n.first() == Some(c) && go(rest, &n[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    (pattern.contains('*') || pattern.contains('?')) && go(&p, &n)
}

/// One stream's compiled map.
#[derive(Debug)]
pub struct StreamMapper {
    /// The name the stream is sent under.
    pub alias: String,
    /// The tap's name of the stream (its bookmarks stay under it).
    pub original: String,
    /// The SCHEMA sent.
    pub schema: Value,
    pub keys: Vec<String>,
    /// Bookmark properties still in the schema.
    pub bookmarks: Vec<String>,
    /// `stream_maps.<key>`, for messages.
    at: String,
    filter: Option<Expr>,
    else_drop: bool,
    props: Vec<(String, PropMap)>,
    /// Every name the expressions read.
    used: BTreeSet<String>,
    config: Dynamic,
}

impl StreamMapper {
    fn new(
        key: &str,
        def: &MapDef,
        stream: &str,
        schema: &Value,
        keys: &[&str],
        bookmarks: &[&str],
        config: &Value,
    ) -> Result<StreamMapper, String> {
        let at = format!("stream_maps.{key}");
        let empty = Map::new();
        let raw_props = schema
            .get("properties")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        let alias = match &def.alias {
            None => stream.to_string(),
            Some(a) => stream_alias(a, stream).map_err(|e| format!("{at}.{ALIAS}: {e}"))?,
        };
        let mut used = BTreeSet::new();
        let mut check = |place: &str, e: &Expr| -> Result<(), String> {
            for name in e.names() {
                if !BUILTIN_NAMES.contains(&name.as_str()) && !raw_props.contains_key(name) {
                    return Err(format!(
                        "{at}.{place}: unknown name `{name}` in `{}` (not a property of stream {stream}; names: its properties, {})",
                        e.source(),
                        BUILTIN_NAMES.join(", ")
                    ));
                }
                used.insert(name.clone());
            }
            Ok(())
        };
        if let Some(f) = &def.filter {
            check(FILTER, f)?;
        }
        for (prop, map) in &def.props {
            if let PropMap::Compute(e) = map {
                check(prop, e)?;
            }
        }
        let keys: Vec<String> = match &def.keys {
            Some(k) => k.clone(),
            None => keys.iter().map(|k| k.to_string()).collect(),
        };
        // The schema: every property (or, with `__else__: null`, only the keys), then the
        // named ones dropped or computed.
        let mut out = schema.clone();
        let mut props: Map<String, Value> = if def.else_drop {
            raw_props
                .iter()
                .filter(|(name, _)| keys.contains(name))
                .map(|(n, s)| (n.clone(), s.clone()))
                .collect()
        } else {
            raw_props.clone()
        };
        for (prop, map) in &def.props {
            match map {
                PropMap::Drop => {
                    if keys.contains(prop) {
                        return Err(format!(
                            "{at}.{prop}: cannot drop a key property (set `__key_properties__` to a new list, or null for none)"
                        ));
                    }
                    props.shift_remove(prop);
                }
                PropMap::Compute(e) => {
                    let existing =
                        |name: &str| props.get(name).or_else(|| raw_props.get(name)).cloned();
                    let ty = schema::infer(e.source(), prop, existing, schema);
                    props.insert(prop.clone(), ty);
                }
            }
        }
        for k in &keys {
            if !props.contains_key(k) {
                return Err(format!(
                    "{at}.{KEYS}: key property `{k}` is not a property of the mapped stream {alias}"
                ));
            }
        }
        if let Some(required) = out.get_mut("required").and_then(Value::as_array_mut) {
            required.retain(|r| r.as_str().is_some_and(|r| props.contains_key(r)));
        }
        out["properties"] = Value::Object(props);
        let bookmarks = bookmarks
            .iter()
            .filter(|b| out["properties"].get(**b).is_some())
            .map(|b| b.to_string())
            .collect();
        Ok(StreamMapper {
            alias,
            original: stream.to_string(),
            schema: out,
            keys,
            bookmarks,
            at,
            filter: def.filter.clone(),
            else_drop: def.else_drop,
            props: def.props.clone(),
            used,
            config: expr::to_dynamic(config),
        })
    }

    /// Maps one record (as sent without maps): None when the filter drops it. The error
    /// names the expression that failed.
    pub fn apply(&self, record: &Map<String, Value>) -> Result<Option<Map<String, Value>>, String> {
        let mut names = Names::new(
            record,
            &self.used,
            &self.config,
            &self.alias,
            &self.original,
        );
        if let Some(filter) = &self.filter {
            let keep = filter
                .eval(&mut names)
                .map_err(|e| format!("{}.{FILTER}: {e}", self.at))?;
            if !truthy(&keep) {
                return Ok(None);
            }
        }
        let mut out = if self.else_drop {
            self.keys
                .iter()
                .filter_map(|k| record.get(k).map(|v| (k.clone(), v.clone())))
                .collect()
        } else {
            record.clone()
        };
        for (prop, map) in &self.props {
            match map {
                PropMap::Drop => {
                    out.shift_remove(prop);
                }
                PropMap::Compute(e) => {
                    names.set_self(record.get(prop));
                    let value = e
                        .eval(&mut names)
                        .map_err(|why| format!("{}.{prop}: {why}", self.at))?;
                    out.insert(prop.clone(), value);
                }
            }
        }
        Ok(Some(out))
    }
}

/// An `__alias__`: an expression over `__stream_name__` when it reads it or is quoted, else
/// the name as written (the SDK falls back to the text when it names nothing it knows).
fn stream_alias(alias: &str, stream: &str) -> Result<String, String> {
    let trimmed = alias.trim();
    if !trimmed.contains("__stream_name__") && !trimmed.starts_with(['\'', '"']) {
        return Ok(alias.to_string());
    }
    let e = Expr::compile(trimmed)?;
    if let Some(other) = e.names().iter().find(|n| *n != "__stream_name__") {
        return Err(format!(
            "`{alias}` can only read __stream_name__, not `{other}`"
        ));
    }
    let mut names = Names::new(&Map::new(), e.names(), &Dynamic::UNIT, stream, stream);
    match e.eval(&mut names)? {
        Value::String(s) if !s.is_empty() => Ok(s),
        other => Err(format!("`{alias}` must give a stream name, gave {other}")),
    }
}

/// Python's truthiness of a JSON value (what `__filter__` keeps).
fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    fn md5hex(text: &str) -> String {
        use md5::Digest as _;
        md5::Md5::digest(text)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    fn devices_schema() -> Value {
        json!({"type": "object", "properties": {
            "userid": {"type": "integer"},
            "deviceid": {"type": "string"},
            "mac_address": {"type": ["string", "null"]},
            "battery": {"type": ["string", "null"]},
            "modified": {"type": ["string", "null"], "format": "date-time"},
        }, "required": ["userid", "deviceid", "mac_address"]})
    }

    fn route(maps: Value, config: Value, stream: &str) -> Result<Route, String> {
        let maps = Maps::parse(Some(&maps), Some(&config))?.expect("maps");
        maps.route(
            stream,
            &devices_schema(),
            &["userid", "deviceid"],
            &["modified"],
        )
    }

    fn mapper(maps: Value, config: Value) -> Arc<StreamMapper> {
        match route(maps, config, "devices").unwrap() {
            Route::Mapped(m) => m,
            other => panic!("{other:?}"),
        }
    }

    fn record() -> Map<String, Value> {
        json!({"userid": 7, "deviceid": "d1", "mac_address": "aa:bb", "battery": "low", "modified": "2024-01-01T00:00:00Z"})
            .as_object()
            .unwrap()
            .clone()
    }

    #[test]
    fn alias_drop_hash_and_new_key() {
        let m = mapper(
            json!({"devices": {
                "__alias__": "my_devices",
                "mac_address": null,
                "userid": "md5(config['salt'] + str(userid))",
                "battery_low": "battery == 'low'",
                "__key_properties__": ["userid", "deviceid", "battery_low"],
            }}),
            json!({"salt": "s"}),
        );
        assert_eq!(m.alias, "my_devices");
        assert_eq!(m.original, "devices");
        assert_eq!(m.keys, ["userid", "deviceid", "battery_low"]);
        assert_eq!(m.bookmarks, ["modified"]);
        assert_eq!(
            m.schema,
            json!({"type": "object", "properties": {
                "userid": {"type": "string"},
                "deviceid": {"type": "string"},
                "battery": {"type": ["string", "null"]},
                "modified": {"type": ["string", "null"], "format": "date-time"},
                "battery_low": {"type": "boolean"},
            }, "required": ["userid", "deviceid"]})
        );
        let out = m.apply(&record()).unwrap().unwrap();
        assert_eq!(
            Value::Object(out),
            json!({"userid": md5hex("s7"), "deviceid": "d1", "battery": "low", "modified": "2024-01-01T00:00:00Z", "battery_low": true})
        );
    }

    #[test]
    fn filter_and_else_keep_only_what_is_named() {
        let m = mapper(
            json!({"devices": {"__filter__": "battery != 'low'", "__else__": null, "b": "str(battery)"}}),
            json!({}),
        );
        assert_eq!(m.apply(&record()).unwrap(), None);
        let mut r = record();
        r.insert("battery".into(), json!("high"));
        assert_eq!(
            Value::Object(m.apply(&r).unwrap().unwrap()),
            json!({"userid": 7, "deviceid": "d1", "b": "high"})
        );
        assert_eq!(
            m.schema["properties"],
            json!({"userid": {"type": "integer"}, "deviceid": {"type": "string"}, "b": {"type": "string"}})
        );
        assert_eq!(m.bookmarks, Vec::<String>::new());
    }

    #[test]
    fn streams_are_dropped_by_null_by_else_and_matched_by_globs() {
        assert!(matches!(
            route(json!({"devices": null}), json!({}), "devices"),
            Ok(Route::Removed)
        ));
        assert!(matches!(
            route(json!({"devices": "__NULL__"}), json!({}), "devices"),
            Ok(Route::Removed)
        ));
        assert!(matches!(
            route(json!({"goals": {}, "__else__": null}), json!({}), "devices"),
            Ok(Route::Removed)
        ));
        assert!(matches!(
            route(json!({"goals": null}), json!({}), "devices"),
            Ok(Route::Same)
        ));
        let m = mapper(
            json!({"dev*": {"__alias__": "'raw_' + __stream_name__"}}),
            json!({}),
        );
        assert_eq!(m.alias, "raw_devices");
        // The last key naming the stream wins.
        assert!(matches!(
            route(json!({"devices": null, "*": {}}), json!({}), "devices"),
            Ok(Route::Mapped(_))
        ));
        assert!(glob_match("sleep_*", "sleep_series"));
        assert!(glob_match("?oals", "goals"));
        assert!(!glob_match("sleep_*", "measures"));
        assert!(!glob_match("goals", "goals"));
    }

    #[test]
    fn bad_maps_name_the_place() {
        for (maps, expected) in [
            (json!([1]), "`stream_maps` must be an object"),
            (
                json!({"devices": 3}),
                "stream_maps.devices: must be an object",
            ),
            (
                json!({"devices": {"x": "(userid + "}}),
                "stream_maps.devices.x: cannot parse",
            ),
            (
                json!({"devices": {"x": "sha1(userid)"}}),
                "stream_maps.devices.x: unknown function `sha1`",
            ),
            (
                json!({"devices": {"x": "nosuch + 1"}}),
                "stream_maps.devices.x: unknown name `nosuch`",
            ),
            (
                json!({"devices": {"x": 5}}),
                "stream_maps.devices.x: must be an expression",
            ),
            (
                json!({"devices": {"userid": null}}),
                "stream_maps.devices.userid: cannot drop a key property",
            ),
            (
                json!({"devices": {"__key_properties__": ["nope"]}}),
                "key property `nope` is not a property",
            ),
            (
                json!({"devices": {"__source__": "goals"}}),
                "stream_maps.devices.__source__: copying",
            ),
            (
                json!({"devices": {"__bogus__": 1}}),
                "stream_maps.devices.__bogus__: unknown option",
            ),
            (json!({"devices": {"__else__": "x"}}), "only null"),
            (json!({"__else__": {}}), "stream_maps.__else__: only null"),
            (json!({"__x__": {}}), "stream_maps.__x__: unknown option"),
            (
                json!({"devices": {"__filter__": "a if b else c"}}),
                "stream_maps.devices.__filter__: `if` is not supported",
            ),
            (
                json!({"devices": {"__alias__": 3}}),
                "stream_maps.devices.__alias__: must be",
            ),
        ] {
            let err = route(maps.clone(), json!({}), "devices").unwrap_err();
            assert!(err.contains(expected), "{maps}: {err}");
            assert!(!err.contains('\n'), "{err}");
        }
        let err = Maps::parse(Some(&json!({})), Some(&json!(3))).unwrap_err();
        assert!(
            err.contains("`stream_map_config` must be an object"),
            "{err}"
        );
        assert!(Maps::parse(Some(&json!({})), None).unwrap().is_none());
        assert!(Maps::parse(None, None).unwrap().is_none());
    }

    #[test]
    fn a_failing_expression_names_its_property() {
        let m = mapper(json!({"devices": {"n": "int(deviceid)"}}), json!({}));
        let err = m.apply(&record()).unwrap_err();
        assert!(
            err.starts_with("stream_maps.devices.n: `int(deviceid)` failed"),
            "{err}"
        );
    }

    #[test]
    fn missing_properties_read_as_none_and_self_is_the_old_value() {
        let m = mapper(
            json!({"devices": {"battery": "self is None", "mac_address": "str(self)"}}),
            json!({}),
        );
        let mut r = record();
        r.remove("battery");
        let out = m.apply(&r).unwrap().unwrap();
        assert_eq!(out["battery"], json!(true));
        assert_eq!(out["mac_address"], json!("aa:bb"));
    }
}
