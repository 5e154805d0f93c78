//! mongodump output as a source: a collection's `DB/COLL.bson` (plain and gzipped) and an
//! `--archive` (gzipped, several collections interleaved, system collections beside them)
//! feed exactly the points of the live collection (same ids, same content hashes), on both
//! targets. The files are written here in mongodump's formats from the collection's own BSON
//! (the bytes mongodump copies); the reader was also checked by hand against a real
//! `mongodump --archive` (mongo-tools 100.7.1).

use crate::common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use crate::common::archive::{archive, bytes_of, gzip};
use crate::common::{Mongo, sync_of};
use futures_util::TryStreamExt;
use mongo2qdrant::point::keys;
use mongo2qdrant::sink::{Fields, Sink, scroll_all};
use mongodb::bson::{RawDocumentBuf, doc};

const DB: &str = "dumpdb";
const TEMPLATE: &str = r"{title}\n{extract}";

/// Every document of `db.coll` as raw BSON, in `_id` order.
async fn raw_docs(m: &Mongo, db: &str, coll: &str) -> Vec<RawDocumentBuf> {
    m.client()
        .await
        .database(db)
        .collection::<RawDocumentBuf>(coll)
        .find(doc! {})
        .sort(doc! {"_id": 1})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap()
}

/// Point id -> content hash of `namespace`'s points in `target`.
async fn points<S: Sink>(sink: &S, target: &str, namespace: &str) -> BTreeMap<uuid::Uuid, String> {
    scroll_all(sink, target, None, Fields::All)
        .await
        .unwrap()
        .into_iter()
        .filter(|p| p.payload[keys::NAMESPACE] == namespace)
        .map(|p| (p.id, p.payload[keys::HASH].as_str().unwrap().to_owned()))
        .collect()
}

/// Sync the dump `files` into `target` (namespaces from the dump).
async fn sync_files<S: Sink>(m: &Mongo, sink: &Arc<S>, files: &[&Path], target: &str) {
    let mut source = common::source_args(m, DB, &[]);
    source.database = None;
    source.files = files.iter().map(|f| f.to_path_buf()).collect();
    let jobs = mongo2qdrant::config::jobs(&source, Some(target), TEMPLATE, &["title".into()])
        .await
        .unwrap();
    let r = common::sync_jobs(sink, jobs, common::options())
        .await
        .unwrap();
    assert_eq!(r.counts.failed, 0, "{:?}", r.failures);
}

both_targets!(a_dump_feeds_the_points_of_the_live_collection);

async fn a_dump_feeds_the_points_of_the_live_collection<S: Sink>(sink: Arc<S>) {
    let m = Mongo::start();
    common::load_movies(&m, DB, "films", 60).await;
    m.insert(
        DB,
        "notes",
        common::movie_docs(12, |i| format!("n{i}").into()),
    )
    .await;
    let live = common::unique("live");
    sync_of(&m, DB, &["films"])
        .template(TEMPLATE)
        .payload(&["title"])
        .target(Some(&live))
        .run(&sink)
        .await
        .unwrap();
    let want = points(sink.as_ref(), &live, "dumpdb.films").await;
    assert_eq!(want.len(), 60);

    let films = raw_docs(&m, DB, "films").await;
    let notes = raw_docs(&m, DB, "notes").await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join(DB)).unwrap();
    let plain: Vec<u8> = films.iter().flat_map(|d| d.as_bytes().to_vec()).collect();
    let bson = dir.path().join(DB).join("films.bson");
    std::fs::write(&bson, &plain).unwrap();
    let bson_gz = dir.path().join("films.bson.gz");
    std::fs::write(&bson_gz, gzip(&plain)).unwrap();
    let arch = dir.path().join("nightly.archive.gz");
    let bytes = archive(&[(DB, "films", &films), (DB, "notes", &notes)]);
    std::fs::write(&arch, gzip(&bytes)).unwrap();

    // DB/COLL.bson: the namespace from mongodump's layout.
    let t = common::unique("from_bson");
    sync_files(&m, &sink, &[&bson], &t).await;
    assert_eq!(points(sink.as_ref(), &t, "dumpdb.films").await, want);

    // Gzipped, elsewhere: the namespace from --namespace.
    let t = common::unique("from_bson_gz");
    let mut source = common::source_args(&m, DB, &[]);
    source.files = vec![bson_gz.clone()];
    source.namespace = Some("dumpdb.films".into());
    let jobs = mongo2qdrant::config::jobs(&source, Some(&t), TEMPLATE, &["title".into()])
        .await
        .unwrap();
    common::sync_jobs(&sink, jobs, common::options())
        .await
        .unwrap();
    assert_eq!(points(sink.as_ref(), &t, "dumpdb.films").await, want);

    // An archive: every user collection in it, system collections left out.
    let t = common::unique("from_archive");
    sync_files(&m, &sink, &[&arch], &t).await;
    assert_eq!(points(sink.as_ref(), &t, "dumpdb.films").await, want);
    assert_eq!(points(sink.as_ref(), &t, "dumpdb.notes").await.len(), 12);
    assert!(
        points(sink.as_ref(), &t, "admin.system.version")
            .await
            .is_empty()
    );

    // The live collection and the dump are interchangeable: a sync of the live collection
    // into the archive's target finds every film current.
    let r = sync_of(&m, DB, &["films"])
        .template(TEMPLATE)
        .payload(&["title"])
        .target(Some(&t))
        .run(&sink)
        .await
        .unwrap();
    assert_eq!((r.counts.skipped_unchanged, r.counts.embedded), (60, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_dumps_are_refused_naming_the_format() {
    let m = Mongo::start();
    common::load_movies(&m, DB, "films", 5).await;
    let films = raw_docs(&m, DB, "films").await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join(DB)).unwrap();
    let mut plain: Vec<u8> = films.iter().flat_map(|d| d.as_bytes().to_vec()).collect();
    plain.truncate(plain.len() - 10);
    let cut = dir.path().join(DB).join("films.bson");
    std::fs::write(&cut, &plain).unwrap();
    let store = dir.path().join("store");
    let out = common::bin()
        .args(["sync", "--quiet", "--text", TEMPLATE, "--file"])
        .arg(&cut)
        .arg("--qdrant-path")
        .arg(&store)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("ends inside a document") && err.contains("mongodump"),
        "{err}"
    );

    // An archive cut after its prelude's magic number.
    let arch = dir.path().join("x.archive");
    std::fs::write(&arch, [0x6d, 0xe2, 0x99, 0x81, 0x05, 0x00]).unwrap();
    let out = common::bin()
        .args(["sync", "--quiet", "--file"])
        .arg(&arch)
        .arg("--qdrant-path")
        .arg(&store)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("mongodump"), "{err}");
}

/// An archive cut at a document boundary before a collection's end-of-collection header reads
/// as well-formed: it was taken for the whole collection and `--prune` deleted the live points
/// of the documents after the cut. Now the pass is incomplete: exit non-zero naming the file,
/// nothing pruned. A `--namespace` the archive does not hold names what it holds (exit 2).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_archive_prunes_nothing_and_names_the_file() {
    let m = Mongo::start();
    common::load_movies(&m, DB, "films", 40).await;
    let films = raw_docs(&m, DB, "films").await;
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let whole = archive(&[(DB, "films", &films)]);
    let arch = dir.path().join("cut.archive");
    std::fs::write(&arch, &whole).unwrap();
    let sync = |extra: &[&str]| {
        common::bin()
            .args(["sync", "--quiet", "--text", TEMPLATE, "--file"])
            .arg(&arch)
            .args(extra)
            .arg("--qdrant-path")
            .arg(&store)
            .output()
            .unwrap()
    };
    common::assert_ok(&sync(&[]));
    assert_eq!(common::edge_snapshot(&store, "films").await.len(), 40);

    // Cut right before the segment that holds films' 29th document: whole segments only.
    let at = |d: &RawDocumentBuf| {
        whole
            .windows(d.as_bytes().len())
            .position(|w| w == d.as_bytes())
            .unwrap()
    };
    let header_len =
        bytes_of(&doc! {"db": DB, "collection": "films", "EOF": false, "CRC": 0i64}).len();
    let cut = at(&films[28]) - header_len;
    std::fs::write(&arch, &whole[..cut]).unwrap();
    let out = sync(&["--prune"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("incomplete dump")
            && err.contains("cut.archive")
            && err.contains("dumpdb.films"),
        "{err}"
    );
    assert_eq!(
        common::edge_snapshot(&store, "films").await.len(),
        40,
        "nothing pruned"
    );

    std::fs::write(&arch, &whole).unwrap();
    let out = sync(&["--namespace", "dumpdb.nothere"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("holds no collection dumpdb.nothere") && err.contains("dumpdb.films"),
        "{err}"
    );
}

/// Two copies of one `_id` in a `.bson` dump (a document that moved while mongodump read):
/// each run embedded one of them, the stored hash flipped every run and `verify` alternated.
/// Now the last copy is kept every time and the earlier one reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_ids_in_a_dump_keep_the_last_copy_every_time() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join(DB)).unwrap();
    let docs = [
        doc! {"_id": 4, "title": "Four", "extract": "a quiet film about a lighthouse"},
        doc! {"_id": 5, "title": "Five", "extract": "the first copy of five"},
        doc! {"_id": 6, "title": "Six", "extract": "a loud film about a storm"},
        doc! {"_id": 5i64, "title": "Five", "extract": "the last copy of five"},
    ];
    let bytes: Vec<u8> = docs.iter().flat_map(bytes_of).collect();
    let file = dir.path().join(DB).join("dups.bson");
    std::fs::write(&file, bytes).unwrap();
    let store = dir.path().join("store");
    let report = dir.path().join("r.json");
    let sync = || {
        let out = common::bin()
            .args([
                "sync",
                "--quiet",
                "--text",
                TEMPLATE,
                "--payload",
                "extract",
                "--file",
            ])
            .arg(&file)
            .arg("--qdrant-path")
            .arg(&store)
            .arg("--report-json")
            .arg(&report)
            .output()
            .unwrap();
        common::assert_ok(&out);
        common::read_json(&report)
    };
    let r = sync();
    assert_eq!(
        (r["read"].as_u64(), r["failed"].as_u64()),
        (Some(4), Some(1)),
        "{r}"
    );
    let failures = r["failures"].to_string();
    assert!(
        failures.contains("duplicate _id 5") && failures.contains("later in the dump"),
        "{failures}"
    );
    let first = common::edge_snapshot(&store, "dups").await;
    for _ in 0..2 {
        let r = sync();
        assert_eq!(r["embedded"], 0, "the same copy every run: {r}");
        assert_eq!(common::edge_snapshot(&store, "dups").await, first);
    }
    let sink = mongo2qdrant::sink::EdgeSink::open(&store).unwrap();
    let points = mongo2qdrant::sink::scroll_all(&sink, "dups", None, Fields::All)
        .await
        .unwrap();
    let five: Vec<_> = points
        .iter()
        .filter(|p| {
            let extract = p.payload.get("extract").and_then(|e| e.as_str());
            extract.is_some_and(|e| e.contains("five"))
        })
        .collect();
    assert_eq!(five.len(), 1);
    assert_eq!(five[0].payload["extract"], "the last copy of five");
}
