//! The stream table: every stream's name, keys, replication, schema and the Withings source
//! that feeds it. Discovery, the catalog and sync all read [`STREAMS`]; family modules hold the
//! pure functions that turn reply bodies into records.

pub mod activity;
pub mod frame;
pub mod heart;
pub mod local_dates;
pub mod measure;
pub mod shape;
pub mod sleep;
pub mod sources;
pub mod user;
pub mod workouts;

use serde_json::{Map, Value};

/// One record as a JSON object, before it is conformed to its schema.
pub type Record = Map<String, Value>;

/// A reply whose shape cannot be turned into records (e.g. `series` is a string).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ReplyError(pub String);

/// How a stream is replicated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replication {
    /// Incremental on this replication key (a date-time property).
    Incremental(&'static str),
    /// Every run reads everything.
    FullTable,
}

/// The Withings call sequence that feeds a stream. Several streams can share one source
/// (sleep get feeds `sleep_series` and `sleep_vitals`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `POST /measure getmeas`, `lastupdate` + offset pages.
    Getmeas,
    /// `POST /v2/measure getactivity`: YMD range first, `lastupdate` after; offset pages.
    Getactivity,
    /// `POST /v2/measure getintradayactivity`: epoch windows of at most 24 h.
    Getintradayactivity,
    /// `POST /v2/measure getworkouts`: as getactivity.
    Getworkouts,
    /// `POST /v2/sleep get`: epoch windows of at most 24 h.
    SleepGet,
    /// `POST /v2/sleep getsummary`: as getactivity, replies without `more`.
    Getsummary,
    /// `POST /v2/heart list`: epoch range, newest first, offset pages.
    HeartList,
    /// `POST /v2/heart get`, once per new recording of `heart_list`.
    HeartGet,
    /// `POST /v2/stetho list`: epoch range, newest first, offset pages.
    StethoList,
    /// `POST /v2/stetho get`, once per new recording of `stetho_list`.
    StethoGet,
    /// `POST /v2/user getdevice`.
    Getdevice,
    /// `POST /v2/user getgoals`.
    Getgoals,
}

/// A stream of the tap. Its name is also its schema file, catalog id and bookmark key.
#[derive(Debug, Clone, Copy)]
pub struct StreamDef {
    pub name: &'static str,
    pub description: &'static str,
    pub keys: &'static [&'static str],
    pub replication: Replication,
    pub source: Source,
    /// The stream whose records this one is read from (`ecg_signals` ← `ecg_recordings`).
    pub parent: Option<&'static str>,
    schema_text: &'static str,
}

impl StreamDef {
    /// The stream's JSON schema (compiled into the binary).
    pub fn schema(&self) -> Value {
        // The schema files are checked by the `every_schema_parses` test below.
        serde_json::from_str(self.schema_text).unwrap_or(Value::Null)
    }

    /// The replication key, if incremental.
    pub fn replication_key(&self) -> Option<&'static str> {
        match self.replication {
            Replication::Incremental(key) => Some(key),
            Replication::FullTable => None,
        }
    }
}

macro_rules! schema {
    ($name:literal) => {
        include_str!(concat!("../../schemas/", $name, ".json"))
    };
}

/// Every stream, in catalog order.
pub static STREAMS: &[StreamDef] = &[
    StreamDef {
        name: "measures",
        description: "Body and health measures (weight, composition, blood pressure, SpO2, ...): one record per measure",
        keys: &["userid", "grpid", "type", "position"],
        replication: Replication::Incremental("modified"),
        source: Source::Getmeas,
        parent: None,
        schema_text: schema!("measures"),
    },
    StreamDef {
        name: "activity",
        description: "Daily activity aggregates: one record per local day",
        keys: &["userid", "date"],
        replication: Replication::Incremental("modified"),
        source: Source::Getactivity,
        parent: None,
        schema_text: schema!("activity"),
    },
    StreamDef {
        name: "intraday_activity",
        description: "High-frequency activity samples: one record per timestamp",
        keys: &["userid", "timestamp"],
        replication: Replication::Incremental("timestamp"),
        source: Source::Getintradayactivity,
        parent: None,
        schema_text: schema!("intraday_activity"),
    },
    StreamDef {
        name: "workouts",
        description: "Workouts: one record per workout",
        keys: &["userid", "id"],
        replication: Replication::Incremental("modified"),
        source: Source::Getworkouts,
        parent: None,
        schema_text: schema!("workouts"),
    },
    StreamDef {
        name: "sleep_series",
        description: "Sleep stages: one record per segment and device",
        keys: &["userid", "startdate", "device"],
        replication: Replication::Incremental("startdate"),
        source: Source::SleepGet,
        parent: None,
        schema_text: schema!("sleep_series"),
    },
    StreamDef {
        name: "sleep_vitals",
        description: "Per-minute sleep vitals (heart rate, respiration, snoring, HRV, movement): one record per device and timestamp",
        keys: &["userid", "timestamp", "device"],
        replication: Replication::Incremental("timestamp"),
        source: Source::SleepGet,
        parent: None,
        schema_text: schema!("sleep_vitals"),
    },
    StreamDef {
        name: "sleep_summaries",
        description: "Sleep summaries: one record per night",
        keys: &["userid", "id"],
        replication: Replication::Incremental("modified"),
        source: Source::Getsummary,
        parent: None,
        schema_text: schema!("sleep_summaries"),
    },
    StreamDef {
        name: "ecg_recordings",
        description: "ECG recordings (and blood pressure of BPM Core): one record per recording",
        keys: &["userid", "signalid"],
        replication: Replication::Incremental("timestamp"),
        source: Source::HeartList,
        parent: None,
        schema_text: schema!("ecg_recordings"),
    },
    StreamDef {
        name: "ecg_signals",
        description: "ECG waveforms: one record per recording, samples in µV",
        keys: &["userid", "signalid"],
        replication: Replication::Incremental("timestamp"),
        source: Source::HeartGet,
        parent: Some("ecg_recordings"),
        schema_text: schema!("ecg_signals"),
    },
    StreamDef {
        name: "stetho_recordings",
        description: "Digital stethoscope recordings (BeamO, BPM Core): one record per recording",
        keys: &["userid", "signalid"],
        replication: Replication::Incremental("timestamp"),
        source: Source::StethoList,
        parent: None,
        schema_text: schema!("stetho_recordings"),
    },
    StreamDef {
        name: "stetho_signals",
        description: "Stethoscope audio: one record per recording, A-law bytes and decoded 16-bit PCM",
        keys: &["userid", "signalid"],
        replication: Replication::Incremental("timestamp"),
        source: Source::StethoGet,
        parent: Some("stetho_recordings"),
        schema_text: schema!("stetho_signals"),
    },
    StreamDef {
        name: "devices",
        description: "The user's devices",
        keys: &["userid", "hash_deviceid"],
        replication: Replication::FullTable,
        source: Source::Getdevice,
        parent: None,
        schema_text: schema!("devices"),
    },
    StreamDef {
        name: "goals",
        description: "The user's goals: one record per user",
        keys: &["userid"],
        replication: Replication::FullTable,
        source: Source::Getgoals,
        parent: None,
        schema_text: schema!("goals"),
    },
];

/// Looks a stream up by name.
pub fn find(name: &str) -> Option<&'static StreamDef> {
    STREAMS.iter().find(|s| s.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_names_are_unique() {
        let mut names: Vec<_> = STREAMS.iter().map(|s| s.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), STREAMS.len());
    }

    #[test]
    fn every_schema_parses_and_declares_its_keys_non_null() {
        for def in STREAMS {
            let schema: Value = serde_json::from_str(def.schema_text)
                .unwrap_or_else(|e| panic!("schemas/{}.json: {e}", def.name));
            let props = schema["properties"]
                .as_object()
                .unwrap_or_else(|| panic!("{} has no properties", def.name));
            for key in def.keys.iter().chain(def.replication_key().as_ref()) {
                let prop = props
                    .get(*key)
                    .unwrap_or_else(|| panic!("{}: key {key} not in schema", def.name));
                if def.keys.contains(key) {
                    assert!(
                        prop["type"].is_string(),
                        "{}: key {key} must be non-null",
                        def.name
                    );
                }
            }
            assert!(props.contains_key("userid"), "{}", def.name);
        }
    }

    #[test]
    fn no_property_name_looks_like_a_data_value() {
        fn walk(stream: &str, props: &Map<String, Value>) {
            for (name, prop) in props {
                assert!(
                    !name.chars().next().is_some_and(|c| c.is_ascii_digit()),
                    "{stream}: property {name} looks like a value"
                );
                if let Some(inner) = prop["properties"].as_object() {
                    walk(stream, inner);
                }
            }
        }
        for def in STREAMS {
            walk(def.name, def.schema()["properties"].as_object().unwrap());
        }
    }

    #[test]
    fn parents_exist_and_come_first() {
        for (i, def) in STREAMS.iter().enumerate() {
            if let Some(parent) = def.parent {
                let p = STREAMS
                    .iter()
                    .position(|s| s.name == parent)
                    .expect("parent exists");
                assert!(p < i);
            }
        }
    }
}
