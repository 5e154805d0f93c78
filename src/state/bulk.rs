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
    /// The run that switches graph building back on (`none` until one claims it): of shards
    /// that finish together, exactly one does.
    #[serde(default = "nobody")]
    pub finisher: String,
}

/// [`BulkLoad::finisher`] before any run claimed it.
pub const NOBODY: &str = "none";

fn nobody() -> String {
    NOBODY.to_owned()
}

/// Shard `shard` of `shards` has loaded its part of `target` in the load begun at
/// `load_started` (a record of an earlier load never counts for a later one).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BulkDone {
    pub target: String,
    pub load_started: String,
    pub shard: u32,
    pub shards: u32,
    pub at: String,
    pub run_id: String,
}

fn load_id(target: &str) -> Uuid {
    named_uuid("mongo2qdrant bulk load v1", &[target])
}

fn done_id(target: &str, load_started: &str, shard: u32, shards: u32) -> Uuid {
    named_uuid(
        "mongo2qdrant bulk done v1",
        &[target, load_started, &format!("{shard}/{shards}")],
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

    /// Record that a bulk load into `b.target` begins, unless one is recorded already (checked
    /// by the target in the same write): returns the load recorded now, this one or another
    /// run's (before its graph is switched off, so that a shard that finds the graph off finds
    /// the load too).
    pub async fn begin_bulk_load(&self, b: &BulkLoad) -> Result<BulkLoad, StateError> {
        let record = Record::Bulk(b.clone());
        self.put_if(load_id(&b.target), &record, crate::sink::WriteIf::Absent)
            .await?;
        Ok(self
            .bulk_load(&b.target)
            .await?
            .unwrap_or_else(|| b.clone()))
    }

    /// Claim the end of load `b` for `run_id` (compare-and-set on the target): whether this run
    /// switches graph building back on.
    pub async fn claim_bulk_finish(&self, b: &BulkLoad, run_id: &str) -> Result<bool, StateError> {
        let mut claimed = b.clone();
        claimed.finisher = run_id.to_owned();
        let unclaimed = crate::sink::MatchFilter {
            key: "finisher".into(),
            value: NOBODY.into(),
        };
        self.put_if(
            load_id(&b.target),
            &Record::Bulk(claimed),
            crate::sink::WriteIf::Matches(&unclaimed),
        )
        .await?;
        Ok(self
            .bulk_load(&b.target)
            .await?
            .is_some_and(|now| now.finisher == run_id))
    }

    /// Replace the record of a load under way (another shard count took it over).
    pub async fn save_bulk_load(&self, b: &BulkLoad) -> Result<(), StateError> {
        Ok(self
            .put(load_id(&b.target), &Record::Bulk(b.clone()))
            .await?)
    }

    /// Record that a shard loaded its part.
    pub async fn save_bulk_done(&self, d: &BulkDone) -> Result<(), StateError> {
        let id = done_id(&d.target, &d.load_started, d.shard, d.shards);
        Ok(self.put(id, &Record::BulkDone(d.clone())).await?)
    }

    /// Take back a shard's record of its part (the load ended before it was written).
    pub async fn remove_bulk_done(&self, d: &BulkDone) -> Result<(), StateError> {
        let id = done_id(&d.target, &d.load_started, d.shard, d.shards);
        Ok(self.remove(id).await?)
    }

    /// The shards of `b` that have not loaded their part yet.
    pub async fn bulk_pending(&self, b: &BulkLoad) -> Result<Vec<u32>, StateError> {
        let mut pending = Vec::new();
        for shard in 0..b.shards {
            let done = self
                .get(done_id(&b.target, &b.started_at, shard, b.shards))
                .await?;
            if !matches!(done, Some(Ok(Record::BulkDone(_)))) {
                pending.push(shard);
            }
        }
        Ok(pending)
    }

    /// Remove `b`'s records: the load is over.
    pub async fn end_bulk_load(&self, b: &BulkLoad) -> Result<(), StateError> {
        for shard in 0..b.shards {
            self.remove(done_id(&b.target, &b.started_at, shard, b.shards))
                .await?;
        }
        Ok(self.remove(load_id(&b.target)).await?)
    }
}
