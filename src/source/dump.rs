//! mongodump output as a source: a collection's `.bson` file (`dump/DB/COLL.bson`, optionally
//! `.bson.gz`) or an `--archive` file (optionally `--gzip`), read as a stream of BSON documents.
//! The documents are the collection's own BSON, so a dump feeds exactly the points of the live
//! collection (same `_id`s, same ids and hashes).
//!
//! Archive layout (mongo-tools' archive format 0.1): the magic number, a header document,
//! one metadata document per collection, a terminator (`0xFFFFFFFF`), then segments: a
//! namespace header (`{db, collection, EOF, CRC}`), that namespace's documents, a terminator.
//! Segments of several collections interleave; a namespace ends with an `EOF: true` header.

use std::collections::HashMap;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use mongodb::bson::Document;
use tokio::sync::mpsc;

use super::{Namespace, SourceError, SourceItem};
use crate::ids::id_digest;

/// The archive's magic number as it appears in the file (0x8199e26d, little-endian).
const ARCHIVE_MAGIC: [u8; 4] = [0x6d, 0xe2, 0x99, 0x81];
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const TERMINATOR: i32 = -1;
/// MongoDB's largest document (16 MiB) with room for the dump's own headers.
const MAX_DOC: i32 = 16 * 1024 * 1024 + 16 * 1024;

/// What a dump file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DumpKind {
    /// One collection's documents back to back (`COLL.bson`).
    Bson,
    /// A `mongodump --archive` of any number of collections.
    Archive,
}

/// The kind of dump at `path`, from its first bytes (after gzip) and name; `None`: not a
/// dump (JSON from mongoexport). A file that cannot be read is judged by its name (reading it
/// reports the problem).
pub fn kind_of(path: &Path) -> Option<DumpKind> {
    let mut head = [0u8; 4];
    let read = open(path).is_ok_and(|mut r| r.read_exact(&mut head).is_ok());
    if read && head == ARCHIVE_MAGIC {
        return Some(DumpKind::Archive);
    }
    let name = path.to_string_lossy();
    let name = name.strip_suffix(".gz").unwrap_or(&name);
    name.ends_with(".bson").then_some(DumpKind::Bson)
}

/// The namespace of a collection's `.bson` file in mongodump's layout: `DB/COLL.bson`.
pub fn bson_namespace(path: &Path) -> Option<Namespace> {
    let name = path.file_name()?.to_string_lossy();
    let name = name.strip_suffix(".gz").unwrap_or(&name);
    let collection = name.strip_suffix(".bson")?.to_owned();
    let database = path.parent()?.file_name()?.to_string_lossy().into_owned();
    Some(Namespace {
        database,
        collection,
    })
}

/// The user collections an archive holds, from its prelude (system collections and the
/// `admin`, `config` and `local` databases left out).
pub fn archive_namespaces(path: &Path) -> Result<Vec<Namespace>, SourceError> {
    let mut r = Reader::new(path, open(path)?);
    r.magic()?;
    r.doc()?
        .ok_or_else(|| r.malformed("no header after the magic number"))?;
    let mut out = Vec::new();
    while let Some(meta) = r.doc()? {
        if meta.get_str("db").is_err() || meta.get_str("collection").is_err() {
            return Err(r.malformed("a collection metadata document without db / collection"));
        }
        out.extend(user_collection(&meta));
    }
    Ok(out)
}

/// The namespace of an archive's collection metadata when it is a user collection: not a
/// view or time-series collection, not `system.*`, not in `admin`, `config` or `local`.
fn user_collection(meta: &Document) -> Option<Namespace> {
    let (Ok(db), Ok(coll)) = (meta.get_str("db"), meta.get_str("collection")) else {
        return None;
    };
    let is_view = meta.get_str("type").is_ok_and(|t| t != "collection");
    let system = coll.starts_with("system.") || ["admin", "config", "local"].contains(&db);
    (!system && !is_view).then(|| Namespace {
        database: db.to_owned(),
        collection: coll.to_owned(),
    })
}

/// A dump file to read: one collection of it.
#[derive(Debug, Clone)]
pub struct DumpSource {
    pub namespace: Namespace,
    pub path: PathBuf,
    pub kind: DumpKind,
}

impl DumpSource {
    /// Stream the documents of `namespace` in file order (on a blocking thread).
    ///
    /// A dump can hold two copies of one `_id` (a document that moved while mongodump read
    /// the collection): the last copy in the file is sent, every earlier one is reported as
    /// bad input, so every run writes the same version. Finding the last copies takes a first
    /// read of the file.
    pub async fn stream(&self, tx: &mpsc::Sender<SourceItem>) -> Result<u64, SourceError> {
        let me = self.clone();
        let tx = tx.clone();
        tokio::task::spawn_blocking(move || {
            // The last copy of each `_id`: its index among the items, and its byte offset.
            let mut last: HashMap<[u8; 32], (u64, u64)> = HashMap::new();
            let mut index = 0u64;
            me.each(&mut |item, offset| {
                if let SourceItem::Doc(d) = &item {
                    last.insert(id_digest(&d.id), (index, offset));
                }
                index += 1;
                Ok(())
            })?;
            let mut index = 0u64;
            me.each(&mut |item, offset| {
                let item = match &item {
                    SourceItem::Doc(d) => match last.get(&id_digest(&d.id)) {
                        Some((kept, kept_at)) if *kept != index => SourceItem::Bad {
                            at: format!("{}@{offset}", me.path.display()),
                            reason: format!(
                                "duplicate _id {}: the copy at byte {kept_at}, later in the dump, is kept",
                                super::id_text(&d.id)
                            ),
                        },
                        _ => item,
                    },
                    SourceItem::Bad { .. } => item,
                };
                index += 1;
                send(&tx, item)
            })?;
            Ok(index)
        })
        .await
        .expect("dump reader panicked")
    }

    /// Every document of this namespace in file order, as items, to `visit`.
    fn each(
        &self,
        visit: &mut dyn FnMut(SourceItem, u64) -> Result<(), SourceError>,
    ) -> Result<(), SourceError> {
        let mut r = Reader::new(&self.path, open(&self.path)?);
        match self.kind {
            DumpKind::Bson => {
                while let Some(raw) = r.raw()? {
                    visit(item(&raw, r.at()), r.last)?;
                }
                Ok(())
            }
            DumpKind::Archive => self.archive(&mut r, visit),
        }
    }

    /// The archive's documents of this namespace. The archive is complete only when every
    /// collection its prelude announces has ended (an `EOF` header): one cut at a document
    /// boundary reads as well-formed, and would otherwise pass for the whole collection.
    fn archive(
        &self,
        r: &mut Reader,
        visit: &mut dyn FnMut(SourceItem, u64) -> Result<(), SourceError>,
    ) -> Result<(), SourceError> {
        r.magic()?;
        r.doc()?
            .ok_or_else(|| r.malformed("no header after the magic number"))?;
        // The user collections announced (as `archive_namespaces` lists them), up to the
        // terminator; each must end.
        let mut open = std::collections::BTreeSet::new();
        while let Some(meta) = r.doc()? {
            if let Some(ns) = user_collection(&meta) {
                open.insert(ns.to_string());
            }
        }
        // Segments: a namespace header, its documents, a terminator.
        loop {
            let Some(header) = r.doc_or_end()? else {
                if open.is_empty() {
                    return Ok(());
                }
                let names: Vec<String> = open.into_iter().collect();
                return Err(SourceError::IncompleteDump {
                    path: r.path.display().to_string(),
                    reason: format!(
                        "it ends (byte {}) before {} ended (no end-of-collection header)",
                        r.offset,
                        names.join(", ")
                    ),
                });
            };
            let Some(header) = header else {
                continue; // an empty segment
            };
            let (db, coll) = (header.get_str("db"), header.get_str("collection"));
            if let (Ok(db), Ok(coll), Ok(true)) = (&db, &coll, header.get_bool("EOF")) {
                open.remove(&format!("{db}.{coll}"));
            }
            let ours = db == Ok(self.namespace.database.as_str())
                && coll == Ok(self.namespace.collection.as_str());
            while let Some(raw) = r.raw()? {
                if ours {
                    visit(item(&raw, r.at()), r.last)?;
                }
            }
        }
    }
}

fn send(tx: &mpsc::Sender<SourceItem>, item: SourceItem) -> Result<(), SourceError> {
    tx.blocking_send(item).map_err(|_| SourceError::Closed)
}

/// One document of a dump: like a document of the live collection.
fn item(raw: &[u8], at: String) -> SourceItem {
    match mongodb::bson::from_slice_utf8_lossy::<Document>(raw) {
        Ok(doc) => super::file::doc_item(doc, at, "document has no _id"),
        Err(e) => SourceItem::Bad {
            at,
            reason: format!("undecodable BSON: {e}"),
        },
    }
}

fn io(path: &Path, source: std::io::Error) -> SourceError {
    SourceError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// `path` for reading, gunzipped when it starts with gzip's magic number.
fn open(path: &Path) -> Result<Box<dyn Read + Send>, SourceError> {
    let mut file =
        BufReader::with_capacity(1 << 20, std::fs::File::open(path).map_err(|e| io(path, e))?);
    let head = std::io::BufRead::fill_buf(&mut file).map_err(|e| io(path, e))?;
    Ok(if head.starts_with(&GZIP_MAGIC) {
        Box::new(BufReader::with_capacity(
            1 << 20,
            flate2::read::MultiGzDecoder::new(file),
        ))
    } else {
        Box::new(file)
    })
}

/// Length-prefixed BSON documents from a dump, with the byte offset for messages.
struct Reader {
    path: PathBuf,
    input: Box<dyn Read + Send>,
    offset: u64,
    /// Offset of the document last read.
    last: u64,
}

impl Reader {
    fn new(path: &Path, input: Box<dyn Read + Send>) -> Self {
        Self {
            path: path.to_owned(),
            input,
            offset: 0,
            last: 0,
        }
    }

    fn at(&self) -> String {
        format!("{}@{}", self.path.display(), self.last)
    }

    fn malformed(&self, reason: &str) -> SourceError {
        SourceError::Malformed {
            path: self.path.display().to_string(),
            line: 0,
            column: self.offset as usize,
            reason: format!(
                "{reason} (byte {}); the file must be mongodump output: a COLL.bson file or an --archive, optionally gzipped",
                self.offset
            ),
        }
    }

    /// Fill `buf`; `Ok(false)` at a clean end of input (nothing read).
    fn fill(&mut self, buf: &mut [u8]) -> Result<bool, SourceError> {
        let mut got = 0;
        while got < buf.len() {
            match self.input.read(&mut buf[got..]) {
                Ok(0) if got == 0 => return Ok(false),
                Ok(0) => return Err(self.malformed("the file ends inside a document")),
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io(&self.path, e)),
            }
        }
        self.offset += buf.len() as u64;
        Ok(true)
    }

    fn magic(&mut self) -> Result<(), SourceError> {
        let mut m = [0u8; 4];
        if !self.fill(&mut m)? || m != ARCHIVE_MAGIC {
            return Err(self.malformed("not a mongodump archive (no magic number)"));
        }
        Ok(())
    }

    /// The next length prefix: `None` at the end of input, `Some(-1)` for a terminator.
    fn length(&mut self) -> Result<Option<i32>, SourceError> {
        self.last = self.offset;
        let mut len = [0u8; 4];
        if !self.fill(&mut len)? {
            return Ok(None);
        }
        let n = i32::from_le_bytes(len);
        if n != TERMINATOR && !(5..=MAX_DOC).contains(&n) {
            return Err(self.malformed(&format!("a document length of {n} bytes")));
        }
        Ok(Some(n))
    }

    fn body(&mut self, n: i32) -> Result<Vec<u8>, SourceError> {
        let mut raw = vec![0u8; n as usize];
        raw[..4].copy_from_slice(&n.to_le_bytes());
        if !self.fill(&mut raw[4..])? {
            return Err(self.malformed("the file ends inside a document"));
        }
        Ok(raw)
    }

    /// The next raw document; `None` at a terminator or the end of input.
    fn raw(&mut self) -> Result<Option<Vec<u8>>, SourceError> {
        match self.length()? {
            None | Some(TERMINATOR) => Ok(None),
            Some(n) => self.body(n).map(Some),
        }
    }

    /// The next document, parsed; `None` at a terminator (or the end of input).
    fn doc(&mut self) -> Result<Option<Document>, SourceError> {
        match self.raw()? {
            None => Ok(None),
            Some(raw) => Document::from_reader(raw.as_slice())
                .map(Some)
                .map_err(|e| self.malformed(&format!("an unreadable header document ({e})"))),
        }
    }

    /// `None` at the end of input; `Some(None)` for a terminator; else the document.
    fn doc_or_end(&mut self) -> Result<Option<Option<Document>>, SourceError> {
        match self.length()? {
            None => Ok(None),
            Some(TERMINATOR) => Ok(Some(None)),
            Some(n) => {
                let raw = self.body(n)?;
                let d = Document::from_reader(raw.as_slice()).map_err(|e| {
                    self.malformed(&format!("an unreadable namespace header ({e})"))
                })?;
                Ok(Some(Some(d)))
            }
        }
    }
}
