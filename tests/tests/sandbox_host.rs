//! The sandbox itself: several at once, and nothing left behind.

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use hostctl_tests::{Sandbox, http_get, poll};

fn netns_names() -> Result<String> {
    let out = Command::new("ip").args(["netns", "list"]).output()?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn listed(s: &Sandbox, name: &str) -> Result<bool> {
    let out = s.hostctl_bare(&["sandbox", "list", "--json"])?;
    let all: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "sandbox list --json: {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })?;
    Ok(all.iter().any(|x| x["name"] == name))
}

pub fn a_second_sandbox_runs_beside_the_first_and_leaves_nothing(s: &Sandbox) -> Result<()> {
    let name = format!("{}b", s.name);
    let second = Sandbox::up(&name)?;
    ensure!(
        second.address != s.address,
        "both sandboxes got {}",
        s.address
    );

    // Both hosts as one environment: status reaches them in one run.
    let dir = tempfile::tempdir()?;
    let fleet = dir.path().join("hostctl.toml");
    std::fs::write(
        &fleet,
        format!(
            "[environments.fleet]\nhosts = [\"{}\", \"{}\"]\n{}{}",
            s.name,
            second.name,
            s.host_table(),
            second.host_table()
        ),
    )?;
    let out = poll("both hosts serving", Duration::from_secs(60), || {
        let out = s.hostctl_with_config(&fleet, &["status", "--json"])?;
        Ok(out.status.success().then_some(out))
    })?;
    let hosts: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout)?;
    let names: Vec<_> = hosts.iter().filter_map(|h| h["host"].as_str()).collect();
    ensure!(names == [s.name.as_str(), name.as_str()], "{names:?}");
    ensure!(
        hosts
            .iter()
            .all(|h| h["status"]["health"]["status"] == "healthy"),
        "{hosts:?}"
    );

    drop(second);
    ensure!(!listed(s, &name)?, "{name} still listed after down");
    ensure!(
        !netns_names()?.contains(&format!("hostctl-{name}")),
        "namespace left behind"
    );
    let state_dir = s
        .hostctl_toml
        .parent()
        .and_then(|d| d.parent())
        .context("state dir")?;
    ensure!(
        !state_dir.join(&name).exists(),
        "state directory left behind"
    );
    // The first sandbox and the shared AWS stand-in are untouched.
    ensure!(http_get(s.health_addr()?, "/health")?.status == 200);
    ensure!(
        netns_names()?.contains("hostctl-aws"),
        "down of one sandbox stopped the shared stand-in"
    );
    Ok(())
}

pub fn a_failed_up_says_what_failed_and_leaves_nothing(s: &Sandbox) -> Result<()> {
    let name = format!("{}x", s.name);
    let out = s.hostctl_bare(&[
        "sandbox",
        "up",
        "--name",
        &name,
        "--hostd",
        "/nonexistent/hostd",
    ])?;
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(!out.status.success(), "up with a missing hostd succeeded");
    ensure!(
        err.contains("/nonexistent/hostd"),
        "error does not name the missing file: {err}"
    );
    ensure!(!listed(s, &name)?, "a failed sandbox is listed");
    ensure!(
        !netns_names()?.contains(&format!("hostctl-{name}")),
        "namespace left behind"
    );
    Ok(())
}
