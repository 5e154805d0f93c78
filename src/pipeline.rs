//! Wiring of one sync run. Per source namespace, concurrently:
//!
//! ```text
//! reader (cursor by _id) -> [bounded] -> prepare (text, ids, hashes, unchanged check)
//!   -> [bounded] -> embed (shared worker thread) -> [bounded] -> sink (upsert, delete surplus)
//!   -> checkpoint (after the target acknowledged, in order)
//! ```
//!
//! Documents travel in units of `batch_docs`, in `_id` order. Every channel is bounded, so a
//! slow stage makes the earlier ones wait; nothing is dropped. The checkpoint of a unit is
//! written only after its upserts and deletes returned, and units reach the sink in order, so
//! the checkpoint never passes a point that the target has not acknowledged.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mongodb::bson::Bson;
use serde::Serialize;
use serde_json::{Map, Value};
use tokio::sync::{mpsc, watch};
use uuid::Uuid;

use crate::checkpoint::{Checkpoint, CheckpointError, CheckpointStore, Counts};
use crate::embed::worker::EmbedWorker;
use crate::embed::{EmbedError, EmbedStats};
use crate::ids::{content_hash, point_id};
use crate::progress::Stats;
use crate::sink::{
    Ensure, MatchFilter, Point, Sink, SinkError, StoredPoint, VectorSpec, scroll_all,
};
use crate::source::{Source, SourceError, SourceItem, id_text};
use crate::text::{Template, payload_fields};

/// Payload keys written on every point.
pub mod keys {
    pub const NAMESPACE: &str = "namespace";
    pub const ID: &str = "_id";
    pub const HASH: &str = "content_hash";
    pub const PAYLOAD_HASH: &str = "payload_hash";
    pub const CHUNK: &str = "chunk";
    pub const CHUNKS: &str = "chunk_count";

    /// Key of the content hash behind `vector`: [`HASH`] for the unnamed vector,
    /// `content_hash_<name>` for a named one (each named vector of a point is current or stale
    /// on its own).
    pub fn hash(vector: Option<&str>) -> String {
        per_vector(HASH, vector)
    }

    /// Key of the hash of the copied payload fields behind `vector`, like [`hash`].
    pub fn payload_hash(vector: Option<&str>) -> String {
        per_vector(PAYLOAD_HASH, vector)
    }

    /// Key of the chunk count behind `vector`, like [`hash`].
    pub fn chunks(vector: Option<&str>) -> String {
        per_vector(CHUNKS, vector)
    }

    fn per_vector(base: &str, vector: Option<&str>) -> String {
        match vector {
            None => base.to_owned(),
            Some(v) => format!("{base}_{v}"),
        }
    }

    /// Whether `key` is one of the bookkeeping keys above (of any vector).
    pub fn is_internal(key: &str) -> bool {
        [NAMESPACE, ID, CHUNK].contains(&key)
            || [HASH, PAYLOAD_HASH, CHUNKS]
                .iter()
                .any(|base| key.starts_with(base))
    }
}

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
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    Locked(#[from] crate::lease::LockError),
}

/// One source namespace synced into one target collection.
#[derive(Debug, Clone)]
pub struct Job {
    pub source: Source,
    /// Target collection.
    pub target: String,
    pub template: Template,
    /// Fields copied into the payload.
    pub payload_fields: Vec<String>,
    /// The filter as given (part of the settings a resume must match).
    pub filter_text: String,
    /// The named vector written (`None`: the collection's single unnamed vector). Jobs with
    /// different names can share a target collection and a source: each point then carries one
    /// vector per job.
    pub vector_name: Option<String>,
}

impl Job {
    /// Whether a point of this job's namespace holds this job's vector: every point for the
    /// unnamed vector; for a named one, the points that carry its hash.
    pub fn owns(&self, payload: &Map<String, Value>) -> bool {
        match &self.vector_name {
            None => true,
            Some(v) => payload.contains_key(&keys::hash(Some(v))),
        }
    }
}

/// Token windows for long texts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunking {
    pub size: usize,
    pub overlap: usize,
}

/// Bounded retries with exponential backoff and jitter.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub base: Duration,
    pub max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 6,
            base: Duration::from_millis(500),
            max: Duration::from_secs(20),
        }
    }
}

impl RetryPolicy {
    /// Delay before retry number `attempt` (1-based): base * 2^(attempt-1), capped, with up to
    /// 50% jitter.
    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = self
            .base
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
            .min(self.max);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let jitter = f64::from(nanos % 1000) / 1000.0 * 0.5;
        exp.mul_f64(1.0 - jitter / 2.0)
    }
}

/// Run `op` until it succeeds, fails permanently, or the attempts are spent.
pub async fn retry<T, E, F, Fut>(
    policy: &RetryPolicy,
    what: &str,
    transient: fn(&E) -> bool,
    mut op: F,
) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
    E: std::fmt::Display,
{
    let mut attempt = 0;
    loop {
        match op().await {
            Ok(v) => return Ok(v),
            Err(e) if transient(&e) && attempt + 1 < policy.attempts => {
                attempt += 1;
                let d = policy.delay(attempt);
                tracing::warn!("{what} failed ({e}); retry {attempt} in {d:?}");
                tokio::time::sleep(d).await;
            }
            Err(e) => return Err(e),
        }
    }
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
    pub chunking: Option<Chunking>,
    pub retry: RetryPolicy,
    pub run_id: String,
    /// Becomes `true` to stop reading (signals): in-flight units finish, the checkpoint holds.
    pub stop: watch::Receiver<bool>,
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
            chunking: None,
            retry: RetryPolicy::default(),
            run_id: Uuid::new_v4().to_string(),
            stop,
        }
    }
}

/// A per-document problem, for reports.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    pub namespace: String,
    pub at: String,
    pub reason: String,
}

/// Outcome of one namespace.
#[derive(Debug, Clone, Serialize)]
pub struct NamespaceReport {
    pub namespace: String,
    pub target: String,
    /// The named vector written, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vector: Option<String>,
    pub counts: Counts,
    /// The pass reached the end of the source.
    pub complete: bool,
    /// `_id` this pass resumed after, if it resumed.
    pub resumed_after: Option<String>,
    pub pruned: u64,
}

/// Outcome of a run.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub run_id: String,
    pub started_at: String,
    pub finished_at: String,
    pub seconds: f64,
    pub dry_run: bool,
    pub interrupted: bool,
    #[serde(flatten)]
    pub counts: Counts,
    pub namespaces: Vec<NamespaceReport>,
    /// A sample of per-document problems (at most 20).
    pub failures: Vec<Failure>,
    pub embedding: EmbedStatsReport,
}

/// Embedding figures of a run.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct EmbedStatsReport {
    pub texts: u64,
    pub tokens: u64,
    pub padding_ratio: f64,
    pub tokenize_secs: f64,
    pub infer_secs: f64,
}

const MAX_FAILURE_SAMPLES: usize = 20;

struct Shared {
    stats: Arc<Stats>,
    failures: Mutex<Vec<Failure>>,
    embed: Mutex<EmbedStats>,
}

impl Shared {
    fn fail(&self, namespace: &str, at: String, reason: String) {
        tracing::warn!(namespace, at, "skipped: {reason}");
        let mut f = self.failures.lock().expect("failures");
        if f.len() < MAX_FAILURE_SAMPLES {
            f.push(Failure {
                namespace: namespace.to_owned(),
                at,
                reason,
            });
        }
    }
}

/// Now, as RFC 3339.
pub fn now_rfc3339() -> String {
    mongodb::bson::DateTime::now()
        .try_to_rfc3339_string()
        .unwrap_or_default()
}

/// Sync every job into `sink`, concurrently, sharing one embedding worker.
pub async fn sync<S: Sink>(
    sink: Arc<S>,
    worker: EmbedWorker,
    jobs: Vec<Job>,
    opts: SyncOptions,
    stats: Arc<Stats>,
) -> Result<RunReport, PipelineError> {
    let started = Instant::now();
    let started_at = now_rfc3339();
    let shared = Arc::new(Shared {
        stats,
        failures: Mutex::new(Vec::new()),
        embed: Mutex::new(EmbedStats::default()),
    });
    let dimension = worker.embedder().dimension();
    let mut checked = HashSet::new();
    let mut recreated = HashSet::new();
    for job in &jobs {
        if !checked.insert((job.target.clone(), job.vector_name.clone())) {
            continue;
        }
        let vectors = VectorSpec {
            name: job.vector_name.clone(),
            dimension,
        };
        // A dry run writes nothing but still refuses a collection it could not write to;
        // --recreate drops a collection once, not again for its next vector.
        let mode = if opts.dry_run {
            Ensure::Check
        } else if opts.recreate && recreated.insert(job.target.clone()) {
            Ensure::Recreate
        } else {
            Ensure::Create
        };
        sink.ensure_collection(&job.target, &vectors, mode).await?;
    }
    if !opts.dry_run {
        CheckpointStore::open(sink.as_ref(), true).await?;
    }
    for job in &jobs {
        if let Some(n) = job.source.estimated_count().await {
            shared
                .stats
                .expected
                .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        }
    }

    // Jobs that write the same points (one source, one target, several named vectors) run one
    // after the other; all others concurrently.
    let mut groups: Vec<Vec<Job>> = Vec::new();
    for job in jobs {
        match groups.iter_mut().find(|g| {
            g[0].target == job.target && g[0].source.namespace() == job.source.namespace()
        }) {
            Some(g) => g.push(job),
            None => groups.push(vec![job]),
        }
    }
    let mut tasks = Vec::new();
    for group in groups {
        let (sink, worker, opts, shared) =
            (sink.clone(), worker.clone(), opts.clone(), shared.clone());
        tasks.push(tokio::spawn(async move {
            let mut reports = Vec::new();
            for job in group {
                let r = sync_namespace(
                    sink.clone(),
                    worker.clone(),
                    job,
                    opts.clone(),
                    shared.clone(),
                )
                .await?;
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
    let embed = *shared.embed.lock().expect("embed stats");
    Ok(RunReport {
        run_id: opts.run_id.clone(),
        started_at,
        finished_at: now_rfc3339(),
        seconds: started.elapsed().as_secs_f64(),
        dry_run: opts.dry_run,
        interrupted: *opts.stop.borrow(),
        counts: shared.stats.snapshot(),
        namespaces,
        failures: shared.failures.lock().expect("failures").clone(),
        embedding: EmbedStatsReport {
            texts: embed.texts,
            tokens: embed.tokens,
            padding_ratio: embed.padding_ratio(),
            tokenize_secs: embed.tokenize_secs,
            infer_secs: embed.infer_secs,
        },
    })
}

/// A document ready for embedding: its chunks with their point ids, the payload shared by its
/// points, and the hashes that say whether the stored points are current.
pub struct Prepared {
    pub chunks: Vec<(Uuid, String)>,
    pub payload: Map<String, Value>,
    /// Over model, settings and text: a change means embedding again.
    pub hash: String,
    /// Over the copied payload fields (`None` without any): a change alone means rewriting the
    /// payload, not embedding.
    pub payload_hash: Option<String>,
}

/// Documents on their way through embed and sink, in `_id` order.
struct Unit {
    docs: Vec<Prepared>,
    /// Documents whose text is current but whose copied payload changed.
    payload_only: Vec<Prepared>,
    /// Points that must go (surplus chunks, documents that lost their text).
    deletes: Vec<Uuid>,
    /// Last `_id` of the unit.
    last_id: Option<Bson>,
    counts: Counts,
}

struct EmbeddedUnit {
    points: Vec<Point>,
    payload_only: Vec<Prepared>,
    deletes: Vec<Uuid>,
    last_id: Option<Bson>,
    counts: Counts,
}

/// The settings a resume must match: what goes into the content hash, the model, and the
/// filter (which decides what a pass covers).
fn settings_hash(model: &str, job: &Job, opts: &SyncOptions) -> String {
    let parts = [model, &hash_context(job, opts), &job.filter_text];
    crate::ids::named_uuid("mongo2qdrant settings v1", &parts).to_string()
}

async fn sync_namespace<S: Sink>(
    sink: Arc<S>,
    worker: EmbedWorker,
    job: Job,
    opts: SyncOptions,
    shared: Arc<Shared>,
) -> Result<NamespaceReport, PipelineError> {
    let ns_text = job.source.namespace().to_string();
    let embedder = worker.embedder().clone();
    let model = embedder.model_id().to_owned();
    let settings = settings_hash(&model, &job, &opts);

    let store = CheckpointStore::open(sink.as_ref(), false).await?;
    let holder = crate::lease::Holder::me(&opts.run_id);
    let renewer = if sink.needs_lease() && !opts.dry_run {
        crate::lease::acquire(&store, &job.target, &ns_text, &holder).await?;
        Some(LeaseRenewer::start(
            sink.clone(),
            job.target.clone(),
            ns_text.clone(),
            holder.clone(),
        ))
    } else {
        None
    };
    let previous = if opts.fresh {
        None
    } else {
        store
            .load(&job.target, &ns_text, job.vector_name.as_deref())
            .await?
    };
    let after = previous
        .as_ref()
        .filter(|_| job.source.resumable())
        .and_then(|cp| cp.resume_after(&settings));
    let from_start = after.is_none();
    if let Some(a) = &after {
        tracing::info!(namespace = %ns_text, "resuming after _id {}", id_text(a));
    }
    let mut checkpoint = Checkpoint {
        target: job.target.clone(),
        namespace: ns_text.clone(),
        vector: job.vector_name.clone(),
        last_id: after.clone().map(Bson::into_canonical_extjson),
        complete: false,
        settings,
        run_id: opts.run_id.clone(),
        started_at: match (&previous, from_start) {
            (Some(cp), false) => cp.started_at.clone(),
            _ => now_rfc3339(),
        },
        updated_at: now_rfc3339(),
        model: model.clone(),
        dimension: embedder.dimension(),
        counts: Counts::default(),
    };

    let (doc_tx, doc_rx) = mpsc::channel::<SourceItem>(opts.batch_docs * 2);
    let (unit_tx, mut unit_rx) = mpsc::channel::<Unit>(2);
    let (out_tx, mut out_rx) = mpsc::channel::<EmbeddedUnit>(2);
    let seen: Arc<Mutex<HashSet<Uuid>>> = Arc::new(Mutex::new(HashSet::new()));

    let reader = tokio::spawn(read_source(
        job.source.clone(),
        after.clone(),
        doc_tx,
        opts.clone(),
    ));
    let prepare = tokio::spawn(prepare_units(
        sink.clone(),
        job.clone(),
        opts.clone(),
        shared.clone(),
        embedder.clone(),
        seen.clone(),
        doc_rx,
        unit_tx,
    ));

    // Embed: units in order through the shared worker thread.
    let embed = {
        let worker = worker.clone();
        let shared = shared.clone();
        let dry_run = opts.dry_run;
        tokio::spawn(async move {
            while let Some(unit) = unit_rx.recv().await {
                let mut counts = unit.counts;
                let texts: Vec<String> = unit
                    .docs
                    .iter()
                    .flat_map(|d| d.chunks.iter().map(|(_, t)| t.clone()))
                    .collect();
                counts.embedded = unit.docs.len() as u64;
                let mut points = Vec::with_capacity(texts.len());
                if !texts.is_empty() && !dry_run {
                    let (vectors, stats) = worker.embed(texts).await?;
                    shared.embed.lock().expect("embed stats").add(&stats);
                    let mut vectors = vectors.into_iter();
                    for doc in unit.docs {
                        for (i, (id, _)) in doc.chunks.into_iter().enumerate() {
                            let mut payload = doc.payload.clone();
                            payload.insert(keys::CHUNK.into(), Value::from(i));
                            points.push(Point {
                                id,
                                vector: vectors.next().expect("one vector per text"),
                                payload,
                            });
                        }
                    }
                }
                let out = EmbeddedUnit {
                    points,
                    payload_only: unit.payload_only,
                    deletes: unit.deletes,
                    last_id: unit.last_id,
                    counts,
                };
                if out_tx.send(out).await.is_err() {
                    break;
                }
            }
            Ok::<(), PipelineError>(())
        })
    };

    // Sink: upsert, delete, then advance the checkpoint, unit by unit.
    let mut totals = Counts::default();
    let mut sink_error = None;
    while let Some(unit) = out_rx.recv().await {
        let mut counts = unit.counts.clone();
        if !opts.dry_run {
            let result = match &job.vector_name {
                None => write_unit(sink.as_ref(), &job.target, &opts, &unit).await,
                Some(v) => write_named(sink.as_ref(), &job.target, v, &opts, &unit).await,
            };
            if let Err(e) = result {
                sink_error = Some(e);
                break;
            }
            counts.upserted = unit.points.len() as u64;
        }
        counts.deleted = unit.deletes.len() as u64;
        shared.stats.add(&counts);
        add_counts(&mut totals, &counts);
        if !opts.dry_run
            && let Some(last) = unit.last_id
        {
            checkpoint.last_id = Some(last.into_canonical_extjson());
            checkpoint.updated_at = now_rfc3339();
            checkpoint.counts = totals.clone();
            retry(
                &opts.retry,
                "checkpoint write",
                |e: &CheckpointError| matches!(e, CheckpointError::Sink(s) if s.is_transient()),
                || store.save(&checkpoint),
            )
            .await?;
            tracing::debug!(
                namespace = %ns_text,
                upserted = totals.upserted,
                read = totals.read,
                "checkpoint advanced"
            );
        }
    }
    drop(out_rx);
    if let Some(e) = sink_error {
        reader.abort();
        return Err(e.into());
    }
    let read_to_end = reader.await.expect("reader task panicked")?;
    prepare.await.expect("prepare task panicked")?;
    embed.await.expect("embed task panicked")?;

    let complete = read_to_end && !*opts.stop.borrow();
    let mut pruned = 0;
    if opts.prune {
        if complete && from_start && totals.failed == 0 {
            let seen = std::mem::take(&mut *seen.lock().expect("seen"));
            pruned = prune(sink.as_ref(), &job, &seen, &opts).await?;
            shared
                .stats
                .deleted
                .fetch_add(pruned, std::sync::atomic::Ordering::Relaxed);
            totals.deleted += pruned;
        } else {
            tracing::warn!(
                namespace = %ns_text,
                "not pruning: the pass {}",
                if !complete { "did not reach the end" } else if !from_start { "resumed from a checkpoint (rerun to prune after a full pass)" } else { "had failed documents" }
            );
        }
    }
    if !opts.dry_run {
        checkpoint.complete = complete;
        checkpoint.updated_at = now_rfc3339();
        checkpoint.counts = totals.clone();
        store.save(&checkpoint).await?;
        if let Some(r) = renewer {
            r.stop();
            crate::lease::release(&store, &job.target, &ns_text, &holder).await?;
        }
    }
    Ok(NamespaceReport {
        namespace: ns_text,
        target: job.target,
        vector: job.vector_name,
        counts: totals,
        complete,
        resumed_after: after.map(|a| id_text(&a)),
        pruned,
    })
}

/// Renews a server-side lease in the background while a namespace syncs.
struct LeaseRenewer {
    task: tokio::task::JoinHandle<()>,
}

impl LeaseRenewer {
    fn start<S: Sink>(
        sink: Arc<S>,
        target: String,
        namespace: String,
        holder: crate::lease::Holder,
    ) -> Self {
        let task = tokio::spawn(async move {
            let every = crate::lease::LEASE_TTL / 3;
            loop {
                tokio::time::sleep(every).await;
                let store = match CheckpointStore::open(sink.as_ref(), false).await {
                    Ok(s) => s,
                    Err(_) => continue,
                };
                if let Err(e) = crate::lease::renew(&store, &target, &namespace, &holder).await {
                    tracing::warn!("renewing the lease of {namespace} failed: {e}");
                }
            }
        });
        Self { task }
    }

    fn stop(self) {
        self.task.abort();
    }
}

impl Drop for LeaseRenewer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn add_counts(a: &mut Counts, b: &Counts) {
    a.read += b.read;
    a.embedded += b.embedded;
    a.skipped_unchanged += b.skipped_unchanged;
    a.skipped_no_text += b.skipped_no_text;
    a.payload_updated += b.payload_updated;
    a.upserted += b.upserted;
    a.deleted += b.deleted;
    a.failed += b.failed;
}

/// Write a unit of whole points (the collection's unnamed vector). Surplus chunks go first:
/// should the run die in between, chunk 0 still holds the old hash and chunk count, so the
/// rerun finds the surplus again.
async fn write_unit<S: Sink>(
    sink: &S,
    target: &str,
    opts: &SyncOptions,
    unit: &EmbeddedUnit,
) -> Result<(), SinkError> {
    if !unit.deletes.is_empty() {
        retry(&opts.retry, "delete", SinkError::is_transient, || {
            sink.delete(target, &unit.deletes)
        })
        .await?;
    }
    if !unit.points.is_empty() {
        retry(&opts.retry, "upsert", SinkError::is_transient, || {
            sink.upsert(target, None, unit.points.clone())
        })
        .await?;
    }
    write_payload_only(sink, target, None, opts, &unit.payload_only).await
}

/// Rewrite the payload of documents whose text is current, without embedding. Whole points get
/// their payload replaced point by point, chunk 0 last (its payload hash is what marks the
/// document current); a named vector's keys are merged into points that keep the other vectors'
/// keys.
async fn write_payload_only<S: Sink>(
    sink: &S,
    target: &str,
    vector: Option<&str>,
    opts: &SyncOptions,
    docs: &[Prepared],
) -> Result<(), SinkError> {
    for doc in docs {
        let ids: Vec<Uuid> = doc.chunks.iter().map(|(id, _)| *id).collect();
        if vector.is_some() {
            retry(&opts.retry, "set payload", SinkError::is_transient, || {
                sink.set_payload(target, &ids, doc.payload.clone(), false)
            })
            .await?;
            continue;
        }
        for (i, id) in ids.iter().enumerate().rev() {
            let mut payload = doc.payload.clone();
            payload.insert(keys::CHUNK.into(), Value::from(i));
            retry(&opts.retry, "set payload", SinkError::is_transient, || {
                sink.set_payload(target, std::slice::from_ref(id), payload.clone(), true)
            })
            .await?;
        }
    }
    Ok(())
}

/// Write a unit into the named vector `vector` of points that may carry other named vectors
/// (other jobs'): their vectors and payload stay. New points are inserted, existing ones get
/// this vector replaced; the content hash is set last, so a run that dies in between leaves the
/// old hash and the rerun writes the document again.
async fn write_named<S: Sink>(
    sink: &S,
    target: &str,
    vector: &str,
    opts: &SyncOptions,
    unit: &EmbeddedUnit,
) -> Result<(), SinkError> {
    remove_vector_from(sink, target, vector, &unit.deletes, opts).await?;
    write_payload_only(sink, target, Some(vector), opts, &unit.payload_only).await?;
    if unit.points.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = unit.points.iter().map(|p| p.id).collect();
    let existing: HashSet<Uuid> = retry(&opts.retry, "lookup", SinkError::is_transient, || {
        sink.retrieve(target, &ids, false)
    })
    .await?
    .into_iter()
    .map(|p| p.id)
    .collect();
    let hash_key = keys::hash(Some(vector));
    let (old, new): (Vec<&Point>, Vec<&Point>) =
        unit.points.iter().partition(|p| existing.contains(&p.id));
    let inserts: Vec<Point> = new
        .into_iter()
        .map(|p| {
            let mut p = p.clone();
            p.payload.remove(&hash_key);
            p
        })
        .collect();
    if !inserts.is_empty() {
        retry(&opts.retry, "upsert", SinkError::is_transient, || {
            sink.upsert(target, Some(vector), inserts.clone())
        })
        .await?;
    }
    let updates: Vec<(Uuid, Vec<f32>)> = old.iter().map(|p| (p.id, p.vector.clone())).collect();
    if !updates.is_empty() {
        retry(
            &opts.retry,
            "update vectors",
            SinkError::is_transient,
            || sink.update_vectors(target, vector, updates.clone()),
        )
        .await?;
    }
    // One payload per document (its chunks differ only in `chunk`, which a point id fixes).
    let mut i = 0;
    while i < unit.points.len() {
        let mut payload = unit.points[i].payload.clone();
        payload.remove(keys::CHUNK);
        let same = |p: &Point| {
            p.payload.len() == payload.len() + 1
                && p.payload
                    .iter()
                    .all(|(k, v)| k == keys::CHUNK || payload.get(k) == Some(v))
        };
        let n = unit.points[i..]
            .iter()
            .take_while(|p| same(p))
            .count()
            .max(1);
        let group = &ids[i..i + n];
        retry(&opts.retry, "set payload", SinkError::is_transient, || {
            sink.set_payload(target, group, payload.clone(), false)
        })
        .await?;
        i += n;
    }
    Ok(())
}

/// Take the named vector `vector` (and its hash and chunk count) off the points `ids`; a point
/// left without any vector is deleted.
async fn remove_vector_from<S: Sink>(
    sink: &S,
    target: &str,
    vector: &str,
    ids: &[Uuid],
    opts: &SyncOptions,
) -> Result<(), SinkError> {
    if ids.is_empty() {
        return Ok(());
    }
    let stored = retry(&opts.retry, "lookup", SinkError::is_transient, || {
        sink.retrieve(target, ids, true)
    })
    .await?;
    let (alone, shared): (Vec<StoredPoint>, Vec<StoredPoint>) = stored
        .into_iter()
        .partition(|p| p.vectors.iter().all(|n| n == vector));
    let alone: Vec<Uuid> = alone.into_iter().map(|p| p.id).collect();
    let shared: Vec<Uuid> = shared.into_iter().map(|p| p.id).collect();
    let keys = [keys::hash(Some(vector)), keys::chunks(Some(vector))];
    if !shared.is_empty() {
        retry(
            &opts.retry,
            "remove vector",
            SinkError::is_transient,
            || sink.remove_vector(target, vector, &shared, &keys),
        )
        .await?;
    }
    if !alone.is_empty() {
        retry(&opts.retry, "delete", SinkError::is_transient, || {
            sink.delete(target, &alone)
        })
        .await?;
    }
    Ok(())
}

/// Remove from the job's target what this complete pass did not produce for its namespace: the
/// points, or for a named vector that vector (points keep the other jobs' vectors).
async fn prune<S: Sink>(
    sink: &S,
    job: &Job,
    keep: &HashSet<Uuid>,
    opts: &SyncOptions,
) -> Result<u64, SinkError> {
    let target = job.target.as_str();
    if !sink.exists(target).await? {
        return Ok(0);
    }
    let filter = MatchFilter {
        key: keys::NAMESPACE.into(),
        value: job.source.namespace().to_string(),
    };
    let stale: Vec<Uuid> = scroll_all(sink, target, Some(&filter))
        .await?
        .into_iter()
        .filter(|p| !keep.contains(&p.id) && job.owns(&p.payload))
        .map(|p| p.id)
        .collect();
    if !opts.dry_run {
        for ids in stale.chunks(512) {
            match &job.vector_name {
                None => {
                    retry(&opts.retry, "prune", SinkError::is_transient, || {
                        sink.delete(target, ids)
                    })
                    .await?
                }
                Some(v) => remove_vector_from(sink, target, v, ids, opts).await?,
            }
        }
    }
    Ok(stale.len() as u64)
}

/// Reader: the source into the bounded channel, retrying transient errors right after the last
/// `_id` sent. Returns whether the source was read to its end (not stopped).
async fn read_source(
    source: Source,
    after: Option<Bson>,
    tx: mpsc::Sender<SourceItem>,
    opts: SyncOptions,
) -> Result<bool, PipelineError> {
    let mut stop = opts.stop.clone();
    let mut last: Option<Bson> = None;
    let mut attempt = 0;
    loop {
        let from = last.clone().or_else(|| after.clone());
        let outcome = tokio::select! {
            r = source.stream(from.as_ref(), &tx, &mut last) => r,
            _ = stop.wait_for(|s| *s) => return Ok(false),
        };
        match outcome {
            Ok(_) => return Ok(true),
            Err(SourceError::Closed) => return Ok(false),
            Err(e)
                if e.is_transient() && source.resumable() && attempt + 1 < opts.retry.attempts =>
            {
                attempt += 1;
                let d = opts.retry.delay(attempt);
                tracing::warn!(
                    "reading {} failed ({e}); retry {attempt} in {d:?}",
                    source.namespace()
                );
                tokio::time::sleep(d).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// What is hashed besides the model and the text: anything that changes the points.
pub fn hash_context(job: &Job, opts: &SyncOptions) -> String {
    format!(
        "{}|payload={:?}|chunk={:?}|vector={:?}",
        job.template.source(),
        job.payload_fields,
        opts.chunking.map(|c| (c.size, c.overlap)),
        job.vector_name
    )
}

/// Text, chunks, point ids, payload and content hash of one document; `None` without text.
pub fn prepare_doc(
    job: &Job,
    model: &str,
    hash_context: &str,
    chunking: Option<Chunking>,
    embedder: &dyn crate::embed::Embedder,
    doc: &crate::source::SourceDoc,
) -> Option<Prepared> {
    let ns = job.source.namespace();
    let text = job.template.render(&doc.doc)?;
    let mut payload = payload_fields(&doc.doc, &job.payload_fields);
    let hash = content_hash(model, hash_context, &text);
    let payload_hash = (!payload.is_empty())
        .then(|| crate::ids::payload_hash(&Value::Object(payload.clone()).to_string()));
    let pieces = match chunking {
        Some(c) => embedder.chunk(&text, c.size, c.overlap),
        None => vec![text],
    };
    let vector = job.vector_name.as_deref();
    if vector.is_some() {
        // A named vector's payload is merged into the point's: a field the document lost must
        // be overwritten (null), not left with its old value.
        for f in &job.payload_fields {
            payload.entry(f.clone()).or_insert(Value::Null);
        }
    }
    payload.insert(keys::NAMESPACE.into(), Value::String(ns.to_string()));
    payload.insert(keys::ID.into(), doc.id.clone().into_relaxed_extjson());
    payload.insert(keys::hash(vector), Value::String(hash.clone()));
    if let Some(h) = &payload_hash {
        payload.insert(keys::payload_hash(vector), Value::String(h.clone()));
    }
    payload.insert(keys::chunks(vector), Value::from(pieces.len()));
    let chunks = pieces
        .into_iter()
        .enumerate()
        .map(|(i, t)| (point_id(&ns.database, &ns.collection, &doc.id, i as u32), t))
        .collect();
    Some(Prepared {
        chunks,
        payload,
        hash,
        payload_hash,
    })
}

/// What chunk 0 of a stored document says about it (for one vector).
struct StoredState {
    hash: Option<String>,
    chunks: u32,
    payload_hash: Option<String>,
}

struct Candidate {
    id: Bson,
    first: Uuid,
    /// The prepared document; `None` when it has no text.
    prepared: Option<Prepared>,
}

/// Prepare: documents into units with text, ids and hashes; unchanged ones are settled here
/// with one lookup per unit.
#[allow(clippy::too_many_arguments)]
async fn prepare_units<S: Sink>(
    sink: Arc<S>,
    job: Job,
    opts: SyncOptions,
    shared: Arc<Shared>,
    embedder: Arc<dyn crate::embed::Embedder>,
    seen: Arc<Mutex<HashSet<Uuid>>>,
    mut rx: mpsc::Receiver<SourceItem>,
    tx: mpsc::Sender<Unit>,
) -> Result<(), PipelineError> {
    let ns = job.source.namespace().clone();
    let ns_text = ns.to_string();
    let model = embedder.model_id().to_owned();
    let hash_context = hash_context(&job, &opts);
    let vector = job.vector_name.as_deref();
    let (hash_key, chunks_key, payload_hash_key) = (
        keys::hash(vector),
        keys::chunks(vector),
        keys::payload_hash(vector),
    );
    let target_exists = sink.exists(&job.target).await?;
    let mut items = Vec::with_capacity(opts.batch_docs);
    loop {
        items.clear();
        while items.len() < opts.batch_docs {
            let room = opts.batch_docs - items.len();
            if rx.recv_many(&mut items, room).await == 0 {
                break;
            }
        }
        if items.is_empty() {
            return Ok(());
        }
        let mut unit = Unit {
            docs: Vec::new(),
            payload_only: Vec::new(),
            deletes: Vec::new(),
            last_id: None,
            counts: Counts::default(),
        };
        let mut candidates = Vec::with_capacity(items.len());
        for item in items.drain(..) {
            unit.counts.read += 1;
            let doc = match item {
                SourceItem::Bad { at, reason } => {
                    unit.counts.failed += 1;
                    shared.fail(&ns_text, at, reason);
                    continue;
                }
                SourceItem::Doc(d) => d,
            };
            unit.last_id = Some(doc.id.clone());
            let first = point_id(&ns.database, &ns.collection, &doc.id, 0);
            let prepared = prepare_doc(
                &job,
                &model,
                &hash_context,
                opts.chunking,
                embedder.as_ref(),
                &doc,
            );
            if prepared.is_none() {
                unit.counts.skipped_no_text += 1;
            }
            candidates.push(Candidate {
                id: doc.id,
                first,
                prepared,
            });
        }

        // One lookup per unit: stored hash and chunk count of each document's chunk 0.
        let stored = if target_exists || !opts.dry_run {
            let ids: Vec<Uuid> = candidates.iter().map(|c| c.first).collect();
            retry(&opts.retry, "hash lookup", SinkError::is_transient, || {
                sink.retrieve(&job.target, &ids, false)
            })
            .await?
        } else {
            Vec::new()
        };
        // A point of a named vector may exist for another job's vector only: then it holds
        // neither hash nor chunk count of this one.
        let text = |p: &Map<String, Value>, key: &str| {
            p.get(key).and_then(Value::as_str).map(str::to_owned)
        };
        let stored: std::collections::HashMap<Uuid, StoredState> = stored
            .into_iter()
            .map(|p| {
                let hash = text(&p.payload, &hash_key);
                let chunks = p
                    .payload
                    .get(&chunks_key)
                    .and_then(Value::as_u64)
                    .unwrap_or(u64::from(hash.is_some())) as u32;
                let payload_hash = text(&p.payload, &payload_hash_key);
                let state = StoredState {
                    hash,
                    chunks,
                    payload_hash,
                };
                (p.id, state)
            })
            .collect();

        for c in candidates {
            let old = stored.get(&c.first);
            let old_n = old.map_or(0, |s| s.chunks);
            let new_n = c.prepared.as_ref().map_or(0, |d| d.chunks.len() as u32);
            // Surplus chunks of a document that shrank or lost its text.
            unit.deletes
                .extend((new_n..old_n).map(|i| point_id(&ns.database, &ns.collection, &c.id, i)));
            let Some(doc) = c.prepared else {
                continue;
            };
            if opts.prune {
                seen.lock()
                    .expect("seen")
                    .extend(doc.chunks.iter().map(|(id, _)| *id));
            }
            let text_current = old
                .is_some_and(|s| s.hash.as_deref() == Some(doc.hash.as_str()) && s.chunks == new_n);
            if !text_current {
                unit.docs.push(doc);
            } else if old.is_some_and(|s| s.payload_hash == doc.payload_hash) {
                unit.counts.skipped_unchanged += 1;
            } else {
                unit.counts.payload_updated += 1;
                unit.payload_only.push(doc);
            }
        }
        if tx.send(unit).await.is_err() {
            return Ok(());
        }
    }
}
