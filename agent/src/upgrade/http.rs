//! `POST /v1/hostd/upgrade`.

use axum::extract::{State, rejection::JsonRejection};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use hostd_api::UpgradeRequest;

use super::Upgrader;
use crate::http::{error_answer, refuse};

pub fn routes(upgrader: Upgrader) -> Router {
    Router::new()
        .route(
            &format!("{}/hostd/upgrade", hostd_api::API_PREFIX),
            post(upgrade),
        )
        .with_state(upgrader)
}

async fn upgrade(
    State(upgrader): State<Upgrader>,
    req: Result<Json<UpgradeRequest>, JsonRejection>,
) -> Response {
    let Json(req) = match req {
        Ok(r) => r,
        Err(e) => return error_answer(e.status(), e.body_text()),
    };
    tracing::info!(
        build = req.build,
        by = req.requested_by,
        "hostctl upgrade-hostd"
    );
    match upgrader.upgrade(req).await {
        Ok(answer) => Json(answer).into_response(),
        Err(e) => refuse("hostd upgrade", &e),
    }
}
