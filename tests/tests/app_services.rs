//! A second app service beside the API: `web`, declared only in hostd.toml
//! and hostctl.toml with its own unit template, socket (:3000), release
//! directory and database. Deploys, scaling and rollbacks of one never
//! restart the other; status and health name each separately.

use anyhow::{Context, Result, ensure};
use hostctl_tests::deploy::Project;
use hostctl_tests::{Sandbox, http_get};

const SERVICE: &str = "health_timeout = \"15s\"\n";

/// `web@.service` and `web.socket` made from the API's (another name, port,
/// user and directories; the demo release's binary is still `bin/api`), and
/// a first release (a copy of the API's current one), as an operator would
/// add a service.
const WEB_SETUP: &str = "id web >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin web
sed -e 's/api/web/g' -e 's|bin/web|bin/api|' -e 's/^Description=API/Description=Web/' /etc/systemd/system/api@.service > /etc/systemd/system/web@.service
sed -e 's/api@/web@/g' -e 's/ListenStream=8080/ListenStream=3000/' -e 's/^Description=API/Description=Web/' /etc/systemd/system/api.socket > /etc/systemd/system/web.socket
install -d -m 0755 /srv/web /srv/web/releases
rm -rf /srv/web/releases/initial && cp -a \"$(readlink -f /srv/api/current)\" /srv/web/releases/initial
ln -sfn releases/initial /srv/web/current
systemctl daemon-reload";

const WEB_TOML: &str = "[services.web]
unit = \"web@.service\"
socket = \"web.socket\"
instances = 1
max_instances = 4
health_socket = \"/run/web/{instance}/health.sock\"
database = \"web\"
release_dir = \"/srv/web\"";

const WEB_CLEANUP: &str = "systemctl stop web.socket \"web@*.service\"
rm -f /etc/systemd/system/web@.service /etc/systemd/system/web.socket
rm -rf /srv/web
systemctl daemon-reload";

fn invocation(s: &Sandbox, unit: &str) -> Result<String> {
    let id = s.unit_property(unit, "InvocationID")?;
    ensure!(!id.is_empty(), "{unit} has no invocation: not running");
    Ok(id)
}

fn served(s: &Sandbox, port: u16) -> Result<String> {
    let r = http_get(format!("{}:{port}", s.address).parse()?, "/version")?;
    ensure!(r.status == 200, ":{port}/version answered {}", r.status);
    Ok(r.body.trim().to_owned())
}

fn deploy_ok(p: &Project, s: &Sandbox, service: &str, version: &str) -> Result<()> {
    p.stage(version, false)?;
    let (code, summary, stderr) = p.deploy_service(s, service, version, &[])?;
    ensure!(
        code == 0 && summary[0]["outcome"] == "ok",
        "deploy {service} {version}: {summary:?} {stderr}"
    );
    Ok(())
}

pub fn two_app_services_deploy_scale_and_roll_back_independently(s: &Sandbox) -> Result<()> {
    s.with_hostd_config(WEB_SETUP, WEB_TOML, WEB_CLEANUP, || {
        let p = Project::new(&[s], SERVICE)?;
        p.add_service("web", "web@.service", SERVICE)?;
        deploy_ok(&p, s, "backend", "a1")?;
        let api = invocation(s, "api@1.service")?;
        deploy_ok(&p, s, "web", "w1")?;
        deploy_ok(&p, s, "web", "w2")?;
        ensure!(served(s, 3000)? == "w2" && served(s, 8080)? == "a1");
        ensure!(
            invocation(s, "api@1.service")? == api,
            "deploying web restarted the API"
        );
        let web = invocation(s, "web@1.service")?;
        deploy_ok(&p, s, "backend", "a2")?;
        ensure!(
            invocation(s, "web@1.service")? == web,
            "deploying the backend restarted web"
        );
        let api = invocation(s, "api@1.service")?;

        let out = p.hostctl(s, &["scale", "web=2"])?;
        ensure!(
            out.status.success(),
            "scale web=2: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        ensure!(s.unit_property("web@2.service", "ActiveState")? == "active");
        ensure!(
            invocation(s, "api@1.service")? == api,
            "scaling web restarted the API"
        );
        ensure!(s.unit_property("api@2.service", "ActiveState")? != "active");

        // Each service apart in status and in /health.
        let (_, hosts) = s.status_json()?;
        let units = hosts[0]["status"]["units"].as_array().context("no units")?;
        for (service, unit) in [("web", "web@2.service"), ("api", "api@1.service")] {
            ensure!(
                units.iter().any(|u| u["service"] == service
                    && u["unit"] == unit
                    && u["active_state"] == "active"),
                "status does not show {unit} of {service}: {units:?}"
            );
        }
        let health = http_get(s.health_addr()?, "/health")?.body;
        for component in ["instance:web@2", "instance:api@1"] {
            ensure!(
                health.contains(component),
                "/health lacks {component}: {health}"
            );
        }
        let logs = p.hostctl(s, &["logs", "web", "-n", "50"])?;
        let text = String::from_utf8_lossy(&logs.stdout);
        ensure!(
            logs.status.success() && text.contains("web@"),
            "logs web: {text}"
        );

        let out = p.hostctl(s, &["rollback", "web"])?;
        ensure!(
            out.status.success(),
            "rollback web: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        ensure!(served(s, 3000)? == "w1" && served(s, 8080)? == "a2");
        ensure!(
            invocation(s, "api@1.service")? == api,
            "rolling web back restarted the API"
        );
        let out = p.hostctl(s, &["scale", "web=1"])?;
        ensure!(out.status.success());
        Ok(())
    })
}
