//! One writer at a time. The embedded store is locked as a whole with an OS file lock (released
//! by the kernel when the holder dies, however it dies: [`super::store_lock`]). On a Qdrant
//! server each (target,
//! namespace) gets a lease record next to its checkpoint, renewed while the run lives
//! ([`Renewer`]) and expiring when its holder stops renewing it.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{Record, StateStore, now_rfc3339};
use crate::ids::named_uuid;
use crate::sink::{MatchFilter, Sink, SinkError, WriteIf};

/// Who holds a lock or lease.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Holder {
    pub run_id: String,
    pub host: String,
    pub pid: u32,
    pub since: String,
    /// Unix seconds after which a lease is void (leases only).
    #[serde(default)]
    pub expires_at: u64,
    /// A random id of the holding process: tells a process that reuses a pid (a restarted
    /// container) from the one that held the lease.
    #[serde(default)]
    pub process: String,
    /// A random id of this write of a lease record: a takeover is conditioned on it, so that a
    /// holder that renewed in between keeps its lease.
    #[serde(default)]
    pub version: String,
}

/// This process's random id (see [`Holder::process`]).
fn process_id() -> &'static str {
    static ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ID.get_or_init(|| uuid::Uuid::new_v4().to_string())
}

impl Holder {
    pub fn me(run_id: &str) -> Self {
        Self {
            run_id: run_id.to_owned(),
            host: hostname(),
            pid: std::process::id(),
            since: now_rfc3339(),
            expires_at: 0,
            process: process_id().to_owned(),
            version: String::new(),
        }
    }

    /// Whether this holder is a process of `me`'s host that no longer runs: its pid is gone, or
    /// is `me`'s own in another process (a restarted container whose process got the same
    /// pid). A holder on another host is judged by its lease's expiry alone.
    pub fn is_gone(&self, me: &Holder) -> bool {
        let other_process = self.process != me.process;
        self.host == me.host && other_process && (self.pid == me.pid || !pid_alive(self.pid))
    }
}

/// Whether a process `pid` exists on this host (Linux `/proc`; elsewhere assumed alive).
fn pid_alive(pid: u32) -> bool {
    if !Path::new("/proc/self").exists() {
        return true;
    }
    Path::new(&format!("/proc/{pid}")).exists()
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "run {} (pid {} on {}, since {})",
            self.run_id, self.pid, self.host, self.since
        )
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "unknown-host".into())
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Refused: someone else writes.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "{what} is locked by {holder}; another mongo2qdrant run is writing it: wait for it to finish (a lease of a dead run expires by itself)"
    )]
    Held { what: String, holder: String },
    #[error("cannot lock {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "lost the lease of {what} to {holder} (this run stopped renewing in time, or clocks disagree); this run stopped writing: rerun once the other run is done"
    )]
    Lost { what: String, holder: String },
    #[error(transparent)]
    Sink(#[from] SinkError),
}

/// A lease record: who holds (target, namespace).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Lease {
    pub target: String,
    pub namespace: String,
    #[serde(flatten)]
    pub holder: Holder,
}

/// How long a server-side lease lives without renewal.
pub const LEASE_TTL: Duration = Duration::from_secs(60);

/// How long a run goes on writing without a successful renewal: 50 s, ten seconds short of
/// [`LEASE_TTL`]. Checked before each write, not during one: a write already sent when the
/// bound passes may still land (writes are not fenced on the server).
pub const RENEW_BOUND: Duration = Duration::from_secs(50);

/// Record id of the lease of `namespace` into `target`.
pub fn lease_id(target: &str, namespace: &str) -> uuid::Uuid {
    named_uuid("mongo2qdrant lease v1", &[target, namespace])
}

/// Read the lease of `namespace` into `target`, if any (a record that does not parse counts
/// as none).
pub async fn read_lease<S: Sink + ?Sized>(
    store: &StateStore<'_, S>,
    target: &str,
    namespace: &str,
) -> Result<Option<Holder>, SinkError> {
    Ok(match store.get(lease_id(target, namespace)).await? {
        Some(Ok(Record::Lease(l))) => Some(l.holder),
        _ => None,
    })
}

/// Write `holder`'s lease (expiring `ttl` from now, or at once for `None`) only if
/// `condition` holds: the target checks it in the same operation, so two runs can never both
/// overwrite one record they read.
async fn write_lease<S: Sink + ?Sized>(
    store: &StateStore<'_, S>,
    target: &str,
    namespace: &str,
    holder: &Holder,
    ttl: Option<Duration>,
    condition: WriteIf<'_>,
) -> Result<(), SinkError> {
    let mut holder = holder.clone();
    holder.expires_at = ttl.map_or(0, |t| now_secs() + t.as_secs());
    holder.version = uuid::Uuid::new_v4().to_string();
    let lease = Lease {
        target: target.to_owned(),
        namespace: namespace.to_owned(),
        holder,
    };
    store
        .put_if(
            lease_id(target, namespace),
            &Record::Lease(lease),
            condition,
        )
        .await
}

/// The condition "the lease record is still held by run `run_id`".
fn held_by(run_id: &str) -> MatchFilter {
    MatchFilter {
        key: "run_id".into(),
        value: run_id.to_owned(),
    }
}

/// Take the lease of (`target`, `namespace`) for `holder`: when there is none, when it expired
/// or was released, or when its holder ran on this host and its process is gone (a kill -9, a
/// restarted pod: taken over at once, and logged). The write is a compare-and-set on the
/// record as read (absent, or held by that run), so of two runs racing for it one wins; the
/// other reads the winner back and is refused.
pub async fn acquire<S: Sink + ?Sized>(
    store: &StateStore<'_, S>,
    target: &str,
    namespace: &str,
    holder: &Holder,
) -> Result<(), LockError> {
    let held = |h: Holder| LockError::Held {
        what: format!("{namespace} -> {target}"),
        holder: h.to_string(),
    };
    if store.damaged(lease_id(target, namespace)).await? {
        // A record that does not parse would refuse every run for ever: replace it.
        tracing::warn!("replacing the damaged lease record of {namespace} -> {target}");
        store.remove(lease_id(target, namespace)).await?;
    }
    let current = read_lease(store, target, namespace).await?;
    let takeover = match &current {
        None => None,
        Some(h) if h.run_id == holder.run_id || h.expires_at <= now_secs() => Some(h),
        Some(h) if h.is_gone(holder) => {
            tracing::warn!(
                "taking over the lease of {namespace} -> {target} from {h}: that process no longer runs on this host"
            );
            Some(h)
        }
        Some(h) => return Err(held(h.clone())),
    };
    // The record exactly as read: a holder that renewed since wrote another version.
    let filter = takeover.map(|h| {
        if h.version.is_empty() {
            held_by(&h.run_id)
        } else {
            MatchFilter {
                key: "version".into(),
                value: h.version.clone(),
            }
        }
    });
    let condition = match &filter {
        None => WriteIf::Absent,
        Some(f) => WriteIf::Matches(f),
    };
    match write_and_read(store, target, namespace, holder, condition).await? {
        Ok(()) => Ok(()),
        Err(Some(h)) => Err(held(h)),
        Err(None) => Err(lost(target, namespace, None)),
    }
}

/// Write `holder`'s lease (expiring [`LEASE_TTL`] from now) under `condition`, then read the
/// record back: `Ok` when this run holds it, else who does (`None`: nobody).
async fn write_and_read<S: Sink + ?Sized>(
    store: &StateStore<'_, S>,
    target: &str,
    namespace: &str,
    holder: &Holder,
    condition: WriteIf<'_>,
) -> Result<Result<(), Option<Holder>>, SinkError> {
    write_lease(store, target, namespace, holder, Some(LEASE_TTL), condition).await?;
    Ok(match read_lease(store, target, namespace).await? {
        Some(h) if h.run_id == holder.run_id => Ok(()),
        other => Err(other),
    })
}

/// The lease of `namespace` into `target` is no longer this run's: `holder` has it.
fn lost(target: &str, namespace: &str, holder: Option<Holder>) -> LockError {
    LockError::Lost {
        what: format!("{namespace} -> {target}"),
        holder: holder.map_or_else(
            || "nobody (the lease record was removed)".to_owned(),
            |h| h.to_string(),
        ),
    }
}

/// Extend `holder`'s lease, only if the record still names this run (compare-and-set on the
/// target). Fails with [`LockError::Lost`] when another run holds it now.
pub async fn renew<S: Sink + ?Sized>(
    store: &StateStore<'_, S>,
    target: &str,
    namespace: &str,
    holder: &Holder,
) -> Result<(), LockError> {
    let mine = held_by(&holder.run_id);
    write_and_read(store, target, namespace, holder, WriteIf::Matches(&mine))
        .await?
        .map_err(|other| lost(target, namespace, other))
}

/// A live lease of another run into `target` that excludes `name`'s: the same namespace whole
/// and in shards (`NS` and `NS shard I/N`, as [`crate::pipeline`] names them), or in shards of
/// another count. Shards of one count exclude only their own index (their own lease).
/// Checked after taking one's own lease, so of two runs that start together at least one sees
/// the other.
pub async fn conflicting<S: Sink + ?Sized>(
    store: &StateStore<'_, S>,
    target: &str,
    name: &str,
    me: &Holder,
) -> Result<Option<Lease>, SinkError> {
    Ok(others_live(store, target, me)
        .await?
        .into_iter()
        .find(|l| excludes(name, &l.namespace)))
}

/// The leases on `target` (any namespace) that runs other than `me` hold now: not expired, and
/// not of a process of this host that is gone.
pub async fn others_live<S: Sink + ?Sized>(
    store: &StateStore<'_, S>,
    target: &str,
    me: &Holder,
) -> Result<Vec<Lease>, SinkError> {
    let now = now_secs();
    Ok(store
        .records()
        .await?
        .into_iter()
        .filter_map(|r| match r {
            Record::Lease(l)
                if l.target == target
                    && l.holder.run_id != me.run_id
                    && l.holder.expires_at > now
                    && !l.holder.is_gone(me) =>
            {
                Some(l)
            }
            _ => None,
        })
        .collect())
}

/// Whether leases named `a` and `b` cover overlapping documents (see [`conflicting`]).
fn excludes(a: &str, b: &str) -> bool {
    let split = |name: &str| match name.rsplit_once(" shard ") {
        Some((base, s)) => match s.parse::<crate::shard::Shard>() {
            Ok(s) => (base.to_owned(), Some(s)),
            Err(_) => (name.to_owned(), None),
        },
        None => (name.to_owned(), None),
    };
    let ((base_a, shard_a), (base_b, shard_b)) = (split(a), split(b));
    base_a == base_b
        && a != b
        && match (shard_a, shard_b) {
            (Some(x), Some(y)) => x.count != y.count,
            _ => true,
        }
}

/// Give the lease up (it expires at once), only if this run still holds it.
pub async fn release<S: Sink + ?Sized>(
    store: &StateStore<'_, S>,
    target: &str,
    namespace: &str,
    holder: &Holder,
) -> Result<(), SinkError> {
    let mine = held_by(&holder.run_id);
    write_lease(
        store,
        target,
        namespace,
        holder,
        None,
        WriteIf::Matches(&mine),
    )
    .await
}

/// Renews a server-side lease in the background while a namespace syncs; stops when dropped.
/// When another run holds the lease, [`Renewer::lost`] says so and renewing stops.
pub struct Renewer {
    task: tokio::task::JoinHandle<()>,
    lost: tokio::sync::watch::Receiver<Option<String>>,
}

impl Renewer {
    /// Renew from now on; `since`: when the write that took the lease began (its record lives
    /// until at least then + [`LEASE_TTL`]).
    pub fn start<S: Sink>(
        sink: Arc<S>,
        target: String,
        namespace: String,
        holder: Holder,
        since: std::time::Instant,
    ) -> Self {
        let (tx, lost) = tokio::sync::watch::channel(None);
        let task = tokio::spawn(async move {
            let every = LEASE_TTL / 3;
            // When the last successful renewal (at first: the taking) began: the record it
            // wrote lives until at least then + LEASE_TTL.
            let mut renewed = since;
            loop {
                let attempt = async {
                    tokio::time::sleep(every).await;
                    let began = std::time::Instant::now();
                    let store = StateStore::open(sink.as_ref(), false)
                        .await
                        .map_err(|e| e.to_string())?;
                    match renew(&store, &target, &namespace, &holder).await {
                        Ok(()) => Ok(began),
                        Err(e @ LockError::Lost { .. }) => Err(format!("lost: {e}")),
                        Err(e) => Err(e.to_string()),
                    }
                };
                // Whatever a renewal does (one may hang until its timeout), writing stops at
                // RENEW_BOUND after the last good one: strictly before the lease can expire.
                let deadline = tokio::time::Instant::from_std(renewed + RENEW_BOUND);
                let outcome = tokio::select! {
                    r = attempt => r,
                    _ = tokio::time::sleep_until(deadline) => {
                        let why = format!(
                            "could not renew the lease of {namespace} -> {target} for {:?}; this run stopped writing before the lease could expire (after {:?}): rerun when Qdrant answers",
                            renewed.elapsed(),
                            LEASE_TTL
                        );
                        tracing::error!("{why}");
                        let _ = tx.send(Some(why));
                        return;
                    }
                };
                match outcome {
                    Ok(began) => renewed = began,
                    Err(e) if e.starts_with("lost: ") => {
                        let e = e.trim_start_matches("lost: ").to_owned();
                        tracing::error!("{e}");
                        let _ = tx.send(Some(e));
                        return;
                    }
                    Err(e) => tracing::warn!("renewing the lease of {namespace} failed: {e}"),
                }
            }
        });
        Self { task, lost }
    }

    /// A handle that says whether the lease was lost (and to whom).
    pub fn lost(&self) -> tokio::sync::watch::Receiver<Option<String>> {
        self.lost.clone()
    }
}

impl Drop for Renewer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
#[path = "lease_tests.rs"]
mod tests;
