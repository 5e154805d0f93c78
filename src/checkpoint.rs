//! Checkpoints: one record per (target collection, source namespace, named vector) in a
//! collection of their own next to the data. A record says up to which `_id` everything of an unfinished pass is
//! acknowledged by the target; it is written only after those points were acknowledged, in
//! order. A finished pass is marked `complete`, so the next run starts a new full pass (unchanged
//! documents then cost a hash lookup, not an embedding).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::ids::named_uuid;
use crate::sink::{Ensure, Point, Sink, SinkError, VectorSpec};

/// The collection holding checkpoint, run and lease records.
pub const CHECKPOINT_COLLECTION: &str = "mongo2qdrant_checkpoints";

/// Errors reading or writing checkpoints.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
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

/// Counts of one run (or one namespace of a run).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Counts {
    pub read: u64,
    pub embedded: u64,
    pub skipped_unchanged: u64,
    pub skipped_no_text: u64,
    /// Documents whose text was current but copied payload changed: payload rewritten, no
    /// embedding.
    #[serde(default)]
    pub payload_updated: u64,
    pub upserted: u64,
    pub deleted: u64,
    pub failed: u64,
}

/// Where a namespace's pass stands.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    pub target: String,
    pub namespace: String,
    /// The named vector the pass writes (`None`: the collection's unnamed vector).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vector: Option<String>,
    /// Canonical Extended JSON of the last acknowledged `_id` of the current pass.
    pub last_id: Option<Value>,
    /// The pass reached the end of the source.
    pub complete: bool,
    /// Hash of what decides the points (model, template, chunking, filter): a resume is only
    /// valid under the same settings.
    pub settings: String,
    pub run_id: String,
    pub started_at: String,
    pub updated_at: String,
    pub model: String,
    pub dimension: usize,
    pub counts: Counts,
}

impl Checkpoint {
    /// The `_id` to resume after, if this record describes an unfinished pass under `settings`.
    pub fn resume_after(&self, settings: &str) -> Option<mongodb::bson::Bson> {
        if self.complete || self.settings != settings {
            return None;
        }
        self.last_id
            .clone()
            .and_then(|v| mongodb::bson::Bson::try_from(v).ok())
    }
}

/// Record id of the checkpoint of `namespace` into `target` (and its named `vector`).
pub fn checkpoint_id(target: &str, namespace: &str, vector: Option<&str>) -> Uuid {
    match vector {
        None => named_uuid("mongo2qdrant checkpoint v1", &[target, namespace]),
        Some(v) => named_uuid("mongo2qdrant checkpoint v1", &[target, namespace, v]),
    }
}

/// Record id of the latest run's report.
pub fn last_run_id() -> Uuid {
    named_uuid("mongo2qdrant last run v1", &[])
}

/// Reads and writes records in [`CHECKPOINT_COLLECTION`].
pub struct CheckpointStore<'a, S: Sink> {
    sink: &'a S,
}

const RECORD_VECTOR: VectorSpec = VectorSpec {
    name: None,
    dimension: 1,
};

impl<'a, S: Sink> CheckpointStore<'a, S> {
    /// Open the store, creating its collection when `create`.
    pub async fn open(sink: &'a S, create: bool) -> Result<Self, CheckpointError> {
        if create {
            sink.ensure_collection(CHECKPOINT_COLLECTION, &RECORD_VECTOR, Ensure::Create)
                .await?;
        }
        Ok(Self { sink })
    }

    /// A raw record by id (`None` when absent or the collection does not exist).
    pub async fn get_raw(&self, id: Uuid) -> Result<Option<Map<String, Value>>, SinkError> {
        if !self.sink.exists(CHECKPOINT_COLLECTION).await? {
            return Ok(None);
        }
        Ok(self
            .sink
            .retrieve(CHECKPOINT_COLLECTION, &[id], false)
            .await?
            .into_iter()
            .next()
            .map(|p| p.payload))
    }

    /// Write a raw record (acknowledged on return).
    pub async fn put_raw(&self, id: Uuid, payload: Map<String, Value>) -> Result<(), SinkError> {
        self.sink
            .upsert(
                CHECKPOINT_COLLECTION,
                None,
                vec![Point {
                    id,
                    vector: vec![1.0],
                    payload,
                }],
            )
            .await
    }

    /// The checkpoint of `namespace` into `target` (and its named `vector`).
    pub async fn load(
        &self,
        target: &str,
        namespace: &str,
        vector: Option<&str>,
    ) -> Result<Option<Checkpoint>, CheckpointError> {
        let Some(mut raw) = self
            .get_raw(checkpoint_id(target, namespace, vector))
            .await?
        else {
            return Ok(None);
        };
        raw.remove("kind");
        serde_json::from_value(Value::Object(raw))
            .map(Some)
            .map_err(|e| CheckpointError::Corrupt {
                namespace: namespace.to_owned(),
                target: target.to_owned(),
                reason: e.to_string(),
            })
    }

    /// Record the report of the latest run (shown by `status`).
    pub async fn save_run(&self, report: &Value) -> Result<(), CheckpointError> {
        let mut payload = Map::new();
        payload.insert("kind".into(), "run".into());
        payload.insert("report".into(), report.clone());
        self.put_raw(last_run_id(), payload).await?;
        Ok(())
    }

    /// Store `cp`.
    pub async fn save(&self, cp: &Checkpoint) -> Result<(), CheckpointError> {
        let Value::Object(mut payload) = serde_json::to_value(cp).expect("checkpoint serialises")
        else {
            unreachable!("a struct serialises to an object")
        };
        payload.insert("kind".into(), "checkpoint".into());
        self.put_raw(
            checkpoint_id(&cp.target, &cp.namespace, cp.vector.as_deref()),
            payload,
        )
        .await?;
        Ok(())
    }
}
