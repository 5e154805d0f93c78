//! The stages of one namespace's pass: [`read`] the source into a bounded channel, the
//! preparer ([`super::prepare`]) turns documents into units (text, ids, hashes, and the
//! unchanged check against the target), [`embed`] runs the model on what changed.

use std::sync::Arc;

use mongodb::bson::Bson;
use serde_json::Value;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::{PipelineError, SyncOptions};
use crate::embed::worker::EmbedWorker;
use crate::point::{Prepared, keys};
use crate::report::{Counts, RunLog};
use crate::sink::Point;
use crate::source::{Source, SourceError, SourceItem};
use crate::sparse::SparseSpec;
use crate::writer::Writes;

/// Documents on their way to the embedder, in `_id` order.
pub(super) struct Unit {
    /// Documents to embed.
    pub(super) docs: Vec<Prepared>,
    /// Documents whose text is current but whose copied payload changed.
    pub(super) payload_only: Vec<Prepared>,
    /// Documents whose dense vectors are current but whose sparse vectors are not: they get
    /// new sparse vectors and then go the payload-only way (which writes the sparse hash).
    pub(super) sparse_stale: Vec<Prepared>,
    /// Surplus chunks of documents that shrank: they go with the unit.
    pub(super) deletes: Vec<Uuid>,
    /// Points of documents that lost their text: they go at the end of a complete pass, after
    /// the mass-deletion guard ([`super::guard`]).
    pub(super) lost: Vec<Uuid>,
    /// Last `_id` of the unit.
    pub(super) last_id: Option<Bson>,
    /// Chunk 0 of the unit's last document whose stored points are current for this vector
    /// (unchanged, or only its payload changed): it can anchor the checkpoint.
    pub(super) current: Option<Uuid>,
    /// `_id`s of documents that failed (their stored points stay as they are): `watch` owes
    /// them another try.
    pub(super) failed: Vec<Bson>,
    pub(super) counts: Counts,
}

/// A unit ready for the writer.
pub(super) struct EmbeddedUnit {
    pub writes: Writes,
    pub lost: Vec<Uuid>,
    pub last_id: Option<Bson>,
    /// See [`Unit::current`].
    pub current: Option<Uuid>,
    pub counts: Counts,
}

/// Read the source into `tx`, retrying transient errors right after the last `_id` sent.
/// Returns whether the source was read to its end (not stopped).
pub(super) async fn read(
    source: Source,
    after: Option<Bson>,
    tx: mpsc::Sender<SourceItem>,
    opts: SyncOptions,
) -> Result<bool, PipelineError> {
    let mut stop = opts.stop.clone();
    let mut last: Option<Bson> = None;
    // Consecutive failures: a failure after progress (documents sent since the one before)
    // starts the count anew, so isolated drops over a long pass do not add up to its end.
    let mut attempt = 0;
    loop {
        let from = last.clone().or_else(|| after.clone());
        let before = last.clone();
        let outcome = tokio::select! {
            r = source.stream(from.as_ref(), &tx, &mut last, opts.shard) => r,
            _ = stop.wait_for(|s| *s) => return Ok(false),
        };
        // Progress by canonical bytes: a NaN `_id` is not equal to itself.
        let key = |id: &Option<Bson>| id.as_ref().map(crate::ids::canonical_id_bytes);
        if key(&last) != key(&before) {
            attempt = 0;
        }
        match outcome {
            Ok(_) => return Ok(true),
            Err(SourceError::Closed) => return Ok(false),
            Err(e) if source.resumable() && opts.retry.allows(attempt, &e) => {
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

/// Embed each unit's changed documents on the shared worker, in order.
pub(super) async fn embed(
    worker: EmbedWorker,
    log: Arc<RunLog>,
    dry_run: bool,
    sparse: Option<SparseSpec>,
    mut rx: mpsc::Receiver<Unit>,
    tx: mpsc::Sender<EmbeddedUnit>,
) -> Result<(), PipelineError> {
    while let Some(unit) = rx.recv().await {
        let out = embed_unit(&worker, &log, dry_run, sparse.as_ref(), unit).await?;
        if tx.send(out).await.is_err() {
            break;
        }
    }
    Ok(())
}

/// Embed one unit's changed documents (none in a dry run): its points, ready for the writer.
/// With a sparse vector, every point gets its BM25 vector too, and documents whose only stale
/// part is the sparse vector get just that.
pub(super) async fn embed_unit(
    worker: &EmbedWorker,
    log: &RunLog,
    dry_run: bool,
    sparse: Option<&SparseSpec>,
    unit: Unit,
) -> Result<EmbeddedUnit, PipelineError> {
    let mut counts = unit.counts;
    counts.embedded = unit.docs.len() as u64;
    let texts: Vec<String> = unit
        .docs
        .iter()
        .flat_map(|d| d.chunks.iter().map(|(_, t)| t.clone()))
        .collect();
    let mut points = Vec::with_capacity(texts.len());
    let mut sparse_updates = Vec::new();
    let mut payload_only = unit.payload_only;
    if dry_run {
        counts.payload_updated += unit.sparse_stale.len() as u64;
    } else {
        let sparse_texts = |docs: &[Prepared]| -> Vec<String> {
            docs.iter()
                .flat_map(|d| d.sparse.iter().flat_map(|s| s.texts.iter().cloned()))
                .collect()
        };
        let sparse_only = sparse.is_some_and(|s| !s.dense);
        let mut dense = Vec::new();
        if !texts.is_empty() && !sparse_only {
            let (vectors, stats) = worker.embed(texts).await?;
            log.embedded(&stats);
            dense = vectors;
        }
        let mut dense = dense.into_iter();
        let (mut fresh, mut stale) = (Vec::new().into_iter(), Vec::new().into_iter());
        if let Some(s) = sparse {
            fresh = crate::sparse::documents(s.bm25.clone(), sparse_texts(&unit.docs))
                .await
                .into_iter();
            stale = crate::sparse::documents(s.bm25.clone(), sparse_texts(&unit.sparse_stale))
                .await
                .into_iter();
        }
        for doc in unit.docs {
            for (i, (id, _)) in doc.chunks.into_iter().enumerate() {
                let mut payload = doc.payload.clone();
                payload.insert(keys::CHUNK.into(), Value::from(i));
                points.push(Point {
                    id,
                    vector: match sparse_only {
                        true => Vec::new(),
                        false => dense.next().expect("one vector per text"),
                    },
                    sparse: sparse.map(|s| (s.name.clone(), fresh.next().expect("one per text"))),
                    payload,
                });
            }
        }
        for doc in unit.sparse_stale {
            for (id, _) in &doc.chunks {
                sparse_updates.push((*id, stale.next().expect("one per text")));
            }
            counts.payload_updated += 1;
            payload_only.push(doc);
        }
    }
    Ok(EmbeddedUnit {
        writes: Writes {
            points,
            payload_only,
            deletes: unit.deletes,
            sparse: sparse_updates,
        },
        lost: unit.lost,
        last_id: unit.last_id,
        current: unit.current,
        counts,
    })
}
