//! Arbitrary JSON as `{"schema": .., "record": .., "max_depth": N, "enabled": bool}`: the output
//! plan never merges two columns and writes valid, deterministic records (see
//! `tap_withings_fuzz::check_flatten_bytes`).
#![cfg_attr(fuzzing, no_main)]

#[cfg(fuzzing)]
libfuzzer_sys::fuzz_target!(|data: &[u8]| tap_withings_fuzz::check_flatten_bytes(data));

#[cfg(not(fuzzing))]
fn main() {
    for path in std::env::args().skip(1) {
        let data = std::fs::read(&path).expect("readable input");
        tap_withings_fuzz::check_flatten_bytes(&data);
    }
}
