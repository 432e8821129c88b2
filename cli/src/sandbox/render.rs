//! What the sandbox commands print on stdout: the hostctl.toml of a
//! sandbox that is up (or all about it as JSON), and the list.

use super::SandboxError;
use super::down::ListEntry;
use super::up::UpOutput;

pub(super) fn up(out: &UpOutput, json: bool) -> Result<(), SandboxError> {
    if json {
        let text = serde_json::to_string_pretty(out).map_err(|e| SandboxError::Invalid {
            what: "cannot encode output",
            detail: e.to_string(),
        })?;
        println!("{text}");
    } else {
        println!("{}", out.hostctl_toml.display());
    }
    Ok(())
}

pub(super) fn list(entries: &[ListEntry], json: bool) -> Result<(), SandboxError> {
    if json {
        let text = serde_json::to_string_pretty(entries).map_err(|e| SandboxError::Invalid {
            what: "cannot encode output",
            detail: e.to_string(),
        })?;
        println!("{text}");
        return Ok(());
    }
    println!(
        "{:<13} {:<12} {:>8} {:<8} HOSTCTL.TOML",
        "NAME", "ADDRESS", "PID", "STATE"
    );
    for e in entries {
        let pid = e.pid.map_or_else(|| "-".to_owned(), |p| p.to_string());
        let state = match (e.pid, e.alive) {
            (None, _) => "starting",
            (Some(_), true) => "running",
            (Some(_), false) => "dead",
        };
        println!(
            "{:<13} {:<12} {:>8} {:<8} {}",
            e.name,
            e.address,
            pid,
            state,
            e.hostctl_toml.display()
        );
    }
    Ok(())
}
