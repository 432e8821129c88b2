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

pub(super) fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::from_str(text, Path::new("/proj/hostctl.toml"))
}

pub(super) fn err(text: &str) -> String {
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

#[test]
fn a_duplicate_key_is_named_with_its_line() {
    let e = err("[ssh]\nuser = \"a\"\nuser = \"b\"\n");
    assert!(e.contains("/proj/hostctl.toml:3"), "{e}");
    assert!(e.contains("ssh.user"), "{e}");
}
