//! Answers that are streams of JSON documents, one per line (NDJSON), read
//! as they arrive: hostd reports a long operation (a restore, a task run)
//! step by step on one response.

use std::collections::VecDeque;
use std::marker::PhantomData;
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::Method;
use hyper::body::{Bytes, Incoming};
use serde::de::DeserializeOwned;
use tokio::time::{Instant, timeout_at};

use super::{HostClient, Transport, TransportError};
use crate::config::HostTarget;

/// hostd's lines are small events; a longer one is a broken stream, and
/// buffering it without end would let it eat the operator's memory.
const MAX_LINE: usize = 1024 * 1024;

/// Cuts a byte stream into lines, whatever the chunk boundaries.
#[derive(Debug)]
pub(super) struct LineSplitter {
    partial: Vec<u8>,
    max: usize,
}

/// A line longer than the bound, newline excluded.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct TooLong;

impl LineSplitter {
    pub(super) fn new(max: usize) -> Self {
        Self {
            partial: Vec::new(),
            max,
        }
    }

    /// Appends `chunk`; returns the lines it completed, without newlines.
    pub(super) fn push(&mut self, chunk: &[u8]) -> Result<Vec<Vec<u8>>, TooLong> {
        let mut lines = Vec::new();
        let mut rest = chunk;
        while let Some(at) = rest.iter().position(|&b| b == b'\n') {
            let (head, tail) = rest.split_at(at);
            self.take(head)?;
            lines.push(std::mem::take(&mut self.partial));
            rest = &tail[1..];
        }
        self.take(rest)?;
        Ok(lines)
    }

    /// The last line when the stream did not end with a newline.
    pub(super) fn finish(&mut self) -> Option<Vec<u8>> {
        Some(std::mem::take(&mut self.partial)).filter(|l| !l.is_empty())
    }

    fn take(&mut self, bytes: &[u8]) -> Result<(), TooLong> {
        if self.partial.len() + bytes.len() > self.max {
            return Err(TooLong);
        }
        self.partial.extend_from_slice(bytes);
        Ok(())
    }
}

/// A 2xx answer read line by line, each line decoded as `T`; from
/// [`HostClient::stream`]. Blank lines are skipped.
pub struct JsonLines<'c, T> {
    client: &'c mut HostClient,
    path: String,
    body: Incoming,
    splitter: LineSplitter,
    ready: VecDeque<Vec<u8>>,
    ended: bool,
    decoded: PhantomData<fn() -> T>,
}

impl<'c, T: DeserializeOwned> JsonLines<'c, T> {
    pub(super) fn new(client: &'c mut HostClient, path: &str, body: Incoming) -> Self {
        Self {
            client,
            path: path.to_owned(),
            body,
            splitter: LineSplitter::new(MAX_LINE),
            ready: VecDeque::new(),
            ended: false,
            decoded: PhantomData,
        }
    }

    /// The next document, `None` once the answer has ended. A connection
    /// that breaks first is [`TransportError::Dropped`].
    pub async fn next(&mut self) -> Result<Option<T>, TransportError> {
        loop {
            if let Some(line) = self.ready.pop_front() {
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                return serde_json::from_slice(&line).map(Some).map_err(|source| {
                    TransportError::Decode {
                        host: self.client.host().to_owned(),
                        path: self.path.clone(),
                        source,
                    }
                });
            }
            if self.ended {
                return Ok(None);
            }
            match self.body.frame().await {
                None => {
                    self.ended = true;
                    self.ready.extend(self.splitter.finish());
                }
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        let lines = self.splitter.push(&data).map_err(|TooLong| {
                            TransportError::LineTooLong {
                                host: self.client.host().to_owned(),
                                path: self.path.clone(),
                                limit: MAX_LINE,
                            }
                        })?;
                        self.ready.extend(lines);
                    }
                }
                Some(Err(source)) => return Err(self.client.dropped(&self.path, source).await),
            }
        }
    }
}

/// Why a streamed answer was not followed to its last event.
#[derive(Debug)]
pub enum StreamStop {
    /// Before hostd accepted the request, or hostd refused it: nothing began.
    Refused(TransportError),
    /// After: hostd may well be working still.
    Lost(TransportError),
    /// The answer ended before its last event.
    Ended,
    /// The time was up after hostd had accepted the request.
    TimedOut,
    /// Handling an event failed (writing the output).
    Output(std::io::Error),
}

impl Transport {
    /// `POST path` on a connection of its own; each event of the streamed
    /// answer goes to `on_event`, up to the first that `last` maps to a
    /// value, which is returned. `timeout` bounds the whole exchange, ssh
    /// connect included.
    pub async fn follow<T: DeserializeOwned, R>(
        &self,
        target: &HostTarget,
        path: &str,
        body: Option<Bytes>,
        timeout: Duration,
        mut on_event: impl FnMut(&T) -> std::io::Result<()>,
        last: impl Fn(&T) -> Option<R>,
    ) -> Result<R, StreamStop> {
        let deadline = Instant::now() + timeout;
        let timed_out = || {
            StreamStop::Refused(TransportError::Timeout {
                host: target.name.clone(),
                after: timeout,
            })
        };
        let mut client = timeout_at(deadline, self.connect(target))
            .await
            .map_err(|_| timed_out())?
            .map_err(StreamStop::Refused)?;
        let events = async {
            let stream = client.stream::<T>(Method::POST, path, body);
            let mut events = timeout_at(deadline, stream)
                .await
                .map_err(|_| timed_out())?
                .map_err(StreamStop::Refused)?;
            loop {
                let event = match timeout_at(deadline, events.next()).await {
                    Err(_) => return Err(StreamStop::TimedOut),
                    Ok(Err(e)) => return Err(StreamStop::Lost(e)),
                    Ok(Ok(None)) => return Err(StreamStop::Ended),
                    Ok(Ok(Some(event))) => event,
                };
                on_event(&event).map_err(StreamStop::Output)?;
                if let Some(end) = last(&event) {
                    return Ok(end);
                }
            }
        };
        let result = events.await;
        client.close().await;
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&[u8]], max: usize) -> Result<Vec<String>, TooLong> {
        let mut s = LineSplitter::new(max);
        let mut lines = Vec::new();
        for chunk in chunks {
            lines.extend(s.push(chunk)?);
        }
        lines.extend(s.finish());
        Ok(lines
            .iter()
            .map(|l| String::from_utf8_lossy(l).into_owned())
            .collect())
    }

    #[test]
    fn lines_split_across_chunks_are_joined() {
        assert_eq!(
            split(&[b"{\"a\"", b":1}\n{\"b", b"\":2}\n"], 100),
            Ok(vec!["{\"a\":1}".into(), "{\"b\":2}".into()])
        );
        assert_eq!(
            split(&[b"ab", b"", b"c", b"\n"], 100),
            Ok(vec!["abc".into()])
        );
    }

    #[test]
    fn several_lines_in_one_chunk_all_come_out_in_order() {
        assert_eq!(
            split(&[b"1\n2\n\n3\n"], 100),
            Ok(vec!["1".into(), "2".into(), String::new(), "3".into()])
        );
    }

    #[test]
    fn a_last_line_without_newline_is_kept() {
        assert_eq!(
            split(&[b"1\n", b"2"], 100),
            Ok(vec!["1".into(), "2".into()])
        );
        assert_eq!(split(&[b"1\n"], 100), Ok(vec!["1".into()]));
        assert_eq!(split(&[], 100), Ok(vec![]));
    }

    #[test]
    fn an_over_long_line_is_refused_even_before_its_newline() {
        assert_eq!(split(&[b"12345\n"], 5), Ok(vec!["12345".into()]));
        assert_eq!(split(&[b"123456\n"], 5), Err(TooLong));
        assert_eq!(split(&[b"1\n123", b"456"], 5), Err(TooLong));
        // The bound is per line: many short lines in a large chunk are fine.
        assert_eq!(split(&[b"1234\n1234\n1234\n"], 5).map(|l| l.len()), Ok(3));
    }
}
