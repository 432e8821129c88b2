//! A host's configuration as the operator's repository declares it:
//! `hostctl diff` asks hostd what applying a hostd.toml would change,
//! `hostctl apply` has hostd apply it in place (no restart of hostd), and
//! every apply is recorded in the host's ledger.
//!
//! Routes (control API, root only for apply):
//! - `GET  /v1/config`: [`HostConfig`], what the host runs now;
//! - `POST /v1/config/plan`: [`ConfigText`] in, [`ConfigPlan`] out: the
//!   dry run, computed by the same code as the apply;
//! - `POST /v1/config/apply`: [`ApplyRequest`] in, NDJSON [`ApplyEvent`]s
//!   out, the last one `Finished`;
//! - `GET  /v1/config/applies`: [`AppliesList`].
//!
//! A file that does not validate is refused with 422 and the error names
//! `source` (the operator's path), the line and the key.

use serde::{Deserialize, Serialize};

/// The first line of `/etc/hostd/hostd.toml` once hostctl wrote it: the
/// file on the host is a copy, and hand edits there are overwritten by the
/// next apply.
pub const WRITTEN_BY: &str = "# Written by `hostctl apply`";

/// Longest hostd.toml hostd accepts over the control API.
pub const MAX_CONFIG_BYTES: usize = 256 * 1024;

/// `GET /v1/config`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostConfig {
    /// The configuration hostd runs, as declared (the header hostd adds
    /// on the host left out).
    pub text: String,
    /// The operator's path it came from, when hostctl applied it; None for
    /// a file written on the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// sha256 of `text`, hex.
    pub digest: String,
    /// The last apply, when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_apply: Option<ApplyRecord>,
}

/// `POST /v1/config/plan`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigText {
    pub text: String,
    /// The path in the operator's repository (`hostd/production.toml`):
    /// errors name it instead of the host's path.
    pub source: String,
}

/// What applying a configuration would do, key by key and unit by unit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigPlan {
    pub source: String,
    /// sha256 of the new text, hex.
    pub digest: String,
    /// sha256 of the text the host runs, hex.
    pub current_digest: String,
    /// Keys added, removed or changed, in key order.
    pub keys: Vec<KeyChange>,
    /// Unit files hostd generates (apps declared by `command`, jobs) that
    /// would be written or removed.
    pub units: Vec<UnitFileChange>,
    /// What hostd would do, in the order it would do it.
    pub actions: Vec<PlanAction>,
}

impl ConfigPlan {
    /// Nothing to apply: the host runs this configuration.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty() && self.units.is_empty() && self.actions.is_empty()
    }
}

/// One dotted key. Values are TOML text; those that may hold a password
/// (`checks.postgres`, `checks.redis`) show as `(hidden)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyChange {
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
}

/// A generated unit file: `before` None means added, `after` None removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitFileChange {
    pub unit: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    /// A new service started.
    Start,
    /// A service whose settings changed restarted, instance by instance
    /// through its health gate.
    Restart,
    /// A service whose declared `instances` changed (and nothing else)
    /// brought to that count: new instances through their gate, extra ones
    /// stopped; the others keep running.
    Scale,
    /// A service no longer declared stopped (its units removed if hostd
    /// wrote them).
    Stop,
    /// A subsystem re-reads its settings (`jobs`, `secrets`, `backup`,
    /// `checks`, `metrics`), touching nothing else.
    Reconfigure,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanAction {
    pub kind: ActionKind,
    /// A service (`web`) or subsystem (`jobs`).
    pub target: String,
    /// Why, in a few words (`command changed`, `2 instances`).
    pub reason: String,
}

/// `POST /v1/config/apply`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyRequest {
    pub text: String,
    pub source: String,
    /// `user@machine` of the operator.
    pub requested_by: String,
    /// How long to wait for the operations lock (a deploy or restore
    /// running); 0 refuses at once naming the holder.
    #[serde(default)]
    pub lock_wait_seconds: u64,
    /// How long the host may take to report healthy after the change
    /// before hostd puts the previous configuration back; None: hostd's
    /// default (120 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_timeout_seconds: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ApplyEvent {
    /// The operations lock is held; waiting for it.
    Waiting {
        holder: String,
    },
    /// A step began (`write config`, `start web`, `wait for health`...).
    Step {
        step: String,
    },
    StepDone {
        step: String,
        seconds: f64,
    },
    /// The last line.
    Finished {
        record: ApplyRecord,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApplyOutcome {
    /// The new configuration runs and the host is healthy.
    Applied,
    /// The host already ran it; nothing was done.
    Unchanged,
    /// The new configuration did not come up healthy (or could not be
    /// applied) and hostd put the previous one back.
    RolledBack,
    /// Putting the previous configuration back failed too: the host needs
    /// an operator (`error` says what is where).
    Failed,
    /// Nothing was changed: by the time the apply's turn came (after an
    /// operation it waited for), it needed what an apply cannot do in
    /// place (`error` says what).
    Refused,
}

impl ApplyOutcome {
    /// As the JSON says it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::Unchanged => "unchanged",
            Self::RolledBack => "rolled_back",
            Self::Failed => "failed",
            Self::Refused => "refused",
        }
    }
}

/// One apply in the host's ledger.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApplyRecord {
    /// RFC 3339, when it began.
    pub at: String,
    pub requested_by: String,
    /// The connecting user, as the control socket saw it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller: Option<String>,
    pub source: String,
    pub digest: String,
    pub previous_digest: String,
    pub outcome: ApplyOutcome,
    pub actions: Vec<PlanAction>,
    pub seconds: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `GET /v1/config/applies`: the host's ledger, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppliesList {
    pub applies: Vec<ApplyRecord>,
}

/// sha256 of a configuration's text, hex: what both sides compare.
pub fn digest(text: &str) -> String {
    use sha2::Digest;
    let hash = sha2::Sha256::digest(text.as_bytes());
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_stream_line_round_trips() -> Result<(), serde_json::Error> {
        let line = r#"{"event":"step","step":"start web"}"#;
        let e: ApplyEvent = serde_json::from_str(line)?;
        assert_eq!(
            e,
            ApplyEvent::Step {
                step: "start web".into()
            }
        );
        assert_eq!(serde_json::to_string(&e)?, line);
        Ok(())
    }

    #[test]
    fn an_outcome_is_named_as_its_json_says() -> Result<(), serde_json::Error> {
        use ApplyOutcome::*;
        for o in [Applied, Unchanged, RolledBack, Failed, Refused] {
            assert_eq!(serde_json::to_string(&o)?, format!("\"{}\"", o.as_str()));
        }
        Ok(())
    }

    #[test]
    fn digests_differ_by_one_byte() {
        assert_eq!(digest("").len(), 64);
        assert_ne!(digest("a = 1\n"), digest("a = 2\n"));
    }
}
