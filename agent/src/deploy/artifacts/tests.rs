use super::*;
use hostd_api::chunks;

fn upload(
    data: &[u8],
) -> futures_util::stream::Iter<std::vec::IntoIter<Result<bytes::Bytes, axum::Error>>> {
    let chunks: Vec<Result<bytes::Bytes, axum::Error>> = data
        .chunks(1000)
        .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
        .collect();
    futures_util::stream::iter(chunks)
}

#[tokio::test]
async fn an_upload_is_stored_only_under_its_true_digest() -> Result<(), Box<dyn std::error::Error>>
{
    let dir = tempfile::tempdir()?;
    let store = ArtifactStore::new(dir.path());
    let tar = b"pretend this is a tar".repeat(500);
    let digest = digest_of(&tar);
    let compressed = zstd::encode_all(&tar[..], 3)?;

    let wrong = digest_of(b"something else");
    let err = store.receive(&wrong, upload(&compressed)).await;
    assert!(
        matches!(err, Err(ArtifactError::DigestMismatch { .. })),
        "{err:?}"
    );
    assert_eq!(store.size(&wrong)?, None);

    let err = store.receive(&digest, upload(&tar)).await;
    assert!(matches!(err, Err(ArtifactError::NotZstd(_))), "{err:?}");
    assert_eq!(store.size(&digest)?, None);

    let n = store.receive(&digest, upload(&compressed)).await?;
    assert_eq!(store.size(&digest)?, Some(n));
    let mut back = Vec::new();
    store.open(&digest)?.read_to_end(&mut back)?;
    assert_eq!(back, tar);
    // The artifact and its chunk index, nothing else.
    assert_eq!(std::fs::read_dir(dir.path().join("artifacts"))?.count(), 2);
    assert_eq!(leftovers(dir.path()), Vec::<String>::new());

    let grace = std::time::Duration::from_secs(3600);
    assert_eq!(
        store.prune(std::slice::from_ref(&digest), std::time::Duration::ZERO)?,
        Vec::<String>::new()
    );
    assert_eq!(store.prune(&[], grace)?, Vec::<String>::new());
    assert_eq!(
        store.prune(&[], std::time::Duration::ZERO)?,
        vec![digest.clone()]
    );
    assert_eq!(store.size(&digest)?, None);
    Ok(())
}

#[tokio::test]
async fn two_uploads_of_one_digest_at_once_store_it_whole() -> Result<(), Box<dyn std::error::Error>>
{
    let dir = tempfile::tempdir()?;
    let store = ArtifactStore::new(dir.path());
    let tar = b"the same build uploaded twice".repeat(4000);
    let digest = digest_of(&tar);
    let compressed = zstd::encode_all(&tar[..], 3)?;
    let (a, b) = tokio::join!(
        store.receive(&digest, upload(&compressed)),
        store.receive(&digest, upload(&compressed))
    );
    assert_eq!(a?, b?);
    let mut back = Vec::new();
    store.open(&digest)?.read_to_end(&mut back)?;
    assert_eq!(back, tar);
    // The artifact and its chunk index, nothing else.
    assert_eq!(std::fs::read_dir(dir.path().join("artifacts"))?.count(), 2);
    assert_eq!(leftovers(dir.path()), Vec::<String>::new());
    Ok(())
}

#[test]
fn names_must_be_digests() {
    let store = ArtifactStore::new(Path::new("/nonexistent"));
    assert!(matches!(
        store.path("../../etc/passwd"),
        Err(ArtifactError::BadDigest(_))
    ));
    assert!(matches!(
        store.open(&"0".repeat(64)),
        Err(ArtifactError::Missing(_))
    ));
}

fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A delta body as hostctl writes it: the chunks at `inline` carried.
fn delta(tar: &[u8], inline: &[u32]) -> Result<Vec<u8>, Box<dyn std::error::Error>> {
    let recipe = chunks::recipe_of(tar)?;
    let mut body = chunks::DELTA_MAGIC.to_vec();
    body.extend_from_slice(&u32::try_from(recipe.len())?.to_le_bytes());
    body.extend(chunks::encode(&recipe, |i| {
        inline.contains(&u32::try_from(i).unwrap_or(u32::MAX))
    }));
    let mut at = 0usize;
    for (i, c) in recipe.iter().enumerate() {
        if inline.contains(&u32::try_from(i)?) {
            body.extend_from_slice(&tar[at..at + c.len as usize]);
        }
        at += c.len as usize;
    }
    Ok(zstd::encode_all(&body[..], 3)?)
}

/// Names in the store other than artifacts and their indexes.
fn leftovers(store: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(store.join("artifacts"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".tar.zst") && !n.ends_with(".chunks"))
        .collect()
}

#[tokio::test]
async fn a_changed_build_is_sent_as_the_chunks_the_host_lacks()
-> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let store = ArtifactStore::new(dir.path());
    let v1 = noise(3 << 20, 11);
    let mut v2 = v1.clone();
    v2[1 << 20..(1 << 20) + 5].copy_from_slice(b"page2");
    let (d1, d2) = (digest_of(&v1), digest_of(&v2));
    store
        .receive(&d1, upload(&zstd::encode_all(&v1[..], 3)?))
        .await?;

    let recipe = chunks::recipe_of(&v2[..])?;
    let answer = store
        .lacking(&d2, &chunks::encode(&recipe, |_| false))
        .await?;
    assert!(
        !answer.lacking.is_empty() && answer.lacking.len() <= 2,
        "{answer:?}"
    );
    let body = delta(&v2, &answer.lacking)?;
    assert!(body.len() < v2.len() / 8, "{} bytes sent", body.len());
    store.receive_delta(&d2, upload(&body)).await?;
    let mut back = Vec::new();
    store.open(&d2)?.read_to_end(&mut back)?;
    assert_eq!(back, v2);
    assert_eq!(leftovers(dir.path()), Vec::<String>::new());
    // The rebuilt artifact is a base in turn: nothing is lacking for it.
    let again = store
        .lacking(&d2, &chunks::encode(&recipe, |_| false))
        .await?;
    assert_eq!(again.lacking, Vec::<u32>::new());
    Ok(())
}

#[tokio::test]
async fn a_lying_or_broken_delta_stores_nothing() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let store = ArtifactStore::new(dir.path());
    let v1 = noise(1 << 20, 5);
    store
        .receive(&digest_of(&v1), upload(&zstd::encode_all(&v1[..], 3)?))
        .await?;
    let v2 = noise(1 << 20, 9);
    let d2 = digest_of(&v2);
    let all: Vec<u32> = (0..u32::try_from(chunks::recipe_of(&v2[..])?.len())?).collect();

    // Chunks the host never had, not carried.
    let err = store.receive_delta(&d2, upload(&delta(&v2, &[])?)).await;
    assert!(
        matches!(err, Err(ArtifactError::ChunkGone { .. })),
        "{err:?}"
    );
    // A carried chunk that is not what its recipe says.
    let mut raw = zstd::decode_all(&delta(&v2, &all)?[..])?;
    let last = raw.len() - 1;
    raw[last] ^= 1;
    let err = store
        .receive_delta(&d2, upload(&zstd::encode_all(&raw[..], 3)?))
        .await;
    assert!(
        matches!(err, Err(ArtifactError::ChunkMismatch { .. })),
        "{err:?}"
    );
    // Bytes after the last chunk.
    raw[last] ^= 1;
    raw.extend_from_slice(b"more");
    let err = store
        .receive_delta(&d2, upload(&zstd::encode_all(&raw[..], 3)?))
        .await;
    assert!(matches!(err, Err(ArtifactError::DeltaFormat(_))), "{err:?}");
    // Whole and true, but of another artifact.
    let other = digest_of(b"another build");
    let err = store
        .receive_delta(&other, upload(&delta(&v2, &all)?))
        .await;
    assert!(
        matches!(err, Err(ArtifactError::DigestMismatch { .. })),
        "{err:?}"
    );
    // Not a delta at all.
    let err = store
        .receive_delta(&d2, upload(&zstd::encode_all(&v2[..], 3)?))
        .await;
    assert!(matches!(err, Err(ArtifactError::DeltaFormat(_))), "{err:?}");
    // An entry count beyond the bound.
    let mut huge = chunks::DELTA_MAGIC.to_vec();
    huge.extend_from_slice(&u32::MAX.to_le_bytes());
    let err = store
        .receive_delta(&d2, upload(&zstd::encode_all(&huge[..], 3)?))
        .await;
    assert!(matches!(err, Err(ArtifactError::Recipe(_))), "{err:?}");

    assert_eq!(store.size(&d2)?, None);
    assert_eq!(store.size(&other)?, None);
    assert_eq!(leftovers(dir.path()), Vec::<String>::new());
    store.receive_delta(&d2, upload(&delta(&v2, &all)?)).await?;
    assert!(store.size(&d2)?.is_some());
    Ok(())
}

#[tokio::test]
async fn an_artifact_stored_before_chunk_indexes_gets_one_when_asked()
-> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let store = ArtifactStore::new(dir.path());
    let v1 = noise(1 << 20, 21);
    let d1 = digest_of(&v1);
    store
        .receive(&d1, upload(&zstd::encode_all(&v1[..], 3)?))
        .await?;
    let index = dir.path().join("artifacts").join(format!("{d1}.chunks"));
    std::fs::remove_file(&index)?;
    let recipe = chunks::recipe_of(&v1[..])?;
    let answer = store
        .lacking(&digest_of(b"x"), &chunks::encode(&recipe, |_| false))
        .await?;
    assert_eq!(answer.lacking, Vec::<u32>::new());
    assert!(index.exists());
    // Pruning the artifact takes its index along.
    store.prune(&[], std::time::Duration::ZERO)?;
    assert!(!index.exists());
    Ok(())
}
