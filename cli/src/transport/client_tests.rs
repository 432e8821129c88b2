use hostd_api::{ActiveState, ComponentHealth, HealthReport, HealthStatus, HostStatus, UnitStatus};

use super::*;
use crate::transport::Transport;

fn canned() -> HostStatus {
    HostStatus {
        hostname: "sandbox-a".into(),
        hostd_version: "0.1.0".into(),
        hostd_uptime_seconds: 3725,
        units: vec![UnitStatus {
            instance: None,
            service: "redis".into(),
            unit: "redis-server.service".into(),
            active_state: ActiveState::Active,
            sub_state: "running".into(),
        }],
        services: vec![],
        events: vec![],
        health: HealthReport {
            status: HealthStatus::Degraded,
            checked_at: "2026-01-01T00:00:00Z".into(),
            components: vec![ComponentHealth {
                name: "disk:/data".into(),
                status: HealthStatus::Degraded,
                reason: Some("91% full".into()),
            }],
        },
    }
}

/// A child that plays hostd: reads one request head and answers `STATUS`
/// with `BODY` if the request line is for `/v1/status`, else 404.
const FAKE_HOSTD: &str = r#"
IFS= read -r first
while IFS= read -r line; do line="${line%$'\r'}"; [ -z "$line" ] && break; done
case "$first" in
  "GET /v1/status HTTP/1.1"*) ;;
  *) STATUS="404 Not Found"; BODY='{"error":"no such path"}' ;;
esac
printf 'HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s' "$STATUS" "${#BODY}" "$BODY"
"#;

fn bash(script: &str, envs: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new("bash");
    cmd.arg("-c")
        .arg(script)
        .env("LC_ALL", "C")
        .envs(envs.iter().copied());
    cmd
}

fn fake_hostd(status: &str, body: &str) -> Command {
    bash(FAKE_HOSTD, &[("STATUS", status), ("BODY", body)])
}

#[tokio::test]
async fn decodes_host_status_from_a_child_speaking_http() -> Result<(), Box<dyn std::error::Error>>
{
    let body = serde_json::to_string(&canned())?;
    let mut client =
        HostClient::spawn("a", "hostd dial-stdio", fake_hostd("200 OK", &body)).await?;
    let status: HostStatus = client.get_json("/v1/status").await?;
    assert_eq!(status, canned());
    client.close().await;
    Ok(())
}

#[tokio::test]
async fn non_2xx_carries_hostd_error_body() -> Result<(), Box<dyn std::error::Error>> {
    let mut client = HostClient::spawn("a", "hostd dial-stdio", fake_hostd("200 OK", "{}")).await?;
    let err = client
        .get_json::<HostStatus>("/v1/nope")
        .await
        .err()
        .ok_or("expected an error")?;
    assert_eq!(
        err.to_string(),
        "a: hostd answered 404 to /v1/nope: no such path"
    );
    Ok(())
}

#[tokio::test]
async fn undecodable_answer_names_host_and_path() -> Result<(), Box<dyn std::error::Error>> {
    let mut client =
        HostClient::spawn("a", "hostd dial-stdio", fake_hostd("200 OK", r#"{"x":1}"#)).await?;
    let err = client
        .get_json::<HostStatus>("/v1/status")
        .await
        .err()
        .ok_or("expected an error")?;
    assert!(matches!(err, TransportError::Decode { .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with("a: cannot decode hostd's answer to /v1/status"),
        "{err}"
    );
    Ok(())
}

#[tokio::test]
async fn ssh_failure_carries_host_and_stderr() -> Result<(), Box<dyn std::error::Error>> {
    let script = "echo 'Warning: Permanently added x' >&2; \
        echo 'ssh: connect to host 10.231.0.250 port 22: Connection timed out' >&2; exit 255";
    let mut client = HostClient::spawn("db1", "hostd dial-stdio", bash(script, &[])).await?;
    let err = client
        .get_json::<HostStatus>("/v1/status")
        .await
        .err()
        .ok_or("expected an error")?;
    assert!(matches!(err, TransportError::Unreachable { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "db1: ssh failed: ssh: connect to host 10.231.0.250 port 22: Connection timed out"
    );
    Ok(())
}

#[tokio::test]
async fn remote_command_failure_is_told_apart_from_ssh_failure()
-> Result<(), Box<dyn std::error::Error>> {
    let script = "echo 'bash: line 1: hostd: command not found' >&2; exit 127";
    let mut client = HostClient::spawn("a", "hostd dial-stdio", bash(script, &[])).await?;
    let err = client
        .get_json::<HostStatus>("/v1/status")
        .await
        .err()
        .ok_or("expected an error")?;
    assert_eq!(
        err.to_string(),
        "a: `hostd dial-stdio` on the host failed (exit 127): bash: line 1: hostd: command not found"
    );
    assert!(err.hint().unwrap_or_default().contains("hostd_path"));
    Ok(())
}

#[tokio::test]
async fn missing_program_is_a_spawn_error() -> Result<(), Box<dyn std::error::Error>> {
    let t = Transport::with_program("/nonexistent/ssh", std::env::temp_dir());
    let target = crate::config::Config::from_str(
        "[environments.x]\nhosts = [\"h\"]\n",
        std::path::Path::new("/p/hostctl.toml"),
    )?
    .environments
    .remove("x")
    .unwrap_or_default();
    let err = t
        .connect(&target[0])
        .await
        .err()
        .ok_or("expected an error")?;
    assert!(matches!(err, TransportError::Spawn { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("h: cannot run \"/nonexistent/ssh\""),
        "{err}"
    );
    Ok(())
}
