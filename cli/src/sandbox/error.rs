use std::path::PathBuf;

/// Why a sandbox command failed. Every message says what failed and what to
/// do about it.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("must run as root (sandboxes need namespaces, mounts and systemd-nspawn)")]
    NotRoot,

    #[error("invalid sandbox name {name:?}: {reason}")]
    InvalidName { name: String, reason: &'static str },

    #[error("{tool} not found: run tests/install-prereqs.sh (apt-get install {package})")]
    MissingTool {
        tool: &'static str,
        package: &'static str,
    },

    #[error(
        "hostd binary {} not usable ({reason}): build it with `cargo build -p hostd` or pass --hostd PATH",
        path.display()
    )]
    HostdBinary { path: PathBuf, reason: String },

    #[error("failed to {what}: `{command}` {outcome}{detail}")]
    Command {
        what: String,
        command: String,
        outcome: String,
        detail: String,
    },

    #[error("failed to {what} ({}): {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("corrupt sandbox state {}: {source}; remove that directory by hand after checking nothing runs from it", path.display())]
    State {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },

    #[error(
        "sandbox {name} is being started or was left half-built (state has no pid); wait for the other `up` or run `hostctl sandbox down --name {name}`"
    )]
    Busy { name: String },

    #[error(
        "sandbox {name} exists but is not running; run `hostctl sandbox down --name {name}` first"
    )]
    NotRunning { name: String },

    #[error("no sandbox named {name}; running sandboxes: {running}")]
    Unknown { name: String, running: String },

    #[error(
        "no free sandbox address left in 10.231.0.10-250; remove sandboxes with `hostctl sandbox down`"
    )]
    NoFreeAddress,

    #[error("sandbox {name} did not finish booting within {secs} s; console log: {}", console_log.display())]
    BootTimeout {
        name: String,
        secs: u64,
        console_log: PathBuf,
    },

    #[error("systemd-nspawn for sandbox {name} exited during boot; console log: {}", console_log.display())]
    NspawnExited { name: String, console_log: PathBuf },

    #[error("sandbox {name} booted but is {state:?}, not running/degraded; console log: {}", console_log.display())]
    BootFailed {
        name: String,
        state: String,
        console_log: PathBuf,
    },

    #[error("AWS stand-in (moto) did not answer on {endpoint} within {secs} s; log: {}", log.display())]
    AwsTimeout {
        endpoint: String,
        secs: u64,
        log: PathBuf,
    },

    #[error("AWS stand-in (moto) exited right after starting; log: {}", log.display())]
    AwsExited { log: PathBuf },

    #[error("provisioning sandbox {name} failed (packer/provision.sh): {detail}; full log: {}", log.display())]
    Provision {
        name: String,
        detail: String,
        log: PathBuf,
    },

    #[error("{what}: {detail}")]
    Invalid { what: &'static str, detail: String },

    #[error("interrupted (Ctrl-C); what had been started was stopped and removed")]
    Interrupted,
}

impl SandboxError {
    pub(crate) fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        SandboxError::Io {
            what,
            path: path.into(),
            source,
        }
    }
}

impl crate::exit::CommandError for SandboxError {
    fn failure(&self) -> crate::exit::Failure<'_> {
        crate::exit::Failure::Failed
    }
}
