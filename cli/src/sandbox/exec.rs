//! `sandbox exec`: a root command inside a running sandbox, the stand-in
//! for `sudo` on a real host (the operator account has no sudo there).

use std::process::ExitCode;

use super::state::{Layout, validate_name};
use super::{SandboxError, down};

/// What a shell inside the sandbox would have; the caller's environment
/// (CI variables, the workstation's PATH) stays outside.
const SANDBOX_ENV: &[&str] = &[
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG=C.UTF-8",
    "HOME=/root",
    "SYSTEMD_PAGER=",
];

pub(crate) async fn exec(
    layout: &Layout,
    name: &str,
    command: &[String],
) -> Result<ExitCode, SandboxError> {
    validate_name(name)?;
    let Some(state) = layout.load(name)? else {
        return Err(down::unknown(layout, name)?);
    };
    let leader = state
        .nspawn
        .and_then(|p| p.container_init())
        .ok_or_else(|| SandboxError::NotRunning {
            name: name.to_owned(),
        })?;
    let status = tokio::process::Command::new("nsenter")
        .args(["--all", "--target", &leader.pid.to_string(), "--"])
        .args(["/usr/bin/env", "-i"])
        .args(SANDBOX_ENV)
        .args(command)
        .status()
        .await
        .map_err(|e| SandboxError::io("run nsenter", "nsenter", e))?;
    // The command's own status, so scripts and tests can rely on it; a
    // signal death maps to 128+N like a shell does.
    let code = status
        .code()
        .or_else(|| std::os::unix::process::ExitStatusExt::signal(&status).map(|s| 128 + s))
        .unwrap_or(1);
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}
