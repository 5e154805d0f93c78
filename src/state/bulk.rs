//! Bulk-load records: that a target collection loads with its HNSW graph building off, what to
//! switch it back to, and which shards have loaded their part. One record per target, written
//! before the graph is switched off, and one per finished shard (no two writers share one).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Record, StateError, StateStore};
use crate::ids::named_uuid;
use crate::sink::Sink;

/// A bulk load under way into `target`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BulkLoad {
    pub target: String,
    /// Shards that load together (1: an unsharded run).
    pub shards: u32,
    /// The HNSW `m` the collection had, restored when every shard has loaded its part.
    pub restore_m: u64,
    pub started_at: String,
    pub run_id: String,
}

/// Shard `shard` of `shards` has loaded its part of `target`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BulkDone {
    pub target: String,
    pub shard: u32,
    pub shards: u32,
    pub at: String,
    pub run_id: String,
}

fn load_id(target: &str) -> Uuid {
    named_uuid("mongo2qdrant bulk load v1", &[target])
}

fn done_id(target: &str, shard: u32, shards: u32) -> Uuid {
    named_uuid(
        "mongo2qdrant bulk done v1",
        &[target, &format!("{shard}/{shards}")],
    )
}

impl<S: Sink + ?Sized> StateStore<'_, S> {
    /// The bulk load under way into `target`, if any.
    pub async fn bulk_load(&self, target: &str) -> Result<Option<BulkLoad>, StateError> {
        match self.get(load_id(target)).await? {
            Some(Ok(Record::Bulk(b))) => Ok(Some(b)),
            None => Ok(None),
            Some(other) => Err(StateError::Corrupt {
                namespace: "(bulk load)".into(),
                target: target.to_owned(),
                reason: match other {
                    Err(e) => e,
                    Ok(_) => "not a bulk-load record".into(),
                },
            }),
        }
    }

    /// Record that a bulk load into `b.target` began (before its graph is switched off).
    pub async fn save_bulk_load(&self, b: &BulkLoad) -> Result<(), StateError> {
        Ok(self
            .put(load_id(&b.target), &Record::Bulk(b.clone()))
            .await?)
    }

    /// Record that a shard loaded its part.
    pub async fn save_bulk_done(&self, d: &BulkDone) -> Result<(), StateError> {
        let id = done_id(&d.target, d.shard, d.shards);
        Ok(self.put(id, &Record::BulkDone(d.clone())).await?)
    }

    /// The shards of `b` that have not loaded their part yet.
    pub async fn bulk_pending(&self, b: &BulkLoad) -> Result<Vec<u32>, StateError> {
        let mut pending = Vec::new();
        for shard in 0..b.shards {
            let done = self.get(done_id(&b.target, shard, b.shards)).await?;
            if !matches!(done, Some(Ok(Record::BulkDone(_)))) {
                pending.push(shard);
            }
        }
        Ok(pending)
    }

    /// Remove `b`'s records: the load is over.
    pub async fn end_bulk_load(&self, b: &BulkLoad) -> Result<(), StateError> {
        for shard in 0..b.shards {
            self.remove(done_id(&b.target, shard, b.shards)).await?;
        }
        Ok(self.remove(load_id(&b.target)).await?)
    }
}
