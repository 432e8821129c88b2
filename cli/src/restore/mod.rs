//! `hostctl restore SNAPSHOT`: one host's data back from a backup run.
//! hostd does the work and reports it as a stream of events. hostctl first
//! asks for the plan alone (a dry run), shows it and has the operator
//! confirm it, then asks for the restore with the confirmed snapshot ids,
//! which hostd checks, so that a backup ending in between cannot change
//! what is restored. Once
//! hostd has begun it finishes on its own: hostctl only follows, and losing
//! the connection loses the view, not the restore.

pub mod args;
mod render;
#[cfg(test)]
mod tests;

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use hostd_api::{API_PREFIX, BackupKind, RestoreEvent, RestorePlan, RestoreRequest};
use hyper::body::Bytes;

use crate::config::HostTarget;
use crate::confirm::{Confirmation, accepted, ask_on_terminal, confirmation};
use crate::exit::{CommandError, Failure};
use crate::flags::GlobalArgs;
use crate::followed::{Run, Stopped, Unfollowed};
use crate::targets::{TargetError, Targets};
use crate::transport::{StreamStop, Transport, TransportError};
use args::RestoreArgs;

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("cannot get a restore plan from {host}: {reason}; nothing changed")]
    Plan { host: String, reason: String },
    #[error(
        "not restoring {host} unconfirmed, and stdin is no terminal to ask on: pass --yes; nothing changed"
    )]
    NeedsYes { host: String },
    #[error("restore of {host} not confirmed; nothing changed")]
    Declined { host: String },
    #[error("cannot read the answer")]
    Prompt(#[source] std::io::Error),
    #[error("restore of {host} failed: {error}")]
    Failed { host: String, error: String },
    #[error(transparent)]
    Unfollowed(#[from] Unfollowed),
    #[error("cannot encode the restore request")]
    Request(#[source] serde_json::Error),
    #[error("cannot write the output")]
    Output(#[source] std::io::Error),
}

impl CommandError for RestoreError {
    fn failure(&self) -> Failure<'_> {
        match self {
            Self::Target(_) | Self::NeedsYes { .. } => Failure::Usage,
            Self::Plan { .. }
            | Self::Declined { .. }
            | Self::Prompt(_)
            | Self::Failed { .. }
            | Self::Unfollowed(_)
            | Self::Request(_) => Failure::Failed,
            Self::Transport(e) => Failure::Transport(e),
            Self::Output(e) => Failure::Output(e),
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            Self::Unfollowed(_) => {
                Some("check how it ends with `hostctl status` and `hostctl backups`".into())
            }
            Self::Failed { .. } => {
                Some("the error says what state the host is in; `hostctl status` shows it".into())
            }
            _ => self.failure().hint(),
        }
    }
}

/// Validated settings for one `restore`.
#[derive(Debug, Clone)]
pub struct RestoreSettings {
    pub target: HostTarget,
    /// `latest` or an id prefix, as given.
    pub snapshot: String,
    pub only: Vec<BackupKind>,
    pub dry_run: bool,
    pub yes: bool,
    pub json: bool,
    pub lock_wait_seconds: u64,
    /// Bounds each exchange with hostd, ssh connect included.
    pub timeout: Duration,
    /// `user@machine`, shown to whoever finds the lock held.
    pub requested_by: String,
    /// The operator can be asked: stdin is a terminal.
    pub stdin_tty: bool,
    /// Progress bars on stderr: a person at a terminal, and no --json.
    pub progress: bool,
}

impl RestoreSettings {
    /// The one host (`--host`, or the environment's only one), and from the
    /// environment who asks and which streams are terminals.
    pub fn resolve(
        args: &RestoreArgs,
        global: &GlobalArgs,
        cwd: &Path,
    ) -> Result<Self, TargetError> {
        let target = Targets::resolve(global, args.host.as_deref(), cwd)?.single()?;
        Ok(Self::new(target, args))
    }

    fn new(target: HostTarget, args: &RestoreArgs) -> Self {
        let mut only = Vec::new();
        for kind in args.only.iter().copied().map(BackupKind::from) {
            if !only.contains(&kind) {
                only.push(kind);
            }
        }
        let lock_wait = args.lock_wait;
        Self {
            target,
            snapshot: args.snapshot.clone(),
            only,
            dry_run: args.dry_run,
            yes: args.yes,
            json: args.json,
            lock_wait_seconds: crate::parse::seconds_rounded_up(lock_wait),
            timeout: args.timeout,
            requested_by: crate::operator::requested_by(),
            stdin_tty: std::io::stdin().is_terminal(),
            progress: !args.json && std::io::stderr().is_terminal(),
        }
    }
}

/// `hostctl restore SNAPSHOT`.
pub async fn run(
    args: &RestoreArgs,
    global: &GlobalArgs,
    cwd: &Path,
) -> Result<ExitCode, RestoreError> {
    let settings = RestoreSettings::resolve(args, global, cwd)?;
    let transport = Transport::system()?;
    // stderr stays unlocked: indicatif draws on it from its own thread.
    run_with(
        &transport,
        &settings,
        &mut anstream::stdout().lock(),
        &mut anstream::stderr(),
        ask_on_terminal,
    )
    .await?;
    Ok(ExitCode::SUCCESS)
}

/// [`run`] with the transport, output and question given, for tests.
pub async fn run_with(
    transport: &Transport,
    s: &RestoreSettings,
    out: &mut impl Write,
    err: &mut impl Write,
    ask: impl FnOnce(&str) -> std::io::Result<String>,
) -> Result<(), RestoreError> {
    let host = &s.target.name;
    let plan = plan(transport, s, |event| render::plan_event(out, s, event)).await?;
    if s.dry_run {
        return render::dry_run_done(out, s).map_err(RestoreError::Output);
    }
    if plan.snapshots.is_empty() {
        return Err(RestoreError::Plan {
            host: host.clone(),
            reason: "the plan restores no snapshot".into(),
        });
    }
    match confirmation(s.yes, s.stdin_tty) {
        Confirmation::Given => {}
        Confirmation::Refused => return Err(RestoreError::NeedsYes { host: host.clone() }),
        Confirmation::Ask => {
            out.flush().map_err(RestoreError::Output)?;
            let question =
                format!("Restore {host} from these snapshots? This replaces live data. [y/N]");
            if !accepted(&ask(&question).map_err(RestoreError::Prompt)?) {
                return Err(RestoreError::Declined { host: host.clone() });
            }
        }
    }
    let mut shown = render::Restoring::new(out, err, s, &plan);
    restore(transport, s, &plan, |event| shown.event(event)).await
}

/// The request body, as JSON.
fn request(s: &RestoreSettings, confirmed: Option<&RestorePlan>) -> Result<Bytes, RestoreError> {
    let request = RestoreRequest {
        snapshot: s.snapshot.clone(),
        only: s.only.clone(),
        dry_run: confirmed.is_none(),
        confirmed: confirmed
            .map(|p| p.snapshots.iter().map(|s| s.id.clone()).collect())
            .unwrap_or_default(),
        requested_by: s.requested_by.clone(),
        lock_wait_seconds: s.lock_wait_seconds,
    };
    serde_json::to_vec(&request)
        .map(Bytes::from)
        .map_err(RestoreError::Request)
}

/// The first action, a dry run: hostd's plan, each of its events handed
/// to `show` as it comes.
async fn plan(
    transport: &Transport,
    s: &RestoreSettings,
    mut show: impl FnMut(&RestoreEvent) -> std::io::Result<()>,
) -> Result<RestorePlan, RestoreError> {
    let host = &s.target.name;
    let mut plan = None;
    let body = request(s, None)?;
    let followed = follow(transport, s, body, |event| {
        if let RestoreEvent::Plan { plan: p, .. } = event {
            plan = Some(p.clone());
        }
        show(event)
    })
    .await;
    let finished = followed.map_err(|stop| match stop {
        StreamStop::Refused(e) | StreamStop::Lost(e) => RestoreError::Transport(e),
        StreamStop::Ended => RestoreError::Plan {
            host: host.clone(),
            reason: "hostd's answer ended early".into(),
        },
        StreamStop::TimedOut => RestoreError::Transport(TransportError::Timeout {
            host: host.clone(),
            after: s.timeout,
        }),
        StreamStop::Output(e) => RestoreError::Output(e),
    })?;
    let fail = |reason: String| RestoreError::Plan {
        host: host.clone(),
        reason,
    };
    if !finished.ok {
        return Err(fail(
            finished.error.unwrap_or_else(|| "no reason given".into()),
        ));
    }
    plan.ok_or_else(|| fail("hostd's answer held no plan".into()))
}

/// The second action, the restore itself of the `confirmed` plan,
/// followed to `finished`; each event handed to `show` as it comes.
async fn restore(
    transport: &Transport,
    s: &RestoreSettings,
    confirmed: &RestorePlan,
    show: impl FnMut(&RestoreEvent) -> std::io::Result<()>,
) -> Result<(), RestoreError> {
    let host = &s.target.name;
    tracing::info!(host, snapshot = s.snapshot, "restore");
    let body = request(s, Some(confirmed))?;
    let mut run = Run {
        host: host.clone(),
        what: "restore".into(),
        which: format!("restore of {host}"),
        note: String::new(),
    };
    let finished = match follow(transport, s, body, show).await {
        Ok(f) => f,
        Err(stop) => {
            if matches!(stop, StreamStop::Lost(_) | StreamStop::Ended) {
                run.note = crate::followed::fate(transport, &s.target, "restore").await;
            }
            return Err(run.stopped(stop, s.timeout).into());
        }
    };
    if finished.ok {
        Ok(())
    } else {
        Err(RestoreError::Failed {
            host: host.clone(),
            error: finished.error.unwrap_or_else(|| "no reason given".into()),
        })
    }
}

impl From<Stopped> for RestoreError {
    fn from(stop: Stopped) -> Self {
        match stop {
            Stopped::Refused(e) => Self::Transport(e),
            Stopped::Unfollowed(u) => Self::Unfollowed(u),
            Stopped::Output(e) => Self::Output(e),
        }
    }
}

/// The last event of a stream.
struct Finished {
    ok: bool,
    error: Option<String>,
}

/// Sends `request` and hands each event to `on_event` up to `finished`.
/// The timeout bounds the whole exchange, ssh connect included.
async fn follow(
    transport: &Transport,
    s: &RestoreSettings,
    body: Bytes,
    on_event: impl FnMut(&RestoreEvent) -> std::io::Result<()>,
) -> Result<Finished, StreamStop> {
    let path = format!("{API_PREFIX}/restore");
    let last = |event: &RestoreEvent| match event {
        RestoreEvent::Finished { ok, error, .. } => Some(Finished {
            ok: *ok,
            error: error.clone(),
        }),
        _ => None,
    };
    transport
        .follow(&s.target, &path, Some(body), s.timeout, on_event, last)
        .await
}
