//! Embeds what `hostctl setup` uploads to a plain instance: the same
//! provisioning script, data preparation, default hostd.toml and unit files
//! the AMI is baked with (packer/stage.sh assembles the same set), so a host
//! set up by hostctl and one from the image are provisioned alike.

use std::error::Error;
use std::fmt::Write;
use std::path::{Path, PathBuf};

fn main() -> Result<(), Box<dyn Error>> {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let root = manifest.parent().ok_or("cli/ has no parent directory")?;
    let mut files: Vec<(String, PathBuf, u32)> = vec![
        (
            "provision.sh".into(),
            root.join("packer/provision.sh"),
            0o755,
        ),
        (
            "prepare-data".into(),
            root.join("packer/files/prepare-data"),
            0o755,
        ),
        (
            "hostd.toml".into(),
            root.join("packer/files/hostd.toml"),
            0o644,
        ),
    ];
    let units = root.join("units");
    walk(&units, &units, &mut files)?;
    let mut code = String::from(
        "/// (name in the staging directory, mode, contents)\npub static FILES: &[(&str, u32, &[u8])] = &[\n",
    );
    for (name, path, mode) in &files {
        println!("cargo:rerun-if-changed={}", path.display());
        writeln!(
            code,
            "    ({name:?}, 0o{mode:o}, include_bytes!({:?})),",
            path.display().to_string()
        )?;
    }
    code.push_str("];\n");
    let out = PathBuf::from(std::env::var("OUT_DIR")?).join("bundle.rs");
    std::fs::write(out, code)?;
    Ok(())
}

/// Unit files at the top of units/, drop-ins one level down, as stage.sh
/// takes them.
fn walk(
    base: &Path,
    dir: &Path,
    files: &mut Vec<(String, PathBuf, u32)>,
) -> Result<(), Box<dyn Error>> {
    // A new file in a directory reruns the build.
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(std::fs::DirEntry::file_name);
    for entry in entries {
        let path = entry.path();
        if path.is_dir() {
            walk(base, &path, files)?;
            continue;
        }
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let unit = [".service", ".socket", ".timer", ".conf"]
            .iter()
            .any(|s| name.ends_with(s));
        if unit {
            let rel = path.strip_prefix(base)?.display().to_string();
            files.push((format!("units/{rel}"), path.clone(), 0o644));
        }
    }
    Ok(())
}
