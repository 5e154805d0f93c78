//! MongoDB source: one cursor per collection, sorted by `_id` ascending, resuming strictly after
//! the checkpointed `_id`, with an optional filter and projection.

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

/// `uri` with any password replaced by `***`, safe to print.
pub fn redact_uri(uri: &str) -> String {
    let Some(scheme_end) = uri.find("://") else {
        return uri.to_owned();
    };
    let rest = &uri[scheme_end + 3..];
    let host_start = rest.find('/').unwrap_or(rest.len());
    match rest[..host_start].rfind('@') {
        Some(at) => {
            let creds = &rest[..at];
            let user = creds.split(':').next().unwrap_or("");
            format!("{}{user}:***@{}", &uri[..scheme_end + 3], &rest[at + 1..])
        }
        None => uri.to_owned(),
    }
}

/// Connect to `uri` (lazily: the first operation reaches the server).
pub async fn connect(uri: &str, app_name: &str) -> Result<Client, SourceError> {
    let mut opts = ClientOptions::parse(uri)
        .await
        .map_err(|e| SourceError::Connect {
            uri: redact_uri(uri),
            reason: e.to_string().replace(uri, &redact_uri(uri)),
        })?;
    opts.app_name.get_or_insert_with(|| app_name.to_owned());
    opts.server_selection_timeout
        .get_or_insert(Duration::from_secs(10));
    opts.connect_timeout.get_or_insert(Duration::from_secs(5));
    Client::with_options(opts).map_err(|e| SourceError::Connect {
        uri: redact_uri(uri),
        reason: e.to_string(),
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

    fn query_error(&self, source: mongodb::error::Error) -> SourceError {
        SourceError::Query {
            namespace: self.namespace.to_string(),
            source,
        }
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
        let filter = match after {
            None => self.filter.clone(),
            Some(id) if self.filter.is_empty() => doc! {"_id": {"$gt": id.clone()}},
            Some(id) => doc! {"$and": [self.filter.clone(), {"_id": {"$gt": id.clone()}}]},
        };
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
            let raw = cursor.current();
            let item = match mongodb::bson::from_slice_utf8_lossy::<Document>(raw.as_bytes()) {
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
                    at: raw
                        .get("_id")
                        .ok()
                        .flatten()
                        .and_then(|r| Bson::try_from(r.to_raw_bson()).ok())
                        .map_or_else(|| "(unreadable _id)".into(), |b| id_text(&b)),
                    reason: format!("undecodable BSON: {e}"),
                },
            };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_redacted() {
        assert_eq!(
            redact_uri("mongodb://alice:s3cret@db:27017/x?authSource=admin"),
            "mongodb://alice:***@db:27017/x?authSource=admin"
        );
        assert_eq!(redact_uri("mongodb://db:27017"), "mongodb://db:27017");
        assert_eq!(
            redact_uri("mongodb+srv://u:p@a@cluster/x"),
            "mongodb+srv://u:***@cluster/x"
        );
    }
}
