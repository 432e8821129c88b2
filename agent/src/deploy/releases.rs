//! An app's release directory: `<root>/releases/<version>/` and the
//! `<root>/current` link (relative, `releases/<version>`) that the unit
//! starts from. Switching is one rename of a new link over the old one, so
//! at every instant `current` names a whole release, old or new.

use std::path::{Path, PathBuf};

const CURRENT: &str = "current";
const RELEASES: &str = "releases";

#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error(
        "`{0}` is not a release name: use letters, digits, `.`, `_`, `-` and `+`, not starting with `.`, at most 128"
    )]
    BadVersion(String),
    #[error("release {version} is not installed under {dir}")]
    Missing { version: String, dir: PathBuf },
    #[error(transparent)]
    Io(#[from] crate::fsutil::FileError),
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ReleaseError + use<> {
    let e = crate::fsutil::file_error(what, path);
    move |source| ReleaseError::Io(e(source))
}

/// A version names a directory: no separators, no hidden names, nothing a
/// shell or a unit file would read differently.
pub fn check_version(v: &str) -> Result<(), ReleaseError> {
    if hostd_api::is_release_name(v) {
        Ok(())
    } else {
        Err(ReleaseError::BadVersion(v.to_owned()))
    }
}

pub struct Releases {
    root: PathBuf,
}

impl Releases {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn dir(&self, version: &str) -> Result<PathBuf, ReleaseError> {
        check_version(version)?;
        Ok(self.root.join(RELEASES).join(version))
    }

    /// The version `current` points at, if it points at a release.
    pub fn current(&self) -> Option<String> {
        let target = std::fs::read_link(self.root.join(CURRENT)).ok()?;
        let mut parts = target.components();
        let first = parts.next()?.as_os_str();
        let version = parts.next()?.as_os_str().to_str()?.to_owned();
        (first == RELEASES && parts.next().is_none() && check_version(&version).is_ok())
            .then_some(version)
    }

    /// Points `current` at `version` atomically (a new link renamed over
    /// the old one), and makes the change durable.
    pub fn switch(&self, version: &str) -> Result<(), ReleaseError> {
        let dir = self.dir(version)?;
        if !std::fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir()) {
            return Err(ReleaseError::Missing {
                version: version.to_owned(),
                dir: self.root.join(RELEASES),
            });
        }
        let link = self.root.join(CURRENT);
        let tmp = self.root.join(".current.new");
        match std::fs::remove_file(&tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("remove", &tmp)(e)),
        }
        let target = Path::new(RELEASES).join(version);
        std::os::unix::fs::symlink(&target, &tmp).map_err(io("create", &tmp))?;
        std::fs::rename(&tmp, &link).map_err(io("replace", &link))?;
        crate::fsutil::sync_dir(&self.root).map_err(io("sync", &self.root))
    }

    /// Removes `current` (an app whose first release failed is not
    /// deployed again), durably.
    pub fn unswitch(&self) -> Result<(), ReleaseError> {
        let link = self.root.join(CURRENT);
        match std::fs::remove_file(&link) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io("remove", &link)(e)),
        }
        crate::fsutil::sync_dir(&self.root).map_err(io("sync", &self.root))
    }

    /// Installed versions, oldest first (by directory modification time).
    pub fn installed(&self) -> Result<Vec<String>, ReleaseError> {
        let dir = self.root.join(RELEASES);
        let mut found = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(io("read", &dir))? {
            let entry = entry.map_err(io("read", &dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let meta = entry.metadata().map_err(io("read", &entry.path()))?;
            if meta.is_dir() && check_version(&name).is_ok() {
                found.push((meta.modified().ok(), name));
            }
        }
        found.sort();
        Ok(found.into_iter().map(|(_, n)| n).collect())
    }

    /// Removes all but the newest `keep` releases; `current` and `protect`
    /// (the release a rollback would return to) are always kept. Returns
    /// the versions removed.
    pub fn prune(&self, keep: usize, protect: Option<&str>) -> Result<Vec<String>, ReleaseError> {
        let current = self.current();
        let installed = self.installed()?;
        let excess = installed.len().saturating_sub(keep);
        let mut removed = Vec::new();
        for v in installed.into_iter().take(excess) {
            if Some(v.as_str()) == current.as_deref() || Some(v.as_str()) == protect {
                continue;
            }
            let dir = self.dir(&v)?;
            std::fs::remove_dir_all(&dir).map_err(io("remove", &dir))?;
            removed.push(v);
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn install(r: &Releases, v: &str) -> Result<(), Box<dyn std::error::Error>> {
        let dir = r.dir(v)?;
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("VERSION"), v)?;
        // Distinct modification times order the releases.
        let t = std::time::SystemTime::UNIX_EPOCH
            + std::time::Duration::from_secs(1_700_000_000 + r.installed()?.len() as u64);
        std::fs::File::open(&dir)?.set_modified(t)?;
        Ok(())
    }

    #[test]
    fn switch_replaces_current_and_reads_back() -> Result<(), Box<dyn std::error::Error>> {
        let root = tempfile::tempdir()?;
        let r = Releases::new(root.path());
        std::fs::create_dir(root.path().join(RELEASES))?;
        assert_eq!(r.current(), None);
        install(&r, "v1")?;
        install(&r, "v2")?;
        r.switch("v1")?;
        assert_eq!(r.current().as_deref(), Some("v1"));
        r.switch("v2")?;
        assert_eq!(r.current().as_deref(), Some("v2"));
        assert_eq!(
            std::fs::read_to_string(root.path().join("current/VERSION"))?,
            "v2"
        );
        assert_eq!(
            std::fs::read_link(root.path().join(CURRENT))?,
            Path::new("releases/v2")
        );
        assert!(!root.path().join(".current.new").exists());
        let missing = r.switch("v9").map_err(|e| e.to_string());
        assert!(
            matches!(&missing, Err(e) if e.contains("not installed")),
            "{missing:?}"
        );
        assert_eq!(r.current().as_deref(), Some("v2"));
        Ok(())
    }

    #[test]
    fn bad_versions_are_refused() {
        for v in ["", "..", ".hidden", "a/b", "v 1", "x;rm", &"v".repeat(129)] {
            assert!(check_version(v).is_err(), "{v:?}");
        }
        for v in ["v1", "2026.12.02-abc1234", "abc1234+dirty", "1_2"] {
            assert!(check_version(v).is_ok(), "{v:?}");
        }
    }

    #[test]
    fn prune_keeps_the_newest_current_and_the_rollback_target()
    -> Result<(), Box<dyn std::error::Error>> {
        let root = tempfile::tempdir()?;
        let r = Releases::new(root.path());
        for v in ["v1", "v2", "v3", "v4", "v5", "v6"] {
            install(&r, v)?;
        }
        r.switch("v1")?;
        let removed = r.prune(2, Some("v2"))?;
        assert_eq!(removed, ["v3", "v4"]);
        assert_eq!(r.installed()?, ["v1", "v2", "v5", "v6"]);
        Ok(())
    }
}
