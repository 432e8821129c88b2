//! `GET /v1/cloudwatch`: how shipping is doing (what `hostctl status`
//! also shows).

use std::time::SystemTime;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use hostd_api::ShippingStatus;

use super::CloudWatchHandle;

pub fn routes(handle: CloudWatchHandle) -> Router {
    Router::new()
        .route(
            &format!("{}/cloudwatch", hostd_api::API_PREFIX),
            get(status),
        )
        .with_state(handle)
}

/// `null` without `[cloudwatch]`.
async fn status(State(handle): State<CloudWatchHandle>) -> Json<Option<ShippingStatus>> {
    Json(handle.state.borrow().status(SystemTime::now()))
}
