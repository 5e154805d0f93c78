//! `watch`'s micro-batches: the changed documents read again and every job's points made to
//! agree with them. A document that fails (a payload the target cannot return, BSON that cannot
//! be decoded) keeps its stored points as they were and is owed: kept with the stream's
//! position, tried again at the next start, dropped once a later change applied it.

use super::*;
use crate::source::id_order::{id_from_text, id_key};

/// Most owed documents kept with the stream's position; beyond it the next start runs a full
/// pass instead (which reads every document again; it prunes nothing it would not have).
const MAX_OWED: usize = 10_000;

impl<S: Sink> Watcher<S> {
    /// Apply the documents `ids` to every job; the `_id`s of those that failed.
    pub(super) async fn apply_all(
        &self,
        ids: &[Bson],
        lease: &Option<watch::Receiver<Option<String>>>,
        totals: &mut [Counts],
    ) -> Result<Vec<Bson>, PipelineError> {
        let mut failed = Vec::new();
        for (job, t) in self.group.iter().zip(totals.iter_mut()) {
            let (counts, f) = self.apply(job, ids, lease).await?;
            t.add(&counts);
            failed.extend(f);
        }
        Ok(failed)
    }

    /// The owed documents after `ids` were applied and `failed` of them failed (to be stored
    /// with the next position).
    pub(super) fn settle(&self, state: &mut WatchState, ids: &[Bson], failed: Vec<Bson>) {
        use crate::ids::id_digest;
        let applied: std::collections::HashSet<[u8; 32]> = ids.iter().map(id_digest).collect();
        let mut owed: Vec<Bson> = owed_ids(state)
            .into_iter()
            .filter(|id| !applied.contains(&id_digest(id)))
            .collect();
        let mut kept: std::collections::HashSet<[u8; 32]> = owed.iter().map(id_digest).collect();
        if !failed.is_empty() {
            tracing::warn!(
                namespace = %state.namespace,
                "{} document(s) failed (see the errors above): their points stay as they were; they are owed and tried again at the next start, or applied with their next change",
                failed.len()
            );
        }
        for id in failed {
            if kept.insert(id_digest(&id)) {
                owed.push(id);
            }
        }
        if owed.len() > MAX_OWED {
            tracing::error!(
                namespace = %state.namespace,
                "more than {MAX_OWED} documents owed: the next start runs a full pass instead"
            );
            owed.clear();
            state.repass = true;
        }
        state.owed = owed.iter().map(id_key).collect();
    }

    /// Try the documents owed by earlier runs again.
    pub(super) async fn retry_owed(
        &self,
        state: &mut WatchState,
        lease: &Option<watch::Receiver<Option<String>>>,
        totals: &mut [Counts],
    ) -> Result<(), PipelineError> {
        let ids = owed_ids(state);
        if ids.is_empty() {
            return Ok(());
        }
        tracing::info!(namespace = %state.namespace, "trying {} owed document(s) again", ids.len());
        let failed = self.apply_all(&ids, lease, totals).await?;
        self.settle(state, &ids, failed);
        Ok(())
    }

    /// Make `job`'s points of the documents `ids` agree with their current versions: written
    /// where they match the filter (unchanged text costs no embedding, an unchanged document
    /// no write), removed where they are gone or left the filter. Also the `_id`s that failed.
    async fn apply(
        &self,
        job: &Job,
        ids: &[Bson],
        lease: &Option<watch::Receiver<Option<String>>>,
    ) -> Result<(Counts, Vec<Bson>), PipelineError> {
        let (items, gone) = self.fetch(&job.source, ids).await?;
        // A document that cannot be decoded is named by its `_id`'s text (relaxed Extended
        // JSON): the id of the batch that is equal to it (`5` and `5.0` are one document).
        let mut failed: Vec<Bson> = items
            .iter()
            .filter_map(|item| match item {
                SourceItem::Bad { at, .. } => {
                    let named = crate::ids::id_digest(&id_from_text(at)?);
                    ids.iter()
                        .find(|id| crate::ids::id_digest(id) == named)
                        .cloned()
                }
                SourceItem::Doc(_) => None,
            })
            .collect();
        let preparer = Preparer {
            sink: self.sink.clone(),
            job: job.clone(),
            opts: SyncOptions {
                prune: false,
                deep: false,
                ..self.opts.clone()
            },
            log: self.log.clone(),
            embedder: self.worker.embedder().clone(),
            seen: Default::default(),
            sampled: Default::default(),
        };
        let mut unit = preparer.unit(items.into_iter(), true).await?;
        failed.append(&mut unit.failed);
        let gone_points = preparer.stored_points(&gone).await?;
        let mut out =
            stages::embed_unit(&self.worker, &self.log, false, job.sparse.as_ref(), unit).await?;
        if !out.lost.is_empty() {
            // Documents that now render no text (a projection or template that misses the
            // field) lose their points under --max-delete, as in a pass.
            let total = if self.lost_text.needs_total(&job.route()) {
                let points =
                    super::super::prune::namespace_points(self.sink.as_ref(), job, None, |_| false)
                        .await?;
                Some(points.len() as u64)
            } else {
                None
            };
            let n = out.lost.len() as u64;
            self.lost_text
                .take(self.opts.max_delete, &job.route(), n, total)?;
        }
        out.lost.extend(gone_points);
        still_held(lease)?;
        let writer = Writer::of(self.sink.as_ref(), job);
        writer.write(&out.writes).await?;
        writer.remove(&out.lost).await?;
        let mut counts = out.counts;
        counts.upserted = out.writes.points.len() as u64;
        counts.deleted = (out.writes.deletes.len() + out.lost.len()) as u64;
        self.log.stats.add(&counts);
        Ok((counts, failed))
    }

    /// The current versions of `ids` in `source` (matching its filter) and those gone, with
    /// transient errors retried.
    async fn fetch(
        &self,
        source: &Source,
        ids: &[Bson],
    ) -> Result<(Vec<SourceItem>, Vec<Bson>), PipelineError> {
        let Source::Mongo(mongo) = source else {
            return Err(SourceError::NoChangeStream(source.describe()).into());
        };
        let what = format!("reading changed documents of {}", mongo.namespace);
        Ok(self.opts.retry.run(&what, || mongo.fetch(ids)).await?)
    }
}

/// The owed `_id`s stored in `state`.
fn owed_ids(state: &WatchState) -> Vec<Bson> {
    state.owed.iter().filter_map(|t| id_from_text(t)).collect()
}
