//! The keep-alive side of [`crate::load`]: each worker keeps one HTTP/1.1
//! connection and sends its requests on it, one after another, as a
//! browser or an HTTP client library does. A kept connection the server
//! closed while idle is what every such client meets and retries on a new
//! one once (only when nothing of an answer came back); any other failure
//! counts. Bodies come with a Content-Length or chunked.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};

use crate::load::{Head, REQUEST_TIMEOUT};

/// A worker's connection, kept between requests.
#[derive(Default)]
pub struct Kept(Option<TcpStream>);

impl Kept {
    /// `GET path` on the kept connection (a new one when there is none):
    /// the trimmed body of a 200, else an error.
    pub fn get(&mut self, addr: SocketAddr, path: &str) -> Result<String> {
        let reused = self.0.is_some();
        match self.exchange(addr, path) {
            Ok(body) => Ok(body),
            Err(Failure::Nothing(e)) if reused => {
                self.0 = None;
                self.exchange(addr, path)
                    .map_err(Failure::into_inner)
                    .context("again on a new connection after the kept one closed")
                    .map_err(|retry| retry.context(format!("{e:#}")))
            }
            Err(f) => {
                self.0 = None;
                Err(f.into_inner())
            }
        }
    }

    fn exchange(&mut self, addr: SocketAddr, path: &str) -> Result<String, Failure> {
        let deadline = Instant::now() + REQUEST_TIMEOUT;
        if self.0.is_none() {
            let s = TcpStream::connect_timeout(&addr, REQUEST_TIMEOUT)
                .context("connect")
                .map_err(Failure::Nothing)?;
            self.0 = Some(s);
        }
        let Some(s) = self.0.as_mut() else {
            return Err(Failure::Nothing(anyhow::anyhow!("no connection")));
        };
        s.set_write_timeout(Some(REQUEST_TIMEOUT))
            .map_err(|e| Failure::Nothing(e.into()))?;
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
            .context("send the request")
            .map_err(Failure::Nothing)?;
        let (status, body, close) = read_response(s, deadline)?;
        if close {
            self.0 = None;
        }
        let body = String::from_utf8_lossy(&body).trim().to_owned();
        if status != 200 {
            let short: String = body.chars().take(200).collect();
            return Err(Failure::Answer(anyhow::anyhow!("status {status}: {short}")));
        }
        Ok(body)
    }
}

enum Failure {
    /// Not one byte of an answer: the server never took the request.
    Nothing(anyhow::Error),
    /// Part of an answer, or a bad one.
    Answer(anyhow::Error),
}

impl Failure {
    fn into_inner(self) -> anyhow::Error {
        match self {
            Self::Nothing(e) | Self::Answer(e) => e,
        }
    }
}

/// One response with a Content-Length body: (status, body, whether the
/// server closes the connection after it).
fn read_response(s: &mut TcpStream, deadline: Instant) -> Result<(u16, Vec<u8>, bool), Failure> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    let mut read = |s: &mut TcpStream, raw: &mut Vec<u8>| -> Result<usize> {
        let left = deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .context("timed out")?;
        s.set_read_timeout(Some(left))?;
        let n = s.read(&mut buf).context("read the response")?;
        raw.extend_from_slice(&buf[..n]);
        Ok(n)
    };
    let end = loop {
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        match read(s, &mut raw) {
            Ok(0) if raw.is_empty() => {
                return Err(Failure::Nothing(anyhow::anyhow!("connection closed")));
            }
            Ok(0) => {
                return Err(Failure::Answer(anyhow::anyhow!(
                    "connection closed mid-answer"
                )));
            }
            Ok(_) => {}
            Err(e) if raw.is_empty() => return Err(Failure::Nothing(e)),
            Err(e) => return Err(Failure::Answer(e)),
        }
    };
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let parsed = parse_head(&head).map_err(Failure::Answer)?;
    let mut body = raw[end + 4..].to_vec();
    if parsed.chunked {
        // To the last chunk (no trailers: none of the trials' apps sends any).
        while !body.ends_with(b"0\r\n\r\n") {
            ensure_small(body.len()).map_err(Failure::Answer)?;
            let mut more = Vec::new();
            match read(s, &mut more) {
                Ok(0) => return Err(Failure::Answer(anyhow::anyhow!("chunked body cut short"))),
                Ok(_) => body.extend_from_slice(&more),
                Err(e) => return Err(Failure::Answer(e)),
            }
        }
        let body = crate::load::dechunk(&body).map_err(Failure::Answer)?;
        return Ok((parsed.status, body, parsed.close));
    }
    let length = parsed.length.unwrap_or(0);
    while body.len() < length {
        let mut more = Vec::new();
        match read(s, &mut more) {
            Ok(0) => {
                return Err(Failure::Answer(anyhow::anyhow!(
                    "body cut short: {} of {} bytes",
                    body.len(),
                    length
                )));
            }
            Ok(_) => body.extend_from_slice(&more),
            Err(e) => return Err(Failure::Answer(e)),
        }
    }
    body.truncate(length);
    Ok((parsed.status, body, parsed.close))
}

fn ensure_small(len: usize) -> Result<()> {
    ensure!(len <= 1 << 20, "a {len}-byte answer");
    Ok(())
}

/// The head, refused when the body's end cannot be known on a kept
/// connection or the body is large; the length is 0 for a chunked body.
fn parse_head(head: &str) -> Result<Head> {
    let mut parsed = crate::load::parse_head(head)?;
    if !parsed.chunked && parsed.length.is_none() {
        bail!("neither a Content-Length nor a chunked body: cannot keep the connection");
    }
    ensure_small(*parsed.length.get_or_insert(0))?;
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use std::io::BufRead;
    use std::net::TcpListener;

    use super::*;

    /// Answers two requests per connection with "v1", then closes it
    /// without a word, for `connections` connections.
    fn server(connections: usize) -> Result<(SocketAddr, std::thread::JoinHandle<usize>)> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let handle = std::thread::spawn(move || {
            let mut answered = 0;
            for _ in 0..connections {
                let Ok((s, _)) = listener.accept() else { break };
                let mut reader = std::io::BufReader::new(match s.try_clone() {
                    Ok(c) => c,
                    Err(_) => break,
                });
                let mut writer = s;
                for _ in 0..2 {
                    let mut line = String::new();
                    while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                        line.clear();
                    }
                    if writer
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nv1")
                        .is_err()
                    {
                        break;
                    }
                    answered += 1;
                }
            }
            answered
        });
        Ok((addr, handle))
    }

    #[test]
    fn requests_share_a_connection_and_a_closed_idle_one_is_replaced() -> Result<()> {
        let (addr, handle) = server(2)?;
        let mut kept = Kept::default();
        for _ in 0..4 {
            assert_eq!(kept.get(addr, "/")?, "v1");
        }
        drop(kept);
        assert_eq!(
            handle.join().ok(),
            Some(4),
            "four answers on two connections"
        );
        Ok(())
    }
}
