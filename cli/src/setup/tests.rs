use std::io::Read;

use super::*;

#[test]
fn the_staging_directory_is_what_packer_uploads() -> Result<(), Box<dyn std::error::Error>> {
    let staged = bundle::staging(b"hostd build", b"front build")?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(&staged[..]));
    let mut found = std::collections::BTreeMap::new();
    for entry in tar.entries()? {
        let mut entry = entry?;
        let name = entry.path()?.display().to_string();
        let mode = entry.header().mode()?;
        let mut body = Vec::new();
        entry.read_to_end(&mut body)?;
        found.insert(name, (mode, body));
    }
    let mode = |n: &str| found.get(n).map(|(m, _)| *m);
    assert_eq!(mode("provision.sh"), Some(0o755));
    assert_eq!(mode("prepare-data"), Some(0o755));
    assert_eq!(mode("hostd.toml"), Some(0o644));
    assert_eq!(mode("units/hostd.service"), Some(0o644));
    assert!(
        found
            .keys()
            .any(|k| k.starts_with("units/redis-server.service.d/"))
    );
    assert_eq!(
        found.get("hostd").map(|(_, b)| b.as_slice()),
        Some(&b"hostd build"[..])
    );
    assert_eq!(
        found.get("hostd-front").map(|(m, b)| (*m, b.as_slice())),
        Some((0o755, &b"front build"[..]))
    );
    let provision = found
        .get("provision.sh")
        .map(|(_, b)| b.clone())
        .unwrap_or_default();
    assert_eq!(
        provision,
        std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../packer/provision.sh"
        ))?
    );
    Ok(())
}

#[test]
fn package_names_follow_provision_sh() {
    for good in ["nodejs", "python3", "g++", "libssl3.0"] {
        assert!(bundle::is_package_name(good), "{good}");
    }
    for bad in ["", "-x", "Node", "a b", "a;rm", "$(id)"] {
        assert!(!bundle::is_package_name(bad), "{bad}");
    }
}
