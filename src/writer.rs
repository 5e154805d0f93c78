//! The write protocol: how a unit of prepared and embedded documents reaches the target, and how
//! points go. A [`Writer`] decides once whether it writes whole points (the collection's
//! unnamed vector) or one named vector of points that other jobs share. In every path, what
//! marks a document current (its content hash, its chunk count) is written last, so a run that
//! dies in between leaves the old hash and the rerun writes the document again. A dry run has
//! no writer.

use std::collections::HashSet;

use serde_json::{Map, Value};
use uuid::Uuid;

use crate::point::{Prepared, keys};
use crate::sink::{Fields, Point, Sink, SinkError, StoredPoint};

/// What one unit asks of the target, in `_id` order.
#[derive(Debug, Default)]
pub struct Writes {
    /// Embedded points.
    pub points: Vec<Point>,
    /// Documents whose text is current but whose copied payload changed.
    pub payload_only: Vec<Prepared>,
    /// Points that must go (surplus chunks, documents that lost their text).
    pub deletes: Vec<Uuid>,
    /// New sparse vectors of points whose dense vector is current (the sparse settings or text
    /// changed, or the sparse vector was just switched on); their documents are in
    /// `payload_only`, which carries the new sparse hash, so they are written first.
    pub sparse: Vec<(Uuid, crate::sink::SparseVector)>,
}

/// Most bytes (estimated) of one upsert request: far under Qdrant's default request limit of
/// 32 MiB (`service.max_request_size_mb`), so that a unit of large documents is written in
/// several requests instead of failing at the same place on every run.
pub const REQUEST_BYTES: usize = 8 << 20;

/// Estimated encoded size of `p`.
fn size(p: &Point) -> usize {
    64 + 4 * p.vector.len()
        + p.sparse.as_ref().map_or(0, |(_, s)| 8 * s.indices.len())
        + Value::Object(p.payload.clone()).to_string().len()
}

/// `points` in requests of at most `budget` estimated bytes (at least one point each), every
/// document's chunks last-first: chunk 0 holds the hash and chunk count that mark the document
/// current, so it must never be written ahead of its other chunks.
pub fn requests(mut points: Vec<Point>, budget: usize) -> Vec<Vec<Point>> {
    let mut start = 0;
    for i in 1..=points.len() {
        let next_doc =
            i == points.len() || points[i].payload.get(keys::CHUNK) == Some(&Value::from(0));
        if next_doc {
            points[start..i].reverse();
            start = i;
        }
    }
    let mut out: Vec<Vec<Point>> = Vec::new();
    let mut used = 0;
    for p in points {
        let n = size(&p);
        match out.last_mut() {
            Some(last) if used + n <= budget => last.push(p),
            _ => {
                out.push(vec![p]);
                used = 0;
            }
        }
        used += n;
    }
    out
}

/// Writes one job's points into one target collection.
pub struct Writer<'a, S: Sink + ?Sized> {
    sink: &'a S,
    target: &'a str,
    /// `None`: whole points; `Some(name)`: only this named vector.
    vector: Option<&'a str>,
    /// The job's sparse vector, when it writes one.
    sparse: Option<&'a str>,
    /// The job writes no dense vector (sparse-only).
    sparse_only: bool,
}

impl<'a, S: Sink + ?Sized> Writer<'a, S> {
    pub fn new(sink: &'a S, target: &'a str, vector: Option<&'a str>) -> Self {
        Self {
            sink,
            target,
            vector,
            sparse: None,
            sparse_only: false,
        }
    }

    /// The writer of `job`'s points.
    pub fn of(sink: &'a S, job: &'a crate::point::Job) -> Self {
        let mut w = Self::new(sink, &job.target, job.vector_name.as_deref());
        w.sparse = job.sparse.as_ref().map(|s| s.name.as_str());
        w.sparse_only = job.sparse_only();
        w
    }

    /// Sparse vectors of existing points; returns after acknowledgement.
    async fn update_sparse(
        &self,
        vectors: Vec<(Uuid, crate::sink::SparseVector)>,
    ) -> Result<(), SinkError> {
        match self.sparse {
            Some(name) if !vectors.is_empty() => {
                self.sink.update_sparse(self.target, name, vectors).await
            }
            _ => Ok(()),
        }
    }

    /// Write a unit; returns after the target acknowledged all of it.
    pub async fn write(&self, w: &Writes) -> Result<(), SinkError> {
        match self.vector {
            None => self.write_whole(w).await,
            Some(v) => self.write_named(v, w).await,
        }
    }

    /// Remove this job's points `ids`: the points, or for a named vector that vector (points
    /// keep the other jobs' vectors).
    pub async fn remove(&self, ids: &[Uuid]) -> Result<(), SinkError> {
        if ids.is_empty() {
            return Ok(());
        }
        match self.vector {
            None => self.sink.delete(self.target, ids).await,
            Some(v) => self.remove_vector_from(v, ids).await,
        }
    }

    /// Whole points. Surplus chunks go first: should the run die in between, chunk 0 still
    /// holds the old hash and chunk count, so the rerun finds the surplus again.
    async fn write_whole(&self, w: &Writes) -> Result<(), SinkError> {
        self.remove(&w.deletes).await?;
        self.upsert(None, w.points.clone()).await?;
        self.update_sparse(w.sparse.clone()).await?;
        self.write_payload_only(&w.payload_only).await
    }

    /// Upsert `points` in [`requests`]; a request the target still refuses as too large is
    /// split in halves (down to one point, which then fails naming the fix).
    async fn upsert(&self, vector: Option<&str>, points: Vec<Point>) -> Result<(), SinkError> {
        let mut pending: std::collections::VecDeque<Vec<Point>> =
            requests(points, REQUEST_BYTES).into();
        while let Some(mut batch) = pending.pop_front() {
            match self.sink.upsert(self.target, vector, batch.clone()).await {
                Err(SinkError::TooLarge { reason, .. }) if batch.len() > 1 => {
                    tracing::warn!(
                        "{} refused {} points in one request as too large ({reason}): writing them in halves",
                        self.sink.describe(),
                        batch.len()
                    );
                    let second = batch.split_off(batch.len() / 2);
                    pending.push_front(second);
                    pending.push_front(batch);
                }
                other => other?,
            }
        }
        Ok(())
    }

    /// Rewrite the payload of documents whose text is current, without embedding. Whole points
    /// get their payload replaced point by point, chunk 0 last (its payload hash is what marks
    /// the document current); a named vector's keys are merged into points that keep the other
    /// vectors' keys.
    async fn write_payload_only(&self, docs: &[Prepared]) -> Result<(), SinkError> {
        for doc in docs {
            let ids: Vec<Uuid> = doc.chunks.iter().map(|(id, _)| *id).collect();
            if self.vector.is_some() {
                self.sink
                    .set_payload(self.target, &ids, doc.payload.clone(), false)
                    .await?;
                continue;
            }
            for (i, id) in ids.iter().enumerate().rev() {
                let mut payload = doc.payload.clone();
                payload.insert(keys::CHUNK.into(), Value::from(i));
                self.sink
                    .set_payload(self.target, std::slice::from_ref(id), payload, true)
                    .await?;
            }
        }
        Ok(())
    }

    /// The named vector `vector` of points that may carry other named vectors (other jobs'):
    /// their vectors and payload stay. New points are inserted, existing ones get this vector
    /// replaced; the content hash is set last.
    async fn write_named(&self, vector: &str, w: &Writes) -> Result<(), SinkError> {
        self.remove(&w.deletes).await?;
        self.update_sparse(w.sparse.clone()).await?;
        self.write_payload_only(&w.payload_only).await?;
        if w.points.is_empty() {
            return Ok(());
        }
        let ids: Vec<Uuid> = w.points.iter().map(|p| p.id).collect();
        let existing: HashSet<Uuid> = self
            .sink
            .retrieve(self.target, &ids, Fields::Only(&[]), false)
            .await?
            .into_iter()
            .map(|p| p.id)
            .collect();
        let hash_key = keys::hash(Some(vector));
        let (old, new): (Vec<&Point>, Vec<&Point>) =
            w.points.iter().partition(|p| existing.contains(&p.id));
        let inserts: Vec<Point> = new
            .into_iter()
            .map(|p| {
                let mut p = p.clone();
                p.payload.remove(&hash_key);
                p
            })
            .collect();
        if !inserts.is_empty() {
            self.upsert(Some(vector), inserts).await?;
        }
        let updates: Vec<(Uuid, Vec<f32>)> = old.iter().map(|p| (p.id, p.vector.clone())).collect();
        if !updates.is_empty() && !self.sparse_only {
            self.sink
                .update_vectors(self.target, vector, updates)
                .await?;
        }
        let sparse = old
            .iter()
            .filter_map(|p| Some((p.id, p.sparse.as_ref()?.1.clone())))
            .collect();
        self.update_sparse(sparse).await?;
        // The payload point by point (a document's chunks differ in `chunk`, which is written
        // too: a repair may find it edited), each document's chunk 0 last: its hash marks the
        // document current, so no other chunk may be behind it.
        for p in requests(w.points.clone(), 0).into_iter().flatten() {
            self.sink
                .set_payload(self.target, &[p.id], p.payload, false)
                .await?;
        }
        Ok(())
    }

    /// Take the named vector `vector` (and its hash and chunk count), with the job's sparse
    /// vector (and its hash), off the points `ids`; a point left without any other vector is
    /// deleted, and so is one whose other vectors are only sparse vectors this tool wrote beside
    /// a dense one and no job keeps any more (a content hash without a chunk count: every job
    /// writes a chunk count for its own vector, never for such a sparse vector), so a setting
    /// switched off or renamed does not keep a gone document's point. Vectors of others (no
    /// bookkeeping keys of ours) keep the point. The sparse vector goes first and the vector
    /// that carries the ownership last: should the run die in between, the point is still this
    /// job's, and the rerun finds it again.
    async fn remove_vector_from(&self, vector: &str, ids: &[Uuid]) -> Result<(), SinkError> {
        let stored = self
            .sink
            .retrieve(self.target, ids, Fields::Only(&[]), true)
            .await?;
        let own: Vec<&str> = self
            .sparse
            .filter(|s| *s != vector)
            .into_iter()
            .chain(std::iter::once(vector))
            .collect();
        let name = |n: &str| (!n.is_empty()).then_some(n).map(str::to_owned);
        let bookkeeping: Vec<String> = stored
            .iter()
            .flat_map(|p| p.vectors.iter())
            .filter(|n| !own.contains(&n.as_str()))
            .flat_map(|n| {
                [
                    keys::chunks(name(n).as_deref()),
                    keys::hash(name(n).as_deref()),
                ]
            })
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let payloads: std::collections::HashMap<Uuid, Map<String, Value>> = self
            .sink
            .retrieve(self.target, ids, Fields::Only(&bookkeeping), false)
            .await?
            .into_iter()
            .map(|p| (p.id, p.payload))
            .collect();
        // A sparse vector of ours that no job keeps: its hash without a chunk count.
        let leftover = |id: &Uuid, n: &str| {
            payloads.get(id).is_some_and(|p| {
                p.contains_key(&keys::hash(name(n).as_deref()))
                    && !p.contains_key(&keys::chunks(name(n).as_deref()))
            })
        };
        let owned_elsewhere = |p: &StoredPoint| {
            p.vectors
                .iter()
                .any(|n| !own.contains(&n.as_str()) && !leftover(&p.id, n))
        };
        let (shared, alone): (Vec<StoredPoint>, Vec<StoredPoint>) =
            stored.into_iter().partition(owned_elsewhere);
        let alone: Vec<Uuid> = alone.into_iter().map(|p| p.id).collect();
        let shared: Vec<Uuid> = shared.into_iter().map(|p| p.id).collect();
        if !shared.is_empty() {
            for name in &own {
                let keys = [keys::hash(Some(name)), keys::chunks(Some(name))];
                self.sink
                    .remove_vector(self.target, name, &shared, &keys)
                    .await?;
            }
        }
        if !alone.is_empty() {
            self.sink.delete(self.target, &alone).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Map;

    use super::*;

    fn point(doc: u8, chunk: usize) -> Point {
        let mut payload = Map::new();
        payload.insert(keys::CHUNK.into(), Value::from(chunk));
        payload.insert("doc".into(), Value::from(doc));
        Point {
            id: Uuid::from_bytes([doc; 16]),
            vector: vec![0.0; 4],
            payload,
            sparse: None,
        }
    }

    fn order(batches: &[Vec<Point>]) -> Vec<(u64, u64)> {
        batches
            .iter()
            .flatten()
            .map(|p| {
                (
                    p.payload["doc"].as_u64().unwrap(),
                    p.payload[keys::CHUNK].as_u64().unwrap(),
                )
            })
            .collect()
    }

    /// A unit over the request limit goes in several requests, and chunk 0 of a document (its
    /// hash) never reaches the target before its other chunks.
    #[test]
    fn large_units_split_with_chunk_zero_last() {
        let points = vec![
            point(1, 0),
            point(1, 1),
            point(1, 2),
            point(2, 0),
            point(3, 0),
            point(3, 1),
        ];
        let one = size(&points[0]);
        let batches = requests(points.clone(), 2 * one);
        assert!(batches.len() >= 3, "{}", batches.len());
        assert!(
            batches
                .iter()
                .all(|b| b.iter().map(size).sum::<usize>() <= 2 * one + 8)
        );
        assert_eq!(
            order(&batches),
            [(1, 2), (1, 1), (1, 0), (2, 0), (3, 1), (3, 0)]
        );
        let whole = requests(points, usize::MAX);
        assert_eq!(whole.len(), 1);
        // A point over the budget still goes, alone.
        assert_eq!(requests(vec![point(4, 0)], 1).len(), 1);
    }
}
