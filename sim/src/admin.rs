//! Admin interface under `/_sim/` (same listener, outside the API paths, never faulted or
//! counted).

use crate::config::Faults;
use crate::data::mutate::Mutation;
use crate::state::Shared;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

type St = State<Arc<Shared>>;

pub fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/_sim/stats", get(stats))
        .route("/_sim/requests", get(requests))
        .route("/_sim/reset-stats", post(reset_stats))
        .route("/_sim/users", get(users))
        .route("/_sim/truth", get(truth))
        .route("/_sim/mutate", post(mutate))
        .route("/_sim/faults", get(get_faults).post(set_faults))
}

fn bad_request(msg: String) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "error": msg }))).into_response()
}

async fn stats(State(s): St) -> Json<Value> {
    Json(s.stats())
}

async fn requests(State(s): St) -> Json<Value> {
    Json(serde_json::to_value(s.requests()).unwrap_or(Value::Null))
}

async fn reset_stats(State(s): St) -> Json<Value> {
    s.reset_stats();
    Json(json!({ "ok": true }))
}

async fn users(State(s): St) -> Json<Value> {
    Json(s.users_json())
}

#[derive(Deserialize)]
struct TruthQuery {
    module: String,
    userid: u64,
}

async fn truth(State(s): St, q: Result<Query<TruthQuery>, QueryRejection>) -> Response {
    let Ok(Query(q)) = q else {
        return bad_request("expected ?module=..&userid=..".into());
    };
    match s.truth(&q.module, q.userid) {
        Value::Null => (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": format!("unknown module {} or userid {}", q.module, q.userid) })),
        )
            .into_response(),
        v => Json(v).into_response(),
    }
}

async fn mutate(State(s): St, body: Bytes) -> Response {
    let m: Mutation = match serde_json::from_slice(&body) {
        Ok(m) => m,
        Err(e) => return bad_request(format!("invalid mutation: {e}")),
    };
    match s.mutate(&m) {
        Ok(v) => Json(v).into_response(),
        Err(e) => bad_request(e),
    }
}

async fn get_faults(State(s): St) -> Json<Value> {
    Json(serde_json::to_value(s.faults()).unwrap_or(Value::Null))
}

async fn set_faults(State(s): St, body: Bytes) -> Response {
    let f: Faults = match serde_json::from_slice(&body) {
        Ok(f) => f,
        Err(e) => return bad_request(format!("invalid faults: {e}")),
    };
    s.set_faults(f.clone());
    Json(json!({ "ok": true, "faults": f })).into_response()
}
