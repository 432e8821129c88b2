//! Where one instance answers its health check: a Unix socket of its own
//! (an app sharing a socket-activated listener), or its private port on
//! loopback (an app behind the front, listening on `$PORT`).

use std::fmt;
use std::path::PathBuf;

use tokio::io::{AsyncRead, AsyncWrite};

use crate::config::ServiceConfig;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum InstanceAddress {
    Unix(PathBuf),
    Loopback(u16),
}

pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

impl InstanceAddress {
    /// Where instance `n` of `svc` (None: the unit itself) answers its
    /// health check, if it has one of its own.
    pub fn of(svc: &ServiceConfig, n: Option<u32>) -> Option<Self> {
        if svc.port.is_some() {
            return Some(Self::Loopback(svc.instance_port(n?)?));
        }
        let template = svc.health_socket.as_deref()?;
        let socket = match n {
            Some(n) => template.replace("{instance}", &n.to_string()),
            None => template.to_owned(),
        };
        Some(Self::Unix(socket.into()))
    }

    pub async fn connect(&self) -> std::io::Result<Box<dyn Stream>> {
        Ok(match self {
            Self::Unix(path) => Box::new(tokio::net::UnixStream::connect(path).await?),
            Self::Loopback(port) => {
                let stream = tokio::net::TcpStream::connect(("127.0.0.1", *port)).await?;
                stream.set_nodelay(true)?;
                Box::new(stream)
            }
        })
    }
}

impl fmt::Display for InstanceAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unix(path) => write!(f, "{}", path.display()),
            Self::Loopback(port) => write!(f, "127.0.0.1:{port}"),
        }
    }
}
