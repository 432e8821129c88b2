//! A delta upload made whole: the tar rebuilt from the chunks it carries
//! and those of the artifacts the host holds, stored like a full upload.
//!
//! The body (zstd) is the magic, the entry count (u32 LE), the recipe, then
//! the bytes of the entries marked inline, in order. Every chunk is checked
//! against its id as it is read, and the whole against the artifact's
//! digest, so neither the body nor a stale index can store a lie. The
//! chunks are gathered in a private scratch file first: the new tar wants
//! them in its order, the stored artifacts can only be read front to back.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use hostd_api::chunks::{self, Chunk, DELTA_MAGIC, ENTRY_BYTES, MAX_CHUNKS};
use sha2::Digest;

use super::chunk_index::{self, Located};
use super::{ArtifactError, ZSTD_LEVEL, hex, io};

/// Rebuilds the artifact `digest` from the delta body in `delta` into
/// `out` (zstd, 0600). Returns the recipe, the new artifact's index.
pub fn assemble(
    dir: &Path,
    digest: &str,
    delta: &Path,
    out: &Path,
) -> Result<Vec<Chunk>, ArtifactError> {
    let file = File::open(delta).map_err(io("open", delta))?;
    let mut body =
        std::io::BufReader::new(zstd::Decoder::new(file).map_err(ArtifactError::NotZstd)?);
    let entries = read_recipe(&mut body)?;
    let held = chunk_index::held(dir)?;
    let mut scratch = Scratch::create(dir, digest)?;
    let wanted = take_inline(&mut body, &entries, &held, &mut scratch)?;
    for (artifact, list) in wanted {
        copy_held(dir, &artifact, list, &mut scratch)?;
    }
    let recipe: Vec<Chunk> = entries.into_iter().map(|(c, _)| c).collect();
    write_tar(&recipe, &scratch, out, digest)?;
    Ok(recipe)
}

fn format(why: impl Into<String>) -> ArtifactError {
    ArtifactError::DeltaFormat(why.into())
}

fn read_recipe(body: &mut impl Read) -> Result<Vec<(Chunk, bool)>, ArtifactError> {
    let mut head = [0u8; 12];
    body.read_exact(&mut head)
        .map_err(|_| format("it ends before its header"))?;
    if &head[..8] != DELTA_MAGIC {
        return Err(format("it does not start with hostd's delta header"));
    }
    let count = u32::from_le_bytes([head[8], head[9], head[10], head[11]]) as usize;
    if count > MAX_CHUNKS {
        return Err(chunks::RecipeError::TooMany.into());
    }
    let mut recipe = vec![0u8; count * ENTRY_BYTES];
    body.read_exact(&mut recipe)
        .map_err(|_| format(format!("it ends inside its recipe of {count} chunks")))?;
    Ok(chunks::decode(&recipe)?)
}

/// Stores the inline chunks in the scratch file and says which chunks are
/// to come from which stored artifact.
fn take_inline(
    body: &mut impl Read,
    entries: &[(Chunk, bool)],
    held: &HashMap<[u8; 32], Located>,
    scratch: &mut Scratch,
) -> Result<HashMap<String, Vec<(u64, Chunk)>>, ArtifactError> {
    let mut wanted: HashMap<String, Vec<(u64, Chunk)>> = HashMap::new();
    let mut asked = std::collections::HashSet::new();
    let mut buf = Vec::new();
    for (index, (c, inline)) in entries.iter().enumerate() {
        if *inline {
            buf.resize(c.len as usize, 0);
            body.read_exact(&mut buf)
                .map_err(|_| format(format!("it ends inside chunk {index}")))?;
            if !chunks::holds(c, &buf) {
                return Err(ArtifactError::ChunkMismatch { index });
            }
            scratch.put(c, &buf)?;
        } else if !scratch.has(&c.id) && asked.insert(c.id) {
            let Some(at) = held.get(&c.id) else {
                return Err(ArtifactError::ChunkGone { id: hex(&c.id) });
            };
            wanted
                .entry(at.artifact.clone())
                .or_default()
                .push((at.offset, *c));
        }
    }
    if body.read(&mut [0u8; 1]).map_err(ArtifactError::NotZstd)? != 0 {
        return Err(format("bytes follow its last chunk"));
    }
    Ok(wanted)
}

/// Reads the chunks `list` names out of the stored artifact, front to back.
fn copy_held(
    dir: &Path,
    artifact: &str,
    mut list: Vec<(u64, Chunk)>,
    scratch: &mut Scratch,
) -> Result<(), ArtifactError> {
    let path = dir.join(format!("{artifact}.tar.zst"));
    let file = File::open(&path).map_err(io("open", &path))?;
    let mut tar = zstd::Decoder::new(file).map_err(io("read", &path))?;
    list.sort_by_key(|(offset, _)| *offset);
    let (mut at, mut buf) = (0u64, Vec::new());
    for (offset, c) in list {
        let skip = offset
            .checked_sub(at)
            .ok_or_else(|| format("the host's chunk index overlaps itself"))?;
        std::io::copy(&mut (&mut tar).take(skip), &mut std::io::sink())
            .map_err(io("read", &path))?;
        buf.resize(c.len as usize, 0);
        // A short or different chunk: the index no longer tells the truth.
        if tar.read_exact(&mut buf).is_err() || !chunks::holds(&c, &buf) {
            return Err(ArtifactError::ChunkGone { id: hex(&c.id) });
        }
        scratch.put(&c, &buf)?;
        at = offset + u64::from(c.len);
    }
    Ok(())
}

fn write_tar(
    recipe: &[Chunk],
    scratch: &Scratch,
    out: &Path,
    digest: &str,
) -> Result<(), ArtifactError> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .map_err(io("create", out))?;
    let mut encoder = zstd::Encoder::new(file, ZSTD_LEVEL).map_err(io("write", out))?;
    encoder.include_checksum(true).map_err(io("write", out))?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = Vec::new();
    for c in recipe {
        scratch.get(c, &mut buf)?;
        hasher.update(&buf);
        encoder.write_all(&buf).map_err(io("write", out))?;
    }
    let file = encoder.finish().map_err(io("write", out))?;
    file.sync_all().map_err(io("sync", out))?;
    let actual = hex(&hasher.finalize());
    if actual != digest {
        return Err(ArtifactError::DigestMismatch {
            expected: digest.to_owned(),
            actual,
        });
    }
    Ok(())
}

/// Each chunk once, in a root-only file removed on drop.
struct Scratch {
    path: PathBuf,
    file: File,
    at: HashMap<[u8; 32], u64>,
    len: u64,
}

impl Scratch {
    fn create(dir: &Path, digest: &str) -> Result<Self, ArtifactError> {
        use std::os::unix::fs::OpenOptionsExt;
        let path = dir.join(format!(
            ".{digest}.{:016x}.chunks.partial",
            crate::random_u64()
        ));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(io("create", &path))?;
        Ok(Self {
            path,
            file,
            at: HashMap::new(),
            len: 0,
        })
    }

    fn has(&self, id: &[u8; 32]) -> bool {
        self.at.contains_key(id)
    }

    fn put(&mut self, c: &Chunk, data: &[u8]) -> Result<(), ArtifactError> {
        if self.has(&c.id) {
            return Ok(());
        }
        self.file
            .write_all_at(data, self.len)
            .map_err(io("write", &self.path))?;
        self.at.insert(c.id, self.len);
        self.len += data.len() as u64;
        Ok(())
    }

    fn get(&self, c: &Chunk, buf: &mut Vec<u8>) -> Result<(), ArtifactError> {
        let at = *self
            .at
            .get(&c.id)
            .ok_or_else(|| ArtifactError::ChunkGone { id: hex(&c.id) })?;
        buf.resize(c.len as usize, 0);
        self.file
            .read_exact_at(buf, at)
            .map_err(io("read", &self.path))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
