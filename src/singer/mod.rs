//! The Singer protocol: messages and their writer, the catalog with selection, and state.

pub mod catalog;
pub mod fields;
pub mod message;
pub mod state;
