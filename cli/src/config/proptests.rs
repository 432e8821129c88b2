//! hostctl.toml, however wrong, is an error naming what is wrong, never a
//! panic: any text, and any values under the keys hostctl knows.

use proptest::prelude::*;

use super::Config;

fn parse(text: &str) {
    let _ = Config::from_str(text, std::path::Path::new("/work/app/hostctl.toml"));
}

/// A TOML value of any kind, extremes included.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|f| format!("{f:?}")),
        any::<bool>().prop_map(|b| b.to_string()),
        ".{0,40}".prop_map(|s| format!("{s:?}")),
        "[0-9]{1,25}[a-z]{0,8}".prop_map(|s| format!("\"{s}\"")),
        Just("[]".to_owned()),
        Just("[\"\"]".to_owned()),
        Just("{}".to_owned()),
    ]
}

const KEYS: &[&str] = &[
    "default_environment",
    "ssh.user",
    "ssh.port",
    "ssh.identity_file",
    "ssh.known_hosts_file",
    "ssh.connect_timeout",
    "ssh.options",
    "ssh.hostd_path",
    "ssh.root_hostd_path",
    "environments.prod.hosts",
    "hosts.web1.address",
    "hosts.web1.user",
    "hosts.web1.port",
    "hosts.web1.options",
    "services.backend.build",
    "services.backend.artifact",
    "services.backend.unit",
    "services.backend.health_path",
    "services.backend.health_timeout",
    "services.backend.hook_timeout",
    "services.backend.keep",
    "services.backend.hooks.pre_switch",
    "services.backend.tasks.migrate.command",
    "services.backend.tasks.migrate.pre_switch",
    "services.backend.tasks.migrate.timeout",
];

/// A file the values are dropped into: valid until a value breaks it.
const BASE: &str =
    "[environments.prod]\nhosts = [\"web1\"]\n\n[hosts.web1]\naddress = \"10.0.0.5\"\n";

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn any_text_is_an_answer(text in ".{0,400}") {
        parse(&text);
    }

    #[test]
    fn any_value_under_known_keys_is_an_answer(
        picks in proptest::collection::vec((0..KEYS.len(), value()), 1..8)
    ) {
        let text: String = picks
            .iter()
            .map(|(k, v)| format!("{} = {v}\n", KEYS[*k]))
            .collect();
        parse(&text);
        parse(&format!("{text}{BASE}"));
    }
}
