//! Issue 4, the wired parameters: `postgres_password` becomes the api
//! role's password and `redis_password` Redis's `requirepass`; the API gets
//! `database_url` and `redis_url` built from them, byte-exact; rotating them
//! restarts the API only, the old passwords stop working, Redis keeps the
//! new one across its own restart, and neither shows in logs or arguments.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use hostctl_tests::{Sandbox, http_get, http_request, poll};
use hostd_api::{HealthReport, HealthStatus};

const CONFIG: &str = "/etc/hostd/hostd.toml";
const PREFIX: &str = "/hostd/sandbox/";
const API_CREDS: &str = "/run/credentials/api@1.service";
const AUTH_FILE: &str = "/etc/redis/hostd-auth.conf";
const WIRED: &str = "[secrets]\\npath = \"/hostd/sandbox/\"\\n\
                     postgres_password = \"postgres_password\"\\n\
                     redis_password = \"redis_password\"\\n";

pub fn wired_passwords_reach_postgres_redis_and_the_api_and_rotate(s: &Sandbox) -> Result<()> {
    let original = s.ssm_values(PREFIX)?;
    let get = |name: &str| {
        original
            .get(name)
            .cloned()
            .with_context(|| format!("{name} is not in moto"))
    };
    let (pg0, rd0) = (get("postgres_password")?, get("redis_password")?);
    let run = format!("{:x}", std::process::id());
    let pg1 = format!("pg-{run} \"q\" 'a' \\ $HOME é");
    let rd1 = format!("rd-{run} \"q\" 'a' \\ $HOME ü");

    s.root_sh(&format!(
        "cp -p {CONFIG} {CONFIG}.good && printf '{WIRED}' >> {CONFIG} && systemctl restart hostd"
    ))?;
    let result = (|| {
        s.wait_reconciled()?;
        hostctl_ok(s, &["restart", "api"])?;
        works_with(s, &pg0, &rd0)?;

        let units = [
            "api@1.service",
            "postgresql@15-main.service",
            "redis-server.service",
        ];
        let before = invocations(s, &units)?;
        s.ssm_put(
            PREFIX,
            &[
                ("postgres_password".into(), pg1.clone().into_bytes()),
                ("redis_password".into(), rd1.clone().into_bytes()),
            ],
        )?;
        let out = hostctl_ok(s, &["secrets", "sync"])?;
        ensure!(out.contains("changed: api; restarted: api"), "{out}");
        let after = invocations(s, &units)?;
        ensure!(after[0] != before[0], "the API was not restarted");
        ensure!(
            after[1..] == before[1..],
            "PostgreSQL or Redis was restarted"
        );
        works_with(s, &pg1, &rd1)?;
        refused(s, &pg0, &rd0)?;

        // Redis reads the include file when it starts: the new password
        // survives its restart (and the file's escaping is right).
        hostctl_ok(s, &["restart", "redis"])?;
        redis_answers(s, &rd1)?;
        no_leak(s, &[&pg1, &rd1])
    })();

    // Put back: the parameters, Redis without a password (the shipped
    // config does not wire it), then the config.
    let put_back = s.ssm_put(
        PREFIX,
        &[
            ("postgres_password".into(), pg0.into_bytes()),
            ("redis_password".into(), rd0.clone().into_bytes()),
        ],
    );
    let cleared = s.root_sh(&format!(
        ": > {AUTH_FILE}; for p in {} {}; do REDISCLI_AUTH=\"$p\" redis-cli --no-auth-warning \
         CONFIG SET requirepass '' 2>/dev/null | grep -q OK && exit 0; done; exit 1",
        sq(&rd1),
        sq(&rd0)
    ));
    let restored = s.root_sh(&format!(
        "mv {CONFIG}.good {CONFIG} && systemctl restart hostd"
    ));
    result?;
    put_back?;
    cleared.context("clearing Redis's password")?;
    restored?;
    s.wait_reconciled()?;
    hostctl_ok(s, &["restart", "api"]).map(|_| ())
}

/// The credentials are exactly the URLs for `pg` and `rd`, the api role
/// logs in over TCP with `pg` and not without, Redis wants `rd`, and the
/// API (PostgreSQL and Redis both) and hostd's checks are healthy.
fn works_with(s: &Sandbox, pg: &str, rd: &str) -> Result<()> {
    let database_url = s.root_sh_output(&format!("cat {API_CREDS}/database_url"))?;
    let expected = format!("postgresql://api:{}@127.0.0.1:5432/api", encode(pg));
    ensure!(
        database_url.stdout == expected.as_bytes(),
        "database_url is not the URL for the current password"
    );
    let redis_url = s.root_sh_output(&format!("cat {API_CREDS}/redis_url"))?;
    let expected = format!("redis://:{}@127.0.0.1:6379/", encode(rd));
    ensure!(
        redis_url.stdout == expected.as_bytes(),
        "redis_url is not the URL for the current password"
    );
    let who = s.root_sh(&format!(
        "PGPASSWORD={} psql -h 127.0.0.1 -U api -d api -Atc 'SELECT current_user'",
        sq(pg)
    ))?;
    ensure!(who.trim() == "api", "psql as api over TCP: {who}");
    let wrong =
        s.root_sh_output("PGPASSWORD=wrong psql -h 127.0.0.1 -U api -d api -c 'SELECT 1'")?;
    ensure!(
        !wrong.status.success()
            && String::from_utf8_lossy(&wrong.stderr).contains("password authentication failed"),
        "a wrong password was not refused: {}",
        String::from_utf8_lossy(&wrong.stderr)
    );
    let anonymous = s.root_sh("redis-cli PING 2>&1")?;
    ensure!(
        anonymous.contains("NOAUTH"),
        "Redis without a password: {anonymous}"
    );
    redis_answers(s, rd)?;
    let meta = s.root_sh(&format!("stat -c '%a %U %G' {AUTH_FILE}"))?;
    ensure!(meta.trim() == "640 root redis", "{AUTH_FILE}: {meta}");

    let api = format!("{}:8080", s.address).parse()?;
    let created = http_request(api, "POST", "/notes", "through the composed URLs")?;
    ensure!(
        created.status == 201,
        "POST /notes: {} {}",
        created.status,
        created.body
    );
    poll(
        "hostd's checks to be healthy",
        Duration::from_secs(30),
        || {
            let report: HealthReport =
                serde_json::from_str(&http_get(s.health_addr()?, "/health")?.body)?;
            Ok((report.status == HealthStatus::Healthy).then_some(()))
        },
    )
}

fn refused(s: &Sandbox, pg: &str, rd: &str) -> Result<()> {
    let pg_old = s.root_sh_output(&format!(
        "PGPASSWORD={} psql -h 127.0.0.1 -U api -d api -c 'SELECT 1'",
        sq(pg)
    ))?;
    ensure!(
        !pg_old.status.success(),
        "the old PostgreSQL password still works"
    );
    let rd_old = s.root_sh(&format!(
        "REDISCLI_AUTH={} redis-cli --no-auth-warning PING 2>&1",
        sq(rd)
    ))?;
    ensure!(
        !rd_old.contains("PONG"),
        "the old Redis password still works: {rd_old}"
    );
    Ok(())
}

fn redis_answers(s: &Sandbox, rd: &str) -> Result<()> {
    poll(
        "Redis to answer PING with its password",
        Duration::from_secs(30),
        || {
            let out = s.root_sh_output(&format!(
                "REDISCLI_AUTH={} redis-cli --no-auth-warning PING",
                sq(rd)
            ))?;
            Ok((String::from_utf8_lossy(&out.stdout).trim() == "PONG").then_some(()))
        },
    )
}

/// Neither password in the observable places, PostgreSQL's log or
/// `hostctl secrets list`.
fn no_leak(s: &Sandbox, values: &[&str]) -> Result<()> {
    let mut places = s.observable_places()?;
    places.push((
        "PostgreSQL's log",
        s.root_sh_output("cat /var/log/postgresql/*.log; journalctl -u 'postgresql*' -o cat")?
            .stdout,
    ));
    places.push((
        "hostctl secrets list",
        s.hostctl(&["secrets", "list", "--json"])?.stdout,
    ));
    for (place, text) in &places {
        ensure!(!text.is_empty(), "{place} is empty: nothing was checked");
        for v in values {
            let found = text.windows(v.len()).any(|w| w == v.as_bytes());
            ensure!(!found, "a wired password appeared in {place}");
        }
    }
    Ok(())
}

fn hostctl_ok(s: &Sandbox, args: &[&str]) -> Result<String> {
    let out = s.hostctl(args)?;
    ensure!(
        out.status.success(),
        "hostctl {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}

fn invocations(s: &Sandbox, units: &[&str]) -> Result<Vec<String>> {
    units
        .iter()
        .map(|u| s.unit_property(u, "InvocationID"))
        .collect()
}

/// Percent-encoding of everything but ASCII letters and digits, as hostd
/// writes passwords into URLs.
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Single-quoted for sh.
fn sq(value: &str) -> String {
    format!("'{}'", value.replace('\'', "'\\''"))
}
