//! `hostctl diff`, `hostctl apply` and `hostctl applies`: the hosts'
//! hostd.toml as the operator's repository declares it (`hostd_config` in
//! hostctl.toml). `diff` asks every host at once what applying the file
//! would change; `apply` shows the same plans, asks, then has hostd apply
//! the file host by host (in batches), each host ending healthy on it or
//! back on its previous configuration by itself; `applies` reads each
//! host's ledger of applies.

mod apply;
#[cfg(test)]
mod apply_tests;
pub mod args;
mod declared;
#[cfg(test)]
mod declared_tests;
mod error;
#[cfg(test)]
mod go_ahead_tests;
mod plan;
mod render;
mod render_apply;
#[cfg(test)]
mod tests;

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use hostd_api::{API_PREFIX, AppliesList};
use hyper::Method;

use crate::confirm::{Confirmation, accepted, ask_on_terminal, confirmation};
use crate::flags::GlobalArgs;
use crate::fleet::Answer;
use crate::output;
use crate::targets::{ReadSettings, Targets};
use crate::transport::Transport;
pub use apply::{HostApply, HostOutcome};
use args::{AppliesArgs, ApplyArgs, DiffArgs};
pub use declared::Declared;
pub use error::HostConfigError;
pub use plan::HostPlan;
use plan::Verdict;

/// `diff`'s exit code when some host would change, as diff(1) says it.
pub const EXIT_DIFFERS: u8 = 1;
/// Bounds each host's plan before an apply: the plan is a read, answered
/// at once.
const PLAN_TIMEOUT: Duration = Duration::from_secs(30);

/// The hosts and the file each is to run: what `diff` needs, and the
/// first step of `apply`.
#[derive(Debug, Clone)]
pub struct PlanSettings {
    pub targets: Targets,
    /// `files[i]` is the file of `targets.hosts[i]`.
    pub files: Vec<Declared>,
    pub json: bool,
    /// Per host, ssh connect included.
    pub timeout: Duration,
}

impl PlanSettings {
    fn resolve(
        global: &GlobalArgs,
        host: Option<&str>,
        cwd: &Path,
        json: bool,
        timeout: Duration,
    ) -> Result<Self, HostConfigError> {
        let (config, targets) = Targets::resolve_with_config(global, host, cwd)?;
        let files = declared::read_all(&config, &targets)?;
        Ok(Self {
            targets,
            files,
            json,
            timeout,
        })
    }
}

/// Validated settings for one `apply`.
#[derive(Debug, Clone)]
pub struct ApplySettings {
    pub plan: PlanSettings,
    pub batch_size: usize,
    pub yes: bool,
    pub dry_run: bool,
    pub lock_wait_seconds: u64,
    pub health_timeout_seconds: Option<u64>,
    /// Following one host's apply, ssh connect included.
    pub timeout: Duration,
    /// `user@machine`, in the hosts' ledgers.
    pub requested_by: String,
    /// The operator can be asked: stdin is a terminal.
    pub stdin_tty: bool,
}

impl ApplySettings {
    pub fn resolve(
        a: &ApplyArgs,
        global: &GlobalArgs,
        cwd: &Path,
    ) -> Result<Self, HostConfigError> {
        let plan = PlanSettings::resolve(global, a.host.as_deref(), cwd, a.json, PLAN_TIMEOUT)?;
        Ok(Self {
            plan,
            batch_size: a.batch_size.max(1) as usize,
            yes: a.yes,
            dry_run: a.dry_run,
            lock_wait_seconds: crate::parse::seconds_rounded_up(a.lock_wait),
            health_timeout_seconds: a.health_timeout.map(crate::parse::seconds_rounded_up),
            timeout: a.timeout,
            requested_by: crate::operator::requested_by(),
            stdin_tty: std::io::stdin().is_terminal(),
        })
    }
}

/// `hostctl diff`: exit 0 when no host would change, 1 when one would.
pub async fn diff(
    a: &DiffArgs,
    global: &GlobalArgs,
    cwd: &Path,
) -> Result<ExitCode, HostConfigError> {
    let r = &a.read;
    let s = PlanSettings::resolve(global, r.host.as_deref(), cwd, r.json, r.timeout)?;
    let transport = Transport::system()?;
    diff_with(&transport, &s, &mut anstream::stdout().lock()).await
}

/// [`diff`] with the transport and output given, for tests.
pub async fn diff_with(
    transport: &Transport,
    s: &PlanSettings,
    out: &mut impl Write,
) -> Result<ExitCode, HostConfigError> {
    let plans = plan::all(transport, s).await?;
    render::plans(out, s.json, &plans).map_err(HostConfigError::Output)?;
    Ok(match plan::verdict(&plans)? {
        Verdict::Same => ExitCode::SUCCESS,
        Verdict::Differs(_) => ExitCode::from(EXIT_DIFFERS),
    })
}

/// `hostctl apply`: exit 0 only when every host runs the file.
pub async fn apply(
    a: &ApplyArgs,
    global: &GlobalArgs,
    cwd: &Path,
) -> Result<ExitCode, HostConfigError> {
    let s = ApplySettings::resolve(a, global, cwd)?;
    let transport = Transport::system()?;
    let out = &mut anstream::stdout().lock();
    apply_with(
        &transport,
        &s,
        out,
        &mut anstream::stderr(),
        ask_on_terminal,
    )
    .await?;
    Ok(ExitCode::SUCCESS)
}

/// [`apply`] with the transport, output and question given, for tests:
/// the plans, shown; then, confirmed, the apply host by host.
pub async fn apply_with(
    transport: &Transport,
    s: &ApplySettings,
    out: &mut impl Write,
    err: &mut impl Write,
    ask: impl FnOnce(&str) -> std::io::Result<String>,
) -> Result<(), HostConfigError> {
    let json = s.plan.json;
    let plans = plan::all(transport, &s.plan).await?;
    // --json prints one document, whichever way the apply ends.
    let report = |out: &mut dyn Write, applies: &[HostApply]| {
        render_apply::report(out, json, &plans, applies).map_err(HostConfigError::Output)
    };
    if !json {
        render::plans(out, false, &plans).map_err(HostConfigError::Output)?;
    }
    let changing = match plan::verdict(&plans) {
        Err(e) => {
            report(out, &[])?;
            return Err(e);
        }
        Ok(Verdict::Same) => {
            render_apply::nothing_to_apply(out, json).map_err(HostConfigError::Output)?;
            return report(out, &[]);
        }
        Ok(Verdict::Differs(hosts)) => hosts,
    };
    if s.dry_run {
        render_apply::dry_run(out, json, &changing).map_err(HostConfigError::Output)?;
        return report(out, &[]);
    }
    match confirmation(s.yes, s.stdin_tty) {
        Confirmation::Given => {}
        Confirmation::Refused => {
            report(out, &[])?;
            return Err(HostConfigError::NeedsYes);
        }
        Confirmation::Ask => {
            if json {
                // What is confirmed must be seen, and stdout is the JSON's.
                render::plans(err, false, &plans).map_err(HostConfigError::Output)?;
            }
            out.flush().map_err(HostConfigError::Output)?;
            let question = render_apply::question(&s.plan.targets.environment, &changing);
            if !accepted(&ask(&question).map_err(HostConfigError::Prompt)?) {
                return Err(HostConfigError::Declined);
            }
        }
    }
    let applies = apply::all(transport, s, &plans, err).await?;
    if !json {
        render_apply::summary(out, &applies).map_err(HostConfigError::Output)?;
    }
    report(out, &applies)?;
    apply::verdict(&applies)
}

/// `hostctl applies`: exit 1 when a host did not answer.
pub async fn applies(
    a: &AppliesArgs,
    global: &GlobalArgs,
    cwd: &Path,
) -> Result<ExitCode, HostConfigError> {
    let s = ReadSettings::resolve(&a.read, global, cwd)?;
    let transport = Transport::system()?;
    applies_with(&transport, &s, &mut anstream::stdout().lock()).await
}

/// [`applies`] with the transport and output given, for tests.
pub async fn applies_with(
    transport: &Transport,
    s: &ReadSettings,
    out: &mut impl Write,
) -> Result<ExitCode, HostConfigError> {
    let path = format!("{API_PREFIX}/config/applies");
    let (hosts, timeout) = (&s.targets.hosts, s.timeout);
    let answers =
        Answer::<AppliesList>::from_all(transport, hosts, Method::GET, &path, timeout).await;
    output::answers(out, s.json, &answers, render_apply::applies)
        .map_err(HostConfigError::Output)?;
    Ok(Answer::exit_code(&answers))
}
