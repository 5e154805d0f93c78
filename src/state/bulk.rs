//! Bulk-load records: that a target collection loads with its HNSW graph building off, what to
//! switch it back to, and which parts (a namespace's shard) take part and which have loaded.
//! One record per target, written before the graph is switched off, and one per part (no two
//! writers share one): written when a run joins the load, again when its part is loaded.

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

/// Shard `shard` of `shards` of `namespace` takes part in the load into `target` begun at
/// `load_started`, and whether it has loaded (a record of an earlier load never counts for a
/// later one). Every namespace that joined must load all its shards before the graph goes
/// back on: two collections loaded into one target by two runs wait for each other.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BulkDone {
    pub target: String,
    pub load_started: String,
    pub shard: u32,
    pub shards: u32,
    pub at: String,
    pub run_id: String,
    /// The source namespace of the part (empty in records of versions before namespaces).
    #[serde(default)]
    pub namespace: String,
    /// Loaded, or (false) joined and still loading.
    #[serde(default = "loaded")]
    pub loaded: bool,
}

fn loaded() -> bool {
    true
}

fn load_id(target: &str) -> Uuid {
    named_uuid("mongo2qdrant bulk load v1", &[target])
}

fn done_id(d: &BulkDone) -> Uuid {
    let part = format!("{}/{}", d.shard, d.shards);
    if d.namespace.is_empty() {
        named_uuid(
            "mongo2qdrant bulk done v1",
            &[&d.target, &d.load_started, &part],
        )
    } else {
        let parts = [&d.target, &d.load_started, &d.namespace, &part];
        named_uuid("mongo2qdrant bulk part v2", &parts.map(String::as_str))
    }
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

    /// Record that a part joined or loaded.
    pub async fn save_bulk_done(&self, d: &BulkDone) -> Result<(), StateError> {
        Ok(self.put(done_id(d), &Record::BulkDone(d.clone())).await?)
    }

    /// Take back a part's record (the load ended before it was written).
    pub async fn remove_bulk_done(&self, d: &BulkDone) -> Result<(), StateError> {
        Ok(self.remove(done_id(d)).await?)
    }

    /// The part records of load `b`.
    async fn bulk_parts(&self, b: &BulkLoad) -> Result<Vec<BulkDone>, StateError> {
        Ok(self
            .records()
            .await?
            .into_iter()
            .filter_map(|r| match r {
                Record::BulkDone(d) if d.target == b.target && d.load_started == b.started_at => {
                    Some(d)
                }
                _ => None,
            })
            .collect())
    }

    /// What `b` still waits for: each namespace that joined it, with its shards (of the
    /// load's count) that have not loaded yet.
    pub async fn bulk_pending(&self, b: &BulkLoad) -> Result<Vec<(String, u32)>, StateError> {
        let parts: Vec<BulkDone> = self
            .bulk_parts(b)
            .await?
            .into_iter()
            .filter(|d| d.shards == b.shards)
            .collect();
        let mut namespaces: Vec<&str> = parts.iter().map(|d| d.namespace.as_str()).collect();
        namespaces.sort_unstable();
        namespaces.dedup();
        if namespaces.is_empty() {
            namespaces.push("");
        }
        let mut pending = Vec::new();
        for ns in namespaces {
            for shard in 0..b.shards {
                let done = parts
                    .iter()
                    .any(|d| d.namespace == ns && d.shard == shard && d.loaded);
                if !done {
                    pending.push((ns.to_owned(), shard));
                }
            }
        }
        Ok(pending)
    }

    /// Remove `b`'s records: the load is over.
    pub async fn end_bulk_load(&self, b: &BulkLoad) -> Result<(), StateError> {
        for d in self.bulk_parts(b).await? {
            self.remove(done_id(&d)).await?;
        }
        Ok(self.remove(load_id(&b.target)).await?)
    }
}
