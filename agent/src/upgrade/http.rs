//! `POST /v1/hostd/upgrade`.

use axum::extract::{ConnectInfo, State, rejection::JsonRejection};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use hostd_api::UpgradeRequest;

use super::{UpgradeError, Upgrader};
use crate::http::{Peer, error_answer, refuse};

pub fn routes(upgrader: Upgrader) -> Router {
    Router::new()
        .route(
            &format!("{}/hostd/upgrade", hostd_api::API_PREFIX),
            post(upgrade),
        )
        .with_state(upgrader)
}

/// Root only: a member of the control socket's group may deploy app code,
/// but not replace the program that runs as root.
async fn upgrade(
    State(upgrader): State<Upgrader>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    req: Result<Json<UpgradeRequest>, JsonRejection>,
) -> Response {
    let Json(req) = match req {
        Ok(r) => r,
        Err(e) => return error_answer(e.status(), e.body_text()),
    };
    tracing::info!(
        build = req.build,
        by = req.requested_by,
        caller = peer.who(),
        "hostctl upgrade-hostd"
    );
    if !peer.is_root() {
        let caller = peer.who().unwrap_or_else(|| "an unknown caller".into());
        return refuse("hostd upgrade", &UpgradeError::NotRoot { caller });
    }
    match upgrader.upgrade(req).await {
        Ok(answer) => Json(answer).into_response(),
        Err(e) => refuse("hostd upgrade", &e),
    }
}
