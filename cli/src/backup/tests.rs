use hostd_api::{DrillRun, SnapshotInfo};

use super::*;
use crate::fake_hosts::{FakeHosts, snapshots, text};

const NO_BACKUP: &str = r#"404 Not Found|{"error":"backups are not configured on this host (no [backup] section in hostd.toml)"}"#;

fn settings(fake: &FakeHosts) -> BackupSettings {
    BackupSettings {
        targets: Targets {
            environment: "x".into(),
            hosts: fake.hosts.clone(),
        },
        json: false,
        wait: false,
        timeout: Duration::from_secs(10),
        progress: false,
    }
}

fn ok(body: &impl Serialize) -> String {
    format!("200 OK|{}", serde_json::to_string(body).unwrap_or_default())
}

fn run(ok: Option<bool>, error: Option<&str>, snapshots: Vec<SnapshotInfo>) -> BackupRun {
    BackupRun {
        trigger: "manual".into(),
        started: "2026-01-02T03:00:00Z".into(),
        finished: ok.map(|_| "2026-01-02T03:04:12Z".into()),
        ok,
        error: error.map(Into::into),
        incomplete: Vec::new(),
        snapshots,
    }
}

fn listing() -> BackupsList {
    BackupsList {
        repository: "s3://backups/a".into(),
        snapshots: snapshots(),
        last_run: Some(run(Some(true), None, vec![])),
        last_success: None,
        last_drill: Some(DrillRun {
            started: "2026-01-02T03:04:20Z".into(),
            finished: "2026-01-02T03:05:00Z".into(),
            ok: true,
            snapshot: Some("0123456789abcdef".into()),
            database: "app".into(),
            checks_passed: 3,
            error: None,
        }),
        next_run: Some("2026-01-03T03:07:00Z".into()),
    }
}

#[tokio::test]
async fn backups_shows_the_snapshots_and_the_last_run_and_names_a_host_without_backups()
-> Result<(), Box<dyn std::error::Error>> {
    let a = ok(&listing());
    let fake = FakeHosts::new("backup-list", &[("a", &a), ("b", NO_BACKUP)], "{}")?;
    let s = settings(&fake);
    let mut out = Vec::new();
    let err = list_with(&fake.transport, &s, &mut out)
        .await
        .err()
        .ok_or("expected a failure")?;
    let out = text(&out);
    assert_eq!(
        fake.requests_sorted(),
        ["a GET /v1/backups", "b GET /v1/backups"]
    );
    let expected = "\
a  a  s3://backups/a
    ID        TIME                  KIND      DATABASE  RELEASE     SIZE      ADDED
    01234567  2026-01-02T03:00:05Z  postgres  app       r42      1.2 GiB  122.9 MiB
    fedcba98  2026-01-02T03:00:05Z  redis     -         -          512 B       51 B
    last run 2026-01-02T03:00:00Z (manual, took 4m 12s): ok
    last drill 2026-01-02T03:05:00Z (app from 01234567, took 40s): ok, 3 check(s) passed
    next run 2026-01-03T03:07:00Z
b  b  ";
    assert!(out.starts_with(expected), "{out}");
    assert!(out.contains("no [backup] section in hostd.toml"), "{out}");
    assert_eq!(err.to_string(), "backups failed on b");
    assert_eq!(err.exit_code(), ExitCode::FAILURE);
    assert!(err.hint().unwrap_or_default().contains("[backup]"));
    Ok(())
}

#[tokio::test]
async fn backups_footer_says_what_failed_and_what_is_missing()
-> Result<(), Box<dyn std::error::Error>> {
    let mut failed = listing();
    failed.snapshots.clear();
    failed.last_run = Some(run(Some(false), Some("pg_dump app: exit 1"), vec![]));
    failed.last_success = Some("2026-01-01T03:02:00Z".into());
    failed.last_drill = failed.last_drill.map(|d| DrillRun {
        ok: false,
        checks_passed: 1,
        snapshot: None,
        error: Some("check 2 returned false".into()),
        ..d
    });
    failed.next_run = None;
    let mut empty = listing();
    empty.snapshots.clear();
    empty.last_run = None;
    empty.last_drill = None;
    let (a, b) = (ok(&failed), ok(&empty));
    let fake = FakeHosts::new("backup-footer", &[("a", &a), ("b", &b)], "{}")?;
    let s = settings(&fake);
    let mut out = Vec::new();
    list_with(&fake.transport, &s, &mut out).await?;
    let out = text(&out);
    let expected = "\
a  a  s3://backups/a
    no snapshots
    last run 2026-01-02T03:00:00Z (manual, took 4m 12s): failed: pg_dump app: exit 1; last success 2026-01-01T03:02:00Z
    last drill 2026-01-02T03:05:00Z (app, took 40s): failed: check 2 returned false (1 check(s) passed)
    next run: none scheduled
b  b  s3://backups/a
    no snapshots
    last run: never
    last drill: never
    next run 2026-01-03T03:07:00Z
";
    assert_eq!(out, expected);
    Ok(())
}

#[tokio::test]
async fn backups_json_is_one_object_per_host() -> Result<(), Box<dyn std::error::Error>> {
    let a = ok(&listing());
    let fake = FakeHosts::new("backup-json", &[("a", &a), ("b", NO_BACKUP)], "{}")?;
    let mut s = settings(&fake);
    s.json = true;
    let mut out = Vec::new();
    let err = list_with(&fake.transport, &s, &mut out).await;
    assert!(err.is_err());
    let json: serde_json::Value = serde_json::from_slice(&out)?;
    assert_eq!(json[0]["host"], "a");
    assert_eq!(json[0]["backups"]["repository"], "s3://backups/a");
    assert_eq!(json[0]["backups"]["snapshots"][0]["size"], 1_288_490_189);
    assert!(json[0].get("error").is_none());
    assert_eq!(json[1]["host"], "b");
    assert!(json[1].get("backups").is_none());
    assert!(
        json[1]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("no [backup] section"),
        "{json}"
    );
    Ok(())
}

#[tokio::test]
async fn backup_now_wait_reports_each_snapshot_and_the_time_taken()
-> Result<(), Box<dyn std::error::Error>> {
    let a = ok(&run(Some(true), None, snapshots()));
    let b = ok(&run(Some(true), None, vec![]));
    let fake = FakeHosts::new("backup-wait", &[("a", &a), ("b", &b)], "{}")?;
    let mut s = settings(&fake);
    s.wait = true;
    let mut out = Vec::new();
    now_with(&fake.transport, &s, &mut out).await?;
    let out = text(&out);
    assert_eq!(
        fake.requests(),
        [
            r#"a POST /v1/backups {"wait":true}"#,
            r#"b POST /v1/backups {"wait":true}"#
        ]
    );
    let expected = "\
a  a  done
    postgres app  01234567  1.2 GiB  +122.9 MiB added
    redis         fedcba98    512 B  +51 B added
    took 4m 12s
b  b  done
    no snapshot written
    took 4m 12s
x: backup now done on 2 host(s)
";
    assert_eq!(out, expected);
    Ok(())
}

#[tokio::test]
async fn a_failed_backup_exits_1_and_stops_before_the_next_host()
-> Result<(), Box<dyn std::error::Error>> {
    let a = ok(&run(
        Some(false),
        Some("upload to s3://backups/a: access denied"),
        vec![],
    ));
    let b = ok(&run(Some(true), None, vec![]));
    let fake = FakeHosts::new("backup-fail", &[("a", &a), ("b", &b)], "{}")?;
    let mut s = settings(&fake);
    s.wait = true;
    let mut out = Vec::new();
    let err = now_with(&fake.transport, &s, &mut out)
        .await
        .err()
        .ok_or("expected a failure")?;
    let out = text(&out);
    assert_eq!(fake.requests(), [r#"a POST /v1/backups {"wait":true}"#]);
    assert_eq!(err.to_string(), "backup now failed on a");
    assert_eq!(err.exit_code(), ExitCode::FAILURE);
    let expected = "\
a  a  failed
    no snapshot written
    took 4m 12s
    upload to s3://backups/a: access denied
b  b  not touched
x: backup now failed on a; done on: none; not touched: b
";
    assert_eq!(out, expected);
    Ok(())
}

#[tokio::test]
async fn backup_now_json_and_a_host_without_backup_configured()
-> Result<(), Box<dyn std::error::Error>> {
    let b = ok(&run(None, None, vec![]));
    let fake = FakeHosts::new("backup-nowjson", &[("a", NO_BACKUP), ("b", &b)], "{}")?;
    let mut s = settings(&fake);
    s.json = true;
    let mut out = Vec::new();
    let err = now_with(&fake.transport, &s, &mut out).await;
    assert!(matches!(err, Err(BackupError::NowFailed { .. })));
    assert_eq!(fake.requests(), [r#"a POST /v1/backups {"wait":false}"#]);
    let json: serde_json::Value = serde_json::from_slice(&out)?;
    assert_eq!(json[0]["outcome"], "failed");
    assert!(json[0].get("run").is_none());
    assert!(
        json[0]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("404"),
        "{json}"
    );
    assert_eq!(json[1]["outcome"], "not_touched");
    Ok(())
}

#[tokio::test]
async fn backup_now_without_wait_says_it_started() -> Result<(), Box<dyn std::error::Error>> {
    let a = ok(&run(None, None, vec![]));
    let fake = FakeHosts::new("backup-start", &[("a", &a)], "{}")?;
    let s = settings(&fake);
    let mut out = Vec::new();
    now_with(&fake.transport, &s, &mut out).await?;
    let out = text(&out);
    assert_eq!(fake.requests(), [r#"a POST /v1/backups {"wait":false}"#]);
    assert!(
        out.contains("started 2026-01-02T03:00:00Z (manual); still running"),
        "{out}"
    );
    assert!(out.ends_with("x: backup now done on 1 host(s)\n"), "{out}");
    Ok(())
}

#[test]
fn with_wait_only_an_ended_successful_run_is_done() {
    let r = |ok| run(ok, None, vec![]);
    assert_eq!(outcome(&r(Some(true)), true), Outcome::Done);
    assert_eq!(outcome(&r(Some(false)), true), Outcome::Failed);
    assert_eq!(outcome(&r(None), true), Outcome::Failed);
    assert_eq!(outcome(&r(None), false), Outcome::Done);
    assert_eq!(outcome(&r(Some(false)), false), Outcome::Failed);
}

#[tokio::test]
async fn a_wait_that_runs_out_says_the_backup_may_still_run_not_that_it_failed()
-> Result<(), Box<dyn std::error::Error>> {
    let fake = FakeHosts::new("backup-unfollowed", &[("a", "")], "{}")?.hanging(&["a"]);
    let settings = BackupSettings {
        wait: true,
        timeout: Duration::from_millis(300),
        ..settings(&fake)
    };
    let mut out = Vec::new();
    let e = now_with(&fake.transport, &settings, &mut out)
        .await
        .err()
        .ok_or("expected an error")?;
    let out = text(&out);
    assert!(!out.contains("failed"), "{out}");
    assert!(out.contains("stopped following"), "{out}");
    assert!(out.contains("may still be running"), "{out}");
    assert!(e.to_string().contains("it may still be running"), "{e}");
    Ok(())
}
