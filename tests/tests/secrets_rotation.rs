//! Issue 4, rotation: a changed parameter reaches only the services that
//! receive it (`hostctl secrets sync`, or the refresh interval), a sync with
//! nothing changed restarts nothing, and `hostctl secrets list` shows names,
//! versions and services, never a value. Each trial adds a [secrets]
//! section and puts hostd.toml and every parameter it changed back.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use hostctl_tests::{Sandbox, http_get, poll};

const CONFIG: &str = "/etc/hostd/hostd.toml";
const PREFIX: &str = "/hostd/sandbox/";
const ROTATED: &str = "api_secret_key";
const API_CREDS: &str = "/run/credentials/api@1.service";
const UNITS: [&str; 3] = [
    "api@1.service",
    "redis-server.service",
    "postgresql@15-main.service",
];
const EXAMPLES: [&str; 4] = [
    "api_secret_key",
    "backup_password",
    "postgres_password",
    "redis_password",
];

pub fn sync_restarts_only_the_api_and_a_second_sync_restarts_nothing(s: &Sandbox) -> Result<()> {
    with_rotation(s, "1h", |original| {
        let before = invocations(s)?;
        let value = format!("rotated-a-{:x}-{}", std::process::id(), original.len());
        moto_put(s, ROTATED, &value)?;
        let out = sync(s)?;
        ensure!(out.contains("changed: api; restarted: api"), "{out}");
        let after = invocations(s)?;
        ensure!(after[0] != before[0], "api@1 was not restarted");
        ensure!(after[1..] == before[1..], "redis or postgresql restarted");
        let got = s.root_sh_output(&format!("cat {API_CREDS}/{ROTATED}"))?;
        ensure!(
            got.stdout == value.as_bytes(),
            "the new value is not byte-exact"
        );

        let out = sync(s)?;
        ensure!(out.contains("nothing changed; nothing restarted"), "{out}");
        ensure!(
            invocations(s)? == after,
            "a sync without changes restarted something"
        );
        Ok(())
    })
}

pub fn secrets_list_json_shows_names_versions_and_services_never_values(s: &Sandbox) -> Result<()> {
    with_rotation(s, "1h", |_| {
        let out = s.hostctl(&["secrets", "list", "--json"])?;
        ensure!(
            out.status.success(),
            "hostctl secrets list: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let hosts: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout)?;
        let params = hosts
            .first()
            .and_then(|h| h["secrets"]["parameters"].as_array())
            .context("no parameters in the list")?;
        for name in EXAMPLES {
            let p = params
                .iter()
                .find(|p| p["name"] == name)
                .with_context(|| format!("{name} is not listed"))?;
            ensure!(p["version"].as_i64().unwrap_or(0) >= 1, "{p}");
            let services = p["services"].as_array().cloned().unwrap_or_default();
            ensure!(services.iter().any(|s| s == "api"), "{p}");
        }
        let values = moto_values(s)?;
        ensure!(!values.is_empty(), "moto holds no values to check against");
        for (name, value) in &values {
            for (stream, text) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
                let found = text.windows(value.len()).any(|w| w == value.as_bytes());
                ensure!(!found, "the value of {name} appeared in {stream}");
            }
        }
        Ok(())
    })
}

pub fn the_refresh_interval_rotates_without_a_sync(s: &Sandbox) -> Result<()> {
    with_rotation(s, "10s", |_| {
        let before = invocations(s)?;
        let value = format!("rotated-d-{:x}", std::process::id());
        moto_put(s, ROTATED, &value)?;
        poll(
            "api@1 to restart with the new value",
            Duration::from_secs(120),
            || Ok((invocations(s)?[0] != before[0]).then_some(())),
        )?;
        poll(
            "the new value in api@1's credentials",
            Duration::from_secs(30),
            || {
                let got = s.root_sh_output(&format!("cat {API_CREDS}/{ROTATED}"))?;
                Ok((got.stdout == value.as_bytes()).then_some(()))
            },
        )?;
        ensure!(
            invocations(s)?[1..] == before[1..],
            "redis or postgresql restarted"
        );
        Ok(())
    })
}

/// `hostctl secrets sync`'s stdout, which must succeed.
fn sync(s: &Sandbox) -> Result<String> {
    let out = s.hostctl(&["secrets", "sync"])?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    ensure!(
        out.status.success(),
        "hostctl secrets sync: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(text)
}

fn invocations(s: &Sandbox) -> Result<Vec<String>> {
    UNITS
        .iter()
        .map(|u| s.unit_property(u, "InvocationID"))
        .collect()
}

/// Runs `f` (given the rotated parameter's original value) with [secrets]
/// and `refresh_interval` in hostd.toml and the API restarted onto its
/// credentials; then puts the parameter and the file back, whatever happened.
fn with_rotation(s: &Sandbox, interval: &str, f: impl FnOnce(&str) -> Result<()>) -> Result<()> {
    let original = moto_values(s)?
        .remove(ROTATED)
        .with_context(|| format!("{ROTATED} is not in moto"))?;
    s.root_sh(&format!(
        "CONFIG={CONFIG}; cp -p $CONFIG $CONFIG.good && \
         printf '[secrets]\\npath = \"{PREFIX}\"\\nrefresh_interval = \"{interval}\"\\n' >> $CONFIG && \
         systemctl restart hostd.service"
    ))?;
    let result = (|| {
        poll("hostd to answer /health", Duration::from_secs(30), || {
            Ok(http_get(s.health_addr()?, "/health").ok().map(|_| ()))
        })?;
        // The running instance predates the credentials.
        let out = s.hostctl(&["restart", "api"])?;
        ensure!(
            out.status.success(),
            "hostctl restart api: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        f(&original)
    })();
    let put_back = moto_put(s, ROTATED, &original);
    let restored = s.root_sh(&format!(
        "mv {CONFIG}.good {CONFIG} && systemctl restart hostd.service"
    ));
    result?;
    put_back?;
    restored?;
    poll("hostd to answer /health", Duration::from_secs(30), || {
        Ok(http_get(s.health_addr()?, "/health").ok().map(|_| ()))
    })
}

/// Every value under the prefix, read from the shared moto on the host side.
fn moto_values(s: &Sandbox) -> Result<BTreeMap<String, String>> {
    s.ssm_values(PREFIX)
}

fn moto_put(s: &Sandbox, name: &str, value: &str) -> Result<()> {
    s.ssm_put(PREFIX, &[(name.to_owned(), value.as_bytes().to_vec())])
}
