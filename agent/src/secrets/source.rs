//! Where secrets come from: a narrow trait, so the fallback logic is tested
//! with a fake and only `ssm.rs` knows the AWS SDK.

use std::future::Future;

use super::set::SecretSet;

/// Why a fetch failed. Messages name the prefix or parameter and the kind of
/// failure, never a value (nothing here is built from one).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    #[error(
        "no AWS region for SSM (prefix {prefix}): set secrets.region or AWS_REGION, or run on EC2 where instance metadata gives it"
    )]
    NoRegion { prefix: String },
    #[error("SSM did not answer for {prefix} within {secs} s")]
    Timeout { prefix: String, secs: u64 },
    /// Network, TLS, credentials: the request never got an answer.
    #[error("cannot reach SSM for {prefix}: {detail}")]
    Unreachable { prefix: String, detail: String },
    /// SSM answered with an error: its code (AccessDeniedException,
    /// ThrottlingException after the retries...).
    #[error("SSM refused GetParametersByPath for {prefix}: {code}")]
    Refused { prefix: String, code: String },
    #[error("SSM sent a response for {prefix} that could not be read ({what})")]
    BadResponse { prefix: String, what: &'static str },
    #[error("parameter {name} is rejected: {reason}")]
    BadName { name: String, reason: &'static str },
    #[error("required parameter(s) missing under {prefix}: {}", names.join(", "))]
    MissingRequired { prefix: String, names: Vec<String> },
}

/// Something that returns every secret under one prefix.
pub trait SecretSource {
    /// The whole set, all pages, or an error; never a partial set.
    fn fetch(&self) -> impl Future<Output = Result<SecretSet, FetchError>> + Send;
}

/// A source that could not even be built (no region) answers every fetch
/// with why, so a refresh falls back as after a failed fetch.
impl<S: SecretSource + Sync> SecretSource for Result<S, FetchError> {
    async fn fetch(&self) -> Result<SecretSet, FetchError> {
        match self {
            Ok(source) => source.fetch().await,
            Err(e) => Err(e.clone()),
        }
    }
}

#[cfg(test)]
pub(crate) mod fake {
    use std::collections::VecDeque;
    use std::sync::Mutex;

    use super::*;

    /// Answers from a script, one entry per fetch; the last one repeats.
    pub(crate) struct FakeSource {
        answers: Mutex<VecDeque<Result<SecretSet, FetchError>>>,
        pub(crate) calls: Mutex<usize>,
    }

    impl FakeSource {
        pub(crate) fn new(answers: Vec<Result<SecretSet, FetchError>>) -> Self {
            Self {
                answers: Mutex::new(answers.into()),
                calls: Mutex::new(0),
            }
        }
    }

    impl SecretSource for FakeSource {
        async fn fetch(&self) -> Result<SecretSet, FetchError> {
            if let Ok(mut c) = self.calls.lock() {
                *c += 1;
            }
            let Ok(mut answers) = self.answers.lock() else {
                return Err(unreachable_error());
            };
            match answers.len() {
                0 => Err(unreachable_error()),
                1 => answers
                    .front()
                    .cloned()
                    .unwrap_or_else(|| Err(unreachable_error())),
                _ => answers
                    .pop_front()
                    .unwrap_or_else(|| Err(unreachable_error())),
            }
        }
    }

    pub(crate) fn unreachable_error() -> FetchError {
        FetchError::Unreachable {
            prefix: "/test/".into(),
            detail: "connection refused".into(),
        }
    }
}
