use hostd_api::SnapshotInfo;
use indicatif::ProgressDrawTarget;

use super::*;
use crate::exit::EXIT_USAGE;
use crate::fake_hosts::{FakeHosts, snapshots, stream, text};
use crate::targets::Targets;

const NO_SNAPSHOT: &str =
    r#"404 Not Found|{"error":"no snapshot 0123abcd; hostctl backups lists them"}"#;

/// What `restore latest --dry-run` sends, as the fake logs it.
const DRY_REQUEST: &str = r#"a POST /v1/restore {"snapshot":"latest","only":[],"dry_run":true,"requested_by":"op@laptop","confirmed":[],"lock_wait_seconds":0}"#;
/// The restore that follows, with the snapshots of the plan confirmed.
const REAL_REQUEST: &str = r#"a POST /v1/restore {"snapshot":"latest","only":[],"dry_run":false,"requested_by":"op@laptop","confirmed":["0123456789abcdef","fedcba9876543210","89abcdef01234567"],"lock_wait_seconds":0}"#;

const PLAN_TEXT: &str = "\
a  a  restore plan
    ID        TIME                  KIND      SOURCE                     SIZE
    01234567  2026-01-02T03:00:05Z  postgres  app                     1.2 GiB
    fedcba98  2026-01-02T03:00:05Z  redis     -                         512 B
    89abcdef  2026-01-02T03:00:05Z  files     /srv/uploads, /etc/app  3.3 MiB
    stopped, then started again: api
    restarted to load the data: redis
    note: the last backup run (2026-01-03T03:00:00Z) could not back up redis (cannot reach Redis at 127.0.0.1:6379: connection refused): what this plan restores of it comes from an earlier run
";

/// The backups tests' postgres and Redis snapshots, and two paths.
fn the_plan() -> RestorePlan {
    let mut snapshots = snapshots();
    let files = SnapshotInfo {
        id: "89abcdef01234567".into(),
        kind: BackupKind::Files,
        database: None,
        paths: vec!["/srv/uploads".into(), "/etc/app".into()],
        size: 3_500_000,
        ..snapshots[1].clone()
    };
    snapshots.push(files);
    RestorePlan {
        snapshots,
        stop: vec!["api".into()],
        restart: vec!["redis".into()],
        notes: vec!["the last backup run (2026-01-03T03:00:00Z) could not back up redis (cannot reach Redis at 127.0.0.1:6379: connection refused): what this plan restores of it comes from an earlier run".into()],
    }
}

fn dry_events() -> Vec<RestoreEvent> {
    vec![
        RestoreEvent::Plan {
            plan: the_plan(),
            dry_run: true,
        },
        RestoreEvent::Finished {
            ok: true,
            seconds: 0.4,
            error: None,
        },
    ]
}

/// A restore that waits for the lock, stops the API, restores the database
/// with progress and ends with `finished` (failed with `error`, if given).
fn restore_events(error: Option<&str>) -> Vec<RestoreEvent> {
    let step = |s: &str| RestoreEvent::Step { step: s.into() };
    let done = |s: &str, seconds| RestoreEvent::StepDone {
        step: s.into(),
        seconds,
    };
    let progress = |bytes| RestoreEvent::Progress {
        step: "restore postgres app".into(),
        bytes,
        total: Some(2000),
    };
    vec![
        RestoreEvent::Plan {
            plan: the_plan(),
            dry_run: false,
        },
        RestoreEvent::Waiting {
            holder: "backup (schedule)".into(),
        },
        step("stop api"),
        done("stop api", 0.3),
        step("restore postgres app"),
        progress(1000),
        progress(2000),
        done("restore postgres app", 12.5),
        RestoreEvent::Finished {
            ok: error.is_none(),
            seconds: 42.0,
            error: error.map(Into::into),
        },
    ]
}

fn settings(fake: &FakeHosts) -> RestoreSettings {
    RestoreSettings {
        target: fake.hosts[0].clone(),
        snapshot: "latest".into(),
        only: vec![],
        dry_run: false,
        yes: true,
        json: false,
        lock_wait_seconds: 0,
        timeout: Duration::from_secs(10),
        requested_by: "op@laptop".into(),
        stdin_tty: false,
        progress: false,
    }
}

/// Host a answering with each of `turns` in turn, then 404.
fn fake(test: &str, turns: &[Vec<RestoreEvent>]) -> Result<FakeHosts, Box<dyn std::error::Error>> {
    let answers: Vec<String> = turns.iter().map(|t| stream(t)).collect();
    let answers: Vec<&str> = answers.iter().map(String::as_str).collect();
    Ok(FakeHosts::new(test, &[("a", NO_SNAPSHOT)], "{}")?.answering_in_turn("a", &answers))
}

struct Run {
    result: Result<(), RestoreError>,
    out: String,
    err: String,
    asked: Vec<String>,
}

impl Run {
    /// stdout under --json: one event per line, nothing else.
    fn events(&self) -> Result<Vec<RestoreEvent>, serde_json::Error> {
        self.out.lines().map(serde_json::from_str).collect()
    }
}

async fn run(fake: &FakeHosts, s: &RestoreSettings, answer: &str) -> Run {
    let (mut out, mut err, mut asked) = (Vec::new(), Vec::new(), Vec::new());
    let result = run_with(&fake.transport, s, &mut out, &mut err, |q| {
        asked.push(q.to_owned());
        Ok(answer.to_owned())
    })
    .await;
    Run {
        result,
        out: text(&out),
        err: text(&err),
        asked,
    }
}

#[tokio::test]
async fn a_dry_run_prints_the_plan_after_one_dry_request() -> Result<(), Box<dyn std::error::Error>>
{
    let fake = fake("restore-dry", &[dry_events()])?;
    let mut s = settings(&fake);
    s.dry_run = true;
    s.yes = false;
    let r = run(&fake, &s, "y").await;
    r.result?;
    assert_eq!(fake.requests(), [DRY_REQUEST]);
    assert_eq!(r.out, format!("{PLAN_TEXT}    dry run: nothing changed\n"));
    assert!(
        r.asked.is_empty() && r.err.is_empty(),
        "{:?} {}",
        r.asked,
        r.err
    );
    Ok(())
}

#[tokio::test]
async fn yes_restores_the_snapshot_shown_and_reports_each_step()
-> Result<(), Box<dyn std::error::Error>> {
    let fake = fake("restore-yes", &[dry_events(), restore_events(None)])?;
    let r = run(&fake, &settings(&fake), "n").await;
    r.result?;
    assert_eq!(fake.requests(), [DRY_REQUEST, REAL_REQUEST]);
    assert_eq!(r.out, format!("{PLAN_TEXT}restored a in 42.0s\n"));
    let expected = "  waiting for the host's operations lock, held by backup (schedule)
  stop api…
  stop api  done 0.3s
  restore postgres app…
  restore postgres app  done 12.5s
";
    assert_eq!(r.err, expected);
    assert!(r.asked.is_empty());
    Ok(())
}

#[tokio::test]
async fn a_failed_restore_exits_1_with_hostd_error() -> Result<(), Box<dyn std::error::Error>> {
    let error = "pg_restore app: exit 1; the live database is untouched";
    let fake = fake("restore-fail", &[dry_events(), restore_events(Some(error))])?;
    let r = run(&fake, &settings(&fake), "").await;
    let e = r.result.err().ok_or("expected a failure")?;
    assert!(matches!(e, RestoreError::Failed { .. }), "{e:?}");
    assert_eq!(e.to_string(), format!("restore of a failed: {error}"));
    assert_eq!(e.exit_code(), ExitCode::FAILURE);
    assert!(!r.out.contains("restored"), "{}", r.out);
    assert_eq!(fake.requests().len(), 2);
    Ok(())
}

#[tokio::test]
async fn hostd_refusal_surfaces_its_message_and_nothing_more_is_sent()
-> Result<(), Box<dyn std::error::Error>> {
    let fake = fake("restore-404", &[])?;
    let r = run(&fake, &settings(&fake), "y").await;
    let e = r.result.err().ok_or("expected a failure")?;
    assert_eq!(
        e.to_string(),
        "a: hostd answered 404 to /v1/restore: no snapshot 0123abcd; hostctl backups lists them"
    );
    assert_eq!(e.exit_code(), ExitCode::FAILURE);
    assert_eq!(fake.requests(), [DRY_REQUEST]);
    assert!(r.out.is_empty(), "{}", r.out);
    Ok(())
}

#[tokio::test]
async fn without_yes_and_no_terminal_it_refuses_after_the_plan()
-> Result<(), Box<dyn std::error::Error>> {
    let fake = fake("restore-noyes", &[dry_events(), dry_events()])?;
    for json in [false, true] {
        let mut s = settings(&fake);
        s.yes = false;
        s.json = json;
        let r = run(&fake, &s, "y").await;
        let e = r.result.err().ok_or("expected a refusal")?;
        assert!(matches!(e, RestoreError::NeedsYes { .. }), "{e:?}");
        assert!(e.to_string().contains("pass --yes; nothing changed"), "{e}");
        assert_eq!(e.exit_code(), ExitCode::from(EXIT_USAGE));
        assert!(r.asked.is_empty());
    }
    // Each attempt sent its dry run and nothing else.
    assert_eq!(fake.requests(), [DRY_REQUEST, DRY_REQUEST]);
    Ok(())
}

#[tokio::test]
async fn at_a_terminal_anything_but_yes_declines() -> Result<(), Box<dyn std::error::Error>> {
    let fake = fake(
        "restore-ask",
        &[dry_events(), dry_events(), restore_events(None)],
    )?;
    let mut s = settings(&fake);
    s.yes = false;
    s.stdin_tty = true;
    let r = run(&fake, &s, "\n").await;
    let e = r.result.err().ok_or("expected a decline")?;
    assert_eq!(e.to_string(), "restore of a not confirmed; nothing changed");
    assert_eq!(e.exit_code(), ExitCode::FAILURE);
    assert_eq!(
        r.asked,
        ["Restore a from these snapshots? This replaces live data. [y/N]"]
    );
    assert_eq!(fake.requests(), [DRY_REQUEST]);
    let r = run(&fake, &s, " Yes\n").await;
    r.result?;
    assert_eq!(fake.requests(), [DRY_REQUEST, DRY_REQUEST, REAL_REQUEST]);
    Ok(())
}

#[tokio::test]
async fn json_prints_the_plan_then_the_restore_events_one_per_line()
-> Result<(), Box<dyn std::error::Error>> {
    let fake = fake(
        "restore-json",
        &[dry_events(), restore_events(None), dry_events()],
    )?;
    let mut s = settings(&fake);
    s.json = true;
    let r = run(&fake, &s, "").await;
    let events = r.events()?;
    r.result?;
    let mut expected = vec![dry_events().remove(0)];
    expected.extend(restore_events(None));
    assert_eq!(events, expected);
    assert!(r.err.is_empty(), "{}", r.err);

    s.dry_run = true;
    let r = run(&fake, &s, "").await;
    let events = r.events()?;
    r.result?;
    assert_eq!(events, dry_events());
    Ok(())
}

#[tokio::test]
async fn a_stream_ending_without_finished_says_what_hostd_says_of_the_restore()
-> Result<(), Box<dyn std::error::Error>> {
    let mut events = restore_events(None);
    events.truncate(4);
    let holding = r#"200 OK|{"holder":{"operation":"restore latest","requested_by":"op@laptop","since":"2026-12-07T00:00:00Z","pid":7}}"#;
    let (dry, cut) = (stream(&dry_events()), stream(&events));
    let held = FakeHosts::new("restore-cut-held", &[("a", NO_SNAPSHOT)], "{}")?
        .answering_in_turn("a", &[&dry, &cut, holding]);
    let r = run(&held, &settings(&held), "").await;
    let e = r.result.err().ok_or("expected an error")?;
    assert_eq!(
        e.to_string(),
        "the connection to a ended before the restore finished; hostd carries it on by itself (`restore latest` holds the host)"
    );
    // hostd gone: no claim that it carries on.
    let fake = fake("restore-cut", &[dry_events(), events])?;
    let r = run(&fake, &settings(&fake), "").await;
    let e = r.result.err().ok_or("expected an error")?;
    assert!(
        e.to_string().starts_with(
            "the connection to a ended before the restore finished; hostd does not answer: it may have stopped mid-run"
        ),
        "{e}"
    );
    assert!(e.hint().unwrap_or_default().contains("hostctl status"));
    assert_eq!(e.exit_code(), ExitCode::FAILURE);
    assert!(r.err.ends_with("stop api  done 0.3s\n"), "{}", r.err);
    Ok(())
}

#[tokio::test]
async fn a_plan_that_fails_changes_nothing() -> Result<(), Box<dyn std::error::Error>> {
    let failed = RestoreEvent::Finished {
        ok: false,
        seconds: 0.1,
        error: Some("no snapshot of kind redis in that run".into()),
    };
    let fake = fake("restore-noplan", &[vec![failed]])?;
    let r = run(&fake, &settings(&fake), "").await;
    let e = r.result.err().ok_or("expected an error")?;
    assert_eq!(
        e.to_string(),
        "cannot get a restore plan from a: no snapshot of kind redis in that run; nothing changed"
    );
    assert_eq!(fake.requests(), [DRY_REQUEST]);
    Ok(())
}

#[test]
fn restore_acts_on_exactly_one_host() -> Result<(), Box<dyn std::error::Error>> {
    let fake = FakeHosts::new("restore-single", &[("a", ""), ("b", "")], "{}")?;
    let e = Targets::pick("x", &fake.hosts, None)?
        .single()
        .err()
        .ok_or("expected an error")?;
    assert_eq!(
        e.to_string(),
        "environment x has several hosts (a, b); pick one with --host"
    );
    let one = Targets::pick("x", &fake.hosts, Some("b"))?.single()?;
    assert_eq!(one.name, "b");
    Ok(())
}

#[test]
fn progress_bars_follow_the_bytes_and_give_way_to_lines() -> std::io::Result<()> {
    let mut err = Vec::new();
    {
        let hidden: fn() -> ProgressDrawTarget = ProgressDrawTarget::hidden;
        let mut f = render::Follower::drawing(&mut err, Some(hidden));
        let progress = |bytes, total| RestoreEvent::Progress {
            step: "restore files".into(),
            bytes,
            total,
        };
        f.event(&RestoreEvent::Step {
            step: "restore files".into(),
        })?;
        f.event(&progress(10, None))?;
        let shown = f.shown.as_ref().map(|s| (s.look, s.bar.position()));
        assert_eq!(shown, Some((render::Look::Bytes, 10)));
        f.event(&progress(40, Some(100)))?;
        let shown = f
            .shown
            .as_ref()
            .map(|s| (s.look, s.bar.position(), s.bar.length()));
        assert_eq!(shown, Some((render::Look::BytesOf(100), 40, Some(100))));
        f.event(&RestoreEvent::StepDone {
            step: "restore files".into(),
            seconds: 1.25,
        })?;
        assert!(f.shown.is_none());
        f.check_plan(&the_plan(), &the_plan())?;
        let mut other = the_plan();
        other.snapshots.truncate(1);
        f.check_plan(&the_plan(), &other)?;
    }
    let err = text(&err);
    // With bars the start of a step is the spinner, not a line.
    assert_eq!(
        err,
        "  restore files  done 1.2s\nwarning: hostd's plan differs from the one shown: \
         snapshots 01234567; stopped: api; restarted: redis\n"
    );
    Ok(())
}
