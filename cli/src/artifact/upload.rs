//! Shipping a packed artifact to a host: content-addressed, so a host
//! that holds it already is not sent it again, and one that holds most of
//! it (an earlier build) is sent only the chunks it lacks.

use std::path::Path;
use std::sync::Arc;

use hostd_api::chunks::{Chunk, ChunksLacking};
use hostd_api::{API_PREFIX, ArtifactInfo};
use http_body_util::BodyExt;
use hyper::body::Bytes;
use indicatif::ProgressBar;
use tokio::io::AsyncReadExt;
use tokio::sync::OnceCell;

use super::delta;
use crate::transport::{HostClient, TransportError};

/// Upload chunk: large enough for throughput, small enough for a smooth bar.
const CHUNK: usize = 256 * 1024;
/// Below this, a whole upload costs less than asking what the host lacks.
const DELTA_FROM_BYTES: u64 = 1 << 20;

/// The artifact as hostctl ships it (shared by the hosts of a rollout).
#[derive(Debug)]
pub struct Upload<'a> {
    pub digest: &'a str,
    pub file: &'a Path,
    pub bytes: u64,
    /// Cut once, when the first host lacks the artifact.
    recipe: OnceCell<Option<Arc<Vec<Chunk>>>>,
}

impl<'a> Upload<'a> {
    pub fn new(digest: &'a str, file: &'a Path, bytes: u64) -> Self {
        Self {
            digest,
            file,
            bytes,
            recipe: OnceCell::new(),
        }
    }

    /// The artifact's chunks; none if they cannot be read (a whole upload
    /// then still works).
    async fn recipe(&self) -> Option<Arc<Vec<Chunk>>> {
        let file = self.file.to_owned();
        self.recipe
            .get_or_init(|| async move {
                let cut = tokio::task::spawn_blocking(move || delta::recipe_of(&file)).await;
                match cut {
                    Ok(Ok(r)) => Some(Arc::new(r)),
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "cannot cut the artifact into chunks; sending it whole");
                        None
                    }
                    Err(_) => None,
                }
            })
            .await
            .clone()
    }
}

/// Uploads the artifact unless the host has it. Returns the bytes sent.
/// `new_bar` gives the bar that counts the bytes as they go, only once
/// there is something to send (the argument: how many).
pub async fn ensure_artifact(
    client: &mut HostClient,
    upload: &Upload<'_>,
    new_bar: impl FnOnce(u64) -> ProgressBar,
) -> Result<Option<u64>, TransportError> {
    let path = format!("{API_PREFIX}/artifacts/{}", upload.digest);
    match client.get_json::<ArtifactInfo>(&path).await {
        Ok(_) => return Ok(None),
        Err(TransportError::Api { status: 404, .. }) => {}
        Err(e) => return Err(e),
    }
    let mut new_bar = Some(new_bar);
    if upload.bytes >= DELTA_FROM_BYTES
        && let Some(sent) = send_delta(client, upload, &mut new_bar).await?
    {
        return Ok(Some(sent));
    }
    let bar = new_bar.map_or_else(ProgressBar::hidden, |f| f(upload.bytes));
    put_file(client, &path, upload.file, &bar).await?;
    Ok(Some(upload.bytes))
}

/// Sends the chunks the host lacks, if that is worth it and the host can
/// take them. None: send the whole artifact instead (an older hostd, a
/// host holding little of it, or a base pruned in the meantime).
async fn send_delta(
    client: &mut HostClient,
    upload: &Upload<'_>,
    new_bar: &mut Option<impl FnOnce(u64) -> ProgressBar>,
) -> Result<Option<u64>, TransportError> {
    let Some(recipe) = upload.recipe().await else {
        return Ok(None);
    };
    let base = format!("{API_PREFIX}/artifacts/{}", upload.digest);
    let wire = Bytes::from(hostd_api::chunks::encode(&recipe, |_| false));
    let answer: ChunksLacking = match client.post_octets(&format!("{base}/lacking"), wire).await {
        Ok(a) => a,
        Err(TransportError::Api {
            status: 404 | 405, ..
        }) => return Ok(None),
        Err(e) => return Err(e),
    };
    let tar_bytes: u64 = recipe.iter().map(|c| u64::from(c.len)).sum();
    let lacking = delta::lacking_bytes(&recipe, &answer.lacking);
    if lacking > tar_bytes / 2 {
        return Ok(None);
    }
    let (file, r) = (upload.file.to_owned(), recipe.clone());
    let body = tokio::task::spawn_blocking(move || delta::write_delta(&file, &r, &answer.lacking))
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))
        .and_then(|made| made);
    let body = match body {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(error = %e, "cannot write the delta upload; sending the artifact whole");
            return Ok(None);
        }
    };
    let sent = body.as_file().metadata().map(|m| m.len()).unwrap_or(0);
    let bar = new_bar.take().map_or_else(ProgressBar::hidden, |f| f(sent));
    match put_file(client, &format!("{base}/delta"), body.path(), &bar).await {
        Ok(()) => {
            tracing::info!(
                host = client.host(),
                sent,
                reused = tar_bytes - lacking,
                "artifact sent as the chunks the host lacked"
            );
            Ok(Some(sent))
        }
        Err(TransportError::Api {
            status: 404 | 405 | 409 | 422,
            message,
            ..
        }) => {
            tracing::warn!(
                message,
                "hostd refused the delta upload; sending the artifact whole"
            );
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// `PUT path` with the file as the body, fed as the connection takes it:
/// the file is never all in memory.
async fn put_file(
    client: &mut HostClient,
    path: &str,
    file: &Path,
    bar: &ProgressBar,
) -> Result<(), TransportError> {
    let (mut tx, body) = http_body_util::channel::Channel::<Bytes, std::io::Error>::new(4);
    let file = file.to_owned();
    let reader_bar = bar.clone();
    let feeder = tokio::spawn(async move {
        let mut f = match tokio::fs::File::open(&file).await {
            Ok(f) => f,
            Err(e) => return tx.abort(e),
        };
        loop {
            let mut buf = vec![0u8; CHUNK];
            match f.read(&mut buf).await {
                Ok(0) => return,
                Ok(n) => {
                    buf.truncate(n);
                    if tx.send_data(Bytes::from(buf)).await.is_err() {
                        return;
                    }
                    reader_bar.inc(n as u64);
                }
                Err(e) => return tx.abort(e),
            }
        }
    });
    let sent = client
        .upload(path, body.boxed_unsync(), "application/zstd")
        .await;
    feeder.abort();
    bar.finish_and_clear();
    sent.map(|_| ())
}
