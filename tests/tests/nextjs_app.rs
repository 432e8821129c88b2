//! Issue 18 (5): a Next.js app this project did not write, from the npm
//! registry, built with `output: "standalone"` as its authors ship it
//! (tests/apps/nextjs: a page and two route handlers, nothing for hostd)
//! and run by `node server.js` from Debian's nodejs on the sandbox. Through
//! hostd's front under load: deploys, a broken release that rolls back by
//! itself, scaling; no request fails. A redeploy with one file changed
//! uploads only the chunks the host lacks.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, ensure};
use hostctl_tests::Sandbox;
use hostctl_tests::deploy::Project;

use crate::declared_apps::{Changes, served_on};

const PORT: u16 = 3100;

const NEXT_TOML: &str = "[services.next]
command = \"node server.js\"
port = 3100
health_path = \"/api/health\"
health_timeout = \"60s\"
jit = true
environment = { HOSTNAME = \"127.0.0.1\", NEXT_TELEMETRY_DISABLED = \"1\" }
release_dir = \"/srv/next\"";

/// `npm ci` and `next build` of tests/apps/nextjs in `dir`; the
/// standalone server with its static files, as Next.js's docs deploy it.
fn build(dir: &Path) -> Result<PathBuf> {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("apps/nextjs");
    let copied = Command::new("cp")
        .arg("-r")
        .arg(format!("{}/.", source.display()))
        .arg(dir)
        .status()?;
    ensure!(copied.success(), "cannot copy {}", source.display());
    for args in [
        &["ci", "--no-audit", "--no-fund", "--loglevel=error"][..],
        &["run", "build"],
    ] {
        let out = Command::new("npm")
            .args(args)
            .current_dir(dir)
            .env("NEXT_TELEMETRY_DISABLED", "1")
            .output()
            .context("run npm (tests/install-prereqs.sh installs nodejs and npm)")?;
        ensure!(
            out.status.success(),
            "npm {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let standalone = dir.join(".next/standalone");
    let copied = Command::new("cp")
        .arg("-r")
        .arg(dir.join(".next/static"))
        .arg(standalone.join(".next/static"))
        .status()?;
    ensure!(copied.success(), "cannot copy the static files");
    Ok(standalone)
}

/// Deploys `version` of next; the bytes hostctl says it uploaded.
fn uploaded(project: &Project, s: &Sandbox, version: &str) -> Result<u64> {
    let (code, summary, stderr) = project.deploy_service(s, "next", version, &[])?;
    ensure!(code == 0, "deploy next {version}: {summary:?} {stderr}");
    summary
        .first()
        .and_then(|r| r["uploaded_bytes"].as_u64())
        .with_context(|| format!("deploy next {version} uploaded nothing: {summary:?}"))
}

pub fn an_unmodified_nextjs_app_deploys_behind_the_front_with_no_failed_request(
    s: &Sandbox,
) -> Result<()> {
    let work = tempfile::tempdir()?;
    let artifact = build(work.path())?;
    s.with_hostd_config("true", NEXT_TOML, "rm -rf /srv/next", || {
        let project = Project::new(&[s], "")?;
        let mut text = std::fs::read_to_string(&project.config)?;
        text.push_str(&format!(
            "[services.next]\nartifact = {:?}\nhealth_timeout = \"60s\"\n",
            artifact.display().to_string()
        ));
        std::fs::write(&project.config, text)?;
        let stage = |version: &str| -> Result<()> {
            std::fs::write(artifact.join("VERSION"), version)?;
            Ok(())
        };
        stage("v1")?;
        let whole = uploaded(&project, s, "v1")?;
        // Issue 18 (7): a build that differs in one file sends about that
        // file, not the artifact again.
        stage("v1.1")?;
        let changed = uploaded(&project, s, "v1.1")?;
        ensure!(
            changed * 20 < whole,
            "a one-file change uploaded {changed} bytes; the whole artifact is {whole}"
        );
        ensure!(served_on(s, PORT, "/api/version")? == "v1.1");
        let page = served_on(s, PORT, "/")?;
        ensure!(
            page.contains("A Next.js app deployed by hostd"),
            "the page: {page}"
        );
        let changes = Changes {
            service: "next",
            port: PORT,
            path: "/api/version",
            health_path: "/api/health",
        };
        changes.under_load_fail_no_request(s, &project, &stage)?;
        let logs = project.hostctl(s, &["logs", "next", "-n", "50"])?;
        let text = String::from_utf8_lossy(&logs.stdout);
        ensure!(
            logs.status.success() && text.contains("Next.js"),
            "logs next: {text}"
        );
        Ok(())
    })
}
