//! The HTTP/1.1 endpoint of [`Metrics`]: `/healthz`, `/livez` and `/metrics`, with open
//! connections bounded and failed accepts backed off.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::Metrics;

/// Read a request's head into `buf`: up to its blank line (a client may send it in pieces, and
/// closing with part of it unread would reset the connection before the answer is read), the
/// end of the stream, or a full buffer. Returns the bytes read.
async fn read_head(conn: &mut tokio::net::TcpStream, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        let got = conn.read(&mut buf[n..]).await?;
        n += got;
        if got == 0 || buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    Ok(n)
}

/// The most connections the endpoint serves at once.
pub const MAX_CONNECTIONS: usize = 256;

/// The pause after a failed accept, given the one before: 10 ms, doubling up to 1 s.
fn accept_backoff(before: Duration) -> Duration {
    (before * 2).clamp(Duration::from_millis(10), Duration::from_secs(1))
}

/// Serve `/healthz` and `/metrics` on `addr` until the process ends. Returns once listening.
pub async fn serve(addr: &str, metrics: Arc<Metrics>) -> std::io::Result<std::net::SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    // At most MAX_CONNECTIONS at once (a flood waits in the kernel's backlog); a failed
    // accept (out of file descriptors) backs off instead of retrying at once on a full core.
    let open = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    tokio::spawn(async move {
        let mut pause = Duration::ZERO;
        loop {
            let Ok(permit) = open.clone().acquire_owned().await else {
                return;
            };
            let mut conn = match listener.accept().await {
                Ok((conn, _)) => {
                    pause = Duration::ZERO;
                    conn
                }
                Err(e) => {
                    pause = accept_backoff(pause);
                    tracing::debug!("metrics: accept failed ({e}); next try in {pause:?}");
                    tokio::time::sleep(pause).await;
                    continue;
                }
            };
            let metrics = metrics.clone();
            tokio::spawn(async move {
                let _permit = permit;
                let mut buf = vec![0u8; 2048];
                let head = read_head(&mut conn, &mut buf);
                let n = match tokio::time::timeout(Duration::from_secs(5), head).await {
                    Ok(Ok(n)) => n,
                    _ => return,
                };
                let request = String::from_utf8_lossy(&buf[..n]);
                let path = request.split_whitespace().nth(1).unwrap_or("/");
                let (status, body, kind) = match path {
                    "/metrics" => ("200 OK", metrics.render(), "text/plain; version=0.0.4"),
                    "/healthz" | "/livez" => {
                        let state = if path == "/healthz" {
                            metrics.health()
                        } else {
                            metrics.live()
                        };
                        match state {
                            Ok(()) => ("200 OK", "ok\n".to_owned(), "text/plain"),
                            Err(why) => {
                                ("503 Service Unavailable", format!("{why}\n"), "text/plain")
                            }
                        }
                    }
                    _ => (
                        "404 Not Found",
                        "try /healthz, /livez or /metrics\n".to_owned(),
                        "text/plain",
                    ),
                };
                let head = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: {kind}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                // A client that does not read its answer holds no slot past the deadline.
                let answer = async {
                    conn.write_all(head.as_bytes()).await?;
                    conn.write_all(body.as_bytes()).await?;
                    conn.shutdown().await
                };
                let _ = tokio::time::timeout(Duration::from_secs(5), answer).await;
            });
        }
    });
    Ok(local)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Stats;

    #[test]
    fn failed_accepts_back_off_up_to_a_second() {
        let mut d = Duration::ZERO;
        let mut seen = Vec::new();
        for _ in 0..10 {
            d = accept_backoff(d);
            seen.push(d);
        }
        assert_eq!(seen[0], Duration::from_millis(10));
        assert_eq!(seen[1], Duration::from_millis(20));
        assert_eq!(*seen.last().unwrap(), Duration::from_secs(1));
    }

    /// Connections are bounded: with MAX_CONNECTIONS held open and silent, the next request
    /// waits; it is answered once one of them goes.
    #[tokio::test]
    async fn open_connections_are_bounded() {
        let metrics = Arc::new(Metrics::new(1, Arc::new(crate::report::Stats::default())));
        let at = serve("127.0.0.1:0", metrics).await.unwrap();
        let mut idle = Vec::new();
        for _ in 0..MAX_CONNECTIONS {
            idle.push(tokio::net::TcpStream::connect(at).await.unwrap());
        }
        let ask = async move {
            let mut c = tokio::net::TcpStream::connect(at).await.unwrap();
            c.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").await.unwrap();
            let mut answer = String::new();
            c.read_to_string(&mut answer).await.unwrap();
            answer
        };
        let ask = tokio::spawn(ask);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!ask.is_finished(), "answered past the bound");
        drop(idle.pop());
        let answer = tokio::time::timeout(Duration::from_secs(10), ask)
            .await
            .expect("answered once a connection went")
            .unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }

    /// A request whose head arrives in pieces is answered, not reset.
    #[tokio::test]
    async fn a_request_sent_in_pieces_is_answered() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let m = Arc::new(Metrics::new(0, Arc::new(Stats::default())));
        let at = serve("127.0.0.1:0", m).await.unwrap();
        let mut s = tokio::net::TcpStream::connect(at).await.unwrap();
        s.write_all(b"GET /li").await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        s.write_all(b"vez HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
        assert!(out.ends_with("ok\n"), "{out}");
    }
}
