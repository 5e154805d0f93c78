//! What a point is: the payload keys this tool writes ([`keys`]), the job that produces points
//! ([`Job`]), and a document turned into its points' ids, texts, payload and hashes
//! ([`prepare_doc`]). Pure functions: sync, verify and the tests share them.

use serde_json::{Map, Value};
use uuid::Uuid;

use crate::embed::Embedder;
use crate::ids::{content_hash, point_id};
use crate::source::{Source, SourceDoc};
use crate::text::{Template, payload_fields};

pub use crate::ids::keys;

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
    /// The projection as given (empty: the one the template and payload need); part of the
    /// settings a resume must match, as it decides the text and payload read.
    pub projection_text: String,
    /// The named vector written (`None`: the collection's single unnamed vector). Jobs with
    /// different names can share a target collection and a source: each point then carries one
    /// vector per job.
    pub vector_name: Option<String>,
    /// The BM25 sparse vector the job writes beside (or, sparse-only, instead of) the dense one.
    pub sparse: Option<crate::sparse::SparseSpec>,
    /// Payload indexes the target collection must have (`--index`).
    pub indexes: Vec<crate::sink::IndexSpec>,
    /// Settings the target collection must have (quantization, HNSW, on-disk, ...).
    pub settings: crate::sink::Settings,
    /// The dense vector's distance (`--distance`; `None`: the model's).
    pub distance: Option<crate::sink::Distance>,
}

impl Job {
    /// Whether a point of this job's namespace holds this job's vector: every point for the
    /// unnamed vector; for a named one, the points that carry its chunk count or its hash. A
    /// new point gets its chunk count with the vector and its hash last, so a run that died in
    /// between leaves a point that is still this job's (prune and verify must see it).
    pub fn owns(&self, payload: &Map<String, Value>) -> bool {
        match &self.vector_name {
            None => true,
            Some(v) => {
                payload.contains_key(&keys::hash(Some(v)))
                    || payload.contains_key(&keys::chunks(Some(v)))
            }
        }
    }

    /// The payload keys sync, verify and prune read back for this job: its bookkeeping keys,
    /// never the copied fields (whatever those hold, a point stays readable).
    pub fn stored_keys(&self) -> Vec<String> {
        let v = self.vector_name.as_deref();
        let mut k = vec![
            keys::NAMESPACE.to_owned(),
            keys::ID.to_owned(),
            keys::CHUNK.to_owned(),
            keys::hash(v),
            keys::payload_hash(v),
            keys::chunks(v),
        ];
        k.extend(self.sparse_hash_key());
        k
    }

    /// The key of the sparse vector's own content hash, for a job that writes a dense vector
    /// beside it (a sparse-only job's content hash is the sparse one).
    pub fn sparse_hash_key(&self) -> Option<String> {
        self.sparse
            .as_ref()
            .filter(|s| s.dense)
            .map(|s| keys::hash(Some(&s.name)))
    }

    /// Whether the job writes no dense vector (no model).
    pub fn sparse_only(&self) -> bool {
        self.sparse.as_ref().is_some_and(|s| !s.dense)
    }

    /// What makes this job's vectors: the run's model, or for a sparse-only job BM25 (whatever
    /// model the run loaded for other jobs).
    pub fn model_id(&self, model: &str) -> String {
        match self.sparse.as_ref().filter(|s| !s.dense) {
            Some(s) => s.bm25.id(),
            None => model.to_owned(),
        }
    }

    /// The keys a deep check reads: [`Job::stored_keys`] and the copied fields.
    pub fn deep_keys(&self) -> Vec<String> {
        let mut k = self.stored_keys();
        k.extend(self.payload_fields.iter().cloned());
        k
    }

    /// `NAMESPACE -> TARGET`, with ` (vector NAME)` for a named vector: how every command names
    /// a job.
    pub fn route(&self) -> String {
        route(
            &self.source.namespace().to_string(),
            &self.target,
            self.vector_name.as_deref(),
        )
    }
}

/// `NAMESPACE -> TARGET`, with ` (vector NAME)` for a named vector.
pub fn route(namespace: &str, target: &str, vector: Option<&str>) -> String {
    match vector {
        Some(v) => format!("{namespace} -> {target} (vector {v})"),
        None => format!("{namespace} -> {target}"),
    }
}

/// Token windows for long texts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunking {
    pub size: usize,
    pub overlap: usize,
}

/// A document ready for embedding: its chunks with their point ids, the payload shared by its
/// points, and the hashes that say whether the stored points are current.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub chunks: Vec<(Uuid, String)>,
    pub payload: Map<String, Value>,
    /// Over model, settings and text: a change means embedding again.
    pub hash: String,
    /// Over the copied payload fields (`None` without any): a change alone means rewriting the
    /// payload, not embedding.
    pub payload_hash: Option<String>,
    /// The sparse vector's hash and text per chunk, for a job that writes one.
    pub sparse: Option<SparsePart>,
}

/// What a document's sparse vectors are made of.
#[derive(Debug, Clone)]
pub struct SparsePart {
    /// Over the BM25 settings and the text: a change alone means computing the sparse vectors
    /// again, not embedding (a sparse-only job's is its content hash).
    pub hash: String,
    /// One text per chunk.
    pub texts: Vec<String>,
}

/// What is hashed besides the model and the text: anything that changes the points.
pub fn hash_context(job: &Job, chunking: Option<Chunking>) -> String {
    format!(
        "{}|payload={:?}|chunk={:?}|vector={:?}",
        job.template.source(),
        job.payload_fields,
        chunking.map(|c| (c.size, c.overlap)),
        job.vector_name
    )
}

/// The settings a resume must match: what goes into the content hash, the model, the filter
/// (which decides what a pass covers) and a given projection (which decides what is read; only
/// when given, so that the positions stored without one keep their identity).
pub fn settings_hash(model: &str, job: &Job, chunking: Option<Chunking>) -> String {
    let context = hash_context(job, chunking);
    let mut parts = vec![model, &context, &job.filter_text];
    if !job.projection_text.is_empty() {
        parts.push(&job.projection_text);
    }
    // Only when there is one, so that the positions stored without one keep their identity.
    let sparse = job.sparse.as_ref().map(|s| s.context());
    if let Some(s) = &sparse {
        parts.push(s);
    }
    crate::ids::named_uuid("mongo2qdrant settings v1", &parts).to_string()
}

/// What is wrong with `doc`'s stored points beyond their hashes, if anything: a point missing, a
/// payload value (copied field or bookkeeping key, `chunk` included) other than the source's,
/// this job's vector missing or of another dimension than `dimension`. `stored` holds the
/// points read with [`Job::deep_keys`] and their vectors. Keys the job does not write are not
/// looked at (other jobs' vectors and fields, a user's own keys).
pub fn defect(
    job: &Job,
    doc: &Prepared,
    stored: &std::collections::HashMap<Uuid, crate::sink::StoredPoint>,
    dimension: usize,
) -> Option<String> {
    let vector = job.vector_name.clone().unwrap_or_default();
    for (i, (id, _)) in doc.chunks.iter().enumerate() {
        let Some(p) = stored.get(id) else {
            return Some(format!("chunk {i}: no point"));
        };
        let (chunk_key, chunk) = (keys::CHUNK.to_owned(), Value::from(i));
        let expected = doc
            .payload
            .iter()
            .chain(std::iter::once((&chunk_key, &chunk)));
        for (k, want) in expected {
            // A named vector's null marks a field its document lacks: absent is the same.
            let got = p.payload.get(k).unwrap_or(&Value::Null);
            if got != want {
                return Some(format!(
                    "chunk {i}: payload `{k}` is {got}, the source says {want}"
                ));
            }
        }
        if let Some(why) = sparse_defect(job, doc, i, p) {
            return Some(format!("chunk {i}: {why}"));
        }
        if job.sparse_only() {
            continue;
        }
        match p.values.get(&vector).map(Vec::len) {
            None => return Some(format!("chunk {i}: no vector{}", vector_label(&vector))),
            Some(n) if n != dimension => {
                return Some(format!(
                    "chunk {i}: vector{} has dimension {n}, the model makes {dimension}",
                    vector_label(&vector)
                ));
            }
            Some(_) => {}
        }
    }
    None
}

/// What is wrong with chunk `i`'s stored sparse vector `p`, if anything: missing, or other
/// weights than BM25 gives its text now (the vectors are exact, so any difference is one).
fn sparse_defect(
    job: &Job,
    doc: &Prepared,
    i: usize,
    p: &crate::sink::StoredPoint,
) -> Option<String> {
    let (spec, part) = (job.sparse.as_ref()?, doc.sparse.as_ref()?);
    let want = spec.bm25.document(part.texts.get(i)?);
    let Some(stored) = p.sparse.get(&spec.name) else {
        // A text of stop words only has an empty vector: a target may not return it.
        return (!want.indices.is_empty()).then(|| format!("no sparse vector `{}`", spec.name));
    };
    let same = crate::sparse::same(stored, &want);
    (!same).then(|| {
        format!(
            "sparse vector `{}` is not BM25's for its text ({} terms stored, {} expected)",
            spec.name,
            stored.indices.len(),
            want.indices.len()
        )
    })
}

/// Least cosine between a stored vector and the model's vector for the same text (`--sample`):
/// the same model on another CPU stays far above it.
pub const SAMPLE_COSINE: f32 = 0.99;

/// What differs between `doc`'s stored vectors and what the model makes of its chunks now
/// (cosine below [`SAMPLE_COSINE`]), if anything: the check `--sample` adds to `--deep`.
pub fn resembles(
    embedder: &dyn Embedder,
    job: &Job,
    doc: &Prepared,
    stored: &std::collections::HashMap<Uuid, crate::sink::StoredPoint>,
) -> Result<Option<String>, crate::embed::EmbedError> {
    if job.sparse_only() {
        // The sparse vectors are compared exactly by `defect`: no model to ask.
        return Ok(None);
    }
    let texts: Vec<&str> = doc.chunks.iter().map(|(_, t)| t.as_str()).collect();
    let (fresh, _) = embedder.embed(&texts)?;
    let name = job.vector_name.clone().unwrap_or_default();
    for (i, ((id, _), v)) in doc.chunks.iter().zip(fresh).enumerate() {
        let Some(old) = stored.get(id).and_then(|p| p.values.get(&name)) else {
            continue;
        };
        let cos = cosine(old, &v);
        if cos < SAMPLE_COSINE {
            return Ok(Some(format!(
                "chunk {i}: the stored vector is not the model's for its text (cosine {cos:.3})"
            )));
        }
    }
    Ok(None)
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na * nb)
    }
}

fn vector_label(name: &str) -> String {
    if name.is_empty() {
        String::new()
    } else {
        format!(" `{name}`")
    }
}

/// Text, chunks, point ids, payload and content hash of one document; `None` without text.
pub fn prepare_doc(
    job: &Job,
    model: &str,
    hash_context: &str,
    chunking: Option<Chunking>,
    embedder: &dyn Embedder,
    doc: &SourceDoc,
) -> Option<Prepared> {
    let ns = job.source.namespace();
    let text = job.template.render(&doc.doc)?;
    let mut payload = payload_fields(&doc.doc, &job.payload_fields);
    let hash = content_hash(&job.model_id(model), hash_context, &text);
    let payload_hash = (!payload.is_empty())
        .then(|| crate::ids::payload_hash(&Value::Object(payload.clone()).to_string()));
    let pieces = match chunking {
        Some(c) => embedder.chunk(&text, c.size, c.overlap),
        None => vec![text.clone()],
    };
    let sparse = job.sparse.as_ref().map(|s| {
        let (text, texts) = match &s.template {
            // Its own text, the same for every chunk (a missing field is an empty text).
            Some(t) => {
                let own = t.render(&doc.doc).unwrap_or_default();
                (own.clone(), vec![own; pieces.len()])
            }
            None => (text.clone(), pieces.clone()),
        };
        let hash = if s.dense {
            content_hash(&s.context(), hash_context, &text)
        } else {
            hash.clone()
        };
        SparsePart { hash, texts }
    });
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
    match &payload_hash {
        Some(h) => {
            payload.insert(keys::payload_hash(vector), Value::String(h.clone()));
        }
        // Merged into the point: a hash left from when the document had copied fields must go.
        None if vector.is_some() => {
            payload.insert(keys::payload_hash(vector), Value::Null);
        }
        None => {}
    }
    payload.insert(keys::chunks(vector), Value::from(pieces.len()));
    if let (Some(key), Some(part)) = (job.sparse_hash_key(), &sparse) {
        payload.insert(key, Value::String(part.hash.clone()));
    }
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
        sparse,
    })
}
