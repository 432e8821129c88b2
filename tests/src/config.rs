//! Trials that need more in hostd.toml: lines appended for the trial, the
//! shipped file put back afterwards whatever happened.

use anyhow::Result;

use crate::Sandbox;

pub const HOSTD_TOML: &str = "/etc/hostd/hostd.toml";

impl Sandbox {
    /// Runs `setup` (a root shell script), appends `extra` to hostd.toml,
    /// restarts hostd and runs `f`; then puts hostd.toml back, runs
    /// `cleanup` and restarts hostd, whatever `f` did.
    pub fn with_hostd_config<T>(
        &self,
        setup: &str,
        extra: &str,
        cleanup: &str,
        f: impl FnOnce() -> Result<T>,
    ) -> Result<T> {
        let edit = format!("printf '%s\\n' '{extra}' >> {HOSTD_TOML}");
        let prepared = self.root_sh(&format!(
            "cp -p {HOSTD_TOML} {HOSTD_TOML}.good && {setup}\n{edit} && systemctl restart hostd"
        ));
        let result = prepared
            .and_then(|_| self.wait_reconciled())
            .and_then(|()| f());
        let restored = self.root_sh(&format!(
            "mv {HOSTD_TOML}.good {HOSTD_TOML}; {cleanup}\nsystemctl reset-failed hostd; systemctl restart hostd"
        ));
        let value = result?;
        restored?;
        self.wait_reconciled()?;
        Ok(value)
    }
}
