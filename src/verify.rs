//! `verify`: compare source and target without writing. For every namespace it lists documents
//! whose points are missing, stale points (hash differs from what the source says now),
//! orphaned points (no source document), and extra points of a document that still exists
//! (more than one point set for it, e.g. leftover chunks).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use crate::embed::Embedder;
use crate::pipeline::{PipelineError, SyncOptions};
use crate::point::{Job, hash_context, keys, prepare_doc};
use crate::sink::{Ensure, Fields, Sink, StoredPoint};
use crate::source::{SourceItem, id_text};

/// Most ids listed per kind of difference.
const SAMPLE: usize = 50;

/// A point that differs, with the document it belongs to.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Diff {
    pub point: Uuid,
    /// Relaxed Extended JSON of the document `_id`.
    pub doc_id: String,
}

/// A document whose hashes are current but whose points are not (`--deep`).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Defect {
    /// Relaxed Extended JSON of the document `_id`.
    pub doc_id: String,
    pub reason: String,
}

/// Differences of one namespace.
#[derive(Debug, Clone, Default, Serialize)]
pub struct NamespaceDiff {
    pub namespace: String,
    pub target: String,
    /// The named vector compared, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vector: Option<String>,
    /// The shard compared (`INDEX/COUNT`), when sharded: its documents and its points only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard: Option<String>,
    pub documents: u64,
    pub expected_points: u64,
    pub points: u64,
    pub missing: u64,
    pub stale: u64,
    pub orphaned: u64,
    pub duplicates: u64,
    pub unreadable_documents: u64,
    pub missing_ids: Vec<Diff>,
    pub stale_ids: Vec<Diff>,
    pub orphaned_ids: Vec<Diff>,
    pub duplicate_ids: Vec<Diff>,
    /// With `--deep`: documents checked point by point, and those whose points differ from the
    /// source (a payload value, a vector missing or of another dimension, or with `--sample`
    /// a vector the model does not make) though their hashes are current.
    pub deep_checked: u64,
    pub defective: u64,
    pub defects: Vec<Defect>,
    /// With a shard: points of the namespace whose shard cannot be told (their stored `_id`
    /// does not give their id back), left to a `verify` without `--shard`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub unplaced: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl NamespaceDiff {
    pub fn in_sync(&self) -> bool {
        self.missing + self.stale + self.orphaned + self.duplicates + self.defective == 0
    }
}

/// Outcome of `verify`.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub in_sync: bool,
    pub namespaces: Vec<NamespaceDiff>,
}

fn push(list: &mut Vec<Diff>, count: &mut u64, d: Diff) {
    *count += 1;
    if list.len() < SAMPLE {
        list.push(d);
    }
}

/// Documents per deep check (one read of their points with vectors).
const DEEP_BATCH: usize = 128;

/// Check `docs`' stored points beyond their hashes ([`crate::point::defect`]) and, for the
/// first `opts.sample` documents of the namespace, their vectors against the model's; drains
/// `docs`. A document with a point missing or stale is left to those counts.
async fn deep_check<S: Sink>(
    sink: &S,
    embedder: &dyn Embedder,
    job: &Job,
    opts: &SyncOptions,
    docs: &mut Vec<(String, crate::point::Prepared)>,
    diff: &mut NamespaceDiff,
) -> Result<(), PipelineError> {
    if docs.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = docs
        .iter()
        .flat_map(|(_, d)| d.chunks.iter().map(|(id, _)| *id))
        .collect();
    let keys = job.deep_keys();
    let stored: HashMap<Uuid, StoredPoint> = sink
        .retrieve(&job.target, &ids, Fields::Only(&keys), true)
        .await?
        .into_iter()
        .map(|p| (p.id, p))
        .collect();
    let vector = job.vector_name.as_deref();
    let (hash_key, payload_hash_key) = (keys::hash(vector), keys::payload_hash(vector));
    let sparse_key = job.sparse_hash_key();
    for (doc_id, doc) in docs.drain(..) {
        let current = doc.chunks.iter().all(|(id, _)| {
            stored.get(id).is_some_and(|p| {
                p.payload.get(&hash_key).and_then(Value::as_str) == Some(doc.hash.as_str())
                    && p.payload.get(&payload_hash_key).and_then(Value::as_str)
                        == doc.payload_hash.as_deref()
                    && sparse_current(p, sparse_key.as_deref(), &doc)
            })
        });
        if !current {
            continue;
        }
        diff.deep_checked += 1;
        let mut reason = crate::point::defect(job, &doc, &stored, embedder.dimension());
        if reason.is_none() && diff.deep_checked <= opts.sample as u64 {
            reason = crate::point::resembles(embedder, job, &doc, &stored)?;
        }
        if let Some(reason) = reason {
            diff.defective += 1;
            if diff.defects.len() < SAMPLE {
                diff.defects.push(Defect { doc_id, reason });
            }
        }
    }
    Ok(())
}

/// Compare every job's source with its target.
pub async fn verify<S: Sink>(
    sink: Arc<S>,
    embedder: Arc<dyn Embedder>,
    jobs: Vec<Job>,
    opts: &SyncOptions,
) -> Result<VerifyReport, PipelineError> {
    let mut namespaces = Vec::new();
    for job in &jobs {
        // A collection of another dimension is not "every point missing": say what it is.
        let shape = sink.shape(&job.target).await?;
        let spec = crate::sink::VectorSpec {
            name: job.vector_name.clone(),
            dimension: embedder.dimension(),
            distance: job.distance.unwrap_or(embedder.distance()),
        };
        crate::sink::fit::fit(&job.target, shape.as_ref(), &spec, Ensure::Check)?;
    }
    for job in jobs {
        namespaces.push(verify_one(sink.as_ref(), embedder.as_ref(), &job, opts).await?);
    }
    Ok(VerifyReport {
        in_sync: namespaces.iter().all(NamespaceDiff::in_sync),
        namespaces,
    })
}

async fn verify_one<S: Sink>(
    sink: &S,
    embedder: &dyn Embedder,
    job: &Job,
    opts: &SyncOptions,
) -> Result<NamespaceDiff, PipelineError> {
    let ns = job.source.namespace().to_string();
    let target_exists = sink.exists(&job.target).await?;
    let mut diff = NamespaceDiff {
        namespace: ns.clone(),
        target: job.target.clone(),
        vector: job.vector_name.clone(),
        shard: opts.shard.map(|s| s.to_string()),
        ..Default::default()
    };
    let model = embedder.model_id().to_owned();
    let context = hash_context(job, opts.chunking);
    // point id -> (content hash, payload hash, document id, sparse hash)
    let mut expected: HashMap<Uuid, (String, Option<String>, String, Option<String>)> =
        HashMap::new();
    let mut documents: HashSet<String> = HashSet::new();

    let mut deep = Vec::new();
    let (mut rx, reader) = job.source.spawn_reader(1024, opts.shard);
    while let Some(item) = rx.recv().await {
        let doc = match item {
            SourceItem::Doc(d) => d,
            SourceItem::Bad { .. } => {
                diff.unreadable_documents += 1;
                continue;
            }
        };
        diff.documents += 1;
        let doc_id = id_text(&doc.id);
        documents.insert(doc_id.clone());
        if let Some(p) = prepare_doc(job, &model, &context, opts.chunking, embedder, &doc) {
            for (id, _) in &p.chunks {
                let sparse = p.sparse.as_ref().map(|s| s.hash.clone());
                let value = (
                    p.hash.clone(),
                    p.payload_hash.clone(),
                    doc_id.clone(),
                    sparse,
                );
                expected.insert(*id, value);
            }
            // Without a target every point is missing; nothing to look at deeper.
            if opts.deep && target_exists {
                deep.push((doc_id, p));
                if deep.len() == DEEP_BATCH {
                    deep_check(sink, embedder, job, opts, &mut deep, &mut diff).await?;
                }
            }
        }
    }
    deep_check(sink, embedder, job, opts, &mut deep, &mut diff).await?;
    crate::source::finished(reader).await?;
    diff.expected_points = expected.len() as u64;

    // The namespace's points; for a named vector those that carry it (by its hash key).
    let vector = job.vector_name.as_deref();
    let sparse_key = job.sparse_hash_key();
    let (hash_key, payload_hash_key) = (keys::hash(vector), keys::payload_hash(vector));
    let (points, unplaced) =
        crate::pipeline::prune::shard_points(sink, job, opts.shard, &job.stored_keys(), |id| {
            expected.contains_key(id)
        })
        .await?;
    diff.unplaced = unplaced;
    diff.points = points.len() as u64;
    let mut seen = HashSet::new();
    for p in points {
        let stored_hash = p.payload.get(&hash_key).and_then(Value::as_str);
        let stored_payload_hash = p.payload.get(&payload_hash_key).and_then(Value::as_str);
        let doc_id = p
            .payload
            .get(keys::ID)
            .map(Value::to_string)
            .unwrap_or_default();
        match expected.get(&p.id) {
            Some((hash, payload_hash, d, sparse)) => {
                seen.insert(p.id);
                let stored_sparse = sparse_key
                    .as_ref()
                    .and_then(|k| p.payload.get(k).and_then(Value::as_str));
                if stored_hash != Some(hash.as_str())
                    || stored_payload_hash != payload_hash.as_deref()
                    || (sparse_key.is_some() && stored_sparse != sparse.as_deref())
                {
                    push(
                        &mut diff.stale_ids,
                        &mut diff.stale,
                        Diff {
                            point: p.id,
                            doc_id: d.clone(),
                        },
                    );
                }
            }
            None if documents.contains(&doc_id) => push(
                &mut diff.duplicate_ids,
                &mut diff.duplicates,
                Diff {
                    point: p.id,
                    doc_id,
                },
            ),
            None => push(
                &mut diff.orphaned_ids,
                &mut diff.orphaned,
                Diff {
                    point: p.id,
                    doc_id,
                },
            ),
        }
    }
    let mut missing: Vec<(&Uuid, &String)> = expected
        .iter()
        .filter(|(id, _)| !seen.contains(*id))
        .map(|(id, (_, _, d, _))| (id, d))
        .collect();
    missing.sort_by(|a, b| a.1.cmp(b.1).then(a.0.cmp(b.0)));
    for (id, d) in missing {
        push(
            &mut diff.missing_ids,
            &mut diff.missing,
            Diff {
                point: *id,
                doc_id: d.clone(),
            },
        );
    }
    Ok(diff)
}

/// Whether `p` holds the sparse hash `doc` has now (always, for a job without its own).
fn sparse_current(p: &StoredPoint, key: Option<&str>, doc: &crate::point::Prepared) -> bool {
    let Some(key) = key else { return true };
    p.payload.get(key).and_then(Value::as_str) == doc.sparse.as_ref().map(|s| s.hash.as_str())
}
