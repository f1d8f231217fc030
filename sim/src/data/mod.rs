//! Synthetic data: typed model, deterministic generation, rendering, truth and mutations.

pub mod gen_activity;
pub mod gen_heart;
pub mod gen_meas;
pub mod gen_sleep;
pub mod generate;
pub mod model;
pub mod mutate;
pub mod profile;
pub mod render;
pub mod truth;
