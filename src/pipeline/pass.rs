//! One pass of one job: read, prepare, embed and write wired together through bounded
//! channels, the cursor advanced unit by unit after the target acknowledged, then the deletions
//! the pass may make and the final checkpoint.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use tokio::sync::{mpsc, watch};
use uuid::Uuid;

use super::leased::still_held;
use super::prepare::Preparer;
use super::stages::{self, EmbeddedUnit, Unit};
use super::{PipelineError, SyncOptions, guard, prune};
use crate::embed::worker::EmbedWorker;
use crate::point::{Job, settings_hash};
use crate::report::{Counts, NamespaceReport, RunLog};
use crate::sink::Sink;
use crate::source::{SourceItem, id_text};
use crate::state::checkpoint::PassKey;
use crate::state::{Cursor, StateStore};
use crate::writer::Writer;

/// What identifies `job`'s pass under `opts` with `embedder`.
pub(super) fn pass_key(
    job: &Job,
    opts: &SyncOptions,
    embedder: &dyn crate::embed::Embedder,
) -> PassKey {
    let model = job.model_id(embedder.model_id());
    let dimension = if job.sparse_only() {
        0
    } else {
        embedder.dimension()
    };
    PassKey {
        target: job.target.clone(),
        namespace: job.source.namespace().to_string(),
        vector: job.vector_name.clone(),
        settings: settings_hash(&model, job, opts.chunking),
        shard: opts.shard,
        model,
        dimension,
        run_id: opts.run_id.clone(),
    }
}

/// One pass of one job: the stages wired together, then deletions and the final checkpoint.
/// `lease` (a server target) says when the lease was lost: writes stop there.
pub(super) async fn pass<S: Sink>(
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
    let writer = (!opts.dry_run).then(|| Writer::of(sink.as_ref(), &job));

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
        job.sparse.clone(),
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
            // The unit's last written point anchors the checkpoint to this target collection.
            let anchor = match &writer {
                Some(_) => unit.writes.points.last().map(|p| p.id).or(unit.current),
                None => None,
            };
            cursor.advance(last, anchor, &totals).await?;
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
            .map_or(opts.max_delete, |s| opts.max_delete.per_shard(s.count));
        limit.check(&job.route(), &doomed).map_err(|mut e| {
            if let (Some(s), guard::MaxDelete::Count(n)) = (opts.shard, opts.max_delete) {
                e.why.push_str(&format!(
                    "; shard {s} may delete {limit} of the namespace's {n} (each of {} shards its part, so that together they never pass it): prune without --shard, or raise --max-delete",
                    s.count
                ));
            }
            e
        })?;
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
