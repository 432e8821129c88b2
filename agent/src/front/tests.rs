//! The front against real HTTP servers on loopback: what the app sees,
//! where requests go, what happens when an instance refuses, bodies that
//! stream, and an upgraded connection.

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::routing::{get, post};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::routes::{RoutesFile, ServiceRoute};
use super::*;

type Res<T = ()> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// An app on a loopback port answering with its name, the headers the
/// front added and the path; `/slow` waits for `/release`; `/echo` sends
/// the body back.
async fn app(name: &'static str) -> Res<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let gate = std::sync::Arc::new(tokio::sync::Notify::new());
    let released = std::sync::Arc::clone(&gate);
    let router = Router::new()
        .route(
            "/slow",
            get(move || {
                let gate = std::sync::Arc::clone(&gate);
                async move {
                    gate.notified().await;
                    name
                }
            }),
        )
        .route(
            "/release",
            get(move || async move {
                released.notify_waiters();
                "released"
            }),
        )
        .route("/echo", post(|body: Body| async move { body }))
        .route(
            "/count",
            post(|body: Body| async move {
                use futures_util::StreamExt;
                let mut stream = body.into_data_stream();
                let mut n = 0usize;
                while let Some(Ok(chunk)) = stream.next().await {
                    n += chunk.len();
                }
                n.to_string()
            }),
        )
        .route("/big", get(|| async { vec![b'x'; 8 << 20] }))
        .fallback(move |req: Request| async move {
            let h = |n: &str| {
                req.headers()
                    .get(n)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-")
                    .to_owned()
            };
            format!(
                "{name} {} xff={} proto={} id={} host={} conn={}",
                req.uri(),
                h("x-forwarded-for"),
                h("x-forwarded-proto"),
                h("x-request-id"),
                h("host"),
                h("connection"),
            )
        });
    tokio::spawn(async move { axum::serve(listener, router).await });
    Ok(port)
}

struct Running {
    front: std::sync::Arc<Front>,
    port: u16,
    lifetime: Lifetime,
}

async fn front(backends: &[u16]) -> Res<Running> {
    let front = std::sync::Arc::new(Front::default());
    front.apply(&routes(backends));
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let lifetime = Lifetime::new();
    front.serve("web".into(), listener, &lifetime);
    Ok(Running {
        front,
        port,
        lifetime,
    })
}

fn routes(backends: &[u16]) -> RoutesFile {
    RoutesFile {
        services: [(
            "web".to_owned(),
            ServiceRoute {
                backends: backends.to_vec(),
            },
        )]
        .into(),
    }
}

/// One HTTP/1.1 exchange on a fresh connection: (status, body).
async fn request(port: u16, head: &str, body: &[u8]) -> Res<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
    stream
        .write_all(format!("{head}\r\nConnection: close\r\n\r\n").as_bytes())
        .await?;
    stream.write_all(body).await?;
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await??;
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text.get(9..12).unwrap_or("0").parse()?;
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    Ok((status, body))
}

/// One message's head, read a byte at a time up to its blank line (so
/// nothing after it is consumed); an error when the peer closes first.
async fn read_head(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).await?;
        head.push(byte[0]);
    }
    Ok(head)
}

fn get_head(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: example.test\r\nX-Forwarded-For: 203.0.113.7")
}

#[tokio::test]
async fn the_app_sees_the_forwarding_headers_and_none_of_the_connections() -> Res {
    let a = app("a").await?;
    let f = front(&[a]).await?;
    let (status, body) = request(f.port, &get_head("/items?page=2"), b"").await?;
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("a /items?page=2 "), "{body}");
    assert!(body.contains("xff=203.0.113.7, 127.0.0.1"), "{body}");
    assert!(body.contains("proto=http"), "{body}");
    assert!(body.contains("host=example.test"), "{body}");
    assert!(body.contains("conn=-"), "hop-by-hop headers go: {body}");
    let id = body
        .split("id=")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .unwrap_or("-");
    assert!(id.len() > 4 && id != "-", "a request id is added: {body}");
    let kept = format!("{}\r\nX-Request-Id: abc-123", get_head("/"));
    let (_, body) = request(f.port, &kept, b"").await?;
    assert!(body.contains("id=abc-123"), "{body}");
    f.lifetime.finish(Duration::from_secs(5)).await;
    Ok(())
}

#[tokio::test]
async fn a_busy_instance_is_passed_over_and_a_removed_one_drains() -> Res {
    let (a, b) = (app("a").await?, app("b").await?);
    let f = front(&[a, b]).await?;
    let port = f.port;
    let held = tokio::spawn(async move { request(port, &get_head("/slow"), b"").await });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let counts = |f: &Running| {
        let mut c = f.front.stats().in_flight;
        c.sort_by_key(|(port, _)| if *port == a { 0 } else { 1 });
        c
    };
    while counts(&f) != [(a, 1), (b, 0)] {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{:?}",
            f.front.stats()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (_, body) = request(f.port, &get_head("/"), b"").await?;
    assert!(body.starts_with("b "), "the idle instance answers: {body}");

    // `a` leaves the routes with a request in flight: counted until done.
    f.front.apply(&routes(&[b]));
    assert_eq!(counts(&f), [(a, 1), (b, 0)]);
    let (_, body) = request(a, "GET /release HTTP/1.1\r\nHost: a", b"").await?;
    assert_eq!(body, "released");
    let (status, body) = held.await??;
    assert_eq!((status, body.as_str()), (200, "a"));
    assert_eq!(counts(&f), [(a, 0), (b, 0)]);
    f.lifetime.finish(Duration::from_secs(5)).await;
    Ok(())
}

#[tokio::test]
async fn a_refused_get_goes_to_another_instance_and_a_refused_post_does_not() -> Res {
    let closed = TcpListener::bind("127.0.0.1:0").await?;
    let dead = closed.local_addr()?.port();
    drop(closed);
    let live = app("live").await?;
    let f = front(&[dead, live]).await?;
    let post = "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2";
    let (status, _) = request(f.port, post, b"hi").await?;
    assert_eq!(status, 502, "a request with a body is not sent twice");
    // `dead` refused: passed over now, for a while.
    let (status, body) = request(f.port, post, b"hi").await?;
    assert_eq!((status, body.as_str()), (200, "hi"));

    let f2 = front(&[dead, live]).await?;
    let (status, body) = request(f2.port, &get_head("/"), b"").await?;
    assert_eq!(status, 200, "a GET is tried on the next instance: {body}");
    assert!(body.starts_with("live "), "{body}");

    let none = front(&[]).await?;
    let (status, _) = request(none.port, &get_head("/"), b"").await?;
    assert_eq!(status, 503);
    for f in [f, f2, none] {
        f.lifetime.finish(Duration::from_secs(5)).await;
    }
    Ok(())
}

/// An app that hangs up on the first request of each of its first two
/// connections without a word (as when it closes a kept connection just
/// as the front sends on it), and answers "late" on later ones.
async fn hangs_up_first() -> Res<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        let mut n = 0;
        while let Ok((mut s, _)) = listener.accept().await {
            n += 1;
            let _ = read_head(&mut s).await;
            if n <= 2 {
                continue; // dropped: closed without an answer
            }
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n\r\nlate")
                .await;
        }
    });
    Ok(port)
}

#[tokio::test]
async fn a_request_the_app_hung_up_on_goes_again_when_that_is_safe() -> Res {
    let f = front(&[hangs_up_first().await?]).await?;
    let post = "POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 2";
    let (status, _) = request(f.port, post, b"hi").await?;
    assert_eq!(status, 502, "a request with a body is not sent twice");
    let (status, body) = request(f.port, &get_head("/"), b"").await?;
    assert_eq!((status, body.as_str()), (200, "late"), "a GET goes again");
    f.lifetime.finish(Duration::from_secs(5)).await;
    Ok(())
}

#[tokio::test]
async fn large_bodies_stream_through_both_ways() -> Res {
    let a = app("a").await?;
    let f = front(&[a]).await?;
    let size = 8usize << 20;
    let head = format!("POST /count HTTP/1.1\r\nHost: x\r\nContent-Length: {size}");
    let (status, body) = request(f.port, &head, &vec![7u8; size]).await?;
    assert_eq!(
        (status, body),
        (200, size.to_string()),
        "the app got every byte"
    );
    let (status, body) = request(f.port, &get_head("/big"), b"").await?;
    assert_eq!(status, 200);
    assert_eq!(body.len(), size, "the client got every byte");
    f.lifetime.finish(Duration::from_secs(5)).await;
    Ok(())
}

#[tokio::test]
async fn an_upgraded_connection_is_tunnelled() -> Res {
    // A backend that switches protocols and then echoes bytes.
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        if let Ok((mut s, _)) = listener.accept().await {
            let head = read_head(&mut s).await.unwrap_or_default();
            let upgrade = String::from_utf8_lossy(&head).to_ascii_lowercase();
            if upgrade.contains("upgrade: echo") {
                let _ = s
                    .write_all(b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: echo\r\n\r\n")
                    .await;
                let mut buf = [0u8; 64];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        }
    });
    let f = front(&[port]).await?;
    let mut s = TcpStream::connect(("127.0.0.1", f.port)).await?;
    s.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
        .await?;
    let head = read_head(&mut s).await?;
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    s.write_all(b"ping").await?;
    let mut echo = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut echo)).await??;
    assert_eq!(&echo, b"ping");
    f.lifetime.finish(Duration::from_secs(1)).await;
    Ok(())
}

/// An app that counts the connections it accepts and holds every request
/// until `open` turns true, then answers "ok" on a kept connection.
async fn counting_gate(
    open: tokio::sync::watch::Receiver<bool>,
) -> Res<(u16, std::sync::Arc<std::sync::atomic::AtomicUsize>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = std::sync::Arc::clone(&accepted);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut open = open.clone();
            tokio::spawn(async move {
                while read_head(&mut s).await.is_ok() {
                    if open.wait_for(|o| *o).await.is_err()
                        || s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                            .await
                            .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    Ok((port, accepted))
}

#[tokio::test]
async fn a_burst_of_clients_opens_no_more_connections_than_an_instance_is_sent() -> Res {
    let (open, gate) = tokio::sync::watch::channel(false);
    let (app, accepted) = counting_gate(gate).await?;
    let f = front(&[app]).await?;
    let burst = balance::MAX_SENT_PER_INSTANCE + 32;
    let port = f.port;
    let clients: Vec<_> = (0..burst)
        .map(|_| tokio::spawn(async move { request(port, &get_head("/"), b"").await }))
        .collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while f.front.stats().in_flight != [(app, burst as u64)] {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{:?}",
            f.front.stats()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let held = accepted.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        (1..=balance::MAX_SENT_PER_INSTANCE).contains(&held),
        "{held} connections for {burst} requests held by the app"
    );
    open.send(true)?;
    for client in clients {
        let (status, body) = client.await??;
        assert_eq!((status, body.as_str()), (200, "ok"));
    }
    f.lifetime.finish(Duration::from_secs(5)).await;
    Ok(())
}

/// A connection the front accepted just before it began to stop, whose
/// request arrives after, is answered (then closed), not closed unanswered:
/// a restart of the front under load failed one such request in CI.
#[tokio::test]
async fn a_connection_accepted_as_the_front_stops_still_gets_its_answer() -> Res {
    let a = app("a").await?;
    let front = Front::default();
    front.apply(&routes(&[a]));
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let mut client = TcpStream::connect(listener.local_addr()?).await?;
    let (stream, peer) = listener.accept().await?;
    let stopped = Lifetime::new();
    stopped.finish(Duration::from_secs(1)).await;
    let proxy = std::sync::Arc::new(proxy::Proxy::new(
        std::sync::Arc::clone(&front.table),
        std::sync::Arc::clone(&front.stats),
    ));
    let serving = tokio::spawn(serve_connection(stream, peer, proxy, "web".into(), stopped));
    // The test's runtime has one thread: these let the connection's task
    // run up to where it waits, so the request arrives after the front
    // began to stop it, as in the race.
    for _ in 0..8 {
        tokio::task::yield_now().await;
    }
    client
        .write_all(b"GET /late HTTP/1.1\r\nHost: example.test\r\n\r\n")
        .await?;
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), client.read_to_end(&mut answer)).await??;
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("a /late "), "{text}");
    serving.await?;
    Ok(())
}
