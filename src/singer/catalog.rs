//! The Singer catalog: built from [`STREAMS`] for `--discover`, and read back from
//! `--catalog`/`--properties` into a [`Selection`] with Meltano's rules (`selected`, else
//! `selected-by-default`; `inclusion: automatic` always on). Pure.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use crate::streams::{Replication, StreamDef, STREAMS};

/// The catalog `--discover` prints.
pub fn build_catalog() -> Value {
    Value::Object(
        [(
            "streams".to_string(),
            Value::Array(STREAMS.iter().map(catalog_entry).collect()),
        )]
        .into_iter()
        .collect(),
    )
}

fn catalog_entry(def: &StreamDef) -> Value {
    let schema = def.schema();
    let automatic: BTreeSet<&str> = def
        .keys
        .iter()
        .copied()
        .chain(def.replication_key())
        .collect();
    let mut top = json!({
        "inclusion": "available",
        "selected-by-default": true,
        "table-key-properties": def.keys,
        "schema-name": def.name,
    });
    match def.replication {
        Replication::Incremental(key) => {
            top["forced-replication-method"] = json!("INCREMENTAL");
            top["valid-replication-keys"] = json!([key]);
        }
        Replication::FullTable => top["forced-replication-method"] = json!("FULL_TABLE"),
    }
    if let Some(parent) = def.parent {
        top["parent-tap-stream-id"] = json!(parent);
    }
    let mut metadata = vec![json!({"breadcrumb": [], "metadata": top})];
    if let Some(props) = schema["properties"].as_object() {
        for name in props.keys() {
            let inclusion = if automatic.contains(name.as_str()) {
                "automatic"
            } else {
                "available"
            };
            metadata.push(json!({
                "breadcrumb": ["properties", name],
                "metadata": {"inclusion": inclusion, "selected-by-default": true},
            }));
        }
    }
    let mut entry = json!({
        "tap_stream_id": def.name,
        "stream": def.name,
        "schema": schema,
        "key_properties": def.keys,
        "replication_method": match def.replication { Replication::Incremental(_) => "INCREMENTAL", Replication::FullTable => "FULL_TABLE" },
        "metadata": metadata,
    });
    if let Some(key) = def.replication_key() {
        entry["replication_key"] = json!(key);
    }
    entry
}

/// What a catalog selects: per stream, whether it is synced and which top-level properties.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Selection {
    streams: BTreeMap<String, BTreeSet<String>>,
}

impl Selection {
    /// Every stream with every property (no catalog given).
    pub fn all() -> Self {
        let streams = STREAMS
            .iter()
            .map(|def| {
                (
                    def.name.to_string(),
                    def.schema()["properties"]
                        .as_object()
                        .map(|p| p.keys().cloned().collect())
                        .unwrap_or_default(),
                )
            })
            .collect();
        Selection { streams }
    }

    /// Is the stream selected?
    pub fn is_selected(&self, stream: &str) -> bool {
        self.streams.contains_key(stream)
    }

    /// The selected top-level properties of a selected stream.
    pub fn properties(&self, stream: &str) -> Option<&BTreeSet<String>> {
        self.streams.get(stream)
    }

    /// Reads selection from a catalog document (`name` is used in error messages).
    pub fn from_catalog(name: &str, catalog: &Value) -> Result<Self, String> {
        let entries = catalog["streams"].as_array().ok_or_else(|| {
            format!("catalog file {name}: expected an object with a `streams` list")
        })?;
        let mut streams = BTreeMap::new();
        for (i, entry) in entries.iter().enumerate() {
            let id = entry["tap_stream_id"]
                .as_str()
                .or_else(|| entry["stream"].as_str())
                .ok_or_else(|| {
                    format!("catalog file {name}: stream entry {i} has no tap_stream_id")
                })?;
            let def = STREAMS.iter().find(|d| d.name == id).ok_or_else(|| {
                format!(
                    "catalog file {name}: unknown stream `{id}` (see `tap-withings --discover`)"
                )
            })?;
            let metadata = match &entry["metadata"] {
                Value::Array(m) => m.as_slice(),
                Value::Null => &[],
                _ => {
                    return Err(format!(
                        "catalog file {name}: stream `{id}`: `metadata` must be a list"
                    ))
                }
            };
            let mut top = None;
            let mut props: BTreeMap<String, &Value> = BTreeMap::new();
            for md in metadata {
                for flag in ["selected", "selected-by-default"] {
                    if md["metadata"]
                        .get(flag)
                        .is_some_and(|v| !v.is_boolean() && !v.is_null())
                    {
                        return Err(format!(
                            "catalog file {name}: stream `{id}`: metadata `{flag}` must be true or false, got {}",
                            md["metadata"][flag]
                        ));
                    }
                }
                let crumb = md["breadcrumb"]
                    .as_array()
                    .ok_or_else(|| format!("catalog file {name}: stream `{id}`: metadata entry without a breadcrumb list"))?;
                match crumb.as_slice() {
                    [] => top = Some(&md["metadata"]),
                    [Value::String(p), Value::String(prop)] if p == "properties" => {
                        props.insert(prop.clone(), &md["metadata"]);
                    }
                    _ => {}
                }
            }
            if !top.is_some_and(is_selected) {
                continue;
            }
            let automatic: BTreeSet<&str> = def
                .keys
                .iter()
                .copied()
                .chain(def.replication_key())
                .collect();
            let schema = def.schema();
            let selected = schema["properties"]
                .as_object()
                .map(|all| {
                    all.keys()
                        .filter(|p| {
                            automatic.contains(p.as_str())
                                || props.get(*p).is_none_or(|md| is_selected(md))
                        })
                        .cloned()
                        .collect()
                })
                .unwrap_or_default();
            streams.insert(id.to_string(), selected);
        }
        Ok(Selection { streams })
    }
}

/// Meltano's rule: `inclusion: unsupported` never; `automatic` always; else `selected`, else
/// `selected-by-default`, else not selected.
fn is_selected(md: &Value) -> bool {
    match md["inclusion"].as_str() {
        Some("unsupported") => false,
        Some("automatic") => true,
        _ => md["selected"]
            .as_bool()
            .or_else(|| md["selected-by-default"].as_bool())
            .unwrap_or(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    fn catalog_with(f: impl Fn(&mut Value)) -> Value {
        let mut c = build_catalog();
        f(&mut c);
        c
    }

    #[test]
    fn discovered_catalog_selects_everything_by_default() {
        let sel = Selection::from_catalog("c", &build_catalog()).unwrap();
        assert_eq!(sel, Selection::all());
    }

    #[test]
    fn keys_and_replication_keys_are_automatic() {
        let c = build_catalog();
        let measures = &c["streams"][0];
        assert_eq!(measures["tap_stream_id"], "measures");
        let md = measures["metadata"].as_array().unwrap();
        let inclusion = |p: &str| {
            md.iter()
                .find(|m| m["breadcrumb"] == json!(["properties", p]))
                .unwrap()["metadata"]["inclusion"]
                .clone()
        };
        assert_eq!(inclusion("grpid"), "automatic");
        assert_eq!(inclusion("modified"), "automatic");
        assert_eq!(inclusion("value"), "available");
        assert_eq!(
            md[0]["metadata"]["valid-replication-keys"],
            json!(["modified"])
        );
    }

    #[test]
    fn selected_false_deselects_streams_and_properties_but_not_keys() {
        let c = catalog_with(|c| {
            let streams = c["streams"].as_array_mut().unwrap();
            streams[1]["metadata"][0]["metadata"]["selected"] = json!(false);
            for md in streams[0]["metadata"].as_array_mut().unwrap() {
                if md["breadcrumb"] == json!(["properties", "value"])
                    || md["breadcrumb"] == json!(["properties", "grpid"])
                {
                    md["metadata"]["selected"] = json!(false);
                }
            }
        });
        let sel = Selection::from_catalog("c", &c).unwrap();
        assert!(sel.is_selected("measures"));
        assert!(!sel.is_selected("activity"));
        let props = sel.properties("measures").unwrap();
        assert!(!props.contains("value"));
        assert!(props.contains("grpid"));
    }

    #[test]
    fn unset_selected_falls_back_to_selected_by_default() {
        let c = catalog_with(|c| {
            c["streams"][0]["metadata"][0]["metadata"]["selected-by-default"] = json!(false);
        });
        assert!(!Selection::from_catalog("c", &c)
            .unwrap()
            .is_selected("measures"));
    }

    #[test]
    fn bad_catalogs_are_refused_with_a_reason() {
        let cases = [
            (json!([]), "expected an object with a `streams` list"),
            (
                json!({"streams": [{"tap_stream_id": "nope", "metadata": []}]}),
                "unknown stream `nope`",
            ),
            (json!({"streams": [{}]}), "has no tap_stream_id"),
            (
                json!({"streams": [{"tap_stream_id": "goals", "metadata": {}}]}),
                "`metadata` must be a list",
            ),
        ];
        for (catalog, expected) in cases {
            let err = Selection::from_catalog("c.json", &catalog).unwrap_err();
            assert!(err.contains(expected), "{err}");
        }
    }
}
