//! Arbitrary bytes as a getmeas body: the typed reader production tries first
//! (`measure::fast_page` + `MeasureRow`) writes exactly what the lenient one
//! (`measures_records`) writes, or fails the same way, whenever it accepts the body (see
//! `tap_withings_fuzz::check_measures_readers`).
#![cfg_attr(fuzzing, no_main)]

#[cfg(fuzzing)]
libfuzzer_sys::fuzz_target!(|data: &[u8]| tap_withings_fuzz::check_measures_readers(data));

#[cfg(not(fuzzing))]
fn main() {
    for path in std::env::args().skip(1) {
        let data = std::fs::read(&path).expect("readable input");
        tap_withings_fuzz::check_measures_readers(&data);
    }
}
