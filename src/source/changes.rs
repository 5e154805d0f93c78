//! MongoDB change streams, for `watch`: a [`ChangeFeed`] on one collection, opened at a stored
//! resume token or at the present, read in micro-batches of document keys. Only the keys are
//! used: `watch` reads each changed document's current version itself (with the job's filter),
//! so inserts, updates, replaces, deletes and documents leaving the filter take one path, and an
//! event seen twice changes nothing.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use mongodb::bson::{Bson, Document};
use mongodb::change_stream::ChangeStream;
use mongodb::change_stream::event::{ChangeStreamEvent, OperationType, ResumeToken};

use super::id_order::id_key;
use super::mongo::{MongoSource, brief};
use super::{Namespace, SourceError};

/// Server error codes that mean a resume token points into history the server no longer has:
/// 286 ChangeStreamHistoryLost, 280 ChangeStreamFatalError (servers before 4.4 use it for
/// the same).
const HISTORY_LOST: [i32; 2] = [286, 280];

/// Events of one micro-batch, by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventKinds {
    pub insert: u64,
    pub update: u64,
    pub replace: u64,
    pub delete: u64,
    /// drop, rename, dropDatabase, invalidate and kinds this version does not know.
    pub other: u64,
}

/// One micro-batch of changes.
#[derive(Debug, Default)]
pub struct ChangeBatch {
    /// `_id`s of the changed documents, each once, in the order first seen.
    pub ids: Vec<Bson>,
    pub kinds: EventKinds,
    /// The collection went away under the stream (drop, rename, dropDatabase, invalidate):
    /// what happened, in words. The stream ends with it.
    pub invalidated: Option<String>,
    /// Cluster time (seconds) of the batch's last event.
    pub cluster_time: Option<u32>,
    pub events: usize,
}

/// A change stream on one collection.
pub struct ChangeFeed {
    stream: ChangeStream<ChangeStreamEvent<Document>>,
    namespace: Namespace,
}

/// A resume token as text (canonical Extended JSON), for the records collection.
pub fn token_text(token: &ResumeToken) -> String {
    mongodb::bson::to_bson(token)
        .map(|b| b.into_canonical_extjson().to_string())
        .unwrap_or_default()
}

/// A resume token from [`token_text`]'s text.
fn parse_token(text: &str) -> Option<ResumeToken> {
    let value: serde_json::Value = serde_json::from_str(text).ok()?;
    let bson = Bson::try_from(value).ok()?;
    mongodb::bson::from_bson(bson).ok()
}

impl SourceError {
    /// Whether this error says the change stream's history is gone (resume impossible).
    pub fn is_history_lost(&self) -> bool {
        matches!(self, SourceError::HistoryLost { .. })
    }
}

impl MongoSource {
    /// A change stream on this collection: after `token` (text from [`token_text`]), or from
    /// now. A getMore waits at most `max_await` for new events. A token the server no longer
    /// has history for is [`SourceError::HistoryLost`].
    pub async fn changes(
        &self,
        token: Option<&str>,
        max_await: Duration,
    ) -> Result<ChangeFeed, SourceError> {
        let resume = match token {
            None => None,
            Some(t) => Some(parse_token(t).ok_or_else(|| SourceError::HistoryLost {
                namespace: self.namespace.to_string(),
                reason: "the stored resume token does not parse".into(),
            })?),
        };
        // Only the keys: no full documents or update descriptions to decode (a document with
        // invalid UTF-8 or near 16 MiB must not make its event unreadable for ever).
        let keys = mongodb::bson::doc! {"$project": {
            "operationType": 1, "documentKey": 1, "clusterTime": 1, "ns": 1, "to": 1,
        }};
        let stream = self
            .typed_collection()
            .watch()
            .pipeline([keys])
            .resume_after(resume)
            .max_await_time(max_await)
            .await
            .map_err(|e| change_error(&self.namespace, e))?;
        Ok(ChangeFeed {
            stream,
            namespace: self.namespace.clone(),
        })
    }
}

impl ChangeFeed {
    /// The token that covers every event returned so far (`None` only from a server that gives
    /// none, which a change stream on MongoDB >= 4.0.7 always does).
    pub fn token(&self) -> Option<String> {
        self.stream.resume_token().as_ref().map(token_text)
    }

    /// The next micro-batch: events until `max` of them, `delay` after the first, or the
    /// server has no more (an empty getMore); an empty batch after one getMore found nothing.
    /// The stream's token covers the batch once it is returned.
    pub async fn next_batch(
        &mut self,
        max: usize,
        delay: Duration,
    ) -> Result<ChangeBatch, SourceError> {
        let mut batch = ChangeBatch::default();
        let mut seen = HashSet::new();
        let mut first: Option<Instant> = None;
        loop {
            let event = self
                .stream
                .next_if_any()
                .await
                .map_err(|e| change_error(&self.namespace, e))?;
            let Some(event) = event else {
                if !self.stream.is_alive() {
                    // Closed without an invalidate event (a lost cursor the driver could not
                    // resume): what it had read is not applied; reopen at the stored token.
                    return Err(SourceError::StreamEnded(self.namespace.to_string()));
                }
                return Ok(batch);
            };
            batch.events += 1;
            if let Some(t) = event.cluster_time {
                batch.cluster_time = Some(t.time);
            }
            let key = event.document_key.as_ref().and_then(|k| k.get("_id"));
            match &event.operation_type {
                OperationType::Insert => batch.kinds.insert += 1,
                OperationType::Update => batch.kinds.update += 1,
                OperationType::Replace => batch.kinds.replace += 1,
                OperationType::Delete => batch.kinds.delete += 1,
                other => {
                    batch.kinds.other += 1;
                    if let Some(why) = self.invalidation(other, &event) {
                        batch.invalidated = Some(why);
                        return Ok(batch);
                    }
                }
            }
            if let Some(id) = key
                && seen.insert(id_key(id))
            {
                batch.ids.push(id.clone());
            }
            let since = *first.get_or_insert_with(Instant::now);
            if batch.events >= max || since.elapsed() >= delay {
                return Ok(batch);
            }
        }
    }

    /// What an event that ends the stream means, in words; `None` for other events.
    fn invalidation(
        &self,
        kind: &OperationType,
        event: &ChangeStreamEvent<Document>,
    ) -> Option<String> {
        let ns = &self.namespace;
        Some(match kind {
            OperationType::Drop => format!("collection {ns} was dropped"),
            OperationType::DropDatabase => format!("database {} was dropped", ns.database),
            OperationType::Rename => match &event.to {
                Some(to) => format!(
                    "collection {ns} was renamed to {}.{}",
                    to.db,
                    to.coll.as_deref().unwrap_or("?")
                ),
                None => format!("collection {ns} was renamed"),
            },
            OperationType::Invalidate => format!("the change stream on {ns} was invalidated"),
            _ => return None,
        })
    }
}

/// A change stream's error: history lost, or a query error (transient ones are retried).
fn change_error(namespace: &Namespace, e: mongodb::error::Error) -> SourceError {
    use mongodb::error::ErrorKind;
    match &*e.kind {
        ErrorKind::Command(c) if HISTORY_LOST.contains(&c.code) => SourceError::HistoryLost {
            namespace: namespace.to_string(),
            reason: brief(&e),
        },
        _ => SourceError::Query {
            namespace: namespace.to_string(),
            error: e,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resume_token_survives_its_text_form() {
        let raw = mongodb::bson::doc! {"_data": "8263A1B2C3000000012B0229296E04"};
        let token: ResumeToken = mongodb::bson::from_bson(Bson::Document(raw)).unwrap();
        let text = token_text(&token);
        assert!(text.contains("_data"), "{text}");
        assert_eq!(parse_token(&text), Some(token));
        assert_eq!(parse_token("not json"), None);
    }
}
