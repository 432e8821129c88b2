//! Fixtures for the backup and restore trials: hostd.toml with `[backup]`
//! on the stand-in's S3 (a fresh prefix per trial, so trials never share a
//! repository), and the stock `restic` CLI as the independent reader.

use std::process::Command;

use anyhow::{Context, Result, ensure};

use crate::Sandbox;

const CONFIG: &str = "/etc/hostd/hostd.toml";
const PREFIX: &str = "/hostd/sandbox/";
const MOTO: &str = "http://10.231.0.2:5000";
const BUCKET: &str = "hostd-sandbox";

/// This trial's repository, as restic names it, and its password.
pub struct Repo {
    pub url: String,
    pub password: String,
    pub hostname: String,
    /// `backup.prefix` as configured (`{hostname}` unreplaced).
    pub prefix: String,
}

/// A shell command appending `[secrets]` (the sandbox's SSM prefix, the
/// backup password) and `[backup]` (the sandbox's bucket, `prefix`, then
/// `extra` lines) to hostd.toml. Single quotes for the shell: `extra` must
/// not hold one.
pub fn append_backup_config(prefix: &str, extra: &str) -> String {
    let text = format!(
        "[secrets]\npath = \"{PREFIX}\"\nbackup_password = \"backup_password\"\n\
         [backup]\nbucket = \"{BUCKET}\"\nprefix = \"{prefix}\"\n{extra}"
    );
    format!("printf '%s\\n' '{text}' >> {CONFIG}")
}

impl Repo {
    pub fn restic(&self, args: &[&str]) -> Result<String> {
        Ok(String::from_utf8_lossy(&self.restic_bytes(args)?).into_owned())
    }

    pub fn restic_bytes(&self, args: &[&str]) -> Result<Vec<u8>> {
        let out = Command::new("restic")
            .args(["--no-cache", "-r", &self.url])
            .args(args)
            .env("RESTIC_PASSWORD", &self.password)
            .env("AWS_ACCESS_KEY_ID", "sandbox")
            .env("AWS_SECRET_ACCESS_KEY", "sandbox")
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .output()
            .context("run restic")?;
        ensure!(
            out.status.success(),
            "restic {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(out.stdout)
    }
}

impl Sandbox {
    /// Runs `f` with `[backup]` configured (backing up `paths` besides
    /// PostgreSQL and Redis, plus `extra` lines of hostd.toml), then puts
    /// hostd.toml back and restarts hostd, whatever `f` did.
    pub fn with_backups<T>(
        &self,
        name: &str,
        paths: &[&str],
        extra: &str,
        f: impl FnOnce(&Repo) -> Result<T>,
    ) -> Result<T> {
        let password = self
            .ssm_values(PREFIX)?
            .remove("backup_password")
            .context("backup_password is not in moto")?;
        let hostname = self.root_sh("hostname")?.trim().to_owned();
        let trial = format!("{name}-{:x}", std::process::id());
        let paths = paths
            .iter()
            .map(|p| format!("\"{p}\""))
            .collect::<Vec<_>>()
            .join(", ");
        let prefix = format!("{trial}/{{hostname}}");
        let edit = append_backup_config(&prefix, &format!("paths = [{paths}]\n{extra}"));
        self.root_sh(&format!(
            "cp -p {CONFIG} {CONFIG}.good && {edit} && systemctl restart hostd"
        ))?;
        let repo = Repo {
            url: format!("s3:{MOTO}/{BUCKET}/{trial}/{hostname}"),
            password,
            hostname,
            prefix,
        };
        let result = self.wait_reconciled().and_then(|()| f(&repo));
        let restored = self.root_sh(&format!(
            "mv {CONFIG}.good {CONFIG} && systemctl reset-failed hostd; systemctl restart hostd"
        ));
        let value = result?;
        restored?;
        self.wait_reconciled()?;
        Ok(value)
    }
}
