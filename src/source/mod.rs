//! Sources: MongoDB collections (cursor sorted by `_id`, resumable after a checkpoint),
//! mongoexport JSON / JSONL files and mongodump output (`.bson`, `--archive`, gzipped or not). Both stream into a bounded channel: a full channel makes the
//! reader wait, nothing is ever dropped.

pub mod changes;
pub mod dump;
pub mod file;
pub mod id_order;
pub mod mongo;

use mongodb::bson::{Bson, Document};
use tokio::sync::mpsc;

pub use dump::DumpSource;
pub use file::FileSource;
pub use mongo::MongoSource;

use crate::shard::Shard;

pub use crate::ids::Namespace;

/// One document read from a source.
#[derive(Debug, Clone)]
pub struct SourceDoc {
    pub id: Bson,
    pub doc: Document,
}

/// What a source yields: a document, or a per-document problem that is counted and reported
/// but never stops the run.
#[derive(Debug)]
pub enum SourceItem {
    Doc(SourceDoc),
    Bad {
        /// The `_id` (relaxed Extended JSON) or the file position, when known.
        at: String,
        reason: String,
    },
}

impl SourceItem {
    /// Whether `shard` keeps this item. An item that cannot be read has no `_id` to place it
    /// by: every shard keeps it, so that every shard counts it as failed and none prunes the
    /// points of the document it may be (each shard's report names it).
    pub fn kept_by(&self, shard: &Shard) -> bool {
        match self {
            SourceItem::Doc(d) => shard.owns(&d.id),
            SourceItem::Bad { .. } => true,
        }
    }
}

/// Errors that stop reading a source.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(
        "cannot connect to MongoDB at {uri}: {reason}; check --mongo-uri and that the server is running"
    )]
    Connect { uri: String, reason: String },
    #[error("MongoDB query on {namespace} failed: {}", mongo::brief(error))]
    Query {
        namespace: String,
        error: mongodb::error::Error,
    },
    #[error(
        "--{flag} is not a valid Extended JSON document ({reason}); example: --{flag} '{example}'"
    )]
    BadJson {
        flag: &'static str,
        reason: String,
        example: &'static str,
    },
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path}: malformed JSON at line {line}, column {column}: {reason}; the file must be mongoexport output (a JSON array or one document per line)"
    )]
    Malformed {
        path: String,
        line: usize,
        column: usize,
        reason: String,
    },
    #[error(
        "{path} is an incomplete dump: {reason}. It was cut short or is still being written: nothing of it is pruned; take the dump again (or wait for mongodump to finish) and rerun"
    )]
    IncompleteDump { path: String, reason: String },
    #[error("the reader stopped because the pipeline closed")]
    Closed,
    /// A change stream cannot resume: the server no longer has the history after the stored
    /// token (its oplog moved on while nothing read it).
    #[error("change stream history of {namespace} is lost ({reason})")]
    HistoryLost { namespace: String, reason: String },
    /// A change stream closed without saying why (no invalidate event).
    #[error("the change stream on {0} closed unexpectedly")]
    StreamEnded(String),
    /// `watch` needs a MongoDB change stream.
    #[error(
        "{0}: no change stream to watch; `watch` reads MongoDB collections (a replica set or sharded cluster), use `sync` for files"
    )]
    NoChangeStream(String),
}

impl crate::retry::Transient for SourceError {
    /// Transient errors (network, server selection) are worth a retry.
    fn is_transient(&self) -> bool {
        match self {
            SourceError::Query { error: source, .. } => {
                use mongodb::error::ErrorKind;
                // 43 CursorNotFound: the server dropped an idle cursor; a new one continues
                // after the last `_id` read.
                matches!(
                    *source.kind,
                    ErrorKind::Io(_)
                        | ErrorKind::ConnectionPoolCleared { .. }
                        | ErrorKind::ServerSelection { .. }
                ) || matches!(&*source.kind, ErrorKind::Command(c) if c.code == 43)
                    || source.contains_label("RetryableReadError")
                    || source.contains_label("ResumableChangeStreamError")
            }
            SourceError::Connect { .. } | SourceError::StreamEnded(_) => true,
            _ => false,
        }
    }
}

/// Parse a user-given Extended JSON document (for `--filter` / `--projection`).
pub fn parse_ext_json_doc(
    flag: &'static str,
    text: &str,
    example: &'static str,
) -> Result<Document, SourceError> {
    let bad = |reason: String| SourceError::BadJson {
        flag,
        reason,
        example,
    };
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
    match Bson::try_from(value).map_err(|e| bad(e.to_string()))? {
        Bson::Document(d) => Ok(d),
        other => Err(bad(format!(
            "expected an object, got {}",
            other.element_type() as u8
        ))),
    }
}

/// Relaxed Extended JSON text of an `_id`, for payloads, reports and messages.
pub fn id_text(id: &Bson) -> String {
    id.clone().into_relaxed_extjson().to_string()
}

/// The end of a [`Source::spawn_reader`] task: `Ok` when it read to the end or its receiver
/// stopped early, the source's error otherwise.
pub async fn finished(
    task: tokio::task::JoinHandle<Result<u64, SourceError>>,
) -> Result<(), SourceError> {
    match task.await.expect("reader task panicked") {
        Ok(_) | Err(SourceError::Closed) => Ok(()),
        Err(e) => Err(e),
    }
}

/// A source of documents.
#[derive(Debug, Clone)]
pub enum Source {
    Mongo(MongoSource),
    File(FileSource),
    Dump(DumpSource),
}

impl Source {
    pub fn namespace(&self) -> &Namespace {
        match self {
            Source::Mongo(s) => &s.namespace,
            Source::File(s) => &s.namespace,
            Source::Dump(s) => &s.namespace,
        }
    }

    /// What is read, for messages: `collection db.coll` or `file PATH`.
    pub fn describe(&self) -> String {
        match self {
            Source::Mongo(s) => format!("collection {}", s.namespace),
            Source::File(s) => format!("file {}", s.path.display()),
            Source::Dump(s) => format!("dump {} ({})", s.path.display(), s.namespace),
        }
    }

    /// Whether `after` (resume from a checkpoint) is honoured: MongoDB cursors are sorted by
    /// `_id`; files are read in file order and rely on content hashes instead.
    pub fn resumable(&self) -> bool {
        matches!(self, Source::Mongo(_))
    }

    /// Which of `ids` exist in the source whatever its filter says, as relaxed Extended JSON
    /// text (`None`: the source cannot tell, a file).
    pub async fn existing(
        &self,
        ids: &[Bson],
    ) -> Result<Option<std::collections::HashSet<String>>, SourceError> {
        match self {
            Source::Mongo(s) => s.existing(ids).await.map(Some),
            Source::File(_) | Source::Dump(_) => Ok(None),
        }
    }

    /// Estimated number of documents (for progress and ETA), when cheap to know.
    pub async fn estimated_count(&self) -> Option<u64> {
        match self {
            Source::Mongo(s) => s.estimated_count().await,
            Source::File(_) | Source::Dump(_) => None,
        }
    }

    /// Read the whole source from the start in a task of its own, into a bounded channel of
    /// `capacity`. The task ends with `Err(SourceError::Closed)` when the receiver is dropped
    /// early; [`finished`] says whether it ended well.
    pub fn spawn_reader(
        &self,
        capacity: usize,
        shard: Option<Shard>,
    ) -> (
        mpsc::Receiver<SourceItem>,
        tokio::task::JoinHandle<Result<u64, SourceError>>,
    ) {
        let (tx, rx) = mpsc::channel(capacity);
        let source = self.clone();
        let task = tokio::spawn(async move {
            let mut last = None;
            source.stream(None, &tx, &mut last, shard).await
        });
        (rx, task)
    }

    /// Stream every document (after `after`, where resumable) into `tx`, only `shard`'s when
    /// sharded; returns how many items were sent. `last` tracks the last `_id` sent, so that a
    /// retry after a transient error resumes right after it. A collection's shard reads only
    /// `_id`s beyond its own documents ([`MongoSource::stream_shard`]); a file is read whole and
    /// each shard keeps its own.
    pub async fn stream(
        &self,
        after: Option<&Bson>,
        tx: &mpsc::Sender<SourceItem>,
        last: &mut Option<Bson>,
        shard: Option<Shard>,
    ) -> Result<u64, SourceError> {
        match (self, shard) {
            (Source::Mongo(s), None) => s.stream(after, tx, last).await,
            (Source::Mongo(s), Some(shard)) => s.stream_shard(after, tx, last, shard).await,
            (Source::File(s), None) => s.stream(tx).await,
            (Source::Dump(s), None) => s.stream(tx).await,
            (Source::File(_) | Source::Dump(_), Some(shard)) => {
                let (all_tx, mut all_rx) = mpsc::channel(tx.max_capacity());
                let read = async move {
                    let r = match self {
                        Source::File(s) => s.stream(&all_tx).await,
                        Source::Dump(s) => s.stream(&all_tx).await,
                        Source::Mongo(_) => unreachable!("collections are sharded by their reader"),
                    };
                    drop(all_tx);
                    r
                };
                let keep = async {
                    let mut kept = 0u64;
                    while let Some(item) = all_rx.recv().await {
                        if item.kept_by(&shard) {
                            tx.send(item).await.map_err(|_| SourceError::Closed)?;
                            kept += 1;
                        }
                    }
                    Ok(kept)
                };
                let (_, kept) = tokio::try_join!(read, keep)?;
                Ok(kept)
            }
        }
    }
}
