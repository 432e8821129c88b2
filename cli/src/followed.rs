//! A run on one host that hostctl starts and follows to its end (a
//! restore, a task, a job). Once hostd has begun it, hostd carries it on
//! by itself: losing the view is not losing the run. When the view is
//! lost, hostctl asks hostd what became of the run before saying so.

use std::time::Duration;

use crate::transport::{StreamStop, TransportError};

/// How messages name a followed run.
#[derive(Debug, Clone)]
pub struct Run {
    pub host: String,
    /// `restore`, `task migrate`.
    pub what: String,
    /// `restore of web1`, `task migrate on web1`.
    pub which: String,
    /// What becomes of the run, after the message; may be empty.
    pub note: String,
}

/// hostctl stopped following a run hostd had begun.
#[derive(Debug, thiserror::Error)]
pub enum Unfollowed {
    #[error("the connection to {} ended before the {} finished{}", run.host, run.what, run.note)]
    Ended { run: Run },
    #[error("stopped following the {}{}", run.which, run.note)]
    Lost {
        run: Run,
        #[source]
        cause: Box<TransportError>,
    },
    #[error(
        "stopped following the {} after {} (--timeout){}",
        run.which,
        humantime::format_duration(*after),
        run.note
    )]
    TimedOut { run: Run, after: Duration },
}

/// Why a followed run's answer was not read to its last event.
#[derive(Debug)]
pub enum Stopped {
    /// hostd refused the run, or could not be asked: nothing began.
    Refused(TransportError),
    /// hostd began the run and carries it on.
    Unfollowed(Unfollowed),
    /// Showing an event failed.
    Output(std::io::Error),
}

/// What hostd says of a run hostctl lost sight of: still holding the
/// host with it, done with it, or not answering at all (then it may have
/// stopped mid-run; the next hostd puts an interrupted restore or deploy
/// right as its first operation).
pub async fn fate(
    transport: &crate::transport::Transport,
    target: &crate::config::HostTarget,
    operation: &str,
) -> String {
    const ASK: Duration = Duration::from_secs(10);
    let path = format!("{}/lock", hostd_api::API_PREFIX);
    let status = transport
        .call::<hostd_api::LockStatus>(target, hyper::Method::GET, &path, None, ASK)
        .await;
    match status {
        Ok(s) => match s.holder {
            Some(h) if h.operation.starts_with(operation) => {
                format!("; hostd carries it on by itself (`{}` holds the host)", h.operation)
            }
            _ => "; hostd is no longer running it".into(),
        },
        Err(_) => "; hostd does not answer: it may have stopped mid-run (the next hostd puts an interrupted restore or deploy right when it starts; `hostctl lock status` reports it)".into(),
    }
}

impl Run {
    /// What a stream that stopped early means for this run, followed for
    /// at most `timeout`.
    pub fn stopped(self, stop: StreamStop, timeout: Duration) -> Stopped {
        match stop {
            StreamStop::Refused(e) => Stopped::Refused(e),
            StreamStop::Lost(cause) => Stopped::Unfollowed(Unfollowed::Lost {
                run: self,
                cause: Box::new(cause),
            }),
            StreamStop::Ended => Stopped::Unfollowed(Unfollowed::Ended { run: self }),
            StreamStop::TimedOut => Stopped::Unfollowed(Unfollowed::TimedOut {
                run: self,
                after: timeout,
            }),
            StreamStop::Output(e) => Stopped::Output(e),
        }
    }
}
