//! The version a deploy is called: `--version` when given, else the git
//! commit of the working tree the artifact is built from (12 hex digits),
//! with `+dirty` when tracked files differ from it, so a release built from
//! uncommitted code can never pass for the commit.

use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum VersionError {
    #[error(
        "`{0}` is not a version name: letters, digits, `.`, `_`, `-` and `+`, not starting with `.`, at most 128"
    )]
    Bad(String),
    /// git's own reason is part of the message.
    #[error(
        "{} is not in a git work tree (cannot run git: {cause}); give the version with --version",
        dir.display()
    )]
    NoGitProgram { dir: PathBuf, cause: std::io::Error },
    #[error("{} is not in a git work tree ({stderr}); give the version with --version", dir.display())]
    NoGit { dir: PathBuf, stderr: String },
}

/// hostd's rule for release names: a version becomes a directory name on
/// the host.
pub fn check(v: &str) -> Result<(), VersionError> {
    if hostd_api::is_release_name(v) {
        Ok(())
    } else {
        Err(VersionError::Bad(v.to_owned()))
    }
}

fn git(dir: &Path, args: &[&str]) -> Result<String, VersionError> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .map_err(|cause| VersionError::NoGitProgram {
            dir: dir.to_path_buf(),
            cause,
        })?;
    if !out.status.success() {
        return Err(VersionError::NoGit {
            dir: dir.to_path_buf(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// `explicit` (checked), or the commit of `dir`'s work tree.
pub fn resolve(explicit: Option<&str>, dir: &Path) -> Result<String, VersionError> {
    if let Some(v) = explicit {
        check(v)?;
        return Ok(v.to_owned());
    }
    let commit = git(dir, &["rev-parse", "--short=12", "HEAD"])?;
    // Untracked files do not count: build outputs and editor files live
    // there, and the artifact is what the build made of tracked sources.
    let dirty = !git(dir, &["status", "--porcelain", "--untracked-files=no"])?.is_empty();
    let version = if dirty {
        format!("{commit}+dirty")
    } else {
        commit
    };
    check(&version)?;
    Ok(version)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(dir: &Path, script: &str) -> Result<(), Box<dyn std::error::Error>> {
        let ok = Command::new("sh")
            .args(["-c", script])
            .current_dir(dir)
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.invalid")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.invalid")
            .status()?
            .success();
        if ok {
            Ok(())
        } else {
            Err(format!("`{script}` failed").into())
        }
    }

    #[test]
    fn the_commit_names_a_clean_tree_and_dirty_is_marked() -> Result<(), Box<dyn std::error::Error>>
    {
        let dir = tempfile::tempdir()?;
        sh(
            dir.path(),
            "git init -q . && echo a > f && git add f && git commit -qm one",
        )?;
        let clean = resolve(None, dir.path())?;
        assert_eq!(clean.len(), 12, "{clean}");
        assert!(clean.chars().all(|c| c.is_ascii_hexdigit()), "{clean}");
        sh(dir.path(), "echo untracked > new")?;
        assert_eq!(resolve(None, dir.path())?, clean);
        sh(dir.path(), "echo b > f")?;
        assert_eq!(resolve(None, dir.path())?, format!("{clean}+dirty"));
        Ok(())
    }

    #[test]
    fn an_explicit_version_is_checked_and_no_git_is_a_clear_error()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        assert_eq!(resolve(Some("v2.1"), dir.path())?, "v2.1");
        assert!(matches!(
            resolve(Some("../x"), dir.path()),
            Err(VersionError::Bad(_))
        ));
        let e = resolve(None, dir.path()).map_err(|e| e.to_string());
        assert!(matches!(&e, Err(t) if t.contains("--version")), "{e:?}");
        Ok(())
    }
}
