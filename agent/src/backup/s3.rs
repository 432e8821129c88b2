//! rustic_core's storage backend on an S3 bucket, below a key prefix, in
//! restic's layout (see [`super::layout`]).
//!
//! rustic_core is synchronous, so every call here blocks its thread on the
//! runtime with [`Handle::block_on`]. That is legal on threads the runtime
//! does not drive (`spawn_blocking`'s pool, rustic's own rayon and scoped
//! threads) and panics on a runtime worker: use the backend, and any
//! `Repository` built on it, only inside `tokio::task::spawn_blocking`.

use std::future::Future;
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;
use rustic_core::{BytesList, FileType, Id, ReadBackend, RusticResult, WriteBackend};
use tokio::runtime::Handle;

use super::layout::{BadLocation, Prefix};
use super::s3_client::CALL_TIMEOUT;
use super::s3_error::{S3Error, classify};

/// A GET whose body breaks off after the headers is not retried by the SDK
/// (its retries end when the response arrives), so `get` retries it.
const BODY_ATTEMPTS: u32 = 3;

/// A repository's objects in one bucket under one prefix.
#[derive(Debug, Clone)]
pub struct S3Backend {
    client: aws_sdk_s3::Client,
    handle: Handle,
    bucket: String,
    prefix: Prefix,
}

impl S3Backend {
    /// `handle` is the runtime the client was built on: its connection pool
    /// lives there, and that runtime's threads drive the I/O while the
    /// calling thread waits (on a current-thread runtime, only while its
    /// own thread is inside `Runtime::block_on`).
    pub fn new(
        client: aws_sdk_s3::Client,
        handle: Handle,
        bucket: &str,
        prefix: &str,
    ) -> Result<Self, BadLocation> {
        Ok(Self {
            prefix: Prefix::new(bucket, prefix)?,
            client,
            handle,
            bucket: bucket.to_owned(),
        })
    }

    /// `s3://bucket/prefix`, for messages.
    pub fn url(&self) -> String {
        format!(
            "s3://{}/{}",
            self.bucket,
            self.prefix.as_str().trim_end_matches('/')
        )
    }

    fn object(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket)
    }

    /// Whether any object at all exists under the prefix.
    pub fn holds_anything(&self) -> Result<bool, S3Error> {
        let prefix = self.prefix.as_str();
        self.block_on("ListObjectsV2", prefix, async {
            let req = self.client.list_objects_v2().bucket(&self.bucket);
            let out = req.prefix(prefix).max_keys(1).send().await;
            let out = out.map_err(|e| classify("ListObjectsV2", &self.object(prefix), e))?;
            Ok(!out.contents().is_empty())
        })
    }

    /// The size of `config`, or `None` when there is none.
    fn config_size(&self) -> Result<Option<u32>, S3Error> {
        let key = self.prefix.key(FileType::Config, &Id::default());
        self.block_on("HeadObject", &key, async {
            let req = self.client.head_object().bucket(&self.bucket).key(&key);
            let out = req.send().await;
            match out.map_err(|e| classify("HeadObject", &self.object(&key), e)) {
                Ok(out) => self
                    .size("HeadObject", &key, out.content_length())
                    .map(Some),
                Err(S3Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        })
    }

    fn size(&self, op: &'static str, key: &str, size: Option<i64>) -> Result<u32, S3Error> {
        size.and_then(|s| u32::try_from(s).ok())
            .ok_or_else(|| S3Error::BadResponse {
                op,
                object: self.object(key),
                what: format!("size {size:?} is not a pack size (0 to 4 GiB)"),
            })
    }

    fn list_dir(&self, tpe: FileType) -> Result<Vec<(Id, u32)>, S3Error> {
        let dir = self.prefix.dir(tpe);
        self.block_on("ListObjectsV2", &dir, self.list_pages(tpe, &dir))
    }

    async fn list_pages(&self, tpe: FileType, dir: &str) -> Result<Vec<(Id, u32)>, S3Error> {
        let op = "ListObjectsV2";
        let req = self.client.list_objects_v2().bucket(&self.bucket);
        let mut pages = req.prefix(dir).into_paginator().send();
        let mut found = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| classify(op, &self.object(dir), e))?;
            for o in page.contents() {
                let key = o.key().unwrap_or_default();
                let Some(id) = self.prefix.id_of(tpe, key) else {
                    tracing::debug!(object = %self.object(key), "not a repository file; ignored");
                    continue;
                };
                found.push((id, self.size(op, key, o.size())?));
            }
        }
        Ok(found)
    }

    /// The whole object, or `length` bytes from `offset`.
    fn get(&self, key: &str, range: Option<(u32, u32)>) -> Result<Bytes, S3Error> {
        self.block_on("GetObject", key, self.get_body(key, range))
    }

    async fn get_body(&self, key: &str, range: Option<(u32, u32)>) -> Result<Bytes, S3Error> {
        let (op, object) = ("GetObject", self.object(key));
        let mut attempt = 1;
        let body = loop {
            let mut req = self.client.get_object().bucket(&self.bucket).key(key);
            if let Some((offset, length)) = range {
                let last = (u64::from(offset) + u64::from(length)).saturating_sub(1);
                req = req.range(format!("bytes={offset}-{last}"));
            }
            let out = req.send().await.map_err(|e| classify(op, &object, e))?;
            match out.body.collect().await {
                Ok(body) => break body.into_bytes(),
                Err(e) if attempt < BODY_ATTEMPTS => {
                    tracing::warn!(%object, attempt, error = %e, "a body broke off; retrying");
                    tokio::time::sleep(Duration::from_secs(u64::from(attempt))).await;
                    attempt += 1;
                }
                Err(e) => {
                    let detail = hostd_api::error_chain(&e);
                    return Err(S3Error::Unreachable { op, object, detail });
                }
            }
        };
        // A server that ignores Range answers 200 with the whole object.
        match range {
            Some((_, length)) if body.len() != length as usize => Err(S3Error::BadResponse {
                op,
                object,
                what: format!("{} bytes for a range of {length}", body.len()),
            }),
            _ => Ok(body),
        }
    }

    /// Runs one call to completion on the runtime, bounded by CALL_TIMEOUT.
    fn block_on<T>(
        &self,
        op: &'static str,
        key: &str,
        call: impl Future<Output = Result<T, S3Error>>,
    ) -> Result<T, S3Error> {
        self.handle
            .block_on(async { tokio::time::timeout(CALL_TIMEOUT, call).await })
            .unwrap_or_else(|_| {
                Err(S3Error::Timeout {
                    op,
                    object: self.object(key),
                    secs: CALL_TIMEOUT.as_secs(),
                })
            })
    }
}

impl ReadBackend for S3Backend {
    fn location(&self) -> String {
        self.url()
    }

    /// `config` is one object, not a directory: rustic expects the default
    /// id for it when it exists.
    fn list_with_size(&self, tpe: FileType) -> RusticResult<Vec<(Id, u32)>> {
        let listed = match tpe {
            FileType::Config => self
                .config_size()
                .map(|size| size.map(|s| (Id::default(), s)).into_iter().collect()),
            _ => self.list_dir(tpe),
        };
        listed.map_err(S3Error::into_rustic)
    }

    fn read_full(&self, tpe: FileType, id: &Id) -> RusticResult<Bytes> {
        self.get(&self.prefix.key(tpe, id), None)
            .map_err(S3Error::into_rustic)
    }

    fn read_partial(
        &self,
        tpe: FileType,
        id: &Id,
        _cacheable: bool,
        offset: u32,
        length: u32,
    ) -> RusticResult<Bytes> {
        if length == 0 {
            return Ok(Bytes::new());
        }
        self.get(&self.prefix.key(tpe, id), Some((offset, length)))
            .map_err(S3Error::into_rustic)
    }

    fn warmup_path(&self, tpe: FileType, id: &Id) -> String {
        self.object(&self.prefix.key(tpe, id))
    }
}

impl WriteBackend for S3Backend {
    /// Nothing to create: S3 has no directories, and restic and rustic find
    /// objects by listing.
    fn create(&self) -> RusticResult<()> {
        Ok(())
    }

    /// One PutObject: packs are tens of MiB, far below the 5 GiB limit of a
    /// single PUT. The body is in memory, so the SDK can resend it on retry.
    fn write_bytes(
        &self,
        tpe: FileType,
        id: &Id,
        _cacheable: bool,
        content: BytesList,
    ) -> RusticResult<()> {
        let body: Bytes = match content.slice() {
            [one] => one.clone(),
            parts => parts.concat().into(),
        };
        let key = self.prefix.key(tpe, id);
        self.block_on("PutObject", &key, async {
            let req = self.client.put_object().bucket(&self.bucket).key(&key);
            let req = req.body(ByteStream::from(body));
            let sent = req.send().await;
            sent.map(drop)
                .map_err(|e| classify("PutObject", &self.object(&key), e))
        })
        .map_err(S3Error::into_rustic)
    }

    /// S3 answers a DELETE of a missing key with success, which is what
    /// rustic wants.
    fn remove(&self, tpe: FileType, id: &Id, _cacheable: bool) -> RusticResult<()> {
        let key = self.prefix.key(tpe, id);
        self.block_on("DeleteObject", &key, async {
            let req = self.client.delete_object().bucket(&self.bucket).key(&key);
            let sent = req.send().await;
            sent.map(drop)
                .map_err(|e| classify("DeleteObject", &self.object(&key), e))
        })
        .map_err(S3Error::into_rustic)
    }
}
