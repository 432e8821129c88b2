//! `hostd dial-stdio`: joins stdin/stdout to the control socket, so hostctl
//! can speak HTTP to hostd through an ordinary `ssh host hostd dial-stdio`
//! (the same trick as `docker system dial-stdio`). SSH does authentication;
//! the socket's mode does authorisation.

use std::path::{Path, PathBuf};

use tokio::io::AsyncWriteExt;

#[derive(Debug, thiserror::Error)]
pub enum DialError {
    #[error(
        "permission denied on {path}: hostctl's SSH user must be root or in hostd's control group (see control.group in /etc/hostd/hostd.toml)"
    )]
    PermissionDenied { path: PathBuf },
    #[error(
        "hostd is not running: {path} does not exist or refuses connections (check `systemctl status hostd`)"
    )]
    NotRunning {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("relaying between stdio and {path} failed")]
    Relay {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub async fn dial_stdio(path: &Path) -> Result<(), DialError> {
    let sock = tokio::net::UnixStream::connect(path)
        .await
        .map_err(|source| match source.kind() {
            std::io::ErrorKind::PermissionDenied => DialError::PermissionDenied {
                path: path.to_owned(),
            },
            _ => DialError::NotRunning {
                path: path.to_owned(),
                source,
            },
        })?;
    let (mut from_hostd, mut to_hostd) = sock.into_split();
    // Requests may go on after stdin closes (the answer is still coming),
    // but once hostd closes its side there is nothing left to relay: end at
    // once, even though the client's stdin is still open, so its ssh sees
    // the session end when hostd dies mid-request.
    let upstream = async {
        tokio::io::copy(&mut tokio::io::stdin(), &mut to_hostd).await?;
        to_hostd.shutdown().await?;
        std::future::pending::<std::io::Result<()>>().await
    };
    let downstream = async {
        let mut stdout = tokio::io::stdout();
        tokio::io::copy(&mut from_hostd, &mut stdout).await?;
        stdout.flush().await
    };
    tokio::select! {
        r = upstream => r,
        r = downstream => r,
    }
    .map_err(|source| DialError::Relay {
        path: path.to_owned(),
        source,
    })
}
