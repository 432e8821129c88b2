//! The AWS stand-in's CloudWatch Logs, read back with boto3 from the
//! sandbox's moto venv (what a reader of the real service would use), and
//! a cuttable TCP relay in front of it, for outages.

use std::io::Write;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use anyhow::{Context, Result, ensure};

use crate::Sandbox;

/// Every stream of a group and every event of each, oldest first.
const LOGS_PY: &str = r#"
import boto3, json, sys
c = boto3.client("logs", endpoint_url="http://10.231.0.2:5000", region_name="us-east-1",
                 aws_access_key_id="suite", aws_secret_access_key="suite")
group = sys.argv[1]
out = {}
try:
    streams = [s["logStreamName"] for p in c.get_paginator("describe_log_streams").paginate(logGroupName=group)
               for s in p["logStreams"]]
except c.exceptions.ResourceNotFoundException:
    streams = []
for name in streams:
    events, token = [], None
    while True:
        kw = {"logGroupName": group, "logStreamName": name, "startFromHead": True}
        if token:
            kw["nextToken"] = token
        page = c.get_log_events(**kw)
        events += [[e["timestamp"], e["message"]] for e in page["events"]]
        if not page["events"] or page["nextForwardToken"] == token:
            break
        token = page["nextForwardToken"]
    out[name] = events
json.dump(out, sys.stdout)
"#;

/// Stream name → its events (timestamp ms, message), oldest first.
pub type Streams = std::collections::BTreeMap<String, Vec<(i64, String)>>;

impl Sandbox {
    /// What the stand-in holds for `group`.
    pub fn log_events(&self, group: &str) -> Result<Streams> {
        let python = self.state_dir()?.join("aws/venv/bin/python");
        let out = Command::new(&python)
            .args(["-c", LOGS_PY, group])
            .env_clear()
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("run {}", python.display()))?;
        ensure!(
            out.status.success(),
            "reading CloudWatch Logs from moto failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).context("boto3 printed no JSON object")
    }
}

/// A relay on the sandbox bridge (10.231.0.1, the project's own address)
/// to the AWS stand-in, which can be cut: while cut, it refuses new
/// connections and has closed the open ones.
pub struct Relay {
    pub addr: SocketAddr,
    cut: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
    accepting: Option<JoinHandle<()>>,
}

impl Relay {
    pub fn start(to: SocketAddr) -> Result<Self> {
        let listener = TcpListener::bind("10.231.0.1:0").context("bind the relay")?;
        let addr = listener.local_addr()?;
        let (cut, stop) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        );
        let open = Arc::new(Mutex::new(Vec::new()));
        let (c, s, o) = (Arc::clone(&cut), Arc::clone(&stop), Arc::clone(&open));
        let accepting = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = conn else { continue };
                if c.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(upstream) = TcpStream::connect(to) else {
                    continue;
                };
                if let Ok(mut open) = o.lock() {
                    open.extend(client.try_clone().ok());
                    open.extend(upstream.try_clone().ok());
                }
                pipe(&client, &upstream);
                pipe(&upstream, &client);
            }
        });
        Ok(Self {
            addr,
            cut,
            stop,
            open,
            accepting: Some(accepting),
        })
    }

    /// Cuts (or restores) the way to the stand-in.
    pub fn set_cut(&self, cut: bool) {
        self.cut.store(cut, Ordering::SeqCst);
        if cut {
            self.close_open();
        }
    }

    fn close_open(&self) {
        if let Ok(mut open) = self.open.lock() {
            for s in open.drain(..) {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
    }
}

/// Copies `from` to `to` until either closes; the thread ends with them.
fn pipe(from: &TcpStream, to: &TcpStream) {
    let (Ok(mut from), Ok(mut to)) = (from.try_clone(), to.try_clone()) else {
        return;
    };
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from, &mut to);
        let _ = to.shutdown(Shutdown::Write);
        let _ = to.flush();
    });
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.close_open();
        // Wakes the accept loop so it sees `stop`.
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.accepting.take() {
            let _ = t.join();
        }
    }
}
