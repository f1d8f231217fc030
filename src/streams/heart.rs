//! Records of the `ecg_recordings` (Heart v2 list), `ecg_signals` (Heart v2 get),
//! `stetho_recordings` (Stetho v2 list) and `stetho_signals` (Stetho v2 get) streams, built from
//! a reply's `body`, and the G.711 A-law decoder for stethoscope audio. Pure: no I/O, no clock;
//! `timestamp`/`modified` stay epoch integers (the tap formats them from the schema).
//!
//! Heart and Stetho v2 have no `data_fields` parameter, so this module exports no field list.

use serde_json::Value;

use super::shape::{field, int_array, items, kind, nested_object, record_from};
use super::{Record, ReplyError};

/// One `ecg_recordings` record per item of Heart v2 list's `body.series`: the recording's fields
/// (`deviceid`, `model` 44 BPM Core / 91 Move ECG, nested `ecg` {signalid, afib},
/// `bloodpressure` {diastole, systole} for BPM Core, `stetho` {signalid, vhd}, `heart_rate`,
/// `timestamp`, `modified`) plus `userid` and a top-level `signalid` copied from `ecg.signalid`,
/// the key (and the parameter of Heart v2 get).
///
/// `series` may be a list, a single object, `[]`, `{}`, null or absent; nested `[]` becomes
/// `{}`. Fails when `series` or a nested object is a scalar. An item without `ecg.signalid`
/// gets no `signalid`: the tap skips it when emitting (and fetches no signal for it).
pub fn ecg_recordings_records(body: &Value, userid: i64) -> Result<Vec<Record>, ReplyError> {
    const ACTION: &str = "heart list";
    items(body, ACTION, "series")?
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let path = format!("series[{i}]");
            let mut record = record_from(item, userid);
            for key in ["ecg", "bloodpressure", "stetho"] {
                nested_object(&mut record, ACTION, &path, key)?;
            }
            let signalid = record
                .get("ecg")
                .and_then(|ecg| ecg.get("signalid"))
                .filter(|id| !id.is_null())
                .cloned();
            if let Some(signalid) = signalid {
                record.insert("signalid".to_owned(), signalid);
            }
            Ok(record)
        })
        .collect()
}

/// Extra parameters of every Heart v2 get call: ask for the filtered signal and the intervals
/// (OAS heartv2-get: optional booleans `with_filtered` "Request filtered version of the signal"
/// and `with_intervals` "Request features with inactive ones"). Their reply fields are not
/// documented; [`ecg_signals_records`] keeps them as `filtered_signal` and `intervals`.
pub const HEART_GET_OPTIONS: &[(&str, &str)] =
    &[("with_filtered", "true"), ("with_intervals", "true")];

/// The one `ecg_signals` record of a Heart v2 get reply for `signalid`: `signal` (samples in µV
/// as an integer array), `sampling_frequency` (Hz), `wearposition`, `model`, `heart_rate`, plus
/// `userid` and `signalid`; with [`HEART_GET_OPTIONS`] also `filtered_signal` (integer array)
/// and `intervals` (kept as sent: an object or a list).
///
/// `signal` and `filtered_signal` are normalised to integer arrays from a JSON array, a
/// JSON-array string (the Withings doc example sends `"[1,2,3]"`) or a comma-separated string;
/// an absent or null `signal` gives `[]`, an absent `filtered_signal` stays absent. `intervals`
/// sent as a JSON string is parsed. Fails when the body is not an object, a signal holds
/// non-integers or `intervals` is a scalar.
pub fn ecg_signals_records(
    body: &Value,
    userid: i64,
    signalid: i64,
) -> Result<Vec<Record>, ReplyError> {
    const ACTION: &str = "heart get";
    let mut record = body_object(body, ACTION)?;
    let signal = int_array(field(body, ACTION, "signal")?, ACTION, "signal")?;
    record.insert("signal".to_owned(), Value::from(signal));
    if let Some(filtered) = field(body, ACTION, "filtered_signal")? {
        let filtered = int_array(Some(filtered), ACTION, "filtered_signal")?;
        record.insert("filtered_signal".to_owned(), Value::from(filtered));
    }
    if let Some(intervals) = field(body, ACTION, "intervals")? {
        record.insert(
            "intervals".to_owned(),
            structured(intervals, ACTION, "intervals")?,
        );
    }
    record.insert("userid".to_owned(), Value::from(userid));
    record.insert("signalid".to_owned(), Value::from(signalid));
    Ok(vec![record])
}

/// One `stetho_recordings` record per item of Stetho v2 list's `body.series` (OAS
/// stethov2-list: `hash_deviceid`, `signalid`, `vhd`, `timestamp`, `timezone`) plus `userid`.
/// `signalid` is the key and the parameter of Stetho v2 get.
///
/// `series` may be a list, a single object, `[]`, `{}`, null or absent. Fails when `series` is
/// a scalar or an item is not an object (an item without `signalid` is kept without it: the
/// tap skips it when emitting).
pub fn stetho_recordings_records(body: &Value, userid: i64) -> Result<Vec<Record>, ReplyError> {
    const ACTION: &str = "stetho list";
    Ok(items(body, ACTION, "series")?
        .into_iter()
        .map(|item| record_from(item, userid))
        .collect())
}

/// The one `stetho_signals` record of a Stetho v2 get reply for `signalid` (OAS stethov2-get):
/// `signal` (the A-law G.711 bytes as sent), `pcm` (the same samples decoded to 16-bit linear
/// PCM by [`alaw_to_pcm`]), `frequency` (Hz, about 4 kHz), `duration`, `format`, `size`,
/// `resolution`, `channel`, `model` (71 BeamO, 44 BPM Core), `position`, `vhd`, plus `userid`
/// and `signalid`.
///
/// `signal` is normalised like Heart v2 get's; absent or null gives `[]`. A byte may arrive
/// unsigned (0..=255) or signed (-128..=-1, read as its two's complement). Fails when the body
/// is not an object or a sample is not an integer in -128..=255.
pub fn stetho_signals_records(
    body: &Value,
    userid: i64,
    signalid: i64,
) -> Result<Vec<Record>, ReplyError> {
    const ACTION: &str = "stetho get";
    let mut record = body_object(body, ACTION)?;
    let signal = int_array(field(body, ACTION, "signal")?, ACTION, "signal")?;
    let pcm = signal
        .iter()
        .enumerate()
        .map(|(i, &sample)| match u8::try_from(sample & 0xff) {
            Ok(byte) if (-128..=255).contains(&sample) => Ok(i64::from(alaw_to_pcm(byte))),
            _ => Err(ReplyError(format!(
                "{ACTION}: signal[{i}] is {sample}, expected an A-law byte (0..=255)"
            ))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    record.insert("signal".to_owned(), Value::from(signal));
    record.insert("pcm".to_owned(), Value::from(pcm));
    record.insert("userid".to_owned(), Value::from(userid));
    record.insert("signalid".to_owned(), Value::from(signalid));
    Ok(vec![record])
}

/// Decodes one ITU-T G.711 A-law byte to 16-bit linear PCM, as the reference decoder does
/// (Sun's `alaw2linear`, Python's `audioop.alaw2lin`): undo the even-bit inversion (`^ 0x55`),
/// then sign bit, 3-bit segment and 4-bit mantissa; the result lies in -32256..=32256 (e.g.
/// 0xD5 → 8, 0x55 → -8, 0xAA → 32256, 0x2A → -32256). Withings sends stethoscope audio so
/// encoded (Stetho v2 get `signal`, developer guide "decode stetho to PCM").
pub const fn alaw_to_pcm(byte: u8) -> i16 {
    let a = byte ^ 0x55;
    let mantissa = ((a & 0x0f) as i16) << 4;
    let magnitude = match (a & 0x70) >> 4 {
        0 => mantissa + 8,
        1 => mantissa + 0x108,
        segment => (mantissa + 0x108) << (segment - 1),
    };
    if a & 0x80 != 0 {
        magnitude
    } else {
        -magnitude
    }
}

/// A get reply's body as a record: an object is copied; null and `[]` (the PHP empty map) give
/// an empty record.
fn body_object(body: &Value, action: &str) -> Result<Record, ReplyError> {
    match body {
        Value::Object(map) => Ok(map.clone()),
        Value::Null => Ok(Record::new()),
        Value::Array(list) if list.is_empty() => Ok(Record::new()),
        other => Err(ReplyError(format!(
            "{action}: body is {}, expected an object",
            kind(other)
        ))),
    }
}

/// An undocumented structured field (Heart v2 get `intervals`) as sent: an object or a list;
/// a string holding JSON of either is parsed. Fails on scalars.
fn structured(value: &Value, action: &str, path: &str) -> Result<Value, ReplyError> {
    let bad = |what: &str| {
        ReplyError(format!(
            "{action}: {path} is {what}, expected an object or a list"
        ))
    };
    match value {
        Value::Object(_) | Value::Array(_) => Ok(value.clone()),
        Value::String(text) => match serde_json::from_str::<Value>(text.trim()) {
            Ok(parsed @ (Value::Object(_) | Value::Array(_))) => Ok(parsed),
            _ => Err(bad("a string that is not a JSON object or list")),
        },
        other => Err(bad(kind(other))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;
    use serde_json::json;

    fn objects(records: Vec<Record>) -> Vec<Value> {
        records.into_iter().map(Value::Object).collect()
    }

    #[test]
    fn heart_list_copies_ecg_signalid_to_the_top() {
        let body = json!({"series": [
            {"deviceid": "d1", "model": 44, "ecg": {"signalid": 48, "afib": 0},
             "bloodpressure": {"diastole": 80, "systole": 120}, "heart_rate": 64,
             "timestamp": 1_700_000_000, "modified": 1_700_000_100},
            {"deviceid": "d2", "model": 91, "ecg": {"signalid": 49, "afib": 2},
             "heart_rate": 71, "timestamp": 1_700_001_000}
        ], "more": false, "offset": 0});
        assert_eq!(
            objects(ecg_recordings_records(&body, 8).unwrap()),
            vec![
                json!({"deviceid": "d1", "model": 44, "ecg": {"signalid": 48, "afib": 0},
                       "bloodpressure": {"diastole": 80, "systole": 120}, "heart_rate": 64,
                       "timestamp": 1_700_000_000, "modified": 1_700_000_100,
                       "userid": 8, "signalid": 48}),
                json!({"deviceid": "d2", "model": 91, "ecg": {"signalid": 49, "afib": 2},
                       "heart_rate": 71, "timestamp": 1_700_001_000, "userid": 8, "signalid": 49}),
            ]
        );
    }

    #[test]
    fn heart_list_accepts_every_list_shape() {
        let item = json!({"ecg": {"signalid": 1, "afib": 1}, "bloodpressure": []});
        let cases = [
            (json!({"series": [item.clone()]}), 1),
            (json!({"series": item.clone()}), 1),
            (json!({"series": []}), 0),
            (json!({"series": {}}), 0),
            (json!({"series": null}), 0),
            (json!({}), 0),
        ];
        for (body, want) in cases {
            assert_eq!(
                ecg_recordings_records(&body, 1).unwrap().len(),
                want,
                "{body}"
            );
        }
        let records = ecg_recordings_records(&json!({"series": item}), 1).unwrap();
        assert_eq!(records[0]["bloodpressure"], json!({}));
    }

    #[test]
    fn heart_list_rejects_impossible_shapes() {
        let cases = [
            (
                json!({"series": "x"}),
                "heart list: series is a string, expected a list of objects",
            ),
            (
                json!({"series": [{"ecg": 5}]}),
                "heart list: series[0].ecg is a number, expected an object",
            ),
        ];
        for (body, want) in cases {
            assert_eq!(
                ecg_recordings_records(&body, 1),
                Err(ReplyError(want.to_owned()))
            );
        }
    }

    #[test]
    fn heart_get_normalises_signal_to_integers() {
        let cases = [
            (
                json!({"signal": [1, -2, 3], "sampling_frequency": 500}),
                json!([1, -2, 3]),
            ),
            (
                json!({"signal": "[1,2,3,4,5,6,7,8,9]"}),
                json!([1, 2, 3, 4, 5, 6, 7, 8, 9]),
            ),
            (json!({"signal": "10,-20,30"}), json!([10, -20, 30])),
            (json!({"signal": []}), json!([])),
            (json!({"signal": null}), json!([])),
            (json!({}), json!([])),
            (json!([]), json!([])),
        ];
        for (body, want) in cases {
            let records = ecg_signals_records(&body, 2, 48).unwrap();
            assert_eq!(records.len(), 1);
            assert_eq!(records[0]["signal"], want, "{body}");
            assert_eq!(records[0]["signalid"], json!(48));
            assert_eq!(records[0]["userid"], json!(2));
        }
    }

    #[test]
    fn heart_get_keeps_the_documented_fields() {
        let body = json!({"signal": [5, 6], "sampling_frequency": 300, "wearposition": 1,
                          "model": 91, "heart_rate": 72});
        assert_eq!(
            objects(ecg_signals_records(&body, 3, 77).unwrap()),
            vec![
                json!({"signal": [5, 6], "sampling_frequency": 300, "wearposition": 1,
                        "model": 91, "heart_rate": 72, "userid": 3, "signalid": 77})
            ]
        );
    }

    #[test]
    fn heart_get_rejects_impossible_shapes() {
        let cases = [
            (
                json!({"signal": 5}),
                "heart get: signal is a number, expected integers",
            ),
            (
                json!({"signal": "1,a"}),
                "heart get: signal holds \"a\", expected integers",
            ),
            (
                json!({"signal": [1, 2.5]}),
                "heart get: signal[1] is a number, expected integers",
            ),
            (
                json!("x"),
                "heart get: body is a string, expected an object",
            ),
        ];
        for (body, want) in cases {
            assert_eq!(
                ecg_signals_records(&body, 1, 1),
                Err(ReplyError(want.to_owned()))
            );
        }
    }

    #[test]
    fn heart_get_keeps_the_filtered_signal_and_intervals() {
        let intervals = json!({"pr": 160, "qrs": 92, "qt": 380, "qtc": 410});
        let cases = [
            (
                json!({"signal": [1], "filtered_signal": [4, -5]}),
                Some(json!([4, -5])),
                None,
            ),
            (
                json!({"signal": [1], "filtered_signal": "[4,-5]"}),
                Some(json!([4, -5])),
                None,
            ),
            (
                json!({"signal": [1], "filtered_signal": null}),
                Some(Value::Null),
                None,
            ),
            (json!({"signal": [1]}), None, None),
            (
                json!({"signal": [1], "intervals": intervals.clone()}),
                None,
                Some(intervals.clone()),
            ),
            (
                json!({"signal": [1], "intervals": intervals.to_string()}),
                None,
                Some(intervals.clone()),
            ),
            (
                json!({"signal": [1], "intervals": [{"type": "pr", "value": 160}]}),
                None,
                Some(json!([{"type": "pr", "value": 160}])),
            ),
            (
                json!({"signal": [1], "intervals": []}),
                None,
                Some(json!([])),
            ),
        ];
        for (body, filtered, want_intervals) in cases {
            let record = ecg_signals_records(&body, 1, 2).unwrap().remove(0);
            assert_eq!(record.get("filtered_signal").cloned(), filtered, "{body}");
            assert_eq!(record.get("intervals").cloned(), want_intervals, "{body}");
        }
    }

    #[test]
    fn heart_get_rejects_impossible_filtered_signals_and_intervals() {
        let cases = [
            (
                json!({"filtered_signal": [1.5]}),
                "heart get: filtered_signal[0] is a number, expected integers",
            ),
            (
                json!({"intervals": 5}),
                "heart get: intervals is a number, expected an object or a list",
            ),
            (
                json!({"intervals": "qt"}),
                "heart get: intervals is a string that is not a JSON object or list, expected an object or a list",
            ),
        ];
        for (body, want) in cases {
            assert_eq!(
                ecg_signals_records(&body, 1, 1),
                Err(ReplyError(want.to_owned()))
            );
        }
    }

    #[test]
    fn heart_get_options_ask_for_filtered_signal_and_intervals() {
        assert_eq!(
            HEART_GET_OPTIONS,
            &[("with_filtered", "true"), ("with_intervals", "true")]
        );
    }

    fn stetho_list_body() -> Value {
        json!({"series": [
            {"hash_deviceid": "b3", "signalid": 120, "vhd": 1, "timestamp": 1_700_000_600,
             "timezone": "Europe/Paris"},
            {"hash_deviceid": null, "signalid": 119, "vhd": 0, "timestamp": 1_700_000_000,
             "timezone": "Europe/Paris"}
        ], "more": false, "offset": 0})
    }

    fn stetho_get_body() -> Value {
        json!({"size": 4, "signal": [213, 170, 0xd5, 0x55], "frequency": 4000, "duration": 8,
               "format": 1, "resolution": 8, "channel": 1, "model": 71, "position": 17,
               "vhd": 1})
    }

    #[test]
    fn stetho_list_gives_one_record_per_recording() {
        assert_eq!(
            objects(stetho_recordings_records(&stetho_list_body(), 5).unwrap()),
            vec![
                json!({"hash_deviceid": "b3", "signalid": 120, "vhd": 1,
                       "timestamp": 1_700_000_600, "timezone": "Europe/Paris", "userid": 5}),
                json!({"hash_deviceid": null, "signalid": 119, "vhd": 0,
                       "timestamp": 1_700_000_000, "timezone": "Europe/Paris", "userid": 5}),
            ]
        );
    }

    #[test]
    fn stetho_list_accepts_every_list_shape() {
        let item = json!({"signalid": 1, "timestamp": 5});
        let cases = [
            (json!({"series": [item.clone(), null]}), 1),
            (json!({"series": item}), 1),
            (json!({"series": []}), 0),
            (json!({"series": {}}), 0),
            (json!({"series": null}), 0),
            (json!({}), 0),
            (json!([]), 0),
            (json!(null), 0),
        ];
        for (body, want) in cases {
            assert_eq!(
                stetho_recordings_records(&body, 1).unwrap().len(),
                want,
                "{body}"
            );
        }
    }

    #[test]
    fn stetho_list_rejects_impossible_shapes() {
        let cases = [
            (
                json!({"series": 3}),
                "stetho list: series is a number, expected a list of objects",
            ),
            (
                json!({"series": ["x"]}),
                "stetho list: series[0] is a string, expected an object",
            ),
        ];
        for (body, want) in cases {
            assert_eq!(
                stetho_recordings_records(&body, 1),
                Err(ReplyError(want.to_owned()))
            );
        }
    }

    #[test]
    fn stetho_get_keeps_the_bytes_and_adds_decoded_pcm() {
        assert_eq!(
            objects(stetho_signals_records(&stetho_get_body(), 5, 120).unwrap()),
            vec![json!({"size": 4, "signal": [213, 170, 0xd5, 0x55],
                        "pcm": [8, 32256, 8, -8], "frequency": 4000, "duration": 8,
                        "format": 1, "resolution": 8, "channel": 1, "model": 71,
                        "position": 17, "vhd": 1, "userid": 5, "signalid": 120})]
        );
    }

    #[test]
    fn stetho_get_normalises_signal_shapes() {
        let cases = [
            (
                json!({"signal": "[213,85]"}),
                json!([213, 85]),
                json!([8, -8]),
            ),
            (
                json!({"signal": "213, 85"}),
                json!([213, 85]),
                json!([8, -8]),
            ),
            (
                json!({"signal": [-43, -1]}),
                json!([-43, -1]),
                json!([8, 848]),
            ),
            (json!({"signal": null}), json!([]), json!([])),
            (json!({}), json!([]), json!([])),
            (json!([]), json!([]), json!([])),
        ];
        for (body, signal, pcm) in cases {
            let record = stetho_signals_records(&body, 1, 2).unwrap().remove(0);
            assert_eq!(record["signal"], signal, "{body}");
            assert_eq!(record["pcm"], pcm, "{body}");
            assert_eq!(
                (&record["userid"], &record["signalid"]),
                (&json!(1), &json!(2))
            );
        }
    }

    #[test]
    fn stetho_get_rejects_impossible_shapes() {
        let cases = [
            (
                json!({"signal": [1, 256]}),
                "stetho get: signal[1] is 256, expected an A-law byte (0..=255)",
            ),
            (
                json!({"signal": [-129]}),
                "stetho get: signal[0] is -129, expected an A-law byte (0..=255)",
            ),
            (
                json!({"signal": [0.5]}),
                "stetho get: signal[0] is a number, expected integers",
            ),
            (json!(7), "stetho get: body is a number, expected an object"),
        ];
        for (body, want) in cases {
            assert_eq!(
                stetho_signals_records(&body, 1, 1),
                Err(ReplyError(want.to_owned()))
            );
        }
    }

    #[test]
    fn alaw_decodes_like_the_g711_reference() {
        // Values of Python's audioop.alaw2lin (the ITU-T G.711 reference decoder).
        let cases: [(u8, i16); 18] = [
            (0xd5, 8),
            (0x55, -8),
            (0xd4, 24),
            (0xd6, 56),
            (0xc5, 264),
            (0xf5, 528),
            (0xff, 848),
            (0x7f, -848),
            (0xfe, 880),
            (0xe5, 1056),
            (0x95, 2112),
            (0x01, -5248),
            (0x80, 5504),
            (0x00, -5504),
            (0xb5, 8448),
            (0xa5, 16896),
            (0xaa, 32256),
            (0x2a, -32256),
        ];
        for (byte, want) in cases {
            assert_eq!(alaw_to_pcm(byte), want, "{byte:#04x}");
        }
        // Checksum of the whole 256-entry audioop table: sum of |pcm| * (byte + 1).
        let checksum: i64 = (0..=255u8)
            .map(|b| i64::from(alaw_to_pcm(b)).abs() * (i64::from(b) + 1))
            .sum();
        assert_eq!(checksum, 168_472_576);
    }

    #[test]
    fn alaw_is_odd_symmetric_and_monotonic_per_sign() {
        for b in 0..=255u8 {
            assert_eq!(alaw_to_pcm(b ^ 0x80), -alaw_to_pcm(b), "{b:#04x}");
        }
        // Positive codes (sign bit set), in magnitude order after undoing the bit inversion.
        let mut last = 0;
        for code in 0x80..=0xffu8 {
            let pcm = alaw_to_pcm(code ^ 0x55);
            assert!(pcm > last, "{code:#04x}");
            last = pcm;
        }
    }

    /// Problems of a record against its schema: undeclared fields (nested objects with
    /// properties included), values whose JSON type the schema does not allow (an epoch integer
    /// fits a date-time string), missing or null keys.
    fn schema_problems(schema: &Value, keys: &[&str], record: &Record) -> Vec<String> {
        fn allowed(schema: &Value) -> Vec<&str> {
            match &schema["type"] {
                Value::String(t) => vec![t.as_str()],
                Value::Array(list) => list.iter().filter_map(Value::as_str).collect(),
                _ => vec![],
            }
        }
        fn walk(value: &Value, schema: &Value, path: &str, out: &mut Vec<String>) {
            let types = allowed(schema);
            let date_time = schema["format"] == "date-time";
            let fits = match value {
                Value::Null => types.contains(&"null"),
                Value::Bool(_) => types.contains(&"boolean"),
                Value::Number(n) if n.is_i64() || n.is_u64() => {
                    types.contains(&"integer") || types.contains(&"number") || date_time
                }
                Value::Number(_) => types.contains(&"number"),
                Value::String(_) => types.contains(&"string"),
                Value::Array(_) => types.contains(&"array"),
                Value::Object(_) => types.contains(&"object"),
            };
            if !fits {
                out.push(format!("{path}: {value} does not fit {types:?}"));
            }
            match value {
                Value::Object(map) if schema.get("properties").is_some() => {
                    for (key, inner) in map {
                        match schema["properties"].get(key) {
                            Some(prop) => walk(inner, prop, &format!("{path}.{key}"), out),
                            None => out.push(format!("{path}.{key}: not declared")),
                        }
                    }
                }
                Value::Array(list) if schema.get("items").is_some() => {
                    for (i, inner) in list.iter().enumerate().take(3) {
                        walk(inner, &schema["items"], &format!("{path}[{i}]"), out);
                    }
                }
                _ => {}
            }
        }
        let mut out = Vec::new();
        walk(&Value::Object(record.clone()), schema, "record", &mut out);
        for key in keys {
            if record.get(*key).is_none_or(Value::is_null) {
                out.push(format!("key {key} missing or null"));
            }
        }
        out
    }

    #[test]
    fn every_emitted_field_is_declared_and_keys_are_non_null() {
        let ecg = json!({"signal": [1, 2], "filtered_signal": [3, 4], "sampling_frequency": 500,
                         "wearposition": 2, "model": 44, "heart_rate": 70,
                         "intervals": {"qt": 380}});
        let ecg_list = [json!([{"type": "qt", "value": 380}]), json!([])];
        let mut ecg_records = ecg_signals_records(&ecg, 1, 2).unwrap();
        for intervals in ecg_list {
            ecg_records
                .extend(ecg_signals_records(&json!({"intervals": intervals}), 1, 2).unwrap());
        }
        let cases: [(&str, &str, Vec<Record>); 3] = [
            (
                "ecg_signals",
                include_str!("../../schemas/ecg_signals.json"),
                ecg_records,
            ),
            (
                "stetho_recordings",
                include_str!("../../schemas/stetho_recordings.json"),
                stetho_recordings_records(&stetho_list_body(), 1).unwrap(),
            ),
            (
                "stetho_signals",
                include_str!("../../schemas/stetho_signals.json"),
                stetho_signals_records(&stetho_get_body(), 1, 120).unwrap(),
            ),
        ];
        for (stream, schema, records) in cases {
            let schema: Value = serde_json::from_str(schema).unwrap();
            assert_eq!(schema["type"], json!("object"), "{stream}");
            let props = schema["properties"].as_object().unwrap();
            let keys = ["userid", "signalid"];
            let mut non_null: Vec<&str> = props
                .iter()
                .filter(|(_, prop)| prop["type"].is_string())
                .map(|(name, _)| name.as_str())
                .collect();
            non_null.sort_unstable();
            assert_eq!(
                non_null,
                ["signalid", "userid"],
                "{stream}: only keys are non-null"
            );
            for (name, prop) in props {
                assert!(
                    prop["description"].as_str().is_some_and(|d| !d.is_empty()),
                    "{stream}.{name} has no description"
                );
            }
            assert!(!records.is_empty(), "{stream}");
            for record in &records {
                assert_eq!(
                    schema_problems(&schema, &keys, record),
                    Vec::<String>::new(),
                    "{stream}"
                );
            }
        }
    }
}
