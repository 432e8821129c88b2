use hostd_api::{HealthStatus, JobRun, JobStatus};

use super::*;
use crate::fake_hosts::{FakeHosts, text};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn job(name: &str, last_run: Option<JobRun>, running: bool, health: HealthStatus) -> JobStatus {
    JobStatus {
        name: name.into(),
        schedule: "*-*-* 03:00:00".into(),
        command: "bin/x".into(),
        service: Some("api".into()),
        unit: format!("hostd-job-{name}.service"),
        running,
        last_run,
        next_run: Some("2026-01-03T03:00:00Z".into()),
        health,
        reason: None,
    }
}

fn job_run(finished: Option<&str>, result: &str, exit_code: Option<i32>) -> JobRun {
    JobRun {
        started: "2026-01-02T03:00:00Z".into(),
        finished: finished.map(Into::into),
        result: result.into(),
        exit_code,
        trigger: "timer".into(),
    }
}

fn jobs() -> JobsList {
    let ok = job_run(Some("2026-01-02T03:01:05Z"), "success", Some(0));
    let failed = job_run(Some("2026-01-02T03:00:12Z"), "exit-code", Some(3));
    let mut report = job("report", Some(failed), false, HealthStatus::Degraded);
    report.reason = Some("the last run failed (exit-code, exit 3)".into());
    let mut sitemap = job("sitemap", None, false, HealthStatus::Healthy);
    sitemap.schedule = "hourly".into();
    sitemap.next_run = None;
    JobsList {
        jobs: vec![
            job("cleanup", Some(ok), false, HealthStatus::Healthy),
            report,
            job(
                "reindex",
                Some(job_run(None, "running", None)),
                true,
                HealthStatus::Healthy,
            ),
            sitemap,
        ],
    }
}

/// `jobs` over every host of `fake`: the exit code and stdout.
async fn list(
    fake: &FakeHosts,
    json: bool,
) -> Result<(ExitCode, String), Box<dyn std::error::Error>> {
    let settings = ReadSettings {
        targets: Targets::pick("x", &fake.hosts, None)?,
        json,
        timeout: Duration::from_secs(10),
    };
    let mut out = Vec::new();
    let code = list_with(&fake.transport, &settings, &mut out).await?;
    Ok((code, text(&out)))
}

#[tokio::test]
async fn jobs_lists_each_host_with_reasons_under_unhealthy_rows() -> TestResult {
    let listing = format!("200 OK|{}", serde_json::to_string(&jobs())?);
    let down = r#"500 Internal Server Error|{"error":"cannot read the timers"}"#;
    let empty = r#"200 OK|{"jobs":[]}"#;
    let fake = FakeHosts::new(
        "jobs-list",
        &[("a", &listing), ("b", down), ("c", empty)],
        "{}",
    )?;
    let (code, out) = list(&fake, false).await?;
    assert_eq!(code, ExitCode::FAILURE);
    // The header keeps its padding: it is one styled span.
    let expected = "\
a
    NAME     SCHEDULE        LAST RUN                      RESULT              NEXT RUN            \n    \
    cleanup  *-*-* 03:00:00  2026-01-02T03:00:00Z (1m 5s)  success             2026-01-03T03:00:00Z
    report   *-*-* 03:00:00  2026-01-02T03:00:00Z (12s)    exit-code (exit 3)  2026-01-03T03:00:00Z
      degraded: the last run failed (exit-code, exit 3)
    reindex  *-*-* 03:00:00  2026-01-02T03:00:00Z          running             2026-01-03T03:00:00Z
    sitemap  hourly          never                         -                   -
b
    b: hostd answered 500 to /v1/jobs: cannot read the timers
c
    no jobs configured
";
    assert_eq!(out, expected);
    assert_eq!(
        fake.requests_sorted(),
        ["a GET /v1/jobs", "b GET /v1/jobs", "c GET /v1/jobs"]
    );
    Ok(())
}

#[tokio::test]
async fn jobs_json_is_one_answer_per_host_as_releases_prints() -> TestResult {
    let listing = format!("200 OK|{}", serde_json::to_string(&jobs())?);
    let fake = FakeHosts::new("jobs-json", &[("a", &listing)], "{}")?;
    let (code, out) = list(&fake, true).await?;
    assert_eq!(code, ExitCode::SUCCESS);
    let printed: serde_json::Value = serde_json::from_str(&out)?;
    let expected = serde_json::json!([{ "host": "a", "answer": jobs() }]);
    assert_eq!(printed, expected);
    Ok(())
}
