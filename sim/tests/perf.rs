//! Scale: a getmeas backfill of 1,000,000 measures. Ignored by default (slow in debug);
//! run with `cargo test --release -p withings-sim --test perf -- --ignored --nocapture`.

mod common;

use common::*;
use std::time::Instant;
use withings_sim::SimConfig;

fn backfill(measures: u64) -> (f64, f64, usize) {
    let t0 = Instant::now();
    let sim = start(SimConfig {
        measures_per_user: Some(measures),
        days: 365,
        ..cfg()
    });
    let gen = t0.elapsed().as_secs_f64();
    let uid = sim.userids()[0];
    let t = token(&sim, uid);
    let t1 = Instant::now();
    let (mut offset, mut groups) = (0i64, 0usize);
    loop {
        let r = call(
            &sim,
            "/measure",
            &[
                ("action", "getmeas"),
                ("lastupdate", "0"),
                ("offset", &s(offset)),
            ],
            &t,
        );
        let b = &r["body"];
        groups += b["measuregrps"].as_array().unwrap().len();
        if b["more"] != 1 {
            break;
        }
        offset = b["offset"].as_i64().unwrap();
    }
    (gen, t1.elapsed().as_secs_f64(), groups)
}

#[test]
fn hundred_thousand_measures_backfill() {
    let (gen, serve, groups) = backfill(100_000);
    eprintln!("100k measures: generation {gen:.2}s, backfill {serve:.2}s, {groups} groups");
    assert!(groups > 20_000);
}

#[test]
#[ignore]
fn million_measures_backfill() {
    let (gen, serve, groups) = backfill(1_000_000);
    eprintln!("1M measures: generation {gen:.2}s, backfill {serve:.2}s, {groups} groups");
    assert!(groups > 200_000);
    assert!(gen < 10.0, "generation took {gen:.1}s");
}
