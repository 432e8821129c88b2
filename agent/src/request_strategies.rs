//! Request bodies for the property tests of the control API's routes: any
//! bytes, any JSON, and objects with a request's own field names holding
//! any value (extremes of every integer included), so both the decoding
//! and the checks behind it meet hostile input.

use proptest::prelude::*;
use serde_json::Value;

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        Just(Value::from(u64::MAX)),
        Just(Value::from(0)),
        any::<f64>().prop_map(Value::from),
        ".{0,24}".prop_map(Value::from),
        "(/|\\.\\./|[a-z0-9@._-]){0,20}".prop_map(Value::from),
    ]
}

fn json() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map(".{0,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A body for a route whose request has `fields`.
pub fn body(fields: &'static [&'static str]) -> impl Strategy<Value = Vec<u8>> {
    let object = proptest::collection::vec((proptest::sample::select(fields), json()), 0..12)
        .prop_map(|pairs| {
            let map: serde_json::Map<String, Value> = pairs
                .into_iter()
                .map(|(k, v)| ((*k).to_owned(), v))
                .collect();
            serde_json::to_vec(&Value::Object(map)).unwrap_or_default()
        });
    prop_oneof![
        1 => proptest::collection::vec(any::<u8>(), 0..64),
        1 => json().prop_map(|v| serde_json::to_vec(&v).unwrap_or_default()),
        2 => object,
    ]
}

/// Sends `body` to `uri` and answers the status: a panic in a handler
/// fails the test, any answer passes.
pub async fn send(
    router: axum::Router,
    method: &str,
    uri: &str,
    body: Vec<u8>,
) -> Result<u16, Box<dyn std::error::Error>> {
    use tower::ServiceExt;
    let req = axum::http::Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .extension(axum::extract::ConnectInfo(crate::http::Peer::default()))
        .body(axum::body::Body::from(body))?;
    let resp = router.oneshot(req).await?;
    Ok(resp.status().as_u16())
}
