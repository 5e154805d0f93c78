//! Checkpoints: one record per (target collection, source namespace, named vector) saying up to
//! which `_id` everything of an unfinished pass is acknowledged by the target. A [`Cursor`] is
//! the one handle a pass uses: where to resume, and advancing only after the target acknowledged
//! what the new position covers. A finished pass is marked `complete`, so the next run starts a
//! new full pass (unchanged documents then cost a hash lookup, not an embedding).

use mongodb::bson::Bson;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::{StateError, StateStore, now_rfc3339};
use crate::ids::named_uuid;
use crate::report::Counts;
use crate::sink::{Fields, Sink};

/// Where a namespace's pass stands.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    pub target: String,
    pub namespace: String,
    /// The named vector the pass writes (`None`: the collection's unnamed vector).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vector: Option<String>,
    /// The shard (`INDEX/COUNT`) whose pass this is (`None`: the whole namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<String>,
    /// The last acknowledged `_id` of the current pass, as the text of its canonical Extended
    /// JSON ([`Checkpoint::set_last_id`]): a string, because a Qdrant server keeps payload objects as
    /// protobuf maps and would lose the field order of a compound `_id`. Records of earlier
    /// versions hold the Extended JSON object itself; they are still read.
    pub last_id: Option<Value>,
    /// The pass reached the end of the source.
    pub complete: bool,
    /// A point this pass wrote (with this vector's hash) before the checkpoint: a resume finds
    /// it in the target, or the target is not the collection the checkpoint was written for
    /// (dropped, or dropped and recreated) and a full pass starts instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anchor: Option<Uuid>,
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
    /// Set the last acknowledged `_id`.
    pub fn set_last_id(&mut self, id: &Bson) {
        let text = id.clone().into_canonical_extjson().to_string();
        self.last_id = Some(Value::String(text));
    }

    /// The last acknowledged `_id`, if any (and if it reads back).
    pub fn last_id(&self) -> Option<Bson> {
        let value = match self.last_id.as_ref()? {
            Value::String(text) => serde_json::from_str(text).ok()?,
            other => other.clone(),
        };
        Bson::try_from(value).ok()
    }

    /// The `_id` to resume after, if this record describes an unfinished pass under `settings`.
    pub fn resume_after(&self, settings: &str) -> Option<Bson> {
        if self.complete || self.settings != settings {
            return None;
        }
        self.last_id()
    }
}

/// Record id of the checkpoint of `namespace` into `target` (and its named `vector`, and the
/// `shard` of the namespace as `INDEX/COUNT`).
pub fn checkpoint_id(
    target: &str,
    namespace: &str,
    vector: Option<&str>,
    shard: Option<&str>,
) -> Uuid {
    let context = "mongo2qdrant checkpoint v1";
    match (vector, shard) {
        (None, None) => named_uuid(context, &[target, namespace]),
        (Some(v), None) => named_uuid(context, &[target, namespace, v]),
        (v, Some(s)) => named_uuid(
            "mongo2qdrant shard checkpoint v1",
            &[target, namespace, v.unwrap_or(""), s],
        ),
    }
}

/// Whether `target` holds the point `id` with the content hash of `vector`: the anchor of a
/// checkpoint (a missing collection holds nothing).
pub(super) async fn has_point<S: Sink + ?Sized>(
    store: &StateStore<'_, S>,
    target: &str,
    vector: Option<&str>,
    id: Uuid,
) -> Result<bool, StateError> {
    if !store.sink.exists(target).await? {
        return Ok(false);
    }
    let key = crate::ids::keys::hash(vector);
    let found = store
        .sink
        .retrieve(
            target,
            &[id],
            Fields::Only(std::slice::from_ref(&key)),
            false,
        )
        .await?;
    Ok(found.iter().any(|p| p.payload.contains_key(&key)))
}

/// What identifies a pass: its route, the settings hash and what made the vectors.
#[derive(Debug, Clone)]
pub struct PassKey {
    pub target: String,
    pub namespace: String,
    pub vector: Option<String>,
    pub shard: Option<crate::shard::Shard>,
    pub settings: String,
    pub model: String,
    pub dimension: usize,
    pub run_id: String,
}

/// A pass's position: where it resumes, and its checkpoint writes. A read-only cursor (dry
/// runs) knows where it would resume but writes nothing.
pub struct Cursor<'a, S: Sink + ?Sized> {
    store: StateStore<'a, S>,
    record: Checkpoint,
    resume_after: Option<Bson>,
    read_only: bool,
}

impl<'a, S: Sink + ?Sized> Cursor<'a, S> {
    /// The cursor of `key`'s pass: resuming after the stored checkpoint when it describes an
    /// unfinished pass under the same settings (and `resumable`), else from the start.
    pub async fn open(
        store: StateStore<'a, S>,
        key: PassKey,
        fresh: bool,
        resumable: bool,
        read_only: bool,
    ) -> Result<Self, StateError> {
        let previous = if fresh {
            None
        } else {
            store
                .checkpoint(
                    &key.target,
                    &key.namespace,
                    key.vector.as_deref(),
                    key.shard.map(|s| s.to_string()).as_deref(),
                )
                .await?
        };
        let mut resume_after = previous
            .as_ref()
            .filter(|_| resumable)
            .and_then(|cp| cp.resume_after(&key.settings));
        // Resume only into the collection the checkpoint was written for: its anchor point
        // must be there. A checkpoint with none (an earlier version's, or a pass that had
        // written nothing yet) cannot tell, so a full pass runs (unchanged documents cost a
        // hash lookup, not an embedding).
        let anchor = previous.as_ref().and_then(|cp| cp.anchor);
        if resume_after.is_some() {
            let why = match anchor {
                None => Some("it names no point of its pass to check the target by".to_owned()),
                Some(a) if !has_point(&store, &key.target, key.vector.as_deref(), a).await? => {
                    Some(format!(
                        "its point {a} is gone: the collection was dropped or recreated"
                    ))
                }
                Some(_) => None,
            };
            if let Some(why) = why {
                tracing::warn!(
                    "{} -> {}: not resuming from the checkpoint ({why}); starting a full pass",
                    key.namespace,
                    key.target
                );
                resume_after = None;
            }
        }
        let started_at = match (&previous, &resume_after) {
            (Some(cp), Some(_)) => cp.started_at.clone(),
            _ => now_rfc3339(),
        };
        let mut record = Checkpoint {
            target: key.target,
            namespace: key.namespace,
            vector: key.vector,
            shard: key.shard.map(|s| s.to_string()),
            last_id: None,
            complete: false,
            anchor: resume_after.as_ref().and(anchor),
            settings: key.settings,
            run_id: key.run_id,
            started_at,
            updated_at: now_rfc3339(),
            model: key.model,
            dimension: key.dimension,
            counts: Counts::default(),
        };
        if let Some(id) = &resume_after {
            record.set_last_id(id);
        }
        Ok(Self {
            store,
            record,
            resume_after,
            read_only,
        })
    }

    /// The `_id` this pass resumes after (`None`: from the start).
    pub fn resume_after(&self) -> Option<&Bson> {
        self.resume_after.as_ref()
    }

    /// Everything up to `last` is acknowledged by the target: move the checkpoint there.
    /// `anchor`: a point the acknowledged writes hold (the last anchor stays when none).
    pub async fn advance(
        &mut self,
        last: Bson,
        anchor: Option<Uuid>,
        totals: &Counts,
    ) -> Result<(), StateError> {
        self.record.set_last_id(&last);
        if anchor.is_some() {
            self.record.anchor = anchor;
        }
        self.write(totals).await
    }

    /// The pass ended; `complete` when it covered the whole source.
    pub async fn finish(&mut self, complete: bool, totals: &Counts) -> Result<(), StateError> {
        self.record.complete = complete;
        self.write(totals).await
    }

    async fn write(&mut self, totals: &Counts) -> Result<(), StateError> {
        if self.read_only {
            return Ok(());
        }
        self.record.updated_at = now_rfc3339();
        self.record.counts = totals.clone();
        self.store.save_checkpoint(&self.record).await
    }
}
