//! Turning a fresh root filesystem into this sandbox's host: identity,
//! provisioning with packer/provision.sh, operator access, AWS settings.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use tracing::info;

use super::SandboxError;
use super::cmd::{Cmd, tail};
use super::rootfs::{remove_host_keys, write};
use super::state::{Layout, known_hosts_line};
use super::{SSH_USER, aws};

/// Embedded so an installed hostctl works anywhere.
const PROVISION_SH: &str = include_str!("../../../packer/provision.sh");
const HOSTD_TOML: &str = include_str!("../../../packer/files/hostd.toml");
const PREPARE_DATA: &str = include_str!("../../../packer/files/prepare-data");
/// Every file in units/, by its path there: our units at the top, drop-ins
/// for the distribution's units in `NAME.d/` (a test checks none is missing).
pub(crate) const UNITS: &[(&str, &str)] = &[
    (
        "hostd.service",
        include_str!("../../../units/hostd.service"),
    ),
    ("api@.service", include_str!("../../../units/api@.service")),
    (
        "hostd-front.service",
        include_str!("../../../units/hostd-front.service"),
    ),
    ("api.socket", include_str!("../../../units/api.socket")),
    (
        "hostd-data.service",
        include_str!("../../../units/hostd-data.service"),
    ),
    (
        "redis-server.service.d/50-hostd.conf",
        include_str!("../../../units/redis-server.service.d/50-hostd.conf"),
    ),
    (
        "postgresql@.service.d/50-hostd.conf",
        include_str!("../../../units/postgresql@.service.d/50-hostd.conf"),
    ),
];

/// Staging directory inside the root, as Packer would upload it.
const STAGING: &str = "tmp/hostd-provision";

/// Fresh hostname, machine-id and SSH host key.
pub(crate) async fn set_identity(root: &Path, name: &str) -> Result<(), SandboxError> {
    write(&root.join("etc/hostname"), &format!("{name}\n"))?;
    write(
        &root.join("etc/hosts"),
        &format!(
            "127.0.0.1\tlocalhost\n127.0.1.1\t{name}\n::1\tlocalhost ip6-localhost ip6-loopback\n"
        ),
    )?;
    write(
        &root.join("etc/machine-id"),
        &format!("{}\n", random_hex(16)?),
    )?;
    remove_host_keys(root)?;
    Cmd::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C"])
        .arg(format!("root@{name}"))
        .arg("-f")
        .arg(root.join("etc/ssh/ssh_host_ed25519_key"))
        .run("generate the sandbox SSH host key")
        .await?;
    // Only the key we made (sshd would complain about the missing others).
    let dropin = root.join("etc/ssh/sshd_config.d/40-sandbox-hostkey.conf");
    if let Some(dir) = dropin.parent() {
        std::fs::create_dir_all(dir).map_err(|e| SandboxError::io("create", dir, e))?;
    }
    write(
        &dropin,
        "# hostctl sandbox\nHostKey /etc/ssh/ssh_host_ed25519_key\n",
    )
}

fn random_hex(bytes: usize) -> Result<String, SandboxError> {
    let mut buf = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(|e| SandboxError::io("read random bytes", "/dev/urandom", e))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// Check the hostd binary before anything is started.
pub(crate) fn check_hostd(path: &Path) -> Result<(), SandboxError> {
    let bad = |reason: String| SandboxError::HostdBinary {
        path: path.to_owned(),
        reason,
    };
    let meta = std::fs::metadata(path).map_err(|e| bad(e.to_string()))?;
    if !meta.is_file() {
        return Err(bad("not a regular file".to_owned()));
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Err(bad("not executable".to_owned()));
    }
    Ok(())
}

/// hostd's front: `cargo build -p hostd` builds it beside hostd.
pub(crate) fn front_beside(hostd: &Path) -> std::path::PathBuf {
    hostd.with_file_name(hostd_api::FRONT_BINARY)
}

/// Stage hostd, units, config and provision.sh in ROOT/tmp/hostd-provision
/// and run provision.sh there through chroot, exactly as Packer runs it on
/// EC2. Output goes to `log`.
pub(crate) async fn provision(
    root: &Path,
    name: &str,
    hostd: &Path,
    api: Option<&Path>,
    log: &Path,
) -> Result<(), SandboxError> {
    let staging = root.join(STAGING);
    let units = staging.join("units");
    std::fs::create_dir_all(&units).map_err(|e| SandboxError::io("create", &units, e))?;
    for (from, name) in [
        (hostd.to_owned(), "hostd"),
        (front_beside(hostd), hostd_api::FRONT_BINARY),
    ] {
        let dest = staging.join(name);
        std::fs::copy(&from, &dest)
            .map_err(|e| SandboxError::io("copy hostd into the staging directory", &dest, e))?;
    }
    for (file, text) in UNITS {
        let path = units.join(file);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| SandboxError::io("create", dir, e))?;
        }
        write(&path, text)?;
    }
    if let Some(api) = api {
        let bin = staging.join("api/bin");
        std::fs::create_dir_all(&bin).map_err(|e| SandboxError::io("create", &bin, e))?;
        std::fs::copy(api, bin.join("api")).map_err(|e| {
            SandboxError::io("copy the API release into the staging directory", &bin, e)
        })?;
    }
    write(&staging.join("hostd.toml"), HOSTD_TOML)?;
    for (file, text) in [
        ("provision.sh", PROVISION_SH),
        ("prepare-data", PREPARE_DATA),
    ] {
        let script = staging.join(file);
        write(&script, text)?;
        set_mode(&script, 0o755)?;
    }

    info!("provisioning {name} with packer/provision.sh");
    let inside = format!("/{STAGING}");
    let out = Cmd::new("chroot")
        .arg(root)
        .args(["/bin/bash", &format!("{inside}/provision.sh"), &inside])
        .clean_env()
        .env("HOSTD_OPERATOR_USER", SSH_USER)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .env("HOME", "/root")
        .run_unchecked("run provision.sh")
        .await?;
    let mut text = out.stdout.clone();
    text.extend_from_slice(&out.stderr);
    write(log, &String::from_utf8_lossy(&text))?;
    std::fs::remove_dir_all(&staging)
        .map_err(|e| SandboxError::io("remove the staging directory", &staging, e))?;
    if !out.status.success() {
        return Err(SandboxError::Provision {
            name: name.to_owned(),
            detail: tail(&String::from_utf8_lossy(&out.stderr), 5)
                .unwrap_or_else(|| format!("{}", out.status)),
            log: log.to_owned(),
        });
    }
    Ok(())
}

/// Operator key pair, authorized_keys, pinned known_hosts, and the AWS
/// endpoint for hostd, on a provisioned root (the operator account and the
/// hostd group exist).
pub(crate) async fn operator_access(
    layout: &Layout,
    name: &str,
    address: &str,
) -> Result<(), SandboxError> {
    // The operator reaches hostd as root for `upgrade-hostd` only, through
    // this one command, as the README tells operators to set up.
    let sudoers = layout.root(name).join("etc/sudoers.d/90-hostd-operator");
    write(
        &sudoers,
        &format!("{SSH_USER} ALL=(root) NOPASSWD: /usr/local/bin/hostd dial-stdio\n"),
    )?;
    set_mode(&sudoers, 0o440)?;
    access(layout, name, address, "hostd").await
}

/// A bare root, as an EC2 base image boots before any provisioning: the
/// default user cloud-init would create (passwordless sudo, the launch key)
/// and nothing of hostd's. Packer's `null` source provisions it over SSH.
pub(crate) async fn bare_access(
    layout: &Layout,
    name: &str,
    address: &str,
) -> Result<(), SandboxError> {
    let root = layout.root(name);
    let sudoers = root.join("etc/sudoers.d/90-cloud-init-users");
    write(
        &sudoers,
        &format!("# As cloud-init writes it on EC2 images.\n{SSH_USER} ALL=(ALL) NOPASSWD:ALL\n"),
    )?;
    set_mode(&sudoers, 0o440)?;
    Cmd::new("chroot")
        .arg(&root)
        .args([
            "/bin/sh",
            "-c",
            &format!(
                "getent passwd {SSH_USER} >/dev/null || useradd --create-home --shell /bin/bash {SSH_USER}; usermod --password '*' {SSH_USER}; install -d -m 0755 /etc/hostd"
            ),
        ])
        .clean_env()
        .run("create the default user of a bare host")
        .await?;
    access(layout, name, address, "root").await
}

async fn access(
    layout: &Layout,
    name: &str,
    address: &str,
    env_group: &str,
) -> Result<(), SandboxError> {
    let root = layout.root(name);
    let key = layout.identity(name);
    Cmd::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C"])
        .arg(format!("hostctl-sandbox-{name}"))
        .arg("-f")
        .arg(&key)
        .run("generate the operator SSH key")
        .await?;
    let public = key.with_extension("pub");
    let pubkey =
        std::fs::read_to_string(&public).map_err(|e| SandboxError::io("read", &public, e))?;

    let ssh_dir = root.join(format!("home/{SSH_USER}/.ssh"));
    std::fs::create_dir_all(&ssh_dir).map_err(|e| SandboxError::io("create", &ssh_dir, e))?;
    let auth = ssh_dir.join("authorized_keys");
    write(&auth, &pubkey)?;
    set_mode(&ssh_dir, 0o700)?;
    set_mode(&auth, 0o600)?;

    let env = root.join("etc/hostd/environment");
    // Only the endpoint: region and credentials come from the sandbox's
    // IMDSv2 stand-in, the way they do on EC2.
    write(
        &env,
        &format!(
            "# Written by `hostctl sandbox up`: the AWS stand-in.\n\
             AWS_ENDPOINT_URL={}\n",
            aws::endpoint(),
        ),
    )?;
    set_mode(&env, 0o640)?;
    // Names resolve through the sandbox's own /etc/passwd and /etc/group.
    Cmd::new("chroot")
        .arg(&root)
        .args([
            "/bin/sh",
            "-c",
            &format!("chown -R {SSH_USER}:{SSH_USER} /home/{SSH_USER}/.ssh && chown root:{env_group} /etc/hostd/environment"),
        ])
        .clean_env()
        .run("set owners of authorized_keys and /etc/hostd/environment")
        .await?;

    let host_pub = root.join("etc/ssh/ssh_host_ed25519_key.pub");
    let host_key =
        std::fs::read_to_string(&host_pub).map_err(|e| SandboxError::io("read", &host_pub, e))?;
    write(
        &layout.known_hosts(name),
        &known_hosts_line(address, &host_key)?,
    )
}

fn set_mode(path: &Path, mode: u32) -> Result<(), SandboxError> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| SandboxError::io("chmod", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_files_are_the_real_ones() {
        assert!(PROVISION_SH.starts_with("#!/bin/bash"));
        assert!(HOSTD_TOML.contains("[control]"));
        assert!(
            UNITS
                .iter()
                .any(|(n, t)| *n == "hostd.service" && t.contains("[Service]"))
        );
    }

    /// Every file under units/, as a path relative to it ("a/b"), one
    /// directory level down at most (drop-in directories).
    fn files_under(dir: &Path, prefix: &str, out: &mut Vec<String>) -> std::io::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let name = format!("{prefix}{}", entry.file_name().to_string_lossy());
            if entry.file_type()?.is_dir() {
                assert!(prefix.is_empty(), "{name}: units/ nests one level at most");
                files_under(&entry.path(), &format!("{name}/"), out)?;
            } else {
                out.push(name);
            }
        }
        Ok(())
    }

    #[test]
    fn every_unit_file_in_the_repository_is_embedded() -> Result<(), std::io::Error> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../units");
        let mut files = Vec::new();
        files_under(&dir, "", &mut files)?;
        assert!(
            files.iter().any(|f| f.contains(".d/")),
            "the drop-ins in units/*.d/ were not found"
        );
        for name in &files {
            let on_disk = std::fs::read_to_string(dir.join(name))?;
            let embedded = UNITS.iter().find(|(n, _)| n == name).map(|(_, t)| *t);
            assert_eq!(
                embedded,
                Some(on_disk.as_str()),
                "{name} is not embedded in hostctl"
            );
        }
        Ok(())
    }

    #[test]
    fn random_hex_has_the_right_length() {
        let h = random_hex(16).unwrap_or_default();
        assert_eq!(h.len(), 32);
        assert!(h.chars().all(|c| c.is_ascii_hexdigit()));
    }
}
