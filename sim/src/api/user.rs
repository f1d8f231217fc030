//! `POST /v2/user`: getdevice and getgoals (no parameters).

use super::Body;
use crate::data::model::UserData;
use crate::data::render;
use serde_json::{json, Value};

pub fn getdevice(user: &UserData) -> Body {
    let devices: Vec<Value> = user
        .devices
        .iter()
        .map(|d| render::device(d, user))
        .collect();
    Body::Value(json!({ "devices": devices }))
}

/// `goals` is `[]` when the user has none.
pub fn getgoals(user: &UserData) -> Body {
    Body::Value(json!({ "goals": render::goals(user) }))
}
