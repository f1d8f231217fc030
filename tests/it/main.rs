//! One integration-test binary: the real `tap-withings` binary against withings-sim.

mod support;

mod auth;
mod bad_input;
mod batch;
mod captures;
mod cli;
mod clock;
mod discover;
mod faults;
mod first_hour;
mod hardening;
mod index;
mod kills;
mod maps;
mod measures;
mod properties;
mod samples;
mod sdk;
mod secrets;
mod signals;
mod streams;
mod users;
