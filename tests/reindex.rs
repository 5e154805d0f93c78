//! Change-correct reindexing on real parts: prune, chunks that grow and shrink, template
//! changes, verify, dry-run, and a config file with several collections.

use crate::common;

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::common::{Mongo, movie_docs, options, unique};
use mongo2qdrant::ids::point_id;
use mongo2qdrant::pipeline::{Chunking, SyncOptions};
use mongo2qdrant::point::keys;
use mongo2qdrant::report::RunReport;
use mongo2qdrant::sink::{Point, Sink, StoredPoint, scroll_all};
use mongo2qdrant::state::{RECORDS_COLLECTION, StateStore};
use mongodb::bson::{Bson, Document, doc};
use serde_json::Value;
use uuid::Uuid;

async fn run<S: Sink>(
    sink: &Arc<S>,
    m: &Mongo,
    db: &str,
    coll: &str,
    template: &str,
    opts: SyncOptions,
) -> RunReport {
    run_into(sink, m, db, coll, template, None, opts).await
}

/// `run`, writing the named vector `vector`.
async fn run_into<S: Sink>(
    sink: &Arc<S>,
    m: &Mongo,
    db: &str,
    coll: &str,
    template: &str,
    vector: Option<&str>,
    opts: SyncOptions,
) -> RunReport {
    common::sync_of(m, db, &[coll])
        .template(template)
        .payload(&["title"])
        .vector(vector)
        .opts(opts)
        .run(sink)
        .await
        .unwrap()
}

fn ids_of(points: &[StoredPoint]) -> BTreeSet<Uuid> {
    points.iter().map(|p| p.id).collect()
}

const T: &str = r"{title}\n{extract}";

async fn prune_removes_exactly_the_deleted<S: Sink>(sink: Arc<S>) {
    let m = Mongo::start();
    let c = unique("prune");
    m.insert("p", &c, movie_docs(30, |i| Bson::Int32(i as i32)))
        .await;
    run(&sink, &m, "p", &c, T, options()).await;
    let before = ids_of(
        &scroll_all(sink.as_ref(), &c, None, mongo2qdrant::sink::Fields::All)
            .await
            .unwrap(),
    );
    assert_eq!(before.len(), 30);

    let coll = m.client().await.database("p").collection::<Document>(&c);
    coll.delete_many(doc! {"_id": {"$in": [2, 3, 17, 29]}})
        .await
        .unwrap();
    // Without --prune nothing is deleted.
    let r = run(&sink, &m, "p", &c, T, options()).await;
    assert_eq!(r.counts.deleted, 0);
    assert_eq!(sink.count(&c).await.unwrap(), 30);

    let mut o = options();
    o.prune = true;
    let r = run(&sink, &m, "p", &c, T, o).await;
    assert_eq!(r.counts.deleted, 4, "{r:?}");
    assert_eq!(r.namespaces[0].pruned, 4);
    let after = ids_of(
        &scroll_all(sink.as_ref(), &c, None, mongo2qdrant::sink::Fields::All)
            .await
            .unwrap(),
    );
    let gone: BTreeSet<Uuid> = [2, 3, 17, 29]
        .iter()
        .map(|i| point_id("p", &c, &Bson::Int32(*i), 0))
        .collect();
    assert_eq!(
        before.difference(&after).copied().collect::<BTreeSet<_>>(),
        gone
    );
    assert_eq!(after.len(), 26);

    // An interrupted pass prunes nothing.
    coll.delete_many(doc! {"_id": {"$in": [5, 6]}})
        .await
        .unwrap();
    let (stop_tx, stop) = tokio::sync::watch::channel(true);
    let mut o = options();
    o.prune = true;
    o.stop = stop;
    let r = run(&sink, &m, "p", &c, T, o).await;
    drop(stop_tx);
    assert!(!r.namespaces[0].complete);
    assert_eq!(r.counts.deleted, 0);
    assert_eq!(sink.count(&c).await.unwrap(), 26);
}

async fn chunks_follow_the_document<S: Sink>(sink: Arc<S>) {
    let m = Mongo::start();
    let c = unique("chunks");
    let short = "A short note.";
    // 150 one-token words: windows of 64 overlapping by 8 start at 0, 56 and 112.
    let words = ["river", "house", "green", "music", "table", "water"];
    let long = (0..150)
        .map(|i| words[i % words.len()])
        .collect::<Vec<_>>()
        .join(" ");
    m.insert(
        "ch",
        &c,
        vec![
            doc! {"_id": 1, "title": "doc", "extract": short},
            doc! {"_id": 2, "title": "other", "extract": "Stays the same."},
        ],
    )
    .await;
    let mut o = options();
    o.chunking = Some(Chunking {
        size: 64,
        overlap: 8,
    });
    let chunk_ids = |n: u32| -> BTreeSet<Uuid> {
        (0..n)
            .map(|i| point_id("ch", &c, &Bson::Int32(1), i))
            .collect()
    };
    let doc1 = |points: Vec<StoredPoint>| -> BTreeSet<Uuid> {
        points
            .into_iter()
            .filter(|p| p.payload[keys::ID] == 1)
            .map(|p| p.id)
            .collect()
    };
    run(&sink, &m, "ch", &c, T, o.clone()).await;
    assert_eq!(
        doc1(
            scroll_all(sink.as_ref(), &c, None, mongo2qdrant::sink::Fields::All)
                .await
                .unwrap()
        ),
        chunk_ids(1)
    );

    let coll = m.client().await.database("ch").collection::<Document>(&c);
    coll.update_one(doc! {"_id": 1}, doc! {"$set": {"extract": &long}})
        .await
        .unwrap();
    let r = run(&sink, &m, "ch", &c, T, o.clone()).await;
    assert_eq!(r.counts.embedded, 1);
    let grown = doc1(
        scroll_all(sink.as_ref(), &c, None, mongo2qdrant::sink::Fields::All)
            .await
            .unwrap(),
    );
    assert_eq!(grown.len(), 3, "150 tokens in 64-token windows: 3 chunks");
    assert_eq!(grown, chunk_ids(3));
    let p = sink
        .retrieve(
            &c,
            &[point_id("ch", &c, &Bson::Int32(1), 2)],
            mongo2qdrant::sink::Fields::All,
            false,
        )
        .await
        .unwrap();
    assert_eq!(p[0].payload[keys::CHUNK], 2);
    assert_eq!(p[0].payload[keys::CHUNKS], 3);

    coll.update_one(doc! {"_id": 1}, doc! {"$set": {"extract": short}})
        .await
        .unwrap();
    let r = run(&sink, &m, "ch", &c, T, o.clone()).await;
    assert_eq!(r.counts.deleted, 2, "surplus chunks deleted");
    assert_eq!(
        doc1(
            scroll_all(sink.as_ref(), &c, None, mongo2qdrant::sink::Fields::All)
                .await
                .unwrap()
        ),
        chunk_ids(1)
    );
    assert_eq!(sink.count(&c).await.unwrap(), 2);
}

async fn template_change_reembeds_everything<S: Sink>(sink: Arc<S>) {
    let m = Mongo::start();
    let c = unique("tmpl");
    m.insert("t", &c, movie_docs(12, |i| Bson::Int32(i as i32)))
        .await;
    let r = run(&sink, &m, "t", &c, T, options()).await;
    assert_eq!(r.counts.embedded, 12);
    let r = run(&sink, &m, "t", &c, T, options()).await;
    assert_eq!(r.counts.embedded, 0);
    let r = run(&sink, &m, "t", &c, r"{extract}", options()).await;
    assert_eq!(r.counts.embedded, 12, "new template, new hashes");
    assert_eq!(sink.count(&c).await.unwrap(), 12);
}

async fn verify_reports_each_difference_by_id<S: Sink>(sink: Arc<S>) {
    let m = Mongo::start();
    let c = unique("verify");
    m.insert("v", &c, movie_docs(10, |i| Bson::Int32(i as i32)))
        .await;
    run(&sink, &m, "v", &c, T, options()).await;
    let jobs = || async {
        let source = common::source_args(&m, "v", &[c.as_str()]);
        mongo2qdrant::config::jobs(&source, None, T, &["title".into()])
            .await
            .unwrap()
    };
    let embedder: Arc<dyn mongo2qdrant::embed::Embedder> = common::embedder();
    let clean =
        mongo2qdrant::verify::verify(sink.clone(), embedder.clone(), jobs().await, &options())
            .await
            .unwrap();
    assert!(clean.in_sync, "{clean:?}");

    // Plant: a stale point (wrong hash), an orphan, a missing point, a duplicate chunk.
    let stale = point_id("v", &c, &Bson::Int32(4), 0);
    let mut p = sink
        .retrieve(&c, &[stale], mongo2qdrant::sink::Fields::All, false)
        .await
        .unwrap()
        .remove(0);
    p.payload.insert(keys::HASH.into(), "0".repeat(64).into());
    let vector = vec![0.5f32; 384];
    let missing = point_id("v", &c, &Bson::Int32(7), 0);
    let orphan = point_id("v", &c, &Bson::Int32(999), 0);
    let duplicate = point_id("v", &c, &Bson::Int32(2), 1);
    let ns = format!("v.{c}");
    let planted = |id: Uuid, doc_id: i32| Point {
        id,
        vector: vector.clone(),
        sparse: None,
        payload: serde_json::json!({keys::NAMESPACE: ns, keys::ID: doc_id, keys::HASH: "x"})
            .as_object()
            .unwrap()
            .clone(),
    };
    sink.upsert(
        &c,
        None,
        vec![
            Point {
                id: stale,
                vector: vector.clone(),
                sparse: None,
                payload: p.payload,
            },
            planted(orphan, 999),
            planted(duplicate, 2),
        ],
    )
    .await
    .unwrap();
    sink.delete(&c, &[missing]).await.unwrap();

    let r = mongo2qdrant::verify::verify(sink.clone(), embedder, jobs().await, &options())
        .await
        .unwrap();
    assert!(!r.in_sync);
    let ns = &r.namespaces[0];
    assert_eq!(
        (ns.missing, ns.stale, ns.orphaned, ns.duplicates),
        (1, 1, 1, 1),
        "{ns:?}"
    );
    assert_eq!(ns.missing_ids[0].point, missing);
    assert_eq!(ns.missing_ids[0].doc_id, "7");
    assert_eq!(ns.stale_ids[0].point, stale);
    assert_eq!(ns.orphaned_ids[0].point, orphan);
    assert_eq!(ns.duplicate_ids[0].point, duplicate);
}

async fn snapshot<S: Sink>(sink: &S, c: &str) -> (Vec<StoredPoint>, Vec<StoredPoint>) {
    (
        scroll_all(sink, c, None, mongo2qdrant::sink::Fields::All)
            .await
            .unwrap(),
        scroll_all(
            sink,
            RECORDS_COLLECTION,
            None,
            mongo2qdrant::sink::Fields::All,
        )
        .await
        .unwrap(),
    )
}

async fn dry_run_writes_nothing<S: Sink>(sink: Arc<S>) {
    let m = Mongo::start();
    let c = unique("dry");
    m.insert("d", &c, movie_docs(20, |i| Bson::Int32(i as i32)))
        .await;
    run(&sink, &m, "d", &c, T, options()).await;
    let coll = m.client().await.database("d").collection::<Document>(&c);
    coll.update_one(doc! {"_id": 3}, doc! {"$set": {"extract": "Changed."}})
        .await
        .unwrap();
    coll.delete_many(doc! {"_id": {"$in": [10, 11]}})
        .await
        .unwrap();
    m.insert(
        "d",
        &c,
        movie_docs(22, |i| Bson::Int32(100 + i as i32)).split_off(20),
    )
    .await;

    let before = snapshot(sink.as_ref(), &c).await;
    let mut o = options();
    o.dry_run = true;
    o.prune = true;
    let r = run(&sink, &m, "d", &c, T, o).await;
    assert!(r.dry_run);
    assert_eq!(
        r.counts.embedded, 3,
        "1 changed + 2 new would be embedded: {r:?}"
    );
    assert_eq!(r.counts.skipped_unchanged, 17);
    assert_eq!(r.counts.deleted, 2, "2 would be pruned");
    assert_eq!(r.counts.upserted, 0);
    let after = snapshot(sink.as_ref(), &c).await;
    assert_eq!(before, after, "same points, same checkpoint");

    // A dry run against a target that does not exist creates nothing.
    let fresh = unique("dry_none");
    m.insert("d", &fresh, movie_docs(3, |i| Bson::Int32(i as i32)))
        .await;
    let mut o = options();
    o.dry_run = true;
    let r = run(&sink, &m, "d", &fresh, T, o).await;
    assert_eq!(r.counts.embedded, 3);
    assert!(!sink.exists(&fresh).await.unwrap());
    let store = StateStore::open(sink.as_ref(), false).await.unwrap();
    assert!(
        store
            .checkpoint(&fresh, &format!("d.{fresh}"), None, None)
            .await
            .unwrap()
            .is_none()
    );
}

/// `--vector-name`: points carry a named vector, and search uses it.
async fn named_vector_round_trip<S: Sink>(sink: Arc<S>) {
    let m = Mongo::start();
    let c = unique("named");
    m.insert("n", &c, movie_docs(8, |i| Bson::Int32(i as i32)))
        .await;
    let r = run_into(&sink, &m, "n", &c, T, Some("minilm"), options()).await;
    assert_eq!(r.counts.embedded, 8);
    let (vectors, _) = mongo2qdrant::embed::Embedder::embed(
        common::embedder().as_ref(),
        &[common::movies(8)[5].get_str("extract").unwrap()],
    )
    .unwrap();
    let hits = sink
        .search(&c, Some("minilm"), vectors[0].clone(), 1)
        .await
        .unwrap();
    assert_eq!(hits[0].payload[keys::ID], 5);
    // The unnamed vector does not exist there: a run without the name is refused, untouched.
    let plain =
        mongo2qdrant::config::jobs(&common::source_args(&m, "n", &[c.as_str()]), None, T, &[])
            .await
            .unwrap();
    let err = common::sync_jobs(&sink, plain, options())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("--recreate"), "{err}");
    assert_eq!(sink.count(&c).await.unwrap(), 8);
    let r = run_into(&sink, &m, "n", &c, T, Some("minilm"), options()).await;
    assert_eq!(r.counts.embedded, 0, "unchanged under the same vector name");
}

/// A copied payload field changes (or disappears) while the text stays: the payload is
/// rewritten, nothing is embedded, the vectors stay; for the unnamed vector and a named one.
async fn payload_change_rewrites_only_the_payload<S: Sink>(sink: Arc<S>) {
    let m = Mongo::start();
    for vector in [None, Some("v")] {
        let c = unique("payload");
        m.insert("pl", &c, movie_docs(5, |i| Bson::Int32(i as i32)))
            .await;
        let jobs = || async {
            let source = common::source_args(&m, "pl", &[c.as_str()]);
            let fields = ["title".to_owned(), "year".to_owned()];
            let mut jobs = mongo2qdrant::config::jobs(&source, None, T, &fields)
                .await
                .unwrap();
            jobs[0].vector_name = vector.map(str::to_owned);
            jobs
        };
        let sync = |jobs| common::sync_jobs(&sink, jobs, options());
        let r = sync(jobs().await).await.unwrap();
        assert_eq!(r.counts.embedded, 5);
        let before = common::points_with_vectors(sink.as_ref(), &c).await;

        let coll = m.client().await.database("pl").collection::<Document>(&c);
        coll.update_one(doc! {"_id": 2}, doc! {"$set": {"year": 1895}})
            .await
            .unwrap();
        coll.update_one(doc! {"_id": 3}, doc! {"$unset": {"year": ""}})
            .await
            .unwrap();
        let r = sync(jobs().await).await.unwrap();
        assert_eq!(r.counts.embedded, 0, "{vector:?}: {r:?}");
        assert_eq!(r.counts.payload_updated, 2);
        assert_eq!(r.counts.skipped_unchanged, 3);
        assert_eq!(r.counts.upserted, 0);
        let after = common::points_with_vectors(sink.as_ref(), &c).await;
        assert_eq!(before.len(), after.len());
        let hash = keys::hash(vector);
        for (b, a) in before.iter().zip(&after) {
            assert_eq!(b.vectors, a.vectors);
            assert_eq!(b.payload[&hash], a.payload[&hash], "text unchanged");
            assert_eq!(b.payload[keys::CHUNK], a.payload[keys::CHUNK]);
            match &a.payload[keys::ID] {
                v if v == 2 => assert_eq!(a.payload["year"], 1895),
                v if v == 3 => assert!(a.payload.get("year").is_none_or(Value::is_null)),
                _ => assert_eq!(a.payload, b.payload),
            }
        }
        // The vector of document 2 is still its own.
        let d = &common::movies(3)[2];
        let text = format!(
            "{}\n{}",
            d.get_str("title").unwrap(),
            d.get_str("extract").unwrap()
        );
        let (v, _) =
            mongo2qdrant::embed::Embedder::embed(common::embedder().as_ref(), &[&text]).unwrap();
        let hits = sink.search(&c, vector, v[0].clone(), 1).await.unwrap();
        assert_eq!(hits[0].payload[keys::ID], 2);
        assert!(hits[0].score > 0.99, "{}", hits[0].score);

        let report = mongo2qdrant::verify::verify(
            sink.clone(),
            common::embedder(),
            jobs().await,
            &options(),
        )
        .await
        .unwrap();
        assert!(report.in_sync, "{report:#?}");
        let r = sync(jobs().await).await.unwrap();
        assert_eq!(
            (r.counts.skipped_unchanged, r.counts.payload_updated),
            (5, 0)
        );
    }
}

both_targets!(
    payload_change_rewrites_only_the_payload,
    named_vector_round_trip,
    prune_removes_exactly_the_deleted,
    chunks_follow_the_document,
    template_change_reembeds_everything,
    verify_reports_each_difference_by_id,
    dry_run_writes_nothing,
);

/// Eight collections of a project-management app would go the same way; here three source
/// collections into two targets, each with its own template, payload and filter, from a TOML
/// file, with a command-line flag overriding it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_file_three_sources_two_targets() {
    let m = Mongo::start();
    m.insert(
        "pm",
        "epics",
        vec![
            doc! {"_id": 1, "name": "Billing revamp", "goal": "Move invoices to the new ledger", "state": "open"},
            doc! {"_id": 2, "name": "Old epic", "goal": "Archived work", "state": "archived"},
        ],
    )
    .await;
    m.insert(
        "pm",
        "features",
        vec![doc! {"_id": "f1", "title": "PDF export", "spec": "Export invoices as PDF"}],
    )
    .await;
    m.insert(
        "pm",
        "pages",
        vec![
            doc! {"_id": 10, "heading": "Onboarding", "body": "How to set up your workspace"},
            doc! {"_id": 11, "heading": "FAQ", "body": "Common questions"},
        ],
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("m2q.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"
mongo_uri = "mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=100"
database = "pm"
qdrant_path = "{store}"

[[sync]]
collection = "epics"
target = "planning"
text = "{{name}}: {{goal}}"
payload = ["name", "state"]
filter = '{{"state": {{"$ne": "archived"}}}}'

[[sync]]
collection = "features"
target = "planning"
text = "{{title}}\n{{spec}}"
payload = ["title"]

[[sync]]
collection = "pages"
target = "docs"
text = "{{heading}}\n{{body}}"
"#,
            store = dir.path().join("store").display()
        ),
    )
    .unwrap();
    let out = common::bin()
        .args(["sync", "--quiet", "--config"])
        .arg(&cfg)
        .args(["--mongo-uri", &m.uri()]) // the flag overrides the file's unreachable URI
        .output()
        .unwrap();
    common::assert_ok(&out);
    let sink = mongo2qdrant::sink::EdgeSink::open(&dir.path().join("store")).unwrap();
    assert_eq!(
        sink.count("planning").await.unwrap(),
        2,
        "archived epic filtered out"
    );
    assert_eq!(sink.count("docs").await.unwrap(), 2);
    let planning = scroll_all(&sink, "planning", None, mongo2qdrant::sink::Fields::All)
        .await
        .unwrap();
    let epic = planning
        .iter()
        .find(|p| p.payload[keys::NAMESPACE] == "pm.epics")
        .unwrap();
    assert_eq!(epic.payload["state"], "open");
    assert!(
        planning
            .iter()
            .any(|p| p.payload[keys::NAMESPACE] == "pm.features")
    );

    // Unknown keys are refused with the key's name.
    std::fs::write(&cfg, "databse = \"pm\"\n").unwrap();
    let out = common::bin()
        .args(["sync", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("databse"), "{err}");
}
