//! Secrets reach services as systemd credentials: each selected value in
//! `/run/hostd/credentials/<service>/<name>` (tmpfs, root-only), and a
//! drop-in `<unit>.d/50-hostd-credentials.conf` with one `LoadCredential=`
//! per name. PID 1 copies the files into the service's own
//! `$CREDENTIALS_DIRECTORY` when it starts it. The drop-in holds names and
//! paths, never a value.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::set::SecretSet;
use crate::config::{Config, Selection};
use crate::fsutil::write_if_changed;

/// Where hostd keeps the credential files systemd loads.
pub const CREDENTIALS_ROOT: &str = "/run/hostd/credentials";
pub const DROP_IN: &str = "50-hostd-credentials.conf";

#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("cannot {what} {}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `/` cannot be part of a credential name; nested parameter names map
    /// to `.`, which can collide with a flat one.
    #[error(
        "parameters {first} and {second} would both be credential {credential} for {service}; rename one"
    )]
    Collision {
        service: String,
        first: String,
        second: String,
        credential: String,
    },
}

/// What one delivery did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Delivered {
    /// Parameter names each service with a selection received.
    pub services: BTreeMap<String, BTreeSet<String>>,
    /// Services whose credential files changed (written or removed).
    pub changed: BTreeSet<String>,
    /// A drop-in was written or removed: systemd must reload.
    pub drop_ins_changed: bool,
}

/// The credential name for a parameter: `/` is not allowed in one.
pub fn credential_name(parameter: &str) -> String {
    parameter.replace('/', ".")
}

/// Writes every service's credentials under `root` and its drop-in under
/// `unit_dir`; removes what a service no longer receives.
pub fn deliver(
    config: &Config,
    set: &SecretSet,
    root: &Path,
    unit_dir: &Path,
) -> Result<Delivered, DeliveryError> {
    let mut out = Delivered::default();
    for (service, svc) in &config.services {
        let drop_in = unit_dir
            .join(format!("{}.d", svc.unit.as_str()))
            .join(DROP_IN);
        let dir = root.join(service);
        let Some(selection) = config.secrets_for(service) else {
            out.drop_ins_changed |= remove(&drop_in)?;
            if dir.exists() && remove_dir(&dir)? {
                out.changed.insert(service.clone());
            }
            continue;
        };
        let chosen = credentials_of(service, selection, set)?;
        private_dir(root)?;
        private_dir(&dir)?;
        let mut changed = remove_others(&dir, &chosen)?;
        let mut body = String::from(
            "# Written by hostd from its [secrets] configuration: the secrets\n\
             # this service receives (names and paths only). Do not edit.\n[Service]\n",
        );
        for (credential, parameter) in &chosen {
            let path = dir.join(credential);
            let value = set.get(parameter).map(|s| s.value.expose()).unwrap_or("");
            changed |= write_if_changed(&path, value.as_bytes(), 0o600)
                .map_err(|e| io("write credential", &path, e))?;
            body.push_str(&format!("LoadCredential={credential}:{}\n", path.display()));
        }
        out.drop_ins_changed |= write_if_changed(&drop_in, body.as_bytes(), 0o644)
            .map_err(|e| io("write drop-in", &drop_in, e))?;
        if changed {
            out.changed.insert(service.clone());
        }
        out.services
            .insert(service.clone(), chosen.into_values().collect());
    }
    Ok(out)
}

/// credential name → parameter name, for what `service` receives of `set`.
fn credentials_of(
    service: &str,
    selection: Selection<'_>,
    set: &SecretSet,
) -> Result<BTreeMap<String, String>, DeliveryError> {
    let mut chosen: BTreeMap<String, String> = BTreeMap::new();
    for name in set.names().filter(|n| selection.includes(n)) {
        let credential = credential_name(name);
        if let Some(first) = chosen.insert(credential.clone(), name.to_owned()) {
            return Err(DeliveryError::Collision {
                service: service.to_owned(),
                first,
                second: name.to_owned(),
                credential,
            });
        }
    }
    Ok(chosen)
}

/// A 0700 directory, whatever mode an older one had.
fn private_dir(dir: &Path) -> Result<(), DeliveryError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| io("create", dir, e))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| io("restrict", dir, e))
}

/// Removes files in `dir` that are not wanted credentials (a parameter
/// deleted or deselected, a temporary file left by a crash).
fn remove_others(dir: &Path, wanted: &BTreeMap<String, String>) -> Result<bool, DeliveryError> {
    let mut removed = false;
    for entry in std::fs::read_dir(dir).map_err(|e| io("list", dir, e))? {
        let entry = entry.map_err(|e| io("list", dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !wanted.contains_key(&name) {
            removed |= remove(&entry.path())?;
        }
    }
    Ok(removed)
}

fn remove_dir(dir: &Path) -> Result<bool, DeliveryError> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io("remove", dir, e)),
    }
}

/// True when there was something to remove.
fn remove(path: &Path) -> Result<bool, DeliveryError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io("remove", path, e)),
    }
}

fn io(what: &'static str, path: &Path, source: std::io::Error) -> DeliveryError {
    DeliveryError::Io {
        what,
        path: path.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;
    use crate::secrets::{Secret, SecretValue};

    fn set(pairs: &[(&str, &str)]) -> SecretSet {
        pairs
            .iter()
            .map(|(n, v)| Secret {
                name: (*n).to_owned(),
                value: SecretValue::new((*v).to_owned()),
                version: 1,
                last_modified: None,
            })
            .collect()
    }

    fn config(extra: &str) -> Result<Config, crate::config::ConfigError> {
        Config::parse(
            Path::new("hostd.toml"),
            &format!(
                "[secrets]\npath = \"/app/\"\n[services.api]\nunit = \"api@.service\"\n\
                 [services.redis]\nunit = \"redis-server.service\"\n{extra}"
            ),
        )
    }

    #[test]
    fn writes_exact_bytes_root_only_and_drop_ins_with_names_only()
    -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        let (root, units) = (tmp.path().join("creds"), tmp.path().join("units"));
        let c = config("secrets = [\"redis_password\"]\n")?;
        let awkward = "line1\nline2 \"q\" 'q' $HOME \\n é ✓\n";
        let s = set(&[("db/url", awkward), ("redis_password", "pw-1")]);

        let d = deliver(&c, &s, &root, &units)?;
        assert!(d.drop_ins_changed);
        assert_eq!(d.changed, BTreeSet::from(["api".into(), "redis".into()]));
        assert_eq!(std::fs::read(root.join("api/db.url"))?, awkward.as_bytes());
        assert_eq!(std::fs::read(root.join("redis/redis_password"))?, b"pw-1");
        assert!(!root.join("redis/db.url").exists());
        for (p, mode) in [
            (root.clone(), 0o700),
            (root.join("api"), 0o700),
            (root.join("api/db.url"), 0o600),
        ] {
            assert_eq!(
                std::fs::metadata(&p)?.mode() & 0o777,
                mode,
                "{}",
                p.display()
            );
        }
        let drop_in = std::fs::read_to_string(units.join("api@.service.d").join(DROP_IN))?;
        assert!(drop_in.contains(&format!(
            "LoadCredential=db.url:{}\n",
            root.join("api/db.url").display()
        )));
        assert!(!drop_in.contains("line1") && !drop_in.contains("pw-1"));

        let again = deliver(&c, &s, &root, &units)?;
        assert!(
            !again.drop_ins_changed && again.changed.is_empty(),
            "{again:?}"
        );

        // A parameter gone: its file goes, the drop-in changes.
        let fewer = deliver(&c, &set(&[("redis_password", "pw-1")]), &root, &units)?;
        assert!(fewer.drop_ins_changed);
        assert_eq!(fewer.changed, BTreeSet::from(["api".into()]));
        assert!(!root.join("api/db.url").exists());
        Ok(())
    }

    #[test]
    fn a_service_without_secrets_loses_its_drop_in() -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        let (root, units) = (tmp.path().join("creds"), tmp.path().join("units"));
        let s = set(&[("a", "1")]);
        deliver(&config("secrets = [\"a\"]\n")?, &s, &root, &units)?;
        let d = deliver(&config("")?, &s, &root, &units)?;
        assert!(d.drop_ins_changed);
        assert!(!units.join("redis-server.service.d").join(DROP_IN).exists());
        assert!(!root.join("redis").exists());
        assert_eq!(d.services.keys().collect::<Vec<_>>(), ["api"]);
        Ok(())
    }

    #[test]
    fn colliding_credential_names_are_refused_by_name() -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        let s = set(&[("a.b", "secret-1"), ("a/b", "secret-2")]);
        let e = deliver(&config("")?, &s, tmp.path(), tmp.path())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("a.b") && e.contains("a/b"), "{e}");
        assert!(!e.contains("secret-"), "{e}");
        Ok(())
    }
}
