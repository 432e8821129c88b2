use std::path::{Path, PathBuf};

use super::*;

const SANDBOX: &str = r#"default_environment = "sandbox"
[ssh]
user = "admin"
port = 2222
identity_file = "keys/id_ed25519"
known_hosts_file = "/abs/known_hosts"
connect_timeout = "5s"
options = ["ProxyJump=bastion"]
hostd_path = "/usr/local/bin/hostd"
[environments.sandbox]
hosts = ["a", "b"]
[environments.prod]
hosts = ["web1.example.org"]
[hosts.a]
address = "10.231.0.10"
[hosts.b]
address = "10.231.0.11"
port = 22
user = "root"
options = []
"#;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::from_str(text, Path::new("/proj/hostctl.toml"))
}

fn err(text: &str) -> String {
    match parse(text) {
        Ok(c) => format!("unexpectedly parsed: {c:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn full_example_resolves_defaults_and_overrides() -> Result<(), ConfigError> {
    let c = parse(SANDBOX)?;
    let (name, hosts) = c.select(None)?;
    assert_eq!(name, "sandbox");
    let [a, b] = hosts else {
        return Err(ConfigError::NotFound {
            start: PathBuf::new(),
        });
    };
    assert_eq!(
        (a.destination.as_str(), a.port, a.user.as_deref()),
        ("10.231.0.10", Some(2222), Some("admin"))
    );
    assert_eq!(a.options, vec!["ProxyJump=bastion".to_owned()]);
    assert_eq!(a.connect_timeout, Duration::from_secs(5));
    assert_eq!(a.hostd_path, "/usr/local/bin/hostd");
    assert_eq!((b.port, b.user.as_deref()), (Some(22), Some("root")));
    assert!(b.options.is_empty());
    let (_, prod) = c.select(Some("prod"))?;
    assert_eq!(prod[0].destination, "web1.example.org");
    assert!(!prod[0].from_table);
    Ok(())
}

#[test]
fn relative_paths_resolve_against_the_config_directory() -> Result<(), ConfigError> {
    let c = parse(SANDBOX)?;
    let a = &c.select(None)?.1[0];
    assert_eq!(
        a.identity_file.as_deref(),
        Some(Path::new("/proj/keys/id_ed25519"))
    );
    assert_eq!(
        a.known_hosts_file.as_deref(),
        Some(Path::new("/abs/known_hosts"))
    );
    Ok(())
}

#[test]
fn unknown_key_names_file_line_and_full_key() {
    let e = err("[environments.x]\nhosts = [\"a\"]\n[ssh]\nuser = \"u\"\nprot = 22\n");
    assert!(
        e.starts_with("/proj/hostctl.toml:5: key ssh.prot: unknown field `prot`"),
        "{e}"
    );
    let e = err("[environments.x]\nhosts = [\"a\"]\n[services.web]\nunit = \"x\"\n");
    assert!(e.starts_with("/proj/hostctl.toml:3: key services"), "{e}");
    let e = err("[environments.x]\nhosts = [\"a\"]\n[hosts.a]\naddress = \"h\"\nadress = \"h\"\n");
    assert!(e.contains(":5: key hosts.a.adress: unknown field"), "{e}");
}

#[test]
fn bad_value_names_key_line_and_expectation() {
    let e = err("[environments.x]\nhosts = [\"a\"]\n\n[ssh]\nport = \"x\"\n");
    assert_eq!(
        e,
        "/proj/hostctl.toml:5: key ssh.port: invalid type: string \"x\", expected u16"
    );
    let e = err("[ssh]\nconnect_timeout = \"five\"\n");
    assert!(
        e.starts_with("/proj/hostctl.toml:2: key ssh.connect_timeout: "),
        "{e}"
    );
    let e = err("[hosts.a]\nport = 22\n");
    assert!(e.contains("key hosts.a: missing field `address`"), "{e}");
}

#[test]
fn syntax_error_names_line() {
    let e = err("[ssh]\nuser = \n");
    assert!(e.starts_with("/proj/hostctl.toml:2: "), "{e}");
}

#[test]
fn empty_host_list_and_bad_destinations_are_rejected() {
    let e = err("[environments.x]\nhosts = []\n");
    assert!(
        e.contains(":2: key environments.x.hosts: empty host list"),
        "{e}"
    );
    let e = err(
        "[environments.x]\nhosts = [\n  \"ok\",\n  \"-oProxyCommand=x\",\n]\n[hosts.y]\naddress = \"h\"\n",
    );
    assert!(
        e.contains(":4: key environments.x.hosts: host \"-oProxyCommand=x\""),
        "{e}"
    );
    assert!(e.contains("those are: y"), "{e}");
    let e = err("[environments.x]\nhosts = [\"\"]\n");
    assert!(e.contains("not a usable ssh destination"), "{e}");
}

#[test]
fn unknown_default_environment_lists_known_ones() {
    let e = err(
        "default_environment = \"stage\"\n[environments.prod]\nhosts = [\"a\"]\n[environments.dev]\nhosts = [\"b\"]\n",
    );
    assert!(
        e.contains(
            ":1: key default_environment: no environment named \"stage\"; defined: dev, prod"
        ),
        "{e}"
    );
}

#[test]
fn selection_rules() -> Result<(), ConfigError> {
    let two = parse("[environments.prod]\nhosts = [\"a\"]\n[environments.dev]\nhosts = [\"b\"]\n")?;
    let e = two
        .select(Some("stage"))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert_eq!(
        e,
        "unknown environment \"stage\"; /proj/hostctl.toml defines: dev, prod"
    );
    let e = two
        .select(None)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains("pass -e ENV"), "{e}");
    let one = parse("[environments.only]\nhosts = [\"a\"]\n")?;
    assert_eq!(one.select(None)?.0, "only");
    let none = parse("")?;
    assert!(matches!(
        none.select(None),
        Err(ConfigError::NoEnvironments { .. })
    ));
    Ok(())
}

#[test]
fn disabling_host_key_checking_is_refused() {
    let e = err("[ssh]\noptions = [\"StrictHostKeyChecking=no\"]\n");
    assert!(e.contains("key ssh.options"), "{e}");
    assert!(e.contains("never disables host key checking"), "{e}");
}

#[test]
fn discovery_walks_up_and_reports_the_start_directory() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("hostctl-cfg-test-{}", std::process::id()));
    let sub = dir.join("a/b");
    std::fs::create_dir_all(&sub)?;
    std::fs::write(dir.join(FILE_NAME), "[environments.x]\nhosts = [\"h\"]\n")?;
    let found = Config::discover(None, &sub);
    let explicit = Config::discover(Some(Path::new("../../hostctl.toml")), &sub);
    std::fs::remove_dir_all(&dir)?;
    assert_eq!(found?.path, dir.join(FILE_NAME));
    assert!(explicit.is_ok());
    let missing = Config::discover(None, Path::new("/nonexistent/dir"));
    assert!(matches!(missing, Err(ConfigError::NotFound { .. })));
    Ok(())
}

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
fn artifact_and_unit_are_required() {
    let e = service_err("unit = \"a.service\"\n");
    assert!(
        e.contains(":3: key services.backend: missing field `artifact`"),
        "{e}"
    );
    let e = service_err("artifact = \"d\"\n");
    assert!(
        e.contains(":3: key services.backend: missing field `unit`"),
        "{e}"
    );
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
