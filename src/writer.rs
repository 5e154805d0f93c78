//! The write protocol: how a unit of prepared and embedded documents reaches the target, and how
//! points go. A [`Writer`] decides once whether it writes whole points (the collection's
//! unnamed vector) or one named vector of points that other jobs share. In every path, what
//! marks a document current (its content hash, its chunk count) is written last, so a run that
//! dies in between leaves the old hash and the rerun writes the document again. A dry run has
//! no writer.

use std::collections::HashSet;

use serde_json::Value;
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
}

/// Writes one job's points into one target collection.
pub struct Writer<'a, S: Sink + ?Sized> {
    sink: &'a S,
    target: &'a str,
    /// `None`: whole points; `Some(name)`: only this named vector.
    vector: Option<&'a str>,
}

impl<'a, S: Sink + ?Sized> Writer<'a, S> {
    pub fn new(sink: &'a S, target: &'a str, vector: Option<&'a str>) -> Self {
        Self {
            sink,
            target,
            vector,
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
        if !w.points.is_empty() {
            self.sink
                .upsert(self.target, None, w.points.clone())
                .await?;
        }
        self.write_payload_only(&w.payload_only).await
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
            self.sink.upsert(self.target, Some(vector), inserts).await?;
        }
        let updates: Vec<(Uuid, Vec<f32>)> = old.iter().map(|p| (p.id, p.vector.clone())).collect();
        if !updates.is_empty() {
            self.sink
                .update_vectors(self.target, vector, updates)
                .await?;
        }
        // One request per run of points with the same payload: a document's chunks differ in
        // `chunk`, which is written too (a repair may find it edited).
        let mut i = 0;
        while i < w.points.len() {
            let payload = w.points[i].payload.clone();
            let n = w.points[i..]
                .iter()
                .take_while(|p| p.payload == payload)
                .count()
                .max(1);
            self.sink
                .set_payload(self.target, &ids[i..i + n], payload, false)
                .await?;
            i += n;
        }
        Ok(())
    }

    /// Take the named vector `vector` (and its hash and chunk count) off the points `ids`; a
    /// point left without any vector is deleted.
    async fn remove_vector_from(&self, vector: &str, ids: &[Uuid]) -> Result<(), SinkError> {
        let stored = self
            .sink
            .retrieve(self.target, ids, Fields::Only(&[]), true)
            .await?;
        let (alone, shared): (Vec<StoredPoint>, Vec<StoredPoint>) = stored
            .into_iter()
            .partition(|p| p.vectors.iter().all(|n| n == vector));
        let alone: Vec<Uuid> = alone.into_iter().map(|p| p.id).collect();
        let shared: Vec<Uuid> = shared.into_iter().map(|p| p.id).collect();
        let keys = [keys::hash(Some(vector)), keys::chunks(Some(vector))];
        if !shared.is_empty() {
            self.sink
                .remove_vector(self.target, vector, &shared, &keys)
                .await?;
        }
        if !alone.is_empty() {
            self.sink.delete(self.target, &alone).await?;
        }
        Ok(())
    }
}
