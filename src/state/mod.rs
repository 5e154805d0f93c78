//! The records collection: one owner for the state that several parts read. Every record is a
//! typed [`Record`] (checkpoint, lease, run, watch) in a collection next to the data
//! ([`RECORDS_COLLECTION`]); sync, `status` and locking read the same types.

pub mod bulk;
pub mod checkpoint;
pub mod lease;
pub mod store_lock;
pub mod watch;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

pub use checkpoint::{Checkpoint, Cursor, checkpoint_id};
pub use lease::{Holder, Lease, LockError};
pub use store_lock::{StoreLock, lock_store};
pub use watch::{Phase, WatchState};

use crate::ids::named_uuid;
use crate::report::RunReport;
use crate::sink::{
    Ensure, Fields, Point, Sink, SinkError, VectorSpec, ensure_collection, scroll_all,
};

/// The collection holding checkpoint, lease and run records.
pub const RECORDS_COLLECTION: &str = "mongo2qdrant_checkpoints";

/// One record of the records collection. (A handful are read at a time, so the size of the
/// largest variant, a checkpoint, costs nothing worth a box.)
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
#[allow(clippy::large_enum_variant)]
pub enum Record {
    Checkpoint(Checkpoint),
    Lease(Lease),
    Run { report: Box<RunReport> },
    Watch(WatchState),
    Bulk(bulk::BulkLoad),
    BulkDone(bulk::BulkDone),
    Settings(AskedSettings),
}

/// The collection settings the latest run asked of a target (`status` shows where the
/// collection has drifted from them since).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AskedSettings {
    pub target: String,
    pub asked: crate::sink::Settings,
    pub at: String,
}

/// Errors reading or writing records.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(
        "checkpoint record for {namespace} -> {target} is corrupt ({reason}); rerun with --fresh to start a new full pass (ids are deterministic, nothing is duplicated)"
    )]
    Corrupt {
        namespace: String,
        target: String,
        reason: String,
    },
    #[error(transparent)]
    Sink(#[from] SinkError),
}

impl crate::retry::Transient for StateError {
    fn is_transient(&self) -> bool {
        matches!(self, StateError::Sink(s) if s.is_transient())
    }
}

/// Now, as RFC 3339.
pub fn now_rfc3339() -> String {
    mongodb::bson::DateTime::now()
        .try_to_rfc3339_string()
        .unwrap_or_default()
}

/// Record id of the latest run's report.
pub fn last_run_id() -> Uuid {
    named_uuid("mongo2qdrant last run v1", &[])
}

/// Reads and writes records in [`RECORDS_COLLECTION`].
pub struct StateStore<'a, S: Sink + ?Sized> {
    sink: &'a S,
}

const RECORD_VECTOR: VectorSpec = VectorSpec {
    name: None,
    dimension: 1,
    distance: crate::sink::Distance::Cosine,
};

impl<'a, S: Sink + ?Sized> StateStore<'a, S> {
    /// Open the store, creating its collection when `create`.
    pub async fn open(sink: &'a S, create: bool) -> Result<Self, StateError> {
        if create {
            ensure_collection(
                sink,
                RECORDS_COLLECTION,
                &RECORD_VECTOR,
                &crate::sink::Settings::default(),
                Ensure::Create,
            )
            .await?;
        }
        Ok(Self { sink })
    }

    /// A record's raw payload (`None` when absent or the collection does not exist).
    async fn get_raw(&self, id: Uuid) -> Result<Option<Map<String, Value>>, SinkError> {
        if !self.sink.exists(RECORDS_COLLECTION).await? {
            return Ok(None);
        }
        Ok(self
            .sink
            .retrieve(RECORDS_COLLECTION, &[id], Fields::All, false)
            .await?
            .into_iter()
            .next()
            .map(|p| p.payload))
    }

    /// A record by id: `Ok(None)` when absent, `Err(reason)` inside when it does not parse.
    pub(crate) async fn get(&self, id: Uuid) -> Result<Option<Result<Record, String>>, SinkError> {
        Ok(self
            .get_raw(id)
            .await?
            .map(|raw| serde_json::from_value(Value::Object(raw)).map_err(|e| e.to_string())))
    }

    /// Write a raw record (acknowledged on return). For records of this module and for tests
    /// that plant a damaged one.
    pub async fn put_raw(&self, id: Uuid, payload: Map<String, Value>) -> Result<(), SinkError> {
        let point = Point {
            id,
            vector: vec![1.0],
            sparse: None,
            payload,
        };
        self.sink
            .upsert(RECORDS_COLLECTION, None, vec![point])
            .await
    }

    /// Whether record `id` exists but does not parse.
    pub(crate) async fn damaged(&self, id: Uuid) -> Result<bool, SinkError> {
        Ok(matches!(self.get(id).await?, Some(Err(_))))
    }

    /// Delete record `id` (acknowledged on return).
    pub(crate) async fn remove(&self, id: Uuid) -> Result<(), SinkError> {
        self.sink.delete(RECORDS_COLLECTION, &[id]).await
    }

    /// Write `record` only if `condition` holds, checked by the target in the same operation
    /// (read the record back to learn whether it did).
    pub(crate) async fn put_if(
        &self,
        id: Uuid,
        record: &Record,
        condition: crate::sink::WriteIf<'_>,
    ) -> Result<(), SinkError> {
        let Value::Object(payload) = serde_json::to_value(record).expect("records serialise")
        else {
            unreachable!("a tagged record serialises to an object")
        };
        let point = Point {
            id,
            vector: vec![1.0],
            sparse: None,
            payload,
        };
        self.sink
            .upsert_if(RECORDS_COLLECTION, point, condition)
            .await
    }

    pub(crate) async fn put(&self, id: Uuid, record: &Record) -> Result<(), SinkError> {
        let Value::Object(payload) = serde_json::to_value(record).expect("records serialise")
        else {
            unreachable!("a tagged record serialises to an object")
        };
        self.put_raw(id, payload).await
    }

    /// Every record that parses, in id order (for `status`); others are skipped with a warning.
    pub async fn records(&self) -> Result<Vec<Record>, SinkError> {
        if !self.sink.exists(RECORDS_COLLECTION).await? {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for p in scroll_all(self.sink, RECORDS_COLLECTION, None, Fields::All).await? {
            match serde_json::from_value(Value::Object(p.payload)) {
                Ok(r) => out.push(r),
                Err(e) => tracing::warn!("record {} does not parse: {e}", p.id),
            }
        }
        Ok(out)
    }

    /// The checkpoint of `namespace` into `target` (and its named `vector`, and `shard`).
    pub async fn checkpoint(
        &self,
        target: &str,
        namespace: &str,
        vector: Option<&str>,
        shard: Option<&str>,
    ) -> Result<Option<Checkpoint>, StateError> {
        let corrupt = |reason: String| StateError::Corrupt {
            namespace: namespace.to_owned(),
            target: target.to_owned(),
            reason,
        };
        match self
            .get(checkpoint_id(target, namespace, vector, shard))
            .await?
        {
            None => Ok(None),
            Some(Ok(Record::Checkpoint(cp))) => Ok(Some(cp)),
            Some(Ok(_)) => Err(corrupt("not a checkpoint record".into())),
            Some(Err(reason)) => Err(corrupt(reason)),
        }
    }

    /// Store `cp`.
    pub async fn save_checkpoint(&self, cp: &Checkpoint) -> Result<(), StateError> {
        let id = checkpoint_id(
            &cp.target,
            &cp.namespace,
            cp.vector.as_deref(),
            cp.shard.as_deref(),
        );
        Ok(self.put(id, &Record::Checkpoint(cp.clone())).await?)
    }

    /// Record the settings a run asked of `target`.
    pub async fn save_settings(
        &self,
        target: &str,
        asked: &crate::sink::Settings,
    ) -> Result<(), StateError> {
        let record = Record::Settings(AskedSettings {
            target: target.to_owned(),
            asked: asked.clone(),
            at: now_rfc3339(),
        });
        let id = named_uuid("mongo2qdrant settings v1", &[target]);
        Ok(self.put(id, &record).await?)
    }

    /// Record the report of the latest run (shown by `status`).
    pub async fn save_run(&self, report: &RunReport) -> Result<(), StateError> {
        let record = Record::Run {
            report: Box::new(report.clone()),
        };
        Ok(self.put(last_run_id(), &record).await?)
    }
}
