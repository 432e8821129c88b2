//! The manager's routes: `POST /v1/services/{name}/{start|stop|restart}`
//! and `PUT /v1/services/{name}/instances`.

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{post, put};
use axum::{Json, Router};
use hostd_api::{ScaleRequest, ServiceAction};

use super::ManagerHandle;
use crate::http::{error_answer, refuse};

pub fn routes(manager: ManagerHandle) -> Router {
    let v = hostd_api::API_PREFIX;
    Router::new()
        .route(
            &format!("{v}/services/{{name}}/{{action}}"),
            post(service_action),
        )
        .route(&format!("{v}/services/{{name}}/instances"), put(scale))
        .with_state(manager)
}

async fn service_action(
    State(manager): State<ManagerHandle>,
    UrlPath((name, action)): UrlPath<(String, String)>,
) -> Response {
    let action = match action.as_str() {
        "start" => ServiceAction::Start,
        "stop" => ServiceAction::Stop,
        "restart" => ServiceAction::Restart,
        other => {
            return error_answer(
                StatusCode::NOT_FOUND,
                format!("unknown action `{other}`; use start, stop or restart"),
            );
        }
    };
    tracing::info!(service = name, action = action.as_str(), "hostctl request");
    match manager.action(name, action).await {
        Ok(result) => Json(result).into_response(),
        Err(e) => refuse("service request", &e),
    }
}

async fn scale(
    State(manager): State<ManagerHandle>,
    UrlPath(name): UrlPath<String>,
    Json(req): Json<ScaleRequest>,
) -> Response {
    tracing::info!(service = name, instances = req.instances, "hostctl scale");
    match manager.scale(name, req.instances).await {
        Ok(result) => Json(result).into_response(),
        Err(e) => refuse("scale", &e),
    }
}
