use std::path::Path;
use std::process::ExitCode;

use super::*;
use crate::config::{Config, HostdConfigFile};
use crate::exit::{CommandError, EXIT_USAGE};
use crate::targets::Targets;

type TestResult = Result<(), Box<dyn std::error::Error>>;

#[test]
fn the_declared_file_is_read_whole_within_hostds_bound() -> TestResult {
    let dir = tempfile::tempdir()?;
    let file = |name: &str| HostdConfigFile {
        source: format!("hostd/{name}"),
        path: dir.path().join(name),
    };
    let max = hostd_api::host_config::MAX_CONFIG_BYTES;
    std::fs::write(dir.path().join("max.toml"), "#".repeat(max))?;
    std::fs::write(dir.path().join("big.toml"), "#".repeat(max + 1))?;
    std::fs::write(dir.path().join("binary.toml"), [0xff, 0xfe])?;
    assert_eq!(declared::read_one(&file("max.toml"))?.text.len(), max);
    let said = |name: &str| {
        declared::read_one(&file(name))
            .err()
            .map(|e| (hostd_api::error_chain(&e), e.exit_code()))
    };
    let at = |name: &str| dir.path().join(name).display().to_string();
    let usage = ExitCode::from(EXIT_USAGE);
    assert_eq!(
        said("big.toml"),
        Some((
            format!(
                "hostd/big.toml ({}) is larger than the {max} bytes hostd accepts",
                at("big.toml")
            ),
            usage
        ))
    );
    assert_eq!(
        said("binary.toml"),
        Some((
            format!(
                "cannot read hostd/binary.toml ({}), the hostd_config of hostctl.toml: it is not UTF-8 text",
                at("binary.toml")
            ),
            usage
        ))
    );
    let missing = said("missing.toml").map(|(m, _)| m).unwrap_or_default();
    assert!(
        missing.starts_with(&format!(
            "cannot read hostd/missing.toml ({})",
            at("missing.toml")
        )) && missing.contains("No such file"),
        "{missing}"
    );
    Ok(())
}

#[test]
fn each_host_gets_its_own_file_or_its_environments() -> TestResult {
    let dir = tempfile::tempdir()?;
    std::fs::create_dir(dir.path().join("hostd"))?;
    std::fs::write(dir.path().join("hostd/production.toml"), "shared = 1\n")?;
    std::fs::write(dir.path().join("hostd/b.toml"), "own = 2\n")?;
    let config = Config::from_str(
        "[environments.x]\nhosts = [\"a\", \"b\", \"c\"]\nhostd_config = \"hostd/production.toml\"\n\
         [hosts.b]\naddress = \"10.0.0.2\"\nhostd_config = \"hostd/b.toml\"\n",
        &dir.path().join("hostctl.toml"),
    )?;
    let (_, hosts) = config.select(None)?;
    let targets = Targets::pick("x", hosts, None)?;
    let files = declared::read_all(&config, &targets)?;
    let got: Vec<(&str, &str)> = files
        .iter()
        .map(|d| (d.source.as_str(), d.text.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("hostd/production.toml", "shared = 1\n"),
            ("hostd/b.toml", "own = 2\n"),
            ("hostd/production.toml", "shared = 1\n")
        ]
    );
    let unset = Config::from_str(
        "[environments.x]\nhosts = [\"a\"]\n",
        Path::new("/p/hostctl.toml"),
    )?;
    let (_, hosts) = unset.select(None)?;
    let e = declared::read_all(&unset, &Targets::pick("x", hosts, None)?)
        .err()
        .ok_or("expected an error")?;
    assert!(
        e.to_string()
            .starts_with("/p/hostctl.toml: environment x sets no hostd_config; set `hostd_config"),
        "{e}"
    );
    assert_eq!(e.exit_code(), ExitCode::from(EXIT_USAGE));
    Ok(())
}
