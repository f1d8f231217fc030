//! `measures`: getmeas replies (`body.measuregrps[].measures[]`) → one record per measure with
//! its group's fields alongside. Two readers give the same records: [`fast_page`] reads a
//! reply of the usual shape into borrowing typed structs (the hot path: no JSON tree, no map
//! per record), and [`measures_records`] reads any other shape leniently (numbers as strings,
//! `model_id`, odd `measuregrps`). Pure.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use crate::conform::integer;
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::{shape, Record, ReplyError};
use crate::conform::{read_integer, Fields, Val};
use crate::prefetch::Pool;
use crate::timefmt;

/// Group fields copied onto every measure record, verbatim.
const GROUP_FIELDS: &[&str] = &[
    "grpid",
    "attrib",
    "date",
    "created",
    "modified",
    "category",
    "deviceid",
    "hash_deviceid",
    "model",
    "comment",
    "brand",
    "devtype",
];

/// Group fields holding epoch seconds.
const EPOCH_FIELDS: &[&str] = &["date", "created", "modified"];

/// Measure fields copied verbatim (besides value/unit/type/position, handled apart).
const MEASURE_FIELDS: &[&str] = &["algo", "fm", "algo_params", "apppfmid", "appliver"];

/// Readable names of the measure type codes Withings documents (fact sheet §6.1).
pub fn type_name(code: i64) -> Option<&'static str> {
    Some(match code {
        1 => "weight",
        4 => "height",
        5 => "fat_free_mass",
        6 => "fat_ratio",
        8 => "fat_mass_weight",
        9 => "diastolic_blood_pressure",
        10 => "systolic_blood_pressure",
        11 => "heart_pulse",
        12 => "temperature",
        54 => "spo2",
        71 => "body_temperature",
        73 => "skin_temperature",
        76 => "muscle_mass",
        77 => "hydration",
        88 => "bone_mass",
        91 => "pulse_wave_velocity",
        123 => "vo2_max",
        130 => "atrial_fibrillation_result",
        135 => "qrs_interval",
        136 => "pr_interval",
        137 => "qt_interval",
        138 => "corrected_qt_interval",
        139 => "atrial_fibrillation_result_ppg",
        155 => "vascular_age",
        158 => "nerve_health_score_left_foot",
        159 => "nerve_health_score_right_foot",
        167 => "nerve_health_score_feet",
        168 => "extracellular_water",
        169 => "intracellular_water",
        170 => "visceral_fat",
        173 => "fat_free_mass_segment",
        174 => "fat_mass_segment",
        175 => "muscle_mass_segment",
        196 => "electrodermal_activity_feet",
        197 => "electrodermal_activity_left_foot",
        198 => "electrodermal_activity_right_foot",
        226 => "basal_metabolic_rate",
        227 => "metabolic_age",
        229 => "electrochemical_skin_conductance",
        _ => return None,
    })
}

/// `raw × 10^unit` as the double nearest to the exact decimal, so 7235 × 10^-2 is 72.35
/// (not 72.35000000000001, which `7235.0 * 0.01` gives).
pub fn scale(raw: i64, unit: i64) -> Option<f64> {
    if !scalable(unit) {
        return None;
    }
    // Both operands exact (|raw| < 2^53, 10^k exact up to 10^22): IEEE division and
    // multiplication round the exact result once, to the nearest double.
    const EXACT: i64 = 1 << 53;
    if (-EXACT..=EXACT).contains(&raw) && (-22..=22).contains(&unit) {
        let p = 10f64.powi(unit.unsigned_abs() as i32);
        let v = if unit < 0 {
            raw as f64 / p
        } else {
            raw as f64 * p
        };
        return v.is_finite().then_some(v);
    }
    let digits = raw.unsigned_abs().to_string();
    let sign = if raw < 0 { "-" } else { "" };
    let text = if unit >= 0 {
        format!("{sign}{digits}{}", "0".repeat(unit as usize))
    } else {
        let shift = unit.unsigned_abs() as usize;
        let padded = format!("{digits:0>width$}", width = shift + 1);
        let (int, frac) = padded.split_at(padded.len() - shift);
        format!("{sign}{int}.{frac}")
    };
    text.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// Whether [`scale`] gives a value for this unit (for any raw value: the result is finite).
pub fn scalable(unit: i64) -> bool {
    (-30..=30).contains(&unit)
}

/// Turns one getmeas `body` into measure records. `measuregrps` may be absent or empty (no
/// data). Integer fields are read with [`read_integer`]: null or absent is no value, `false`
/// and numeric strings are normalised, and anything else (a group without an integer `grpid`,
/// a `value` that is not a number or beyond i64, a `unit` no power of ten scales by, ...)
/// refuses the reply, naming the field: no data is nulled or dropped silently. The second
/// vector is kept for callers that log notes about a page.
pub fn measures_records(
    body: &Value,
    userid: i64,
) -> Result<(Vec<Record>, Vec<String>), ReplyError> {
    let groups = match body.get("measuregrps") {
        None | Some(Value::Null) => return Ok((Vec::new(), Vec::new())),
        Some(Value::Array(groups)) => groups,
        Some(Value::Object(o)) if o.is_empty() => return Ok((Vec::new(), Vec::new())),
        Some(_) => {
            return Err(ReplyError(
                "getmeas reply: `measuregrps` is not a list".into(),
            ))
        }
    };
    let timezone = body.get("timezone").cloned().unwrap_or(Value::Null);
    let mut records = Vec::new();
    for (i, group) in groups.iter().enumerate() {
        group_records(group, i, &timezone, userid, &mut records)?;
    }
    Ok((records, Vec::new()))
}

/// The records of group `i` of a page whose timezone is `timezone` (see [`measures_records`]).
pub fn group_records(
    group: &Value,
    i: usize,
    timezone: &Value,
    userid: i64,
    records: &mut Vec<Record>,
) -> Result<(), ReplyError> {
    let at = format!("measuregrps[{i}]");
    let Some(g) = group.as_object() else {
        return Err(refused(&at, "", shape::kind(group), "an object"));
    };
    let grpid = required(g, &at, "grpid")?;
    // The sync filters and bookmarks by these before the output plan sees them: an epoch
    // no date-time can hold is refused here (text is left to the plan to read or refuse).
    for field in EPOCH_FIELDS {
        if let Some(Ok(Some(secs))) = g.get(*field).map(read_integer) {
            if !timefmt::representable(secs) {
                let found = "a number out of the date-time range";
                return Err(refused(&at, field, found, "epoch seconds"));
            }
        }
    }
    let measures: &[Value] = match g.get("measures") {
        Some(Value::Array(m)) => m,
        None | Some(Value::Null) => &[],
        Some(Value::Object(o)) if o.is_empty() => &[],
        Some(other) => return Err(refused(&at, "measures", shape::kind(other), "a list")),
    };
    for (j, measure) in measures.iter().enumerate() {
        let at = format!("{at}.measures[{j}]");
        let Some(m) = measure.as_object() else {
            return Err(refused(&at, "", shape::kind(measure), "an object"));
        };
        let kind = required(m, &at, "type")?;
        records.push(measure_record(userid, grpid, kind, g, m, timezone, &at)?);
    }
    Ok(())
}

/// "getmeas reply: `<at>.<field>` is <found>, expected <expected>".
fn refused(at: &str, field: &str, found: &str, expected: &str) -> ReplyError {
    let dot = if field.is_empty() { "" } else { "." };
    ReplyError(format!(
        "getmeas reply: `{at}{dot}{field}` is {found}, expected {expected}"
    ))
}

/// An integer field that may be absent or null.
fn optional(object: &Map<String, Value>, at: &str, field: &str) -> Result<Option<i64>, ReplyError> {
    match object.get(field) {
        None => Ok(None),
        Some(v) => read_integer(v).map_err(|found| refused(at, field, found, "an integer")),
    }
}

/// An integer field that keys the record.
fn required(object: &Map<String, Value>, at: &str, field: &str) -> Result<i64, ReplyError> {
    optional(object, at, field)?.ok_or_else(|| refused(at, field, "missing or null", "an integer"))
}

fn measure_record(
    userid: i64,
    grpid: i64,
    kind: i64,
    group: &Map<String, Value>,
    measure: &Map<String, Value>,
    timezone: &Value,
    at: &str,
) -> Result<Record, ReplyError> {
    let mut r = Record::new();
    r.insert("userid".into(), userid.into());
    r.insert("grpid".into(), grpid.into());
    r.insert("type".into(), kind.into());
    let position = optional(measure, at, "position")?.unwrap_or(-1);
    r.insert("position".into(), position.into());
    r.insert(
        "type_name".into(),
        type_name(kind).map_or(Value::Null, Value::from),
    );
    let raw = optional(measure, at, "value")?;
    let unit = optional(measure, at, "unit")?;
    let value = match (raw, unit) {
        (Some(raw), Some(unit)) => match scale(raw, unit) {
            Some(v) => Value::from(v),
            None => {
                return Err(refused(
                    at,
                    "unit",
                    "a number out of the range of a power of ten",
                    "an integer in -30..30",
                ))
            }
        },
        _ => Value::Null,
    };
    r.insert("value".into(), value);
    r.insert("raw_value".into(), raw.map_or(Value::Null, Value::from));
    r.insert("unit".into(), unit.map_or(Value::Null, Value::from));
    for field in MEASURE_FIELDS {
        if let Some(v) = measure.get(*field) {
            r.insert((*field).into(), v.clone());
        }
    }
    for field in GROUP_FIELDS {
        if *field == "grpid" {
            continue;
        }
        if let Some(v) = group.get(*field) {
            r.insert((*field).into(), v.clone());
        }
    }
    let modelid = group
        .get("modelid")
        .or_else(|| group.get("model_id"))
        .cloned()
        .unwrap_or(Value::Null);
    r.insert("modelid".into(), modelid);
    r.insert("timezone".into(), timezone.clone());
    Ok(r)
}

/// A getmeas body of the usual shape, read typed. Unknown fields are ignored; any field of
/// another type than these (or an integer beyond the width kept for it) makes [`fast_page`]
/// and [`fast_reply`] give None, and the page is read by [`measures_records`], which gives
/// the same records.
///
/// Compact, because two pages are alive at once (the one being written and the next one,
/// read ahead): a group takes 96 bytes and a measure 48 (instead of 272 and 152), the
/// measures of all groups lie in one list (no allocation, and no spare capacity, per
/// group), the texts of a page (device ids, models) are shared between its groups, and
/// integer fields whose values are small codes (types, positions, units, algorithms, model
/// ids) are kept as `i32`/`i8`. A page of 4,096 groups (about 15,000 measures, a 2 MB
/// reply) takes about 1.1 MB (4.7 MB in 1,000s of small allocations before).
///
/// Its two lists come from spare buffers of earlier pages and go back to them when the page
/// is dropped (see [`Pool`]).
#[derive(Debug)]
pub struct FastPage {
    /// The page's number in the run (see [`MeasureRow`]'s shared columns).
    id: u64,
    pub measuregrps: Vec<FastGroup>,
    pub timezone: Option<String>,
    /// Every measure of the page, group after group (see [`MeasureSpan`]).
    measures: Vec<FastMeasure>,
    /// The texts of the page's groups, each once (see [`FastGroup`]'s `texts`).
    texts: Vec<Arc<str>>,
}

impl Drop for FastPage {
    fn drop(&mut self) {
        GROUPS.give(std::mem::take(&mut self.measuregrps));
        MEASURE_LISTS.give(std::mem::take(&mut self.measures));
    }
}

/// A number for a new [`FastPage`], unique in the run (from 1).
fn next_page_id() -> u64 {
    static PAGES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    PAGES.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// Spare lists of groups and of measures (see [`FastPage`]).
static GROUPS: Pool<FastGroup> = Pool::new();
static MEASURE_LISTS: Pool<FastMeasure> = Pool::new();

/// The page as serde reads it; the measures go to [`MEASURES`] meanwhile.
#[derive(Deserialize)]
struct PageText {
    #[serde(default, deserialize_with = "page_groups")]
    measuregrps: Vec<FastGroup>,
    #[serde(default)]
    timezone: Option<String>,
}

/// Where a group's measures lie in its page's list.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MeasureSpan {
    start: u32,
    len: u32,
}

impl MeasureSpan {
    /// How many measures the group has.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether the group has none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn range(&self) -> std::ops::Range<usize> {
        self.start as usize..(self.start + self.len) as usize
    }
}

/// One measure group of a [`FastPage`], 96 bytes: the optional small codes are packed with
/// a bit each for presence, and its texts are indexes in the page's texts (read through
/// [`FastPage::text`]).
#[derive(Debug, Deserialize)]
#[serde(from = "GroupFields")]
pub struct FastGroup {
    pub grpid: i64,
    pub date: Option<i64>,
    created: i64,
    modified: i64,
    /// attrib, category, brand, devtype, modelid, model_id.
    codes: [i32; 6],
    /// deviceid, hash_deviceid, model, comment: indexes in [`FastPage::texts`] ([`NO_TEXT`]:
    /// absent or null).
    texts: [u32; 4],
    /// The group's measures, in its page's list ([`FastPage::measures_of`]).
    pub measures: MeasureSpan,
    /// Bit 0: `created` given; bit 1: `modified`; bits 2..8: the `codes` in order.
    present: u8,
}

/// No text (see [`FastGroup`]'s `texts`).
const NO_TEXT: u32 = u32::MAX;

/// The texts of a group, in [`FastGroup`]'s `texts` order.
#[derive(Debug, Clone, Copy)]
pub enum GroupText {
    DeviceId = 0,
    HashDeviceId = 1,
    Model = 2,
    Comment = 3,
}

/// A group as serde reads it (a value beyond a field's width refuses the page).
#[derive(Deserialize)]
struct GroupFields {
    grpid: i64,
    date: Option<i64>,
    created: Option<i64>,
    modified: Option<i64>,
    attrib: Option<i32>,
    category: Option<i32>,
    brand: Option<i32>,
    devtype: Option<i32>,
    modelid: Option<i32>,
    model_id: Option<i32>,
    #[serde(default, deserialize_with = "shared_text")]
    deviceid: Option<u32>,
    #[serde(default, deserialize_with = "shared_text")]
    hash_deviceid: Option<u32>,
    #[serde(default, deserialize_with = "shared_text")]
    model: Option<u32>,
    #[serde(default, deserialize_with = "shared_text")]
    comment: Option<u32>,
    #[serde(default, deserialize_with = "page_measures")]
    measures: MeasureSpan,
}

impl From<GroupFields> for FastGroup {
    fn from(g: GroupFields) -> Self {
        let mut present = u8::from(g.created.is_some()) | (u8::from(g.modified.is_some()) << 1);
        let mut codes = [0; 6];
        for (i, code) in [
            g.attrib, g.category, g.brand, g.devtype, g.modelid, g.model_id,
        ]
        .into_iter()
        .enumerate()
        {
            if let Some(c) = code {
                codes[i] = c;
                present |= 1 << (i + 2);
            }
        }
        let text = |t: Option<u32>| t.unwrap_or(NO_TEXT);
        FastGroup {
            grpid: g.grpid,
            date: g.date,
            created: g.created.unwrap_or(0),
            modified: g.modified.unwrap_or(0),
            codes,
            texts: [
                text(g.deviceid),
                text(g.hash_deviceid),
                text(g.model),
                text(g.comment),
            ],
            measures: g.measures,
            present,
        }
    }
}

impl FastGroup {
    pub fn created(&self) -> Option<i64> {
        (self.present & 1 != 0).then_some(self.created)
    }

    pub fn modified(&self) -> Option<i64> {
        (self.present & 2 != 0).then_some(self.modified)
    }

    fn code(&self, i: usize) -> Option<i32> {
        (self.present & (1 << (i + 2)) != 0).then_some(self.codes[i])
    }

    pub fn attrib(&self) -> Option<i32> {
        self.code(0)
    }

    pub fn category(&self) -> Option<i32> {
        self.code(1)
    }

    pub fn brand(&self) -> Option<i32> {
        self.code(2)
    }

    pub fn devtype(&self) -> Option<i32> {
        self.code(3)
    }

    /// `modelid`, else its other spelling `model_id`.
    pub fn modelid(&self) -> Option<i32> {
        self.code(4).or(self.code(5))
    }
}

/// One measure of a [`FastGroup`], 48 bytes: the optional small codes are packed with a
/// bit each for presence (read through the methods).
#[derive(Debug, Deserialize)]
#[serde(from = "MeasureText")]
pub struct FastMeasure {
    pub kind: i64,
    raw: i64,
    /// position, algo, fm, apppfmid, appliver.
    codes: [i32; 5],
    unit: i8,
    /// Bit 0: `value` given; bit 1: `unit`; bits 2..7: the `codes` in order.
    present: u8,
    /// Free-form; rare, so boxed.
    algo_params: Option<Box<Value>>,
}

/// A measure as serde reads it (a value beyond a field's width refuses the page).
#[derive(Deserialize)]
struct MeasureText {
    #[serde(rename = "type")]
    kind: i64,
    value: Option<i64>,
    unit: Option<i8>,
    position: Option<i32>,
    algo: Option<i32>,
    fm: Option<i32>,
    apppfmid: Option<i32>,
    appliver: Option<i32>,
    algo_params: Option<Box<Value>>,
}

impl From<MeasureText> for FastMeasure {
    fn from(m: MeasureText) -> Self {
        let mut present = u8::from(m.value.is_some()) | (u8::from(m.unit.is_some()) << 1);
        let mut codes = [0; 5];
        for (i, code) in [m.position, m.algo, m.fm, m.apppfmid, m.appliver]
            .into_iter()
            .enumerate()
        {
            if let Some(c) = code {
                codes[i] = c;
                present |= 1 << (i + 2);
            }
        }
        FastMeasure {
            kind: m.kind,
            raw: m.value.unwrap_or(0),
            codes,
            unit: m.unit.unwrap_or(0),
            present,
            algo_params: m.algo_params,
        }
    }
}

impl FastMeasure {
    /// The raw `value` (an integer to scale by `unit`).
    pub fn value(&self) -> Option<i64> {
        (self.present & 1 != 0).then_some(self.raw)
    }

    /// The power of ten `value` is scaled by.
    pub fn unit(&self) -> Option<i8> {
        (self.present & 2 != 0).then_some(self.unit)
    }

    fn code(&self, i: usize) -> Option<i32> {
        (self.present & (1 << (i + 2)) != 0).then_some(self.codes[i])
    }

    pub fn position(&self) -> Option<i32> {
        self.code(0)
    }

    pub fn algo(&self) -> Option<i32> {
        self.code(1)
    }

    pub fn fm(&self) -> Option<i32> {
        self.code(2)
    }

    pub fn apppfmid(&self) -> Option<i32> {
        self.code(3)
    }

    pub fn appliver(&self) -> Option<i32> {
        self.code(4)
    }

    /// Free-form `algo_params`.
    pub fn algo_params(&self) -> Option<&Value> {
        self.algo_params.as_deref()
    }
}

/// The texts of a page being read: each text's index, and the texts in index order.
type PageTexts = (HashMap<Arc<str>, u32>, Vec<Arc<str>>);

thread_local! {
    /// The texts of the page being read and their indexes (see [`shared_text`]).
    static TEXTS: RefCell<PageTexts> = RefCell::default();
    /// The measures of the page being read (see [`page_measures`]); taken by [`read_page`].
    static MEASURES: RefCell<Vec<FastMeasure>> = const { RefCell::new(Vec::new()) };
}

/// A page's `measuregrps`, read into a spare list of groups.
fn page_groups<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<FastGroup>, D::Error> {
    struct List;
    impl<'de> Visitor<'de> for List {
        type Value = Vec<FastGroup>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a list of measure groups")
        }
        fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut groups = GROUPS.take();
            while let Some(group) = seq.next_element::<FastGroup>()? {
                groups.push(group);
            }
            Ok(groups)
        }
    }
    d.deserialize_seq(List)
}

/// A group's `measures`, appended to the list of the page being read on this thread.
fn page_measures<'de, D: Deserializer<'de>>(d: D) -> Result<MeasureSpan, D::Error> {
    struct List;
    impl<'de> Visitor<'de> for List {
        type Value = MeasureSpan;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a list of measures")
        }
        fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<MeasureSpan, A::Error> {
            let start = MEASURES.with(|m| m.borrow().len());
            // Not borrowed while an element is read (reading one does not touch the list).
            while let Some(measure) = seq.next_element::<FastMeasure>()? {
                MEASURES.with(|m| m.borrow_mut().push(measure));
            }
            let end = MEASURES.with(|m| m.borrow().len());
            let (Ok(start), Ok(len)) = (u32::try_from(start), u32::try_from(end - start)) else {
                return Err(de::Error::custom("too many measures in one page"));
            };
            Ok(MeasureSpan { start, len })
        }
    }
    d.deserialize_seq(List)
}

/// A text field of a group, as its index in the page's texts: a user's groups repeat a few
/// device ids and models, so a page holds each once. The texts are gathered on this thread
/// while [`read_page`] reads one page.
fn shared_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    struct Text;
    impl<'de> Visitor<'de> for Text {
        type Value = Option<u32>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a string or null")
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_str(self)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            TEXTS.with(|texts| {
                let (index, list) = &mut *texts.borrow_mut();
                if let Some(i) = index.get(v) {
                    return Ok(Some(*i));
                }
                let i = u32::try_from(list.len())
                    .ok()
                    .filter(|i| *i != NO_TEXT)
                    .ok_or_else(|| E::custom("too many texts in one page"))?;
                let t: Arc<str> = Arc::from(v);
                index.insert(Arc::clone(&t), i);
                list.push(t);
                Ok(Some(i))
            })
        }
    }
    d.deserialize_option(Text)
}

/// Reads one page of `text` with `parse` (which gives its groups, from a body or a whole
/// reply), sharing its texts (see [`shared_text`]) and gathering its measures in one list
/// (see [`page_measures`]).
/// Starts gathering one page's texts and measures on this thread (see [`shared_text`] and
/// [`page_measures`]), for `bytes` of group text.
fn start_reading(bytes: usize) {
    TEXTS.with(|texts| {
        let (index, list) = &mut *texts.borrow_mut();
        index.clear();
        list.clear();
    });
    MEASURES.with(|m| {
        // About one measure per 128 bytes of reply; untouched capacity costs no memory, and
        // the list is trimmed to its length below.
        let mut m = m.borrow_mut();
        *m = MEASURE_LISTS.take();
        m.reserve_exact(bytes / 128);
    });
}

/// The texts and measures gathered on this thread since [`start_reading`].
fn finish_reading() -> (Vec<Arc<str>>, Vec<FastMeasure>) {
    let texts = TEXTS.with(|texts| {
        let (index, list) = &mut *texts.borrow_mut();
        index.clear();
        index.shrink_to(64);
        std::mem::take(list)
    });
    let measures = MEASURES.with(|m| std::mem::take(&mut *m.borrow_mut()));
    (texts, measures)
}

fn read_page(text: &str, parse: impl FnOnce(&str) -> Option<PageText>) -> Option<FastPage> {
    start_reading(text.len());
    let page = parse(text);
    let (texts, measures) = finish_reading();
    let Some(page) = page else {
        MEASURE_LISTS.give(measures);
        return None;
    };
    Some(FastPage {
        id: next_page_id(),
        measuregrps: page.measuregrps,
        timezone: page.timezone,
        measures,
        texts,
    })
}

/// Reads a getmeas body of the usual shape (None: read it with [`measures_records`]).
pub fn fast_page(body: &[u8]) -> Option<FastPage> {
    // Checking the text as UTF-8 once is cheaper than string by string.
    let text = std::str::from_utf8(body).ok()?;
    accept(read_page(text, |t| serde_json::from_str(t).ok())?)
}

/// Reads a whole getmeas reply, envelope included, in one pass: the body of a status-0 reply
/// of the usual shape (None: classify the reply, and read its body with [`fast_page`] or
/// [`measures_records`]). A reply it accepts is complete JSON: a truncated one is refused.
pub fn fast_reply(text: &[u8]) -> Option<FastPage> {
    #[derive(Deserialize)]
    struct Envelope {
        status: i64,
        body: PageText,
    }
    let text = std::str::from_utf8(text).ok()?;
    let page = read_page(text, |t| {
        let envelope: Envelope = serde_json::from_str(t).ok()?;
        (envelope.status == 0).then_some(envelope.body)
    })?;
    accept(page)
}

/// A page the typed reader keeps (None: leave it to [`measures_records`]). A page holding a
/// value the lenient reader refuses (a unit no power of ten scales by, an epoch no date-time
/// can hold) is left to it too, so both readers fail alike.
fn accept(page: FastPage) -> Option<FastPage> {
    page.measuregrps
        .iter()
        .all(|g| acceptable(g, page.measures_of(g)))
        .then_some(page)
}

/// Whether the typed reader keeps a group with these measures (see [`accept`]).
fn acceptable(group: &FastGroup, measures: &[FastMeasure]) -> bool {
    let epoch_ok = |t: Option<i64>| t.is_none_or(timefmt::representable);
    epoch_ok(group.date)
        && epoch_ok(group.created())
        && epoch_ok(group.modified())
        && measures
            .iter()
            .all(|m| m.value().is_none() || m.unit().is_none_or(|u| scalable(u.into())))
}

/// The page's timezone, from the reply before its groups closed as JSON
/// ([`crate::streams::frame::ListFramer::head`]) when it says status 0 and gives the
/// timezone (its groups can then be read as they arrive; None: read the reply whole).
pub fn page_head_timezone(head: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Head {
        status: i64,
        body: HeadBody,
    }
    #[derive(Deserialize)]
    struct HeadBody {
        timezone: Option<String>,
    }
    let head: Head = serde_json::from_slice(head).ok()?;
    (head.status == 0).then_some(head.body.timezone).flatten()
}

/// What the envelope around a page's groups says, read once the reply is complete (the
/// reply with its list emptied: [`crate::streams::frame::ListFramer::finish`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skeleton {
    /// A whole status-0 envelope, each of its fields once.
    Whole,
    /// Not JSON: the reply was cut off after its list, or damaged.
    NotJson,
    /// JSON, but not one page: `status`, `timezone` or the list given twice (a reader of
    /// the whole reply would take another of them than the one read), or a status not 0.
    Ambiguous,
}

/// Reads a page's skeleton (see [`Skeleton`]).
pub fn page_skeleton(skeleton: &[u8]) -> Skeleton {
    // Derived readers refuse a field given twice.
    #[derive(Deserialize)]
    struct Envelope {
        status: i64,
        #[serde(rename = "body")]
        _body: Body,
    }
    #[derive(Deserialize)]
    struct Body {
        #[serde(rename = "timezone")]
        _timezone: Option<de::IgnoredAny>,
        #[serde(rename = "measuregrps")]
        _groups: de::IgnoredAny,
    }
    if serde_json::from_slice::<de::IgnoredAny>(skeleton).is_err() {
        return Skeleton::NotJson;
    }
    match serde_json::from_slice::<Envelope>(skeleton) {
        Ok(envelope) if envelope.status == 0 => Skeleton::Whole,
        _ => Skeleton::Ambiguous,
    }
}

/// A part of a page read group by group (see [`read_groups`]).
#[derive(Debug)]
pub enum Part {
    /// Groups in a row read typed.
    Typed(FastPage),
    /// Records of groups in a row read leniently (another shape than the usual one).
    Records(Vec<Record>),
}

/// Why [`read_groups`] refused a page's groups.
#[derive(Debug)]
pub enum GroupsError {
    /// A group is not JSON (the reply is damaged: read it again).
    NotJson,
    /// A group holds a value no reader takes (as [`measures_records`] refuses it).
    Refused(ReplyError),
}

/// The most groups in one [`Part`]: a part is the unit handed from a page's download to its
/// writing, so this bounds what one part holds (about 70 KB).
pub const PART_GROUPS: usize = 256;

/// Reads the texts of a page's groups (`first`: the index of the first in the page), whose
/// timezone is `timezone`, into parts of at most [`PART_GROUPS`] groups: groups in a row of
/// the usual shape typed, any other leniently, giving the records [`measures_records`] gives
/// for the same groups.
pub fn read_groups(
    texts: &[&[u8]],
    first: usize,
    timezone: &str,
    userid: i64,
) -> Result<Vec<Part>, GroupsError> {
    let mut parts = Vec::new();
    let mut i = 0;
    while i < texts.len() {
        let end = texts.len().min(i + PART_GROUPS);
        let (page, read) = read_typed_run(&texts[i..end], timezone);
        if read > 0 {
            parts.push(Part::Typed(page));
            i += read;
            continue;
        }
        drop(page);
        // Not of the usual shape: this group leniently.
        let value: Value = serde_json::from_slice(texts[i]).map_err(|_| GroupsError::NotJson)?;
        let mut records = match parts.pop() {
            Some(Part::Records(records)) => records,
            other => {
                parts.extend(other);
                Vec::new()
            }
        };
        let tz = Value::from(timezone);
        group_records(&value, first + i, &tz, userid, &mut records)
            .map_err(GroupsError::Refused)?;
        parts.push(Part::Records(records));
        i += 1;
    }
    Ok(parts)
}

/// Reads the leading groups of `texts` that are of the usual shape into one page (sharing
/// texts and one list of measures, as [`read_page`] does); how many it read.
fn read_typed_run(texts: &[&[u8]], timezone: &str) -> (FastPage, usize) {
    start_reading(texts.iter().map(|t| t.len()).sum());
    let mut groups = GROUPS.take();
    for text in texts {
        let mark = MEASURES.with(|m| m.borrow().len());
        let group = std::str::from_utf8(text)
            .ok()
            .and_then(|t| serde_json::from_str::<FastGroup>(t).ok())
            .filter(|g| {
                MEASURES.with(|m| {
                    let m = m.borrow();
                    acceptable(g, m.get(g.measures.range()).unwrap_or(&[]))
                })
            });
        match group {
            Some(g) => groups.push(g),
            None => {
                MEASURES.with(|m| m.borrow_mut().truncate(mark));
                break;
            }
        }
    }
    let (texts_of_page, measures) = finish_reading();
    let read = groups.len();
    let page = FastPage {
        id: next_page_id(),
        measuregrps: groups,
        timezone: Some(timezone.to_string()),
        measures,
        texts: texts_of_page,
    };
    (page, read)
}

impl FastPage {
    /// A text of a group of the page.
    pub fn text(&self, group: &FastGroup, which: GroupText) -> Option<&str> {
        text_at(&self.texts, group, which)
    }

    /// A group's measures (the group is one of the page's).
    pub fn measures_of(&self, group: &FastGroup) -> &[FastMeasure] {
        self.measures.get(group.measures.range()).unwrap_or(&[])
    }

    /// Every measure of the page as a record, in reply order.
    pub fn rows(&self, userid: i64) -> impl Iterator<Item = MeasureRow<'_>> {
        let timezone = self.timezone.as_deref();
        self.measuregrps
            .iter()
            .enumerate()
            .flat_map(move |(i, group)| {
                // The page's number and the group's place in it: unique in the run, even
                // when a later page's lists reuse this one's memory.
                let shared = (self.id << 32) | (i as u64 & 0xffff_ffff);
                self.measures_of(group)
                    .iter()
                    .map(move |measure| MeasureRow {
                        userid,
                        group,
                        measure,
                        timezone,
                        texts: &self.texts,
                        shared,
                    })
            })
    }
}

/// One measure record of a [`FastPage`], written by the output plan through [`Fields`]
/// with exactly the values [`measures_records`] gives.
#[derive(Clone, Copy)]
pub struct MeasureRow<'p> {
    pub userid: i64,
    pub group: &'p FastGroup,
    pub measure: &'p FastMeasure,
    pub timezone: Option<&'p str>,
    /// The page's texts (see [`FastPage::text`]).
    pub texts: &'p [Arc<str>],
    /// The id of the group's shared columns (see [`Fields::shared`]).
    shared: u64,
}

/// The record's values (not which page it came from).
impl std::fmt::Debug for MeasureRow<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeasureRow")
            .field("userid", &self.userid)
            .field("group", self.group)
            .field("measure", self.measure)
            .field("timezone", &self.timezone)
            .field("texts", &self.texts)
            .finish()
    }
}

impl<'p> MeasureRow<'p> {
    /// A text of the measure's group.
    pub fn text(&self, which: GroupText) -> Option<&'p str> {
        text_at(self.texts, self.group, which)
    }

    /// The measure's position (-1 when Withings gives none: key properties are non-null).
    pub fn position(&self) -> i64 {
        self.measure.position().map_or(-1, i64::from)
    }

    /// The group's change time (see [`change_time`]).
    pub fn change_time(&self) -> Option<i64> {
        let g = self.group;
        g.modified().or(g.created()).or(g.date)
    }
}

/// The columns a measure takes from its group (the same for every measure of the group).
const SHARED_GROUP_COLUMNS: &[&str] = &[
    "attrib",
    "date",
    "created",
    "modified",
    "category",
    "deviceid",
    "hash_deviceid",
    "modelid",
    "model",
    "comment",
    "brand",
    "devtype",
    "timezone",
];

impl Fields for MeasureRow<'_> {
    /// The group's columns, identified by the group (its page and place in it: not its
    /// address, which a later page's group may have once this page is freed).
    fn shared(&self) -> Option<(u64, &'static [&'static str])> {
        Some((self.shared, SHARED_GROUP_COLUMNS))
    }

    fn get(&self, name: &str) -> Val<'_> {
        let (g, m) = (self.group, self.measure);
        match name {
            "userid" => Val::Int(self.userid),
            "grpid" => Val::Int(g.grpid),
            "type" => Val::Int(m.kind),
            "position" => Val::Int(self.position()),
            "type_name" => type_name(m.kind).into(),
            "value" => match (m.value(), m.unit()) {
                (Some(raw), Some(unit)) => scale(raw, unit.into()).map_or(Val::Null, Val::Float),
                _ => Val::Null,
            },
            "raw_value" => m.value().into(),
            "unit" => m.unit().map(i64::from).into(),
            "algo" => int(m.algo()),
            "fm" => int(m.fm()),
            "apppfmid" => int(m.apppfmid()),
            "appliver" => int(m.appliver()),
            "algo_params" => m.algo_params().map_or(Val::Missing, Val::Json),
            "attrib" => int(g.attrib()),
            "date" => g.date.into(),
            "created" => g.created().into(),
            "modified" => g.modified().into(),
            "category" => int(g.category()),
            "deviceid" => self.text(GroupText::DeviceId).into(),
            "hash_deviceid" => self.text(GroupText::HashDeviceId).into(),
            "modelid" => int(g.modelid()),
            "model" => self.text(GroupText::Model).into(),
            "comment" => self.text(GroupText::Comment).into(),
            "brand" => int(g.brand()),
            "devtype" => int(g.devtype()),
            "timezone" => self.timezone.into(),
            _ => Val::Missing,
        }
    }
}

/// A text of `group` in a page's `texts`.
fn text_at<'p>(texts: &'p [Arc<str>], group: &FastGroup, which: GroupText) -> Option<&'p str> {
    texts
        .get(group.texts[which as usize] as usize)
        .map(|t| &**t)
}

/// A narrow integer field as the plan reads it.
fn int<'a>(v: Option<i32>) -> Val<'a> {
    v.map(i64::from).into()
}

/// The group's change time for bookmarks: `modified`, else `created`, else `date` (older
/// replies lack `modified`).
pub fn change_time(record: &Record) -> Option<i64> {
    ["modified", "created", "date"]
        .iter()
        .find_map(|f| record.get(*f).and_then(integer))
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;
    use serde_json::json;

    #[test]
    fn a_whole_reply_is_read_typed_only_when_complete_and_successful() {
        let body = r#"{"updatetime":1,"timezone":"Europe/Paris","more":0,"offset":0,"measuregrps":[{"grpid":7,"date":1700000000,"measures":[{"value":7235,"type":1,"unit":-2}]}]}"#;
        let ok = format!(r#"{{"status":0,"body":{body}}}"#);
        let page = fast_reply(ok.as_bytes()).expect("a status-0 reply of the usual shape");
        assert_eq!(page.measuregrps.len(), 1);
        assert_eq!(page.timezone.as_deref(), Some("Europe/Paris"));
        // An empty list for a body is no data, as the classifier takes it.
        let empty = fast_reply(br#"{"status":0,"body":[]}"#).unwrap();
        assert!(empty.measuregrps.is_empty());
        // The same body inside the envelope and alone reads the same.
        let alone = fast_page(body.as_bytes()).unwrap();
        assert_eq!(alone.measuregrps[0].grpid, page.measuregrps[0].grpid);
        for refused in [
            ok[..ok.len() - 1].to_string(),
            ok[..ok.len() / 2].to_string(),
            format!(r#"{{"status":601,"body":{body}}}"#),
            r#"{"status":601,"body":{"wait_seconds":12},"error":"Too many requests"}"#.into(),
            r#"{"status":"0","body":{}}"#.into(),
            r#"{"status":0,"status":0,"body":{}}"#.into(),
            format!(r#"{{"status":0,"body":{body}}} trailing"#),
            "<html>502 Bad Gateway</html>".into(),
            String::new(),
        ] {
            assert!(fast_reply(refused.as_bytes()).is_none(), "{refused}");
        }
    }

    #[test]
    fn scaling_is_exact_to_the_decimal() {
        let cases = [
            (7235, -2, 72.35),
            (72350, -3, 72.35),
            (723500, -4, 72.35),
            (5, -3, 0.005),
            (-125, -1, -12.5),
            (120, 0, 120.0),
            (12, 2, 1200.0),
            (0, -2, 0.0),
            (1, -10, 1e-10),
        ];
        for (raw, unit, expected) in cases {
            let got = scale(raw, unit).unwrap();
            assert_eq!(got, expected, "{raw}e{unit}");
            assert_eq!(
                serde_json::to_string(&got).unwrap(),
                serde_json::to_string(&expected).unwrap()
            );
        }
        assert_eq!(
            serde_json::to_string(&scale(7235, -2).unwrap()).unwrap(),
            "72.35"
        );
        assert_eq!(scale(1, 400), None);
    }

    #[test]
    fn one_record_per_measure_with_group_fields_alongside() {
        let body = json!({
            "updatetime": 1700000000, "timezone": "Europe/Paris",
            "measuregrps": [{
                "grpid": 10, "attrib": 0, "date": 1699990000, "created": 1699990100, "modified": 1699990200,
                "category": 1, "deviceid": "d1", "hash_deviceid": "d1", "modelid": 6, "model": "Body Cardio",
                "comment": null,
                "measures": [
                    {"value": 7235, "type": 1, "unit": -2, "algo": 3, "fm": 131},
                    {"value": 151, "type": 173, "unit": -1, "position": 2},
                    {"value": 152, "type": 173, "unit": -1, "position": 3},
                    {"value": 5, "type": 9999, "unit": 0}
                ]
            }]
        });
        let (records, skipped) = measures_records(&body, 42).unwrap();
        assert!(skipped.is_empty());
        assert_eq!(records.len(), 4);
        assert_eq!(
            Value::Object(records[0].clone()),
            json!({
                "userid": 42, "grpid": 10, "type": 1, "position": -1, "type_name": "weight", "value": 72.35,
                "raw_value": 7235, "unit": -2, "algo": 3, "fm": 131, "attrib": 0, "date": 1699990000,
                "created": 1699990100, "modified": 1699990200, "category": 1, "deviceid": "d1",
                "hash_deviceid": "d1", "model": "Body Cardio", "comment": null, "modelid": 6,
                "timezone": "Europe/Paris"
            })
        );
        let positions: Vec<_> = records
            .iter()
            .map(|r| (r["type"].clone(), r["position"].clone()))
            .collect();
        assert_eq!(
            positions[1..3],
            [(json!(173), json!(2)), (json!(173), json!(3))]
        );
        assert_eq!(records[3]["type_name"], Value::Null);
    }

    #[test]
    fn model_id_spelling_and_string_numbers_are_accepted() {
        let body = json!({"measuregrps": [{"grpid": "11", "model_id": 45, "measures": [{"value": "120", "type": "10", "unit": 0}]}]});
        let (records, _) = measures_records(&body, 1).unwrap();
        assert_eq!(records[0]["grpid"], json!(11));
        assert_eq!(records[0]["modelid"], json!(45));
        assert_eq!(records[0]["value"], json!(120.0));
    }

    #[test]
    fn empty_and_odd_replies() {
        for body in [
            json!({}),
            json!({"measuregrps": []}),
            json!({"measuregrps": null}),
            json!({"measuregrps": {}}),
        ] {
            assert_eq!(measures_records(&body, 1).unwrap().0.len(), 0, "{body}");
        }
        assert!(measures_records(&json!({"measuregrps": "x"}), 1).is_err());
        for groups in [
            json!([{"measures": []}]),
            json!([3]),
            json!([{"grpid": 1, "measures": [{"value": 1}]}]),
        ] {
            let err = measures_records(&json!({ "measuregrps": groups }), 1).unwrap_err();
            assert!(err.0.starts_with("getmeas reply: "), "{err}");
        }
    }

    /// Record lines, or the first error as text.
    type Lines = Result<Vec<String>, String>;

    /// Every record of `body` written by the measures plan, read typed (None: the typed
    /// reader leaves the page to the lenient one) and leniently; an error as its text.
    fn both_readers(body: &str) -> (Option<Lines>, Lines) {
        use crate::conform::{Flattening, OutputPlan};
        let def = crate::streams::find("measures").unwrap();
        let flattening = Flattening {
            enabled: true,
            max_depth: 10,
        };
        let plan = OutputPlan::new(&def.schema(), def.keys, None, flattening).unwrap();
        let line = |r: &dyn Fn(&mut Vec<u8>) -> Result<(), crate::conform::ConformError>| {
            let mut out = Vec::new();
            r(&mut out).map_err(|e| e.to_string())?;
            Ok(String::from_utf8(out).unwrap())
        };
        let fast = fast_page(body.as_bytes()).map(|page| {
            // Through one span cache, as a batch writes a page.
            let cache = std::cell::RefCell::new(crate::conform::SpanCache::default());
            page.rows(9)
                .map(|row| line(&|o| plan.write_cached(&row, o, &mut cache.borrow_mut())))
                .collect()
        });
        let value: Value = serde_json::from_str(body).unwrap();
        let lenient = measures_records(&value, 9)
            .map_err(|e| e.0)
            .and_then(|(records, _)| {
                records
                    .iter()
                    .map(|r| line(&|o| plan.write(r, o)))
                    .collect()
            });
        (fast, lenient)
    }

    /// Every record of `body` (a getmeas body) as written through [`read_groups`], its
    /// groups framed from the whole reply pushed in chunks of `chunk` bytes.
    fn part_lines(body: &str, chunk: usize) -> Result<(Vec<String>, usize), String> {
        use crate::conform::{Flattening, OutputPlan};
        use crate::streams::frame::{ListFramer, Step};
        let def = crate::streams::find("measures").unwrap();
        let flattening = Flattening {
            enabled: true,
            max_depth: 10,
        };
        let plan = OutputPlan::new(&def.schema(), def.keys, None, flattening).unwrap();
        let reply = format!(r#"{{"status":0,"body":{body}}}"#);
        let mut framer = ListFramer::new("measuregrps");
        let (mut lines, mut groups, mut parts) = (Vec::new(), 0, 0);
        for bytes in reply.as_bytes().chunks(chunk) {
            let mut step = framer.push(bytes).unwrap();
            while step == Step::ListStarts {
                step = framer.push(&[]).unwrap();
            }
            let texts: Vec<&[u8]> = framer.elements().collect();
            let read = read_groups(&texts, groups, "Europe/Paris", 9);
            groups += texts.len();
            drop(texts);
            framer.consume();
            for part in read.map_err(|e| format!("{e:?}"))? {
                parts += 1;
                match part {
                    Part::Typed(page) => {
                        let cache = RefCell::new(crate::conform::SpanCache::default());
                        for row in page.rows(9) {
                            let mut out = Vec::new();
                            plan.write_cached(&row, &mut out, &mut cache.borrow_mut())
                                .map_err(|e| e.to_string())?;
                            lines.push(String::from_utf8(out).unwrap());
                        }
                    }
                    Part::Records(records) => {
                        for r in &records {
                            let mut out = Vec::new();
                            plan.write(r, &mut out).map_err(|e| e.to_string())?;
                            lines.push(String::from_utf8(out).unwrap());
                        }
                    }
                }
            }
        }
        framer.finish().unwrap();
        Ok((lines, parts))
    }

    #[test]
    fn a_later_part_in_the_memory_of_an_earlier_one_writes_its_own_group_columns() {
        use crate::conform::{Flattening, OutputPlan, SpanCache};
        let def = crate::streams::find("measures").unwrap();
        let flattening = Flattening {
            enabled: true,
            max_depth: 10,
        };
        let plan = OutputPlan::new(&def.schema(), def.keys, None, flattening).unwrap();
        let group = |grpid: i64, device: &str| {
            format!(
                r#"{{"grpid":{grpid},"date":1700000000,"category":1,"deviceid":"{device}","measures":[{{"type":1,"value":5,"unit":0}}]}}"#
            )
        };
        // One span cache for the batch the parts are written into, as a page's batch is.
        let mut cache = SpanCache::default();
        let mut written = Vec::new();
        for (grpid, device) in [(1, "first"), (2, "second"), (3, "third")] {
            let text = group(grpid, device);
            let parts = read_groups(&[text.as_bytes()], 0, "UTC", 9).unwrap();
            let [Part::Typed(page)] = &parts[..] else {
                panic!("one typed part");
            };
            for row in page.rows(9) {
                let mut out = Vec::new();
                plan.write_cached(&row, &mut out, &mut cache).unwrap();
                written.push(serde_json::from_slice::<Value>(&out).unwrap());
            }
            // Freed before the next part is read: its lists go back to the pool and the
            // next part reuses them (its group at the same address).
        }
        let devices: Vec<_> = written.iter().map(|r| r["deviceid"].clone()).collect();
        assert_eq!(devices, [json!("first"), json!("second"), json!("third")]);
        let grpids: Vec<_> = written.iter().map(|r| r["grpid"].clone()).collect();
        assert_eq!(grpids, [json!(1), json!(2), json!(3)]);
    }

    #[test]
    fn groups_read_one_by_one_write_what_the_whole_page_writes() {
        let capture = include_str!("../../tests/fixtures/aiowithings/measurement_list.json");
        let groups: Vec<Value> = serde_json::from_str(capture).unwrap();
        // More groups than a part holds, with groups of other shapes among them (each read
        // leniently, between typed parts).
        let mut many: Vec<Value> = groups
            .iter()
            .cycle()
            .take(3 * PART_GROUPS)
            .cloned()
            .collect();
        for (i, g) in many.iter_mut().enumerate() {
            g["grpid"] = json!(i);
        }
        many[5]["grpid"] = json!("5");
        many[6]["measures"][0]["value"] = json!("12");
        many[300]["deviceid"] = json!(77);
        let body =
            json!({"updatetime": 1, "timezone": "Europe/Paris", "measuregrps": many, "more": 0})
                .to_string();
        let (_, lenient) = both_readers(&body);
        let lenient = lenient.unwrap();
        assert!(lenient.len() > 3 * PART_GROUPS);
        for chunk in [7, 1000, 64 * 1024, body.len() + 40] {
            let (lines, parts) = part_lines(&body, chunk).unwrap();
            assert_eq!(lines, lenient, "chunks of {chunk} bytes");
            assert!(
                parts >= 3 + 3,
                "{parts} parts: at most {PART_GROUPS} groups each"
            );
        }
        // A value both readers refuse fails the groups, naming the group's place in the page.
        let mut bad = groups.clone();
        bad[3]["measures"][0]["value"] = json!("abc");
        let body = json!({"timezone": "Europe/Paris", "measuregrps": bad}).to_string();
        let (_, lenient) = both_readers(&body);
        let expected = lenient.unwrap_err();
        assert!(expected.contains("measuregrps[3]"), "{expected}");
        for chunk in [5, 100_000] {
            let refused = part_lines(&body, chunk).unwrap_err();
            assert!(refused.contains(&expected), "{refused}");
        }
        // A group that is not JSON (framed, but its number is damaged).
        let damaged = r#"{"status":0,"body":{"timezone":"UTC","measuregrps":[{"grpid":1-2}]}}"#;
        let mut framer = crate::streams::frame::ListFramer::new("measuregrps");
        framer.push(damaged.as_bytes()).unwrap();
        framer.push(&[]).unwrap();
        let texts: Vec<&[u8]> = framer.elements().collect();
        assert!(matches!(
            read_groups(&texts, 0, "UTC", 9),
            Err(GroupsError::NotJson)
        ));
    }

    #[test]
    fn the_typed_reader_writes_what_the_lenient_one_writes() {
        let capture = include_str!("../../tests/fixtures/aiowithings/measurement_list.json");
        let body = format!(
            r#"{{"updatetime": 1, "timezone": "Europe\/Paris", "measuregrps": {capture}, "more": 0}}"#
        );
        let (fast, lenient) = both_readers(&body);
        assert!(lenient.as_ref().unwrap().len() > 10);
        assert_eq!(fast, Some(lenient));
        let odd = r#"{"measuregrps": [{"grpid": 3, "date": 1700000000, "modified": 1700000001, "model_id": 7,
            "deviceid": "a\"b", "comment": null, "new_field": [1],
            "measures": [{"value": 123456789, "type": 1, "unit": -5, "algo_params": {"x": 1}},
                         {"type": 4, "position": 0}, {"value": 5, "type": 12, "unit": 3}]}]}"#;
        let (fast, lenient) = both_readers(odd);
        assert_eq!(fast, Some(lenient));
        // Values both readers refuse alike (the typed one through the output plan).
        let text_params = r#"{"measuregrps": [{"grpid": 1, "measures": [{"value": 1, "type": 1, "unit": 0, "algo_params": "x"}]}]}"#;
        let (fast, lenient) = both_readers(text_params);
        assert!(
            lenient.as_ref().unwrap_err().contains("`algo_params`"),
            "{lenient:?}"
        );
        assert_eq!(fast, Some(lenient));
        // Integers beyond the width the typed reader keeps them in: the lenient reader reads
        // them, and writes what it always wrote.
        for body in [
            r#"{"measuregrps": [{"grpid": 1, "brand": 4294967296, "measures": [{"value": 1, "type": 1, "unit": 0, "algo": 2147483648}]}]}"#,
            r#"{"measuregrps": [{"grpid": 1, "modelid": -2147483649, "measures": [{"value": 1, "type": 1, "unit": 0, "position": 99999999999}]}]}"#,
        ] {
            assert!(fast_page(body.as_bytes()).is_none(), "{body}");
            let (_, lenient) = both_readers(body);
            assert!(lenient.is_ok(), "{lenient:?}");
        }
        // Shapes the typed reader leaves to the lenient one.
        for body in [
            r#"{"measuregrps": {}}"#,
            r#"{"measuregrps": [{"grpid": "11", "measures": []}]}"#,
            r#"{"measuregrps": [{"grpid": 1, "measures": [{"value": 1.5, "type": 1, "unit": 0}]}]}"#,
            r#"{"measuregrps": [{"grpid": 1, "deviceid": 5, "measures": []}]}"#,
            r#"{"measuregrps": [{"grpid": 1, "measures": [{"value": false, "type": 1, "unit": 0}]}]}"#,
            r#"{"measuregrps": [{"grpid": 1, "measures": [{"value": 1, "type": 1, "unit": -9223372036854775808}]}]}"#,
            r#"{"measuregrps": [{"grpid": 1, "measures": [{"value": 99999999999999999999999, "type": 1, "unit": 0}]}]}"#,
            r#"{"measuregrps": [{"grpid": 1, "date": 9223372036854775807, "measures": []}]}"#,
            r#"{"measuregrps": [{"grpid": 1, "modified": -99999999999999, "measures": []}]}"#,
        ] {
            assert!(fast_page(body.as_bytes()).is_none(), "{body}");
        }
    }

    #[test]
    fn uninterpretable_values_refuse_the_reply_naming_the_field() {
        let cases = [
            (
                json!({"value": "abc", "type": 1, "unit": 0}),
                "measures[0].value` is a string that is not a number",
            ),
            (
                json!({"value": 99999999999999999999999u128 as f64, "type": 1, "unit": 0}),
                "measures[0].value` is a number out of the integer range",
            ),
            (
                json!({"value": 18446744073709551615u64, "type": 1, "unit": 0}),
                "measures[0].value` is a number out of the integer range",
            ),
            (
                json!({"value": 1.5, "type": 1, "unit": 0}),
                "measures[0].value` is a fractional number",
            ),
            (
                json!({"value": {"a": 1}, "type": 1, "unit": 0}),
                "measures[0].value` is an object",
            ),
            (
                json!({"value": 1, "type": 1, "unit": "x"}),
                "measures[0].unit` is a string that is not a number",
            ),
            (
                json!({"value": 1, "type": 1, "unit": -9223372036854775808i64}),
                "measures[0].unit` is a number out of the range of a power of ten",
            ),
            (
                json!({"value": 1, "type": 1, "unit": 0, "position": [1]}),
                "measures[0].position` is an array",
            ),
            (
                json!({"value": 1, "type": "weight", "unit": 0}),
                "measures[0].type` is a string that is not a number",
            ),
            (
                json!({"value": 1, "unit": 0}),
                "measures[0].type` is missing or null",
            ),
        ];
        let huge_date = json!({"measuregrps": [{"grpid": 1, "date": i64::MAX, "measures": []}]});
        let err = measures_records(&huge_date, 1).unwrap_err();
        let want = "`measuregrps[0].date` is a number out of the date-time range";
        assert!(err.0.contains(want), "{err}");
        for (measure, want) in cases {
            let body = json!({"measuregrps": [{"grpid": 1, "measures": [measure]}]});
            let err = measures_records(&body, 1).unwrap_err();
            assert!(
                err.0.starts_with("getmeas reply: `measuregrps[0]."),
                "{err}"
            );
            assert!(err.0.contains(want), "{err} does not say {want:?}");
        }
        let err = measures_records(&json!({"measuregrps": [{"grpid": 1, "measures": "x"}]}), 1)
            .unwrap_err();
        assert!(
            err.0.contains("`measuregrps[0].measures` is a string"),
            "{err}"
        );
    }

    #[test]
    fn nulls_and_known_quirks_are_normalised() {
        let body = json!({"measuregrps": [{"grpid": "2", "measures": [
            {"value": false, "type": 1, "unit": 0},
            {"value": null, "type": "4", "unit": null, "position": " 3 "},
            {"value": "", "type": 5, "unit": -1, "position": true},
            {"value": 720.0, "type": 6, "unit": "-1"}
        ]}]});
        let (records, _) = measures_records(&body, 1).unwrap();
        let got: Vec<Value> = records
            .iter()
            .map(|r| {
                json!([
                    r["grpid"],
                    r["type"],
                    r["position"],
                    r["raw_value"],
                    r["unit"],
                    r["value"]
                ])
            })
            .collect();
        assert_eq!(
            got,
            [
                json!([2, 1, -1, 0, 0, 0.0]),
                json!([2, 4, 3, null, null, null]),
                json!([2, 5, 1, null, -1, null]),
                json!([2, 6, -1, 720, -1, 72.0]),
            ]
        );
    }

    #[test]
    fn a_typed_page_is_compact_and_shares_its_texts() {
        assert!(std::mem::size_of::<FastMeasure>() <= 48);
        assert!(std::mem::size_of::<FastGroup>() <= 96);
        let body = r#"{"timezone": "Europe/Paris", "measuregrps": [
            {"grpid": 1, "deviceid": "d1", "model": "Body+", "measures": [
                {"value": 7235, "type": 1, "unit": -2, "algo": 3, "fm": 131},
                {"value": 151, "type": 173, "unit": -1, "position": 2, "appliver": 5050021}]},
            {"grpid": 2, "deviceid": "d1", "model": "Body+", "measures": []},
            {"grpid": 3, "deviceid": "d2", "measures": [{"type": 4, "apppfmid": 7}]}]}"#;
        let page = fast_page(body.as_bytes()).unwrap();
        let [a, b, c] = &page.measuregrps[..] else {
            panic!("three groups")
        };
        assert_eq!(
            a.texts[0], b.texts[0],
            "one text for the page's equal device ids"
        );
        assert_eq!(page.texts.len(), 3, "d1, Body+, d2");
        assert_eq!(page.text(c, GroupText::DeviceId), Some("d2"));
        assert_eq!(page.text(a, GroupText::Model), Some("Body+"));
        assert_eq!(page.text(c, GroupText::Model), None);
        assert_eq!(
            (a.measures.len(), b.measures.len(), c.measures.len()),
            (2, 0, 1)
        );
        let m = page.measures_of(a);
        assert_eq!(
            (m[0].kind, m[0].value(), m[0].unit()),
            (1, Some(7235), Some(-2))
        );
        assert_eq!(
            (m[0].algo(), m[0].fm(), m[0].position()),
            (Some(3), Some(131), None)
        );
        assert_eq!(
            (m[1].position(), m[1].appliver(), m[1].algo()),
            (Some(2), Some(5050021), None)
        );
        let m = page.measures_of(c);
        assert_eq!((m[0].kind, m[0].value(), m[0].unit()), (4, None, None));
        assert_eq!(m[0].apppfmid(), Some(7));
        let rows: Vec<_> = page
            .rows(5)
            .map(|r| (r.group.grpid, r.measure.kind))
            .collect();
        assert_eq!(
            rows,
            [(1, 1), (1, 173), (3, 4)],
            "every measure, in reply order"
        );
        // A page read after one that failed starts afresh.
        assert!(
            fast_page(br#"{"measuregrps": [{"grpid": 1, "measures": [{"type": 1}, 5]}]}"#)
                .is_none()
        );
        let again =
            fast_page(br#"{"measuregrps": [{"grpid": 9, "measures": [{"type": 12}]}]}"#).unwrap();
        assert_eq!(
            again.rows(1).map(|r| r.measure.kind).collect::<Vec<_>>(),
            [12]
        );
    }

    #[test]
    fn fast_scaling_equals_the_decimal_text() {
        for raw in [0i64, 1, 5, 7235, -125, 123456789, 9_007_199_254_740_991] {
            for unit in -22..=22 {
                let digits = raw.unsigned_abs().to_string();
                let sign = if raw < 0 { "-" } else { "" };
                let exact: f64 = format!("{sign}{digits}e{unit}").parse().unwrap();
                assert_eq!(scale(raw, unit), Some(exact), "{raw}e{unit}");
            }
        }
    }

    #[test]
    fn every_captured_getmeas_reply_parses_without_loss() {
        let list: Value = serde_json::from_str(include_str!(
            "../../tests/fixtures/aiowithings/measurement_list.json"
        ))
        .unwrap();
        let total: usize = list
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["measures"].as_array().unwrap().len())
            .sum();
        let (records, skipped) = measures_records(&json!({"measuregrps": list}), 7).unwrap();
        assert_eq!(records.len(), total);
        assert!(skipped.is_empty());
        let mut keys: Vec<_> = records
            .iter()
            .map(|r| {
                (
                    r["grpid"].clone().to_string(),
                    r["type"].to_string(),
                    r["position"].to_string(),
                )
            })
            .collect();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), total, "keys are unique");
    }
}
