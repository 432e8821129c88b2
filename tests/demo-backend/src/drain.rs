//! Lame-duck shutdown for the shared listening socket. axum's graceful
//! shutdown stops accepting and, at the same moment, closes every
//! connection that has no request in progress, including one accepted an
//! instant ago whose request bytes have not arrived yet: its client sees
//! the connection closed with no answer. So on SIGTERM this instance first
//! only stops accepting (the socket stays open in systemd and the other
//! instances, which take the new connections), serves what it already
//! accepted for [`LAME_DUCK`], and only then lets axum close idle
//! connections and finish the requests in flight.

use std::time::Duration;

use axum::serve::Listener;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Long enough for the first request on a just-accepted connection to
/// arrive (a client sends it right after connecting), short enough not to
/// slow a rolling restart down much: it is added to every instance's stop.
pub const LAME_DUCK: Duration = Duration::from_millis(300);

pub struct Draining {
    inner: TcpListener,
    stop: watch::Receiver<bool>,
}

impl Draining {
    pub fn new(inner: TcpListener, stop: watch::Receiver<bool>) -> Self {
        Self { inner, stop }
    }
}

impl Listener for Draining {
    type Io = TcpStream;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let stop = &mut self.stop;
        let stopping = async move {
            // The guard wait_for returns is not Send: dropped here.
            let _ = stop.wait_for(|stopping| *stopping).await.is_ok();
        };
        tokio::select! {
            conn = Listener::accept(&mut self.inner) => conn,
            // TcpListener::accept is cancel-safe: a connection is either
            // returned or left in the queue for another instance.
            () = stopping => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}
