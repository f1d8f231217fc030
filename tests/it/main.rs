//! One integration-test binary: the real `tap-withings` binary against withings-sim.

mod support;

mod cli;
mod discover;
mod measures;
mod streams;
