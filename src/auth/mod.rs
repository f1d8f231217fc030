//! OAuth: the on-disk token store and the per-user session that refreshes and rotates tokens.

pub mod session;
pub mod token_store;
