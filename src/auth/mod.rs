//! OAuth: the on-disk token store, the per-user session that refreshes and rotates tokens, and
//! the `tap-withings auth` command.

pub mod consent;
pub mod roster;
pub mod session;
pub mod token_store;
