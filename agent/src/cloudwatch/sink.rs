//! Where shipped lines go: a narrow trait, so the shipper's ordering,
//! batching and recovery are tested with a fake and only this file knows
//! the AWS SDK.

use std::future::Future;
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_cloudwatchlogs::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_cloudwatchlogs::types::InputLogEvent;

use crate::config::CloudWatchConfig;

/// One log event as CloudWatch takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub timestamp_ms: i64,
    pub message: String,
}

/// Why a call failed. Messages name the group and stream and the kind of
/// failure; lines are never part of one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SinkError {
    #[error(
        "no AWS region for CloudWatch Logs: set cloudwatch.region or AWS_REGION, or run on EC2"
    )]
    NoRegion,
    #[error("CloudWatch Logs throttled the calls ({code})")]
    Throttled { code: String },
    #[error("cannot reach CloudWatch Logs: {detail}")]
    Unreachable { detail: String },
    #[error("CloudWatch Logs refused {action} for {target}: {code}")]
    Refused {
        action: &'static str,
        target: String,
        code: String,
    },
}

pub trait LogSink: Send + Sync {
    /// Puts `events` (in time order, one call's worth) on `stream` of
    /// `group`, creating both when missing. Returns how many CloudWatch
    /// refused for good (too old or too new).
    fn put(
        &self,
        group: &str,
        stream: &str,
        events: Vec<Event>,
    ) -> impl Future<Output = Result<u64, SinkError>> + Send;

    /// The newest event of a stream, to tell whether a call cut short by
    /// a restart got through.
    fn last_event(
        &self,
        group: &str,
        stream: &str,
    ) -> impl Future<Output = Result<Option<Event>, SinkError>> + Send;
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

pub struct CloudWatchLogs {
    client: aws_sdk_cloudwatchlogs::Client,
    /// Streams made (or found) since hostd started: the others are
    /// created before their first call, so a call never has to be sent
    /// twice and its events are moved into it, not copied.
    made: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl CloudWatchLogs {
    pub async fn from_config(config: &CloudWatchConfig) -> Result<Self, SinkError> {
        Self::with_loader(config, aws_config::defaults(BehaviorVersion::latest())).await
    }

    pub async fn with_loader(
        config: &CloudWatchConfig,
        loader: aws_config::ConfigLoader,
    ) -> Result<Self, SinkError> {
        // The SDK retries throttling and transient errors a few times with
        // backoff and jitter; past that the shipper backs off further with
        // the lines safe in the spool.
        let retry = RetryConfig::standard()
            .with_max_attempts(3)
            .with_initial_backoff(Duration::from_millis(500))
            .with_max_backoff(Duration::from_secs(10));
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .operation_attempt_timeout(ATTEMPT_TIMEOUT)
            .operation_timeout(CALL_TIMEOUT)
            .build();
        let target = crate::aws::Target {
            region: config.region.as_ref().map(|r| r.as_str()),
            endpoint_url: config.endpoint_url.as_ref().map(|u| u.as_str()),
        };
        let sdk = crate::aws::load(loader, target, retry, timeouts).await;
        if sdk.region().is_none() {
            return Err(SinkError::NoRegion);
        }
        Ok(Self {
            client: aws_sdk_cloudwatchlogs::Client::new(&sdk),
            made: std::sync::Mutex::default(),
        })
    }

    async fn create(&self, group: &str, stream: &str) -> Result<(), SinkError> {
        let exists = |code: Option<&str>| code == Some("ResourceAlreadyExistsException");
        let made = self
            .client
            .create_log_group()
            .log_group_name(group)
            .send()
            .await;
        if let Err(e) = made
            && !exists(e.code())
        {
            return Err(classify("CreateLogGroup", group, e));
        }
        let made = self
            .client
            .create_log_stream()
            .log_group_name(group)
            .log_stream_name(stream)
            .send()
            .await;
        if let Err(e) = made
            && !exists(e.code())
        {
            return Err(classify("CreateLogStream", stream, e));
        }
        Ok(())
    }

    async fn put_once(
        &self,
        group: &str,
        stream: &str,
        events: Vec<InputLogEvent>,
    ) -> Result<u64, SdkError<aws_sdk_cloudwatchlogs::operation::put_log_events::PutLogEventsError>>
    {
        let len = events.len() as u64;
        let out = self
            .client
            .put_log_events()
            .log_group_name(group)
            .log_stream_name(stream)
            .set_log_events(Some(events))
            .send()
            .await?;
        Ok(out.rejected_log_events_info().map_or(0, |r| {
            let index = |i: Option<i32>| i.and_then(|i| u64::try_from(i).ok());
            let old = index(r.too_old_log_event_end_index())
                .max(index(r.expired_log_event_end_index()))
                .map_or(0, |i| i + 1);
            let new = index(r.too_new_log_event_start_index()).map_or(0, |i| len.saturating_sub(i));
            (old + new).min(len)
        }))
    }
}

impl LogSink for CloudWatchLogs {
    async fn put(&self, group: &str, stream: &str, events: Vec<Event>) -> Result<u64, SinkError> {
        let input = events
            .into_iter()
            .filter_map(|e| {
                InputLogEvent::builder()
                    .timestamp(e.timestamp_ms)
                    .message(e.message)
                    .build()
                    .ok()
            })
            .collect::<Vec<_>>();
        let key = format!("{group}\n{stream}");
        let made = self.made.lock().is_ok_and(|m| m.contains(&key));
        if !made {
            self.create(group, stream).await?;
            if let Ok(mut m) = self.made.lock() {
                m.insert(key.clone());
            }
        }
        self.put_once(group, stream, input).await.map_err(|e| {
            // Deleted behind our back: made again before the next call.
            if e.code() == Some("ResourceNotFoundException")
                && let Ok(mut m) = self.made.lock()
            {
                m.remove(&key);
            }
            classify("PutLogEvents", stream, e)
        })
    }

    async fn last_event(&self, group: &str, stream: &str) -> Result<Option<Event>, SinkError> {
        let out = self
            .client
            .get_log_events()
            .log_group_name(group)
            .log_stream_name(stream)
            .start_from_head(false)
            .limit(1)
            .send()
            .await;
        match out {
            Ok(o) => Ok(o.events().last().map(|e| Event {
                timestamp_ms: e.timestamp().unwrap_or_default(),
                message: e.message().unwrap_or_default().to_owned(),
            })),
            Err(e) if e.code() == Some("ResourceNotFoundException") => Ok(None),
            Err(e) => Err(classify("GetLogEvents", stream, e)),
        }
    }
}

fn classify<E, R>(action: &'static str, target: &str, e: SdkError<E, R>) -> SinkError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match &e {
        SdkError::ServiceError(s) => {
            let code = s.err().code().unwrap_or("an unnamed error").to_owned();
            if matches!(
                code.as_str(),
                "ThrottlingException" | "ServiceUnavailableException" | "LimitExceededException"
            ) {
                SinkError::Throttled { code }
            } else {
                SinkError::Refused {
                    action,
                    target: target.to_owned(),
                    code,
                }
            }
        }
        _ => SinkError::Unreachable {
            detail: hostd_api::error_chain(&e),
        },
    }
}
