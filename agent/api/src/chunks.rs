//! Artifacts in content-defined chunks, so a release that differs from one
//! the host holds in a few files is sent as roughly those bytes.
//!
//! Both sides cut an artifact's normalised tar at the same places (FastCDC
//! 2020 with the sizes below) and name each chunk by its sha256. A *recipe*
//! is the list of a tar's chunks in order; on the wire each entry is 36
//! bytes: the digest, then the length as a little-endian u32 whose top bit
//! says, in a delta upload, that the chunk's bytes follow in the body.
//! hostd rebuilds the tar from the chunks it holds and those sent, and
//! stores it only if the whole has the artifact's digest.

use std::io::Read;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub const MIN_CHUNK: u32 = 16 * 1024;
pub const AVG_CHUNK: u32 = 64 * 1024;
pub const MAX_CHUNK: u32 = 256 * 1024;
/// Largest tar a recipe may describe.
pub const MAX_TAR_BYTES: u64 = 16 << 30;
/// Most entries a recipe may have: the largest tar in the smallest chunks.
pub const MAX_CHUNKS: usize = (MAX_TAR_BYTES / MIN_CHUNK as u64) as usize;
pub const ENTRY_BYTES: usize = 36;
/// In a delta upload, the length's top bit: the chunk's bytes follow.
const INLINE: u32 = 1 << 31;
/// First bytes of a delta upload's (uncompressed) body.
pub const DELTA_MAGIC: &[u8; 8] = b"hostdd1\n";

/// One chunk of a tar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Chunk {
    pub id: [u8; 32],
    pub len: u32,
}

/// `POST /v1/artifacts/{sha256}/lacking` answers which entries of the
/// recipe sent the host would need sent: the first of each chunk it holds
/// in no artifact, by position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunksLacking {
    pub lacking: Vec<u32>,
}

#[derive(Debug, thiserror::Error)]
pub enum RecipeError {
    #[error("a recipe is a whole number of {ENTRY_BYTES}-byte entries; {0} bytes is not")]
    Length(usize),
    #[error("a recipe has at most {MAX_CHUNKS} entries")]
    TooMany,
    #[error("entry {index}: a chunk is 1 to {MAX_CHUNK} bytes long, not {len}")]
    ChunkLength { index: usize, len: u32 },
    #[error("the recipe describes more than {} GiB", MAX_TAR_BYTES >> 30)]
    TooLarge,
}

/// Cuts `tar` into chunks, giving each with its bytes to `each`.
pub fn split(
    tar: impl Read,
    mut each: impl FnMut(Chunk, &[u8]) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let chunker = fastcdc::v2020::StreamCDC::new(
        tar,
        MIN_CHUNK as usize,
        AVG_CHUNK as usize,
        MAX_CHUNK as usize,
    );
    for chunk in chunker {
        let chunk = chunk.map_err(|e| match e {
            fastcdc::v2020::Error::IoError(e) => e,
            other => std::io::Error::other(other.to_string()),
        })?;
        let len = u32::try_from(chunk.length).map_err(std::io::Error::other)?;
        each(
            Chunk {
                id: Sha256::digest(&chunk.data).into(),
                len,
            },
            &chunk.data,
        )?;
    }
    Ok(())
}

/// The recipe of `tar`.
pub fn recipe_of(tar: impl Read) -> std::io::Result<Vec<Chunk>> {
    let mut recipe = Vec::new();
    split(tar, |c, _| {
        recipe.push(c);
        Ok(())
    })?;
    Ok(recipe)
}

/// Whether `data` is the chunk `c` names.
pub fn holds(c: &Chunk, data: &[u8]) -> bool {
    data.len() == c.len as usize && Sha256::digest(data)[..] == c.id[..]
}

/// The wire form of `recipe`; entries whose `inline` is true are marked as
/// followed by their bytes.
pub fn encode(recipe: &[Chunk], inline: impl Fn(usize) -> bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(recipe.len() * ENTRY_BYTES);
    for (i, c) in recipe.iter().enumerate() {
        out.extend_from_slice(&c.id);
        let flag = if inline(i) { INLINE } else { 0 };
        out.extend_from_slice(&(c.len | flag).to_le_bytes());
    }
    out
}

/// Reads a recipe, checking every bound; each entry with whether its bytes
/// follow.
pub fn decode(bytes: &[u8]) -> Result<Vec<(Chunk, bool)>, RecipeError> {
    if !bytes.len().is_multiple_of(ENTRY_BYTES) {
        return Err(RecipeError::Length(bytes.len()));
    }
    if bytes.len() / ENTRY_BYTES > MAX_CHUNKS {
        return Err(RecipeError::TooMany);
    }
    let mut total = 0u64;
    bytes
        .chunks_exact(ENTRY_BYTES)
        .enumerate()
        .map(|(index, e)| {
            let mut id = [0u8; 32];
            id.copy_from_slice(&e[..32]);
            let mut word = [0u8; 4];
            word.copy_from_slice(&e[32..]);
            let word = u32::from_le_bytes(word);
            let len = word & !INLINE;
            if len == 0 || len > MAX_CHUNK {
                return Err(RecipeError::ChunkLength { index, len });
            }
            total += u64::from(len);
            if total > MAX_TAR_BYTES {
                return Err(RecipeError::TooLarge);
            }
            Ok((Chunk { id, len }, word & INLINE != 0))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn an_edit_in_the_middle_changes_only_the_chunks_around_it() -> std::io::Result<()> {
        let a = noise(4 << 20, 7);
        let mut b = a.clone();
        b.splice(2 << 20..2 << 20, *b"a few bytes more");
        let (ra, rb) = (recipe_of(&a[..])?, recipe_of(&b[..])?);
        let total: u64 = rb.iter().map(|c| u64::from(c.len)).sum();
        assert_eq!(total, b.len() as u64);
        assert!(rb.iter().all(|c| c.len <= MAX_CHUNK));
        let new: Vec<_> = rb.iter().filter(|c| !ra.contains(c)).collect();
        assert!(
            !new.is_empty() && new.len() <= 3,
            "{} new chunks",
            new.len()
        );
        Ok(())
    }

    #[test]
    fn a_recipe_reads_back_with_its_inline_marks() -> Result<(), Box<dyn std::error::Error>> {
        let recipe = recipe_of(&noise(1 << 20, 3)[..])?;
        let wire = encode(&recipe, |i| i % 2 == 1);
        let back = decode(&wire)?;
        assert_eq!(back.len(), recipe.len());
        for (i, ((c, inline), orig)) in back.iter().zip(&recipe).enumerate() {
            assert_eq!(c, orig);
            assert_eq!(*inline, i % 2 == 1);
        }
        Ok(())
    }

    #[test]
    fn hostile_recipes_are_refused() {
        assert!(matches!(decode(&[0u8; 35]), Err(RecipeError::Length(35))));
        let mut zero = vec![0u8; ENTRY_BYTES];
        assert!(matches!(
            decode(&zero),
            Err(RecipeError::ChunkLength { index: 0, len: 0 })
        ));
        zero[32..].copy_from_slice(&(MAX_CHUNK + 1).to_le_bytes());
        assert!(matches!(
            decode(&zero),
            Err(RecipeError::ChunkLength { .. })
        ));
    }
}
