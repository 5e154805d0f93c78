//! MongoDB source: one cursor per collection, sorted by `_id` ascending, resuming strictly after
//! the checkpointed `_id`, with an optional filter and projection.

use std::collections::HashSet;
use std::time::Duration;

use mongodb::bson::{Bson, Document, RawDocumentBuf, doc};
use mongodb::options::ClientOptions;
use mongodb::{Client, Collection};
use tokio::sync::mpsc;

use super::{Namespace, SourceError, SourceItem, id_text};

/// A MongoDB collection to read.
#[derive(Debug, Clone)]
pub struct MongoSource {
    pub namespace: Namespace,
    client: Client,
    filter: Document,
    projection: Option<Document>,
    batch_size: u32,
}

/// One line for a driver error: its cause and the fix, without the driver's debug dump of the
/// topology (which repeats the cause inside nested `Kind: ...` records).
pub fn brief(e: &mongodb::error::Error) -> String {
    use mongodb::error::ErrorKind;
    match &*e.kind {
        ErrorKind::ServerSelection { message, .. } => {
            // The topology names each server's last error as `Error: Kind: <cause>, labels: ...`.
            let cause = message
                .split("Error: Kind: ")
                .nth(1)
                .and_then(|rest| rest.split(", labels").next())
                .unwrap_or("no server answered in time");
            let at = message
                .split("Address: ")
                .nth(1)
                .and_then(|rest| rest.split(',').next())
                .map_or_else(String::new, |a| format!(" at {a}"));
            format!(
                "no MongoDB server reachable{at} ({cause}); check --mongo-uri and that the server is running"
            )
        }
        ErrorKind::Command(c) => format!("{} ({}): {}", c.code_name, c.code, c.message),
        ErrorKind::Authentication { message, .. } => {
            format!("authentication failed ({message}); check the user and password in --mongo-uri")
        }
        ErrorKind::Io(io) => format!("connection error: {io}"),
        other => other.to_string(),
    }
}

pub use super::id_order::{after_id, id_key};
pub use crate::redact::redact_uri;

/// Connect to `uri` (lazily: the first operation reaches the server).
pub async fn connect(uri: &str, app_name: &str) -> Result<Client, SourceError> {
    let mut opts = ClientOptions::parse(uri)
        .await
        .map_err(|e| SourceError::Connect {
            uri: redact_uri(uri),
            reason: crate::redact::redact_in(&e.to_string(), uri),
        })?;
    opts.app_name.get_or_insert_with(|| app_name.to_owned());
    opts.server_selection_timeout
        .get_or_insert(Duration::from_secs(10));
    opts.connect_timeout.get_or_insert(Duration::from_secs(5));
    Client::with_options(opts).map_err(|e| SourceError::Connect {
        uri: redact_uri(uri),
        reason: crate::redact::redact_in(&e.to_string(), uri),
    })
}

impl MongoSource {
    pub fn new(
        client: Client,
        namespace: Namespace,
        filter: Document,
        projection: Option<Document>,
        batch_size: u32,
    ) -> Self {
        Self {
            namespace,
            client,
            filter,
            projection,
            batch_size,
        }
    }

    fn collection(&self) -> Collection<RawDocumentBuf> {
        self.client
            .database(&self.namespace.database)
            .collection(&self.namespace.collection)
    }

    /// The collection, for change streams (typed events).
    pub(super) fn typed_collection(&self) -> Collection<Document> {
        self.client
            .database(&self.namespace.database)
            .collection(&self.namespace.collection)
    }

    fn query_error(&self, source: mongodb::error::Error) -> SourceError {
        SourceError::Query {
            namespace: self.namespace.to_string(),
            error: source,
        }
    }

    /// Which of `ids` exist in the collection, whatever the filter says (as relaxed Extended
    /// JSON text, the form points store).
    pub async fn existing(&self, ids: &[Bson]) -> Result<HashSet<String>, SourceError> {
        let mut out = HashSet::new();
        for part in ids.chunks(1000) {
            let mut cursor = self
                .collection()
                .find(doc! {"_id": {"$in": part.to_vec()}})
                .projection(doc! {"_id": 1})
                .await
                .map_err(|e| self.query_error(e))?;
            while cursor.advance().await.map_err(|e| self.query_error(e))? {
                if let Ok(id) = cursor.current().get("_id") {
                    let id = id.and_then(|v| Bson::try_from(v).ok());
                    if let Some(id) = id {
                        out.insert(id.into_relaxed_extjson().to_string());
                    }
                }
            }
        }
        Ok(out)
    }

    /// The current version of each of `ids` that matches the filter, and the `ids` that do not
    /// (deleted, or outside the filter): what `watch` makes the target agree with. An `_id` is
    /// found when a document with an equal `_id` is (MongoDB's equality, as point ids have it:
    /// int32 `1` deleted and int64 `1` inserted in one batch leave the document there).
    pub async fn fetch(&self, ids: &[Bson]) -> Result<(Vec<SourceItem>, Vec<Bson>), SourceError> {
        let mut items = Vec::new();
        let mut found = HashSet::new();
        for part in ids.chunks(1000) {
            let filter = self.among(part);
            let collection = self.collection();
            // From the primary, majority-committed: never older than the change event that
            // named the document (a lagging secondary would make it look unchanged), never a
            // write that may still roll back (a rollback has no event).
            let mut find = collection
                .find(filter)
                .batch_size(self.batch_size)
                .selection_criteria(mongodb::options::SelectionCriteria::ReadPreference(
                    mongodb::options::ReadPreference::Primary,
                ))
                .read_concern(mongodb::options::ReadConcern::majority());
            if let Some(p) = &self.projection {
                find = find.projection(p.clone());
            }
            let mut cursor = find.await.map_err(|e| self.query_error(e))?;
            while cursor.advance().await.map_err(|e| self.query_error(e))? {
                let raw = cursor.current();
                if let Some(id) = raw_id(raw) {
                    found.insert(crate::ids::id_digest(&id));
                }
                items.push(decode(raw));
            }
        }
        let gone = ids
            .iter()
            .filter(|id| !found.contains(&crate::ids::id_digest(id)))
            .cloned()
            .collect();
        Ok((items, gone))
    }

    pub async fn estimated_count(&self) -> Option<u64> {
        self.collection().estimated_document_count().await.ok()
    }

    /// Stream documents with `_id > after` in `_id` order.
    pub async fn stream(
        &self,
        after: Option<&Bson>,
        tx: &mpsc::Sender<SourceItem>,
        last: &mut Option<Bson>,
    ) -> Result<u64, SourceError> {
        let filter = self.after_filter(after);
        let collection = self.collection();
        let mut find = collection
            .find(filter)
            .sort(doc! {"_id": 1})
            .batch_size(self.batch_size);
        if let Some(p) = &self.projection {
            find = find.projection(p.clone());
        }
        let mut cursor = find.await.map_err(|e| self.query_error(e))?;
        let mut sent = 0u64;
        while cursor.advance().await.map_err(|e| self.query_error(e))? {
            let item = decode(cursor.current());
            let id = match &item {
                SourceItem::Doc(d) => Some(d.id.clone()),
                SourceItem::Bad { .. } => None,
            };
            tx.send(item).await.map_err(|_| SourceError::Closed)?;
            if id.is_some() {
                *last = id;
            }
            sent += 1;
        }
        Ok(sent)
    }
}

impl MongoSource {
    /// [`MongoSource::stream`] for one shard: the `_id`s (with the filter, after `after`, in
    /// `_id` order) are read alone, which the `_id` index answers, and only this shard's
    /// documents are fetched, a batch of `_id`s at a time, in `_id` order. MongoDB cannot
    /// compute the shard hash ([`crate::shard::shard_of`]) itself, so every shard reads every
    /// `_id`, and only its part of the documents.
    pub async fn stream_shard(
        &self,
        after: Option<&Bson>,
        tx: &mpsc::Sender<SourceItem>,
        last: &mut Option<Bson>,
        shard: crate::shard::Shard,
    ) -> Result<u64, SourceError> {
        let filter = self.after_filter(after);
        let collection = self.collection();
        let mut ids_cursor = collection
            .find(filter)
            .sort(doc! {"_id": 1})
            .projection(doc! {"_id": 1})
            .batch_size(self.batch_size)
            .await
            .map_err(|e| self.query_error(e))?;
        let want = self.batch_size.max(1) as usize;
        let mut mine = Vec::with_capacity(want);
        let (mut sent, mut scanned) = (0u64, 0u64);
        loop {
            let more = ids_cursor
                .advance()
                .await
                .map_err(|e| self.query_error(e))?;
            if more {
                scanned += 1;
                match raw_id(ids_cursor.current()) {
                    Some(id) if shard.owns(&id) => mine.push(id),
                    Some(_) => {}
                    // Which shard's it is cannot be told: every shard fails it (and none prunes).
                    None => {
                        let item = SourceItem::Bad {
                            at: "(unreadable _id)".into(),
                            reason: "the _id does not decode".into(),
                        };
                        tx.send(item).await.map_err(|_| SourceError::Closed)?;
                        sent += 1;
                    }
                }
            }
            if mine.len() >= want || (!more && !mine.is_empty()) {
                sent += self.send_by_ids(&mine, tx, last).await?;
                mine.clear();
            }
            if !more {
                break;
            }
        }
        tracing::debug!(
            namespace = %self.namespace,
            "shard {shard}: read {scanned} _ids and {sent} documents"
        );
        Ok(sent)
    }

    /// Send the documents `ids` (sorted) that still match the filter, in `_id` order.
    async fn send_by_ids(
        &self,
        ids: &[Bson],
        tx: &mpsc::Sender<SourceItem>,
        last: &mut Option<Bson>,
    ) -> Result<u64, SourceError> {
        let collection = self.collection();
        let mut find = collection
            .find(self.among(ids))
            .sort(doc! {"_id": 1})
            .batch_size(self.batch_size);
        if let Some(p) = &self.projection {
            find = find.projection(p.clone());
        }
        let mut cursor = find.await.map_err(|e| self.query_error(e))?;
        let mut sent = 0;
        while cursor.advance().await.map_err(|e| self.query_error(e))? {
            let item = decode(cursor.current());
            let id = match &item {
                SourceItem::Doc(d) => Some(d.id.clone()),
                SourceItem::Bad { .. } => raw_id(cursor.current()),
            };
            tx.send(item).await.map_err(|_| SourceError::Closed)?;
            if id.is_some() {
                *last = id;
            }
            sent += 1;
        }
        Ok(sent)
    }

    /// The filter, restricted to the documents `ids`.
    fn among(&self, ids: &[Bson]) -> Document {
        let by_id = doc! {"_id": {"$in": ids.to_vec()}};
        if self.filter.is_empty() {
            by_id
        } else {
            doc! {"$and": [self.filter.clone(), by_id]}
        }
    }

    /// The filter, restricted to `_id`s after `after`.
    fn after_filter(&self, after: Option<&Bson>) -> Document {
        match after {
            None => self.filter.clone(),
            Some(id) if self.filter.is_empty() => after_id(id),
            Some(id) => doc! {"$and": [self.filter.clone(), after_id(id)]},
        }
    }
}

/// One document as read: its `_id` and fields, or why it cannot be read.
fn decode(raw: &mongodb::bson::RawDocument) -> SourceItem {
    match mongodb::bson::from_slice_utf8_lossy::<Document>(raw.as_bytes()) {
        Ok(doc) => match doc.get("_id") {
            Some(id) => SourceItem::Doc(super::SourceDoc {
                id: id.clone(),
                doc,
            }),
            None => SourceItem::Bad {
                at: "(no _id)".into(),
                reason: "document has no _id".into(),
            },
        },
        Err(e) => SourceItem::Bad {
            at: raw_id(raw).map_or_else(|| "(unreadable _id)".into(), |b| id_text(&b)),
            reason: format!("undecodable BSON: {e}"),
        },
    }
}

/// The `_id` of a raw document, if it reads.
fn raw_id(raw: &mongodb::bson::RawDocument) -> Option<Bson> {
    raw.get("_id")
        .ok()
        .flatten()
        .and_then(|r| Bson::try_from(r.to_raw_bson()).ok())
}
