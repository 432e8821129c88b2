//! Shipping a packed artifact to a host: content-addressed, so a host
//! that holds it already is not sent it again.

use std::path::Path;

use hostd_api::{API_PREFIX, ArtifactInfo};
use http_body_util::BodyExt;
use hyper::body::Bytes;
use indicatif::ProgressBar;
use tokio::io::AsyncReadExt;

use crate::transport::{HostClient, TransportError};

/// Upload chunk: large enough for throughput, small enough for a smooth bar.
const CHUNK: usize = 256 * 1024;

/// The artifact as hostctl ships it.
#[derive(Debug, Clone)]
pub struct Upload<'a> {
    pub digest: &'a str,
    pub file: &'a Path,
    pub bytes: u64,
}

/// Uploads the artifact unless the host has it. Returns the bytes sent.
/// `new_bar` gives the bar that counts the bytes as they go, only once
/// there is something to send.
pub async fn ensure_artifact(
    client: &mut HostClient,
    upload: &Upload<'_>,
    new_bar: impl FnOnce() -> ProgressBar,
) -> Result<Option<u64>, TransportError> {
    let path = format!("{API_PREFIX}/artifacts/{}", upload.digest);
    match client.get_json::<ArtifactInfo>(&path).await {
        Ok(_) => return Ok(None),
        Err(TransportError::Api { status: 404, .. }) => {}
        Err(e) => return Err(e),
    }
    let bar = new_bar();
    let (mut tx, body) = http_body_util::channel::Channel::<Bytes, std::io::Error>::new(4);
    let file = upload.file.to_owned();
    let reader_bar = bar.clone();
    // Fed as the connection takes it: the artifact is never all in memory.
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
        .upload(&path, body.boxed_unsync(), "application/zstd")
        .await;
    feeder.abort();
    bar.finish_and_clear();
    sent.map(|_| Some(upload.bytes))
}
