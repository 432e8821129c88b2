//! Deploys against the real host: zero failed requests under load while
//! releases switch, automatic rollback of a broken release, artifacts that
//! try to escape their directory, concurrent deploys and a killed hostctl
//! or hostd mid-deploy.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use hostctl_tests::deploy::{Project, TarKind, control_raw, crafted_tar, digest, version_served};
use hostctl_tests::load::Load;
use hostctl_tests::{Sandbox, finish, poll};

/// Quick to fail in a trial, slow enough for a debug build to start.
const SERVICE: &str = "health_timeout = \"15s\"\n";
const RATE: u32 = 100;

fn outcome(summary: &[serde_json::Value], host: &str) -> String {
    summary
        .iter()
        .find(|h| h["host"] == host)
        .and_then(|h| h["outcome"].as_str())
        .unwrap_or("absent")
        .to_owned()
}

/// The release `current` names.
fn current_release(s: &Sandbox) -> Result<String> {
    let link = s.root_sh("readlink /srv/api/current")?;
    Ok(link.trim().trim_start_matches("releases/").to_owned())
}

fn lock_free(p: &Project, s: &Sandbox) -> Result<()> {
    poll(
        "the operations lock to be free",
        Duration::from_secs(120),
        || {
            let out = p.hostctl(s, &["lock", "status", "--json", "--host", &s.name])?;
            let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
            Ok(v[0]["answer"].get("holder").is_none().then_some(()))
        },
    )
}

fn ledger_versions(p: &Project, s: &Sandbox) -> Result<Vec<(String, String, String)>> {
    let r = p.releases(s)?;
    Ok(r["ledger"]
        .as_array()
        .context("no ledger")?
        .iter()
        .map(|e| {
            let f = |k: &str| e[k].as_str().unwrap_or_default().to_owned();
            (f("action"), f("version"), f("result"))
        })
        .collect())
}

pub fn deploys_under_load_fail_no_request_with_one_and_with_several_instances(
    s: &Sandbox,
) -> Result<()> {
    let p = Project::new(&[s], SERVICE)?;
    let load = Load::start(
        format!("{}:8080", s.address).parse()?,
        "/version",
        RATE,
        Duration::from_secs(600),
    )?;
    poll("the load to get answers", Duration::from_secs(30), || {
        Ok((load.ok_so_far() > 20).then_some(()))
    })?;
    for v in ["v1", "v2"] {
        p.stage(v, false)?;
        let (code, summary, stderr) = p.deploy(s, v, &[])?;
        ensure!(
            code == 0 && outcome(&summary, &s.name) == "ok",
            "deploy {v}: {summary:?} {stderr}"
        );
        ensure!(summary[0]["serving"] == v, "{summary:?}");
    }
    // Several instances: each restarts while the others serve.
    let out = p.hostctl(s, &["scale", "api=3"])?;
    ensure!(
        out.status.success(),
        "scale: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    p.stage("v3", false)?;
    // In text: the steps on stderr, the summary on stdout.
    let out = p.hostctl(s, &["deploy", "backend", "--version", "v3"])?;
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    ensure!(
        out.status.success() && stdout.contains(" ok "),
        "deploy v3 on 3 instances: {stdout} {stderr}"
    );
    for n in 1..=3 {
        ensure!(
            stderr.contains(&format!("restart api@{n}.service")),
            "instance {n} not restarted: {stderr}"
        );
    }
    // The same artifact again: nothing to upload, the release reused.
    let (code, summary, stderr) = p.deploy(s, "v3", &[])?;
    ensure!(code == 0, "repeat deploy: {summary:?} {stderr}");
    ensure!(
        summary[0].get("uploaded_bytes").is_none(),
        "the repeat uploaded again: {summary:?}"
    );
    let served_during = load.ok_so_far();
    poll("v3 to be served", Duration::from_secs(10), || {
        Ok((version_served(s)? == "v3").then_some(()))
    })?;
    let report = load.stop()?;
    ensure!(
        report.failed == 0,
        "{} of {} requests failed during the deploys: {:?}",
        report.failed,
        report.ok + report.failed,
        report.errors
    );
    ensure!(
        report.ok >= served_during && report.ok > 100,
        "too little load to prove anything: {report:?}"
    );
    for v in ["v1", "v2", "v3"] {
        ensure!(
            report.bodies.contains_key(v),
            "{v} never answered under load: {:?}",
            report.bodies
        );
    }
    let ledger = ledger_versions(&p, s)?;
    let deployed: Vec<&str> = ledger
        .iter()
        .filter(|e| e.2 == "ok")
        .map(|e| e.1.as_str())
        .collect();
    ensure!(deployed.ends_with(&["v1", "v2", "v3", "v3"]), "{ledger:?}");
    let out = p.hostctl(s, &["scale", "api=1"])?;
    ensure!(
        out.status.success(),
        "scale back: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

pub fn a_broken_release_rolls_back_by_itself_showing_why(s: &Sandbox) -> Result<()> {
    let p = Project::new(&[s], SERVICE)?;
    let before = version_served(s)?;
    let release = current_release(s)?;
    p.stage("v4-broken", true)?;
    let (code, summary, stderr) = p.deploy(s, "v4-broken", &[])?;
    ensure!(code == 1, "a broken deploy exited {code}: {summary:?}");
    ensure!(
        outcome(&summary, &s.name) == "rolled_back",
        "{summary:?} {stderr}"
    );
    ensure!(summary[0]["serving"] == release.as_str(), "{summary:?}");
    let error = summary[0]["error"].as_str().unwrap_or_default();
    ensure!(
        error.contains("api@1.service did not become healthy")
            && error.contains("last journal lines"),
        "the reason is not shown: {error}"
    );
    ensure!(
        version_served(s)? == before,
        "the old release is not serving"
    );
    ensure!(current_release(s)? == release, "current moved");
    let ledger = ledger_versions(&p, s)?;
    ensure!(
        ledger.last() == Some(&("deploy".into(), "v4-broken".into(), "rolled_back".into())),
        "{ledger:?}"
    );
    // Who and from where: the operator's user@machine, and the SSH client
    // address hostd read from the session itself.
    let last = p.releases(s)?["ledger"]
        .as_array()
        .and_then(|l| l.last().cloned())
        .unwrap_or_default();
    ensure!(
        last["by"].as_str().is_some_and(|b| b.contains('@')),
        "{last}"
    );
    ensure!(
        last["from"]
            .as_str()
            .is_some_and(|f| f.starts_with("10.231.0.")),
        "no SSH client address: {last}"
    );
    ensure!(
        last["digest"].as_str().is_some_and(|d| d.len() == 64),
        "{last}"
    );
    // The text form says it too, and the exit status is not 0.
    let out = p.hostctl(s, &["deploy", "backend", "--version", "v4-broken"])?;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(
        !out.status.success()
            && text.contains("rolled_back")
            && text.contains("did not become healthy"),
        "{text}"
    );
    lock_free(&p, s)
}

/// One tar entry: path, kind, and content or link target.
type Entry<'a> = (&'a str, TarKind, &'a str);

/// hostctl refuses the artifact before anything reaches the host; hostd
/// refuses the same content sent raw, and nothing is written outside the
/// release directory either way.
pub fn escaping_artifacts_are_refused_and_write_nothing_outside(s: &Sandbox) -> Result<()> {
    let cases: &[(&str, &[Entry])] = &[
        (
            "dotdot",
            &[
                ("bin", TarKind::Dir, ""),
                ("../../escape-dotdot", TarKind::File, "x"),
            ],
        ),
        (
            "absolute",
            &[("/etc/hostd-escape-absolute", TarKind::File, "x")],
        ),
        (
            "link",
            &[
                ("etc", TarKind::Symlink, "/etc"),
                ("etc/hostd-escape-link", TarKind::File, "x"),
            ],
        ),
        ("uplink", &[("up", TarKind::Symlink, "../../../etc")]),
    ];
    for (name, entries) in cases {
        let tar = crafted_tar(entries)?;
        let p = Project::with_artifact(&[s], &format!("{name}.tar"), SERVICE)?;
        std::fs::write(p.dir.path().join(format!("{name}.tar")), &tar)?;
        let out = p.hostctl(
            s,
            &["deploy", "backend", "--version", &format!("evil-{name}")],
        )?;
        let err = String::from_utf8_lossy(&out.stderr);
        ensure!(
            !out.status.success() && err.contains("refused"),
            "hostctl took the {name} artifact: {err}"
        );

        // The same bytes straight to hostd.
        let digest = digest(&tar);
        let compressed = zstd::encode_all(&tar[..], 3)?;
        let (status, body) = control_raw(
            s,
            "PUT",
            &format!("/v1/artifacts/{digest}"),
            "application/zstd",
            &compressed,
        )?;
        ensure!(
            status == 201,
            "upload of {name}: {status} {}",
            String::from_utf8_lossy(&body)
        );
        let request = serde_json::json!({
            "unit": "api@.service", "version": format!("evil-{name}"), "artifact": digest,
            "health": {"path": "/health", "timeout_seconds": 5}, "hook_timeout_seconds": 5, "keep": 5,
            "requested_by": "test@suite",
        });
        let (status, body) = control_raw(
            s,
            "POST",
            "/v1/deploy",
            "application/json",
            request.to_string().as_bytes(),
        )?;
        let body = String::from_utf8_lossy(&body);
        ensure!(
            status == 200 && body.contains("\"outcome\":\"failed\"") && body.contains("refused"),
            "hostd on {name}: {status} {body}"
        );
    }
    let leftovers = s.root_sh(
        "ls -d /srv/escape-dotdot /srv/api/escape-dotdot /etc/hostd-escape-absolute /etc/hostd-escape-link \
         /srv/api/releases/evil-* /srv/api/releases/.evil-* 2>/dev/null; true",
    )?;
    ensure!(
        leftovers.trim().is_empty(),
        "written outside the release directory: {leftovers}"
    );
    ensure!(version_served(s).is_ok(), "the API stopped serving");
    Ok(())
}

fn hold_hook() -> String {
    // Runs as the API's user: /tmp is shared with the test's root shell.
    format!(
        "{SERVICE}hook_timeout = \"90s\"\n[services.backend.hooks]\npre_switch = \"while [ ! -e /tmp/deploy-go ]; do sleep 0.1; done\"\n"
    )
}

fn wait_for_holder(p: &Project, s: &Sandbox, what: &str) -> Result<serde_json::Value> {
    poll(
        &format!("the lock held by {what}"),
        Duration::from_secs(60),
        || {
            let out = p.hostctl(s, &["lock", "status", "--json", "--host", &s.name])?;
            let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
            let holder = v[0]["answer"]["holder"].clone();
            Ok(holder["operation"]
                .as_str()
                .is_some_and(|o| o.contains(what))
                .then_some(holder))
        },
    )
}

pub fn concurrent_deploys_never_interleave_and_a_killed_hostctl_leaves_one_release(
    s: &Sandbox,
) -> Result<()> {
    let p = Project::new(&[s], &hold_hook())?;
    s.root_sh("rm -f /tmp/deploy-go")?;
    p.stage("v5", false)?;
    let mut first = p
        .command(s, &["deploy", "backend", "--version", "v5"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let holder = wait_for_holder(&p, s, "v5")?;
    ensure!(
        holder["requested_by"]
            .as_str()
            .is_some_and(|b| b.contains('@')),
        "{holder}"
    );
    ensure!(
        holder["since"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{holder}"
    );

    p.stage("v6", false)?;
    let out = p.hostctl(s, &["deploy", "backend", "--version", "v6"])?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(
        !out.status.success() && text.contains("operations lock is held") && text.contains("v5"),
        "the second deploy did not fail clearly: {text}"
    );
    let out = p.hostctl(s, &["lock", "release", "--host", &s.name])?;
    ensure!(
        !out.status.success() && String::from_utf8_lossy(&out.stdout).contains("not stale"),
        "a live lock was released: {out:?}"
    );

    // The operator's hostctl dies (its ssh with it); hostd goes on.
    first.kill()?;
    let _ = first.wait();
    s.root_sh("touch /tmp/deploy-go")?;
    lock_free(&p, s)?;
    ensure!(
        version_served(s)? == "v5",
        "after the killed hostctl the host serves {}",
        version_served(s)?
    );
    ensure!(s.root_sh("readlink /srv/api/current")?.trim() == "releases/v5");
    let ledger = ledger_versions(&p, s)?;
    ensure!(
        ledger.last() == Some(&("deploy".into(), "v5".into(), "ok".into())),
        "{ledger:?}"
    );

    // With --lock-wait the second waits its turn instead.
    s.root_sh("rm -f /tmp/deploy-go")?;
    let held = p
        .command(s, &["deploy", "backend", "--version", "v6"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    wait_for_holder(&p, s, "v6")?;
    p.stage("v7", false)?;
    let waiting = p
        .command(
            s,
            &[
                "deploy",
                "backend",
                "--version",
                "v7",
                "--lock-wait",
                "2m",
                "--json",
            ],
        )
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    s.root_sh("touch /tmp/deploy-go")?;
    let held = finish(held, "the holding deploy", Duration::from_secs(120))?;
    let out = finish(waiting, "the waiting deploy", Duration::from_secs(180))?;
    ensure!(held.status.success(), "the holding deploy failed");
    ensure!(
        out.status.success(),
        "the waiting deploy failed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    ensure!(version_served(s)? == "v7");
    let ledger = ledger_versions(&p, s)?;
    let tail: Vec<&str> = ledger.iter().rev().take(2).map(|e| e.1.as_str()).collect();
    ensure!(tail == ["v7", "v6"], "not one after the other: {ledger:?}");
    s.root_sh("rm -f /tmp/deploy-go")?;
    Ok(())
}

/// hostd itself killed between the switch and a healthy instance: the next
/// hostd returns to the release it came from.
pub fn a_killed_hostd_mid_switch_returns_to_the_previous_release(s: &Sandbox) -> Result<()> {
    let p = Project::new(&[s], "health_timeout = \"60s\"\n")?;
    let before = version_served(s)?;
    let release = current_release(s)?;
    p.stage("v8-broken", true)?;
    let deploy = p
        .command(s, &["deploy", "backend", "--version", "v8-broken"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    poll("the switch to v8-broken", Duration::from_secs(60), || {
        Ok((s.root_sh("readlink /srv/api/current")?.trim() == "releases/v8-broken").then_some(()))
    })?;
    // The main process only: hostd, not what it may have running.
    s.sigkill_hostd()?;
    let out = finish(
        deploy,
        "hostctl to notice hostd's death",
        Duration::from_secs(60),
    )?;
    ensure!(
        !out.status.success(),
        "hostctl reported success though hostd died"
    );
    poll(
        "the return to the previous release",
        Duration::from_secs(120),
        || {
            Ok(
                (current_release(s)? == release && version_served(s).is_ok_and(|v| v == before))
                    .then_some(()),
            )
        },
    )?;
    lock_free(&p, s)?;
    let out = p.hostctl(s, &["lock", "status", "--json", "--host", &s.name])?;
    ensure!(
        String::from_utf8_lossy(&out.stdout).contains("interrupted"),
        "lock status does not report the recovery"
    );
    let ledger = ledger_versions(&p, s)?;
    ensure!(
        ledger.last() == Some(&("recovery".into(), "v8-broken".into(), "rolled_back".into())),
        "{ledger:?}"
    );
    let out = p.hostctl(s, &["lock", "release", "--host", &s.name])?;
    ensure!(out.status.success(), "{out:?}");
    Ok(())
}

/// Three hosts, one at a time; the second refuses (its pre_switch hook
/// fails there): the third is never touched and serves the old release.
pub fn a_fleet_deploy_stops_at_the_failed_host(s: &Sandbox) -> Result<()> {
    let names = [format!("{}f2", s.name), format!("{}f3", s.name)];
    let booted: Vec<Result<Sandbox>> = std::thread::scope(|scope| {
        let handles: Vec<_> = names
            .iter()
            .map(|n| scope.spawn(move || Sandbox::up(n)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("boot thread panicked")))
            })
            .collect()
    });
    let mut hosts = Vec::new();
    for b in booted {
        hosts.push(b?);
    }
    let [second, third] = &hosts[..] else {
        anyhow::bail!("expected two more hosts");
    };
    for h in [second, third] {
        poll("the API on the new host", Duration::from_secs(90), || {
            Ok(version_served(h).ok())
        })?;
    }
    let old = version_served(third)?;
    second.root_sh("touch /etc/refuse-deploys")?;
    let service = format!(
        "{SERVICE}[services.backend.hooks]\npre_switch = \"if [ -e /etc/refuse-deploys ]; then echo this host refuses deploys >&2; exit 3; fi\"\n"
    );
    let p = Project::new(&[s, second, third], &service)?;
    p.stage("v9", false)?;
    let (code, summary, stderr) = p.deploy(s, "v9", &["--batch-size", "1"])?;
    ensure!(code == 1, "a fleet deploy with a failed host exited {code}");
    let got: Vec<String> = [&s.name, &second.name, &third.name]
        .iter()
        .map(|h| outcome(&summary, h))
        .collect();
    ensure!(
        got == ["ok", "failed", "skipped"],
        "{got:?} {summary:?} {stderr}"
    );
    let error = summary[1]["error"].as_str().unwrap_or_default();
    ensure!(
        error.contains("pre_switch") && error.contains("this host refuses deploys"),
        "{error}"
    );
    ensure!(version_served(s)? == "v9");
    ensure!(version_served(second)? == old, "the failed host changed");
    ensure!(version_served(third)? == old, "the skipped host changed");
    let (code, statuses) = s.status_json_with(&p.config)?;
    ensure!(
        code == 0 && statuses.len() == 3,
        "fleet status: {code} {statuses:?}"
    );
    Ok(())
}
