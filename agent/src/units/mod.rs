//! hostd installs the unit files it ships: each file under the source
//! directory (`units.source_dir`, put there with the hostd binary) is copied
//! into systemd's directory when missing or different, drop-in directories
//! (`NAME.d/*.conf`) included. A new hostd build thereby brings its units
//! along; nothing is rewritten when nothing changed, so a restart of hostd
//! does not cost a daemon-reload.

use std::path::{Path, PathBuf};

use crate::fsutil::write_atomically;

pub mod apps;
pub mod front;
mod installed;
pub use installed::{NotInstalled, not_installed};

/// What every unit hostd ships or generates for app code (the API units,
/// jobs, deploy hooks and tasks) denies: the instance metadata service. On
/// EC2 it hands out the instance profile's credentials, which reach every
/// secret under the SSM prefix and the backup bucket; app code has no
/// business there. hostd keeps its own access.
pub const DENY_INSTANCE_METADATA: &str = "IPAddressDeny=169.254.169.254 fd00:ec2::254";

/// The same confinement as the API units (units/api@.service), for every
/// unit hostd generates to run a release's code (jobs, apps): the
/// release's rights and no more.
pub const HARDENING: &[&str] = &[
    "NoNewPrivileges=yes",
    "ProtectSystem=strict",
    "ProtectHome=yes",
    "PrivateTmp=yes",
    "PrivateDevices=yes",
    "ProtectKernelTunables=yes",
    "ProtectKernelModules=yes",
    "ProtectKernelLogs=yes",
    "ProtectControlGroups=yes",
    "ProtectClock=yes",
    "ProtectHostname=yes",
    "ProtectProc=invisible",
    "ProcSubset=pid",
    "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
    "RestrictNamespaces=yes",
    "RestrictRealtime=yes",
    "RestrictSUIDSGID=yes",
    "LockPersonality=yes",
    "MemoryDenyWriteExecute=yes",
    "RemoveIPC=yes",
    "SystemCallArchitectures=native",
    "SystemCallFilter=@system-service",
    "SystemCallFilter=~@privileged @resources",
    "CapabilityBoundingSet=",
    "AmbientCapabilities=",
    "DevicePolicy=closed",
    "UMask=0027",
    crate::units::DENY_INSTANCE_METADATA,
    "LimitCORE=0",
];

/// `%` starts a specifier in a unit file, even inside quotes.
pub(crate) fn unit_escape(s: &str) -> String {
    s.replace('%', "%%")
}

/// One word in unit-file quoting, where `$` would expand a variable.
pub(crate) fn quoted(s: &str) -> String {
    format!(
        "\"{}\"",
        unit_escape(s)
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('$', "$$")
    )
}

#[derive(Debug, thiserror::Error)]
pub enum UnitsError {
    #[error("cannot read the unit files to install in {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start hostd's front or its sockets")]
    FrontJob(#[from] crate::systemd::JobError),
    #[error("cannot enable the front's sockets")]
    Systemd(#[from] crate::systemd::SystemdError),
    #[error("{0}")]
    Name(String),
    #[error("cannot create user {user} for an app: {detail}")]
    User { user: String, detail: String },
    #[error("cannot install unit file {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What a sync did: files written (relative names like `api.socket` or
/// `redis-server.service.d/50-hostd.conf`), and the unit files that have an
/// `[Install]` section, to be enabled.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Synced {
    pub written: Vec<String>,
    pub installable: Vec<String>,
}

/// Copies `source`'s unit files into `target`. A missing `source` is not an
/// error (a host provisioned before hostd shipped units): nothing to do.
pub fn sync(source: &Path, target: &Path) -> Result<Synced, UnitsError> {
    let mut synced = Synced::default();
    if !source.is_dir() {
        tracing::info!(dir = %source.display(), "no unit files to install");
        return Ok(synced);
    }
    for (rel, path) in unit_files(source)? {
        let wanted = std::fs::read(&path).map_err(|e| read_err(&path, e))?;
        let dest = target.join(&rel);
        if std::fs::read(&dest).ok().as_deref() == Some(wanted.as_slice()) {
            continue;
        }
        write_atomically(&dest, &wanted, 0o644).map_err(|source| UnitsError::Write {
            path: dest.clone(),
            source,
        })?;
        tracing::info!(unit = rel, "installed unit file");
        synced.written.push(rel.clone());
        if !rel.contains('/') && String::from_utf8_lossy(&wanted).contains("[Install]") {
            synced.installable.push(rel);
        }
    }
    Ok(synced)
}

fn read_err(path: &Path, source: std::io::Error) -> UnitsError {
    UnitsError::Read {
        path: path.to_owned(),
        source,
    }
}

/// `NAME.service`/`.socket`/`.timer`... at the top, `*.conf` one level down
/// in `NAME.d/`; sorted so installs happen in a stable order.
fn unit_files(source: &Path) -> Result<Vec<(String, PathBuf)>, UnitsError> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(source).map_err(|e| read_err(source, e))? {
        let entry = entry.map_err(|e| read_err(source, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if path.is_dir() && name.ends_with(".d") {
            for inner in std::fs::read_dir(&path).map_err(|e| read_err(&path, e))? {
                let inner = inner.map_err(|e| read_err(&path, e))?;
                let file = inner.file_name().to_string_lossy().into_owned();
                if file.ends_with(".conf") && inner.path().is_file() {
                    out.push((format!("{name}/{file}"), inner.path()));
                }
            }
        } else if path.is_file() && !name.starts_with('.') {
            out.push((name, path));
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installs_new_and_changed_files_and_leaves_equal_ones()
    -> Result<(), Box<dyn std::error::Error>> {
        let src = tempfile::tempdir()?;
        let dst = tempfile::tempdir()?;
        std::fs::write(
            src.path().join("api.socket"),
            "[Socket]\n[Install]\nWantedBy=sockets.target\n",
        )?;
        std::fs::write(src.path().join("api@.service"), "[Service]\n")?;
        std::fs::create_dir(src.path().join("redis-server.service.d"))?;
        std::fs::write(
            src.path().join("redis-server.service.d/50-hostd.conf"),
            "[Unit]\n",
        )?;

        let first = sync(src.path(), dst.path())?;
        assert_eq!(
            first.written,
            [
                "api.socket",
                "api@.service",
                "redis-server.service.d/50-hostd.conf"
            ]
        );
        assert_eq!(first.installable, ["api.socket"]);
        assert_eq!(
            std::fs::read_to_string(dst.path().join("redis-server.service.d/50-hostd.conf"))?,
            "[Unit]\n"
        );

        assert_eq!(
            sync(src.path(), dst.path())?,
            Synced::default(),
            "nothing changed"
        );

        std::fs::write(src.path().join("api@.service"), "[Service]\nUser=api\n")?;
        let third = sync(src.path(), dst.path())?;
        assert_eq!(third.written, ["api@.service"]);
        assert!(third.installable.is_empty());
        assert!(!crate::fsutil::tmp_path(&dst.path().join("api@.service")).exists());
        Ok(())
    }

    #[test]
    fn a_missing_source_is_nothing_to_do() -> Result<(), Box<dyn std::error::Error>> {
        let dst = tempfile::tempdir()?;
        assert_eq!(
            sync(&dst.path().join("nope"), dst.path())?,
            Synced::default()
        );
        Ok(())
    }
}
