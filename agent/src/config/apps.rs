//! The rules for an app declared by `command` (`[services.NAME]` without a
//! unit file of its own): what hostd writes into the unit it generates must
//! be one line each, and the app must be able to run as declared.

use super::{Config, ServiceConfig};

/// Keys that only mean something for a generated unit; set on a service
/// with a unit of its own they would be silently ignored.
pub(super) fn app_only_key(svc: &ServiceConfig) -> Option<&'static str> {
    if svc.port.is_some() {
        Some("port")
    } else if svc.instance_ports.is_some() {
        Some("instance_ports")
    } else if svc.user.is_some() {
        Some("user")
    } else if !svc.environment.is_empty() {
        Some("environment")
    } else if svc.jit {
        Some("jit")
    } else if !svc.unit_settings.is_empty() {
        Some("unit_settings")
    } else {
        None
    }
}

type Refusal = (&'static str, String);

pub(super) fn validate(config: &Config, name: &str, svc: &ServiceConfig) -> Result<(), Refusal> {
    let command = svc.command.as_deref().unwrap_or_default();
    if command.trim().is_empty() || command.chars().any(char::is_control) {
        return Err(("command", "must be one non-empty line".into()));
    }
    if svc.release_dir.is_none() {
        return Err((
            "release_dir",
            "an app declared by `command` runs from `<release_dir>/current`: set release_dir"
                .into(),
        ));
    }
    if svc.socket.is_some() || svc.health_socket.is_some() {
        let k = if svc.socket.is_some() {
            "socket"
        } else {
            "health_socket"
        };
        return Err((
            k,
            "an app declared by `command` listens on $PORT and answers health_path there; \
             `socket` and `health_socket` are for a unit file of your own"
                .into(),
        ));
    }
    if let Some(port) = svc.port {
        check_port(config, name, port)?;
        check_instance_ports(config, name, svc)?;
    }
    if let Some(user) = &svc.user
        && !is_user_name(user)
    {
        return Err((
            "user",
            "must be a plain user name (a-z, 0-9, _ and -, starting with a letter, at most 32), not root"
                .into(),
        ));
    }
    if svc.user.is_none() && !is_user_name(name) {
        return Err(("user", format!("`{name}` cannot be a user name: set user")));
    }
    for (var, value) in &svc.environment {
        if !is_env_name(var) || var == "PORT" {
            return Err((
                "environment",
                format!(
                    "`{var}` is not a variable name hostd can set (A-Z, a-z, 0-9, _; not PORT)"
                ),
            ));
        }
        if value.chars().any(char::is_control) {
            return Err((
                "environment",
                format!("the value of {var} must be one line"),
            ));
        }
    }
    for setting in &svc.unit_settings {
        let key = setting.split_once('=').map(|(k, _)| k);
        if !key.is_some_and(|k| !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric()))
            || setting.chars().any(char::is_control)
        {
            return Err((
                "unit_settings",
                format!("`{setting}` is not one `Key=value` line of a [Service] section"),
            ));
        }
    }
    Ok(())
}

fn check_port(config: &Config, name: &str, port: u16) -> Result<(), Refusal> {
    if port < 1024 {
        return Err((
            "port",
            format!(
                "{port} is a privileged port, which an app's user cannot bind; use 1024 or above"
            ),
        ));
    }
    if port == config.health.listen.port() {
        return Err(("port", format!("{port} is hostd's own health.listen port")));
    }
    let taken = config
        .services
        .iter()
        .find(|(other, s)| other.as_str() != name && s.port == Some(port));
    if let Some((other, _)) = taken {
        return Err((
            "port",
            format!("{port} is already the port of services.{other}"),
        ));
    }
    Ok(())
}

/// Instance ids run up to 100 + max_instances (the second set of a
/// blue-green replacement); their ports must all exist and be this app's.
fn check_instance_ports(config: &Config, name: &str, svc: &ServiceConfig) -> Result<(), Refusal> {
    let Some(base) = svc.instance_port_base() else {
        return Ok(());
    };
    let range = |s: &ServiceConfig| {
        s.instance_port_base()
            .map(|b| b + 1..=b + super::SECOND_SET + s.max_instances.0)
    };
    let Some(ours) = range(svc) else {
        return Ok(());
    };
    if base < 1024 || *ours.end() > 65_535 {
        return Err((
            "instance_ports",
            format!(
                "instance ports {}..={} must lie within 1024..=65535 (set instance_ports lower)",
                ours.start(),
                ours.end()
            ),
        ));
    }
    let health = u32::from(config.health.listen.port());
    for (other, s) in &config.services {
        let public = s.port.map(u32::from);
        let clash = public.is_some_and(|p| ours.contains(&p))
            || (other.as_str() != name
                && range(s).is_some_and(|r| r.start() <= ours.end() && ours.start() <= r.end()));
        if clash || ours.contains(&health) {
            let what = if ours.contains(&health) {
                "hostd's health.listen port".to_owned()
            } else {
                format!("services.{other}")
            };
            return Err((
                "instance_ports",
                format!(
                    "instance ports {}..={} overlap {what}; set instance_ports",
                    ours.start(),
                    ours.end()
                ),
            ));
        }
    }
    Ok(())
}

fn is_user_name(s: &str) -> bool {
    s != "root"
        && s.len() <= 32
        && s.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

fn is_env_name(s: &str) -> bool {
    s.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}
