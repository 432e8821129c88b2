//! `[secrets]`: where hostd reads this environment's secrets in SSM
//! Parameter Store. Every value type checks itself while parsing, so a bad
//! value is reported at its line by serde. Messages never repeat a value
//! that could be mistaken for a secret (none of these keys holds one).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretsConfig {
    /// SSM path prefix read recursively, e.g. `/zmanim/prod/`.
    pub path: SsmPath,
    /// None: the SDK's chain (AWS_REGION, profile, then IMDS on EC2).
    #[serde(default)]
    pub region: Option<AwsRegion>,
    #[serde(default = "default_refresh_interval")]
    pub refresh_interval: RefreshInterval,
    /// The last good set, root-only, so a reboot during an SSM outage still
    /// starts services.
    #[serde(default = "default_store_dir")]
    pub store_dir: AbsolutePath,
    /// Names relative to `path` that must exist; a fetch without one of
    /// them does not replace the last good set.
    #[serde(default)]
    pub required: Vec<ParameterName>,
    /// None: the SDK's own resolution (AWS_ENDPOINT_URL, then AWS's).
    #[serde(default)]
    pub endpoint_url: Option<EndpointUrl>,
    /// The parameter holding the password of every app service's database
    /// role (`services.*.database`): hostd sets it on the role and hands the
    /// service a `database_url` that uses it.
    #[serde(default)]
    pub postgres_password: Option<ParameterName>,
    /// The parameter holding Redis's password: hostd sets `requirepass` and
    /// hands app services a `redis_url` that uses it.
    #[serde(default)]
    pub redis_password: Option<ParameterName>,
    /// The parameter holding the backup repository's password; no service
    /// receives it.
    #[serde(default)]
    pub backup_password: Option<ParameterName>,
}

impl SecretsConfig {
    /// The parameters hostd itself wires (passwords it applies or composes
    /// into connection strings): never handed out raw by default.
    pub fn wired(&self) -> [Option<&ParameterName>; 3] {
        [
            self.postgres_password.as_ref(),
            self.redis_password.as_ref(),
            self.backup_password.as_ref(),
        ]
    }

    /// `required` plus the wired parameters: a fetch without one of them
    /// does not replace the last good set, and nothing that needs it starts.
    pub fn required_all(&self) -> Vec<ParameterName> {
        let mut all = self.required.clone();
        for name in self.wired().into_iter().flatten() {
            if !all.contains(name) {
                all.push(name.clone());
            }
        }
        all
    }
}

/// Which parameters one service receives as they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection<'a> {
    /// Every parameter under the prefix but the wired ones, which arrive
    /// inside `database_url` / `redis_url` instead.
    All {
        except: [Option<&'a ParameterName>; 3],
    },
    /// These names (never empty).
    Names(&'a [ParameterName]),
}

impl Selection<'_> {
    pub fn includes(&self, name: &str) -> bool {
        match self {
            Selection::All { except } => !except.iter().flatten().any(|n| n.as_str() == name),
            Selection::Names(names) => names.iter().any(|n| n.as_str() == name),
        }
    }

    pub fn is_all(&self) -> bool {
        matches!(self, Selection::All { .. })
    }
}

impl super::Config {
    /// The secrets `service` receives; None when it receives none (no
    /// `[secrets]` section, an empty list, or a non-template service
    /// without a list). App services (templates) get every parameter by
    /// default because that is what an app's settings are; PostgreSQL and
    /// Redis must opt in, so a new parameter never lands in them unasked.
    pub fn secrets_for(&self, service: &str) -> Option<Selection<'_>> {
        let secrets = self.secrets.as_ref()?;
        let svc = self.services.get(service)?;
        match &svc.secrets {
            Some(names) if names.is_empty() => None,
            Some(names) => Some(Selection::Names(names)),
            None if svc.unit.is_template() => Some(Selection::All {
                except: secrets.wired(),
            }),
            None => None,
        }
    }

    /// Which of `database_url` and `redis_url` hostd composes for `service`:
    /// `database_url` for one with a `database`, `redis_url` for one that
    /// receives every parameter or names `secrets.redis_password`.
    pub fn composed_for(&self, service: &str) -> Composed<'_> {
        let (Some(secrets), Some(selection)) = (&self.secrets, self.secrets_for(service)) else {
            return Composed::default();
        };
        let database = self
            .services
            .get(service)
            .and_then(|s| s.database.as_deref());
        let redis = secrets
            .redis_password
            .as_ref()
            .is_some_and(|name| selection.is_all() || selection.includes(name.as_str()));
        Composed { database, redis }
    }

    /// Whether `service` gets parameter `name`, as it is or inside a
    /// composed connection string.
    pub fn uses_parameter(&self, service: &str, name: &str) -> bool {
        let (Some(secrets), Some(selection)) = (&self.secrets, self.secrets_for(service)) else {
            return false;
        };
        let composed = self.composed_for(service);
        let is = |p: &Option<ParameterName>| p.as_ref().is_some_and(|p| p.as_str() == name);
        selection.includes(name)
            || (composed.database.is_some() && is(&secrets.postgres_password))
            || (composed.redis && is(&secrets.redis_password))
    }

    /// The required parameters (wired ones included) that `service` uses:
    /// the names it must have before it is started.
    pub fn required_for(&self, service: &str) -> Vec<String> {
        let Some(secrets) = &self.secrets else {
            return Vec::new();
        };
        secrets
            .required_all()
            .into_iter()
            .map(|n| n.as_str().to_owned())
            .filter(|n| self.uses_parameter(service, n))
            .collect()
    }
}

/// The connection strings hostd writes as credentials for one service.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Composed<'a> {
    /// `database_url` for this role and database.
    pub database: Option<&'a str>,
    /// `redis_url`.
    pub redis: bool,
}

fn default_refresh_interval() -> RefreshInterval {
    RefreshInterval(Duration::from_secs(300))
}

fn default_store_dir() -> AbsolutePath {
    AbsolutePath(PathBuf::from("/var/lib/hostd/secrets"))
}

/// One path segment of an SSM parameter name: the characters SSM allows.
fn valid_segment(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// `/a/b/`: starts and ends with `/`, segments of a-z A-Z 0-9 _ . -
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct SsmPath(String);

impl TryFrom<String> for SsmPath {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let inner = s
            .strip_prefix('/')
            .and_then(|r| r.strip_suffix('/'))
            .filter(|r| !r.is_empty());
        match inner {
            Some(r) if r.split('/').all(valid_segment) && s.len() <= 1011 => Ok(Self(s)),
            // `/` alone would hand every parameter of the account to the host.
            _ => Err(format!(
                "`{s}` is not an SSM path prefix like `/app/prod/`: it must start and end with `/` \
                 and hold segments of a-z, A-Z, 0-9, `_`, `.` and `-`"
            )),
        }
    }
}

impl SsmPath {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A parameter name relative to the prefix: `db_password`, `api/key`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
pub struct ParameterName(String);

impl ParameterName {
    /// Why `s` is not a relative parameter name, if it is not.
    pub fn check(s: &str) -> Result<(), &'static str> {
        if s.starts_with('/') || s.ends_with('/') {
            return Err("relative names neither start nor end with `/`");
        }
        if !s.split('/').all(valid_segment) {
            return Err("only a-z, A-Z, 0-9, `_`, `.`, `-` and `/` between segments are allowed");
        }
        Ok(())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ParameterName {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        match Self::check(&s) {
            Ok(()) => Ok(Self(s)),
            Err(why) => Err(format!("`{s}` is not a parameter name: {why}")),
        }
    }
}

/// `us-east-1`: lowercase letters, digits and `-`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct AwsRegion(String);

impl TryFrom<String> for AwsRegion {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let ok = s.len() <= 32
            && s.split('-').count() >= 3
            && s.split('-').all(|p| {
                !p.is_empty()
                    && p.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            });
        if ok {
            Ok(Self(s))
        } else {
            Err(format!("`{s}` is not an AWS region like `eu-west-1`"))
        }
    }
}

impl AwsRegion {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// How often secrets are fetched again: 10 s or more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct RefreshInterval(pub Duration);

impl TryFrom<String> for RefreshInterval {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let d = humantime::parse_duration(&s)
            .map_err(|e| format!("`{s}` is not a duration like `5m`: {e}"))?;
        // SSM throttles GetParametersByPath per account; a host asking more
        // often than this would eat its neighbours' budget.
        if d < Duration::from_secs(10) {
            return Err(format!("`{s}` is too short (at least 10s)"));
        }
        Ok(Self(d))
    }
}

/// An absolute path.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct AbsolutePath(pub PathBuf);

impl TryFrom<String> for AbsolutePath {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        if s.starts_with('/') {
            Ok(Self(PathBuf::from(s)))
        } else {
            Err(format!("`{s}` is not an absolute path"))
        }
    }
}

/// `http://` or `https://` URL of an SSM-compatible endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct EndpointUrl(String);

impl TryFrom<String> for EndpointUrl {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let rest = s
            .strip_prefix("https://")
            .or_else(|| s.strip_prefix("http://"));
        // No userinfo: credentials never belong in this file.
        match rest {
            Some(r) if !r.is_empty() && !r.contains('@') && !r.contains(char::is_whitespace) => {
                Ok(Self(s))
            }
            _ => Err("not an http:// or https:// URL without user information".to_owned()),
        }
    }
}

impl EndpointUrl {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        for ok in ["/zmanim/prod/", "/a/", "/hostd/sandbox/", "/a.b/c_d-e/"] {
            assert!(SsmPath::try_from(ok.to_owned()).is_ok(), "{ok}");
        }
        for bad in [
            "/",
            "//",
            "zmanim/prod/",
            "/zmanim/prod",
            "/a//b/",
            "/a b/",
            "/a/../",
        ] {
            assert!(SsmPath::try_from(bad.to_owned()).is_err(), "{bad}");
        }
    }

    #[test]
    fn parameter_names() {
        for ok in ["db_password", "api/key", "a.b-c"] {
            assert!(ParameterName::check(ok).is_ok(), "{ok}");
        }
        for bad in ["", "/abs", "dir/", "a//b", "a b", "..", "x/../y", "é"] {
            assert!(ParameterName::check(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn regions_and_urls() {
        assert!(AwsRegion::try_from("us-east-1".to_owned()).is_ok());
        assert!(AwsRegion::try_from("us-gov-west-1".to_owned()).is_ok());
        assert!(AwsRegion::try_from("US-EAST-1".to_owned()).is_err());
        assert!(AwsRegion::try_from("useast1".to_owned()).is_err());
        assert!(EndpointUrl::try_from("http://10.231.0.2:5000".to_owned()).is_ok());
        assert!(EndpointUrl::try_from("ftp://x".to_owned()).is_err());
        let e = EndpointUrl::try_from("https://user:hunter2@ssm".to_owned());
        assert!(e.is_err_and(|m| !m.contains("hunter2")));
    }
}
