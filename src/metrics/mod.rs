//! What a long-running `watch` shows to its operator: `/healthz` (ready once every initial pass
//! is done, unhealthy when the stream stopped moving), `/livez` (only the latter) and Prometheus `/metrics` (events by kind,
//! what the documents cost, batch latency, lag, queue depth, errors), served over plain HTTP/1.1
//! on `--metrics-addr`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::report::Stats;
use crate::source::changes::EventKinds;

/// Upper bounds (seconds) of the batch-latency histogram's buckets.
const BUCKETS: [f64; 10] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

/// How long the stream may go without a successful read or write before `/healthz` says it is
/// stuck (a getMore returns within `--batch-delay-ms`, so a live stream moves far more often).
pub const STUCK_AFTER: Duration = Duration::from_secs(120);

/// The gauges of one namespace's stream.
#[derive(Default, Clone, Copy)]
struct Lane {
    /// Seconds between now and the cluster time of the last applied event (0 when caught up).
    lag_seconds: u64,
    /// Events taken from the stream and not yet acknowledged by the target.
    pending: u64,
}

/// Counters and gauges of one `watch` process.
#[derive(Default)]
pub struct Metrics {
    events: [AtomicU64; 5],
    batches: AtomicU64,
    batch_micros: AtomicU64,
    buckets: [AtomicU64; BUCKETS.len()],
    /// Lag and pending events of each stream: (namespace, target).
    lanes: Mutex<BTreeMap<(String, String), Lane>>,
    errors: AtomicU64,
    reconciles: AtomicU64,
    /// Namespaces whose initial pass is done, and how many there are.
    ready: AtomicU64,
    namespaces: AtomicU64,
    /// Unix seconds of the last successful read of the stream or write of a batch.
    alive_at: AtomicU64,
    /// Seconds the stream may be quiet before it counts as stuck (0: [`STUCK_AFTER`]).
    patience: AtomicU64,
    /// Micro-batches being applied now: a slow one is work, not a stuck loop (its reads and
    /// writes end by their own timeouts and retries).
    busy: AtomicU64,
    /// Namespaces whose change stream cannot be read now (retrying).
    down: AtomicU64,
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

    /// The stream of `lane` (namespace, target) has `events` read and not yet acknowledged.
    pub fn pending(&self, lane: (&str, &str), events: usize) {
        self.lane(lane, |l| l.pending = events as u64);
    }

    fn lane(&self, (namespace, target): (&str, &str), f: impl FnOnce(&mut Lane)) {
        let mut lanes = self.lanes.lock().unwrap_or_else(|p| p.into_inner());
        f(lanes
            .entry((namespace.to_owned(), target.to_owned()))
            .or_default());
    }

    /// A batch of `kinds` of `lane` (namespace, target) was applied in `took`; its last event
    /// happened at `cluster_time`.
    pub fn applied(
        &self,
        lane: (&str, &str),
        kinds: &EventKinds,
        took: Duration,
        cluster_time: Option<u32>,
    ) {
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
        self.lane(lane, |l| {
            if let Some(t) = cluster_time {
                l.lag_seconds = now_secs().saturating_sub(u64::from(t));
            }
            l.pending = 0;
        });
        self.alive();
    }

    /// The stream of `lane` (namespace, target) had nothing more: no lag.
    pub fn caught_up(&self, lane: (&str, &str)) {
        self.lane(lane, |l| l.lag_seconds = 0);
        self.alive();
    }

    /// A getMore waits up to `delay` for events: a quiet stream answers that often, and is
    /// stuck only after twice that and half a minute (at least [`STUCK_AFTER`]).
    pub fn set_delay(&self, delay: Duration) {
        let secs = (2 * delay.as_secs() + 30).max(STUCK_AFTER.as_secs());
        self.patience.store(secs, Ordering::Relaxed);
    }

    /// A micro-batch is being applied (`true`) or is done (`false`).
    pub fn busy(&self, on: bool) {
        if on {
            self.busy.fetch_add(1, Ordering::Relaxed);
        } else {
            self.busy.fetch_sub(1, Ordering::Relaxed);
            self.alive();
        }
    }

    /// A namespace's change stream failed and is being reopened (`true`), or answers again.
    /// While one is down the process is not ready; waiting to retry is alive.
    pub fn source_down(&self, down: bool) {
        if down {
            self.down.fetch_add(1, Ordering::Relaxed);
        } else {
            self.down.fetch_sub(1, Ordering::Relaxed);
        }
        self.alive();
    }

    /// `/healthz` (readiness): `Ok` when every initial pass is done, every change stream
    /// answers and none is stuck; else why not.
    pub fn health(&self) -> Result<(), String> {
        let (ready, all) = (
            self.ready.load(Ordering::Relaxed),
            self.namespaces.load(Ordering::Relaxed),
        );
        if ready < all {
            return Err(format!("initial pass: {ready} of {all} namespaces ready"));
        }
        let down = self.down.load(Ordering::Relaxed);
        if down > 0 {
            return Err(format!(
                "{down} of {all} change streams cannot be read now (MongoDB unreachable?); retrying"
            ));
        }
        self.live()
    }

    /// `/livez` (liveness): `Err` only when the stream, once streaming, stopped moving for
    /// longer than its getMore wait allows, with no batch under way (an initial pass of hours
    /// is alive, and so is a loop waiting to retry).
    pub fn live(&self) -> Result<(), String> {
        if !self.health_ready() || self.busy.load(Ordering::Relaxed) > 0 {
            return Ok(());
        }
        let quiet = now_secs().saturating_sub(self.alive_at.load(Ordering::Relaxed));
        let patience = match self.patience.load(Ordering::Relaxed) {
            0 => STUCK_AFTER.as_secs(),
            p => p,
        };
        if quiet > patience {
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
        let lanes: Vec<(String, Lane)> = self
            .lanes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|((ns, t), l)| {
                let labels = format!("{{namespace=\"{}\",target=\"{}\"}}", label(ns), label(t));
                (labels, *l)
            })
            .collect();
        let by_namespace = |f: fn(&Lane) -> u64| -> Vec<(String, f64)> {
            lanes
                .iter()
                .map(|(k, l)| (k.clone(), f(l) as f64))
                .collect()
        };
        metric(
            "lag_seconds",
            "gauge",
            "Per namespace: now minus the cluster time of the last applied event; 0 when caught up.",
            by_namespace(|l| l.lag_seconds),
        );
        metric(
            "pending_events",
            "gauge",
            "Per namespace: events read from the stream and not yet acknowledged by the target.",
            by_namespace(|l| l.pending),
        );
        metric(
            "ready",
            "gauge",
            "1 once every namespace finished its initial pass.",
            vec![(String::new(), f64::from(u8::from(self.health_ready())))],
        );
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

/// `value` as a Prometheus label value: backslash, double quote and newline escaped.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

mod http;
pub use http::{MAX_CONNECTIONS, serve};

#[cfg(test)]
mod tests {
    use super::*;

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
        m.applied(("db.a", "a"), &kinds, Duration::from_millis(300), None);
        m.pending(("db.\"b\"", "b"), 4);
        let text = m.render();
        for line in [
            "mongo2qdrant_events_applied_total{kind=\"update\"} 3",
            "mongo2qdrant_events_applied_total{kind=\"delete\"} 1",
            "mongo2qdrant_batch_seconds_bucket{le=\"0.25\"} 0",
            "mongo2qdrant_batch_seconds_bucket{le=\"0.5\"} 1",
            "mongo2qdrant_batch_seconds_count 1",
            "mongo2qdrant_ready 1",
            "mongo2qdrant_pending_events{namespace=\"db.a\",target=\"a\"} 0",
            "mongo2qdrant_pending_events{namespace=\"db.\\\"b\\\"\",target=\"b\"} 4",
            "mongo2qdrant_lag_seconds{namespace=\"db.a\",target=\"a\"} 0",
        ] {
            assert!(text.contains(line), "{line} missing in\n{text}");
        }
        // A stream that stopped moving is neither live nor ready.
        m.alive_at
            .store(now_secs() - STUCK_AFTER.as_secs() - 5, Ordering::Relaxed);
        assert!(m.live().unwrap_err().contains("stuck"));
        assert!(m.health().is_err());
        // A batch under way is work; a long --watch-delay-ms is waiting as told.
        m.busy(true);
        assert!(m.live().is_ok());
        m.busy(false);
        m.alive_at
            .store(now_secs() - STUCK_AFTER.as_secs() - 5, Ordering::Relaxed);
        m.set_delay(Duration::from_secs(150));
        assert!(m.live().is_ok());
        // A stream being reopened: alive, not ready.
        m.source_down(true);
        assert!(m.live().is_ok());
        assert!(m.health().unwrap_err().contains("cannot be read now"));
        m.source_down(false);
        assert!(m.health().is_ok());
    }
}
