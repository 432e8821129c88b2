//! Issue 4: secrets from SSM Parameter Store, through the real EC2 path:
//! region and instance-profile credentials from the sandbox's IMDSv2
//! stand-in, parameters from moto. No value may ever reach an output.

use anyhow::{Result, ensure};
use hostctl_tests::Sandbox;

const IMDS: &str = "http://169.254.169.254";
const PREFIX: &str = "/hostd/sandbox/";
const EXAMPLES: &[&str] = &[
    "api_secret_key",
    "backup_password",
    "postgres_password",
    "redis_password",
];
const CHECK_CONFIG: &str = "/tmp/secrets-check.toml";

pub fn imds_standin_answers_only_with_a_token(s: &Sandbox) -> Result<()> {
    let code = s.root_sh(&format!(
        "curl -s -o /dev/null -w '%{{http_code}}' {IMDS}/latest/meta-data/placement/region"
    ))?;
    ensure!(code == "401", "a GET without a token got {code}, not 401");

    let headers = s.root_sh(&format!(
        "curl -s -D - -o /dev/null -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 120' \
         {IMDS}/latest/api/token"
    ))?;
    ensure!(
        headers
            .to_ascii_lowercase()
            .contains("x-aws-ec2-metadata-token-ttl-seconds: 120"),
        "the token response does not echo its TTL: {headers}"
    );
    // One shell, so the token never leaves the sandbox.
    let with_token = |path: &str| {
        s.root_sh(&format!(
            "t=$(curl -sf -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 60' {IMDS}/latest/api/token) \
             && curl -sf -H \"X-aws-ec2-metadata-token: $t\" {IMDS}{path}"
        ))
    };
    let region = with_token("/latest/meta-data/placement/region")?;
    ensure!(region == "us-east-1", "region {region:?}");
    let instance_id = with_token("/latest/meta-data/instance-id")?;
    ensure!(
        instance_id.starts_with("i-0"),
        "instance id {instance_id:?}"
    );
    let identity: serde_json::Value =
        serde_json::from_str(&with_token("/latest/dynamic/instance-identity/document")?)?;
    ensure!(
        identity["instanceId"] == instance_id.as_str() && identity["region"] == "us-east-1",
        "{identity}"
    );
    let role = with_token("/latest/meta-data/iam/security-credentials/")?;
    ensure!(role == "hostd-sandbox", "role {role:?}");
    let creds: serde_json::Value = serde_json::from_str(&with_token(&format!(
        "/latest/meta-data/iam/security-credentials/{role}"
    ))?)?;
    ensure!(
        creds["Code"] == "Success"
            && creds["AccessKeyId"].is_string()
            && creds["SecretAccessKey"].is_string()
            && creds["Token"].is_string()
            && creds["Expiration"].is_string(),
        "the role's credentials lack fields (keys: {:?})",
        creds.as_object().map(|o| o.keys().collect::<Vec<_>>())
    );
    let bad = s.root_sh(&format!(
        "curl -s -o /dev/null -w '%{{http_code}}' -H 'X-aws-ec2-metadata-token: forged' \
         {IMDS}/latest/meta-data/instance-id"
    ))?;
    ensure!(bad == "401", "a forged token got {bad}");

    // hostd's environment names only the endpoint: region and credentials
    // must come from instance metadata, as on EC2.
    let env = s.root_sh("cat /etc/hostd/environment")?;
    ensure!(env.contains("AWS_ENDPOINT_URL="), "{env}");
    for gone in [
        "AWS_REGION",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_EC2_METADATA_DISABLED",
    ] {
        ensure!(
            !env.contains(gone),
            "/etc/hostd/environment still sets {gone}"
        );
    }
    Ok(())
}

pub fn secrets_check_lists_names_through_the_instance_profile_never_values(
    s: &Sandbox,
) -> Result<()> {
    let values = parameter_values(s)?;
    ensure!(
        values.len() >= EXAMPLES.len(),
        "moto holds {} values under {PREFIX}",
        values.len()
    );
    let result = (|| {
        let out = secrets_check(s, &["postgres_password", "api_secret_key"])?;
        let (stdout, stderr) = texts(&out);
        // First, so no later message can print a leaked value.
        no_value_in(&values, &stdout, &stderr)?;
        ensure!(
            out.status.success(),
            "secrets-check failed ({}): {stdout}{stderr}",
            out.status
        );
        for name in EXAMPLES {
            ensure!(
                stdout
                    .lines()
                    .any(|l| l.starts_with(&format!("{name}\tversion "))),
                "{name} missing from:\n{stdout}"
            );
        }
        ensure!(
            stdout.contains(&format!("parameter(s) under {PREFIX}")),
            "{stdout}"
        );

        let out = secrets_check(s, &["postgres_password", "does_not_exist"])?;
        let (stdout, stderr) = texts(&out);
        no_value_in(&values, &stdout, &stderr)?;
        ensure!(
            out.status.code() == Some(1),
            "a missing required name exited {}: {stdout}{stderr}",
            out.status
        );
        ensure!(
            stderr.contains("does_not_exist") && stderr.contains(PREFIX),
            "the error does not name the missing parameter: {stderr}"
        );
        Ok(())
    })();
    s.root_sh(&format!("rm -f {CHECK_CONFIG}"))?;
    result
}

pub fn every_page_and_level_of_a_large_prefix_is_fetched(s: &Sandbox) -> Result<()> {
    // SSM returns at most 10 parameters a page: 35 take four pages, and one
    // a level down needs the recursive flag.
    const BIG: &str = "/hostd/paging/";
    let mut params: Vec<(String, Vec<u8>)> = (0..35)
        .map(|i| {
            (
                format!("p{i:02}"),
                format!("paging-value-{i:02}").into_bytes(),
            )
        })
        .collect();
    params.push(("nested/deep".into(), b"paging-value-nested".to_vec()));
    s.ssm_put(BIG, &params)?;
    let result = (|| {
        let out = secrets_check_at(s, BIG, &["p00", "p34", "nested/deep"])?;
        let (stdout, stderr) = texts(&out);
        ensure!(
            out.status.success(),
            "secrets-check failed: {stdout}{stderr}"
        );
        ensure!(
            stdout.contains(&format!("36 parameter(s) under {BIG}")),
            "not every page was fetched:\n{stdout}"
        );
        for (name, _) in &params {
            ensure!(
                stdout
                    .lines()
                    .any(|l| l.starts_with(&format!("{name}\tversion "))),
                "{name} missing from:\n{stdout}"
            );
        }
        Ok(())
    })();
    let names: Vec<&str> = params.iter().map(|(n, _)| n.as_str()).collect();
    let cleaned = s.ssm_delete(BIG, &names);
    s.root_sh(&format!("rm -f {CHECK_CONFIG}"))?;
    result?;
    cleaned
}

/// `hostd secrets-check` as hostd.service would run it: the environment
/// file's variables only, so region and credentials come from IMDS.
fn secrets_check(s: &Sandbox, required: &[&str]) -> Result<std::process::Output> {
    secrets_check_at(s, PREFIX, required)
}

fn secrets_check_at(s: &Sandbox, prefix: &str, required: &[&str]) -> Result<std::process::Output> {
    let required: Vec<String> = required.iter().map(|r| format!("\"{r}\"")).collect();
    s.root_sh(&format!(
        "printf '[secrets]\\npath = \"{prefix}\"\\nrequired = [{}]\\n' > {CHECK_CONFIG}",
        required.join(", ")
    ))?;
    s.root_sh_output(&format!(
        "set -a; . /etc/hostd/environment; set +a; \
         exec /usr/local/bin/hostd secrets-check --config {CHECK_CONFIG}"
    ))
}

fn texts(out: &std::process::Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The canary: the real values, read from moto on the host side. They stay
/// in memory; a failure names the parameter, not its value.
fn parameter_values(s: &Sandbox) -> Result<Vec<(String, String)>> {
    let pairs: Vec<(String, String)> = s.ssm_values(PREFIX)?.into_iter().collect();
    ensure!(
        pairs.iter().all(|(_, v)| v.len() >= 16),
        "a canary value is too short to be a meaningful check"
    );
    Ok(pairs)
}

fn no_value_in(values: &[(String, String)], stdout: &str, stderr: &str) -> Result<()> {
    for (name, value) in values {
        ensure!(
            !stdout.contains(value.as_str()) && !stderr.contains(value.as_str()),
            "the value of {name} appeared in secrets-check's output"
        );
    }
    Ok(())
}
