//! Release directories for the deploy trials and benchmark, laid out as
//! `hostctl deploy` packs them: `bin/api` and `VERSION` (which the demo
//! backend reports, so one binary serves as v1 and v2).

use std::fs;
use std::io::{BufWriter, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::{Context, Result, ensure};
use tempfile::TempDir;

/// A release directory as `hostctl deploy` packs it: bin/api (the demo
/// backend, or its broken build) and VERSION.
pub fn release_dir(version: &str, broken: bool) -> Result<TempDir> {
    build(&crate::bin_dir()?, version, broken, None)
}

/// Same, with `extra` bytes of incompressible padding in `assets/blob` (for
/// the 20 MB deploy benchmark).
pub fn release_dir_with_padding(version: &str, broken: bool, extra: usize) -> Result<TempDir> {
    build(&crate::bin_dir()?, version, broken, Some(extra))
}

fn build(bins: &Path, version: &str, broken: bool, padding: Option<usize>) -> Result<TempDir> {
    ensure!(
        hostd_api::is_release_name(version),
        "`{version}` is not a release name (letters, digits, `.`, `_`, `-`, `+`)"
    );
    let binary = if broken {
        bins.join("demo-backend-broken")
    } else {
        bins.join("demo-backend")
    };
    if !binary.is_file() {
        let how = if broken {
            format!(
                "tests/run builds it; by hand: `cargo build -p demo-backend --features broken && \
                 cp {0}/demo-backend {0}/demo-backend-broken && cargo build -p demo-backend` \
                 (the last build puts the normal one back)",
                bins.display()
            )
        } else {
            "build the binaries first (`cargo build --workspace --bins`, which tests/run does)"
                .to_owned()
        };
        anyhow::bail!("{} is missing: {how}", binary.display());
    }

    let dir = tempfile::Builder::new()
        .prefix(&format!("release-{version}-"))
        .tempdir()?;
    // A temporary directory is 0700; the archive keeps modes, and the
    // service user on the host must be able to enter the release.
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755))?;
    fs::create_dir(dir.path().join("bin"))?;
    // fs::copy keeps the executable bit.
    fs::copy(&binary, dir.path().join("bin/api"))
        .with_context(|| format!("copy {}", binary.display()))?;
    fs::write(dir.path().join("VERSION"), format!("{version}\n"))?;
    if let Some(extra) = padding {
        fs::create_dir(dir.path().join("assets"))?;
        write_padding(&dir.path().join("assets/blob"), extra, seed(version))?;
    }
    Ok(dir)
}

/// Seeds the padding from the version: each release's blob differs (as a
/// real release's assets would), yet a rerun packs the same bytes.
fn seed(version: &str) -> u64 {
    // FNV-1a.
    let h = version.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    // xorshift never leaves zero.
    h.max(1)
}

/// `len` bytes of xorshift64* output: zstd cannot shrink them, so the
/// benchmark moves as many bytes as it claims.
fn write_padding(path: &Path, len: usize, mut state: u64) -> Result<()> {
    let mut out = BufWriter::with_capacity(1 << 16, fs::File::create(path)?);
    let mut left = len;
    while left > 0 {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        let word = state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
        let n = left.min(word.len());
        out.write_all(&word[..n])?;
        left -= n;
    }
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in bin dir, so the tests do not depend on what was built.
    fn bins(with_broken: bool) -> Result<TempDir> {
        let d = tempfile::tempdir()?;
        fs::write(d.path().join("demo-backend"), "normal")?;
        fs::set_permissions(
            d.path().join("demo-backend"),
            fs::Permissions::from_mode(0o755),
        )?;
        if with_broken {
            fs::write(d.path().join("demo-backend-broken"), "broken")?;
        }
        Ok(d)
    }

    #[test]
    fn a_release_has_the_binary_and_its_version() -> Result<()> {
        let b = bins(true)?;
        let r = build(b.path(), "v1", false, None)?;
        assert_eq!(fs::read_to_string(r.path().join("bin/api"))?, "normal");
        let mode = fs::metadata(r.path().join("bin/api"))?.permissions().mode();
        assert_eq!(mode & 0o111, 0o111, "bin/api is not executable: {mode:o}");
        assert_eq!(fs::read_to_string(r.path().join("VERSION"))?, "v1\n");
        assert!(!r.path().join("assets").exists());
        let r = build(b.path(), "v2", true, None)?;
        assert_eq!(fs::read_to_string(r.path().join("bin/api"))?, "broken");
        assert_eq!(fs::read_to_string(r.path().join("VERSION"))?, "v2\n");
        Ok(())
    }

    #[test]
    fn a_missing_broken_build_says_how_to_build_it() -> Result<()> {
        let b = bins(false)?;
        let err = build(b.path(), "v1", true, None).err();
        let text = err.map(|e| format!("{e:#}")).unwrap_or_default();
        assert!(text.contains("demo-backend-broken is missing"), "{text}");
        assert!(text.contains("tests/run"), "{text}");
        assert!(text.contains("--features broken"), "{text}");
        Ok(())
    }

    #[test]
    fn a_bad_version_is_refused() -> Result<()> {
        let b = bins(true)?;
        assert!(build(b.path(), "../v1", false, None).is_err());
        Ok(())
    }

    #[test]
    fn padding_has_the_size_asked_and_does_not_repeat() -> Result<()> {
        let b = bins(true)?;
        let r = build(b.path(), "v1", false, Some(100_003))?;
        let blob = fs::read(r.path().join("assets/blob"))?;
        assert_eq!(blob.len(), 100_003);
        // Every byte value about equally often: nothing for a compressor.
        let mut counts = [0u32; 256];
        for &x in &blob {
            counts[usize::from(x)] += 1;
        }
        let (min, max) = (counts.iter().min(), counts.iter().max());
        assert!(
            min > Some(&300) && max < Some(&500),
            "{min:?}..{max:?} per byte value"
        );
        let other = build(b.path(), "v2", false, Some(100_003))?;
        assert_ne!(fs::read(other.path().join("assets/blob"))?, blob);
        let empty = build(b.path(), "v1", false, Some(0))?;
        assert_eq!(fs::read(empty.path().join("assets/blob"))?.len(), 0);
        Ok(())
    }
}
