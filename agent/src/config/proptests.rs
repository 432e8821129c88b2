//! hostd.toml, however wrong, is an error naming what is wrong, never a
//! panic: any text, and any values under the keys hostd knows.

use proptest::prelude::*;

use super::Config;

fn parse(text: &str) {
    let _ = Config::parse(std::path::Path::new("/etc/hostd/hostd.toml"), text);
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
        Just("{}".to_owned()),
    ]
}

const KEYS: &[&str] = &[
    "state_dir",
    "health.listen",
    "health.check_interval",
    "control.socket",
    "control.group",
    "services.api.unit",
    "services.api.instances",
    "services.api.max_instances",
    "services.api.health_socket",
    "services.api.health_path",
    "services.api.health_timeout",
    "services.api.database",
    "services.api.release_dir",
    "services.api.restart.backoff_initial",
    "services.api.restart.backoff_max",
    "services.api.restart.max_restarts",
    "services.api.restart.window",
    "checks.timeout",
    "checks.postgres",
    "checks.redis",
    "checks.disk.paths",
    "checks.disk.degraded_percent",
    "checks.memory.unhealthy_percent",
    "secrets.path",
    "secrets.refresh_interval",
    "backup.bucket",
    "backup.at",
    "backup.jitter",
    "backup.keep.daily",
    "jobs.tidy.schedule",
    "jobs.tidy.command",
    "jobs.tidy.timeout",
    "metrics.emf_interval",
];

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
        // The same with the API unit declared, so service rules run too.
        parse(&format!("services.api.unit = \"api@.service\"\n{text}"));
    }
}
