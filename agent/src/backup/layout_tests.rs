use rustic_core::RusticError;

use super::*;

const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn id() -> Result<Id, String> {
    HEX.parse().map_err(|e: Box<RusticError>| e.to_string())
}

#[test]
fn prefixes_are_normalised_and_odd_ones_rejected() {
    let p = |raw| Prefix::new("bkt", raw).map(|p| p.as_str().to_owned());
    assert_eq!(p(""), Ok(String::new()));
    assert_eq!(p("/"), Ok(String::new()));
    assert_eq!(p("hosts/web-1"), Ok("hosts/web-1/".to_owned()));
    assert_eq!(p("/hosts/web-1/"), Ok("hosts/web-1/".to_owned()));
    for bad in ["a//b", "a/../b", "./a", "a\nb"] {
        assert!(matches!(p(bad), Err(BadLocation { .. })), "{bad:?}");
    }
    assert!(Prefix::new("", "a").is_err());
    assert!(Prefix::new("a/b", "c").is_err());
}

#[test]
fn keys_follow_the_restic_layout() -> Result<(), String> {
    let id = id()?;
    let p = Prefix::new("bkt", "/hosts/web-1/").map_err(|e| e.to_string())?;
    assert_eq!(p.key(FileType::Config, &id), "hosts/web-1/config");
    assert_eq!(p.key(FileType::Key, &id), format!("hosts/web-1/keys/{HEX}"));
    assert_eq!(
        p.key(FileType::Snapshot, &id),
        format!("hosts/web-1/snapshots/{HEX}")
    );
    assert_eq!(
        p.key(FileType::Index, &id),
        format!("hosts/web-1/index/{HEX}")
    );
    assert_eq!(
        p.key(FileType::Pack, &id),
        format!("hosts/web-1/data/01/{HEX}")
    );
    let root = Prefix::new("bkt", "").map_err(|e| e.to_string())?;
    assert_eq!(root.key(FileType::Config, &id), "config");
    assert_eq!(root.key(FileType::Pack, &id), format!("data/01/{HEX}"));
    Ok(())
}

#[test]
fn listed_keys_map_back_to_ids_only_where_the_layout_puts_them() -> Result<(), String> {
    let id = id()?;
    let p = Prefix::new("bkt", "r").map_err(|e| e.to_string())?;
    for tpe in [
        FileType::Key,
        FileType::Snapshot,
        FileType::Index,
        FileType::Pack,
    ] {
        assert_eq!(p.id_of(tpe, &p.key(tpe, &id)), Some(id), "{tpe:?}");
    }
    let upper = HEX.to_uppercase();
    let not_keys = [
        format!("r/keys/{upper}"),    // not the canonical spelling
        format!("r/keys/{HEX}.tmp"),  // a temporary file
        format!("r/keys/x/{HEX}"),    // nested
        format!("other/keys/{HEX}"),  // another prefix
        format!("r/snapshots/{HEX}"), // another type
        "r/keys/".to_owned(),         // a directory marker
    ];
    for stray in not_keys {
        assert_eq!(p.id_of(FileType::Key, &stray), None, "{stray}");
    }
    // Not in its subdirectory, or in the wrong one.
    for stray in [format!("r/data/{HEX}"), format!("r/data/ff/{HEX}")] {
        assert_eq!(p.id_of(FileType::Pack, &stray), None, "{stray}");
    }
    Ok(())
}
