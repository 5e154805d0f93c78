//! Where a namespace's change stream stands: one record per (target collection, source
//! namespace) with the resume token that everything applied so far is covered by. The token is
//! written only after the writes of the events before it were acknowledged, so a restart (also
//! after kill -9) resumes from it and at worst applies some events twice (harmless: ids are
//! deterministic, hashes skip what is current).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Record, StateError, StateStore, now_rfc3339};
use crate::ids::named_uuid;
use crate::sink::Sink;

/// What the stored token means.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// A full pass is under way; the token was taken before it began. A restart resumes the
    /// pass from its checkpoint and the stream from the token.
    Pass,
    /// The pass is done; every change before the token is applied.
    Stream,
}

/// The change-stream position of one namespace into one target.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WatchState {
    pub target: String,
    pub namespace: String,
    /// The resume token as canonical Extended JSON text (opaque to us).
    pub token: String,
    pub phase: Phase,
    /// The pass under way must prune when it completes (a reconcile after lost history, a
    /// dropped or renamed collection): a restart runs it from the start.
    #[serde(default)]
    pub prune: bool,
    /// Hash of every job's settings on this namespace and target: another hash means another
    /// point layout, and a full pass.
    pub settings: String,
    pub run_id: String,
    pub updated_at: String,
    /// Cluster time (seconds) of the last applied event, 0 before the first.
    #[serde(default)]
    pub applied_until: u32,
    /// Per route: its points when counted, and the points deleted since because their
    /// documents render no text (the `--max-delete` sum of [`crate::pipeline::guard::LostText`]).
    #[serde(default)]
    pub lost_text: std::collections::BTreeMap<String, [u64; 2]>,
    /// `_id`s (canonical Extended JSON) of documents that failed under the stream (their
    /// stored points stay as they were): tried again at the next start, and dropped once a
    /// later change applied them.
    #[serde(default)]
    pub owed: Vec<String>,
    /// Too many documents were owed to keep: the next start runs a full pass (without prune,
    /// unless one is owed too), which reads every document again.
    #[serde(default)]
    pub repass: bool,
    /// A point of this namespace in the target when the state was saved: the stream belongs to
    /// that incarnation of the target collection. When it is gone (the target was dropped, or
    /// dropped and created again), a restart runs a full pass instead of resuming the stream.
    #[serde(default)]
    pub anchor: Option<uuid::Uuid>,
}

/// Record id of the watch state of `namespace` into `target`.
pub fn watch_id(target: &str, namespace: &str) -> Uuid {
    named_uuid("mongo2qdrant watch v1", &[target, namespace])
}

impl<S: Sink + ?Sized> StateStore<'_, S> {
    /// The watch state of `namespace` into `target`, if any.
    pub async fn watch_state(
        &self,
        target: &str,
        namespace: &str,
    ) -> Result<Option<WatchState>, StateError> {
        let corrupt = |reason: String| StateError::Corrupt {
            namespace: namespace.to_owned(),
            target: target.to_owned(),
            reason,
        };
        match self.get(watch_id(target, namespace)).await? {
            None => Ok(None),
            Some(Ok(Record::Watch(w))) => Ok(Some(w)),
            Some(Ok(_)) => Err(corrupt("not a watch record".into())),
            Some(Err(reason)) => Err(corrupt(reason)),
        }
    }

    /// Whether the target no longer holds the anchor point of `state` (written for `vector`):
    /// it is another incarnation of the collection than the stream's. A state without one
    /// (its namespace had no point then) cannot tell, and nothing of it can be lost.
    pub async fn anchor_gone(
        &self,
        state: &WatchState,
        vector: Option<&str>,
    ) -> Result<Option<uuid::Uuid>, StateError> {
        match state.anchor {
            Some(a) if !super::checkpoint::has_point(self, &state.target, vector, a).await? => {
                Ok(Some(a))
            }
            _ => Ok(None),
        }
    }

    /// A point of `state`'s namespace written for `vector`, as the target holds it now.
    pub async fn anchor_now(
        &self,
        state: &WatchState,
        vector: Option<&str>,
    ) -> Result<Option<uuid::Uuid>, StateError> {
        if !self.sink.exists(&state.target).await? {
            return Ok(None);
        }
        let ours = crate::sink::MatchFilter {
            key: crate::ids::keys::NAMESPACE.into(),
            value: state.namespace.clone(),
        };
        let key = crate::ids::keys::hash(vector);
        // Points of others (numeric ids, ordered first) may fill the first pages; a bounded
        // look: without an anchor a restart cannot tell the incarnation, and resumes as before.
        let mut offset = None;
        for _ in 0..40 {
            let page = self
                .sink
                .scroll(
                    &state.target,
                    Some(&ours),
                    crate::sink::Fields::Only(std::slice::from_ref(&key)),
                    offset,
                    256,
                )
                .await?;
            if let Some(p) = page.points.iter().find(|p| p.payload.contains_key(&key)) {
                return Ok(Some(p.id));
            }
            match page.next {
                Some(next) => offset = Some(next),
                None => return Ok(None),
            }
        }
        Ok(None)
    }

    /// Store `state` (acknowledged on return).
    pub async fn save_watch(&self, state: &WatchState) -> Result<(), StateError> {
        let mut state = state.clone();
        state.updated_at = now_rfc3339();
        let id = watch_id(&state.target, &state.namespace);
        Ok(self.put(id, &Record::Watch(state)).await?)
    }
}
