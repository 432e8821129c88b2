//! `hostctl releases` and `hostctl lock status|release`: read (or clear)
//! every host of the environment at once.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use hostd_api::{API_PREFIX, LockStatus, ReleasesList};
use hyper::Method;
use serde::Serialize;

use super::DeployError;
use crate::config::HostTarget;
use crate::fleet::Answer;
use crate::output::columns;
use crate::transport::Transport;

fn json<T: Serialize>(answers: &[Answer<T>]) -> Result<(), DeployError> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, answers)
        .map_err(std::io::Error::other)
        .and_then(|()| writeln!(out))
        .map_err(DeployError::Output)
}

pub async fn releases(
    hosts: &[HostTarget],
    unit: &str,
    json_out: bool,
    timeout: Duration,
) -> Result<ExitCode, DeployError> {
    let path = format!("{API_PREFIX}/releases/{unit}");
    let transport = Transport::system()?;
    let answers =
        Answer::<ReleasesList>::from_all(&transport, hosts, Method::GET, &path, timeout).await;
    if json_out {
        json(&answers)?;
    } else {
        let mut out = anstream::stdout().lock();
        for a in &answers {
            render_releases(&mut out, a).map_err(DeployError::Output)?;
        }
    }
    Ok(Answer::exit_code(&answers))
}

fn render_releases(out: &mut impl Write, a: &Answer<ReleasesList>) -> std::io::Result<()> {
    let Some(r) = &a.answer else {
        return writeln!(
            out,
            "{}: {}\n",
            a.host,
            a.error.as_deref().unwrap_or("no answer")
        );
    };
    writeln!(
        out,
        "{}  {}  current {}  (rollback returns to {})",
        a.host,
        r.service,
        r.current.as_deref().unwrap_or("none"),
        r.previous.as_deref().unwrap_or("nothing")
    )?;
    writeln!(out, "    installed: {}", r.installed.join(", "))?;
    let rows: Vec<[String; 6]> = r
        .ledger
        .iter()
        .map(|e| {
            [
                e.finished.clone(),
                e.action.clone(),
                e.version.clone(),
                e.result.clone(),
                e.by.clone(),
                e.digest.get(..12).unwrap_or("-").to_owned(),
            ]
        })
        .collect();
    if rows.is_empty() {
        writeln!(out, "    no deploys recorded yet")?;
    } else {
        columns(
            out,
            ["FINISHED", "ACTION", "VERSION", "RESULT", "BY", "ARTIFACT"],
            &rows,
            6,
        )?;
    }
    writeln!(out)
}

pub async fn lock(
    hosts: &[HostTarget],
    release: bool,
    json_out: bool,
    timeout: Duration,
) -> Result<ExitCode, DeployError> {
    let method = if release { Method::DELETE } else { Method::GET };
    let path = format!("{API_PREFIX}/lock");
    let transport = Transport::system()?;
    let answers = Answer::<LockStatus>::from_all(&transport, hosts, method, &path, timeout).await;
    if json_out {
        json(&answers)?;
    } else {
        let mut out = anstream::stdout().lock();
        for a in &answers {
            render_lock(&mut out, a, release).map_err(DeployError::Output)?;
        }
    }
    Ok(Answer::exit_code(&answers))
}

fn render_lock(
    out: &mut impl Write,
    a: &Answer<LockStatus>,
    released: bool,
) -> std::io::Result<()> {
    let Some(s) = &a.answer else {
        return writeln!(
            out,
            "{}: {}",
            a.host,
            a.error.as_deref().unwrap_or("no answer")
        );
    };
    match &s.holder {
        Some(h) => writeln!(
            out,
            "{}: held by `{}` ({} since {}, run by hostd pid {})",
            a.host, h.operation, h.requested_by, h.since, h.pid
        )?,
        None if released => writeln!(out, "{}: free (released)", a.host)?,
        None => writeln!(out, "{}: free", a.host)?,
    }
    for note in &s.recovered {
        writeln!(out, "    {note}")?;
    }
    Ok(())
}
