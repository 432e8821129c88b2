//! Opening the repository, or creating it where there is nothing yet.
//!
//! Creating is only ever done on an empty prefix: anything else there (a
//! repository written with another password, a half-deleted one, someone
//! else's files) must stop the backup with an error a person can act on,
//! never be initialised over.

use std::sync::Arc;

use rustic_core::{
    ConfigOptions, Credentials, FileType, KeyOptions, OpenStatus, Repository, RepositoryBackends,
    RepositoryOptions, RusticError, WriteBackend,
};

use super::s3::S3Backend;
use super::s3_error::S3Error;

/// An open repository on any backend.
pub type OpenRepo = Repository<OpenStatus>;

/// Messages name the repository by its location, never by anything secret:
/// no variant is built from the password.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error("the repository password is empty; restic refuses empty passwords")]
    EmptyPassword,
    #[error("the repository at {location} does not open with the configured password")]
    WrongPassword { location: String },
    #[error(
        "{location} holds objects but no restic repository (no `config` object); refusing to initialise over them"
    )]
    NotARepository { location: String },
    #[error(
        "{location} has a repository `config` but no keys: it is damaged or was not written by restic"
    )]
    NoKeys { location: String },
    #[error("cannot use the storage of the repository at {location}")]
    Storage {
        location: String,
        #[source]
        source: S3Error,
    },
    /// Anything else rustic_core reports (a config it cannot read, an
    /// unsupported repository version...), in its own words.
    #[error("cannot {action} the repository at {location}: {detail}")]
    Repository {
        location: String,
        action: &'static str,
        detail: String,
    },
}

/// What `open_or_init` needs of storage beyond rustic's backend traits.
pub trait Storage: WriteBackend + Clone {
    /// Whether any object at all is below the repository's prefix.
    fn holds_anything(&self) -> Result<bool, S3Error>;
}

impl Storage for S3Backend {
    fn holds_anything(&self) -> Result<bool, S3Error> {
        S3Backend::holds_anything(self)
    }
}

/// Opens the repository on `storage` with `password`, creating it (format
/// version 2, zstd) when the prefix is empty. Synchronous and slow (key
/// derivation, network): call it from `spawn_blocking`.
///
/// `options` choose the local cache: its default is the user's cache
/// directory, which a service may not have; `no_cache` or an explicit
/// `cache_dir` (say systemd's `CacheDirectory=`) avoid guessing.
pub fn open_or_init<S: Storage>(
    storage: S,
    password: &str,
    options: &RepositoryOptions,
) -> Result<OpenRepo, RepoError> {
    if password.is_empty() {
        return Err(RepoError::EmptyPassword);
    }
    let location = storage.location();
    let fail = |action| {
        let location = location.clone();
        move |e: Box<RusticError>| from_rustic(location, action, password, &e)
    };
    let has_config = !storage
        .list(FileType::Config)
        .map_err(fail("read"))?
        .is_empty();
    let backends = RepositoryBackends::new(Arc::new(storage.clone()), None);
    let repo = Repository::new(options, &backends).map_err(fail("prepare"))?;
    let credentials = Credentials::password(password);
    if has_config {
        // Without keys rustic would report a wrong password, which would
        // send someone hunting for the right one.
        if storage
            .list(FileType::Key)
            .map_err(fail("read"))?
            .is_empty()
        {
            return Err(RepoError::NoKeys { location });
        }
        return repo.open(&credentials).map_err(fail("open"));
    }
    let stray = storage
        .holds_anything()
        .map_err(|source| RepoError::Storage {
            location: location.clone(),
            source,
        })?;
    if stray {
        return Err(RepoError::NotARepository { location });
    }
    tracing::info!(%location, "no repository yet; initialising one");
    repo.init(
        &credentials,
        &KeyOptions::default(),
        &ConfigOptions::default(),
    )
    .map_err(fail("initialise"))
}

fn from_rustic(
    location: String,
    action: &'static str,
    password: &str,
    e: &RusticError,
) -> RepoError {
    if e.is_incorrect_password() {
        return RepoError::WrongPassword { location };
    }
    let storage = std::error::Error::source(e).and_then(|s| s.downcast_ref::<S3Error>());
    if let Some(source) = storage {
        return RepoError::Storage {
            location,
            source: source.clone(),
        };
    }
    // rustic_core does not put passwords in its messages; this makes sure
    // a future version cannot leak one into ours either.
    let detail = e.display_log().replace(password, "[password]");
    RepoError::Repository {
        location,
        action,
        detail,
    }
}

#[cfg(test)]
#[path = "repo_tests.rs"]
mod tests;
