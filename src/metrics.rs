//! What a long-running `watch` shows to its operator: `/healthz` (ready once every initial pass
//! is done, unhealthy when the stream stopped moving), `/livez` (only the latter) and Prometheus `/metrics` (events by kind,
//! what the documents cost, batch latency, lag, queue depth, errors), served over plain HTTP/1.1
//! on `--metrics-addr`.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::report::Stats;
use crate::source::changes::EventKinds;

/// Upper bounds (seconds) of the batch-latency histogram's buckets.
const BUCKETS: [f64; 10] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

/// How long the stream may go without a successful read or write before `/healthz` says it is
/// stuck (a getMore returns within `--batch-delay-ms`, so a live stream moves far more often).
pub const STUCK_AFTER: Duration = Duration::from_secs(120);

/// Counters and gauges of one `watch` process.
#[derive(Default)]
pub struct Metrics {
    events: [AtomicU64; 5],
    batches: AtomicU64,
    batch_micros: AtomicU64,
    buckets: [AtomicU64; BUCKETS.len()],
    /// Seconds between now and the cluster time of the last applied event (0 when caught up).
    lag_seconds: AtomicU64,
    /// Events taken from the stream and not yet acknowledged by the target.
    pending: AtomicU64,
    errors: AtomicU64,
    reconciles: AtomicU64,
    /// Namespaces whose initial pass is done, and how many there are.
    ready: AtomicU64,
    namespaces: AtomicU64,
    /// Unix seconds of the last successful read of the stream or write of a batch.
    alive_at: AtomicU64,
    stats: Option<Arc<Stats>>,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Metrics {
    /// Metrics over `namespaces` streams; document counts come from `stats`.
    pub fn new(namespaces: usize, stats: Arc<Stats>) -> Self {
        let m = Self {
            stats: Some(stats),
            ..Self::default()
        };
        m.namespaces.store(namespaces as u64, Ordering::Relaxed);
        m.alive();
        m
    }

    /// The stream answered or a batch was written.
    pub fn alive(&self) {
        self.alive_at.store(now_secs(), Ordering::Relaxed);
    }

    /// One namespace finished its initial pass.
    pub fn ready_one(&self) {
        self.ready.fetch_add(1, Ordering::Relaxed);
    }

    /// One namespace reconciles (a full pass again): not ready until it is done.
    pub fn unready(&self) {
        self.ready.fetch_sub(1, Ordering::Relaxed);
    }

    pub fn error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    pub fn reconcile(&self) {
        self.reconciles.fetch_add(1, Ordering::Relaxed);
    }

    pub fn pending(&self, events: usize) {
        self.pending.store(events as u64, Ordering::Relaxed);
    }

    /// A batch of `kinds` was applied in `took`; its last event happened at `cluster_time`.
    pub fn applied(&self, kinds: &EventKinds, took: Duration, cluster_time: Option<u32>) {
        let EventKinds {
            insert,
            update,
            replace,
            delete,
            other,
        } = kinds;
        for (slot, n) in self
            .events
            .iter()
            .zip([insert, update, replace, delete, other])
        {
            slot.fetch_add(*n, Ordering::Relaxed);
        }
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.batch_micros
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
        let secs = took.as_secs_f64();
        for (b, bound) in self.buckets.iter().zip(BUCKETS) {
            if secs <= bound {
                b.fetch_add(1, Ordering::Relaxed);
            }
        }
        if let Some(t) = cluster_time {
            let lag = now_secs().saturating_sub(u64::from(t));
            self.lag_seconds.store(lag, Ordering::Relaxed);
        }
        self.pending.store(0, Ordering::Relaxed);
        self.alive();
    }

    /// The stream had nothing more: no lag.
    pub fn caught_up(&self) {
        self.lag_seconds.store(0, Ordering::Relaxed);
        self.alive();
    }

    /// `/healthz` (readiness): `Ok` when every initial pass is done and the stream moved
    /// recently; else why not.
    pub fn health(&self) -> Result<(), String> {
        let (ready, all) = (
            self.ready.load(Ordering::Relaxed),
            self.namespaces.load(Ordering::Relaxed),
        );
        if ready < all {
            return Err(format!("initial pass: {ready} of {all} namespaces ready"));
        }
        self.live()
    }

    /// `/livez` (liveness): `Err` only when the stream, once streaming, stopped moving (an
    /// initial pass of hours is alive).
    pub fn live(&self) -> Result<(), String> {
        if !self.health_ready() {
            return Ok(());
        }
        let quiet = now_secs().saturating_sub(self.alive_at.load(Ordering::Relaxed));
        if quiet > STUCK_AFTER.as_secs() {
            return Err(format!(
                "stuck: the change stream has not moved for {quiet}s"
            ));
        }
        Ok(())
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut o = String::new();
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut metric = |name: &str, kind: &str, help: &str, lines: Vec<(String, f64)>| {
            let _ = writeln!(
                o,
                "# HELP mongo2qdrant_{name} {help}\n# TYPE mongo2qdrant_{name} {kind}"
            );
            for (labels, v) in lines {
                let _ = writeln!(o, "mongo2qdrant_{name}{labels} {v}");
            }
        };
        let kinds = ["insert", "update", "replace", "delete", "other"];
        metric(
            "events_applied_total",
            "counter",
            "Change events applied, by operation type.",
            kinds
                .iter()
                .zip(&self.events)
                .map(|(k, a)| (format!("{{kind=\"{k}\"}}"), load(a) as f64))
                .collect(),
        );
        let c = self
            .stats
            .as_ref()
            .map(|s| s.snapshot())
            .unwrap_or_default();
        metric(
            "documents_total",
            "counter",
            "Documents by outcome: embedded, unchanged (no work), payload_only (payload rewritten, no embedding), deleted points, failed.",
            [
                ("embedded", c.embedded),
                ("unchanged", c.skipped_unchanged),
                ("payload_only", c.payload_updated),
                ("no_text", c.skipped_no_text),
                ("deleted", c.deleted),
                ("failed", c.failed),
            ]
            .iter()
            .map(|(k, v)| (format!("{{outcome=\"{k}\"}}"), *v as f64))
            .collect(),
        );
        let mut hist: Vec<(String, f64)> = BUCKETS
            .iter()
            .zip(&self.buckets)
            .map(|(b, a)| (format!("_bucket{{le=\"{b}\"}}"), load(a) as f64))
            .collect();
        let batches = load(&self.batches) as f64;
        hist.push(("_bucket{le=\"+Inf\"}".into(), batches));
        hist.push(("_sum".into(), load(&self.batch_micros) as f64 / 1e6));
        hist.push(("_count".into(), batches));
        metric(
            "batch_seconds",
            "histogram",
            "Time from a micro-batch's last event read to its writes acknowledged.",
            hist,
        );
        let gauges = [
            (
                "lag_seconds",
                "Now minus the cluster time of the last applied event; 0 when caught up.",
                load(&self.lag_seconds),
            ),
            (
                "pending_events",
                "Events read from the stream and not yet acknowledged by the target.",
                load(&self.pending),
            ),
            (
                "ready",
                "1 once every namespace finished its initial pass.",
                u64::from(self.health_ready()),
            ),
        ];
        for (name, help, v) in gauges {
            metric(name, "gauge", help, vec![(String::new(), v as f64)]);
        }
        metric(
            "errors_total",
            "counter",
            "Errors met (retried or fatal).",
            vec![(String::new(), load(&self.errors) as f64)],
        );
        metric(
            "reconciles_total",
            "counter",
            "Full passes with prune after lost history or a dropped / renamed collection.",
            vec![(String::new(), load(&self.reconciles) as f64)],
        );
        o
    }

    fn health_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed) >= self.namespaces.load(Ordering::Relaxed)
    }
}

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

    #[test]
    fn ready_after_every_initial_pass_and_counts_in_prometheus_text() {
        let m = Metrics::new(2, Arc::new(Stats::default()));
        assert!(m.health().unwrap_err().contains("0 of 2"));
        assert!(m.live().is_ok(), "a long initial pass is alive");
        m.ready_one();
        m.ready_one();
        assert!(m.health().is_ok());
        let kinds = EventKinds {
            update: 3,
            delete: 1,
            ..EventKinds::default()
        };
        m.applied(&kinds, Duration::from_millis(300), None);
        let text = m.render();
        for line in [
            "mongo2qdrant_events_applied_total{kind=\"update\"} 3",
            "mongo2qdrant_events_applied_total{kind=\"delete\"} 1",
            "mongo2qdrant_batch_seconds_bucket{le=\"0.25\"} 0",
            "mongo2qdrant_batch_seconds_bucket{le=\"0.5\"} 1",
            "mongo2qdrant_batch_seconds_count 1",
            "mongo2qdrant_ready 1",
        ] {
            assert!(text.contains(line), "{line} missing in\n{text}");
        }
        // A stream that stopped moving is neither live nor ready.
        m.alive_at
            .store(now_secs() - STUCK_AFTER.as_secs() - 5, Ordering::Relaxed);
        assert!(m.live().unwrap_err().contains("stuck"));
        assert!(m.health().is_err());
    }
}
