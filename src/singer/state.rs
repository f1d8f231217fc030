//! Singer state in the Meltano SDK's partitioned shape:
//! `{"bookmarks": {"<stream>": {"partitions": [{"context": {"userid": N},
//! "replication_key": "...", "replication_key_value": "..."}]}}}`. Bookmarks of streams and
//! fields this version does not know are kept as they are. Pure.

use serde_json::{json, Map, Value};

/// The run's state document.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct State {
    bookmarks: Map<String, Value>,
}

impl State {
    /// Parses a state document; `name` is used in error messages. Meltano's wrapper
    /// (`{"singer_state": {...}}`) is accepted too. An empty object is an empty state.
    pub fn parse(name: &str, text: &str) -> Result<Self, String> {
        let value: Value = serde_json::from_str(text)
            .map_err(|e| format!("cannot parse state file {name}: {e}"))?;
        let value = match value {
            Value::Object(mut o) if o.contains_key("singer_state") => {
                o.remove("singer_state").unwrap_or_default()
            }
            // A whole STATE message (the tap's last line kept as it is): its value.
            Value::Object(mut o)
                if o.get("type").and_then(Value::as_str) == Some("STATE")
                    && o.contains_key("value") =>
            {
                o.remove("value").unwrap_or_default()
            }
            v => v,
        };
        let Value::Object(top) = value else {
            return Err(format!("state file {name} must hold a JSON object"));
        };
        // A catalog given as the state would silently mean a full re-sync.
        if !top.contains_key("bookmarks") && top.get("streams").is_some_and(Value::is_array) {
            return Err(format!(
                "state file {name} looks like a catalog (it has `streams` and no `bookmarks`): pass it as --catalog, and as --state the last STATE message's value"
            ));
        }
        let bookmarks = match top.get("bookmarks") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(b)) => b.clone(),
            Some(_) => return Err(format!("state file {name}: `bookmarks` must be an object")),
        };
        for (stream, entry) in &bookmarks {
            let Some(entry) = entry.as_object() else {
                return Err(format!(
                    "state file {name}: bookmark of `{stream}` must be an object"
                ));
            };
            match entry.get("partitions") {
                None => {}
                Some(Value::Array(parts)) => {
                    for p in parts {
                        if !p.is_object() || !p.get("context").is_some_and(Value::is_object) {
                            return Err(format!("state file {name}: a partition of `{stream}` has no `context` object"));
                        }
                        match p.get("replication_key_value") {
                            None | Some(Value::Null) | Some(Value::Number(_)) => {}
                            Some(Value::String(s)) if crate::timefmt::parse_rfc3339(s).is_some() || s.parse::<i64>().is_ok() => {}
                            Some(other) => {
                                return Err(format!(
                                    "state file {name}: a bookmark of `{stream}` is {other}, expected an RFC 3339 date-time"
                                ))
                            }
                        }
                    }
                }
                Some(_) => {
                    return Err(format!(
                        "state file {name}: `{stream}.partitions` must be a list"
                    ))
                }
            }
        }
        Ok(State { bookmarks })
    }

    fn partition(&self, stream: &str, userid: i64) -> Option<&Map<String, Value>> {
        self.bookmarks
            .get(stream)?
            .get("partitions")?
            .as_array()?
            .iter()
            .filter_map(Value::as_object)
            .find(|p| same_user(p, userid))
    }

    /// The stored replication key value of a user's partition.
    pub fn bookmark(&self, stream: &str, userid: i64) -> Option<&Value> {
        self.partition(stream, userid)?
            .get("replication_key_value")
            .filter(|v| !v.is_null())
    }

    /// Another field of a user's partition (e.g. how far windows were scanned).
    pub fn partition_field(&self, stream: &str, userid: i64, field: &str) -> Option<&Value> {
        self.partition(stream, userid)?
            .get(field)
            .filter(|v| !v.is_null())
    }

    /// A user's partition of a stream, created when missing.
    fn partition_mut(&mut self, stream: &str, userid: i64) -> Option<&mut Map<String, Value>> {
        let entry = self
            .bookmarks
            .entry(stream.to_string())
            .or_insert_with(|| json!({}));
        if !entry.is_object() {
            *entry = json!({});
        }
        let parts = entry
            .as_object_mut()?
            .entry("partitions")
            .or_insert_with(|| json!([]));
        if !parts.is_array() {
            *parts = json!([]);
        }
        let list = parts.as_array_mut()?;
        let idx = match list
            .iter()
            .position(|p| p.as_object().is_some_and(|p| same_user(p, userid)))
        {
            Some(i) => i,
            None => {
                list.push(json!({"context": {"userid": userid}}));
                list.len() - 1
            }
        };
        list[idx].as_object_mut()
    }

    /// Sets a user's bookmark (creating the partition) and any extra partition fields.
    pub fn set_bookmark(
        &mut self,
        stream: &str,
        userid: i64,
        key: &str,
        value: Value,
        extra: &[(&str, Value)],
    ) {
        if let Some(p) = self.partition_mut(stream, userid) {
            p.insert("replication_key".into(), Value::from(key));
            p.insert("replication_key_value".into(), value);
            for (field, v) in extra {
                p.insert((*field).into(), v.clone());
            }
        }
    }

    /// Sets fields of a user's partition (creating it) without touching its bookmark.
    pub fn set_fields(&mut self, stream: &str, userid: i64, fields: &[(&str, Value)]) {
        if let Some(p) = self.partition_mut(stream, userid) {
            for (field, v) in fields {
                p.insert((*field).into(), v.clone());
            }
        }
    }

    /// The state document to emit.
    pub fn to_value(&self) -> Value {
        json!({"bookmarks": self.bookmarks})
    }
}

fn same_user(partition: &Map<String, Value>, userid: i64) -> bool {
    match partition.get("context").and_then(|c| c.get("userid")) {
        Some(Value::Number(n)) => n.as_i64() == Some(userid),
        Some(Value::String(s)) => s.parse::<i64>().ok() == Some(userid),
        _ => false,
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_whole_state_message_is_read_as_its_value() {
        let msg = r#"{"type":"STATE","value":{"bookmarks":{"measures":{"partitions":[{"context":{"userid":1},"replication_key_value":"2024-01-01T00:00:00Z"}]}}}}"#;
        let state = State::parse("s.json", msg).unwrap();
        assert_eq!(
            state.to_value()["bookmarks"]["measures"]["partitions"][0]["context"]["userid"],
            serde_json::json!(1)
        );
    }

    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn bookmarks_are_per_stream_and_user() {
        let mut s = State::default();
        s.set_bookmark(
            "measures",
            1,
            "modified",
            json!("2024-01-01T00:00:00Z"),
            &[],
        );
        s.set_bookmark(
            "measures",
            2,
            "modified",
            json!("2024-02-01T00:00:00Z"),
            &[],
        );
        s.set_bookmark(
            "measures",
            1,
            "modified",
            json!("2024-03-01T00:00:00Z"),
            &[("scanned_until", json!(5))],
        );
        assert_eq!(
            s.bookmark("measures", 1),
            Some(&json!("2024-03-01T00:00:00Z"))
        );
        assert_eq!(
            s.bookmark("measures", 2),
            Some(&json!("2024-02-01T00:00:00Z"))
        );
        assert_eq!(
            s.partition_field("measures", 1, "scanned_until"),
            Some(&json!(5))
        );
        assert_eq!(s.bookmark("activity", 1), None);
        assert_eq!(
            s.to_value()["bookmarks"]["measures"]["partitions"][0],
            json!({"context": {"userid": 1}, "replication_key": "modified", "replication_key_value": "2024-03-01T00:00:00Z", "scanned_until": 5})
        );
    }

    #[test]
    fn extra_fields_live_beside_the_bookmark() {
        let mut s = State::default();
        s.set_fields("measures", 3, &[("reconciled_at", json!(9))]);
        assert_eq!(s.bookmark("measures", 3), None);
        s.set_bookmark("measures", 3, "modified", json!("x"), &[]);
        assert_eq!(
            s.partition_field("measures", 3, "reconciled_at"),
            Some(&json!(9))
        );
        assert_eq!(s.bookmark("measures", 3), Some(&json!("x")));
    }

    #[test]
    fn parsing_round_trips_and_keeps_unknown_streams() {
        let text = r#"{"bookmarks": {"old_stream": {"x": 1}, "measures": {"partitions": [{"context": {"userid": "7"}, "replication_key_value": "2024-01-01T00:00:00Z"}]}}}"#;
        let s = State::parse("s.json", text).unwrap();
        assert_eq!(
            s.bookmark("measures", 7),
            Some(&json!("2024-01-01T00:00:00Z"))
        );
        assert_eq!(s.to_value()["bookmarks"]["old_stream"], json!({"x": 1}));
        let wrapped = State::parse("s.json", r#"{"singer_state": {"bookmarks": {}}}"#).unwrap();
        assert_eq!(wrapped, State::default());
        assert_eq!(State::parse("s.json", "{}").unwrap(), State::default());
    }

    #[test]
    fn malformed_state_is_refused_with_the_file_name() {
        let cases = [
            ("nope", "cannot parse state file s.json"),
            ("[]", "must hold a JSON object"),
            (r#"{"bookmarks": 3}"#, "`bookmarks` must be an object"),
            (
                r#"{"bookmarks": {"measures": 3}}"#,
                "bookmark of `measures` must be an object",
            ),
            (
                r#"{"bookmarks": {"measures": {"partitions": {}}}}"#,
                "must be a list",
            ),
            (
                r#"{"bookmarks": {"measures": {"partitions": [{}]}}}"#,
                "has no `context` object",
            ),
        ];
        for (text, expected) in cases {
            let err = State::parse("s.json", text).unwrap_err();
            assert!(err.contains(expected), "{text}: {err}");
        }
    }
}
