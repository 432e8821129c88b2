//! Scheduled jobs and one-shot tasks against the real host: a minutely job
//! runs by itself, a failing one degrades health naming it, `jobs run`
//! streams and returns the exit status, a service's job runs in its
//! release as its user, removed jobs lose their units; a failing
//! `pre_switch` migration aborts a deploy with the old release serving.

use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use hostctl_tests::deploy::{Project, version_served};
use hostctl_tests::{Sandbox, finish, http_get, poll};

const JOBS_TOML: &str = "[jobs.tick]
command = \"/bin/echo tick from $HOSTD_JOB\"
schedule = \"minutely\"
[jobs.tock]
command = \"/bin/echo tock\"
schedule = \"minutely\"
overlap = true
[jobs.slow]
command = \"/bin/sleep 3; echo slept\"
schedule = \"2099-01-01\"
overlap = true
[jobs.broken]
command = \"/bin/echo about to fail; exit 3\"
schedule = \"2099-01-01\"
timeout = \"30s\"
[jobs.whoami]
service = \"api\"
command = \"pwd; id -un\"
schedule = \"Mon *-*-* 04:00:00\"
randomized_delay = \"10m\"";

fn jobs_json(s: &Sandbox) -> Result<Vec<serde_json::Value>> {
    let out = s.hostctl(&["jobs", "--json"])?;
    ensure!(
        out.status.success(),
        "jobs --json: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("jobs --json: {}", String::from_utf8_lossy(&out.stdout)))?;
    // One host: its answer's jobs.
    let jobs = v[0]["answer"]["jobs"]
        .as_array()
        .or_else(|| v["jobs"].as_array());
    Ok(jobs.context(format!("no jobs in {v}"))?.clone())
}

fn job<'a>(jobs: &'a [serde_json::Value], name: &str) -> Result<&'a serde_json::Value> {
    jobs.iter()
        .find(|j| j["name"] == name)
        .with_context(|| format!("no job {name} in {jobs:?}"))
}

pub fn jobs_run_on_schedule_and_by_hand_and_failures_degrade_health(s: &Sandbox) -> Result<()> {
    s.with_hostd_config("true", JOBS_TOML, "true", || {
        // The generated units are ones systemd itself finds sound.
        let verify = s.root_sh_output(
            "cd /etc/systemd/system && systemd-analyze verify hostd-job-tick.service hostd-job-tick.timer hostd-job-whoami.service hostd-job-tock.service hostd-job-tock.timer 2>&1",
        )?;
        ensure!(verify.status.success(), "verify: {}", String::from_utf8_lossy(&verify.stdout));
        let listed = jobs_json(s)?;
        ensure!(job(&listed, "whoami")?["next_run"].as_str().is_some(), "{listed:?}");

        // By hand: output streamed, the job's exit status returned.
        let out = s.hostctl(&["jobs", "run", "broken"])?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        ensure!(out.status.code() == Some(3), "jobs run broken exited {:?}: {stdout} {}", out.status.code(), String::from_utf8_lossy(&out.stderr));
        ensure!(stdout.contains("about to fail"), "output not streamed: {stdout}");
        let health = poll("health to name the failed job", Duration::from_secs(30), || {
            let h = http_get(s.health_addr()?, "/health")?;
            Ok((h.body.contains("job broken") && h.body.contains("degraded")).then_some(h.body))
        })?;
        ensure!(health.contains("exit status 3"), "{health}");
        let metrics = http_get(s.health_addr()?, "/metrics")?.body;
        ensure!(metrics.contains("hostd_job_last_run_success{job=\"broken\"} 0"), "{metrics}");
        let broken = job(&jobs_json(s)?, "broken")?.clone();
        ensure!(broken["last_run"]["exit_code"] == 3 && broken["last_run"]["trigger"] == "manual", "{broken}");

        // A service's job: in the current release, as the service's user.
        let release = s.root_sh("readlink -f /srv/api/current")?.trim().to_owned();
        let out = s.hostctl(&["jobs", "run", "whoami"])?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        ensure!(out.status.success(), "jobs run whoami: {stdout} {}", String::from_utf8_lossy(&out.stderr));
        let lines: Vec<&str> = stdout.lines().map(str::trim).collect();
        ensure!(lines.contains(&release.as_str()) && lines.contains(&"api"), "not in {release} as api: {stdout}");

        let unknown = s.hostctl(&["jobs", "run", "nope"])?;
        let err = String::from_utf8_lossy(&unknown.stderr);
        ensure!(!unknown.status.success() && err.contains("broken, slow, tick, tock, whoami"), "{err}");

        // Without overlap a second run by hand is refused while one runs;
        // with it, two go side by side and each is recorded.
        let first = s
            .hostctl_command(&["jobs", "run", "slow"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let second = s.hostctl(&["jobs", "run", "slow"])?;
        let first = finish(first, "the first run of slow", Duration::from_secs(60))?;
        for (which, out) in [("first", &first), ("second", &second)] {
            let text = String::from_utf8_lossy(&out.stdout);
            ensure!(out.status.success() && text.contains("slept"), "{which} run of slow: {text}");
        }
        let slow_runs = s.root_sh("cat /var/lib/hostd/jobs/slow.jsonl")?;
        ensure!(slow_runs.matches("\"manual\"").count() == 2, "{slow_runs}");
        let left = s.root_sh("systemctl list-units --all --no-legend 'hostd-job-slow@*'")?;
        ensure!(left.trim().is_empty(), "recorded instances stay loaded: {left}");

        // By themselves: the minutely timers fire within about a minute, the
        // overlapping job's as an instance.
        let ran = |t: &serde_json::Value| t["last_run"]["result"] == "success" && t["last_run"]["trigger"] == "timer";
        let (tick, tock) = poll("the minutely jobs to run by themselves", Duration::from_secs(150), || {
            let jobs = jobs_json(s)?;
            let (tick, tock) = (job(&jobs, "tick")?.clone(), job(&jobs, "tock")?.clone());
            Ok((ran(&tick) && ran(&tock)).then_some((tick, tock)))
        })?;
        ensure!(tick["health"] == "healthy" && tock["health"] == "healthy", "{tick} {tock}");
        let said = s.root_sh("journalctl -o cat -u 'hostd-job-tock@*'")?;
        ensure!(said.contains("tock"), "{said}");

        // A job that will not run when it should (its timer stopped)
        // degrades health too, until it is back.
        s.root_sh("systemctl stop hostd-job-whoami.timer")?;
        let stopped = poll("health to name the stopped schedule", Duration::from_secs(60), || {
            let h = http_get(s.health_addr()?, "/health")?.body;
            Ok(h.contains("job whoami: its timer is inactive").then_some(()))
        });
        if let Err(e) = stopped {
            let said = s.root_sh("systemctl show -P ActiveState hostd-job-whoami.timer; journalctl -u hostd -o cat -n 20")?;
            let listed = s.hostctl(&["jobs"])?;
            s.root_sh("systemctl start hostd-job-whoami.timer")?;
            return Err(e.context(format!(
                "jobs: {}\nhost: {said}",
                String::from_utf8_lossy(&listed.stdout)
            )));
        }
        s.root_sh("systemctl start hostd-job-whoami.timer")?;
        let said = s.root_sh("journalctl -o cat -u hostd-job-tick.service")?;
        ensure!(said.contains("tick from tick"), "{said}");
        Ok(())
    })?;
    // Back to the shipped hostd.toml: hostd removes the jobs' units soon
    // after its start.
    let left = poll(
        "the removed jobs' units to go",
        Duration::from_secs(60),
        || {
            let left = s.root_sh("ls /etc/systemd/system | grep hostd-job- || true")?;
            Ok(left.trim().is_empty().then_some(()))
        },
    );
    if let Err(e) = left {
        let said = s.root_sh("journalctl -u hostd -o cat -n 30 | grep -i job || true")?;
        return Err(e.context(format!("hostd said:\n{said}")));
    }
    let state = s.unit_property("hostd-job-tick.timer", "ActiveState")?;
    ensure!(state == "inactive", "the removed timer is {state}");
    let health = http_get(s.health_addr()?, "/health")?.body;
    ensure!(!health.contains("job "), "{health}");
    Ok(())
}

const TASKS: &str = "health_timeout = \"15s\"
[services.backend.tasks.migrate]
command = \"echo migrating to $HOSTD_RELEASE; exit 4\"
pre_switch = true
[services.backend.tasks.hello]
command = \"echo hello from $HOSTD_RELEASE as $(id -un)\"";

pub fn a_failed_migration_aborts_the_deploy_and_run_executes_tasks_by_hand(
    s: &Sandbox,
) -> Result<()> {
    let p = Project::new(&[s], TASKS)?;
    let before = version_served(s)?;
    let release = s.root_sh("readlink /srv/api/current")?;
    let release = release.trim().trim_start_matches("releases/").to_owned();
    p.stage("m2", false)?;
    let (code, summary, stderr) = p.deploy(s, "m2", &[])?;
    ensure!(
        code == 1 && summary[0]["outcome"] == "failed",
        "{summary:?} {stderr}"
    );
    let error = summary[0]["error"].as_str().unwrap_or_default();
    ensure!(
        error.contains("task migrate") && error.contains("exit status 4"),
        "{summary:?}"
    );
    ensure!(
        error.contains("migrating to m2"),
        "the task's output is not shown: {summary:?}"
    );
    ensure!(
        version_served(s)? == before,
        "the old release no longer serves"
    );
    let current = s.root_sh("readlink /srv/api/current")?;
    ensure!(!current.contains("m2"), "current switched: {current}");

    let out = p.hostctl(s, &["run", "backend", "hello"])?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success(),
        "run hello: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(
        stdout.contains(&format!("hello from {release} as api")),
        "{stdout}"
    );
    let out = p.hostctl(s, &["run", "backend", "migrate"])?;
    ensure!(
        out.status.code() == Some(4),
        "run migrate exited {:?}",
        out.status.code()
    );
    ensure!(String::from_utf8_lossy(&out.stdout).contains("migrating to"));
    let out = p.hostctl(s, &["run", "backend", "nope"])?;
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success() && err.contains("hello") && err.contains("migrate"),
        "{err}"
    );
    Ok(())
}
