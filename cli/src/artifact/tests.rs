use std::fs;
use std::io;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};
use tar::{EntryType, Header};

use super::*;

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Names chosen so that byte order ("a", "a-b", "a/b") differs from
/// component order ("a", "a/b", "a-b").
fn tree(dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir.join("a"))?;
    fs::create_dir_all(dir.join("bin"))?;
    fs::write(dir.join("a/b"), "nested\n")?;
    fs::write(dir.join("a-b"), "dash\n")?;
    fs::write(dir.join("bin/api"), "#!/bin/sh\necho api\n")?;
    fs::set_permissions(dir.join("bin/api"), fs::Permissions::from_mode(0o775))?;
    symlink("bin/api", dir.join("current"))?;
    Ok(())
}

/// The same entries as `tree`, in packing order, with headers full of
/// noise the normaliser must drop.
fn tree_tar<W: io::Write>(out: W) -> io::Result<W> {
    let mut b = tar::Builder::new(out);
    let noisy = |kind: EntryType, mode: u32, size: u64| -> io::Result<Header> {
        let mut h = Header::new_ustar();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_mtime(1_700_000_000);
        h.set_uid(1000);
        h.set_gid(1000);
        h.set_username("dev")?;
        h.set_groupname("dev")?;
        Ok(h)
    };
    b.append_data(
        &mut noisy(EntryType::Directory, 0o775, 0)?,
        "./",
        io::empty(),
    )?;
    b.append_data(
        &mut noisy(EntryType::Directory, 0o700, 0)?,
        "a",
        io::empty(),
    )?;
    let files: [(&str, &[u8], u32); 2] = [("a-b", b"dash\n", 0o644), ("a/b", b"nested\n", 0o666)];
    for (path, data, mode) in files {
        let mut h = noisy(EntryType::Regular, mode, data.len() as u64)?;
        b.append_data(&mut h, path, data)?;
    }
    b.append_data(
        &mut noisy(EntryType::Directory, 0o755, 0)?,
        "bin",
        io::empty(),
    )?;
    let api = b"#!/bin/sh\necho api\n";
    let mut h = noisy(EntryType::Regular, 0o4775, api.len() as u64)?;
    b.append_data(&mut h, "bin/api", &api[..])?;
    b.append_link(
        &mut noisy(EntryType::Symlink, 0o777, 0)?,
        "current",
        "bin/api",
    )?;
    b.into_inner()
}

/// A tar with one entry whose name and link target are written verbatim,
/// which tar::Builder would refuse to do.
fn raw_tar(path: &Path, name: &str, kind: EntryType, link: &str) -> io::Result<()> {
    let mut h = Header::new_gnu();
    h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
    h.set_entry_type(kind);
    h.set_mode(0o644);
    h.set_size(0);
    h.set_cksum();
    let mut b = tar::Builder::new(Vec::new());
    b.append(&h, io::empty())?;
    fs::write(path, b.into_inner()?)
}

fn err(artifact: &Path) -> String {
    match pack(artifact) {
        Ok(p) => format!("unexpectedly packed: {}", p.digest),
        Err(e) => e.to_string(),
    }
}

#[test]
fn same_content_gives_same_digest_whatever_the_mtimes() -> TestResult {
    let one = tempfile::tempdir()?;
    let two = tempfile::tempdir()?;
    tree(one.path())?;
    tree(two.path())?;
    let old = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
    for f in ["a/b", "a-b", "bin/api"] {
        fs::File::options()
            .write(true)
            .open(two.path().join(f))?
            .set_modified(old)?;
    }
    let first = pack(one.path())?;
    assert_eq!(first.digest.len(), 64);
    assert!(
        first
            .digest
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );
    assert_eq!(pack(two.path())?.digest, first.digest);
    assert_eq!(pack(one.path())?.digest, first.digest);
    assert_eq!(first.entries, 6);

    fs::write(two.path().join("a/b"), "nestee\n")?;
    assert_ne!(pack(two.path())?.digest, first.digest);
    Ok(())
}

#[test]
fn a_directory_and_its_archives_give_the_same_digest() -> TestResult {
    let dir = tempfile::tempdir()?;
    let src = dir.path().join("dist");
    tree(&src)?;
    let from_dir = pack(&src)?;

    let tar = tree_tar(Vec::new())?;
    fs::write(dir.path().join("dist.tar"), &tar)?;
    fs::write(
        dir.path().join("dist.tar.zst"),
        zstd::encode_all(&tar[..], 19)?,
    )?;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    io::Write::write_all(&mut gz, &tar)?;
    let gz = gz.finish()?;
    fs::write(dir.path().join("dist.tar.gz"), &gz)?;
    fs::write(dir.path().join("DIST.TGZ"), &gz)?;

    for name in ["dist.tar", "dist.tar.zst", "dist.tar.gz", "DIST.TGZ"] {
        let packed = pack(&dir.path().join(name))?;
        assert_eq!(packed.digest, from_dir.digest, "{name}");
        assert_eq!(packed.entries, from_dir.entries, "{name}");
    }
    Ok(())
}

#[test]
fn the_packed_file_is_the_normalised_tar_compressed() -> TestResult {
    let dir = tempfile::tempdir()?;
    tree(dir.path())?;
    let mut packed = pack(dir.path())?;
    let mut compressed = Vec::new();
    io::Read::read_to_end(&mut packed.file, &mut compressed)?;
    assert_eq!(compressed.len() as u64, packed.compressed_bytes);
    let tar = zstd::decode_all(&compressed[..])?;
    assert_eq!(tar.len() as u64, packed.tar_bytes);
    assert_eq!(hex(&Sha256::digest(&tar)), packed.digest);

    let mut listed = Vec::new();
    for entry in tar::Archive::new(&tar[..]).entries()? {
        let entry = entry?;
        let h = entry.header();
        assert_eq!((h.mtime()?, h.uid()?, h.gid()?), (0, 0, 0));
        assert_eq!(h.username_bytes(), Some(&b""[..]));
        let link = entry.link_name()?.map(|l| l.display().to_string());
        listed.push((entry.path()?.display().to_string(), h.mode()?, link));
    }
    let want = [
        ("a/", 0o755, None),
        ("a-b", 0o644, None),
        ("a/b", 0o644, None),
        ("bin/", 0o755, None),
        ("bin/api", 0o755, None),
        ("current", 0o777, Some("bin/api".to_owned())),
    ];
    let want: Vec<_> = want
        .into_iter()
        .map(|(p, m, l)| (p.to_owned(), m, l))
        .collect();
    assert_eq!(listed, want);
    Ok(())
}

#[test]
fn long_paths_survive_and_stay_deterministic() -> TestResult {
    let one = tempfile::tempdir()?;
    let deep = one.path().join("d".repeat(90)).join("f".repeat(90));
    fs::create_dir_all(deep.parent().ok_or("no parent")?)?;
    fs::write(&deep, "x")?;
    let packed = pack(one.path())?;
    let tar = zstd::decode_all(fs::File::open(packed.file.path())?)?;
    let names: Vec<String> = tar::Archive::new(&tar[..])
        .entries()?
        .map(|e| Ok(e?.path()?.display().to_string()))
        .collect::<io::Result<_>>()?;
    assert_eq!(names[1], format!("{}/{}", "d".repeat(90), "f".repeat(90)));
    assert_eq!(pack(one.path())?.digest, packed.digest);
    Ok(())
}

#[test]
fn special_files_and_escaping_symlinks_are_refused() -> TestResult {
    let dir = tempfile::tempdir()?;
    nix::unistd::mkfifo(&dir.path().join("pipe"), nix::sys::stat::Mode::S_IRWXU)?;
    let e = err(dir.path());
    assert!(e.contains("pipe is a fifo"), "{e}");

    let dir = tempfile::tempdir()?;
    fs::create_dir(dir.path().join("etc"))?;
    symlink("../../secret", dir.path().join("etc/up"))?;
    let e = err(dir.path());
    assert!(e.contains("the entry `etc/up` is refused"), "{e}");
    Ok(())
}

#[test]
fn archive_entries_that_escape_are_refused() -> TestResult {
    let dir = tempfile::tempdir()?;
    let tar = dir.path().join("evil.tar");
    let cases = [
        ("/etc/passwd", EntryType::Regular, "", "an absolute path"),
        ("a/../../x", EntryType::Regular, "", "`..`"),
        (
            "l",
            EntryType::Symlink,
            "/etc/passwd",
            "outside the artifact",
        ),
        ("d/l", EntryType::Symlink, "../../x", "outside the artifact"),
        ("h", EntryType::Link, "../x", "hard link"),
        ("p", EntryType::Fifo, "", "a fifo"),
    ];
    for (name, kind, link, why) in cases {
        raw_tar(&tar, name, kind, link)?;
        let e = err(&tar);
        assert!(e.contains(&format!("the entry `{name}` is refused")), "{e}");
        assert!(e.contains(why), "{e}");
    }
    raw_tar(&tar, "d/l", EntryType::Symlink, "../x")?;
    assert!(pack(&tar).is_ok());
    Ok(())
}

#[test]
fn missing_and_unknown_artifacts_say_what_to_do() -> TestResult {
    let dir = tempfile::tempdir()?;
    let e = err(&dir.path().join("dist"));
    assert!(e.contains("dist does not exist"), "{e}");
    assert!(e.contains("check `artifact` in hostctl.toml"), "{e}");
    let zip = dir.path().join("dist.zip");
    fs::write(&zip, "PK")?;
    let e = err(&zip);
    assert!(e.contains(".tar, .tar.gz, .tgz or .tar.zst"), "{e}");
    Ok(())
}
