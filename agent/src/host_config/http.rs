//! The configuration routes of the control API.

use axum::extract::{ConnectInfo, DefaultBodyLimit, State, rejection::JsonRejection};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hostd_api::{AppliesList, ApplyRequest, ConfigText};

use super::apply::Requester;
use super::{ConfigHandle, HostConfigError, Loaded, MAX_HEALTH_TIMEOUT};
use crate::http::{Peer, error_answer, ndjson, refuse};

pub fn routes(handle: ConfigHandle) -> Router {
    let v = hostd_api::API_PREFIX;
    // JSON escaping can double a text's size; the text itself is checked
    // against MAX_CONFIG_BYTES.
    let body_limit = DefaultBodyLimit::max(2 * hostd_api::host_config::MAX_CONFIG_BYTES + 4096);
    Router::new()
        .route(&format!("{v}/config"), get(current))
        .route(&format!("{v}/config/plan"), post(plan).layer(body_limit))
        .route(&format!("{v}/config/apply"), post(apply).layer(body_limit))
        .route(&format!("{v}/config/applies"), get(applies))
        .with_state(handle)
}

fn error(e: &HostConfigError) -> Response {
    refuse("configuration", e)
}

async fn current(State(h): State<ConfigHandle>) -> Response {
    Json(h.current()).into_response()
}

async fn applies(State(h): State<ConfigHandle>) -> Response {
    Json(AppliesList {
        applies: h.ledger(),
    })
    .into_response()
}

async fn plan(
    State(h): State<ConfigHandle>,
    req: Result<Json<ConfigText>, JsonRejection>,
) -> Response {
    let Json(req) = match req {
        Ok(r) => r,
        Err(e) => return error_answer(e.status(), e.body_text()),
    };
    match Loaded::parse(&req.text, &req.source) {
        Ok(new) => Json(h.plan(&new)).into_response(),
        Err(e) => error(&e),
    }
}

/// Root only: a configuration says what runs as whom on the host.
async fn apply(
    State(h): State<ConfigHandle>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    req: Result<Json<ApplyRequest>, JsonRejection>,
) -> Response {
    let Json(req) = match req {
        Ok(r) => r,
        Err(e) => return error_answer(e.status(), e.body_text()),
    };
    tracing::info!(
        source = req.source,
        by = req.requested_by,
        caller = peer.who(),
        "hostctl apply"
    );
    if !peer.is_root() {
        let caller = peer.who().unwrap_or_else(|| "an unknown caller".into());
        return error(&HostConfigError::NotRoot { caller });
    }
    let new = match Loaded::parse(&req.text, &req.source) {
        Ok(l) => l,
        Err(e) => return error(&e),
    };
    let health_timeout = req
        .health_timeout_seconds
        .map_or(
            super::DEFAULT_HEALTH_TIMEOUT,
            std::time::Duration::from_secs,
        )
        .min(MAX_HEALTH_TIMEOUT);
    let who = Requester {
        requested_by: req.requested_by,
        caller: peer.who(),
        lock_wait: std::time::Duration::from_secs(req.lock_wait_seconds).min(MAX_HEALTH_TIMEOUT),
        health_timeout,
    };
    let (events, rx) = tokio::sync::mpsc::unbounded_channel();
    match h.submit(new, who, events, true).await {
        Ok(()) => ndjson(rx),
        Err(e) => error(&e),
    }
}
