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

    /// The load and disk checks see the machine the sandbox runs on: a
    /// container shares its load average, and its / and /data are folders
    /// on that machine's disk, which the suite's own builds drive up and
    /// fill (a CI machine at 86% degraded every host). The trials' health
    /// verdicts must not depend on it. `[checks.disk]` is written last so
    /// a trial can append its own `paths` to that table.
    pub fn ignore_the_machine_beneath(&self) -> Result<()> {
        self.root_sh(&format!(
            "printf '\\n[checks.load]\\ndegraded_per_cpu = 1000.0\\nunhealthy_per_cpu = 1000.0\\n\\n[checks.disk]\\ndegraded_percent = 98\\nunhealthy_percent = 99\\n' >> {HOSTD_TOML} && systemctl restart hostd"
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
