use std::os::unix::fs::PermissionsExt;

use tar::{EntryType, Header};

use super::*;

/// An archive entry; the name is written raw, so `..` and absolute paths
/// can be built (tar's own `set_path` refuses them).
struct E<'a> {
    name: &'a str,
    kind: EntryType,
    mode: u32,
    data: &'a [u8],
    link: Option<&'a str>,
}

fn file<'a>(name: &'a str, data: &'a [u8]) -> E<'a> {
    E {
        name,
        kind: EntryType::Regular,
        mode: 0o644,
        data,
        link: None,
    }
}

fn link<'a>(name: &'a str, kind: EntryType, target: &'a str) -> E<'a> {
    E {
        name,
        kind,
        mode: 0o777,
        data: b"",
        link: Some(target),
    }
}

fn archive(entries: &[E<'_>]) -> Result<Vec<u8>, std::io::Error> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = Header::new_old();
        let name = &mut h.as_old_mut().name;
        name[..e.name.len()].copy_from_slice(e.name.as_bytes());
        if let Some(target) = e.link {
            let l = &mut h.as_old_mut().linkname;
            l[..target.len()].copy_from_slice(target.as_bytes());
        }
        h.set_entry_type(e.kind);
        h.set_mode(e.mode);
        h.set_size(e.data.len() as u64);
        h.set_cksum();
        b.append(&h, e.data)?;
    }
    b.into_inner()
}

type R = Result<(), Box<dyn std::error::Error>>;

const GENEROUS: Limits = Limits {
    bytes: 1 << 30,
    entries: 10_000,
};

#[test]
fn a_good_archive_becomes_the_release_with_safe_modes() -> R {
    let dir = tempfile::tempdir()?;
    let dest = dir.path().join("releases/v1");
    std::fs::create_dir(dir.path().join("releases"))?;
    let mut bin = file("bin/api", b"#!/bin/sh\n");
    bin.mode = 0o4777;
    let bytes = archive(&[
        E {
            name: "bin/",
            kind: EntryType::Directory,
            mode: 0o755,
            data: b"",
            link: None,
        },
        bin,
        file("./static/index.html", b"<p>hi</p>"),
        link("current-bin", EntryType::Symlink, "bin/api"),
        link("static/up", EntryType::Symlink, "../bin"),
        link("bin/api-copy", EntryType::Link, "bin/api"),
    ])?;
    assert_eq!(unpack(bytes.as_slice(), &dest, GENEROUS)?, 6);
    let mode = std::fs::metadata(dest.join("bin/api"))?
        .permissions()
        .mode()
        & 0o7777;
    assert_eq!(mode, 0o755);
    assert_eq!(std::fs::read(dest.join("static/index.html"))?, b"<p>hi</p>");
    assert_eq!(
        std::fs::read_link(dest.join("current-bin"))?,
        Path::new("bin/api")
    );
    assert_eq!(std::fs::read(dest.join("bin/api-copy"))?, b"#!/bin/sh\n");
    assert!(!dir.path().join("releases/.v1.partial").exists());
    let again = unpack(bytes.as_slice(), &dest, GENEROUS).map(|_| ());
    assert!(matches!(again, Err(UnpackError::Exists(_))), "{again:?}");
    Ok(())
}

/// Each archive must be refused, leave no release and no staging
/// directory, and write nothing outside `releases/`.
#[test]
fn escaping_entries_are_refused_and_leave_nothing() -> R {
    let cases: Vec<(&str, Vec<E<'_>>)> = vec![
        ("parent path", vec![file("../escaped", b"x")]),
        ("nested parent path", vec![file("a/../../escaped", b"x")]),
        (
            "absolute path",
            vec![file("/tmp/hostd-unpack-escaped", b"x")],
        ),
        (
            "absolute link",
            vec![link("etc", EntryType::Symlink, "/etc")],
        ),
        (
            "link climbing out",
            vec![link("a/up", EntryType::Symlink, "../../escaped")],
        ),
        (
            "write through a link",
            vec![link("out", EntryType::Symlink, "sub"), file("out/f", b"x")],
        ),
        (
            "hard link outside",
            vec![link("passwd", EntryType::Link, "/etc/passwd")],
        ),
        (
            "hard link climbing",
            vec![link("x", EntryType::Link, "../escaped")],
        ),
        (
            "fifo",
            vec![E {
                name: "pipe",
                kind: EntryType::Fifo,
                mode: 0o644,
                data: b"",
                link: None,
            }],
        ),
        ("duplicate", vec![file("f", b"one"), file("f", b"two")]),
        (
            // Lexically inside, but `s` is already a link to the root.
            "a chain of links climbing out",
            vec![
                link("a/b/c/s", EntryType::Symlink, "../../.."),
                link("x", EntryType::Symlink, "a/b/c/s/../../../../etc/shadow"),
            ],
        ),
        (
            // The second link makes the first one lead out.
            "a link changed by a later one",
            vec![
                link("x", EntryType::Symlink, "a/s/../../escaped"),
                link("a/s", EntryType::Symlink, ".."),
            ],
        ),
    ];
    for (what, entries) in cases {
        let dir = tempfile::tempdir()?;
        let releases = dir.path().join("releases");
        std::fs::create_dir(&releases)?;
        let dest = releases.join("v2");
        let bytes = archive(&entries)?;
        let r = unpack(bytes.as_slice(), &dest, GENEROUS).map_err(|e| e.to_string());
        assert!(
            matches!(&r, Err(e) if e.contains("refused") && e.contains("nothing was installed")),
            "{what}: {r:?}"
        );
        assert!(!dest.exists(), "{what}: a release was left");
        assert_eq!(
            std::fs::read_dir(&releases)?.count(),
            0,
            "{what}: staging left"
        );
        assert!(
            !dir.path().join("escaped").exists(),
            "{what}: wrote outside"
        );
        assert!(!Path::new("/tmp/hostd-unpack-escaped").exists(), "{what}");
    }
    Ok(())
}

#[test]
fn link_targets_are_resolved_from_the_link_directory() {
    assert!(link_stays_inside(Path::new("a/b/l"), Path::new("../c")));
    assert!(link_stays_inside(Path::new("a/b/l"), Path::new("../../c")));
    assert!(!link_stays_inside(
        Path::new("a/b/l"),
        Path::new("../../../c")
    ));
    assert!(!link_stays_inside(Path::new("l"), Path::new("..")));
    assert!(link_stays_inside(Path::new("l"), Path::new("./x/../y")));
    assert!(!link_stays_inside(Path::new("l"), Path::new("/abs")));
}

#[test]
fn a_release_larger_than_its_bounds_is_refused_while_unpacking() -> R {
    let dir = tempfile::tempdir()?;
    let releases = dir.path().join("releases");
    std::fs::create_dir(&releases)?;
    let big = vec![0u8; 64 * 1024];
    let bytes = archive(&[file("a", &big), file("b", &big)])?;
    let small = Limits {
        bytes: 100 * 1024,
        entries: 10,
    };
    let r = unpack(bytes.as_slice(), &releases.join("v1"), small).map_err(|e| e.to_string());
    assert!(
        matches!(&r, Err(e) if e.contains("deploy.max_release_mib")),
        "{r:?}"
    );
    let few = Limits {
        bytes: 1 << 30,
        entries: 1,
    };
    let r = unpack(bytes.as_slice(), &releases.join("v1"), few).map_err(|e| e.to_string());
    assert!(
        matches!(&r, Err(e) if e.contains("deploy.max_release_entries")),
        "{r:?}"
    );
    assert_eq!(std::fs::read_dir(&releases)?.count(), 0, "staging left");
    Ok(())
}
