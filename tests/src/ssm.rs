//! The shared AWS stand-in's SSM, driven from the host side with boto3 from
//! the sandbox's moto venv: planting parameters, and reading the real values
//! for canary checks. Only while a sandbox is up: 10.231.0.2 is an address
//! of the project's own namespace then, and not ours otherwise.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, ensure};

use crate::Sandbox;

/// Values travel through stdin, never through arguments.
const SSM_PY: &str = r#"
import boto3, json, sys
c = boto3.client("ssm", endpoint_url="http://10.231.0.2:5000", region_name="us-east-1",
                 aws_access_key_id="suite", aws_secret_access_key="suite")
action, prefix = sys.argv[1], sys.argv[2]
if action == "get":
    out = {}
    for page in c.get_paginator("get_parameters_by_path").paginate(
            Path=prefix, Recursive=True, WithDecryption=True):
        for p in page["Parameters"]:
            out[p["Name"][len(prefix):]] = p["Value"]
    json.dump(out, sys.stdout)
elif action == "put":
    for name, value in json.load(sys.stdin):
        c.put_parameter(Name=prefix + name, Value=value, Type="SecureString", Overwrite=True)
else:
    for name in json.load(sys.stdin):
        try:
            c.delete_parameter(Name=prefix + name)
        except c.exceptions.ParameterNotFound:
            pass
"#;

impl Sandbox {
    /// `/var/lib/hostctl/sandbox` (or `$HOSTCTL_SANDBOX_DIR`): the parent
    /// of the sandbox's own directory, where the AWS venv lives.
    pub fn state_dir(&self) -> Result<PathBuf> {
        self.hostctl_toml
            .parent()
            .and_then(|d| d.parent())
            .map(PathBuf::from)
            .context("no state directory above the sandbox's hostctl.toml")
    }

    /// Every parameter under `prefix`, by name relative to it.
    pub fn ssm_values(&self, prefix: &str) -> Result<BTreeMap<String, String>> {
        let out = self.ssm("get", prefix, b"")?;
        serde_json::from_slice(&out).context("boto3 printed no JSON object")
    }

    /// Creates or overwrites SecureString parameters (names relative to
    /// `prefix`; values must be UTF-8, as SSM's are).
    pub fn ssm_put(&self, prefix: &str, params: &[(String, Vec<u8>)]) -> Result<()> {
        let pairs = params
            .iter()
            .map(|(n, v)| {
                Ok((
                    n.as_str(),
                    std::str::from_utf8(v).context("SSM values are UTF-8")?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        self.ssm("put", prefix, &serde_json::to_vec(&pairs)?)
            .map(|_| ())
    }

    /// Deletes parameters; absent ones are fine.
    pub fn ssm_delete(&self, prefix: &str, names: &[&str]) -> Result<()> {
        self.ssm("delete", prefix, &serde_json::to_vec(names)?)
            .map(|_| ())
    }

    fn ssm(&self, action: &str, prefix: &str, input: &[u8]) -> Result<Vec<u8>> {
        let python = self.state_dir()?.join("aws/venv/bin/python");
        let mut child = Command::new(&python)
            .args(["-c", SSM_PY, action, prefix])
            .env_clear()
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("run {}", python.display()))?;
        if let Some(mut pipe) = child.stdin.take() {
            pipe.write_all(input)?;
        }
        let out = child.wait_with_output()?;
        ensure!(
            out.status.success(),
            "SSM {action} in moto failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(out.stdout)
    }
}
