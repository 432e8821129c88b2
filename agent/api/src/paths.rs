//! The path rules of a release artifact, one copy for both sides: hostctl
//! refuses a bad artifact before uploading it, hostd again before writing.

use std::path::{Component, Path, PathBuf};

/// `path` as plain components below a root, or None when it is absolute
/// or climbs with `..`. `.` components are dropped.
pub fn relative(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// Whether a symlink at `link` (relative to the root) pointing at `target`
/// stays inside the root, resolved lexically: the unpacker creates every
/// link itself, so nothing on disk can redirect one.
pub fn link_stays_inside(link: &Path, target: &Path) -> bool {
    if target.is_absolute() {
        return false;
    }
    let mut depth: Vec<&std::ffi::OsStr> = link
        .parent()
        .map(|p| {
            p.components()
                .filter_map(|c| match c {
                    Component::Normal(s) => Some(s),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    for c in target.components() {
        match c {
            Component::Normal(s) => depth.push(s),
            Component::CurDir => {}
            Component::ParentDir => {
                if depth.pop().is_none() {
                    return false;
                }
            }
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_refuses_absolute_and_climbing_paths() {
        assert_eq!(relative(Path::new("./bin/api")), Some("bin/api".into()));
        assert_eq!(relative(Path::new("/etc/passwd")), None);
        assert_eq!(relative(Path::new("bin/../../x")), None);
    }

    #[test]
    fn links_are_judged_from_their_own_directory() {
        assert!(link_stays_inside(
            Path::new("bin/api"),
            Path::new("../lib/api")
        ));
        assert!(!link_stays_inside(
            Path::new("bin/api"),
            Path::new("../../etc")
        ));
        assert!(!link_stays_inside(
            Path::new("api"),
            Path::new("/etc/passwd")
        ));
        assert!(link_stays_inside(Path::new("a/b/c"), Path::new("./../d")));
    }
}
