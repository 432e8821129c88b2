//! Issue 18 (1, 3, 6): apps declared in hostd.toml by what they are, with
//! no unit file written by hand. A WSGI app served by Debian's gunicorn (a
//! server this project did not write) on `$PORT`, gated on its own health
//! path; a Python worker with no port. Neither starts before its first
//! release; a broken release rolls back by itself; a runtime killed by the
//! system call filter is named as such; the units go with the config.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use hostctl_tests::deploy::Project;
use hostctl_tests::load::Load;
use hostctl_tests::{Sandbox, http_get, poll};

/// The app's public port, served by hostd's front.
const WEB_PORT: u16 = 8300;
/// Requests per second through the front while it changes.
const RATE: u32 = 250;

const APPS_TOML: &str = "[services.web]
command = \"gunicorn --bind 127.0.0.1:$PORT --workers 2 app:application\"
port = 8300
health_path = \"/up\"
health_timeout = \"20s\"
release_dir = \"/srv/web\"

[services.worker]
command = \"python3 worker.py\"
user = \"worker-app\"
unit_settings = [\"SystemCallErrorNumber=kill\"]
release_dir = \"/srv/worker\"
health_timeout = \"10s\"";

const CLEANUP: &str = "rm -rf /srv/web /srv/worker";

/// A WSGI app: its version on every path, and `/up` answering 500 in the
/// release called `broken`.
const WSGI_APP: &str = r#"import os
VERSION = open(os.path.join(os.path.dirname(__file__), "VERSION")).read().strip()

def application(environ, start_response):
    up = environ.get("PATH_INFO") == "/up"
    failing = up and VERSION == "broken"
    body = (b"database unreachable" if failing else VERSION.encode())
    start_response("500 Internal Server Error" if failing else "200 OK",
                   [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
"#;

/// A worker that says it is alive; the `sigsys` release first makes the
/// system call V8 makes at start (pkey_alloc), which the filter denies, and
/// this worker's `SystemCallErrorNumber=kill` (systemd's default; an app's
/// unit says EPERM) answers with SIGSYS.
const WORKER: &str = r#"import ctypes, os, platform, sys, time
VERSION = open("VERSION").read().strip()
if VERSION == "sigsys":
    number = {"x86_64": 330, "aarch64": 289}[platform.machine()]
    ctypes.CDLL(None).syscall(number, 0, 0)
while True:
    print(f"worker {VERSION} alive", flush=True)
    time.sleep(1)
"#;

fn stage(project: &Project, dir: &str, files: &[(&str, &str)]) -> Result<()> {
    let root = project.dir.path().join(dir);
    if root.exists() {
        std::fs::remove_dir_all(&root)?;
    }
    std::fs::create_dir_all(&root)?;
    for (name, text) in files {
        std::fs::write(root.join(name), text)?;
    }
    Ok(())
}

fn add_services(project: &Project) -> Result<()> {
    let mut text = std::fs::read_to_string(&project.config)?;
    // No `unit`: hostd knows these services by name and writes their units.
    text.push_str(
        "[services.web]\nartifact = \"web\"\nhealth_timeout = \"20s\"\n\
         [services.worker]\nartifact = \"worker\"\nhealth_timeout = \"10s\"\n",
    );
    std::fs::write(&project.config, text)?;
    Ok(())
}

pub(crate) fn deploy(
    project: &Project,
    s: &Sandbox,
    service: &str,
    version: &str,
) -> Result<(i32, String)> {
    let (code, summary, stderr) = project.deploy_service(s, service, version, &[])?;
    let outcome = summary
        .first()
        .map(|r| format!("{} {}", r["outcome"], r["error"]))
        .unwrap_or_default();
    Ok((code, format!("{outcome} {stderr}")))
}

fn served(s: &Sandbox) -> Result<String> {
    served_on(s, WEB_PORT, "/")
}

pub(crate) fn served_on(s: &Sandbox, port: u16, path: &str) -> Result<String> {
    let r = http_get(format!("{}:{port}", s.address).parse()?, path)?;
    ensure!(r.status == 200, ":{port}{path} answered {}", r.status);
    Ok(r.body.trim().to_owned())
}

/// An app on a port, changed through hostd's front while 250 requests a
/// second on new connections and 250 on kept-alive ones (500 in all) go
/// through it.
pub(crate) struct Changes<'a> {
    pub service: &'a str,
    pub port: u16,
    /// Answers the release's version.
    pub path: &'a str,
    pub health_path: &'a str,
}

impl Changes<'_> {
    /// With v1 serving: a deploy of v2, one of a release whose health path
    /// answers 500 (which must roll back by itself), scaling to 3 and back
    /// to 1, then restarts of the front and of hostd. `stage(v)` makes the
    /// artifact release `v`. No request fails, and none is answered by the
    /// broken release.
    pub(crate) fn under_load_fail_no_request(
        &self,
        s: &Sandbox,
        project: &Project,
        stage: &dyn Fn(&str) -> Result<()>,
    ) -> Result<()> {
        let (service, port) = (self.service, self.port);
        let front = format!("{}:{port}", s.address).parse()?;
        let fresh = Load::start(front, self.path, RATE, Duration::from_secs(600))?;
        let kept = Load::start_kept_alive(front, self.path, RATE, Duration::from_secs(600))?;
        poll("the loads to get answers", Duration::from_secs(30), || {
            Ok((fresh.ok_so_far() > 20 && kept.ok_so_far() > 20).then_some(()))
        })?;
        let under_load = (|| -> Result<()> {
            // Blue-green: the serving set is 1.. or 101.., by turns.
            let first = format!("hostd-app-{service}@1.service");
            let old = if s.unit_property(&first, "ActiveState")? == "active" {
                first
            } else {
                format!("hostd-app-{service}@101.service")
            };
            stage("v2")?;
            let (code, said) = deploy(project, s, service, "v2")?;
            ensure!(code == 0, "deploy {service} v2: {said}");
            ensure!(served_on(s, port, self.path)? == "v2", "after deploying v2");
            ensure!(
                s.unit_property(&old, "ActiveState")? != "active",
                "the old instance still runs beside the new one"
            );
            stage("broken")?;
            let (code, said) = deploy(project, s, service, "broken")?;
            ensure!(code != 0, "the broken release was deployed: {said}");
            ensure!(
                said.contains(&format!("GET {} answered 500", self.health_path))
                    && said.contains("database unreachable"),
                "the failed deploy does not say why: {said}"
            );
            ensure!(
                served_on(s, port, self.path)? == "v2",
                "after the failed deploy"
            );
            for n in ["3", "1"] {
                let out = project.hostctl(s, &["scale", &format!("{service}={n}")])?;
                ensure!(
                    out.status.success(),
                    "scale {service}={n}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            // systemd holds the public sockets: while the front restarts,
            // new connections wait in the backlog instead of being refused,
            // and the old front finishes what it has. hostd restarting
            // leaves the front and the instances alone.
            for unit in ["hostd-front", "hostd"] {
                s.root_sh(&format!("systemctl restart {unit}"))?;
                ensure!(
                    served_on(s, port, self.path)? == "v2",
                    "after restarting {unit}"
                );
            }
            Ok(())
        })();
        let reports = [
            ("new connections", fresh.stop()?),
            ("kept-alive connections", kept.stop()?),
        ];
        under_load?;
        for (how, report) in reports {
            ensure!(
                report.failed == 0 && report.ok > 100,
                "{service} through the front on {how}: {} ok, {} failed: {:?}",
                report.ok,
                report.failed,
                report.errors
            );
            ensure!(
                !report.bodies.contains_key("broken"),
                "the broken release served on {how}: {:?}",
                report.bodies
            );
        }
        Ok(())
    }
}

fn unit_file(s: &Sandbox, name: &str) -> Result<bool> {
    let out = s.root_sh(&format!(
        "test -f /etc/systemd/system/{name} && echo yes || echo no"
    ))?;
    Ok(out.trim() == "yes")
}

pub fn apps_declared_in_hostd_toml_run_without_unit_files_and_roll_back_by_themselves(
    s: &Sandbox,
) -> Result<()> {
    s.with_hostd_config("true", APPS_TOML, CLEANUP, || {
        for unit in ["hostd-app-web@.service", "hostd-app-worker@.service"] {
            ensure!(unit_file(s, unit)?, "hostd did not write {unit}");
        }
        let verify = s.root_sh_output(
            "cd /etc/systemd/system && systemd-analyze verify --man=no hostd-app-web@1.service \
             hostd-app-worker@1.service hostd-front-web.socket 2>&1",
        )?;
        let said = String::from_utf8_lossy(&verify.stdout);
        ensure!(
            verify.status.success() && said.trim().is_empty(),
            "systemd-analyze verify of the generated units:\n{said}"
        );
        crate::manager::exposure_is_ok(s, "hostd-app-web@1.service")?;
        let users = s.root_sh("id -u web && id -u worker-app")?;
        ensure!(users.lines().count() == 2, "users: {users}");

        // Before the first release: nothing runs, and the host is healthy.
        ensure!(s.unit_property("hostd-app-web@1.service", "ActiveState")? == "inactive");
        let health = http_get(s.health_addr()?, "/health")?;
        ensure!(
            health.status == 200 && health.body.contains("not deployed"),
            "/health before the first release: {} {}",
            health.status,
            health.body
        );

        let project = Project::new(&[s], "")?;
        add_services(&project)?;
        let app = |version: &str| -> Result<()> {
            stage(
                &project,
                "web",
                &[("app.py", WSGI_APP), ("VERSION", version)],
            )
        };
        app("v1")?;
        let (code, said) = deploy(&project, s, "web", "v1")?;
        ensure!(code == 0, "deploy web v1: {said}");
        ensure!(served(s)? == "v1", "after deploying v1");

        let changes = Changes {
            service: "web",
            port: WEB_PORT,
            path: "/",
            health_path: "/up",
        };
        changes.under_load_fail_no_request(s, &project, &|v| app(v))?;

        // The front's counts reach hostd's /metrics.
        let metrics = http_get(s.health_addr()?, "/metrics")?.body;
        ensure!(
            metrics.contains("hostd_front_requests_total{service=\"web\",class=\"2xx\"}")
                && metrics.contains("hostd_front_request_duration_seconds_bucket{service=\"web\""),
            "/metrics lacks the front's series: {metrics}"
        );

        // Status, /health and logs name the instance.
        let (_, hosts) = s.status_json()?;
        let units = hosts[0]["status"]["units"].as_array().context("no units")?;
        ensure!(
            units.iter().any(|u| u["service"] == "web"
                && u["unit"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("hostd-app-web@"))
                && u["active_state"] == "active"),
            "status: {units:?}"
        );
        let health = http_get(s.health_addr()?, "/health")?.body;
        ensure!(health.contains("instance:web@"), "/health: {health}");
        let logs = project.hostctl(s, &["logs", "web", "-n", "100"])?;
        let text = String::from_utf8_lossy(&logs.stdout);
        ensure!(
            logs.status.success() && text.contains("gunicorn"),
            "logs web: {text}"
        );

        worker_trial(&project, s)
    })?;
    // hostd.toml without them: their units are stopped and gone, and the
    // front with them.
    for unit in [
        "hostd-app-web@.service",
        "hostd-app-worker@.service",
        "hostd-front-web.socket",
    ] {
        ensure!(!unit_file(s, unit)?, "{unit} is still installed");
    }
    // An instance hostd stopped may take a moment to be unloaded.
    let listed = || s.root_sh("systemctl list-units --all --no-legend --plain 'hostd-app-*'");
    let gone = poll("the apps' units to unload", Duration::from_secs(30), || {
        Ok(listed()?.trim().is_empty().then_some(()))
    });
    ensure!(gone.is_ok(), "units left loaded: {}", listed()?);
    Ok(())
}

/// A worker: a failed first release leaves it not deployed; deployed,
/// supervised, and a release killed by the system call filter refused
/// with the setting to change.
fn worker_trial(project: &Project, s: &Sandbox) -> Result<()> {
    let worker = |version: &str| -> Result<()> {
        stage(
            project,
            "worker",
            &[("worker.py", WORKER), ("VERSION", version)],
        )
    };
    // A first release that fails: back to not deployed, nothing running.
    worker("sigsys")?;
    let (code, said) = deploy(project, s, "worker", "sigsys")?;
    ensure!(
        code != 0 && said.contains("worker is not deployed again"),
        "the failed first release: {said}"
    );
    ensure!(s.unit_property("hostd-app-worker@1.service", "ActiveState")? != "active");
    let current = s.root_sh("test -e /srv/worker/current && echo left || echo none")?;
    ensure!(
        current.trim() == "none",
        "current after the failed first release: {current}"
    );
    let health = http_get(s.health_addr()?, "/health")?;
    ensure!(
        health.status == 200,
        "/health after the failed first release: {}",
        health.body
    );

    worker("k1")?;
    let (code, said) = deploy(project, s, "worker", "k1")?;
    ensure!(code == 0, "deploy worker k1: {said}");
    ensure!(s.unit_property("hostd-app-worker@1.service", "ActiveState")? == "active");
    let user = s.root_sh(
        "stat -c %U /proc/$(systemctl show -p MainPID --value hostd-app-worker@1.service)",
    )?;
    ensure!(user.trim() == "worker-app", "the worker runs as {user}");

    worker("sigsys")?;
    let (code, said) = deploy(project, s, "worker", "sigsys")?;
    ensure!(
        code != 0,
        "the release killed at start was deployed: {said}"
    );
    ensure!(
        said.contains("SIGSYS") && said.contains("jit = true"),
        "the failed deploy does not name the filter: {said}"
    );
    let current = s.root_sh("cat /srv/worker/current/VERSION")?;
    ensure!(current.trim() == "k1", "current release: {current}");
    ensure!(s.unit_property("hostd-app-worker@1.service", "ActiveState")? == "active");
    Ok(())
}
