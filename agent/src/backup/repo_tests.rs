use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use rustic_core::{BytesList, ErrorKind, Id, ReadBackend, RusticResult, WriteBackend};

use super::*;

/// Storage in memory: the same trait surface as the S3 backend, so the
/// open-or-create decisions are tested without a network.
#[derive(Debug, Clone, Default)]
struct MemStorage {
    files: Arc<Mutex<BTreeMap<(String, Id), Bytes>>>,
    /// Objects under the prefix that are not repository files.
    strays: bool,
    /// Ranged reads of pack files asked of it.
    pack_reads: Arc<std::sync::atomic::AtomicUsize>,
}

impl MemStorage {
    fn with<T>(&self, f: impl FnOnce(&mut BTreeMap<(String, Id), Bytes>) -> T) -> RusticResult<T> {
        let mut files = self
            .files
            .lock()
            .map_err(|_| RusticError::new(ErrorKind::Backend, "poisoned"))?;
        Ok(f(&mut files))
    }
}

fn slot(tpe: FileType, id: &Id) -> (String, Id) {
    (tpe.dirname().to_owned(), *id)
}

impl ReadBackend for MemStorage {
    fn location(&self) -> String {
        "mem://repo".to_owned()
    }

    fn list_with_size(&self, tpe: FileType) -> RusticResult<Vec<(Id, u32)>> {
        self.with(|files| {
            files
                .iter()
                .filter(|((dir, _), _)| dir == tpe.dirname())
                .map(|((_, id), b)| (*id, u32::try_from(b.len()).unwrap_or(u32::MAX)))
                .collect()
        })
    }

    fn read_full(&self, tpe: FileType, id: &Id) -> RusticResult<Bytes> {
        self.with(|files| files.get(&slot(tpe, id)).cloned())?
            .ok_or_else(|| RusticError::new(ErrorKind::Backend, "no such file"))
    }

    fn read_partial(
        &self,
        tpe: FileType,
        id: &Id,
        _cacheable: bool,
        offset: u32,
        length: u32,
    ) -> RusticResult<Bytes> {
        if tpe == FileType::Pack {
            self.pack_reads
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        let all = self.read_full(tpe, id)?;
        let (start, end) = (offset as usize, offset as usize + length as usize);
        all.get(start..end)
            .map(Bytes::copy_from_slice)
            .ok_or_else(|| RusticError::new(ErrorKind::Backend, "short file"))
    }

    fn warmup_path(&self, tpe: FileType, id: &Id) -> String {
        format!("{}/{}", tpe.dirname(), id.to_hex().as_str())
    }
}

impl WriteBackend for MemStorage {
    fn write_bytes(
        &self,
        tpe: FileType,
        id: &Id,
        _cacheable: bool,
        content: BytesList,
    ) -> RusticResult<()> {
        let bytes = Bytes::from(content.slice().concat());
        self.with(|files| files.insert(slot(tpe, id), bytes))
            .map(drop)
    }

    fn remove(&self, tpe: FileType, id: &Id, _cacheable: bool) -> RusticResult<()> {
        self.with(|files| files.remove(&slot(tpe, id))).map(drop)
    }
}

impl Storage for MemStorage {
    fn holds_anything(&self) -> Result<bool, S3Error> {
        let any = self.files.lock().map(|f| !f.is_empty()).unwrap_or(true);
        Ok(any || self.strays)
    }
}

fn options() -> RepositoryOptions {
    RepositoryOptions::default().no_cache(true)
}

const PASSWORD: &str = "correct horse battery staple";

#[test]
fn an_empty_prefix_is_initialised_then_reopened_with_the_same_password() -> Result<(), String> {
    let storage = MemStorage::default();
    let created = open_or_init(storage.clone(), PASSWORD, &options()).map_err(|e| e.to_string())?;
    let id = created.config().id;
    let keys = storage.list(FileType::Key).map_err(|e| e.to_string())?;
    assert_eq!(keys.len(), 1);
    let reopened =
        open_or_init(storage.clone(), PASSWORD, &options()).map_err(|e| e.to_string())?;
    assert_eq!(reopened.config().id, id);
    // Opening wrote nothing: still one key.
    assert_eq!(
        storage
            .list(FileType::Key)
            .map_err(|e| e.to_string())?
            .len(),
        1
    );
    Ok(())
}

#[test]
fn a_wrong_password_is_named_as_such_and_not_quoted() -> Result<(), String> {
    let storage = MemStorage::default();
    open_or_init(storage.clone(), PASSWORD, &options()).map_err(|e| e.to_string())?;
    let wrong = "Tr0ub4dor&3";
    match open_or_init(storage, wrong, &options()) {
        Err(e @ RepoError::WrongPassword { .. }) => {
            let text = e.to_string();
            assert_eq!(
                text,
                "the repository at mem://repo does not open with the configured password"
            );
            assert!(!text.contains(wrong) && !text.contains(PASSWORD));
            Ok(())
        }
        Err(e) => Err(format!("unexpected error: {e}")),
        Ok(_) => Err("opened with a wrong password".to_owned()),
    }
}

#[test]
fn foreign_objects_are_never_initialised_over() {
    let storage = MemStorage {
        strays: true,
        ..MemStorage::default()
    };
    let r = open_or_init(storage.clone(), PASSWORD, &options());
    assert!(
        matches!(&r, Err(RepoError::NotARepository { location }) if location == "mem://repo"),
        "{:?}",
        r.err()
    );
    assert!(storage.files.lock().map(|f| f.is_empty()).unwrap_or(false));
}

#[test]
fn a_config_without_keys_is_not_reported_as_a_wrong_password() -> Result<(), String> {
    let storage = MemStorage::default();
    storage
        .write_bytes(
            FileType::Config,
            &Id::default(),
            false,
            b"{}".to_vec().into(),
        )
        .map_err(|e| e.to_string())?;
    let r = open_or_init(storage, PASSWORD, &options());
    assert!(matches!(r, Err(RepoError::NoKeys { .. })), "{:?}", r.err());
    Ok(())
}

#[test]
fn an_empty_password_is_refused_before_touching_storage() {
    let r = open_or_init(MemStorage::default(), "", &options());
    assert!(matches!(r, Err(RepoError::EmptyPassword)), "{:?}", r.err());
}

#[test]
fn storage_failures_keep_their_s3_error() {
    let s3 = S3Error::Refused {
        op: "HeadObject",
        object: "s3://bkt/p/config".to_owned(),
        code: "AccessDenied".to_owned(),
    };
    let e = from_rustic(
        "s3://bkt/p".to_owned(),
        "read",
        PASSWORD,
        &s3.clone().into_rustic(),
    );
    assert!(
        matches!(&e, RepoError::Storage { source, .. } if *source == s3),
        "{e:?}"
    );
    let other = RusticError::new(ErrorKind::Repository, "it said hunter2");
    let e = from_rustic("s3://bkt/p".to_owned(), "open", "hunter2", &other);
    assert!(!e.to_string().contains("hunter2"), "{e}");
}

/// A file of many blobs (24 MiB of varied bytes: the chunker cuts at 0.5
/// to 8 MiB, at places that depend on the repository's random polynomial,
/// so at least three blobs whatever it is; 6 MiB once gave two) comes back
/// byte for byte, in order, though its blobs are fetched several at once,
/// and through read-ahead windows in fewer pack reads than it has blobs.
#[test]
fn a_file_of_many_blobs_reads_back_whole_and_in_order() -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let original = dir.path().join("big.dump");
    // xorshift: incompressible enough to keep blobs apart, and repeatable.
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    let bytes: Vec<u8> = (0..24 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[0]
        })
        .collect();
    std::fs::write(&original, &bytes).map_err(|e| e.to_string())?;
    let storage = MemStorage::default();
    let repo = open_or_init(storage.clone(), PASSWORD, &options())
        .map_err(|e| e.to_string())?
        .to_indexed_ids()
        .map_err(|e| e.to_string())?;
    let labels = crate::backup::engine::Labels {
        host: "h".into(),
        release: None,
        run: "2026-01-01T00:00:00Z".into(),
    };
    let mut cat = std::process::Command::new("cat");
    cat.arg(&original);
    let snap = crate::backup::engine::backup_command(
        &repo,
        &labels,
        hostd_api::backup::BackupKind::Postgres,
        Some("big"),
        "big.dump",
        "cat big.dump",
        cat,
    )
    .map_err(|e| e.to_string())?;
    let direct = repo.to_indexed().map_err(|e| e.to_string())?;
    let node = direct
        .node_from_snapshot_and_path(&snap, "big.dump")
        .map_err(|e| e.to_string())?;
    let blobs = node.content.as_ref().map_or(0, Vec::len);
    assert!(blobs >= 3, "only {blobs} blob(s): nothing fetched at once");
    let mut read = Vec::new();
    crate::backup::readback::dump(&direct, &node, &mut read)?;
    assert_eq!(read.len(), bytes.len());
    assert!(read == bytes, "the bytes came back in another order");

    let windowed = super::super::read_ahead::ReadAhead::new(storage.clone());
    let repo = open_or_init(windowed, PASSWORD, &options())
        .map_err(|e| e.to_string())?
        .to_indexed()
        .map_err(|e| e.to_string())?;
    let before = storage.pack_reads.load(std::sync::atomic::Ordering::SeqCst);
    let mut again = Vec::new();
    crate::backup::readback::dump(&repo, &node, &mut again)?;
    let reads = storage.pack_reads.load(std::sync::atomic::Ordering::SeqCst) - before;
    assert!(again == bytes, "read-ahead changed the bytes");
    assert!(reads < blobs, "{reads} pack reads for {blobs} blobs");
    Ok(())
}
