//! Secrets in memory: values that cannot be printed by accident, and the
//! comparison the lead's delivery needs ("which names changed").

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::SystemTime;

use crate::config::ParameterName;

/// A secret value. No `Display`, a redacting `Debug`, no `Serialize`: the
/// only way to the text is [`SecretValue::expose`], which is easy to grep.
///
/// Not zeroized on drop: the same bytes pass through the SDK's response
/// buffers and (by design) the root-only store and the services'
/// environment, so wiping our copy would promise more than it delivers.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(String);

impl SecretValue {
    pub fn new(value: String) -> Self {
        Self(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// One parameter, named relative to the configured prefix.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    pub name: String,
    pub value: SecretValue,
    /// SSM's version: it grows on every change of the parameter.
    pub version: i64,
    pub last_modified: Option<SystemTime>,
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secret")
            .field("name", &self.name)
            .field("value", &"<redacted>")
            .field("version", &self.version)
            .field("last_modified", &self.last_modified)
            .finish()
    }
}

/// Every secret under the prefix, by relative name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecretSet {
    secrets: BTreeMap<String, Secret>,
}

/// What differs between two sets, by name only.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    pub added: BTreeSet<String>,
    pub removed: BTreeSet<String>,
    /// Present in both with another value or version.
    pub changed: BTreeSet<String>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }

    /// Every name a service may need to be restarted for.
    pub fn all(&self) -> BTreeSet<&str> {
        self.added
            .iter()
            .chain(&self.removed)
            .chain(&self.changed)
            .map(String::as_str)
            .collect()
    }
}

impl SecretSet {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces the secret of that name.
    pub fn insert(&mut self, secret: Secret) {
        self.secrets.insert(secret.name.clone(), secret);
    }

    pub fn get(&self, name: &str) -> Option<&Secret> {
        self.secrets.get(name)
    }

    pub fn len(&self) -> usize {
        self.secrets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Secret> {
        self.secrets.values()
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.secrets.keys().map(String::as_str)
    }

    /// Names and versions: what identifies this set without its values, safe
    /// to log, show and compare cheaply. Not a hash of values: a fast hash of
    /// a short password can be brute-forced from a log line.
    pub fn fingerprint(&self) -> BTreeMap<&str, i64> {
        self.secrets
            .iter()
            .map(|(n, s)| (n.as_str(), s.version))
            .collect()
    }

    /// What changed from `old` to `self`. Values are compared too: a deleted
    /// and re-created parameter starts again at version 1.
    pub fn changes_since(&self, old: &SecretSet) -> Changes {
        let mut c = Changes::default();
        for (name, new) in &self.secrets {
            match old.secrets.get(name) {
                None => {
                    c.added.insert(name.clone());
                }
                Some(prev) if prev.value != new.value || prev.version != new.version => {
                    c.changed.insert(name.clone());
                }
                Some(_) => {}
            }
        }
        for name in old.secrets.keys() {
            if !self.secrets.contains_key(name) {
                c.removed.insert(name.clone());
            }
        }
        c
    }

    /// The required names this set lacks, in order.
    pub fn missing<'a>(&self, required: &'a [ParameterName]) -> Vec<&'a str> {
        required
            .iter()
            .map(ParameterName::as_str)
            .filter(|n| !self.secrets.contains_key(*n))
            .collect()
    }
}

impl FromIterator<Secret> for SecretSet {
    fn from_iter<I: IntoIterator<Item = Secret>>(iter: I) -> Self {
        let mut set = SecretSet::new();
        for s in iter {
            set.insert(s);
        }
        set
    }
}

/// The name of `full` relative to `prefix` (which ends with `/`), or why it
/// is not acceptable. Never looks at a value.
pub fn relative_name<'a>(prefix: &str, full: &'a str) -> Result<&'a str, &'static str> {
    let rel = full
        .strip_prefix(prefix)
        .ok_or("it is not under the configured prefix")?;
    ParameterName::check(rel)?;
    Ok(rel)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::tests::secret;

    #[test]
    fn debug_never_shows_values() {
        let set: SecretSet = [secret("db_password", "hunter2", 3)].into_iter().collect();
        let text = format!("{set:?} {:?}", set.get("db_password"));
        assert!(!text.contains("hunter2"), "{text}");
        assert!(
            text.contains("db_password") && text.contains("redacted"),
            "{text}"
        );
    }

    #[test]
    fn changes_by_name() {
        let old: SecretSet = [
            secret("a", "1", 1),
            secret("b", "2", 1),
            secret("c", "3", 1),
        ]
        .into_iter()
        .collect();
        let new: SecretSet = [
            secret("a", "1", 1),
            secret("b", "2x", 2),
            secret("d", "4", 1),
        ]
        .into_iter()
        .collect();
        let c = new.changes_since(&old);
        assert_eq!(c.added, BTreeSet::from(["d".to_owned()]));
        assert_eq!(c.removed, BTreeSet::from(["c".to_owned()]));
        assert_eq!(c.changed, BTreeSet::from(["b".to_owned()]));
        assert_eq!(c.all(), BTreeSet::from(["b", "c", "d"]));
        assert!(new.changes_since(&new).is_empty());
        // Re-created with the same version number but another value.
        let recreated: SecretSet = [secret("a", "other", 1)].into_iter().collect();
        let only_a: SecretSet = [secret("a", "1", 1)].into_iter().collect();
        assert_eq!(recreated.changes_since(&only_a).changed.len(), 1);
        assert_eq!(only_a.fingerprint(), recreated.fingerprint());
    }

    #[test]
    fn relative_names() {
        assert_eq!(relative_name("/app/prod/", "/app/prod/db"), Ok("db"));
        assert_eq!(relative_name("/app/prod/", "/app/prod/x/y"), Ok("x/y"));
        assert!(relative_name("/app/prod/", "/app/staging/db").is_err());
        assert!(relative_name("/app/prod/", "/app/prod/").is_err());
        assert!(relative_name("/app/prod/", "/app/prod/a b").is_err());
    }

    #[test]
    fn missing_required() -> Result<(), String> {
        let set: SecretSet = [secret("a", "1", 1)].into_iter().collect();
        let required = vec![
            ParameterName::try_from("a".to_owned())?,
            ParameterName::try_from("b/c".to_owned())?,
        ];
        assert_eq!(set.missing(&required), vec!["b/c"]);
        Ok(())
    }
}
