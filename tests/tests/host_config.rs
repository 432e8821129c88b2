//! Issue 20 (4): hostd applies a new hostd.toml in place. `systemctl
//! reload hostd` installs a new job's timer and starts a new app service
//! without restarting hostd or any service whose settings did not change;
//! a removed job loses its units; a file that does not validate is refused
//! with the running configuration kept; a configuration under which a
//! service does not come up is put back by hostd itself.

use std::time::Duration;

use anyhow::{Result, ensure};
use hostctl_tests::config::HOSTD_TOML;
use hostctl_tests::{Sandbox, http_get, poll};

const PORT: u16 = 8310;

const JOB: &str = "[jobs.tick]
command = \"/bin/echo tick\"
schedule = \"hourly\"";

fn web(command: &str) -> String {
    format!(
        "[services.cfgweb]
command = \"{command}\"
port = {PORT}
health_path = \"/\"
health_timeout = \"10s\"
release_dir = \"/srv/cfgweb\""
    )
}

const SERVE: &str = "python3 -m http.server --bind 127.0.0.1 $PORT";

/// Lines hostd logged about reloads since it started.
fn reloads(s: &Sandbox) -> Result<Vec<String>> {
    let log = s.root_sh(
        "journalctl -o cat _SYSTEMD_INVOCATION_ID=$(systemctl show -P InvocationID hostd.service) | grep -E 'reload (finished|refused)' || true",
    )?;
    Ok(log.lines().map(str::to_owned).collect())
}

/// Writes the good file plus `extra`, reloads, and waits for hostd's
/// verdict on it: the new log line.
fn reload_with(s: &Sandbox, extra: &str) -> Result<String> {
    let before = reloads(s)?.len();
    s.root_sh(&format!(
        "cp -p {HOSTD_TOML}.good {HOSTD_TOML} && printf '%s\\n' '{extra}' >> {HOSTD_TOML} && systemctl reload hostd"
    ))?;
    poll(
        "hostd's verdict on the reload",
        Duration::from_secs(90),
        || {
            let lines = reloads(s)?;
            Ok(lines.get(before).cloned())
        },
    )
}

pub(crate) fn pid(s: &Sandbox, unit: &str) -> Result<String> {
    s.unit_property(unit, "MainPID")
}

pub fn a_reload_applies_in_place_and_puts_back_what_does_not_come_up(s: &Sandbox) -> Result<()> {
    s.root_sh(&format!(
        "cp -p {HOSTD_TOML} {HOSTD_TOML}.good && mkdir -p /srv/cfgweb/r1 && echo first > /srv/cfgweb/r1/index.html && ln -sfn r1 /srv/cfgweb/current"
    ))?;
    let result = reload_scenario(s);
    let restored = s.root_sh(&format!(
        "mv {HOSTD_TOML}.good {HOSTD_TOML}; rm -f {HOSTD_TOML}.rejected; systemctl restart hostd; rm -rf /srv/cfgweb"
    ));
    result?;
    restored?;
    s.wait_reconciled()
}

fn reload_scenario(s: &Sandbox) -> Result<()> {
    let hostd = pid(s, "hostd.service")?;
    let redis = pid(s, "redis-server.service")?;
    let api = pid(s, "api@1.service")?;

    // A job and an app on a port added: in force without a restart.
    let verdict = reload_with(s, &format!("{JOB}\n{}", web(SERVE)))?;
    ensure!(verdict.contains("reload finished: applied"), "{verdict}");
    ensure!(
        s.unit_property("hostd-job-tick.timer", "ActiveState")? == "active",
        "the new job's timer is not active"
    );
    let served = http_get(format!("{}:{PORT}", s.address).parse()?, "/index.html")?;
    ensure!(
        served.status == 200 && served.body.trim() == "first",
        "{} {}",
        served.status,
        served.body
    );
    ensure!(pid(s, "hostd.service")? == hostd, "hostd was restarted");
    ensure!(
        pid(s, "redis-server.service")? == redis,
        "redis was restarted"
    );
    ensure!(pid(s, "api@1.service")? == api, "the api was restarted");
    let web_pid = pid(s, "hostd-app-cfgweb@1.service")?;

    // The job removed: its units go; the app, unchanged, keeps running.
    let verdict = reload_with(s, &web(SERVE))?;
    ensure!(verdict.contains("reload finished: applied"), "{verdict}");
    let left = s.root_sh("ls /etc/systemd/system | grep -c hostd-job-tick || true")?;
    ensure!(left.trim() == "0", "the removed job's units stayed: {left}");
    ensure!(
        pid(s, "hostd-app-cfgweb@1.service")? == web_pid,
        "the unchanged app restarted"
    );

    // A file that does not validate: refused, nothing changes.
    let verdict = reload_with(s, &format!("{}\nbogus = 1", web(SERVE)))?;
    ensure!(
        verdict.contains("reload refused") && verdict.contains("bogus"),
        "{verdict}"
    );
    ensure!(
        pid(s, "hostd-app-cfgweb@1.service")? == web_pid,
        "a refused file restarted the app"
    );
    ensure!(
        http_get(s.health_addr()?, "/health")?.status == 200,
        "health after a refused file"
    );

    // A command that cannot serve: the new configuration is put back.
    let verdict = reload_with(s, &web("/bin/false"))?;
    ensure!(
        verdict.contains("reload finished: rolled_back"),
        "{verdict}"
    );
    let file = s.root_sh(&format!("cat {HOSTD_TOML}; ls {HOSTD_TOML}.rejected"))?;
    ensure!(
        file.contains("http.server") && !file.contains("/bin/false"),
        "the previous file was not put back: {file}"
    );
    let served = poll("the app to serve again", Duration::from_secs(30), || {
        let r = http_get(format!("{}:{PORT}", s.address).parse()?, "/index.html")?;
        Ok((r.status == 200).then_some(r.body))
    })?;
    ensure!(served.trim() == "first", "{served}");

    // The app removed: stopped, its units gone, its port closed.
    let verdict = reload_with(s, "")?;
    ensure!(verdict.contains("reload finished: applied"), "{verdict}");
    let left = s.root_sh("ls /etc/systemd/system | grep -c cfgweb || true")?;
    ensure!(left.trim() == "0", "the removed app's units stayed: {left}");
    ensure!(
        http_get(format!("{}:{PORT}", s.address).parse()?, "/").is_err(),
        "the removed app's port still accepts connections"
    );
    ensure!(pid(s, "hostd.service")? == hostd, "hostd was restarted");
    Ok(())
}

/// The operator's repository: hostctl.toml naming the environment's
/// hostd.toml, and that file.
pub(crate) struct Repository {
    dir: tempfile::TempDir,
    pub(crate) hostctl_toml: std::path::PathBuf,
}

impl Repository {
    pub(crate) fn of(s: &Sandbox, hostd_toml: &str) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let hostctl = std::fs::read_to_string(&s.hostctl_toml)?.replace(
            "[environments.sandbox]\n",
            "[environments.sandbox]\nhostd_config = \"hostd/sandbox.toml\"\n",
        );
        ensure!(hostctl.contains("hostd_config"), "{hostctl}");
        let hostctl_toml = dir.path().join("hostctl.toml");
        std::fs::write(&hostctl_toml, hostctl)?;
        std::fs::create_dir(dir.path().join("hostd"))?;
        let repo = Self { dir, hostctl_toml };
        repo.declare(hostd_toml)?;
        Ok(repo)
    }

    pub(crate) fn declare(&self, text: &str) -> Result<()> {
        Ok(std::fs::write(
            self.dir.path().join("hostd/sandbox.toml"),
            text,
        )?)
    }

    pub(crate) fn hostctl(&self, s: &Sandbox, args: &[&str]) -> Result<std::process::Output> {
        s.hostctl_with_config(&self.hostctl_toml, args)
    }
}

pub(crate) fn text(o: &std::process::Output) -> String {
    format!(
        "exit {:?}\n{}\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

pub fn hostctl_apply_converges_the_host_to_the_repository_and_puts_back_a_failure(
    s: &Sandbox,
) -> Result<()> {
    s.root_sh(&format!(
        "cp -p {HOSTD_TOML} {HOSTD_TOML}.good && mkdir -p /srv/cfgweb/r1 && echo first > /srv/cfgweb/r1/index.html && ln -sfn r1 /srv/cfgweb/current"
    ))?;
    let result = s
        .root_sh(&format!("cat {HOSTD_TOML}"))
        .and_then(|on_host| Ok((Repository::of(s, &on_host)?, on_host)))
        .and_then(|(repo, on_host)| apply_scenario(s, &repo, &on_host, true));
    let restored = s.root_sh(&format!(
        "mv {HOSTD_TOML}.good {HOSTD_TOML}; systemctl restart hostd; rm -rf /srv/cfgweb"
    ));
    result?;
    restored?;
    s.wait_reconciled()
}

/// Run against a host whose configuration is `repo`'s `on_host`, with
/// /srv/cfgweb/current holding an index.html of `first`. `aws`: the host
/// reaches the AWS stand-in ([secrets] and [backup] are tried too).
pub(crate) fn apply_scenario(
    s: &Sandbox,
    repo: &Repository,
    on_host: &str,
    aws: bool,
) -> Result<()> {
    let hostd = pid(s, "hostd.service")?;
    let api = pid(s, "api@1.service")?;

    // The repository says what the host runs: no drift.
    let diff = repo.hostctl(s, &["diff"])?;
    ensure!(diff.status.code() == Some(0), "{}", text(&diff));

    // A job and an app added in the repository: diff shows them, exit 1.
    let with_job = format!("{on_host}\n{JOB}\n{}\n", web(SERVE));
    repo.declare(&with_job)?;
    let diff = repo.hostctl(s, &["diff"])?;
    let shown = text(&diff);
    ensure!(diff.status.code() == Some(1), "{shown}");
    ensure!(
        shown.contains("jobs.tick.schedule")
            && shown.contains("cfgweb")
            && shown.contains("hostd-job-tick.timer"),
        "{shown}"
    );
    let json = repo.hostctl(s, &["diff", "--json"])?;
    let plans: serde_json::Value = serde_json::from_slice(&json.stdout)?;
    let actions = plans[0]["plan"]["actions"].to_string();
    ensure!(
        actions.contains("\"start\"") && actions.contains("cfgweb"),
        "{plans}"
    );

    // A member of the control group (not root) may plan but not apply.
    let as_operator = repo.hostctl_toml.with_file_name("operator.toml");
    std::fs::write(
        &as_operator,
        std::fs::read_to_string(&repo.hostctl_toml)?
            .replace("[ssh]\n", "[ssh]\nroot_hostd_path = \"hostd\"\n"),
    )?;
    let refused = s.hostctl_with_config(&as_operator, &["apply", "--yes"])?;
    let shown = text(&refused);
    ensure!(
        refused.status.code() == Some(1) && shown.contains("needs root"),
        "{shown}"
    );
    ensure!(
        !s.root_sh(&format!("cat {HOSTD_TOML}"))?.contains("cfgweb"),
        "a refused apply changed the host's file"
    );

    // Applied: the file on the host is the repository's under a header,
    // the timer runs, the app serves, nothing else restarted.
    let apply = repo.hostctl(s, &["apply", "--yes"])?;
    ensure!(apply.status.success(), "{}", text(&apply));
    let file = s.root_sh(&format!("head -1 {HOSTD_TOML}; stat -c %a {HOSTD_TOML}"))?;
    ensure!(
        file.contains("Written by `hostctl apply` from hostd/sandbox.toml") && file.contains("600"),
        "{file}"
    );
    ensure!(
        s.unit_property("hostd-job-tick.timer", "ActiveState")? == "active",
        "timer"
    );
    let served = http_get(format!("{}:{PORT}", s.address).parse()?, "/index.html")?;
    ensure!(served.status == 200, "the new app: {}", served.status);
    ensure!(pid(s, "hostd.service")? == hostd, "hostd was restarted");
    ensure!(pid(s, "api@1.service")? == api, "the api was restarted");
    let diff = repo.hostctl(s, &["diff"])?;
    ensure!(
        diff.status.code() == Some(0),
        "drift after apply: {}",
        text(&diff)
    );

    // The job removed from the repository: its units go.
    let declared = format!("{on_host}\n{}\n", web(SERVE));
    repo.declare(&declared)?;
    let apply = repo.hostctl(s, &["apply", "--yes"])?;
    ensure!(apply.status.success(), "{}", text(&apply));
    let left = s.root_sh("ls /etc/systemd/system | grep -c hostd-job-tick || true")?;
    ensure!(left.trim() == "0", "the removed job's units stayed: {left}");

    // A bad file is refused naming the repository's path and the key;
    // the host's file stays.
    repo.declare(&format!("{declared}bogus_key = 1\n"))?;
    let apply = repo.hostctl(s, &["apply", "--yes"])?;
    let shown = text(&apply);
    ensure!(apply.status.code() == Some(2), "{shown}");
    ensure!(
        shown.contains("hostd/sandbox.toml:") && shown.contains("bogus_key"),
        "{shown}"
    );
    ensure!(
        !s.root_sh(&format!("cat {HOSTD_TOML}"))?
            .contains("bogus_key"),
        "the bad file reached the host"
    );

    // An app that cannot come up: hostd puts the previous one back.
    repo.declare(&declared.replace(SERVE, "/bin/false"))?;
    let apply = repo.hostctl(s, &["apply", "--yes", "--health-timeout", "20s"])?;
    let shown = text(&apply);
    ensure!(apply.status.code() == Some(1), "{shown}");
    ensure!(
        shown.contains("rolled_back") || shown.contains("rolled back"),
        "{shown}"
    );
    let file = s.root_sh(&format!("cat {HOSTD_TOML}"))?;
    ensure!(
        file.contains("http.server") && !file.contains("/bin/false"),
        "{file}"
    );

    // The ledger has both, newest last, with who asked.
    let applies = repo.hostctl(s, &["applies", "--json"])?;
    ensure!(applies.status.success(), "{}", text(&applies));
    let ledger = String::from_utf8_lossy(&applies.stdout).into_owned();
    let applied = ledger.find("\"applied\"");
    let rolled = ledger.rfind("\"rolled_back\"");
    ensure!(
        applied.is_some() && rolled.is_some() && applied < rolled,
        "{ledger}"
    );
    ensure!(
        ledger.contains("hostd/sandbox.toml") && ledger.contains('@'),
        "{ledger}"
    );
    // status says what the host runs and how it came to be.
    let (_, status) = s.status_json_with(&repo.hostctl_toml)?;
    let last = &status[0]["status"]["last_apply"];
    ensure!(
        last["outcome"] == "rolled_back" && last["source"] == "hostd/sandbox.toml",
        "{status:?}"
    );
    if !aws {
        return Ok(());
    }
    // [secrets] and [backup] added in place: fetched, and a backup runs,
    // with no restart of hostd; then taken away again.
    let prefix = format!("apply-{:x}/{{hostname}}", std::process::id());
    let with_backup = format!(
        "{declared}\n[secrets]\npath = \"/hostd/sandbox/\"\nbackup_password = \"backup_password\"\n\
         [backup]\nbucket = \"hostd-sandbox\"\nprefix = \"{prefix}\"\n"
    );
    repo.declare(&with_backup)?;
    let apply = repo.hostctl(s, &["apply", "--yes"])?;
    ensure!(apply.status.success(), "{}", text(&apply));
    let listed = repo.hostctl(s, &["secrets", "list"])?;
    ensure!(
        listed.status.success() && text(&listed).contains("backup_password"),
        "{}",
        text(&listed)
    );
    let backup = repo.hostctl(s, &["backup", "now", "--wait"])?;
    ensure!(backup.status.success(), "{}", text(&backup));
    repo.declare(&declared)?;
    let apply = repo.hostctl(s, &["apply", "--yes"])?;
    ensure!(apply.status.success(), "{}", text(&apply));
    let backups = repo.hostctl(s, &["backups"])?;
    ensure!(
        !backups.status.success() && text(&backups).contains("not configured"),
        "{}",
        text(&backups)
    );
    ensure!(pid(s, "hostd.service")? == hostd, "hostd was restarted");
    Ok(())
}
