//! getmeas data: weigh-ins (several groups per event), BP readings, Body Scan sessions,
//! manual entries and objectives, scaled to a target number of measures.

use super::generate::{src, Span};
use super::model::{Measure, MeasureGroup, UserData};
use crate::prng::Prng;

/// A type code no Withings documentation knows yet (clients must tolerate it).
pub const UNKNOWN_TYPE: u16 = 9_001;

/// Event kinds in the order they repeat.
#[derive(Debug, Clone, Copy)]
enum Event {
    WeighIn,
    BloodPressure,
    Manual,
    BodyScan,
}

const CYCLE: [Event; 8] = [
    Event::WeighIn,
    Event::BloodPressure,
    Event::WeighIn,
    Event::Manual,
    Event::BodyScan,
    Event::BloodPressure,
    Event::WeighIn,
    Event::BloodPressure,
];

/// Average measures per event of `CYCLE` (used to spread events over the range).
const MEASURES_PER_CYCLE: u64 = 10 + 3 + 10 + 1 + 34 + 3 + 10 + 3;

fn m(value: i64, mtype: u16, unit: i8, algo: u32, fm: u8) -> Measure {
    Measure {
        value,
        mtype,
        unit,
        algo: Some(algo),
        fm: Some(fm),
        position: None,
        algo_params: false,
        app: false,
    }
}

fn at(mut x: Measure, position: u8) -> Measure {
    x.position = Some(position);
    x
}

/// Builds groups for one event into `out`; returns the number of measures added.
struct Builder<'a> {
    user: &'a mut UserData,
    span: Span,
    prng: Prng,
    weight_g: i64,
}

impl Builder<'_> {
    fn group(
        &mut self,
        date: i64,
        attrib: u32,
        category: u8,
        src: Option<u8>,
        measures: Vec<Measure>,
    ) {
        let created = (date + self.prng.range(15, 900)).min(self.span.anchor);
        let modified = if self.prng.chance(0.03) {
            (created + self.prng.range(3_600, 5 * 86_400)).min(self.span.anchor)
        } else {
            created
        };
        let grpid = self.user.new_id();
        self.user.meas.groups.push(MeasureGroup {
            grpid,
            attrib,
            date,
            created: created.max(date.min(self.span.anchor)),
            modified: modified.max(created),
            category,
            src,
            measures,
        });
    }

    fn weight_unit(&mut self) -> (i64, i8) {
        match self.prng.range(0, 19) {
            0 => (self.weight_g / 10, -2),
            1 => (self.weight_g * 10, -4),
            _ => (self.weight_g, -3),
        }
    }

    fn event(&mut self, kind: Event, date: i64) -> usize {
        self.weight_g += self.prng.range(-300, 300);
        self.weight_g = self.weight_g.clamp(45_000, 140_000);
        let w = self.weight_g;
        let fat_ratio = 180 + self.prng.range(-20, 40); // per mille
        let fat_g = w * fat_ratio / 1000;
        match kind {
            Event::WeighIn => {
                let (wv, wu) = self.weight_unit();
                let comp = vec![
                    m(wv, 1, wu, 3, 3),
                    m(w - fat_g, 5, -3, 3, 131),
                    m(fat_ratio * 100, 6, -3, 3, 131),
                    m(fat_g / 10, 8, -2, 3, 131),
                    m((w - fat_g) * 95 / 1000, 76, -2, 3, 131),
                    m(w * 55 / 1000, 77, -2, 3, 131),
                    m(w * 4 / 1000, 88, -2, 3, 131),
                ];
                self.group(date, 0, 1, Some(src::BODY_CARDIO), comp);
                let (hr, hu) = if self.prng.chance(0.9) {
                    (self.prng.range(55, 95) * 100, -2)
                } else {
                    (self.prng.range(55, 95), 0)
                };
                self.group(
                    date,
                    0,
                    1,
                    Some(src::BODY_CARDIO),
                    vec![m(hr, 11, hu, 0, 3)],
                );
                let pwv = vec![
                    m(self.prng.range(6_000, 9_000), 91, -3, 0, 131),
                    m(self.prng.range(300, 600), 155, -1, 0, 131),
                ];
                self.group(date, 8, 1, Some(src::BODY_CARDIO), pwv);
                10
            }
            Event::BloodPressure => {
                let unit: i8 = if self.prng.chance(0.85) { -2 } else { 0 };
                let scale = if unit == -2 { 100 } else { 1 };
                let sys = self.prng.range(105, 145);
                let dia = self.prng.range(65, 92);
                let hr = self.prng.range(55, 95);
                let attrib = if self.prng.chance(0.1) { 17 } else { 0 };
                let bp = vec![
                    m(dia * scale, 9, unit, 0, 128),
                    m(sys * scale, 10, unit, 0, 128),
                    m(hr * scale, 11, unit, 0, 128),
                ];
                self.group(date, attrib, 1, Some(src::BPM_CONNECT), bp);
                3
            }
            Event::Manual => {
                let (wv, wu) = if self.prng.chance(0.5) {
                    (w / 100 * 100, -3)
                } else {
                    (w / 10, -2)
                };
                let mut x = m(wv, 1, wu, 0, 128);
                x.app = true;
                self.group(date, 2, 1, None, vec![x]);
                1
            }
            Event::BodyScan => self.body_scan(date, w, fat_g, fat_ratio),
        }
    }

    fn body_scan(&mut self, date: i64, w: i64, fat_g: i64, fat_ratio: i64) -> usize {
        const ALGO: u32 = 218_235_904;
        let s = Some(src::BODY_SCAN);
        let hr = self.prng.range(55, 95);
        self.group(date, 0, 1, s, vec![m(hr, 11, 0, 0, 3)]);
        let eda = vec![
            m(self.prng.range(40_000, 70_000), 196, -3, 0, 3),
            m(self.prng.range(40_000, 70_000), 197, -3, 0, 3),
            m(self.prng.range(40_000, 70_000), 198, -3, 0, 3),
        ];
        self.group(date, 0, 1, s, eda);
        let mut ratio = m(fat_ratio * 100, 6, -3, 0, 0);
        ratio.algo = None;
        ratio.fm = None;
        let comp = vec![
            m(w, 1, -3, ALGO, 3),
            at(m((w - fat_g) / 10, 5, -2, ALGO, 131), 7),
            at(m(fat_g / 10, 8, -2, ALGO, 131), 7),
            at(m((w - fat_g) * 95 / 10_000, 76, -2, ALGO, 131), 7),
            at(m(w * 55 / 10_000, 77, -2, ALGO, 131), 7),
            at(m(w * 4 / 10_000, 88, -2, ALGO, 131), 7),
            at(m(w * 22 / 10_000, 168, -2, ALGO, 131), 6),
            at(m(w * 32 / 10_000, 169, -2, ALGO, 131), 7),
            at(m(self.prng.range(20, 120), 170, -1, ALGO, 131), 7),
            at(m(self.prng.range(1_500, 2_400), 226, 0, ALGO, 131), 7),
            ratio,
        ];
        self.group(date, 0, 1, s, comp);
        let mut seg = Vec::with_capacity(15);
        for (mtype, share) in [(173u16, 80i64), (174, 20), (175, 75)] {
            for (pos, part) in [(2u8, 5i64), (3, 5), (10, 17), (11, 17), (12, 45)] {
                let base = if mtype == 174 { fat_g } else { w - fat_g };
                let v = base * share / 100 * part / 100 / 10 + self.prng.range(-20, 20);
                seg.push(at(m(v.max(1), mtype, -2, ALGO, 3), pos));
            }
        }
        self.group(date, 0, 1, s, seg);
        let mut afib = m(self.prng.range(0, 13), 130, 0, 16_909_313, 131);
        afib.algo_params = true;
        self.group(date, 0, 1, s, vec![afib]);
        let future = m(self.prng.range(1, 999), UNKNOWN_TYPE, 0, 0, 131);
        self.group(date, 0, 1, s, vec![future]);
        let pwv = vec![
            m(self.prng.range(6_000, 9_000), 91, -3, 0, 131),
            m(self.prng.range(300, 600), 155, -1, 0, 131),
        ];
        self.group(date, 8, 1, s, pwv);
        34
    }
}

/// Generates about `target` measures spread over the span.
pub fn generate(user: &mut UserData, span: Span, target: u64) {
    let mut prng = Prng::derive(user.seed, "getmeas", 0);
    let weight_g = prng.range(55_000, 95_000);
    let mut b = Builder {
        user,
        span,
        prng,
        weight_g,
    };
    // Once: height entered manually at account creation, and a weight objective.
    let first = span.start + 3_600;
    let mut height = m(b.prng.range(155, 195) * 10, 4, -3, 0, 128);
    height.app = true;
    b.group(first, 2, 1, None, vec![height]);
    let goal = m(weight_g - 3_000, 1, -3, 0, 128);
    b.group(first + 60, 2, 2, None, vec![goal]);
    let mut count: u64 = 2;
    if target <= count {
        return;
    }
    let events = ((target - count) * CYCLE.len() as u64)
        .div_ceil(MEASURES_PER_CYCLE)
        .max(1);
    let width = (span.anchor - 1 - first - 120).max(1) as f64 / events as f64;
    let mut i: u64 = 0;
    while count < target {
        let base = first + 120 + (i as f64 * width) as i64;
        let jitter = b.prng.range(0, (width * 0.5) as i64);
        let date = (base + jitter).min(span.anchor - 1);
        count += b.event(CYCLE[(i % CYCLE.len() as u64) as usize], date) as u64;
        i += 1;
    }
}
