//! Which snapshots a restore takes: a pure choice over the repository's
//! listing, so every rule here is tested without a repository.
//!
//! `latest`: the newest snapshot of each kind this host backs up (each
//! database, Redis, the paths). An id: the whole run that wrote it (its
//! `run=` tag), so one id from `hostctl backups` names a point in time.
//! `--only` narrows either.
//!
//! The repository is not trusted: whoever can write the bucket and knows
//! the password can plant snapshots. A snapshot is restored only where
//! this host's configuration says (its databases, exactly its
//! `backup.paths`); one that names anything else refuses the whole plan.

use hostd_api::{BackupKind, SnapshotInfo};

use crate::config::is_sql_identifier;

/// Shortest id prefix accepted, as restic shows ids.
pub const MIN_ID_PREFIX: usize = 8;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    #[error("no snapshot `{0}` in this host's repository; `hostctl backups` lists them")]
    UnknownSnapshot(String),
    #[error(
        "`{0}` is too short: give at least {MIN_ID_PREFIX} characters of a snapshot id, or `latest`"
    )]
    ShortId(String),
    #[error("`{given}` matches several snapshots ({}); give more of the id", .matches.join(", "))]
    Ambiguous { given: String, matches: Vec<String> },
    #[error("the repository holds no {what} backup of this host yet{hint}")]
    Missing { what: String, hint: String },
    #[error("snapshot {id}'s run holds no {kind} snapshot")]
    NotInRun { id: String, kind: &'static str },
    #[error("nothing to restore: {0}")]
    Nothing(String),
    #[error(
        "snapshot {id} would restore {what} `{value}`, which this host's configuration does not back up; nothing was changed"
    )]
    Untrusted {
        id: String,
        what: &'static str,
        value: String,
    },
}

/// What this host backs up, from hostd.toml.
#[derive(Debug, Clone, Default)]
pub struct Wanted {
    pub databases: Vec<String>,
    pub redis: bool,
    /// `backup.paths`, exactly.
    pub paths: Vec<String>,
}

fn short(id: &str) -> String {
    id.chars().take(MIN_ID_PREFIX).collect()
}

fn tag<'a>(s: &'a SnapshotInfo, key: &str) -> Option<&'a str> {
    s.tags.iter().find_map(|t| t.strip_prefix(key))
}

/// `snapshots`: this host's, any order. The result is ordered postgres
/// (by database), redis, files.
pub fn select(
    snapshots: &[SnapshotInfo],
    target: &str,
    only: &[BackupKind],
    wanted: &Wanted,
) -> Result<Vec<SnapshotInfo>, PlanError> {
    let included = |k: BackupKind| only.is_empty() || only.contains(&k);
    let mut chosen = if target == "latest" {
        latest(snapshots, wanted, &included)?
    } else {
        let picked = by_id(snapshots, target)?;
        let run: Vec<SnapshotInfo> = match tag(picked, "run=") {
            Some(run) => snapshots
                .iter()
                .filter(|s| tag(s, "run=") == Some(run))
                .cloned()
                .collect(),
            None => vec![picked.clone()],
        };
        for &k in only {
            if !run.iter().any(|s| s.kind == k) {
                return Err(PlanError::NotInRun {
                    id: short(&picked.id),
                    kind: k.as_str(),
                });
            }
        }
        run.into_iter().filter(|s| included(s.kind)).collect()
    };
    if chosen.is_empty() {
        return Err(PlanError::Nothing(
            "this host backs up none of the kinds asked for".into(),
        ));
    }
    chosen.sort_by(|a, b| (a.kind, &a.database).cmp(&(b.kind, &b.database)));
    trusted(&chosen, wanted)?;
    Ok(chosen)
}

/// Every chosen snapshot restores only what `wanted` names.
fn trusted(chosen: &[SnapshotInfo], wanted: &Wanted) -> Result<(), PlanError> {
    let untrusted = |s: &SnapshotInfo, what, value: &str| PlanError::Untrusted {
        id: short(&s.id),
        what,
        value: value.to_owned(),
    };
    for s in chosen {
        match s.kind {
            BackupKind::Postgres => {
                let db = s.database.as_deref().unwrap_or_default();
                if !wanted.databases.iter().any(|w| w == db) || !is_sql_identifier(db) {
                    return Err(untrusted(s, "database", db));
                }
            }
            BackupKind::Files => {
                if let Some(p) = s.paths.iter().find(|p| !wanted.paths.contains(p)) {
                    return Err(untrusted(s, "path", p));
                }
            }
            // Read from inside the snapshot only; where it goes is this
            // host's `backup.redis_rdb`.
            BackupKind::Redis => {}
        }
    }
    Ok(())
}

fn by_id<'a>(snapshots: &'a [SnapshotInfo], given: &str) -> Result<&'a SnapshotInfo, PlanError> {
    if given.len() < MIN_ID_PREFIX {
        return Err(PlanError::ShortId(given.to_owned()));
    }
    let lower = given.to_ascii_lowercase();
    let matches: Vec<&SnapshotInfo> = snapshots
        .iter()
        .filter(|s| s.id.starts_with(&lower))
        .collect();
    match matches.as_slice() {
        [] => Err(PlanError::UnknownSnapshot(given.to_owned())),
        [one] => Ok(one),
        many => Err(PlanError::Ambiguous {
            given: given.to_owned(),
            matches: many.iter().map(|s| short(&s.id)).collect(),
        }),
    }
}

fn latest(
    snapshots: &[SnapshotInfo],
    wanted: &Wanted,
    included: &dyn Fn(BackupKind) -> bool,
) -> Result<Vec<SnapshotInfo>, PlanError> {
    let newest = |pred: &dyn Fn(&SnapshotInfo) -> bool| {
        snapshots
            .iter()
            .filter(|s| pred(s))
            .max_by(|a, b| a.time.cmp(&b.time))
            .cloned()
    };
    let missing = |what: String, kind: &str| PlanError::Missing {
        what,
        hint: if included(BackupKind::Postgres)
            && included(BackupKind::Redis)
            && included(BackupKind::Files)
        {
            format!(" (`--only` can leave {kind} out)")
        } else {
            String::new()
        },
    };
    let mut out = Vec::new();
    if included(BackupKind::Postgres) {
        for db in &wanted.databases {
            let s = newest(&|s| s.kind == BackupKind::Postgres && s.database.as_ref() == Some(db))
                .ok_or_else(|| missing(format!("PostgreSQL ({db})"), "postgres"))?;
            out.push(s);
        }
    }
    if included(BackupKind::Redis) && wanted.redis {
        out.push(
            newest(&|s| s.kind == BackupKind::Redis)
                .ok_or_else(|| missing("Redis".into(), "redis"))?,
        );
    }
    if included(BackupKind::Files) && !wanted.paths.is_empty() {
        out.push(
            newest(&|s| s.kind == BackupKind::Files)
                .ok_or_else(|| missing("files".into(), "files"))?,
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(id: &str, time: &str, kind: BackupKind, db: Option<&str>, run: &str) -> SnapshotInfo {
        SnapshotInfo {
            id: id.into(),
            time: time.into(),
            kind,
            host: "h".into(),
            release: None,
            database: db.map(str::to_owned),
            paths: vec![],
            tags: vec!["hostd".into(), format!("run={run}")],
            size: 1,
            added: 1,
        }
    }

    fn repo() -> Vec<SnapshotInfo> {
        use BackupKind::*;
        vec![
            snap(
                "aaaa0001ff",
                "2026-12-01T03:00:01Z",
                Postgres,
                Some("api"),
                "r1",
            ),
            snap("aaaa0002ff", "2026-12-01T03:00:05Z", Redis, None, "r1"),
            snap("aaaa0003ff", "2026-12-01T03:00:06Z", Files, None, "r1"),
            snap(
                "bbbb0001ff",
                "2026-12-02T03:00:01Z",
                Postgres,
                Some("api"),
                "r2",
            ),
            snap("bbbb0002ff", "2026-12-02T03:00:05Z", Redis, None, "r2"),
        ]
    }

    fn all() -> Wanted {
        Wanted {
            databases: vec!["api".into()],
            redis: true,
            paths: vec!["/srv/uploads".into()],
        }
    }

    fn ids(v: &[SnapshotInfo]) -> Vec<&str> {
        v.iter().map(|s| s.id.as_str()).collect()
    }

    #[test]
    fn latest_takes_the_newest_of_each_kind() {
        let got = select(&repo(), "latest", &[], &all());
        assert_eq!(
            got.as_deref().map(ids),
            Ok(vec!["bbbb0001ff", "bbbb0002ff", "aaaa0003ff"])
        );
        let only = select(&repo(), "latest", &[BackupKind::Redis], &all());
        assert_eq!(only.as_deref().map(ids), Ok(vec!["bbbb0002ff"]));
    }

    #[test]
    fn an_id_restores_its_whole_run() {
        let got = select(&repo(), "AAAA0002", &[], &all());
        assert_eq!(
            got.as_deref().map(ids),
            Ok(vec!["aaaa0001ff", "aaaa0002ff", "aaaa0003ff"])
        );
        let got = select(&repo(), "bbbb0001", &[BackupKind::Files], &all());
        assert_eq!(
            got.map(|_| ()),
            Err(PlanError::NotInRun {
                id: "bbbb0001".into(),
                kind: "files"
            })
        );
    }

    #[test]
    fn bad_ids_are_clear_errors() {
        let err = |t: &str| {
            select(&repo(), t, &[], &all())
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        assert!(matches!(err("cccc0001"), Err(e) if e.contains("hostctl backups")));
        assert!(matches!(err("aaaa"), Err(e) if e.contains("at least 8")));
        assert!(matches!(err("aaaa000"), Err(e) if e.contains("at least 8")));
        let mut dup = repo();
        dup.push(snap(
            "aaaa0001ee",
            "2026-12-01T04:00:00Z",
            BackupKind::Redis,
            None,
            "r3",
        ));
        let e = select(&dup, "aaaa0001", &[], &all()).map(|_| ());
        assert!(matches!(e, Err(PlanError::Ambiguous { .. })), "{e:?}");
    }

    #[test]
    fn latest_names_what_is_missing() {
        let mut w = all();
        w.databases.push("billing".into());
        let e = select(&repo(), "latest", &[], &w).map_err(|e| e.to_string());
        assert!(
            matches!(&e, Err(t) if t.contains("PostgreSQL (billing)") && t.contains("--only")),
            "{e:?}"
        );
        let none = Wanted::default();
        let e = select(&repo(), "latest", &[], &none).map(|_| ());
        assert!(matches!(e, Err(PlanError::Nothing(_))), "{e:?}");
    }

    #[test]
    fn a_snapshot_naming_what_this_host_does_not_back_up_refuses_the_plan() {
        let mut planted = repo();
        planted.push(snap(
            "cccc0001ff",
            "2026-12-03T03:00:01Z",
            BackupKind::Postgres,
            Some("x; COPY t TO PROGRAM 'id'"),
            "r9",
        ));
        let mut files = snap(
            "cccc0002ff",
            "2026-12-03T03:00:02Z",
            BackupKind::Files,
            None,
            "r9",
        );
        files.paths = vec!["/etc/systemd/system".into()];
        planted.push(files);
        let by_id = select(&planted, "cccc0001", &[], &all()).map_err(|e| e.to_string());
        assert_eq!(
            by_id,
            Err("snapshot cccc0001 would restore database `x; COPY t TO PROGRAM 'id'`, which this host's configuration does not back up; nothing was changed".into())
        );
        let only_files = select(&planted, "cccc0002", &[BackupKind::Files], &all());
        assert!(
            matches!(&only_files, Err(PlanError::Untrusted { what: "path", value, .. }) if value == "/etc/systemd/system"),
            "{only_files:?}"
        );
        // `latest` takes the newest files snapshot, the planted one.
        let latest = select(&planted, "latest", &[], &all());
        assert!(
            matches!(latest, Err(PlanError::Untrusted { .. })),
            "{latest:?}"
        );
        // A database the config names but that is no plain identifier is
        // refused too (the config refuses such names; the plan checks again).
        let mut odd = all();
        odd.databases.push("Api\"".into());
        let mut weird = repo();
        weird.push(snap(
            "dddd0001ff",
            "2026-12-04T00:00:00Z",
            BackupKind::Postgres,
            Some("Api\""),
            "r10",
        ));
        assert!(matches!(
            select(&weird, "dddd0001", &[], &odd),
            Err(PlanError::Untrusted {
                what: "database",
                ..
            })
        ));
    }
}
