use std::time::Duration;

use super::tests::{err, parse};
use super::*;

const SERVICES: &str = r#"[environments.x]
hosts = ["a"]

[services.backend]
build = "cargo build --release"
artifact = "dist"
unit = "api@.service"
keep = 3
[services.backend.hooks]
pre_switch = "bin/migrate"

[services.web]
artifact = "/srv/web.tar.zst"
unit = "web.service"
health_path = "/ready"
health_timeout = "5s"
hook_timeout = "1m"
"#;

fn service_err(table: &str) -> String {
    err(&format!(
        "[environments.x]\nhosts = [\"a\"]\n[services.backend]\n{table}"
    ))
}

#[test]
fn services_resolve_with_defaults() -> Result<(), ConfigError> {
    let c = parse(SERVICES)?;
    let backend = c.service("backend")?;
    assert_eq!(
        backend,
        &DeployService {
            name: "backend".into(),
            build: Some("cargo build --release".into()),
            artifact: PathBuf::from("/proj/dist"),
            unit: "api@.service".into(),
            health_path: "/health".into(),
            health_timeout: Duration::from_secs(30),
            hook_timeout: Duration::from_secs(600),
            keep: 3,
            hooks: Hooks {
                pre_switch: Some("bin/migrate".into()),
                post_deploy: None,
            },
            tasks: BTreeMap::new(),
            dir: PathBuf::from("/proj"),
        }
    );
    let web = c.service("web")?;
    assert_eq!(web.artifact, Path::new("/srv/web.tar.zst"));
    assert_eq!(web.build, None);
    assert_eq!(web.health_path, "/ready");
    assert_eq!(
        (web.health_timeout, web.hook_timeout, web.keep),
        (Duration::from_secs(5), Duration::from_secs(60), 5)
    );
    assert_eq!(web.hooks, Hooks::default());
    Ok(())
}

#[test]
fn unknown_service_key_names_line_and_full_key() {
    let e = service_err("artifact = \"d\"\nunit = \"a.service\"\ncolour = \"red\"\n");
    assert!(
        e.starts_with("/proj/hostctl.toml:6: key services.backend.colour: unknown field `colour`"),
        "{e}"
    );
    let e = service_err(
        "artifact = \"d\"\nunit = \"a.service\"\n[services.backend.hooks]\npre_deploy = \"x\"\n",
    );
    assert!(
        e.starts_with("/proj/hostctl.toml:7: key services.backend.hooks.pre_deploy: unknown field"),
        "{e}"
    );
}

#[test]
fn invalid_service_values_name_the_table_line_and_key() {
    let ok = "artifact = \"d\"\nunit = \"a.service\"\n";
    let cases = [
        ("keep = 1\n", "services.backend.keep", "at least 2"),
        (
            "health_timeout = \"0s\"\n",
            "services.backend.health_timeout",
            "more than zero",
        ),
        (
            "hook_timeout = \"0s\"\n",
            "services.backend.hook_timeout",
            "more than zero",
        ),
        (
            "health_path = \"health\"\n",
            "services.backend.health_path",
            "start with '/'",
        ),
        (
            "build = \" \"\n",
            "services.backend.build",
            "must not be empty",
        ),
        (
            "[services.backend.hooks]\npost_deploy = \"\"\n",
            "services.backend.hooks.post_deploy",
            "must not be empty",
        ),
    ];
    for (extra, key, why) in cases {
        let e = service_err(&format!("{ok}{extra}"));
        assert!(
            e.starts_with(&format!("/proj/hostctl.toml:3: key {key}: ")),
            "{e}"
        );
        assert!(e.contains(why), "{e}");
    }
    for unit in [
        "api",
        "api.socket",
        ".service",
        "a/b.service",
        "a b.service",
    ] {
        let e = service_err(&format!("artifact = \"d\"\nunit = {unit:?}\n"));
        assert!(
            e.starts_with("/proj/hostctl.toml:3: key services.backend.unit: "),
            "{e}"
        );
    }
    let e = err("[services.Backend]\nartifact = \"d\"\nunit = \"a.service\"\n");
    assert!(
        e.starts_with("/proj/hostctl.toml:1: key services.Backend: "),
        "{e}"
    );
    assert!(e.contains("is no service name"), "{e}");
}

#[test]
fn artifact_is_required_and_unit_defaults_to_the_service_name() -> Result<(), ConfigError> {
    let e = service_err("unit = \"a.service\"\n");
    assert!(
        e.contains(":3: key services.backend: missing field `artifact`"),
        "{e}"
    );
    // No unit: hostd's service of the same name (an app declared by
    // `command` in hostd.toml, whose unit hostd writes).
    let c = parse("[environments.x]\nhosts = [\"a\"]\n[services.web]\nartifact = \"d\"\n")?;
    assert_eq!(c.service("web")?.unit, "web");
    Ok(())
}

#[test]
fn unknown_service_lists_the_configured_ones() -> Result<(), ConfigError> {
    let c = parse(SERVICES)?;
    let e = c
        .service("nope")
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert_eq!(
        e,
        "unknown service \"nope\"; /proj/hostctl.toml configures: backend, web"
    );
    let none = parse("")?;
    let e = none
        .service("api")
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert_eq!(
        e,
        "unknown service \"api\"; /proj/hostctl.toml configures no services; add a [services.NAME] table with artifact and unit"
    );
    Ok(())
}

/// A service with `tasks` appended; the tasks start on line 6.
fn with_tasks(tasks: &str) -> Result<Config, ConfigError> {
    parse(&format!(
        "[environments.x]\nhosts = [\"a\"]\n[services.backend]\nartifact = \"d\"\nunit = \"a.service\"\n{tasks}"
    ))
}

fn task_err(tasks: &str) -> String {
    match with_tasks(tasks) {
        Ok(c) => format!("unexpectedly parsed: {c:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn tasks_resolve_with_the_hook_timeout_as_default() -> Result<(), ConfigError> {
    let c = with_tasks(
        "hook_timeout = \"2m\"\n\
         [services.backend.tasks.migrate]\ncommand = \"bin/migrate up\"\npre_switch = true\n\
         [services.backend.tasks.seed]\ncommand = \"bin/seed --demo\"\ntimeout = \"30s\"\n",
    )?;
    let (svc, migrate) = c.task("backend", "migrate")?;
    assert_eq!(
        migrate,
        &Task {
            name: "migrate".into(),
            command: "bin/migrate up".into(),
            pre_switch: true,
            timeout: Duration::from_secs(120),
        }
    );
    let seed = &svc.tasks["seed"];
    assert!(!seed.pre_switch);
    assert_eq!(seed.timeout, Duration::from_secs(30));
    assert_eq!(svc.tasks.keys().collect::<Vec<_>>(), ["migrate", "seed"]);
    // Inline tables are tasks too.
    let c = with_tasks("tasks.check = { command = \"bin/check\" }\n")?;
    assert_eq!(c.task("backend", "check")?.1.timeout, DEFAULT_HOOK_TIMEOUT);
    Ok(())
}

#[test]
fn invalid_tasks_name_the_task_line_and_full_key() {
    let table = "\n[services.backend.tasks.migrate]\n";
    let cases = [
        ("command = \"\"\n", "command", "must not be empty"),
        ("command = \" \"\n", "command", "must not be empty"),
        ("command = \"a\\nb\"\n", "command", "must be one line"),
        ("command = \"a\\u0000b\"\n", "command", "control characters"),
        ("command = \"a\\tb\"\n", "command", "control characters"),
        (
            "command = \"x\"\ntimeout = \"0s\"\n",
            "timeout",
            "must be more than zero",
        ),
    ];
    for (body, key, why) in cases {
        let e = task_err(&format!("{table}{body}"));
        let at = format!("/proj/hostctl.toml:7: key services.backend.tasks.migrate.{key}: ");
        assert!(e.starts_with(&at), "{e}");
        assert!(e.contains(why), "{e}");
    }
    let e = task_err(&format!("{table}comand = \"x\"\n"));
    assert!(
        e.starts_with(
            "/proj/hostctl.toml:8: key services.backend.tasks.migrate.comand: unknown field `comand`"
        ),
        "{e}"
    );
    let e = task_err(&format!("{table}pre_switch = true\n"));
    assert!(
        e.contains(":7: key services.backend.tasks.migrate: missing field `command`"),
        "{e}"
    );
    let e = task_err(&format!("{table}command = \"x\"\npre_switch = \"yes\"\n"));
    assert!(
        e.contains(":9: key services.backend.tasks.migrate.pre_switch: invalid type"),
        "{e}"
    );
    let e = task_err("[services.backend.tasks.Migrate]\ncommand = \"x\"\n");
    assert!(
        e.starts_with("/proj/hostctl.toml:6: key services.backend.tasks.Migrate: "),
        "{e}"
    );
    assert!(e.contains("is no task name: task names are"), "{e}");
}

#[test]
fn unknown_task_lists_the_service_tasks() -> Result<(), ConfigError> {
    let c = with_tasks(
        "[services.backend.tasks.migrate]\ncommand = \"m\"\n[services.backend.tasks.seed]\ncommand = \"s\"\n",
    )?;
    let e = |c: &Config, svc, task| {
        c.task(svc, task)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    assert_eq!(
        e(&c, "backend", "migrat"),
        "unknown task \"migrat\"; /proj/hostctl.toml configures for backend: migrate, seed"
    );
    assert!(e(&c, "api", "migrate").starts_with("unknown service \"api\""));
    let none = with_tasks("")?;
    assert_eq!(
        e(&none, "backend", "migrate"),
        "unknown task \"migrate\"; /proj/hostctl.toml configures no tasks for backend; add a [services.backend.tasks.NAME] table with a command"
    );
    Ok(())
}
