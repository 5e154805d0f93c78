//! Prepare: a pass's documents into units with text, ids and hashes; documents whose stored
//! points are current are settled here with one lookup per unit (no embedding, no write).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use mongodb::bson::Bson;
use serde_json::{Map, Value};
use tokio::sync::mpsc;
use uuid::Uuid;

use super::stages::Unit;
use super::{PipelineError, SyncOptions};
use crate::embed::Embedder;
use crate::ids::point_id;
use crate::point::{Job, Prepared, hash_context, keys, prepare_doc};
use crate::report::{Counts, RunLog};
use crate::sink::{Fields, Sink, depth};
use crate::source::SourceItem;

/// What chunk 0 of a stored document says about it (for one vector).
struct StoredState {
    hash: Option<String>,
    chunks: u32,
    payload_hash: Option<String>,
    /// The sparse vector's own hash (a job with a dense and a sparse vector).
    sparse_hash: Option<String>,
}

struct Candidate {
    id: Bson,
    first: Uuid,
    /// The prepared document; `None` when it has no text.
    prepared: Option<Prepared>,
}

/// Prepare: documents into units with text, ids and hashes; unchanged ones are settled here
/// with one lookup per unit.
pub(super) struct Preparer<S> {
    pub sink: Arc<S>,
    pub job: Job,
    pub opts: SyncOptions,
    pub log: Arc<RunLog>,
    pub embedder: Arc<dyn Embedder>,
    /// Point ids this pass produced (for prune).
    pub seen: Arc<Mutex<HashSet<Uuid>>>,
    /// Documents whose vectors were compared with the model's (`--deep --sample N`).
    pub sampled: std::sync::atomic::AtomicUsize,
}

impl<S: Sink> Preparer<S> {
    pub async fn run(
        self,
        mut rx: mpsc::Receiver<SourceItem>,
        tx: mpsc::Sender<Unit>,
    ) -> Result<(), PipelineError> {
        let batch = self.opts.batch_docs;
        let target_exists = !(self.opts.target_rebuilt && self.opts.dry_run)
            && self.sink.exists(&self.job.target).await?;
        let mut items = Vec::with_capacity(batch);
        loop {
            items.clear();
            while items.len() < batch {
                let room = batch - items.len();
                if rx.recv_many(&mut items, room).await == 0 {
                    break;
                }
            }
            if items.is_empty() {
                return Ok(());
            }
            let unit = self.unit(items.drain(..), target_exists).await?;
            if tx.send(unit).await.is_err() {
                return Ok(());
            }
        }
    }

    /// One unit from `items`: each document prepared and compared with what the target holds.
    pub(super) async fn unit(
        &self,
        items: impl Iterator<Item = SourceItem>,
        target_exists: bool,
    ) -> Result<Unit, PipelineError> {
        let job = &self.job;
        let ns = job.source.namespace();
        let ns_text = ns.to_string();
        let model = self.embedder.model_id().to_owned();
        let context = hash_context(job, self.opts.chunking);
        let mut unit = Unit {
            docs: Vec::new(),
            payload_only: Vec::new(),
            sparse_stale: Vec::new(),
            deletes: Vec::new(),
            lost: Vec::new(),
            last_id: None,
            current: None,
            failed: Vec::new(),
            counts: Counts::default(),
        };
        let mut candidates = Vec::new();
        for item in items {
            unit.counts.read += 1;
            let doc = match item {
                SourceItem::Bad { at, reason } => {
                    unit.counts.failed += 1;
                    self.log.fail(&ns_text, at, reason);
                    continue;
                }
                SourceItem::Doc(d) => d,
            };
            unit.last_id = Some(doc.id.clone());
            let first = point_id(&ns.database, &ns.collection, &doc.id, 0);
            let prepared = prepare_doc(
                job,
                &model,
                &context,
                self.opts.chunking,
                self.embedder.as_ref(),
                &doc,
            );
            if prepared.is_none() {
                unit.counts.skipped_no_text += 1;
            }
            if let Some(reason) = prepared.as_ref().and_then(|p| self.unreadable(p)) {
                // Written, it could never be read back: every later run, verify and search
                // would fail on it. Its stored points stay as they are (and prune waits).
                unit.counts.failed += 1;
                self.log
                    .fail(&ns_text, crate::source::id_text(&doc.id), reason);
                unit.failed.push(doc.id);
                continue;
            }
            candidates.push(Candidate {
                id: doc.id,
                first,
                prepared,
            });
        }

        let stored = if target_exists || !self.opts.dry_run {
            let ids: Vec<Uuid> = candidates.iter().map(|c| c.first).collect();
            self.stored_states(&ids).await?
        } else {
            HashMap::new()
        };
        // Documents whose hashes say current, with whether their payload hash is: `--deep`
        // looks at their points before believing it.
        let mut current: Vec<(Prepared, bool)> = Vec::new();
        for c in candidates {
            let old = stored.get(&c.first);
            let old_n = old.map_or(0, |s| s.chunks);
            let new_n = c.prepared.as_ref().map_or(0, |d| d.chunks.len() as u32);
            let ids = (new_n..old_n).map(|i| point_id(&ns.database, &ns.collection, &c.id, i));
            let Some(doc) = c.prepared else {
                // A document that lost its text: all its points.
                unit.lost.extend(ids);
                continue;
            };
            // Surplus chunks of a document that shrank.
            unit.deletes.extend(ids);
            if self.opts.prune {
                self.seen
                    .lock()
                    .expect("seen")
                    .extend(doc.chunks.iter().map(|(id, _)| *id));
            }
            let text_current = old
                .is_some_and(|s| s.hash.as_deref() == Some(doc.hash.as_str()) && s.chunks == new_n);
            let sparse_current = self.job.sparse_hash_key().is_none()
                || old.and_then(|s| s.sparse_hash.as_deref())
                    == doc.sparse.as_ref().map(|s| s.hash.as_str());
            if !text_current {
                unit.docs.push(doc);
            } else if !sparse_current {
                // Its points hold a current dense vector: it can anchor the checkpoint.
                unit.current = doc.chunks.first().map(|(id, _)| *id).or(unit.current);
                unit.sparse_stale.push(doc);
            } else {
                let payload_current = old.is_some_and(|s| s.payload_hash == doc.payload_hash);
                current.push((doc, payload_current));
            }
        }
        // A document whose copied fields changed goes the payload-only way: its old payload
        // is no defect (its vectors are looked at on the next run).
        let deep: Vec<&Prepared> = current
            .iter()
            .filter(|(_, payload_current)| *payload_current)
            .map(|(d, _)| d)
            .collect();
        let mut defects = if self.opts.deep && !deep.is_empty() {
            self.defects(deep.into_iter()).await?.into_iter()
        } else {
            Vec::new().into_iter()
        };
        let defects: Vec<Option<String>> = current
            .iter()
            .map(|(_, payload_current)| {
                if *payload_current {
                    defects.next().flatten()
                } else {
                    None
                }
            })
            .collect();
        for ((doc, payload_current), defect) in current.into_iter().zip(defects) {
            if let Some(why) = defect {
                let at = doc
                    .payload
                    .get(keys::ID)
                    .map(Value::to_string)
                    .unwrap_or_default();
                tracing::info!(namespace = %ns_text, "repairing _id {at}: {why}");
                unit.counts.repaired += 1;
                unit.docs.push(doc);
            } else if payload_current {
                unit.counts.skipped_unchanged += 1;
                unit.current = doc.chunks.first().map(|(id, _)| *id).or(unit.current);
            } else {
                unit.counts.payload_updated += 1;
                unit.current = doc.chunks.first().map(|(id, _)| *id).or(unit.current);
                unit.payload_only.push(doc);
            }
        }
        self.whole_for_sparse(&mut unit).await?;
        Ok(unit)
    }

    /// A document whose sparse vectors alone are stale gets them written into its points; one
    /// of those points missing (removed behind this tool's back) would fail that write on every
    /// run, so such a document is written whole again instead.
    async fn whole_for_sparse(&self, unit: &mut Unit) -> Result<(), PipelineError> {
        if unit.sparse_stale.is_empty() || self.opts.dry_run {
            return Ok(());
        }
        let ids: Vec<Uuid> = unit
            .sparse_stale
            .iter()
            .flat_map(|d| d.chunks.iter().map(|(id, _)| *id))
            .collect();
        let there: HashSet<Uuid> = self
            .sink
            .retrieve(&self.job.target, &ids, Fields::Only(&[]), false)
            .await?
            .into_iter()
            .map(|p| p.id)
            .collect();
        let (whole, sparse): (Vec<Prepared>, Vec<Prepared>) = unit
            .sparse_stale
            .drain(..)
            .partition(|d| d.chunks.iter().any(|(id, _)| !there.contains(id)));
        unit.sparse_stale = sparse;
        unit.counts.repaired += whole.len() as u64;
        unit.docs.extend(whole);
        Ok(())
    }

    /// Every stored point of this job's vector of the documents `ids` (all their chunks, as
    /// chunk 0 counts them): what goes when the documents are gone.
    pub(super) async fn stored_points(&self, ids: &[Bson]) -> Result<Vec<Uuid>, PipelineError> {
        let ns = self.job.source.namespace();
        let firsts: Vec<Uuid> = ids
            .iter()
            .map(|id| point_id(&ns.database, &ns.collection, id, 0))
            .collect();
        let stored = self.stored_states(&firsts).await?;
        Ok(ids
            .iter()
            .zip(&firsts)
            .flat_map(|(id, first)| {
                let n = stored.get(first).map_or(0, |s| s.chunks);
                (0..n).map(|i| point_id(&ns.database, &ns.collection, id, i))
            })
            .collect())
    }

    /// What is wrong with each of `docs`' stored points ([`crate::point::defect`]), in order.
    async fn defects<'a>(
        &self,
        docs: impl Iterator<Item = &'a Prepared> + Clone,
    ) -> Result<Vec<Option<String>>, PipelineError> {
        let ids: Vec<Uuid> = docs
            .clone()
            .flat_map(|d| d.chunks.iter().map(|(id, _)| *id))
            .collect();
        let keys = self.job.deep_keys();
        let stored: HashMap<Uuid, crate::sink::StoredPoint> = self
            .sink
            .retrieve(&self.job.target, &ids, Fields::Only(&keys), true)
            .await?
            .into_iter()
            .map(|p| (p.id, p))
            .collect();
        let dimension = self.embedder.dimension();
        let mut out = Vec::new();
        for d in docs {
            let mut defect = crate::point::defect(&self.job, d, &stored, dimension);
            if defect.is_none()
                && self
                    .sampled
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                    < self.opts.sample
            {
                // A few documents' embedding, on this runtime thread (told to the runtime
                // where it has others).
                let check =
                    || crate::point::resembles(self.embedder.as_ref(), &self.job, d, &stored);
                let flavor = tokio::runtime::Handle::current().runtime_flavor();
                defect = if flavor == tokio::runtime::RuntimeFlavor::MultiThread {
                    tokio::task::block_in_place(check)?
                } else {
                    check()?
                };
            }
            out.push(defect);
        }
        Ok(out)
    }

    /// Why the target could not return `doc`'s payload, if it could not.
    fn unreadable(&self, doc: &Prepared) -> Option<String> {
        let max = self.sink.max_payload_depth()?;
        let (key, d) = doc
            .payload
            .iter()
            .map(|(k, v)| (k, depth(v)))
            .max_by_key(|(_, d)| *d)?;
        (d > max).then(|| {
            format!(
                "payload field `{key}` nests {d} levels, more than the {max} that {} can return; \
                 copy a shallower path with --payload (e.g. `{key}.<field>`) or leave it out",
                self.sink.describe()
            )
        })
    }

    /// One lookup per unit: stored hash and chunk count of each document's chunk 0. A point of
    /// a named vector may exist for another job's vector only: then it holds neither hash nor
    /// chunk count of this one.
    async fn stored_states(
        &self,
        ids: &[Uuid],
    ) -> Result<HashMap<Uuid, StoredState>, PipelineError> {
        let vector = self.job.vector_name.as_deref();
        let (hash_key, chunks_key, payload_hash_key) = (
            keys::hash(vector),
            keys::chunks(vector),
            keys::payload_hash(vector),
        );
        let text = |p: &Map<String, Value>, key: &str| {
            p.get(key).and_then(Value::as_str).map(str::to_owned)
        };
        let sparse_key = self.job.sparse_hash_key().unwrap_or_default();
        let keys = [
            hash_key.clone(),
            chunks_key.clone(),
            payload_hash_key.clone(),
            sparse_key.clone(),
        ];
        let stored = self
            .sink
            .retrieve(&self.job.target, ids, Fields::Only(&keys), false)
            .await?;
        Ok(stored
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
                    sparse_hash: text(&p.payload, &sparse_key),
                };
                (p.id, state)
            })
            .collect())
    }
}
