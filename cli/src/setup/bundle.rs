//! What `hostctl setup` uploads: the staging directory packer/stage.sh
//! assembles for the AMI (provision.sh, prepare-data, the default
//! hostd.toml, the unit files, embedded at build time) with the hostd
//! build, as one gzipped tar.

use std::io::Write;
use std::path::Path;

include!(concat!(env!("OUT_DIR"), "/bundle.rs"));

/// The tar.gz of the staging directory with `hostd` and `hostd-front`.
pub fn staging(hostd: &[u8], front: &[u8]) -> std::io::Result<Vec<u8>> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    let mut add = |name: &str, mode: u32, data: &[u8]| {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(mode);
        header.set_mtime(0);
        header.set_cksum();
        tar.append_data(&mut header, Path::new(name), data)
    };
    for (name, mode, data) in FILES {
        add(name, *mode, data)?;
    }
    add("hostd", 0o755, hostd)?;
    add(hostd_api::FRONT_BINARY, 0o755, front)?;
    let mut gz = tar.into_inner()?;
    gz.flush()?;
    gz.finish()
}

/// provision.sh's rule for runtime package names (it checks them again).
pub fn is_package_name(p: &str) -> bool {
    let mut chars = p.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || ".+-".contains(c))
}
