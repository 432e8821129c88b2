//! `GET /v1/secrets` (names, versions and dates: never a value) and
//! `POST /v1/secrets/sync`.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use super::SecretsHandle;
use crate::http::refuse;

pub fn routes(secrets: SecretsHandle) -> Router {
    let v = hostd_api::API_PREFIX;
    Router::new()
        .route(&format!("{v}/secrets"), get(list))
        .route(&format!("{v}/secrets/sync"), post(sync))
        .with_state(secrets)
}

async fn list(State(secrets): State<SecretsHandle>) -> Response {
    match secrets.list() {
        Ok(list) => Json(list).into_response(),
        Err(e) => refuse("secrets list", &e),
    }
}

/// A refresh now. 200 even when the fetch failed: the body says why, and
/// the host keeps serving on the last good set.
async fn sync(State(secrets): State<SecretsHandle>) -> Response {
    tracing::info!("hostctl secrets sync");
    match secrets.sync().await {
        Ok(result) => Json(result).into_response(),
        Err(e) => refuse("secrets sync", &e),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::http::StatusCode;
    use hostd_api::ErrorBody;

    use super::*;
    use crate::http::tests::get;

    #[tokio::test]
    async fn without_secrets_the_list_is_a_clear_404() -> Result<(), Box<dyn std::error::Error>> {
        let config = Arc::new(crate::config::Config::parse(
            std::path::Path::new("t.toml"),
            "",
        )?);
        let state = tokio::sync::watch::channel(crate::secrets::SecretsState::default()).1;
        let (code, body) = get(
            routes(SecretsHandle::detached(config, state)),
            "/v1/secrets",
        )
        .await?;
        assert_eq!(code, StatusCode::NOT_FOUND);
        let error: ErrorBody = serde_json::from_str(&body)?;
        assert!(error.error.contains("[secrets]"), "{}", error.error);
        Ok(())
    }
}
