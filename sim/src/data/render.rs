//! JSON rendering of stored items, shared by the API handlers and `truth`.

use super::gen_heart::{self, STETHO_DURATION, STETHO_FREQUENCY};
use super::gen_sleep::sleep_model;
use super::model::{
    Activity, Device, Ecg, Fields, IntradaySample, MeasureGroup, Night, Segment, Stetho, UserData,
    Workout,
};
use crate::clock;
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use serde_json::{json, Map, Value};
use std::collections::BTreeSet;

/// Which optional fields (`data_fields`) to render.
#[derive(Debug, Clone, Default)]
pub struct Sel(Option<BTreeSet<String>>);

impl Sel {
    /// Every field.
    pub fn all() -> Self {
        Sel(None)
    }

    /// Only the named fields.
    pub fn only<I: IntoIterator<Item = S>, S: Into<String>>(names: I) -> Self {
        Sel(Some(names.into_iter().map(Into::into).collect()))
    }

    pub fn has(&self, name: &str) -> bool {
        self.0.as_ref().is_none_or(|s| s.contains(name))
    }
}

fn fields(f: &Fields, sel: &Sel) -> Map<String, Value> {
    f.iter()
        .filter(|(k, _)| sel.has(k))
        .map(|(k, v)| ((*k).to_string(), v.clone()))
        .collect()
}

fn opt_str(s: Option<&str>) -> Value {
    s.map_or(Value::Null, |s| Value::String(s.to_string()))
}

/// A measure group as getmeas sends it, optionally restricted to some measure types.
/// Serialized directly (no intermediate `Value`) because getmeas pages can be large.
pub struct GroupView<'a> {
    pub group: &'a MeasureGroup,
    pub user: &'a UserData,
    pub types: Option<&'a [u16]>,
}

impl GroupView<'_> {
    /// Whether the group has at least one measure of the requested types.
    pub fn matches(group: &MeasureGroup, types: Option<&[u16]>) -> bool {
        types.is_none_or(|t| group.measures.iter().any(|m| t.contains(&m.mtype)))
    }
}

struct MeasuresView<'a>(&'a MeasureGroup, Option<&'a [u16]>);

impl Serialize for MeasuresView<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = s.serialize_seq(None)?;
        for m in &self.0.measures {
            if self.1.is_some_and(|t| !t.contains(&m.mtype)) {
                continue;
            }
            seq.serialize_element(&MeasureView(m))?;
        }
        seq.end()
    }
}

struct MeasureView<'a>(&'a super::model::Measure);

struct AlgoParams;

impl Serialize for AlgoParams {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(1))?;
        map.serialize_entry("1", &1)?;
        map.end()
    }
}

impl Serialize for MeasureView<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let m = self.0;
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("value", &m.value)?;
        map.serialize_entry("type", &m.mtype)?;
        map.serialize_entry("unit", &m.unit)?;
        if let Some(a) = m.algo {
            map.serialize_entry("algo", &a)?;
        }
        if let Some(f) = m.fm {
            map.serialize_entry("fm", &f)?;
        }
        if let Some(p) = m.position {
            map.serialize_entry("position", &p)?;
        }
        if m.algo_params {
            map.serialize_entry("algo_params", &AlgoParams)?;
        }
        if m.app {
            map.serialize_entry("apppfmid", &7)?;
            map.serialize_entry("appliver", &5_050_021)?;
        }
        map.end()
    }
}

impl Serialize for GroupView<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let g = self.group;
        let source = g.src.and_then(|i| self.user.source(i));
        let deviceid = source.and_then(|s| s.deviceid.as_deref());
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("grpid", &g.grpid)?;
        map.serialize_entry("attrib", &g.attrib)?;
        map.serialize_entry("date", &g.date)?;
        map.serialize_entry("created", &g.created)?;
        map.serialize_entry("modified", &g.modified)?;
        map.serialize_entry("category", &g.category)?;
        map.serialize_entry("deviceid", &deviceid)?;
        map.serialize_entry("hash_deviceid", &deviceid)?;
        map.serialize_entry("measures", &MeasuresView(g, self.types))?;
        map.serialize_entry("modelid", &source.map(|s| s.model_id))?;
        map.serialize_entry("model", &source.and_then(|s| s.model))?;
        map.serialize_entry("comment", &Option::<String>::None)?;
        map.end()
    }
}

/// A measure group as a `Value` (all measures).
pub fn meas_group(group: &MeasureGroup, user: &UserData) -> Value {
    serde_json::to_value(GroupView {
        group,
        user,
        types: None,
    })
    .unwrap_or(Value::Null)
}

/// A getactivity row.
pub fn activity(a: &Activity, user: &UserData, sel: &Sel) -> Value {
    let source = user.source(a.src);
    let deviceid = opt_str(source.and_then(|s| s.deviceid.as_deref()));
    let mut m = fields(&a.metrics, sel);
    m.insert("deviceid".into(), deviceid.clone());
    m.insert("hash_deviceid".into(), deviceid);
    m.insert("timezone".into(), json!(user.tz_name));
    m.insert("date".into(), json!(a.date.format("%Y-%m-%d").to_string()));
    m.insert("modified".into(), json!(a.modified));
    m.insert("brand".into(), json!(source.map_or(1, |s| s.brand)));
    m.insert("modelid".into(), json!(source.map(|s| s.model_id)));
    m.insert("model".into(), opt_str(source.and_then(|s| s.model)));
    m.insert(
        "is_tracker".into(),
        json!(source.is_some_and(|s| s.is_tracker)),
    );
    Value::Object(m)
}

/// A getintradayactivity sample; `None` when none of its values was asked for.
pub fn intraday_sample(s: &IntradaySample, user: &UserData, sel: &Sel) -> Option<Value> {
    let mut m = fields(&s.values, sel);
    if m.is_empty() {
        return None;
    }
    let source = user.source(s.src);
    m.insert(
        "deviceid".into(),
        opt_str(source.and_then(|x| x.deviceid.as_deref())),
    );
    m.insert("model".into(), opt_str(source.and_then(|x| x.model)));
    m.insert("model_id".into(), json!(source.map(|x| x.model_id)));
    Some(Value::Object(m))
}

/// A getworkouts row.
pub fn workout(w: &Workout, user: &UserData, sel: &Sel) -> Value {
    let source = user.source(w.src);
    json!({
        "id": w.id,
        "category": w.category,
        "timezone": user.tz_name,
        "model": source.map(|s| s.model_id),
        "attrib": w.attrib,
        "startdate": w.startdate,
        "enddate": w.enddate,
        "date": clock::local_ymd(w.startdate, user.tz),
        "deviceid": opt_str(source.and_then(|s| s.deviceid.as_deref())),
        "data": Value::Object(fields(&w.data, sel)),
        "modified": w.modified,
    })
}

/// A sleep-get segment of a night, with the requested maps.
pub fn segment(seg: &Segment, night: &Night, user: &UserData, sel: &Sel) -> Value {
    let source = user.source(night.src);
    let mut m = Map::new();
    m.insert("startdate".into(), json!(seg.start));
    m.insert("state".into(), json!(seg.state));
    m.insert("enddate".into(), json!(seg.end));
    m.insert("model".into(), opt_str(source.and_then(|s| s.model)));
    for (name, values) in &seg.maps {
        if !sel.has(name) {
            continue;
        }
        let series: Map<String, Value> = values
            .iter()
            .enumerate()
            .map(|(i, v)| ((seg.start + 60 * i as i64).to_string(), json!(v)))
            .collect();
        m.insert((*name).to_string(), Value::Object(series));
    }
    m.insert(
        "hash_deviceid".into(),
        opt_str(source.and_then(|s| s.deviceid.as_deref())),
    );
    m.insert("model_id".into(), json!(source.map(|s| s.model_id)));
    Value::Object(m)
}

/// A getsummary row.
pub fn summary(n: &Night, user: &UserData, sel: &Sel) -> Value {
    let source = user.source(n.src);
    json!({
        "id": n.id,
        "timezone": user.tz_name,
        "model": sleep_model(n.src),
        "model_id": source.map(|s| s.model_id),
        "hash_deviceid": opt_str(source.and_then(|s| s.deviceid.as_deref())),
        "startdate": n.start,
        "enddate": n.end,
        "date": clock::local_ymd(n.end, user.tz),
        "data": Value::Object(fields(&n.summary, sel)),
        "created": n.created,
        "modified": n.modified,
    })
}

/// A heart-list row.
pub fn ecg(e: &Ecg, user: &UserData) -> Value {
    let source = user.source(e.src);
    let mut m = Map::new();
    m.insert(
        "deviceid".into(),
        opt_str(source.and_then(|s| s.deviceid.as_deref())),
    );
    m.insert("model".into(), json!(source.map(|s| s.model_id)));
    m.insert(
        "ecg".into(),
        json!({"signalid": e.signalid, "afib": e.afib}),
    );
    if let Some((diastole, systole)) = e.bloodpressure {
        m.insert(
            "bloodpressure".into(),
            json!({"diastole": diastole, "systole": systole}),
        );
    }
    m.insert("heart_rate".into(), json!(e.heart_rate));
    m.insert("modified".into(), json!(e.modified));
    m.insert("timestamp".into(), json!(e.timestamp));
    Value::Object(m)
}

/// The optional parts of a heart-get body (`with_filtered`, `with_intervals`).
#[derive(Debug, Clone, Copy, Default)]
pub struct EcgOptions {
    pub filtered: bool,
    pub intervals: bool,
}

impl EcgOptions {
    /// Both parts (the ground truth).
    pub fn all() -> Self {
        EcgOptions {
            filtered: true,
            intervals: true,
        }
    }
}

/// A heart-get body; `filtered_signal` and `intervals` only when asked for.
pub fn ecg_body(e: &Ecg, user: &UserData, opts: EcgOptions) -> Value {
    let signal = gen_heart::ecg_signal(user.seed, e);
    let filtered = opts.filtered.then(|| gen_heart::ecg_filtered(&signal));
    let mut m = Map::new();
    m.insert("signal".into(), json!(signal));
    if let Some(filtered) = filtered {
        m.insert("filtered_signal".into(), json!(filtered));
    }
    m.insert("sampling_frequency".into(), json!(e.sampling_frequency));
    m.insert("wearposition".into(), json!(e.wearposition));
    m.insert(
        "model".into(),
        json!(user.source(e.src).map(|s| s.model_id)),
    );
    m.insert("heart_rate".into(), json!(e.heart_rate));
    if opts.intervals {
        m.insert("intervals".into(), gen_heart::ecg_intervals(user.seed, e));
    }
    Value::Object(m)
}

/// A stetho-list row.
pub fn stetho(s: &Stetho, user: &UserData) -> Value {
    json!({
        "hash_deviceid": opt_str(user.source(s.src).and_then(|x| x.deviceid.as_deref())),
        "signalid": s.signalid,
        "vhd": s.vhd,
        "timestamp": s.timestamp,
        "timezone": user.tz_name,
    })
}

/// A stetho-get body.
pub fn stetho_body(s: &Stetho, user: &UserData) -> Value {
    let signal = gen_heart::stetho_signal(user.seed, s);
    json!({
        "size": signal.len(),
        "signal": signal,
        "frequency": STETHO_FREQUENCY,
        "duration": STETHO_DURATION,
        "format": 1,
        "resolution": 8,
        "channel": 1,
        "model": user.source(s.src).map(|x| x.model_id),
        "position": s.position,
        "vhd": s.vhd,
    })
}

/// A getdevice row.
pub fn device(d: &Device, user: &UserData) -> Value {
    json!({
        "type": d.kind,
        "battery": d.battery,
        "model": d.model,
        "model_id": d.model_id,
        "timezone": user.tz_name,
        "first_session_date": d.first_session_date,
        "last_session_date": d.last_session_date,
        "deviceid": d.deviceid,
        "hash_deviceid": d.deviceid,
    })
}

/// The getgoals `goals` value: an object, or `[]` when the user has none.
pub fn goals(user: &UserData) -> Value {
    match &user.goals {
        None => json!([]),
        Some(g) => {
            let mut m = Map::new();
            if let Some(v) = g.steps {
                m.insert("steps".into(), json!(v));
            }
            if let Some(v) = g.sleep {
                m.insert("sleep".into(), json!(v));
            }
            if let Some((value, unit)) = g.weight {
                m.insert("weight".into(), json!({"value": value, "unit": unit}));
            }
            Value::Object(m)
        }
    }
}
