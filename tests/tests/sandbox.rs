//! The integration suite: one sandbox host (real systemd, PostgreSQL, Redis,
//! OpenSSH) booted for the whole run, trials run one at a time because they
//! stop and break things on that host, and each puts back what it changed.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use hostctl_tests::{Sandbox, http_get, poll};
use libtest_mimic::{Arguments, Failed, Trial};

mod app_services;
mod backup_faults;
mod backups;
mod cloudwatch;
mod confinement;
mod data_volume;
mod declared_apps;
mod deploys;
mod foundation;
mod health_checks;
mod host_config;
mod image;
mod jobs;
mod manager;
mod nextjs_app;
mod restore_faults;
mod restores;
mod sandbox_host;
mod secrets;
mod secrets_delivery;
mod secrets_rotation;
mod secrets_wiring;
mod services;
mod setup;
mod upgrades;

type TestFn = fn(&Sandbox) -> Result<()>;

/// `module::function` for each trial; the trial is named after the function.
macro_rules! trials {
    ($($module:ident :: $f:ident),* $(,)?) => {
        &[$((stringify!($f), $module::$f as TestFn)),*]
    };
}

/// In order: each trial leaves the host as it found it, but the order keeps
/// a failure's output readable (foundations first).
const TRIALS: &[(&str, TestFn)] = trials![
    foundation::hostd_is_active_ready_and_pings_the_watchdog,
    foundation::status_json_reports_units_and_health,
    foundation::hostd_learns_its_instance_identity_from_imdsv2,
    foundation::health_turns_503_naming_a_stopped_unit_and_recovers,
    foundation::unit_changes_reach_health_through_signals_not_polling,
    foundation::broken_config_fails_hostd_naming_file_line_and_key,
    foundation::check_config_refuses_a_service_whose_unit_is_not_installed,
    foundation::unreachable_host_fails_status_naming_it,
    foundation::control_socket_is_root_and_group_only,
    foundation::hostd_stops_gracefully_on_sigterm,
    manager::the_demo_api_serves_through_the_shared_socket,
    manager::a_killed_instance_is_seen_by_signal_recorded_and_restarted,
    manager::scale_survives_a_hostd_restart_and_a_full_stop,
    manager::every_unit_verifies_and_the_api_is_confined,
    manager::hostd_installs_a_changed_shipped_unit_and_reloads_systemd,
    services::logs_prints_recent_journal_lines_of_redis,
    services::logs_of_an_unknown_service_lists_the_known_ones,
    services::restart_redis_reports_it_active_with_a_new_invocation,
    services::stop_then_start_redis_moves_health_to_503_and_back,
    services::scale_api_to_3_and_back_to_1,
    services::scale_refusals_exit_2_and_change_nothing,
    sandbox_host::a_second_sandbox_runs_beside_the_first_and_leaves_nothing,
    sandbox_host::a_failed_up_says_what_failed_and_leaves_nothing,
    health_checks::postgres_down_is_503_naming_it_and_recovers,
    health_checks::metrics_expose_unit_and_component_series,
    health_checks::a_burst_of_health_requests_does_not_query_postgres_more,
    health_checks::emf_lines_appear_when_emf_path_is_configured,
    health_checks::two_thousand_idle_connections_do_not_starve_health_or_hostd,
    health_checks::a_full_tmpfs_under_data_degrades_health_naming_it,
    data_volume::postgres_keeps_its_cluster_in_data,
    data_volume::redis_keeps_its_dump_and_aof_in_data_redis,
    data_volume::postgres_and_redis_wait_for_the_data_mount,
    secrets::imds_standin_answers_only_with_a_token,
    secrets::secrets_check_lists_names_through_the_instance_profile_never_values,
    secrets::every_page_and_level_of_a_large_prefix_is_fetched,
    secrets_delivery::secrets_reach_the_api_byte_exact_root_only_and_never_leak,
    secrets_delivery::a_missing_required_secret_keeps_the_api_down_naming_it,
    secrets_delivery::unreachable_ssm_starts_services_from_the_stored_copy_degraded,
    secrets_delivery::an_aws_outage_keeps_services_up_degrades_and_recovers,
    secrets_rotation::sync_restarts_only_the_api_and_a_second_sync_restarts_nothing,
    secrets_rotation::secrets_list_json_shows_names_versions_and_services_never_values,
    secrets_rotation::the_refresh_interval_rotates_without_a_sync,
    secrets_wiring::wired_passwords_reach_postgres_redis_and_the_api_and_rotate,
    backups::backup_now_writes_every_kind_that_restic_reads_checks_and_dumps,
    restores::restore_latest_puts_back_postgres_redis_and_files,
    restores::a_killed_restore_leaves_the_live_database_intact,
    restore_faults::a_restore_killed_mid_swap_comes_back_with_every_kind_old_and_running,
    restore_faults::a_failed_files_swap_swaps_the_database_and_redis_back,
    restore_faults::a_mount_point_or_a_file_system_without_room_is_refused_before_anything_stops,
    restores::a_new_instance_with_an_empty_volume_restores_the_latest_backup,
    restores::snapshots_planted_in_the_repository_are_refused,
    restores::a_redis_keeping_its_rdb_elsewhere_is_refused,
    confinement::app_code_cannot_reach_the_instance_metadata_service,
    backup_faults::an_aws_outage_mid_backup_fails_it_clearly_and_the_repository_stays_valid,
    backup_faults::a_stopped_redis_fails_only_its_part_of_a_backup,
    backup_faults::a_sigkilled_hostd_mid_backup_is_followed_by_a_good_backup,
    deploys::deploys_under_load_fail_no_request_with_one_and_with_several_instances,
    deploys::a_broken_release_rolls_back_by_itself_showing_why,
    deploys::escaping_artifacts_are_refused_and_write_nothing_outside,
    deploys::concurrent_deploys_never_interleave_and_a_killed_hostctl_leaves_one_release,
    deploys::a_killed_hostd_mid_switch_returns_to_the_previous_release,
    deploys::a_fleet_deploy_stops_at_the_failed_host,
    app_services::two_app_services_deploy_scale_and_roll_back_independently,
    declared_apps::apps_declared_in_hostd_toml_run_without_unit_files_and_roll_back_by_themselves,
    nextjs_app::an_unmodified_nextjs_app_deploys_behind_the_front_with_no_failed_request,
    jobs::jobs_run_on_schedule_and_by_hand_and_failures_degrade_health,
    jobs::a_failed_migration_aborts_the_deploy_and_run_executes_tasks_by_hand,
    host_config::a_reload_applies_in_place_and_puts_back_what_does_not_come_up,
    host_config::hostctl_apply_converges_the_host_to_the_repository_and_puts_back_a_failure,
    cloudwatch::journals_and_metrics_reach_cloudwatch_once_in_order_across_kills_and_outages,
    image::packer_provisions_a_bare_host_that_boots_healthy,
    setup::setup_brings_a_bare_host_to_the_image_state_and_the_repository_drives_it,
    upgrades::a_group_member_cannot_upgrade_hostd_and_is_recorded_by_the_kernel,
    upgrades::upgrade_hostd_restarts_on_the_new_build_and_keeps_services_running,
];

fn main() -> std::process::ExitCode {
    let mut args = Arguments::from_args();
    // Trials share one host and change its state: never in parallel.
    args.test_threads = Some(1);
    if args.list {
        let trials = TRIALS
            .iter()
            .map(|(name, _)| Trial::test(*name, || Ok(())))
            .collect();
        return libtest_mimic::run(&args, trials).exit_code();
    }
    if !nix_is_root() {
        eprintln!(
            "the integration suite boots sandbox hosts and must run as root (sudo tests/run)"
        );
        return std::process::ExitCode::FAILURE;
    }
    let name = format!("t{}", std::process::id() % 100_000);
    let sandbox = match Sandbox::up(&name).and_then(|s| wait_until_serving(&s).map(|()| s)) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            eprintln!("cannot start the sandbox host for the suite: {e:#}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let trials = TRIALS
        .iter()
        .map(|(trial_name, f)| {
            let sandbox = Arc::clone(&sandbox);
            let f = *f;
            Trial::test(*trial_name, move || {
                // Trials restart hostd on purpose, more often than its
                // StartLimitBurst allows in a minute; start each with a
                // fresh counter (reset-failed zeroes it).
                sandbox
                    .root_sh("systemctl reset-failed hostd.service")
                    .and_then(|_| f(&sandbox))
                    .map_err(|e| Failed::from(format!("{e:#}")))
            })
        })
        .collect();
    let conclusion = libtest_mimic::run(&args, trials);
    // Tear down before exiting: exit() would skip the destructor.
    drop(sandbox);
    conclusion.exit_code()
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// The suite starts from a healthy host: hostd active and /health 200.
fn wait_until_serving(s: &Sandbox) -> Result<()> {
    let addr = s.health_addr()?;
    poll(
        "sandbox /health to answer 200",
        Duration::from_secs(60),
        || {
            let r = http_get(addr, "/health")?;
            Ok((r.status == 200).then_some(()))
        },
    )
    .context("hostd in the fresh sandbox never became healthy")?;
    ensure!(s.unit_property("hostd.service", "ActiveState")? == "active");
    Ok(())
}
