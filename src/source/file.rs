//! File source: what `mongoexport` writes, a JSON array (`--jsonArray`) or one Extended JSON
//! document per line. A malformed or non-UTF-8 line is reported with its line number and
//! counted; the other documents still flow.

use std::collections::HashMap;
use std::path::PathBuf;

use mongodb::bson::{Bson, Document};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::sync::mpsc;

use super::{Namespace, SourceDoc, SourceError, SourceItem};

/// A mongoexport file to read.
#[derive(Debug, Clone)]
pub struct FileSource {
    pub namespace: Namespace,
    pub path: PathBuf,
}

impl FileSource {
    pub fn new(path: PathBuf, namespace: Namespace) -> Self {
        Self { namespace, path }
    }

    fn io(&self, source: std::io::Error) -> SourceError {
        SourceError::Io {
            path: self.path.display().to_string(),
            source,
        }
    }

    /// Stream every document of the file, in file order.
    pub async fn stream(&self, tx: &mpsc::Sender<SourceItem>) -> Result<u64, SourceError> {
        let file = tokio::fs::File::open(&self.path)
            .await
            .map_err(|e| self.io(e))?;
        let mut reader = BufReader::with_capacity(1 << 20, file);
        let first = loop {
            let buf = reader.fill_buf().await.map_err(|e| self.io(e))?;
            match buf.iter().position(|b| !b.is_ascii_whitespace()) {
                Some(p) => break Some(buf[p]),
                None if buf.is_empty() => break None,
                None => {
                    let n = buf.len();
                    reader.consume(n);
                }
            }
        };
        match first {
            None => Ok(0),
            Some(b'[') => self.stream_array(reader, tx).await,
            Some(_) => self.stream_lines(reader, tx).await,
        }
    }

    async fn stream_lines(
        &self,
        mut reader: BufReader<tokio::fs::File>,
        tx: &mpsc::Sender<SourceItem>,
    ) -> Result<u64, SourceError> {
        let mut line = Vec::new();
        let mut line_no = 0usize;
        let mut sent = 0u64;
        let mut once = Once::default();
        loop {
            line.clear();
            if reader
                .read_until(b'\n', &mut line)
                .await
                .map_err(|e| self.io(e))?
                == 0
            {
                return Ok(sent);
            }
            line_no += 1;
            let at = || format!("{}:{line_no}", self.path.display());
            let item = match std::str::from_utf8(&line) {
                Err(e) => SourceItem::Bad {
                    at: at(),
                    reason: format!("line {line_no} is not valid UTF-8 ({e})"),
                },
                Ok(text) if text.trim().is_empty() => continue,
                Ok(text) => match serde_json::from_str::<serde_json::Value>(text) {
                    Err(e) => SourceItem::Bad {
                        at: at(),
                        reason: format!("line {line_no}: malformed JSON: {e}"),
                    },
                    Ok(v) => once.check(to_item(v, at()), at()),
                },
            };
            tx.send(item).await.map_err(|_| SourceError::Closed)?;
            sent += 1;
        }
    }

    async fn stream_array(
        &self,
        mut reader: BufReader<tokio::fs::File>,
        tx: &mpsc::Sender<SourceItem>,
    ) -> Result<u64, SourceError> {
        let mut bytes = Vec::new();
        reader
            .read_to_end(&mut bytes)
            .await
            .map_err(|e| self.io(e))?;
        // Like a JSONL line, an array is read as UTF-8 or refused: never decoded lossily.
        let text = std::str::from_utf8(&bytes).map_err(|e| {
            let line = bytes[..e.valid_up_to()]
                .iter()
                .filter(|b| **b == b'\n')
                .count()
                + 1;
            SourceError::Malformed {
                path: self.path.display().to_string(),
                line,
                column: 0,
                reason: format!("not valid UTF-8 ({e})"),
            }
        })?;
        let values: Vec<serde_json::Value> =
            serde_json::from_str(text).map_err(|e| SourceError::Malformed {
                path: self.path.display().to_string(),
                line: e.line(),
                column: e.column(),
                reason: e.to_string(),
            })?;
        let mut sent = 0u64;
        let mut once = Once::default();
        for (i, v) in values.into_iter().enumerate() {
            let at = format!("{}[{i}]", self.path.display());
            let item = once.check(to_item(v, at.clone()), at);
            tx.send(item).await.map_err(|_| SourceError::Closed)?;
            sent += 1;
        }
        Ok(sent)
    }
}

/// Each `_id` once per file: a second document with the same `_id` is bad input (the first is
/// kept). Two would overwrite each other's points in turn, and every run would embed both.
#[derive(Default)]
struct Once {
    first: HashMap<[u8; 32], String>,
}

impl Once {
    /// `item`, read at `position`, or bad input when its `_id` was seen before.
    fn check(&mut self, item: SourceItem, position: String) -> SourceItem {
        let SourceItem::Doc(d) = &item else {
            return item;
        };
        let key = crate::ids::id_digest(&d.id);
        match self.first.get(&key) {
            Some(first) => SourceItem::Bad {
                reason: format!(
                    "duplicate _id {}: the document at {first} has it too and is kept",
                    super::id_text(&d.id)
                ),
                at: position,
            },
            None => {
                self.first.insert(key, position);
                item
            }
        }
    }
}

fn to_item(value: serde_json::Value, at: String) -> SourceItem {
    match Bson::try_from(value) {
        Ok(Bson::Document(doc)) => doc_item(
            doc,
            at,
            "document has no _id; export with mongoexport, which always writes it",
        ),
        Ok(_) => SourceItem::Bad {
            at,
            reason: "not a JSON object".into(),
        },
        Err(e) => SourceItem::Bad {
            at,
            reason: format!("invalid Extended JSON: {e}"),
        },
    }
}

/// A document read from a file (`at`): one with a usable `_id`, or bad input (`no_id` says
/// what to do about a missing one).
pub(super) fn doc_item(doc: Document, at: String, no_id: &str) -> SourceItem {
    match doc.get("_id") {
        Some(id) => match crate::ids::check_id(id) {
            Ok(()) => SourceItem::Doc(SourceDoc {
                id: id.clone(),
                doc,
            }),
            Err(e) => SourceItem::Bad {
                at,
                reason: format!("the _id cannot be stored in MongoDB or hashed ({e})"),
            },
        },
        None => SourceItem::Bad {
            at,
            reason: no_id.to_owned(),
        },
    }
}

/// Read a whole file into documents and per-document problems (small files, tests).
pub async fn read_all(path: PathBuf) -> Result<(Vec<Document>, Vec<String>), SourceError> {
    let src = FileSource::new(
        path,
        Namespace {
            database: String::new(),
            collection: String::new(),
        },
    );
    let (tx, mut rx) = mpsc::channel(1024);
    let reader = tokio::spawn(async move { src.stream(&tx).await });
    let mut docs = Vec::new();
    let mut bad = Vec::new();
    while let Some(item) = rx.recv().await {
        match item {
            SourceItem::Doc(d) => docs.push(d.doc),
            SourceItem::Bad { reason, .. } => bad.push(reason),
        }
    }
    reader.await.expect("reader task")?;
    Ok((docs, bad))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    async fn read(content: &[u8]) -> Result<(Vec<Document>, Vec<String>), SourceError> {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(content).unwrap();
        read_all(f.path().to_path_buf()).await
    }

    #[tokio::test]
    async fn jsonl_with_extended_json_and_bad_lines() {
        let content = b"{\"_id\":{\"$oid\":\"65a1b2c3d4e5f60718293a4b\"},\"t\":\"a\",\"n\":{\"$numberLong\":\"5\"}}\n\
\n\
{not json\n\
{\"_id\":2,\"t\":\"\xff\xfe\"}\n\
{\"t\":\"no id\"}\n\
{\"_id\":\"s\",\"t\":\"ok\"}\n";
        let (docs, bad) = read(content).await.unwrap();
        assert_eq!(docs.len(), 2);
        assert!(matches!(docs[0].get("_id"), Some(Bson::ObjectId(_))));
        assert_eq!(docs[0].get("n"), Some(&Bson::Int64(5)));
        assert_eq!(bad.len(), 3, "{bad:?}");
        assert!(bad[0].contains("line 3"), "{}", bad[0]);
        assert!(bad[1].contains("line 4") && bad[1].contains("UTF-8"));
        assert!(bad[2].contains("no _id"));
    }

    #[tokio::test]
    async fn json_array_and_its_errors() {
        let (docs, bad) = read(b" [ {\"_id\": 1, \"t\": \"x\"}, {\"_id\": 2} ]")
            .await
            .unwrap();
        assert_eq!((docs.len(), bad.len()), (2, 0));
        let err = read(b"[{\"_id\": 1},\n {\"_id\": }]").await.unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
    }
}
