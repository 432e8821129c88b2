//! Trials that need more in hostd.toml: lines appended for the trial, the
//! shipped file put back afterwards whatever happened.

use anyhow::Result;

use crate::Sandbox;

pub const HOSTD_TOML: &str = "/etc/hostd/hostd.toml";

impl Sandbox {
    /// SIGKILL to hostd's main process, as a crash would: systemd then
    /// cleans up the rest of its cgroup and restarts it. (`systemctl kill`
    /// signals every process of the unit, which some kernels refuse inside
    /// a container with EIO.)
    pub fn sigkill_hostd(&self) -> Result<()> {
        self.root_sh("kill -KILL $(systemctl show -P MainPID hostd.service)")?;
        Ok(())
    }

    /// The load check sees the machine the sandbox runs on (a container
    /// shares its load average), which the suite's own builds drive up:
    /// the trials' health verdicts must not depend on it.
    pub fn ignore_host_load(&self) -> Result<()> {
        self.root_sh(&format!(
            "printf '\\n[checks.load]\\ndegraded_per_cpu = 1000.0\\nunhealthy_per_cpu = 1000.0\\n' >> {HOSTD_TOML} && systemctl restart hostd"
        ))?;
        self.wait_reconciled()
    }

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
