use super::*;
use crate::exit::EXIT_USAGE;
use crate::fake_hosts::{FakeHosts, stream, text};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const CONFIG: &str = r#"[environments.one]
hosts = ["a"]
[environments.two]
hosts = ["a", "b"]
[services.backend]
artifact = "dist"
unit = "api@.service"
hook_timeout = "2m"
[services.backend.tasks.migrate]
command = "bin/migrate up"
pre_switch = true
[services.backend.tasks.seed]
command = "bin/seed"
timeout = "10s"
"#;

/// hostctl.toml above in a directory of its own, as `--config` names it.
struct Project {
    dir: tempfile::TempDir,
}

impl Project {
    fn new() -> std::io::Result<Self> {
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("hostctl.toml"), CONFIG)?;
        Ok(Self { dir })
    }

    fn global(&self, env: &str) -> GlobalArgs {
        GlobalArgs {
            verbose: 0,
            config: Some(self.dir.path().join("hostctl.toml")),
            env: Some(env.into()),
        }
    }

    fn task(&self, env: &str, argv: &[&str]) -> Result<RunSettings, JobsError> {
        let a = run_args(argv).map_err(|e| JobsError::Output(std::io::Error::other(e)))?;
        RunSettings::resolve_task(&a, &self.global(env), self.dir.path())
    }
}

fn run_args(argv: &[&str]) -> Result<args::RunArgs, clap::Error> {
    use clap::Parser;
    let mut full = vec!["hostctl", "run"];
    full.extend(argv);
    match crate::cli::Cli::try_parse_from(&full)?.command {
        crate::cli::Command::Run(a) => Ok(a),
        _ => Err(clap::Error::new(clap::error::ErrorKind::InvalidSubcommand)),
    }
}

fn finished(result: &str, exit_code: Option<i32>, error: Option<&str>) -> RunEvent {
    RunEvent::Finished {
        result: result.into(),
        exit_code,
        seconds: 1.5,
        error: error.map(Into::into),
    }
}

/// A migration printing two lines, then `last`.
fn migration(last: RunEvent) -> Vec<RunEvent> {
    vec![
        RunEvent::Started {
            unit: "hostd-hook-api-task-migrate-7-0".into(),
        },
        RunEvent::Output {
            line: "applying 0003_users".into(),
        },
        RunEvent::Output {
            line: "  done".into(),
        },
        last,
    ]
}

fn settings(fake: &FakeHosts, path: &str, json: bool) -> RunSettings {
    RunSettings {
        target: fake.hosts[0].clone(),
        what: "task migrate".into(),
        path: path.into(),
        body: Some(Bytes::from_static(b"{}")),
        json,
        timeout: Duration::from_secs(10),
    }
}

struct Ran {
    result: Result<ExitCode, JobsError>,
    out: String,
    err: String,
}

impl Ran {
    fn failure(self) -> Result<JobsError, &'static str> {
        self.result.err().ok_or("expected a failure")
    }
}

async fn run(fake: &FakeHosts, s: &RunSettings) -> Ran {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let result = run_with(&fake.transport, s, &mut out, &mut err).await;
    Ran {
        result,
        out: text(&out),
        err: text(&err),
    }
}

#[tokio::test]
async fn run_sends_the_configured_task_and_prints_its_output() -> TestResult {
    let project = Project::new()?;
    let answer = stream(&migration(finished("success", Some(0), None)));
    let fake = FakeHosts::new("run-task", &[("a", &answer)], "{}")?;
    let mut s = project.task("one", &["backend", "migrate"])?;
    s.target = fake.hosts[0].clone();
    let r = run(&fake, &s).await;
    assert_eq!(r.result?, ExitCode::SUCCESS);
    let request = TaskRequest {
        unit: "api@.service".into(),
        task: "migrate".into(),
        command: "bin/migrate up".into(),
        timeout_seconds: 120,
        requested_by: crate::operator::requested_by(),
    };
    assert_eq!(
        fake.requests(),
        [format!(
            "a POST /v1/tasks/run {}",
            serde_json::to_string(&request)?
        )]
    );
    assert_eq!(r.out, "applying 0003_users\n  done\n");
    assert_eq!(
        r.err,
        "a: running as hostd-hook-api-task-migrate-7-0\na: task migrate succeeded in 1.5s\n"
    );
    Ok(())
}

#[tokio::test]
async fn a_failed_run_exits_with_its_status_and_says_why() -> TestResult {
    let cases = [
        (
            finished("exit-code", Some(3), None),
            3,
            "failed: exit-code (exit 3) after 1.5s\n",
        ),
        (
            finished("timeout", None, Some("stopped after 2m (timeout)")),
            1,
            "failed: timeout after 1.5s\n    stopped after 2m (timeout)\n",
        ),
    ];
    for (n, (last, code, said)) in cases.into_iter().enumerate() {
        let answer = stream(&migration(last));
        let fake = FakeHosts::new(&format!("run-fail{n}"), &[("a", &answer)], "{}")?;
        let r = run(&fake, &settings(&fake, "/v1/tasks/run", false)).await;
        assert_eq!(r.result?, ExitCode::from(code));
        assert_eq!(r.out, "applying 0003_users\n  done\n");
        assert!(
            r.err.ends_with(&format!("a: task migrate {said}")),
            "{}",
            r.err
        );
    }
    Ok(())
}

#[tokio::test]
async fn json_prints_hostd_events_one_per_line_and_nothing_else() -> TestResult {
    let events = migration(finished("exit-code", Some(4), None));
    let fake = FakeHosts::new("run-json", &[("a", &stream(&events))], "{}")?;
    let r = run(&fake, &settings(&fake, "/v1/tasks/run", true)).await;
    assert_eq!(r.result?, ExitCode::from(4));
    let printed: Vec<RunEvent> = r
        .out
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    assert_eq!(printed, events);
    assert!(r.err.is_empty(), "{}", r.err);
    Ok(())
}

#[tokio::test]
async fn a_refusal_is_hostd_error_and_a_cut_stream_says_the_run_may_go_on() -> TestResult {
    let held = r#"409 Conflict|{"error":"the operations lock is held by deploy api@.service v2 (op@laptop)"}"#;
    let mut cut = migration(finished("success", Some(0), None));
    cut.pop();
    let fake = FakeHosts::new("run-refused", &[("a", held)], "{}")?
        .answering_in_turn("a", &[held, &stream(&cut)]);
    let s = settings(&fake, "/v1/tasks/run", false);
    let e = run(&fake, &s).await.failure()?;
    assert_eq!(
        e.to_string(),
        "a: hostd answered 409 to /v1/tasks/run: the operations lock is held by deploy api@.service v2 (op@laptop)"
    );
    assert_eq!(e.exit_code(), ExitCode::FAILURE);
    let r = run(&fake, &s).await;
    let e = r.result.err().ok_or("expected an error")?;
    assert_eq!(
        e.to_string(),
        "the connection to a ended before the task migrate finished"
    );
    assert!(e.hint().unwrap_or_default().contains("may go on"));
    assert_eq!(r.out, "applying 0003_users\n  done\n");
    Ok(())
}

#[tokio::test]
async fn jobs_run_posts_the_job_name_and_passes_hostd_refusal_on() -> TestResult {
    let unknown = r#"404 Not Found|{"error":"no job cleanp; this host has: cleanup, sitemap"}"#;
    let done = stream(&[finished("success", Some(0), None)]);
    let fake =
        FakeHosts::new("jobs-run", &[("a", unknown)], "{}")?.answering_in_turn("a", &[&done]);
    let mut s = settings(&fake, "/v1/jobs/cleanup/run", false);
    s.body = None;
    s.what = "job cleanup".into();
    let r = run(&fake, &s).await;
    assert_eq!(r.result?, ExitCode::SUCCESS);
    assert_eq!(r.err, "a: job cleanup succeeded in 1.5s\n");
    s.path = "/v1/jobs/cleanp/run".into();
    let e = run(&fake, &s).await.failure()?;
    assert_eq!(
        e.to_string(),
        "a: hostd answered 404 to /v1/jobs/cleanp/run: no job cleanp; this host has: cleanup, sitemap"
    );
    assert_eq!(
        fake.requests(),
        ["a POST /v1/jobs/cleanup/run", "a POST /v1/jobs/cleanp/run"]
    );
    Ok(())
}

#[test]
fn exit_status_is_the_command_own_or_1() {
    let f = |result: &str, exit_code| {
        Finished {
            result: result.into(),
            exit_code,
            seconds: 0.0,
            error: None,
        }
        .exit_status()
    };
    assert_eq!(f("success", Some(0)), 0);
    assert_eq!(f("success", None), 0);
    assert_eq!(f("exit-code", Some(3)), 3);
    assert_eq!(f("exit-code", Some(255)), 255);
    for (result, code) in [
        ("exit-code", None),
        ("exit-code", Some(0)),
        ("exit-code", Some(256)),
        ("exit-code", Some(-1)),
        ("timeout", None),
        ("signal", None),
    ] {
        assert_eq!(f(result, code), 1, "{result} {code:?}");
    }
}

#[test]
fn run_settings_come_from_hostctl_toml_and_one_host() -> TestResult {
    let project = Project::new()?;
    let s = project.task("one", &["backend", "seed", "--json"])?;
    assert_eq!((s.target.name.as_str(), s.json), ("a", true));
    assert_eq!(s.what, "task seed");
    assert_eq!(s.timeout, Duration::from_secs(70));
    let s = project.task(
        "two",
        &["backend", "seed", "--host", "b", "--timeout", "5m"],
    )?;
    assert_eq!(
        (s.target.name.as_str(), s.timeout),
        ("b", Duration::from_secs(300))
    );

    let e = project
        .task("two", &["backend", "seed"])
        .err()
        .ok_or("expected an error")?;
    assert_eq!(
        e.to_string(),
        "environment two has several hosts (a, b); pick one with --host"
    );
    assert!(e.hint().unwrap_or_default().contains("one host at a time"));
    assert_eq!(e.exit_code(), ExitCode::from(EXIT_USAGE));
    let e = project
        .task("one", &["backend", "migrat"])
        .err()
        .ok_or("expected an error")?;
    assert!(
        e.to_string()
            .ends_with("hostctl.toml configures for backend: migrate, seed"),
        "{e}"
    );
    assert_eq!(e.exit_code(), ExitCode::from(EXIT_USAGE));
    let e = project
        .task("one", &["web", "migrate"])
        .err()
        .ok_or("expected an error")?;
    assert!(
        e.to_string().ends_with("hostctl.toml configures: backend"),
        "{e}"
    );
    Ok(())
}

#[test]
fn jobs_works_bare_with_its_flags_and_with_run() -> Result<(), clap::Error> {
    use crate::cli::{Cli, Command};
    use clap::Parser;
    let jobs = |argv: &[&str]| -> Result<args::JobsArgs, clap::Error> {
        let mut full = vec!["hostctl", "jobs"];
        full.extend(argv);
        match Cli::try_parse_from(&full)?.command {
            Command::Jobs(a) => Ok(a),
            _ => Err(clap::Error::new(clap::error::ErrorKind::InvalidSubcommand)),
        }
    };
    let a = jobs(&[])?;
    assert!(a.command.is_none() && !a.read.json && a.read.host.is_none());
    let a = jobs(&["--json", "--host", "b", "-e", "prod"])?;
    assert!(a.command.is_none() && a.read.json);
    assert_eq!(a.read.host.as_deref(), Some("b"));
    let a = jobs(&["run", "cleanup", "--json", "--timeout", "10m"])?;
    let Some(args::JobsCommand::Run(r)) = a.command else {
        return Err(clap::Error::new(clap::error::ErrorKind::InvalidSubcommand));
    };
    assert_eq!(r.name, "cleanup");
    assert!(r.follow.json);
    assert_eq!(r.follow.timeout, Some(Duration::from_secs(600)));
    for bad in [
        &["run"][..],
        &["run", "Clean_up"],
        &["--json", "run", "cleanup"],
        &["cleanup"],
    ] {
        assert!(jobs(bad).is_err(), "{bad:?} was accepted");
    }
    assert!(run_args(&["backend"]).is_err());
    assert!(run_args(&["backend", "Migrate"]).is_err());
    Ok(())
}
