use std::path::Path;

use super::tests::{err, parse};
use super::*;

const TWO_ENVIRONMENTS: &str = r#"[environments.production]
hosts = ["a", "b", "c"]
hostd_config = "./hostd/production.toml"
[environments.staging]
hosts = ["s", "b"]
[hosts.a]
address = "10.0.0.1"
[hosts.b]
address = "10.0.0.2"
hostd_config = "hostd/b.toml"
"#;

/// Each host's file, as `host=source@path`.
fn files(c: &Config, environment: &str) -> Result<Vec<String>, ConfigError> {
    let (name, hosts) = c.select(Some(environment))?;
    Ok(c.hostd_configs(name, hosts)?
        .into_iter()
        .map(|(h, f)| format!("{}={}@{}", h.name, f.source, f.path.display()))
        .collect())
}

#[test]
fn a_host_overrides_its_environment_and_sources_stay_relative() -> Result<(), ConfigError> {
    let c = parse(TWO_ENVIRONMENTS)?;
    assert_eq!(
        files(&c, "production")?,
        [
            "a=hostd/production.toml@/proj/./hostd/production.toml",
            "b=hostd/b.toml@/proj/hostd/b.toml",
            "c=hostd/production.toml@/proj/./hostd/production.toml",
        ]
    );
    Ok(())
}

#[test]
fn a_missing_hostd_config_names_the_file_the_environment_and_the_key() -> Result<(), ConfigError> {
    let c = parse(TWO_ENVIRONMENTS)?;
    let e = files(&c, "staging").err().map(|e| e.to_string());
    assert_eq!(
        e.as_deref(),
        Some(
            "/proj/hostctl.toml: environment staging sets no hostd_config and s has none of its \
             own; set `hostd_config = \"PATH\"` under [environments.staging] (the hostd.toml its \
             hosts run; PATH relative to the directory of hostctl.toml), or under [hosts.NAME] \
             for a host with a file of its own"
        )
    );
    // `--host b` alone is fine: b has its own.
    let (_, hosts) = c.select(Some("staging"))?;
    let b: Vec<HostTarget> = hosts.iter().filter(|h| h.name == "b").cloned().collect();
    let found = c.hostd_configs("staging", &b)?;
    assert_eq!(
        found.first().map(|(_, f)| f.source.as_str()),
        Some("hostd/b.toml")
    );
    let none = parse("[environments.x]\nhosts = [\"a\"]\n")?;
    let e = files(&none, "x").err().map(|e| e.to_string());
    assert!(
        e.as_deref().is_some_and(|e| e.starts_with(
            "/proj/hostctl.toml: environment x sets no hostd_config; set `hostd_config"
        )),
        "{e:?}"
    );
    Ok(())
}

#[test]
fn hostd_config_is_parsed_strictly() {
    let e = err("[environments.x]\nhosts = [\"a\"]\nhostd_config = \"/etc/hostd/hostd.toml\"\n");
    assert!(
        e.starts_with(
            "/proj/hostctl.toml:3: key environments.x.hostd_config: \"/etc/hostd/hostd.toml\" must be relative"
        ),
        "{e}"
    );
    let e = err("[hosts.a]\naddress = \"h\"\nhostd_config = \"~/h.toml\"\n");
    assert!(e.contains(":3: key hosts.a.hostd_config: "), "{e}");
    let e = err("[environments.x]\nhosts = [\"a\"]\nhostd_config = \".\"\n");
    assert!(
        e.ends_with("must name a file, e.g. \"hostd/production.toml\""),
        "{e}"
    );
    let e = err("[environments.x]\nhosts = [\"a\"]\nhostd_config = 3\n");
    assert!(
        e.contains(":3: key environments.x.hostd_config: invalid type"),
        "{e}"
    );
    let e = err("[environments.x]\nhosts = [\"a\"]\nhostd_conf = \"x.toml\"\n");
    assert!(
        e.contains(":3: key environments.x.hostd_conf: unknown field `hostd_conf`"),
        "{e}"
    );
}

#[test]
fn a_path_going_up_is_kept_as_written() -> Result<(), ConfigError> {
    let c = Config::from_str(
        "[environments.x]\nhosts = [\"a\"]\nhostd_config = \"../hostd/x.toml\"\n",
        Path::new("/repo/deploy/hostctl.toml"),
    )?;
    assert_eq!(
        files(&c, "x")?,
        ["a=../hostd/x.toml@/repo/deploy/../hostd/x.toml"]
    );
    Ok(())
}
