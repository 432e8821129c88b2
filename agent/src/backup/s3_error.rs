//! How S3 failures are told: by kind, naming the object, never quoting a
//! response body; and how rustic_core carries them.

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use rustic_core::{ErrorKind, RusticError, Status};

use super::s3_client::OPERATION_TIMEOUT;

/// What went wrong, naming the object (`s3://bucket/key`) and the kind of
/// failure. Response bodies are never quoted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum S3Error {
    #[error("{object} does not exist")]
    NotFound { object: String },
    #[error("S3 did not complete {op} of {object} within {secs} s")]
    Timeout {
        op: &'static str,
        object: String,
        secs: u64,
    },
    /// Network, TLS, credentials: the request never got an answer.
    #[error("cannot reach S3 for {op} of {object}: {detail}")]
    Unreachable {
        op: &'static str,
        object: String,
        detail: String,
    },
    /// S3 answered with an error code (AccessDenied, NoSuchBucket, SlowDown
    /// after the retries...).
    #[error("S3 refused {op} of {object}: {code}")]
    Refused {
        op: &'static str,
        object: String,
        code: String,
    },
    #[error("S3 sent an unusable answer to {op} of {object}: {what}")]
    BadResponse {
        op: &'static str,
        object: String,
        what: String,
    },
}

impl S3Error {
    /// How rustic_core sees it. The S3Error stays the source, so callers can
    /// find it again with `downcast_ref`.
    pub(super) fn into_rustic(self) -> Box<RusticError> {
        let status = match &self {
            Self::NotFound { .. } | Self::Refused { .. } => Status::Permanent,
            Self::Timeout { .. } | Self::Unreachable { .. } | Self::BadResponse { .. } => {
                Status::Temporary
            }
        };
        RusticError::with_source(ErrorKind::Backend, self.to_string(), self).attach_status(status)
    }
}

/// The kind of failure and what may be said about it. A 404 is `NotFound`
/// unless it is about the bucket, which is a configuration problem.
pub(super) fn classify<E>(op: &'static str, object: &str, e: SdkError<E, HttpResponse>) -> S3Error
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let object = object.to_owned();
    match &e {
        SdkError::TimeoutError(_) => S3Error::Timeout {
            op,
            object,
            secs: OPERATION_TIMEOUT.as_secs(),
        },
        // Connection refused, DNS, TLS, or no credentials (resolved just
        // before sending): the error chain says which.
        SdkError::DispatchFailure(_) | SdkError::ConstructionFailure(_) => S3Error::Unreachable {
            op,
            object,
            detail: hostd_api::error_chain(&e),
        },
        SdkError::ServiceError(s) => {
            let status = s.raw().status().as_u16();
            match s.err().code() {
                Some("NoSuchBucket") => S3Error::Refused {
                    op,
                    object,
                    code: "NoSuchBucket".to_owned(),
                },
                _ if status == 404 => S3Error::NotFound { object },
                code => S3Error::Refused {
                    op,
                    object,
                    code: code.map_or_else(|| format!("HTTP {status}"), str::to_owned),
                },
            }
        }
        SdkError::ResponseError(_) => S3Error::BadResponse {
            op,
            object,
            what: "malformed response".to_owned(),
        },
        _ => S3Error::Unreachable {
            op,
            object,
            detail: "unknown SDK error".to_owned(),
        },
    }
}

#[cfg(test)]
#[path = "s3_error_tests.rs"]
mod tests;
