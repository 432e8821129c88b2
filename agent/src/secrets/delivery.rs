//! Secrets reach services as systemd credentials: each selected value in
//! `/run/hostd/credentials/<service>/<name>` (tmpfs, root-only), and a
//! drop-in `<unit>.d/50-hostd-credentials.conf` with one `LoadCredential=`
//! per name. PID 1 copies the files into the service's own
//! `$CREDENTIALS_DIRECTORY` when it starts it. The drop-in holds names and
//! paths, never a value.
//!
//! Besides the parameters themselves, a service gets the connection strings
//! hostd composes from the wired passwords ([`super::compose`]). A
//! parameter of the same name wins over a composed one: what the operator
//! put in SSM is never second-guessed.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

use super::compose::{DATABASE_URL, REDIS_URL, database_url, redis_url};
use super::set::SecretSet;
use crate::config::Config;
use crate::fsutil::write_if_changed;

/// Where hostd keeps the credential files systemd loads.
pub const CREDENTIALS_ROOT: &str = "/run/hostd/credentials";
pub const DROP_IN: &str = "50-hostd-credentials.conf";

#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error(transparent)]
    Io(#[from] crate::fsutil::FileError),
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
        if config.secrets_for(service).is_none() {
            out.drop_ins_changed |= remove(&drop_in)?;
            if dir.exists() && remove_dir(&dir)? {
                out.changed.insert(service.clone());
            }
            continue;
        };
        let chosen = credentials_of(config, service, set)?;
        private_dir(root)?;
        private_dir(&dir)?;
        let mut changed = remove_others(&dir, &chosen)?;
        let mut body = String::from(
            "# Written by hostd from its [secrets] configuration: the secrets\n\
             # this service receives (names and paths only). Do not edit.\n[Service]\n",
        );
        let mut received = BTreeSet::new();
        for (credential, c) in chosen {
            let path = dir.join(&credential);
            changed |= write_if_changed(&path, c.value.as_bytes(), 0o600)
                .map_err(|e| io("write credential", &path, e))?;
            body.push_str(&format!("LoadCredential={credential}:{}\n", path.display()));
            received.extend(c.from);
        }
        out.drop_ins_changed |= write_if_changed(&drop_in, body.as_bytes(), 0o644)
            .map_err(|e| io("write drop-in", &drop_in, e))?;
        if changed {
            out.changed.insert(service.clone());
        }
        out.services.insert(service.clone(), received);
    }
    Ok(out)
}

/// One credential file: its content and the parameters it came from.
struct Credential<'a> {
    value: std::borrow::Cow<'a, str>,
    from: Vec<String>,
}

/// credential name → credential, for what `service` receives of `set`.
fn credentials_of<'a>(
    config: &Config,
    service: &str,
    set: &'a SecretSet,
) -> Result<BTreeMap<String, Credential<'a>>, DeliveryError> {
    let mut chosen: BTreeMap<String, Credential<'a>> = BTreeMap::new();
    let Some(selection) = config.secrets_for(service) else {
        return Ok(chosen);
    };
    for secret in set.iter().filter(|s| selection.includes(&s.name)) {
        let credential = credential_name(&secret.name);
        let c = Credential {
            value: secret.value.expose().into(),
            from: vec![secret.name.clone()],
        };
        if let Some(first) = chosen.insert(credential.clone(), c) {
            return Err(DeliveryError::Collision {
                service: service.to_owned(),
                first: first.from.concat(),
                second: secret.name.clone(),
                credential,
            });
        }
    }
    let composed = config.composed_for(service);
    let wired = config
        .secrets
        .as_ref()
        .map(|s| (&s.postgres_password, &s.redis_password));
    let Some((postgres_password, redis_password)) = wired else {
        return Ok(chosen);
    };
    if let Some(db) = composed.database
        && !chosen.contains_key(DATABASE_URL)
    {
        // A configured password that is not in the set (yet) composes
        // nothing: the start gate holds the service back meanwhile.
        let value = match postgres_password {
            None => Some((database_url(db, None), vec![])),
            Some(p) => set.get(p.as_str()).map(|s| {
                (
                    database_url(db, Some(s.value.expose())),
                    vec![p.as_str().to_owned()],
                )
            }),
        };
        if let Some((value, from)) = value {
            chosen.insert(
                DATABASE_URL.to_owned(),
                Credential {
                    value: value.into(),
                    from,
                },
            );
        }
    }
    if composed.redis
        && !chosen.contains_key(REDIS_URL)
        && let Some(p) = redis_password
        && let Some(s) = set.get(p.as_str())
        && let Ok(url) = redis_url(config.redis_address(), s.value.expose())
    {
        chosen.insert(
            REDIS_URL.to_owned(),
            Credential {
                value: url.into(),
                from: vec![p.as_str().to_owned()],
            },
        );
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
fn remove_others(
    dir: &Path,
    wanted: &BTreeMap<String, Credential<'_>>,
) -> Result<bool, DeliveryError> {
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
    DeliveryError::Io(crate::fsutil::file_error(what, path)(source))
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
    fn app_services_get_composed_urls_instead_of_wired_passwords()
    -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        let (root, units) = (tmp.path().join("creds"), tmp.path().join("units"));
        let c = Config::parse(
            Path::new("hostd.toml"),
            "[secrets]\npath = \"/app/\"\npostgres_password = \"db_password\"\n\
             redis_password = \"redis_password\"\n\
             [services.api]\nunit = \"api@.service\"\ndatabase = \"api\"\n",
        )?;
        let s = set(&[
            ("db_password", "p@ss word"),
            ("redis_password", "r/1"),
            ("key", "k"),
        ]);
        let d = deliver(&c, &s, &root, &units)?;
        let read = |name: &str| std::fs::read_to_string(root.join("api").join(name));
        assert_eq!(
            read("database_url")?,
            "postgresql://api:p%40ss%20word@127.0.0.1:5432/api"
        );
        assert_eq!(read("redis_url")?, "redis://:r%2F1@127.0.0.1:6379/");
        assert_eq!(read("key")?, "k");
        assert!(!root.join("api/db_password").exists());
        assert!(!root.join("api/redis_password").exists());
        assert_eq!(
            d.services.get("api"),
            Some(&BTreeSet::from([
                "db_password".into(),
                "key".into(),
                "redis_password".into()
            ]))
        );

        // Rotating the password changes the URL, and so the service.
        let rotated = set(&[
            ("db_password", "new"),
            ("redis_password", "r/1"),
            ("key", "k"),
        ]);
        let d = deliver(&c, &rotated, &root, &units)?;
        assert_eq!(d.changed, BTreeSet::from(["api".into()]));
        assert_eq!(
            read("database_url")?,
            "postgresql://api:new@127.0.0.1:5432/api"
        );

        // A parameter of the same name wins over the composed one.
        let own = set(&[
            ("db_password", "new"),
            ("redis_password", "r/1"),
            ("database_url", "mine"),
        ]);
        deliver(&c, &own, &root, &units)?;
        assert_eq!(read("database_url")?, "mine");
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
