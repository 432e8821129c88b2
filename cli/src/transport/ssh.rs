//! The `ssh` command line that reaches hostd, and where its multiplexing
//! sockets live.

use std::ffi::OsString;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::HostTarget;

use super::{RuntimeDirProblem, TransportError};

/// Arguments for `ssh` (without the program name) that run `remote` on the
/// host. Pure so the exact command line is unit-tested.
///
/// Our `-o` options come before the config's because ssh keeps the first
/// value it sees for an option: BatchMode and the multiplexing set-up cannot
/// be overridden by accident. The keepalive comes after them: a matter of
/// taste per network, not of safety.
pub fn ssh_args(target: &HostTarget, control_dir: &Path, remote: &[&str]) -> Vec<OsString> {
    let mut args: Vec<OsString> = Vec::new();
    let opt = |args: &mut Vec<OsString>, value: OsString| {
        args.push("-o".into());
        args.push(value);
    };
    opt(&mut args, "BatchMode=yes".into());
    opt(&mut args, "ControlMaster=auto".into());
    let mut control_path = OsString::from("ControlPath=");
    control_path.push(control_dir.join("%C"));
    opt(&mut args, control_path);
    opt(&mut args, "ControlPersist=60s".into());
    opt(
        &mut args,
        format!("ConnectTimeout={}", whole_seconds(target.connect_timeout)).into(),
    );
    if let Some(port) = target.port {
        args.push("-p".into());
        args.push(port.to_string().into());
    }
    if let Some(identity) = &target.identity_file {
        args.push("-i".into());
        args.push(identity.into());
        opt(&mut args, "IdentitiesOnly=yes".into());
    }
    if let Some(known_hosts) = &target.known_hosts_file {
        let mut value = OsString::from("UserKnownHostsFile=");
        value.push(known_hosts);
        opt(&mut args, value);
        opt(&mut args, "StrictHostKeyChecking=yes".into());
    }
    for extra in &target.options {
        opt(&mut args, extra.into());
    }
    // A restore streams its progress for hours: over a network that died
    // silently ssh would wait forever. After the config's options, so a
    // host on a flaky link can be given other values.
    opt(&mut args, "ServerAliveInterval=30".into());
    opt(&mut args, "ServerAliveCountMax=4".into());
    if let Some(user) = &target.user {
        args.push("-l".into());
        args.push(user.into());
    }
    args.push(target.destination.clone().into());
    // ssh re-reads options after the destination; `--` ends that, so the
    // remote command can never be taken for an ssh flag.
    args.push("--".into());
    args.extend(remote.iter().map(OsString::from));
    args
}

/// ConnectTimeout takes whole seconds, at least one.
fn whole_seconds(d: Duration) -> u64 {
    crate::parse::seconds_rounded_up(d).max(1)
}

/// Where ssh keeps its ControlMaster sockets: `$XDG_RUNTIME_DIR/hostctl-ssh`,
/// else `/tmp/hostctl-$UID/hostctl-ssh`. Created 0700.
pub fn control_dir() -> Result<PathBuf, TransportError> {
    let base = match std::env::var_os("XDG_RUNTIME_DIR").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => {
            let dir = std::env::temp_dir().join(format!("hostctl-{}", nix::unistd::getuid()));
            private_dir(&dir)?;
            dir
        }
    };
    let dir = base.join("hostctl-ssh");
    private_dir(&dir)?;
    Ok(dir)
}

/// Creates `dir` 0700 or checks an existing one is ours and private: in a
/// shared /tmp another user could have made it first and would then be able
/// to hijack our ssh connections through the control sockets.
fn private_dir(dir: &Path) -> Result<(), TransportError> {
    let fail = |problem| TransportError::RuntimeDir {
        path: dir.to_path_buf(),
        problem,
    };
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(fail(RuntimeDirProblem::Create(e))),
    }
    let meta = std::fs::symlink_metadata(dir).map_err(|e| fail(RuntimeDirProblem::Inspect(e)))?;
    if !meta.is_dir() {
        return Err(fail(RuntimeDirProblem::NotADirectory));
    }
    if meta.uid() != nix::unistd::getuid().as_raw() {
        return Err(fail(RuntimeDirProblem::NotOurs(meta.uid())));
    }
    if meta.permissions().mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| fail(RuntimeDirProblem::Private(e)))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> HostTarget {
        HostTarget {
            name: "a".into(),
            destination: "10.231.0.10".into(),
            from_table: true,
            user: None,
            port: None,
            identity_file: None,
            known_hosts_file: None,
            options: vec![],
            connect_timeout: Duration::from_millis(4500),
            hostd_path: "hostd".into(),
            root_hostd_path: "sudo -n hostd".into(),
        }
    }

    fn joined(t: &HostTarget) -> String {
        let args = ssh_args(
            t,
            Path::new("/run/user/0/hostctl-ssh"),
            &[&t.hostd_path, "dial-stdio"],
        );
        args.iter()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn minimal_target_gets_batch_mode_multiplexing_timeouts_and_keepalive() {
        assert_eq!(
            joined(&target()),
            "-o BatchMode=yes -o ControlMaster=auto -o ControlPath=/run/user/0/hostctl-ssh/%C \
             -o ControlPersist=60s -o ConnectTimeout=5 -o ServerAliveInterval=30 \
             -o ServerAliveCountMax=4 10.231.0.10 -- hostd dial-stdio"
        );
    }

    #[test]
    fn every_setting_lands_in_order() {
        let t = HostTarget {
            user: Some("admin".into()),
            port: Some(2222),
            identity_file: Some("/k/id".into()),
            known_hosts_file: Some("/k/known_hosts".into()),
            options: vec!["ProxyJump=bastion".into()],
            connect_timeout: Duration::from_secs(7),
            hostd_path: "sudo -n hostd".into(),
            ..target()
        };
        assert_eq!(
            joined(&t),
            "-o BatchMode=yes -o ControlMaster=auto -o ControlPath=/run/user/0/hostctl-ssh/%C \
             -o ControlPersist=60s -o ConnectTimeout=7 -p 2222 -i /k/id -o IdentitiesOnly=yes \
             -o UserKnownHostsFile=/k/known_hosts -o StrictHostKeyChecking=yes \
             -o ProxyJump=bastion -o ServerAliveInterval=30 -o ServerAliveCountMax=4 \
             -l admin 10.231.0.10 -- sudo -n hostd dial-stdio"
        );
    }

    #[test]
    fn the_config_may_change_the_keepalive() {
        let t = HostTarget {
            options: vec!["ServerAliveInterval=5".into()],
            ..target()
        };
        let args = joined(&t);
        let theirs = args.find("ServerAliveInterval=5").unwrap_or(usize::MAX);
        let ours = args.find("ServerAliveInterval=30").unwrap_or(0);
        assert!(theirs < ours, "ssh keeps the first value: {args}");
    }

    #[test]
    fn never_disables_host_key_checking() {
        let args = ssh_args(&target(), Path::new("/x"), &["hostd"]);
        assert!(
            !args
                .iter()
                .any(|a| a.to_string_lossy().contains("StrictHostKeyChecking=no"))
        );
    }

    #[test]
    fn timeout_rounds_up_to_at_least_one_second() {
        assert_eq!(whole_seconds(Duration::from_millis(1)), 1);
        assert_eq!(whole_seconds(Duration::from_secs(3)), 3);
        assert_eq!(whole_seconds(Duration::ZERO), 1);
    }

    #[test]
    fn private_dir_tightens_our_own_open_directory() -> Result<(), Box<dyn std::error::Error>> {
        let dir = std::env::temp_dir().join(format!("hostctl-priv-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
        let result = private_dir(&dir);
        let mode = std::fs::metadata(&dir)?.permissions().mode() & 0o777;
        std::fs::remove_dir_all(&dir)?;
        result?;
        assert_eq!(mode, 0o700);
        Ok(())
    }
}
