//! The Singer protocol: messages and their writer, BATCH files, the catalog with selection,
//! and state.

pub mod batch;
pub mod catalog;
pub mod fields;
pub mod message;
pub mod state;
