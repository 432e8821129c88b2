//! Raw arguments of `start`, `stop`, `restart` and `scale`.

use clap::Args;

use crate::flags::ActionArgs;
use crate::parse::{NameError, parse_service_name};

#[derive(Debug, Args)]
pub struct ServiceArgs {
    /// The service, as named in hostd.toml (e.g. redis)
    #[arg(value_name = "SERVICE", value_parser = parse_service_name)]
    pub service: String,
    #[command(flatten)]
    pub action: ActionArgs,
}

#[derive(Debug, Args)]
pub struct ScaleArgs {
    /// SERVICE=N: run N instances of SERVICE (e.g. api=3)
    #[arg(value_name = "SERVICE=N", required = true, value_parser = parse_scale_target)]
    pub targets: Vec<ScaleTarget>,
    #[command(flatten)]
    pub action: ActionArgs,
}

/// One `SERVICE=N` of `hostctl scale`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScaleTarget {
    pub service: String,
    pub instances: u32,
}

/// What is wrong with a `SERVICE=N`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScaleTargetError {
    #[error("expected SERVICE=N, e.g. api=3, not {0:?}")]
    Form(String),
    #[error(transparent)]
    Name(#[from] NameError),
    #[error("{count:?} is no instance count: write a whole number, e.g. {service}=3")]
    Count { service: String, count: String },
    /// The digits overflow a u32; the parse error adds nothing to that.
    #[error("{0} instances is more than anyone can run")]
    TooMany(String),
    #[error("{service}=0: a service runs at least 1 instance; to stop it: hostctl stop {service}")]
    Zero { service: String },
}

/// `SERVICE=N`, strictly: no spaces, no sign, a whole number.
pub fn parse_scale_target(s: &str) -> Result<ScaleTarget, ScaleTargetError> {
    let form = || ScaleTargetError::Form(s.to_owned());
    let (service, count) = s.split_once('=').ok_or_else(form)?;
    if service.is_empty() || count.is_empty() {
        return Err(form());
    }
    let service = parse_service_name(service)?;
    if !count.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ScaleTargetError::Count {
            service,
            count: count.to_owned(),
        });
    }
    let instances = count
        .parse()
        .map_err(|_| ScaleTargetError::TooMany(count.to_owned()))?;
    if instances == 0 {
        return Err(ScaleTargetError::Zero { service });
    }
    Ok(ScaleTarget { service, instances })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_targets_parse_strictly() {
        let ok = |s| parse_scale_target(s).map_err(|e| e.to_string());
        assert_eq!(
            ok("api=3"),
            Ok(ScaleTarget {
                service: "api".into(),
                instances: 3
            })
        );
        assert_eq!(
            ok("api=0"),
            Err("api=0: a service runs at least 1 instance; to stop it: hostctl stop api".into())
        );
        for bad in [
            "api",
            "api=",
            "=3",
            "api=3x",
            "api=+3",
            "api=-1",
            "api= 3",
            " api=3",
            "API=3",
            "api=3=4",
            "a/b=1",
            "api=99999999999",
        ] {
            let err = ok(bad).err().unwrap_or_default();
            assert!(!err.is_empty(), "{bad:?} was accepted");
        }
        assert!(
            ok("api")
                .err()
                .unwrap_or_default()
                .contains("SERVICE=N, e.g. api=3"),
            "usage names the form"
        );
        assert!(
            ok("api=x")
                .err()
                .unwrap_or_default()
                .contains("whole number")
        );
    }
}
