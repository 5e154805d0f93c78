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
pub(crate) mod prune;
mod stages;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures_util::StreamExt;
use tokio::sync::{mpsc, watch};
use uuid::Uuid;

use crate::embed::EmbedError;
use crate::embed::worker::EmbedWorker;
use crate::point::settings_hash;
pub use crate::point::{Chunking, Job};
use crate::report::{Counts, NamespaceReport, RunLog, RunReport, RunStatus, Stats};
pub use crate::retry::RetryPolicy;
use crate::shard::Shard;
use crate::sink::{Ensure, Retrying, Sink, SinkError, VectorSpec};
use crate::source::{SourceError, SourceItem, id_text};
use crate::state::checkpoint::PassKey;
use crate::state::lease::{self, Holder, LockError, Renewer};
use crate::state::{Cursor, StateError, StateStore, now_rfc3339};
use crate::writer::Writer;
pub use changes::{WatchOptions, watch};
use stages::{EmbeddedUnit, Preparer, Unit};

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
    let rebuilt =
        prepare_targets(sink.as_ref(), &jobs, &opts, worker.embedder().dimension()).await?;
    let mut bulk_targets: Vec<String> = Vec::new();
    if opts.bulk && !opts.dry_run {
        for job in &jobs {
            if !bulk_targets.contains(&job.target)
                && bulk::begin(sink.as_ref(), &job.target, opts.shard, &opts.run_id).await?
            {
                bulk_targets.push(job.target.clone());
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
            let shard = opts.shard;
            indexing.extend(bulk::finish(sink.as_ref(), target, shard, &opts.run_id, stop).await?);
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
    dimension: usize,
) -> Result<HashSet<String>, PipelineError> {
    let mut rebuilt = HashSet::new();
    let mut targets: Vec<(&str, Vec<VectorSpec>)> = Vec::new();
    for job in jobs {
        let spec = VectorSpec {
            name: job.vector_name.clone(),
            dimension,
        };
        match targets.iter_mut().find(|(t, _)| *t == job.target) {
            Some((_, specs)) if specs.contains(&spec) => {}
            Some((_, specs)) => specs.push(spec),
            None => targets.push((&job.target, vec![spec])),
        }
    }
    for (target, specs) in targets {
        let shape = sink.shape(target).await?;
        let misfit = specs
            .iter()
            .find_map(|s| crate::sink::fit::fit(target, shape.as_ref(), s, Ensure::Check).err());
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
        }
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

/// What a lease is named by: the namespace, and the shard when sharded (shards of one namespace
/// run side by side, each under its own lease).
pub(crate) fn lease_name(job: &Job, shard: Option<Shard>) -> String {
    match shard {
        None => job.source.namespace().to_string(),
        Some(s) => format!("{} shard {s}", job.source.namespace()),
    }
}

/// Run `work` under the lease of (`target`, `namespace`) on a Qdrant server (the embedded
/// store is locked as a whole: no lease, `None`): the lease is renewed while `work` runs and
/// released on every way out, so that a retry (a restarted pod) need not wait for it to
/// expire. `work` gets the receiver that says when the lease was lost: writes stop there.
async fn under_lease<S: Sink, T>(
    sink: &Arc<S>,
    target: &str,
    namespace: &str,
    run_id: &str,
    work: impl AsyncFnOnce(Option<watch::Receiver<Option<String>>>) -> Result<T, PipelineError>,
) -> Result<T, PipelineError> {
    if !sink.needs_lease() {
        return work(None).await;
    }
    let store = StateStore::open(sink.as_ref(), false).await?;
    let holder = Holder::me(run_id);
    lease::acquire(&store, target, namespace, &holder).await?;
    // A whole-namespace run (sync or watch) and shards of it must not write at once.
    if let Some(other) = lease::conflicting(&store, target, namespace, &holder).await? {
        let _ = lease::release(&store, target, namespace, &holder).await;
        return Err(LockError::Held {
            what: format!("{} -> {target}", other.namespace),
            holder: other.holder.to_string(),
        }
        .into());
    }
    let renewer = Renewer::start(
        sink.clone(),
        target.to_owned(),
        namespace.to_owned(),
        holder.clone(),
    );
    let result = work(Some(renewer.lost())).await;
    drop(renewer);
    if let Err(e) = lease::release(&store, target, namespace, &holder).await {
        tracing::warn!(
            "releasing the lease of {namespace} -> {target} failed ({e}); it expires by itself"
        );
    }
    result
}

/// Fails once the lease of this pass was lost to another run: from then on nothing is written.
fn still_held(lease: &Option<watch::Receiver<Option<String>>>) -> Result<(), PipelineError> {
    match lease.as_ref().and_then(|l| l.borrow().clone()) {
        Some(why) => Err(PipelineError::LeaseLost(why)),
        None => Ok(()),
    }
}

/// What identifies `job`'s pass under `opts` with `embedder`.
fn pass_key(job: &Job, opts: &SyncOptions, embedder: &dyn crate::embed::Embedder) -> PassKey {
    let model = embedder.model_id().to_owned();
    PassKey {
        target: job.target.clone(),
        namespace: job.source.namespace().to_string(),
        vector: job.vector_name.clone(),
        settings: settings_hash(&model, job, opts.chunking),
        shard: opts.shard,
        model,
        dimension: embedder.dimension(),
        run_id: opts.run_id.clone(),
    }
}

/// One pass of one job: the stages wired together, then deletions and the final checkpoint.
/// `lease` (a server target) says when the lease was lost: writes stop there.
async fn pass<S: Sink>(
    sink: &Arc<S>,
    worker: &EmbedWorker,
    job: Job,
    opts: &SyncOptions,
    log: &Arc<RunLog>,
    lease: Option<watch::Receiver<Option<String>>>,
) -> Result<NamespaceReport, PipelineError> {
    let ns_text = job.source.namespace().to_string();
    let embedder = worker.embedder().clone();
    let key = pass_key(&job, opts, embedder.as_ref());
    let store = StateStore::open(sink.as_ref(), false).await?;
    let mut cursor =
        Cursor::open(store, key, opts.fresh, job.source.resumable(), opts.dry_run).await?;
    let after = cursor.resume_after().cloned();
    if let Some(a) = &after {
        tracing::info!(namespace = %ns_text, "resuming after _id {}", id_text(a));
    }
    let writer = (!opts.dry_run)
        .then(|| Writer::new(sink.as_ref(), &job.target, job.vector_name.as_deref()));

    let (doc_tx, doc_rx) = mpsc::channel::<SourceItem>(opts.batch_docs * 2);
    let (unit_tx, unit_rx) = mpsc::channel::<Unit>(2);
    let (out_tx, mut out_rx) = mpsc::channel::<EmbeddedUnit>(2);
    let seen: Arc<Mutex<HashSet<Uuid>>> = Arc::new(Mutex::new(HashSet::new()));
    let reader = tokio::spawn(stages::read(
        job.source.clone(),
        after.clone(),
        doc_tx,
        opts.clone(),
    ));
    let preparer = Preparer {
        sink: sink.clone(),
        job: job.clone(),
        opts: opts.clone(),
        log: log.clone(),
        embedder,
        seen: seen.clone(),
        sampled: Default::default(),
    };
    let prepare = tokio::spawn(preparer.run(doc_rx, unit_tx));
    let embed = tokio::spawn(stages::embed(
        worker.clone(),
        log.clone(),
        opts.dry_run,
        unit_rx,
        out_tx,
    ));

    // Write, then advance the cursor, unit by unit. Points of documents that lost their text
    // wait for the end of the pass (the guard); the cursor stays before the first of them, so
    // that a run that ends early finds them again.
    let mut totals = Counts::default();
    let mut lost: Vec<Uuid> = Vec::new();
    // Surplus chunks this pass removed (in a dry run: would remove), so that prune does not
    // count them again.
    let mut removed: HashSet<Uuid> = HashSet::new();
    let mut write_error = None;
    // Up to `write_concurrency` units' writes in flight (units hold other documents, so their
    // writes commute); they are taken back in order, and only then is a unit counted and the
    // cursor moved past it.
    let mut in_flight = futures_util::stream::FuturesOrdered::new();
    let mut input_open = true;
    let depth = opts.write_concurrency.max(1);
    loop {
        let unit = tokio::select! {
            biased;
            Some((unit, written)) = in_flight.next(), if !in_flight.is_empty() => {
                if let Err(e) = written {
                    write_error = Some(e);
                    break;
                }
                unit
            }
            next = out_rx.recv(), if input_open && in_flight.len() < depth => {
                match next {
                    None => input_open = false,
                    Some(unit) => {
                        if writer.is_some()
                            && let Err(e) = still_held(&lease)
                        {
                            write_error = Some(e);
                            break;
                        }
                        let w = writer.as_ref();
                        in_flight.push_back(async move {
                            let written = match w {
                                Some(w) => w.write(&unit.writes).await.map_err(PipelineError::from),
                                None => Ok(()),
                            };
                            (unit, written)
                        });
                    }
                }
                continue;
            }
            else => break,
        };
        let unit: EmbeddedUnit = unit;
        let mut counts = unit.counts.clone();
        if writer.is_some() {
            counts.upserted = unit.writes.points.len() as u64;
        }
        counts.deleted = unit.writes.deletes.len() as u64;
        removed.extend(unit.writes.deletes.iter().copied());
        log.stats.add(&counts);
        totals.add(&counts);
        lost.extend(unit.lost);
        if let Some(last) = unit.last_id
            && lost.is_empty()
        {
            // Writes in flight when the lease was lost are not this run's to checkpoint.
            still_held(&lease)?;
            cursor.advance(last, &totals).await?;
            tracing::debug!(
                namespace = %ns_text,
                upserted = totals.upserted,
                read = totals.read,
                "checkpoint advanced"
            );
        }
    }
    drop(in_flight);
    drop(out_rx);
    if let Some(e) = write_error {
        reader.abort();
        return Err(e);
    }
    let read_to_end = reader.await.expect("reader task panicked")?;
    prepare.await.expect("prepare task panicked")?;
    embed.await.expect("embed task panicked")?;

    let complete = read_to_end && !*opts.stop.borrow();
    let from_start = after.is_none();
    let prune = opts.prune && complete && from_start && totals.failed == 0;
    if opts.prune && !prune {
        tracing::warn!(
            namespace = %ns_text,
            "not pruning: the pass {}",
            if !complete { "did not reach the end" } else if !from_start { "resumed from a checkpoint (rerun to prune after a full pass)" } else { "had failed documents" }
        );
    }
    let mut pruned = 0;
    let mut outside = 0;
    if complete && (prune || !lost.is_empty()) {
        // Everything this pass deletes, checked against the guard before any of it goes.
        let lost_set: HashSet<Uuid> = lost.iter().copied().collect();
        let keep = std::mem::take(&mut *seen.lock().expect("seen"));
        let stored = if opts.target_rebuilt && opts.dry_run {
            Vec::new()
        } else {
            // A shard's own documents' points are its own, placed or not.
            let known = |id: &Uuid| lost_set.contains(id) || keep.contains(id);
            prune::namespace_points(sink.as_ref(), &job, opts.shard, known).await?
        };
        let points: Vec<Uuid> = stored.iter().map(|(id, _)| *id).collect();
        let stale: Vec<Uuid> = if prune {
            let stale = points
                .iter()
                .filter(|id| !keep.contains(id) && !lost_set.contains(id) && !removed.contains(id));
            stale.copied().collect()
        } else {
            Vec::new()
        };
        if !job.filter_text.is_empty() && !stale.is_empty() {
            // Only a figure for the log and report: a failure to count is no reason to stop.
            outside = prune::outside_filter(&job, &stored, &stale)
                .await
                .unwrap_or_else(|e| {
                    tracing::warn!(namespace = %ns_text, "could not count the points outside the filter: {e}");
                    0
                });
            if outside > 0 {
                tracing::warn!(
                    namespace = %ns_text,
                    "{outside} of the {} points to prune belong to documents that still exist but do not match --filter {}",
                    stale.len(),
                    job.filter_text
                );
            }
        }
        let present: HashSet<&Uuid> = points.iter().collect();
        lost.retain(|id| present.contains(id));
        let doomed = guard::Doomed {
            lost: lost.len() as u64,
            pruned: stale.len() as u64,
            total: points.len() as u64,
            no_text_at_all: totals.read > 0 && totals.skipped_no_text == totals.read,
        };
        let limit = opts
            .shard
            .map_or(opts.max_delete, |s| s.max_delete(opts.max_delete));
        limit.check(&job.route(), &doomed)?;
        still_held(&lease)?;
        if let Some(w) = &writer {
            for ids in lost.chunks(512).chain(stale.chunks(512)) {
                w.remove(ids).await?;
            }
        }
        pruned = stale.len() as u64;
        let c = Counts {
            deleted: (lost.len() + stale.len()) as u64,
            ..Counts::default()
        };
        log.stats.add(&c);
        totals.add(&c);
    }
    cursor.finish(complete, &totals).await?;
    Ok(NamespaceReport {
        namespace: ns_text,
        target: job.target,
        vector: job.vector_name,
        shard: opts.shard.map(|s| s.to_string()),
        counts: totals,
        complete,
        resumed_after: after.map(|a| id_text(&a)),
        pruned,
        pruned_outside_filter: outside,
        prune_skipped: opts.prune && !prune,
    })
}
