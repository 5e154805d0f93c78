//! mongodump's `--archive` format, written from raw BSON (the bytes mongodump copies): for
//! the dump suites and the fault harness.

use std::io::Write;

use mongodb::bson::{Document, RawDocumentBuf, doc};

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

pub fn bytes_of(d: &Document) -> Vec<u8> {
    let mut v = Vec::new();
    d.to_writer(&mut v).unwrap();
    v
}

const TERMINATOR: [u8; 4] = [0xff; 4];

/// A `mongodump --archive` of `collections`: the magic number, a header, one metadata
/// document per collection (and one for `admin.system.version`, whose documents are not
/// ours), a terminator, then segments of at most 7 documents, the collections interleaved,
/// each ended by an `EOF` header.
pub fn archive(collections: &[(&str, &str, &[RawDocumentBuf])]) -> Vec<u8> {
    let mut out = vec![0x6d, 0xe2, 0x99, 0x81];
    out.extend(bytes_of(&doc! {
        "concurrent_collections": 4, "version": "0.1",
        "server_version": "8.0.3", "tool_version": "100.7.1",
    }));
    let system = doc! {"_id": "featureCompatibilityVersion", "version": "8.0"};
    let system = RawDocumentBuf::from_document(&system).unwrap();
    let system = [system];
    let mut all: Vec<(&str, &str, &[RawDocumentBuf])> = collections.to_vec();
    all.push(("admin", "system.version", &system));
    for (db, coll, _) in &all {
        out.extend(bytes_of(&doc! {
            "db": *db, "collection": *coll, "metadata": "{\"indexes\":[]}",
            "size": 0, "type": "collection",
        }));
    }
    out.extend(TERMINATOR);
    let mut cursors = vec![0usize; all.len()];
    loop {
        let mut any = false;
        for (i, (db, coll, docs)) in all.iter().enumerate() {
            let from = cursors[i];
            if from > docs.len() {
                continue;
            }
            any = true;
            let to = (from + 7).min(docs.len());
            let eof = from == docs.len();
            out.extend(bytes_of(
                &doc! {"db": *db, "collection": *coll, "EOF": eof, "CRC": 0i64},
            ));
            for d in &docs[from..to] {
                out.extend(d.as_bytes());
            }
            out.extend(TERMINATOR);
            cursors[i] = if eof { from + 1 } else { to };
        }
        if !any {
            return out;
        }
    }
}
