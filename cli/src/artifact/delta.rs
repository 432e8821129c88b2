//! A build sent as the chunks the host lacks: the packed tar is cut into
//! content-defined chunks (the rules in `hostd_api::chunks`), the host
//! says which it holds in no artifact, and the body carries the recipe and
//! only those chunks' bytes. hostd rebuilds the tar and checks its digest.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::Path;

use hostd_api::chunks::{self, Chunk, DELTA_MAGIC};

/// The chunks of the packed (zstd) tar at `packed`.
pub fn recipe_of(packed: &Path) -> io::Result<Vec<Chunk>> {
    let tar = zstd::Decoder::with_buffer(BufReader::new(File::open(packed)?))?;
    chunks::recipe_of(tar)
}

/// Tar bytes the entries at `lacking` stand for.
pub fn lacking_bytes(recipe: &[Chunk], lacking: &[u32]) -> u64 {
    lacking
        .iter()
        .filter_map(|&i| recipe.get(i as usize))
        .map(|c| u64::from(c.len))
        .sum()
}

/// The delta body carrying the entries at `lacking`, in a temp file
/// (compressed, removed on drop).
pub fn write_delta(
    packed: &Path,
    recipe: &[Chunk],
    lacking: &[u32],
) -> io::Result<tempfile::NamedTempFile> {
    let inline: HashSet<usize> = lacking.iter().map(|&i| i as usize).collect();
    if let Some(bad) = inline.iter().find(|&&i| i >= recipe.len()) {
        return Err(io::Error::other(format!(
            "hostd asked for chunk {bad} of a recipe of {}",
            recipe.len()
        )));
    }
    let count = u32::try_from(recipe.len()).map_err(io::Error::other)?;
    let out = tempfile::Builder::new()
        .prefix("hostctl-delta-")
        .suffix(".zst")
        .tempfile()?;
    let mut encoder = zstd::Encoder::new(out.as_file(), super::ZSTD_LEVEL)?;
    encoder.include_checksum(true)?;
    encoder.write_all(DELTA_MAGIC)?;
    encoder.write_all(&count.to_le_bytes())?;
    encoder.write_all(&chunks::encode(recipe, |i| inline.contains(&i)))?;
    // The recipe already says where each chunk starts: the tar is read
    // once more by those lengths, not cut again.
    let mut tar = zstd::Decoder::with_buffer(BufReader::new(File::open(packed)?))?;
    let mut data = Vec::new();
    for (index, c) in recipe.iter().enumerate() {
        if !inline.contains(&index) {
            let skipped = io::copy(&mut (&mut tar).take(u64::from(c.len)), &mut io::sink())?;
            if skipped != u64::from(c.len) {
                return Err(changed());
            }
            continue;
        }
        data.resize(c.len as usize, 0);
        tar.read_exact(&mut data)?;
        if !chunks::holds(c, &data) {
            return Err(changed());
        }
        encoder.write_all(&data)?;
    }
    if tar.read(&mut [0u8; 1])? != 0 {
        return Err(changed());
    }
    encoder.finish()?;
    Ok(out)
}

fn changed() -> io::Error {
    io::Error::other("the packed artifact changed while it was being sent")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delta_carries_the_recipe_and_only_the_lacking_chunks()
    -> Result<(), Box<dyn std::error::Error>> {
        let tar: Vec<u8> = (0..2_000_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let mut packed = tempfile::NamedTempFile::new()?;
        packed.write_all(&zstd::encode_all(&tar[..], 3)?)?;
        let recipe = recipe_of(packed.path())?;
        assert!(recipe.len() > 4);
        let lacking = [1u32, 3];
        let body = zstd::decode_all(File::open(
            write_delta(packed.path(), &recipe, &lacking)?.path(),
        )?)?;
        let head = 12 + recipe.len() * chunks::ENTRY_BYTES;
        assert_eq!(&body[..8], DELTA_MAGIC);
        let entries = chunks::decode(&body[12..head])?;
        let marked: Vec<usize> = (0..entries.len()).filter(|&i| entries[i].1).collect();
        assert_eq!(marked, vec![1, 3]);
        assert_eq!(
            body.len() as u64 - head as u64,
            lacking_bytes(&recipe, &lacking)
        );
        let start = recipe[0].len as usize;
        assert_eq!(
            &body[head..head + recipe[1].len as usize],
            &tar[start..start + recipe[1].len as usize]
        );
        assert!(write_delta(packed.path(), &recipe, &[u32::MAX]).is_err());
        // A recipe the packed file no longer matches is not sent.
        let mut stale = recipe.clone();
        stale[1].id[0] ^= 1;
        assert!(write_delta(packed.path(), &stale, &lacking).is_err());
        stale.pop();
        assert!(write_delta(packed.path(), &stale, &lacking).is_err());
        Ok(())
    }
}
