//! Which chunks the host holds, and where: each stored artifact has a
//! sidecar `<sha256>.chunks` (its recipe, in the wire form), written before
//! the artifact gets its name. An artifact stored by an older hostd gets
//! its sidecar the first time a delta upload asks.

use std::collections::HashMap;
use std::path::Path;

use hostd_api::chunks::{self, Chunk};

use super::{ArtifactError, io};

/// A chunk inside a stored artifact's tar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    pub artifact: String,
    pub offset: u64,
}

pub fn sidecar(dir: &Path, digest: &str) -> std::path::PathBuf {
    dir.join(format!("{digest}.chunks"))
}

pub fn write(dir: &Path, digest: &str, recipe: &[Chunk]) -> Result<(), ArtifactError> {
    let path = sidecar(dir, digest);
    crate::fsutil::write_atomically(&path, &chunks::encode(recipe, |_| false), 0o600)
        .map_err(io("write", &path))
}

/// Every chunk of every stored artifact, the first place each is found.
pub fn held(dir: &Path) -> Result<HashMap<[u8; 32], Located>, ArtifactError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HashMap::new()),
        Err(e) => return Err(io("read", dir)(e)),
    };
    let mut held = HashMap::new();
    for entry in entries {
        let entry = entry.map_err(io("read", dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(digest) = name.strip_suffix(".tar.zst") else {
            continue;
        };
        if !hostd_api::deploy::is_digest(digest) {
            continue;
        }
        let mut offset = 0u64;
        for c in recipe(dir, digest)? {
            held.entry(c.id).or_insert_with(|| Located {
                artifact: digest.to_owned(),
                offset,
            });
            offset += u64::from(c.len);
        }
    }
    Ok(held)
}

/// The stored artifact's recipe, from its sidecar, or cut anew (and the
/// sidecar written) when it has none or an unreadable one.
fn recipe(dir: &Path, digest: &str) -> Result<Vec<Chunk>, ArtifactError> {
    let path = sidecar(dir, digest);
    if let Ok(bytes) = std::fs::read(&path)
        && let Ok(entries) = chunks::decode(&bytes)
    {
        return Ok(entries.into_iter().map(|(c, _)| c).collect());
    }
    let tar = dir.join(format!("{digest}.tar.zst"));
    let file = std::fs::File::open(&tar).map_err(io("open", &tar))?;
    let decoder = zstd::Decoder::new(file).map_err(io("read", &tar))?;
    let recipe = chunks::recipe_of(decoder).map_err(io("read", &tar))?;
    tracing::info!(digest, chunks = recipe.len(), "artifact's chunks indexed");
    write(dir, digest, &recipe)?;
    Ok(recipe)
}

/// Which entries of `recipe` the host would need sent: the first of each
/// chunk that `held` lacks.
pub fn lacking(recipe: &[Chunk], held: &HashMap<[u8; 32], Located>) -> Vec<u32> {
    let mut asked = std::collections::HashSet::new();
    recipe
        .iter()
        .enumerate()
        .filter(|(_, c)| !held.contains_key(&c.id) && asked.insert(c.id))
        .filter_map(|(i, _)| u32::try_from(i).ok())
        .collect()
}
