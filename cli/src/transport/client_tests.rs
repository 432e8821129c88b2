use hostd_api::{ActiveState, ComponentHealth, HealthStatus, HostStatus};

use super::*;
use crate::fake_hosts::{host_status, unit};
use crate::transport::Transport;

/// Degraded by a disk, with redis running.
fn canned() -> HostStatus {
    let redis = unit("redis", "redis-server.service", None, ActiveState::Active);
    let mut status = host_status(vec![redis], vec![]);
    status.hostname = "sandbox-a".into();
    status.health.status = HealthStatus::Degraded;
    status.health.components = vec![ComponentHealth {
        name: "disk:/data".into(),
        status: HealthStatus::Degraded,
        reason: Some("91% full".into()),
    }];
    status
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

/// hostd streaming three documents in chunks that cut lines in the middle,
/// the last line without a newline; with $DIE set, ssh gives up before the
/// end of the answer.
const FAKE_STREAM: &str = r#"
IFS= read -r first
while IFS= read -r line; do line="${line%$'\r'}"; [ -z "$line" ] && break; done
printf 'HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n'
chunk() { printf '%x\r\n%s\r\n' "${#1}" "$1"; }
chunk '{"n":1}'$'\n''{"n"'
chunk ':2}'$'\n'
if [ -n "$DIE" ]; then echo 'Timeout, server 10.0.0.1 not responding.' >&2; exit 255; fi
chunk '{"n":3}'
printf '0\r\n\r\n'
"#;

async fn drain(
    lines: &mut crate::transport::JsonLines<'_, serde_json::Value>,
) -> (Vec<serde_json::Value>, Option<TransportError>) {
    let mut got = Vec::new();
    loop {
        match lines.next().await {
            Ok(Some(v)) => got.push(v),
            Ok(None) => return (got, None),
            Err(e) => return (got, Some(e)),
        }
    }
}

#[tokio::test]
async fn a_streamed_answer_comes_line_by_line() -> Result<(), Box<dyn std::error::Error>> {
    let mut client = HostClient::spawn("a", "hostd dial-stdio", bash(FAKE_STREAM, &[])).await?;
    let mut lines = client
        .stream::<serde_json::Value>(Method::GET, "/v1/x", None)
        .await?;
    let (got, err) = drain(&mut lines).await;
    assert!(err.is_none(), "{err:?}");
    let expected: Vec<serde_json::Value> = (1..=3).map(|n| serde_json::json!({ "n": n })).collect();
    assert_eq!(got, expected);
    client.close().await;
    Ok(())
}

#[tokio::test]
async fn a_stream_cut_short_is_a_dropped_connection_with_ssh_last_words()
-> Result<(), Box<dyn std::error::Error>> {
    let mut client =
        HostClient::spawn("a", "hostd dial-stdio", bash(FAKE_STREAM, &[("DIE", "1")])).await?;
    let mut lines = client
        .stream::<serde_json::Value>(Method::POST, "/v1/restore", None)
        .await?;
    let (got, err) = drain(&mut lines).await;
    assert_eq!(got.len(), 2, "{got:?}");
    let err = err.ok_or("expected an error")?;
    assert!(matches!(err, TransportError::Dropped { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "a: the connection dropped while hostd was answering /v1/restore: \
         Timeout, server 10.0.0.1 not responding."
    );
    assert!(err.hint().unwrap_or_default().contains("carries on"));
    Ok(())
}

#[tokio::test]
async fn a_refused_stream_carries_hostd_error_body() -> Result<(), Box<dyn std::error::Error>> {
    let mut client = HostClient::spawn("a", "hostd dial-stdio", fake_hostd("200 OK", "{}")).await?;
    let err = client
        .stream::<serde_json::Value>(Method::GET, "/v1/restore", None)
        .await
        .err()
        .ok_or("expected an error")?;
    assert_eq!(
        err.to_string(),
        "a: hostd answered 404 to /v1/restore: no such path"
    );
    Ok(())
}
