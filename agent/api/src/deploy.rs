//! Deploys on the wire. An artifact is uploaded once, by content
//! (`PUT /v1/artifacts/{sha256}`, zstd-compressed tar); `POST /v1/deploy`
//! and `POST /v1/rollback` then answer with a stream of [`DeployEvent`]s,
//! one JSON document per line, ending with `finished`. hostd owns the
//! deploy once it has started: a client that goes away does not leave the
//! host half-switched.

use serde::{Deserialize, Serialize};

/// Whether `d` is a sha256 in lowercase hex: it names a file on the host.
pub fn is_digest(d: &str) -> bool {
    d.len() == 64
        && d.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// `bytes` in lowercase hex, the form [`is_digest`] accepts.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        use std::fmt::Write as _;
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// `GET`/`PUT /v1/artifacts/{sha256}`: an artifact the host holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactInfo {
    pub digest: String,
    /// Size as stored (compressed).
    pub bytes: u64,
}

/// Commands run on the host around the switch, with the service's user,
/// environment and secrets, in the new release's directory.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeployHooks {
    /// Before the switch (migrations); a failure stops the deploy with the
    /// old release still serving.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_switch: Option<String>,
    /// After every instance is healthy on the new release; a failure is
    /// reported, the release stays.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_deploy: Option<String>,
}

/// How a new or returning release proves itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthGate {
    pub path: String,
    pub timeout_seconds: u64,
}

/// `POST /v1/deploy`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeployRequest {
    /// The systemd unit the release runs as (`api@.service`); hostd maps it
    /// to the service it manages.
    pub unit: String,
    pub version: String,
    /// sha256 of the uploaded artifact.
    pub artifact: String,
    pub health: HealthGate,
    #[serde(default)]
    pub hooks: DeployHooks,
    pub hook_timeout_seconds: u64,
    /// Tasks run before the switch, after the `pre_switch` hook, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pre_switch_tasks: Vec<crate::TaskSpec>,
    /// Releases kept on the host (the current one and the rollback target
    /// are always kept).
    pub keep: u32,
    /// `user@machine` of the operator.
    #[serde(default)]
    pub requested_by: String,
    #[serde(default)]
    pub lock_wait_seconds: u64,
}

/// `POST /v1/rollback`: back to `version`, else the release before the
/// current one in the ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollbackRequest {
    pub unit: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    pub health: HealthGate,
    #[serde(default)]
    pub requested_by: String,
    #[serde(default)]
    pub lock_wait_seconds: u64,
}

/// How a deploy or rollback ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeployOutcome {
    /// The requested release serves on every instance.
    Ok,
    /// It failed after the switch; the previous release serves again.
    RolledBack,
    /// It failed before the switch (nothing changed), or the return to the
    /// previous release failed too (see the error).
    Failed,
}

impl DeployOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::RolledBack => "rolled_back",
            Self::Failed => "failed",
        }
    }
}

/// One line of the deploy stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum DeployEvent {
    /// The operations lock is held; waiting for it.
    Waiting {
        holder: String,
    },
    /// A step began (`unpack`, `pre_switch`, `switch`, `restart api@1`...).
    Step {
        step: String,
    },
    /// A line a hook printed.
    Output {
        step: String,
        line: String,
    },
    StepDone {
        step: String,
        seconds: f64,
    },
    /// The last line.
    Finished {
        outcome: DeployOutcome,
        /// The version asked for.
        version: String,
        /// The version `current` names now.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        serving: Option<String>,
        seconds: f64,
        /// Why it failed; for a failed health gate, with the failing
        /// instance's last journal lines.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
}

/// One deploy or rollback in the host's release ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    pub version: String,
    /// sha256 of the artifact, hex.
    pub digest: String,
    /// `user@machine` of the operator.
    pub by: String,
    /// The SSH client address the request came from, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Who called, as the kernel says of the control socket's peer
    /// (`admin (uid 1000)`); `by` is only what hostctl claims.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller: Option<String>,
    /// `deploy`, `rollback` or `recovery` (hostd undoing an interrupted
    /// deploy at start).
    pub action: String,
    /// RFC 3339.
    pub started: String,
    pub finished: String,
    /// `ok`, `rolled_back` or `failed`.
    pub result: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `GET /v1/releases?unit=...`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleasesList {
    /// hostd's name for the service.
    pub service: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<String>,
    /// What `hostctl rollback` without a version returns to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<String>,
    /// Release directories on the host, oldest first.
    pub installed: Vec<String>,
    /// The ledger, oldest first.
    pub ledger: Vec<LedgerEntry>,
}

/// `GET /v1/lock`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder: Option<LockHolder>,
    /// An operation hostd found interrupted at its start (it was killed
    /// mid-deploy or mid-restore) and what it did about it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recovered: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockHolder {
    /// What runs (`deploy api@.service 1.2.3`).
    pub operation: String,
    pub requested_by: String,
    /// RFC 3339.
    pub since: String,
    /// The hostd process running it: the lock dies with it.
    pub pid: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_lowercase_sha256_hex() {
        let d = "a".repeat(64);
        assert!(is_digest(&d));
        assert!(!is_digest(&"A".repeat(64)));
        assert!(!is_digest(&"a".repeat(63)));
        assert!(!is_digest(&format!("{}/", "a".repeat(63))));
    }

    #[test]
    fn finished_lines_carry_the_outcome() -> Result<(), serde_json::Error> {
        let e = DeployEvent::Finished {
            outcome: DeployOutcome::RolledBack,
            version: "v2".into(),
            serving: Some("v1".into()),
            seconds: 1.5,
            error: Some("api@1 did not become healthy".into()),
        };
        let line = serde_json::to_string(&e)?;
        assert!(
            line.starts_with(r#"{"event":"finished","outcome":"rolled_back""#),
            "{line}"
        );
        assert_eq!(serde_json::from_str::<DeployEvent>(&line)?, e);
        Ok(())
    }
}
