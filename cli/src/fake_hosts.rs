//! Test support, shared by every module's tests: a fake `ssh` that plays
//! hostd for any number of hosts (or fails to reach them, or runs remote
//! commands), hosts' status as hostd reports it, and styled output as
//! plain text.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use hostd_api::{
    ActiveState, BackupKind, HealthReport, HealthStatus, HostStatus, ServiceSummary, SnapshotInfo,
    UnitStatus,
};

use crate::config::{Config, HostTarget};
use crate::transport::Transport;

/// Plays ssh. A host named in $UNREACHABLE fails as ssh does, one in
/// $HANGING never answers. A remote command other than `hostd dial-stdio`
/// runs through `sh -c` as sshd would, in $FAKE_HOME with $FAKE_BIN first
/// on PATH and the host's name in $HOST. Else it plays hostd for any
/// number of requests on one connection: the status comes from
/// $STATUS_BODY; other requests get "$ANSWER_<host>_<n>" for a host's n-th
/// such request (from 0) if set, else "$ANSWER_<host>", as
/// `CODE REASON|BODY`. Every request line is appended to $LOG.
const FAKE_SSH: &str = r#"#!/bin/bash
dest=""
while [ "$#" -gt 0 ]; do case "$1" in -o|-p|-i|-l) shift 2;; --) shift; break;; *) dest="$1"; shift;; esac; done
case " $UNREACHABLE " in *" $dest "*) echo "ssh: connect to host $dest port 22: Connection refused" >&2; exit 255;; esac
case " $HANGING " in *" $dest "*) sleep 30; exit 0;; esac
if [ "$*" != "hostd dial-stdio" ] && [ "$*" != "sudo -n hostd dial-stdio" ]; then
  cd "$FAKE_HOME" && PATH="$FAKE_BIN:$PATH" HOST="$dest" exec sh -c "$*"
fi
while IFS= read -r first; do
  first="${first%$'\r'}"; len=0; body=""
  while IFS= read -r line; do
    line="${line%$'\r'}"; [ -z "$line" ] && break
    case "$line" in [Cc]ontent-[Ll]ength:*) len="${line#*: }";; esac
  done
  [ "$len" -gt 0 ] && IFS= read -r -N "$len" body
  echo "$dest ${first% HTTP/1.1} $body" >> "$LOG"
  case "$first" in
    "GET /v1/status "*) code="200 OK"; out="$STATUS_BODY" ;;
    *) n=$(cat "$LOG.$dest.n" 2>/dev/null || echo 0); echo $((n + 1)) > "$LOG.$dest.n"
       var="ANSWER_${dest}_$n"; [ -n "${!var+set}" ] || var="ANSWER_$dest"
       code="${!var%%|*}"; out="${!var#*|}" ;;
  esac
  printf 'HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s' "$code" "${#out}" "$out"
done
"#;

/// A temporary directory with the fake ssh, its request log, and the
/// hosts' home and programs for remote commands; removed on drop.
pub(crate) struct FakeHosts {
    dir: PathBuf,
    pub transport: Transport,
    pub hosts: Vec<HostTarget>,
}

impl FakeHosts {
    /// `answers`: per host, the answer to every request but the status, as
    /// `CODE REASON|BODY`; `status_body` answers `GET /v1/status`.
    pub fn new(
        test: &str,
        answers: &[(&str, &str)],
        status_body: &str,
    ) -> Result<Self, Box<dyn std::error::Error>> {
        // Unique per fixture too: tests of different modules run in parallel
        // and may pick the same short name; a shared directory mixes their
        // logs and is removed under the other test's feet.
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("hostctl-fake-{test}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(dir.join("bin"))?;
        std::fs::create_dir_all(dir.join("home"))?;
        let fake = dir.join("ssh");
        executable(&fake, FAKE_SSH)?;
        let names: Vec<String> = answers.iter().map(|(h, _)| format!("{h:?}")).collect();
        let config = Config::from_str(
            &format!("[environments.x]\nhosts = [{}]\n", names.join(", ")),
            Path::new("/p/hostctl.toml"),
        )?;
        let (_, hosts) = config.select(None)?;
        let mut transport = Transport::with_program(&fake, dir.clone())
            .with_env("LC_ALL", "C")
            .with_env("LOG", dir.join("log"))
            .with_env("FAKE_BIN", dir.join("bin"))
            .with_env("FAKE_HOME", dir.join("home"))
            .with_env("STATUS_BODY", status_body);
        for (host, answer) in answers {
            transport = transport.with_env(format!("ANSWER_{host}"), *answer);
        }
        Ok(Self {
            dir,
            transport,
            hosts: hosts.to_vec(),
        })
    }

    /// `host` answers its requests but the status with `answers`, one
    /// after the other; then with its answer given to [`Self::new`].
    pub fn answering_in_turn(mut self, host: &str, answers: &[&str]) -> Self {
        for (n, answer) in answers.iter().enumerate() {
            self.transport = self
                .transport
                .clone()
                .with_env(format!("ANSWER_{host}_{n}"), *answer);
        }
        self
    }

    /// These hosts fail as ssh does when it cannot connect.
    pub fn unreachable(mut self, hosts: &[&str]) -> Self {
        self.transport = self
            .transport
            .clone()
            .with_env("UNREACHABLE", hosts.join(" "));
        self
    }

    /// These hosts never answer.
    pub fn hanging(mut self, hosts: &[&str]) -> Self {
        self.transport = self.transport.clone().with_env("HANGING", hosts.join(" "));
        self
    }

    /// A program remote commands find first on PATH, as `script`.
    pub fn with_program(
        self,
        name: &str,
        script: &str,
    ) -> Result<Self, Box<dyn std::error::Error>> {
        executable(&self.dir.join("bin").join(name), script)?;
        Ok(self)
    }

    /// The directory remote commands run in.
    pub fn home(&self) -> PathBuf {
        self.dir.join("home")
    }

    /// Every request, as `host METHOD PATH BODY` (trimmed).
    pub fn requests(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.join("log"))
            .unwrap_or_default()
            .lines()
            .map(|l| l.trim_end().to_owned())
            .collect()
    }

    /// [`Self::requests`] sorted: hosts asked at once log their requests
    /// in whatever order they came.
    pub fn requests_sorted(&self) -> Vec<String> {
        let mut requests = self.requests();
        requests.sort();
        requests
    }
}

/// A 200 answer carrying `events` as NDJSON, as hostd streams a long
/// operation (a restore, a task run).
pub(crate) fn stream<T: serde::Serialize>(events: &[T]) -> String {
    let lines: Vec<String> = events
        .iter()
        .map(|e| serde_json::to_string(e).unwrap_or_default())
        .collect();
    format!("200 OK|{}\n", lines.join("\n"))
}

/// What anstream shows where styles are stripped.
pub(crate) fn text(out: &[u8]) -> String {
    anstream::adapter::strip_str(&String::from_utf8_lossy(out)).to_string()
}

pub(crate) fn unit(
    service: &str,
    unit: &str,
    instance: Option<u32>,
    state: ActiveState,
) -> UnitStatus {
    UnitStatus {
        service: service.into(),
        unit: unit.into(),
        instance,
        active_state: state,
        sub_state: if state == ActiveState::Active {
            "running"
        } else {
            "dead"
        }
        .into(),
    }
}

pub(crate) fn summary(
    name: &str,
    unit: &str,
    instances: Option<u32>,
    max: Option<u32>,
) -> ServiceSummary {
    ServiceSummary {
        name: name.into(),
        unit: unit.into(),
        running: true,
        instances,
        max_instances: max,
        restarts: 0,
    }
}

/// A healthy host `h` running hostd 0.1.0 for 1h 2m 5s, with these units
/// and services, and nothing else to report.
pub(crate) fn host_status(units: Vec<UnitStatus>, services: Vec<ServiceSummary>) -> HostStatus {
    HostStatus {
        hostname: "h".into(),
        hostd_version: "0.1.0".into(),
        hostd_build: None,
        hostd_uptime_seconds: 3725,
        units,
        services,
        events: vec![],
        health: HealthReport {
            status: HealthStatus::Healthy,
            checked_at: "2026-01-01T00:00:00Z".into(),
            components: vec![],
        },
        instance: None,
        last_apply: None,
        shipping: None,
    }
}

/// A postgres dump of 1.2 GiB and a 512-byte Redis snapshot; each added a
/// tenth of its size.
pub(crate) fn snapshots() -> Vec<SnapshotInfo> {
    let snapshot = |id: &str, kind, database: Option<&str>, size| SnapshotInfo {
        id: id.into(),
        time: "2026-01-02T03:00:05Z".into(),
        kind,
        host: "a".into(),
        release: database.map(|_| "r42".into()),
        database: database.map(Into::into),
        paths: vec![],
        tags: vec![],
        size,
        added: size / 10,
    };
    vec![
        snapshot(
            "0123456789abcdef",
            BackupKind::Postgres,
            Some("app"),
            1_288_490_189,
        ),
        snapshot("fedcba9876543210", BackupKind::Redis, None, 512),
    ]
}

fn executable(path: &Path, script: &str) -> Result<(), Box<dyn std::error::Error>> {
    std::fs::write(path, script)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
    runnable(path)
}

/// Waits until `script` can be executed. A test thread that forks while
/// this one still has the file open for writing gives its child a copy of
/// that descriptor until the child execs, and meanwhile executing the file
/// fails with ETXTBSY ("text file busy"). Once one run works, later ones do.
fn runnable(script: &Path) -> Result<(), Box<dyn std::error::Error>> {
    const ETXTBSY: i32 = 26;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match std::process::Command::new(script)
            .stdin(std::process::Stdio::null())
            .env("LOG", "/dev/null")
            .status()
        {
            Ok(_) => return Ok(()),
            Err(e) if e.raw_os_error() == Some(ETXTBSY) && std::time::Instant::now() < deadline => {
                std::thread::yield_now();
            }
            Err(e) => return Err(e.into()),
        }
    }
}

impl Drop for FakeHosts {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
