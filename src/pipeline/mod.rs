//! Wiring of one sync run. Per source namespace, concurrently:
//!
//! ```text
//! read (cursor by _id) -> [bounded] -> prepare (text, ids, hashes, unchanged check)
//!   -> [bounded] -> embed (shared worker thread) -> [bounded] -> write (crate::writer)
//!   -> advance the cursor (after the target acknowledged, in order)
//! ```
//!
//! Documents travel in units of `batch_docs`, in `_id` order. Every channel is bounded, so a
//! slow stage makes the earlier ones wait; nothing is dropped. A unit's checkpoint is written
//! only after its writes returned, and units reach the writer in order, so the checkpoint never
//! passes a point that the target has not acknowledged. The stages are in [`stages`]; what a
//! point is, in [`crate::point`]; how it is written, in [`crate::writer`]; where a pass stands,
//! in [`crate::state`]; what a complete pass may delete, in [`prune`]; bulk loads, in [`bulk`].

pub mod bulk;
mod changes;
pub mod guard;
mod leased;
mod pass;
mod prepare;
pub(crate) mod prune;
mod stages;
mod targets;

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::watch;
use uuid::Uuid;

use crate::embed::EmbedError;
use crate::embed::worker::EmbedWorker;
pub use crate::point::{Chunking, Job};
use crate::report::{NamespaceReport, RunLog, RunReport, RunStatus, Stats};
pub use crate::retry::RetryPolicy;
use crate::shard::Shard;
use crate::sink::{Retrying, Sink, SinkError};
use crate::source::SourceError;
use crate::state::lease::LockError;
use crate::state::{StateError, now_rfc3339};
pub use changes::{WatchOptions, watch};
use leased::{lease_lost, lease_name, still_held, under_lease};
use pass::{pass, pass_key};
use targets::prepare_targets;

/// Errors that end a run (per-document problems are counted instead).
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Embed(#[from] EmbedError),
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Locked(#[from] LockError),
    #[error(transparent)]
    MassDelete(#[from] guard::MassDelete),
    /// Another run took this run's lease over: it stopped writing.
    #[error("{0}")]
    LeaseLost(String),
}

/// Settings of a run.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    /// Documents per unit (the checkpoint granularity and the length-sorting window).
    pub batch_docs: usize,
    /// Ignore checkpoints and start a new full pass.
    pub fresh: bool,
    /// Count what would happen; write nothing.
    pub dry_run: bool,
    /// After a complete pass, delete points whose document is gone.
    pub prune: bool,
    /// Drop and rebuild a target collection with incompatible vectors.
    pub recreate: bool,
    /// The most a pass may delete of a namespace's points ([`guard`]).
    pub max_delete: guard::MaxDelete,
    /// Check stored points beyond their hashes ([`crate::point::defect`]) and write a document
    /// again when they differ.
    pub deep: bool,
    /// `verify --deep`: documents to embed again and compare with their stored vectors.
    pub sample: usize,
    pub chunking: Option<Chunking>,
    pub retry: RetryPolicy,
    pub run_id: String,
    /// Becomes `true` to stop reading (signals): in-flight units finish, the checkpoint holds.
    pub stop: watch::Receiver<bool>,
    /// Set by [`sync`] for the jobs of a target that `recreate` drops (in a dry run: would
    /// drop): their pass starts from the beginning and sees the target empty.
    pub target_rebuilt: bool,
    /// This process's part of every namespace ([`crate::shard`]); `None`: all of it.
    pub shard: Option<Shard>,
    /// A first load into an empty collection of a server writes with HNSW graph building off
    /// and switches it back on at the end ([`bulk`]).
    pub bulk: bool,
    /// Units whose writes may be in flight at once (acknowledged and checkpointed in order).
    pub write_concurrency: usize,
}

impl SyncOptions {
    /// Defaults: units of 256 documents, resume from checkpoints, no prune, default retries.
    pub fn new(stop: watch::Receiver<bool>) -> Self {
        Self {
            batch_docs: 256,
            fresh: false,
            dry_run: false,
            prune: false,
            recreate: false,
            max_delete: guard::MaxDelete::default(),
            deep: false,
            sample: 0,
            chunking: None,
            retry: RetryPolicy::default(),
            run_id: Uuid::new_v4().to_string(),
            stop,
            target_rebuilt: false,
            shard: None,
            bulk: false,
            write_concurrency: 1,
        }
    }
}

/// Sync every job into `sink`, concurrently, sharing one embedding worker. Every call to the
/// target goes through the retry policy of `opts`.
pub async fn sync<S: Sink>(
    sink: Arc<S>,
    worker: EmbedWorker,
    jobs: Vec<Job>,
    opts: SyncOptions,
    stats: Arc<Stats>,
) -> Result<RunReport, PipelineError> {
    let sink = Arc::new(Retrying::new(sink, opts.retry));
    let started = Instant::now();
    let started_at = now_rfc3339();
    let log = Arc::new(RunLog::new(stats));
    let rebuilt = prepare_targets(sink.as_ref(), &jobs, &opts, worker.embedder().as_ref()).await?;
    let mut bulk_targets: Vec<String> = Vec::new();
    // Per target, the namespaces this run writes there (the parts it owes a bulk load).
    let mut into: Vec<(String, Vec<String>)> = Vec::new();
    for job in &jobs {
        let ns = job.source.namespace().to_string();
        match into.iter_mut().find(|(t, _)| *t == job.target) {
            Some((_, n)) if n.contains(&ns) => {}
            Some((_, n)) => n.push(ns),
            None => into.push((job.target.clone(), vec![ns])),
        }
    }
    if !opts.dry_run {
        for (target, namespaces) in &into {
            let part = bulk::Part {
                shard: opts.shard,
                run_id: &opts.run_id,
                namespaces,
            };
            let taking_part = if opts.bulk {
                bulk::begin(sink.as_ref(), target, part).await?
            } else {
                bulk::join_stale(sink.as_ref(), target, part).await?
            };
            if taking_part {
                bulk_targets.push(target.clone());
            }
        }
    }
    for job in &jobs {
        if let Some(n) = job.source.estimated_count().await {
            log.stats
                .expected
                .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        }
    }

    let mut tasks = Vec::new();
    for group in groups(jobs) {
        let (sink, worker, mut opts, log) =
            (sink.clone(), worker.clone(), opts.clone(), log.clone());
        if rebuilt.contains(&group[0].target) {
            opts.target_rebuilt = true;
            opts.fresh = true;
        }
        tasks.push(tokio::spawn(async move {
            let mut reports = Vec::new();
            for job in group {
                let r = sync_namespace(&sink, &worker, job, &opts, &log).await?;
                reports.push(r);
            }
            Ok::<_, PipelineError>(reports)
        }));
    }
    let mut namespaces = Vec::new();
    let mut first_error = None;
    for t in tasks {
        match t.await.expect("namespace task panicked") {
            Ok(r) => namespaces.extend(r),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    if !opts.dry_run {
        sink.flush().await?;
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    let mut indexing = Vec::new();
    for target in &bulk_targets {
        let loaded = !*opts.stop.borrow()
            && namespaces
                .iter()
                .filter(|n| &n.target == target)
                .all(|n| n.complete);
        if loaded {
            let stop = opts.stop.clone();
            let part = bulk::Part {
                shard: opts.shard,
                run_id: &opts.run_id,
                namespaces: into
                    .iter()
                    .find(|(t, _)| t == target)
                    .map_or(&[][..], |(_, n)| n.as_slice()),
            };
            indexing.extend(bulk::finish(sink.as_ref(), target, part, stop).await?);
        }
    }
    let mut report = report(&opts, started, started_at, &log, namespaces, &worker);
    report.indexing = indexing;
    Ok(report)
}

/// Jobs that write the same points (one source, one target, several named vectors) run one
/// after the other: one group each; groups run concurrently.
fn groups(jobs: Vec<Job>) -> Vec<Vec<Job>> {
    let mut groups: Vec<Vec<Job>> = Vec::new();
    for job in jobs {
        match groups.iter_mut().find(|g| {
            g[0].target == job.target && g[0].source.namespace() == job.source.namespace()
        }) {
            Some(g) => g.push(job),
            None => groups.push(vec![job]),
        }
    }
    groups
}

/// The report of a run that began at `started` and ended now.
fn report(
    opts: &SyncOptions,
    started: Instant,
    started_at: String,
    log: &RunLog,
    namespaces: Vec<NamespaceReport>,
    worker: &EmbedWorker,
) -> RunReport {
    let interrupted = *opts.stop.borrow();
    RunReport {
        run_id: opts.run_id.clone(),
        started_at,
        finished_at: now_rfc3339(),
        seconds: started.elapsed().as_secs_f64(),
        store: String::new(),
        dry_run: opts.dry_run,
        interrupted,
        counts: log.stats.snapshot(),
        namespaces,
        failures: log.failures(),
        embedding: log.embedding(),
        compute: worker.embedder().compute().clone(),
        indexing: Vec::new(),
        status: if interrupted {
            RunStatus::Interrupted
        } else {
            RunStatus::Ok
        },
        exit_status: 0,
        error: None,
    }
}

/// One job under its lease (a Qdrant server; the embedded store is locked as a whole).
async fn sync_namespace<S: Sink>(
    sink: &Arc<S>,
    worker: &EmbedWorker,
    job: Job,
    opts: &SyncOptions,
    log: &Arc<RunLog>,
) -> Result<NamespaceReport, PipelineError> {
    if opts.dry_run {
        return pass(sink, worker, job, opts, log, None).await;
    }
    let (target, namespace) = (job.target.clone(), lease_name(&job, opts.shard));
    under_lease(sink, &target, &namespace, &opts.run_id, async |lease| {
        pass(sink, worker, job, opts, log, lease).await
    })
    .await
}
