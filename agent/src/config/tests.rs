use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(Path::new("/etc/hostd/hostd.toml"), text)
}

fn error_text(text: &str) -> String {
    match parse(text) {
        Ok(c) => format!("unexpectedly valid: {c:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn shipped_default_config_is_valid() -> Result<(), ConfigError> {
    let c = parse(include_str!("../../../packer/files/hostd.toml"))?;
    assert_eq!(c.services.len(), 3);
    assert!(c.services["api"].unit.is_template());
    assert_eq!(c.control.group.as_deref(), Some("hostd"));
    Ok(())
}

#[test]
fn empty_config_gets_defaults() -> Result<(), ConfigError> {
    let c = parse("")?;
    assert_eq!(c.health.listen.port(), 7780);
    assert_eq!(c.health.check_interval.0, Duration::from_secs(5));
    assert!(c.services.is_empty());
    Ok(())
}

#[test]
fn unknown_key_names_file_line_and_full_key() {
    let e = error_text("[health]\nlisten = \"127.0.0.1:1\"\nlisen = 3\n");
    assert!(
        e.starts_with("/etc/hostd/hostd.toml:3: key `health.lisen`"),
        "{e}"
    );
    assert!(e.contains("expected `listen` or `check_interval`"), "{e}");
}

#[test]
fn unknown_top_level_table_is_named() {
    let e = error_text("\n[helth]\n");
    assert!(e.contains(":2: key `helth`"), "{e}");
}

#[test]
fn bad_address_names_the_key_and_line() {
    let e = error_text("[health]\n\nlisten = \"localhost\"\n");
    assert!(e.contains(":3: key `health.listen`"), "{e}");
}

#[test]
fn bad_unit_name_is_rejected_with_the_service_key() {
    let e = error_text("[services.redis]\nunit = \"redis server\"\n");
    assert!(e.contains(":2: key `services.redis.unit`"), "{e}");
    assert!(e.contains("not a systemd unit name"), "{e}");
}

#[test]
fn interval_out_of_range_is_rejected() {
    let e = error_text("[health]\ncheck_interval = \"10ms\"\n");
    assert!(e.contains("key `health.check_interval`"), "{e}");
    assert!(e.contains("out of range"), "{e}");
}

#[test]
fn syntax_error_names_the_line() {
    let e = error_text("[health]\nlisten = \n");
    assert!(e.contains(":2:"), "{e}");
}

#[test]
fn instanced_service_config() -> Result<(), ConfigError> {
    let c = parse(
        "[services.api]\nunit = \"api@.service\"\nsocket = \"api.socket\"\ninstances = 2\n\
         health_socket = \"/run/api/{instance}/health.sock\"\n[services.api.restart]\nbackoff_max = \"30s\"\n",
    )?;
    let api = &c.services["api"];
    assert_eq!(api.instances, Some(Count(2)));
    assert_eq!(api.max_instances, Count(8));
    assert_eq!(api.restart.backoff_max.0, Duration::from_secs(30));
    assert_eq!(api.restart.policy, RestartMode::OnFailure);
    assert_eq!(c.service_of_unit("api@7.service"), Some(("api", Some(7))));
    assert_eq!(c.service_of_unit("api@x.service"), None);
    Ok(())
}

#[test]
fn instances_above_max_names_the_line() {
    let e =
        error_text("[services.api]\nunit = \"api@.service\"\nmax_instances = 2\ninstances = 3\n");
    assert!(e.contains(":4: key `services.api.instances`"), "{e}");
    assert!(e.contains("above max_instances"), "{e}");
}

#[test]
fn instances_on_a_plain_unit_is_rejected() {
    let e = error_text("[services.redis]\nunit = \"redis-server.service\"\ninstances = 2\n");
    assert!(e.contains(":3: key `services.redis.instances`"), "{e}");
}

#[test]
fn instance_count_out_of_range() {
    let e = error_text("[services.api]\nunit = \"api@.service\"\ninstances = 0\n");
    assert!(e.contains(":3: key `services.api.instances`"), "{e}");
}

#[test]
fn template_instances_round_trip() -> Result<(), String> {
    let t = UnitName::try_from("api@.service".to_owned())?;
    assert!(t.is_template());
    assert_eq!(
        t.instance(3).map(|u| u.to_string()),
        Some("api@3.service".into())
    );
    assert_eq!(t.instance_of("api@3.service"), Some(3));
    assert_eq!(t.instance_of("api@3.socket"), None);
    assert_eq!(t.instance_of("apix@3.service"), None);
    Ok(())
}

#[test]
fn unit_names_follow_systemd_rules() {
    assert!(UnitName::try_from("postgresql@15-main.service".to_owned()).is_ok());
    assert!(UnitName::try_from("api@.service".to_owned()).is_ok());
    assert!(UnitName::try_from(".service".to_owned()).is_err());
    assert!(UnitName::try_from("redis".to_owned()).is_err());
    assert!(UnitName::try_from("a/b.service".to_owned()).is_err());
}

#[test]
fn database_names_must_be_plain_sql_names() {
    let e = error_text("[services.api]\nunit = \"api@.service\"\ndatabase = \"api; drop\"\n");
    assert!(e.contains(":3: key `services.api.database`"), "{e}");
    assert!(is_sql_identifier("api_v2"));
    assert!(!is_sql_identifier("2api"));
    assert!(!is_sql_identifier("Api"));
}

#[test]
fn bad_check_targets_are_rejected_at_load_without_echoing_them() {
    let e = error_text("[checks]\nredis = \"htp://secret@host\"\n");
    assert!(e.contains(":2: key `checks.redis`"), "{e}");
    assert!(
        !e.contains("secret"),
        "the value leaked into the error: {e}"
    );
    let e = error_text("[checks]\npostgres = \"host='unterminated password=hunter2\"\n");
    assert!(e.contains(":2: key `checks.postgres`"), "{e}");
    assert!(
        !e.contains("hunter2"),
        "the value leaked into the error: {e}"
    );
}

#[test]
fn secrets_section_defaults() -> Result<(), ConfigError> {
    let c =
        parse("[secrets]\npath = \"/zmanim/prod/\"\nrequired = [\"db_password\", \"api/key\"]\n")?;
    let s = c.secrets.as_ref().map(|s| {
        (
            s.path.as_str(),
            s.refresh_interval.0,
            s.store_dir.0.clone(),
            s.required.len(),
            s.region.is_none() && s.endpoint_url.is_none(),
        )
    });
    assert_eq!(
        s,
        Some((
            "/zmanim/prod/",
            Duration::from_secs(300),
            PathBuf::from("/var/lib/hostd/secrets"),
            2,
            true
        ))
    );
    assert!(parse("")?.secrets.is_none());
    Ok(())
}

#[test]
fn secrets_errors_name_file_line_and_key() {
    let e = error_text("[secrets]\n\npath = \"zmanim/prod\"\n");
    assert!(
        e.starts_with("/etc/hostd/hostd.toml:3: key `secrets.path`"),
        "{e}"
    );
    assert!(e.contains("start and end with `/`"), "{e}");

    let e = error_text("[secrets]\npath = \"/a/\"\nrefresh_interval = \"5s\"\n");
    assert!(e.contains(":3: key `secrets.refresh_interval`"), "{e}");
    assert!(e.contains("at least 10s"), "{e}");

    let e = error_text("[secrets]\npath = \"/a/\"\nrequired = [\"ok\", \"/abs\"]\n");
    assert!(e.contains(":3: key `secrets.required[1]`"), "{e}");

    let e = error_text("[secrets]\npath = \"/a/\"\nregion = \"Mars\"\n");
    assert!(e.contains(":3: key `secrets.region`"), "{e}");

    let e = error_text("[secrets]\npath = \"/a/\"\nstore_dir = \"relative\"\n");
    assert!(e.contains(":3: key `secrets.store_dir`"), "{e}");

    let e = error_text("[secrets]\npath = \"/a/\"\nendpoint_url = \"http://k:hunter2@x\"\n");
    assert!(e.contains(":3: key `secrets.endpoint_url`"), "{e}");
    assert!(!e.contains("hunter2"), "{e}");

    let e = error_text("[secrets]\npath = \"/a/\"\nrefresh = \"1m\"\n");
    assert!(e.contains(":3: key `secrets.refresh`"), "{e}");
    assert!(e.contains("expected"), "{e}");

    let e = error_text("[secrets]\nregion = \"us-east-1\"\n");
    assert!(e.contains("key `secrets`"), "{e}");
    assert!(e.contains("missing field `path`"), "{e}");
}

#[test]
fn secrets_go_to_app_services_by_default_and_to_others_by_name() -> Result<(), ConfigError> {
    let c = parse(
        r#"
[secrets]
path = "/app/prod/"
required = ["db_url", "redis_password", "backup_key"]

[services.api]
unit = "api@.service"

[services.worker]
unit = "worker@.service"
secrets = []

[services.redis]
unit = "redis-server.service"
secrets = ["redis_password"]

[services.postgresql]
unit = "postgresql.service"
"#,
    )?;
    assert!(c.secrets_for("api").is_some_and(|s| s.is_all()));
    assert_eq!(
        c.required_for("api"),
        ["db_url", "redis_password", "backup_key"]
    );
    assert_eq!(c.secrets_for("worker"), None);
    assert!(c.required_for("worker").is_empty());
    assert_eq!(c.required_for("redis"), ["redis_password"]);
    assert_eq!(c.secrets_for("postgresql"), None);
    assert!(c.required_for("postgresql").is_empty());
    Ok(())
}

#[test]
fn wired_passwords_are_required_composed_for_users_and_never_handed_out_raw()
-> Result<(), ConfigError> {
    let c = parse(
        r#"
[secrets]
path = "/app/prod/"
required = ["api_key"]
postgres_password = "db_password"
redis_password = "redis_password"
backup_password = "backup_password"

[services.api]
unit = "api@.service"
database = "api"

[services.web]
unit = "web@.service"
secrets = ["api_key"]

[services.worker]
unit = "worker@.service"
secrets = ["redis_password"]
"#,
    )?;
    let all = |names: &[&str]| names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>();
    let api = c.secrets_for("api");
    assert!(api.is_some_and(|s| s.includes("api_key") && !s.includes("db_password")));
    assert!(api.is_some_and(|s| !s.includes("redis_password") && !s.includes("backup_password")));
    assert_eq!(
        c.composed_for("api"),
        crate::config::Composed {
            database: Some("api"),
            redis: true
        }
    );
    assert_eq!(
        c.required_for("api"),
        all(&["api_key", "db_password", "redis_password"])
    );
    assert_eq!(c.composed_for("web"), crate::config::Composed::default());
    assert_eq!(c.required_for("web"), all(&["api_key"]));
    // Named explicitly: raw and as redis_url.
    assert!(c.composed_for("worker").redis);
    assert_eq!(c.required_for("worker"), all(&["redis_password"]));
    Ok(())
}

#[test]
fn a_redis_address_with_its_own_password_is_refused_when_hostd_sets_it() {
    let text = error_text(
        "[secrets]\npath = \"/a/\"\nredis_password = \"r\"\n[checks]\nredis = \"redis://:old@127.0.0.1/\"\n",
    );
    assert!(
        text.contains("checks.redis") && text.contains("without a user or password"),
        "{text}"
    );
    assert!(!text.contains("old@"), "{text}");
}

#[test]
fn service_secrets_are_checked_names_and_need_a_secrets_section() {
    let text = error_text(
        "[secrets]\npath = \"/a/\"\n[services.api]\nunit = \"api@.service\"\nsecrets = [\"/abs\"]\n",
    );
    assert!(
        text.contains("services.api.secrets") && text.contains("/abs"),
        "{text}"
    );
    let text = error_text("[services.redis]\nunit = \"redis-server.service\"\nsecrets = [\"x\"]\n");
    assert!(
        text.contains("services.redis.secrets") && text.contains("[secrets]"),
        "{text}"
    );
    let c = parse("[services.api]\nunit = \"api@.service\"\n");
    assert!(
        c.is_ok_and(|c| c.secrets_for("api").is_none()),
        "no [secrets]: nothing"
    );
}

const APP: &str = "[services.api]\nunit = \"api@.service\"\nrelease_dir = \"/srv/api\"\n";

#[test]
fn jobs_parse_with_defaults() -> Result<(), ConfigError> {
    let c = parse(&format!(
        "{APP}[jobs.cleanup]\nservice = \"api\"\ncommand = \"bin/cleanup\"\nschedule = \"*-*-* 03:00:00\"\n\
         [jobs.report]\ncommand = \"/usr/local/bin/report\"\nschedule = \"hourly\"\ntimeout = \"5m\"\nrandomized_delay = \"30s\"\n"
    ))?;
    assert_eq!(c.jobs.len(), 2);
    assert_eq!(c.jobs["cleanup"].timeout.0, Duration::from_secs(3600));
    assert_eq!(c.jobs["report"].randomized_delay.0, Duration::from_secs(30));
    Ok(())
}

#[test]
fn a_bad_schedule_names_the_job_line_and_value() {
    let e = error_text(&format!(
        "{APP}[jobs.cleanup]\nservice = \"api\"\ncommand = \"bin/cleanup\"\nschedule = \"every tuesday-ish\"\n"
    ));
    assert!(e.contains(":7: key `jobs.cleanup.schedule`"), "{e}");
    assert!(
        e.contains("\"every tuesday-ish\" is not a systemd calendar expression"),
        "{e}"
    );
    // Systemd's own parser decides: this one it takes, a 25th hour it does not.
    let e = error_text("[jobs.x]\ncommand = \"/bin/true\"\nschedule = \"*-*-* 25:00:00\"\n");
    assert!(e.contains("key `jobs.x.schedule`"), "{e}");
}

#[test]
fn a_job_names_a_deployable_service_or_an_absolute_command() {
    let e = error_text("[jobs.x]\nservice = \"web\"\ncommand = \"bin/x\"\nschedule = \"daily\"\n");
    assert!(e.contains("key `jobs.x.service`"), "{e}");
    assert!(e.contains("not an app service"), "{e}");
    let e = error_text("[jobs.x]\ncommand = \"bin/x\"\nschedule = \"daily\"\n");
    assert!(
        e.contains("key `jobs.x.command`") && e.contains("absolute path"),
        "{e}"
    );
    let e = error_text("[jobs.x]\ncommand = \"/bin/x\\nrm -rf /\"\nschedule = \"daily\"\n");
    assert!(e.contains("key `jobs.x.command`"), "{e}");
    let e = error_text("[jobs.X]\ncommand = \"/bin/x\"\nschedule = \"daily\"\n");
    assert!(e.contains("key `jobs.X`"), "{e}");
}

#[test]
fn durations_past_a_year_are_refused_naming_the_key() {
    let text = "[services.api]\nunit = \"api@.service\"\n[services.api.restart]\nbackoff_max = \"100000000years\"\n";
    let e = error_text(text);
    assert!(
        e.contains("services.api.restart.backoff_max") && e.contains("out of range"),
        "{e}"
    );
}

#[test]
fn databases_postgres_itself_relies_on_are_refused() {
    for db in ["postgres", "template1", "pg_monitor", "hostd_restore_api"] {
        let e = error_text(&format!(
            "[services.api]\nunit = \"api@.service\"\ndatabase = \"{db}\"\n"
        ));
        assert!(
            e.contains("services.api.database") && e.contains("PostgreSQL's or hostd's own"),
            "{db}: {e}"
        );
    }
}

#[test]
fn a_debug_of_the_config_never_shows_a_connection_string() -> Result<(), ConfigError> {
    let c = parse(
        "[checks]\npostgres = \"host=db user=x password=hunter2\"\nredis = \"redis://:hunter2@h/\"\n",
    )?;
    let shown = format!("{c:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("<set>"), "{shown}");
    Ok(())
}

#[test]
fn a_duplicate_key_is_named() {
    let e = error_text("[health]\ncheck_interval = \"5s\"\ncheck_interval = \"6s\"\n");
    assert!(e.contains("health.check_interval"), "{e}");
    assert!(e.contains(":3"), "{e}");
}

const WEB: &str = "[services.web]\ncommand = \"node server.js\"\nrelease_dir = \"/srv/web\"\n";

#[test]
fn an_app_declared_by_command_gets_hostds_template_and_private_ports() -> Result<(), ConfigError> {
    let c = parse(&format!("{WEB}port = 3000\n"))?;
    let web = &c.services["web"];
    assert_eq!(web.unit.as_str(), "hostd-app-web@.service");
    assert!(web.is_app() && web.unit.is_template());
    assert_eq!(
        web.instance_port(1),
        Some(13001),
        "private ports: port + 10000 + N"
    );
    assert_eq!(web.instance_port(102), Some(13102));
    let worker = parse(WEB)?;
    assert_eq!(worker.services["web"].instance_port(1), None);
    Ok(())
}

#[test]
fn app_declarations_that_cannot_run_as_written_name_their_key() {
    let cases: &[(String, &str, &str)] = &[
        (
            "[services.web]\nrelease_dir = \"/srv/web\"\n".into(),
            "services.web",
            "needs `unit`",
        ),
        (
            format!("{WEB}unit = \"web@.service\"\n"),
            "services.web.command",
            "not both",
        ),
        (
            "[services.web]\ncommand = \"x\"\n".into(),
            "services.web.release_dir",
            "set release_dir",
        ),
        (
            format!("{WEB}port = 80\n"),
            "services.web.port",
            "privileged",
        ),
        (
            format!("{WEB}port = 7780\n"),
            "services.web.port",
            "health.listen",
        ),
        (
            format!(
                "{WEB}port = 3000\n[services.api]\ncommand = \"x\"\nrelease_dir = \"/srv/api\"\nport = 3000\n"
            ),
            "services.api.port",
            "already the port of services.web",
        ),
        (
            format!("{WEB}port = 3000\ninstance_ports = 65500\n"),
            "services.web.instance_ports",
            "within 1024..=65535",
        ),
        (
            format!("{WEB}port = 3000\ninstance_ports = 2990\n"),
            "services.web.instance_ports",
            "overlap services.web",
        ),
        (
            format!("{WEB}port = 3000\ninstance_ports = 7700\n"),
            "services.web.instance_ports",
            "health.listen",
        ),
        (
            format!("{WEB}port = 3000\nmax_instances = 2\ninstances = 3\n"),
            "services.web.instances",
            "above max_instances",
        ),
        (
            format!("{WEB}environment = {{ PORT = \"1\" }}\n"),
            "services.web.environment",
            "not PORT",
        ),
        (
            format!("{WEB}unit_settings = [\"ExecStart\"]\n"),
            "services.web.unit_settings",
            "Key=value",
        ),
        (
            format!("{WEB}unit_settings = [\"A=b\\nExecStartPre=/bin/evil\"]\n"),
            "services.web.unit_settings",
            "Key=value",
        ),
        (
            format!("{WEB}user = \"root\"\n"),
            "services.web.user",
            "not root",
        ),
        (
            format!("{WEB}health_socket = \"/run/web/{{instance}}.sock\"\n"),
            "services.web.health_socket",
            "$PORT",
        ),
        (
            "[services.api]\nunit = \"api@.service\"\nport = 3000\n".into(),
            "services.api.port",
            "only for an app declared by `command`",
        ),
    ];
    for (text, key, needle) in cases {
        let e = error_text(text);
        assert!(e.contains(&format!("key `{key}")), "{text}: {e}");
        assert!(e.contains(needle), "{text}: {e}");
    }
}
