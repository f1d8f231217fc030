//! Arbitrary bytes as a Withings reply: classification, then every reply builder and the
//! output plan of its stream (see `tap_withings_fuzz::check_reply_bytes`).
#![cfg_attr(fuzzing, no_main)]

#[cfg(fuzzing)]
libfuzzer_sys::fuzz_target!(|data: &[u8]| tap_withings_fuzz::check_reply_bytes(data));

#[cfg(not(fuzzing))]
fn main() {
    // Without cargo-fuzz: run every file named on the command line once.
    for path in std::env::args().skip(1) {
        let data = std::fs::read(&path).expect("readable input");
        tap_withings_fuzz::check_reply_bytes(&data);
    }
}
