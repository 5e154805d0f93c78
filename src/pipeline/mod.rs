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

use std::collections::HashSet;
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
use crate::sink::{Ensure, Retrying, Sink, SinkError, VectorSpec};
use crate::source::SourceError;
use crate::state::lease::LockError;
use crate::state::{StateError, StateStore, now_rfc3339};
pub use changes::{WatchOptions, watch};
use leased::{lease_lost, lease_name, still_held, under_lease};
use pass::{pass, pass_key};

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

/// Make every job's target collection fit (a dry run only checks), and open the records
/// collection. A target is judged on every vector its jobs write: when one of them does not
/// fit, `--recreate` drops the collection once and creates it with all of them (a dry run says
/// it would). Returns the targets dropped (or that would be).
async fn prepare_targets<S: Sink>(
    sink: &S,
    jobs: &[Job],
    opts: &SyncOptions,
    embedder: &dyn crate::embed::Embedder,
) -> Result<HashSet<String>, PipelineError> {
    let (dimension, distance) = (embedder.dimension(), embedder.distance());
    let mut rebuilt = HashSet::new();
    // Per target: the dense vectors and the sparse ones its jobs write.
    let mut targets: Vec<(&str, Vec<VectorSpec>, Vec<String>)> = Vec::new();
    for job in jobs {
        let i = match targets.iter().position(|(t, ..)| *t == job.target) {
            Some(i) => i,
            None => {
                targets.push((&job.target, Vec::new(), Vec::new()));
                targets.len() - 1
            }
        };
        let (_, specs, sparse) = &mut targets[i];
        let spec = VectorSpec {
            name: job.vector_name.clone(),
            dimension,
            distance,
        };
        if !job.sparse_only() && !specs.contains(&spec) {
            specs.push(spec);
        }
        if let Some(s) = &job.sparse
            && !sparse.contains(&s.name)
        {
            sparse.push(s.name.clone());
        }
    }
    for (target, specs, sparse) in targets {
        let shape = sink.shape(target).await?;
        let sparse_now = match &shape {
            Some(_) => sink.sparse_vectors(target).await?,
            None => None,
        };
        for stale in sparse_now.iter().flat_map(|m| m.keys()) {
            if !sparse.contains(stale) {
                tracing::warn!(
                    "`{target}` holds the sparse vector `{stale}`, which this run does not write: it goes stale as documents change (and search fuses it by default); pass --sparse bm25 --sparse-name {stale} to keep it current, or --recreate to rebuild `{target}` without it"
                );
            }
        }
        // A sparse-only run would leave an unnamed dense vector as it is: never updated, its
        // gone documents' points kept for it.
        let unnamed_left = (specs.is_empty()
            && matches!(shape, Some(crate::sink::Shape::Unnamed(_))))
        .then(|| SinkError::Incompatible {
            collection: target.to_owned(),
            found: "an unnamed dense vector that a sparse-only run (--no-dense) would leave stale"
                .into(),
            wanted: "sparse vectors only (or drop --no-dense to keep the dense one current)".into(),
        });
        let misfit = unnamed_left
            .into_iter()
            .chain(specs.iter().filter_map(|s| {
                crate::sink::fit::fit(target, shape.as_ref(), s, Ensure::Check).err()
            }))
            .next()
            .or_else(|| {
                sparse.iter().find_map(|n| {
                    let f = crate::sink::fit::fit_sparse;
                    f(
                        target,
                        shape.as_ref(),
                        sparse_now.as_ref(),
                        n,
                        Ensure::Check,
                    )
                    .err()
                })
            });
        if let Some(e) = misfit {
            if !opts.recreate {
                return Err(e.into());
            }
            let why = match &e {
                SinkError::Incompatible { found, wanted, .. } => {
                    format!("it has {found}, the model needs {wanted}")
                }
                other => other.to_string(),
            };
            let points = sink.count(target).await?;
            if opts.dry_run {
                tracing::warn!(
                    "--recreate would drop `{target}` ({why}) with its {points} points, and write every document again"
                );
            } else {
                tracing::warn!(
                    "--recreate: dropping `{target}` ({why}) with its {points} points; every document is written again"
                );
                sink.drop_collection(target).await?;
            }
            rebuilt.insert(target.to_owned());
        }
        if !opts.dry_run {
            for s in &specs {
                crate::sink::ensure_collection(sink, target, s, Ensure::Create).await?;
            }
            for name in &sparse {
                crate::sink::fit::ensure_sparse(sink, target, name).await?;
            }
        }
        let mut indexes: Vec<crate::sink::IndexSpec> = Vec::new();
        for i in jobs
            .iter()
            .filter(|j| j.target == target)
            .flat_map(|j| &j.indexes)
        {
            if !indexes.iter().any(|x| x.field == i.field) {
                indexes.push(i.clone());
            }
        }
        crate::sink::index::ensure_indexes(sink, target, &indexes, opts.dry_run).await?;
    }
    StateStore::open(sink, !opts.dry_run).await?;
    Ok(rebuilt)
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
