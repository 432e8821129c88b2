//! What can stop `diff`, `apply` and `applies`, and what each means for
//! the exit code: the operator's files and flags are usage (2), a host
//! that cannot give a plan or apply is a failure (1).

use std::path::PathBuf;

use crate::exit::{CommandError, Failure};
use crate::output;
use crate::targets::TargetError;
use crate::transport::TransportError;

#[derive(Debug, thiserror::Error)]
pub enum HostConfigError {
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error("cannot read {file} ({}), the hostd_config of hostctl.toml", path.display())]
    Read {
        file: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{file} ({}) is larger than the {max} bytes hostd accepts",
        path.display()
    )]
    TooBig {
        file: String,
        path: PathBuf,
        max: usize,
    },
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("hostd refused the configuration on {}; its error names the file, line and key; nothing changed", hosts.join(", "))]
    Refused { hosts: Vec<String> },
    #[error("no plan from {}; nothing changed", hosts.join(", "))]
    NoPlan { hosts: Vec<String> },
    #[error(
        "not applying unconfirmed, and stdin is no terminal to ask on: pass --yes; nothing changed"
    )]
    NeedsYes,
    #[error("apply not confirmed; nothing changed")]
    Declined,
    #[error("cannot read the answer")]
    Prompt(#[source] std::io::Error),
    #[error(
        "apply failed on {}; applied on: {}; not tried: {}",
        output::names_or_none(failed),
        output::names_or_none(done),
        output::names_or_none(skipped)
    )]
    Failed {
        failed: Vec<String>,
        done: Vec<String>,
        skipped: Vec<String>,
    },
    #[error("cannot encode the request")]
    Request(#[source] serde_json::Error),
    #[error("cannot write the output")]
    Output(#[source] std::io::Error),
}

impl CommandError for HostConfigError {
    fn failure(&self) -> Failure<'_> {
        match self {
            // The operator fixes hostctl.toml, the declared file or the
            // command line: like any configuration mistake.
            Self::Target(_)
            | Self::Read { .. }
            | Self::TooBig { .. }
            | Self::Refused { .. }
            | Self::NeedsYes => Failure::Usage,
            Self::NoPlan { .. }
            | Self::Declined
            | Self::Prompt(_)
            | Self::Failed { .. }
            | Self::Request(_) => Failure::Failed,
            Self::Transport(e) => Failure::Transport(e),
            Self::Output(e) => Failure::Output(e),
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            Self::NoPlan { .. } => Some(
                "see each host's error; `hostctl status` says whether its hostd answers".into(),
            ),
            Self::Failed { .. } => Some(
                "a rolled_back host runs its previous configuration again; a failed one needs an operator (its error says what is where); `hostctl applies` shows each host's record".into(),
            ),
            _ => self.failure().hint(),
        }
    }
}
