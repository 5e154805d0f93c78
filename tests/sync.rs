//! End-to-end sync on real parts: a MongoDB-protocol server over a real connection, the real
//! model, and Qdrant (the embedded engine always; a Qdrant server too when QDRANT_URL is set).
//! The same suite runs against both targets.

use crate::common;

use std::sync::Arc;

use crate::common::{Mongo, movie_docs, unique};
use mongo2qdrant::pipeline;
use mongo2qdrant::point::keys;
use mongo2qdrant::report::RunReport;
use mongo2qdrant::sink::{Point, Sink, SinkError, VectorSpec, scroll_all};
use mongodb::bson::{Binary, Bson, Document, doc, oid::ObjectId, spec::BinarySubtype};

const TEMPLATE: &str = r"{title}\n{extract}";

async fn sync<S: Sink>(
    sink: &Arc<S>,
    m: &Mongo,
    db: &str,
    colls: &[&str],
    target: Option<&str>,
) -> Result<RunReport, pipeline::PipelineError> {
    common::sync_of(m, db, colls)
        .target(target)
        .template(TEMPLATE)
        .payload(&["title", "year"])
        .run(sink)
        .await
}

// ---------------------------------------------------------------- the suite, per target

async fn two_collections_then_rerun_then_changes<S: Sink>(sink: Arc<S>) {
    let m = Mongo::start();
    let db = "shop";
    let (a, b) = (unique("films_a"), unique("films_b"));
    let mut docs_a = movie_docs(40, |i| Bson::Int32(i as i32));
    // two documents without any template field: skipped and counted
    docs_a.push(doc! {"_id": 1000, "other": "x"});
    docs_a.push(doc! {"_id": 1001, "title": Bson::Null});
    let docs_b = movie_docs(25, |i| Bson::String(format!("m{i:03}")));
    m.insert(db, &a, docs_a).await;
    m.insert(db, &b, docs_b).await;

    let r1 = sync(&sink, &m, db, &[&a, &b], None).await.unwrap();
    assert_eq!(r1.counts.read, 67);
    assert_eq!(r1.counts.skipped_no_text, 2);
    assert_eq!(r1.counts.embedded, 65);
    assert_eq!(r1.counts.upserted, 65);
    assert_eq!(r1.counts.failed, 0);
    assert_eq!(sink.count(&a).await.unwrap(), 40);
    assert_eq!(sink.count(&b).await.unwrap(), 25);

    let points = scroll_all(sink.as_ref(), &a, None, mongo2qdrant::sink::Fields::All)
        .await
        .unwrap();
    let p = points
        .iter()
        .find(|p| p.payload[keys::ID] == serde_json::json!(3))
        .expect("document 3 has a point");
    assert_eq!(p.payload[keys::NAMESPACE], format!("{db}.{a}"));
    assert_eq!(p.payload[keys::HASH].as_str().unwrap().len(), 64);
    assert!(p.payload["title"].is_string());
    assert!(p.payload["year"].is_number());
    assert_eq!(
        p.id,
        mongo2qdrant::ids::point_id(db, &a, &Bson::Int32(3), 0),
        "deterministic id"
    );

    // Rerun, nothing changed: nothing embedded or written, same points, one point per doc.
    let r2 = sync(&sink, &m, db, &[&a, &b], None).await.unwrap();
    assert_eq!((r2.counts.embedded, r2.counts.upserted), (0, 0), "{r2:?}");
    assert_eq!(r2.counts.skipped_unchanged, 65);
    assert_eq!(sink.count(&a).await.unwrap(), 40);
    let again = scroll_all(sink.as_ref(), &a, None, mongo2qdrant::sink::Fields::All)
        .await
        .unwrap();
    let mut ids: Vec<_> = again.iter().map(|p| p.payload[keys::ID].clone()).collect();
    ids.sort_by_key(|v| v.to_string());
    ids.dedup();
    assert_eq!(ids.len(), 40, "no two points for one document");

    // Change 3 documents, add 5: exactly 8 embedded.
    let client = m.client().await;
    let coll = client.database(db).collection::<Document>(&a);
    for i in [0, 7, 39] {
        coll.update_one(
            doc! {"_id": i},
            doc! {"$set": {"extract": format!("Rewritten plot number {i}.")}},
        )
        .await
        .unwrap();
    }
    m.insert(
        db,
        &a,
        movie_docs(45, |i| Bson::Int32(2000 + i as i32)).split_off(40),
    )
    .await;
    let r3 = sync(&sink, &m, db, &[&a, &b], None).await.unwrap();
    assert_eq!(r3.counts.embedded, 8, "{r3:?}");
    assert_eq!(r3.counts.upserted, 8);
    assert_eq!(sink.count(&a).await.unwrap(), 45);
    let changed = sink
        .retrieve(
            &a,
            &[mongo2qdrant::ids::point_id(db, &a, &Bson::Int32(7), 0)],
            mongo2qdrant::sink::Fields::All,
            false,
        )
        .await
        .unwrap();
    assert_ne!(
        changed[0].payload[keys::HASH],
        p.payload[keys::HASH],
        "hash follows the text"
    );
}

async fn every_id_kind<S: Sink>(sink: Arc<S>) {
    let m = Mongo::start();
    let c = unique("ids");
    let kinds = vec![
        Bson::ObjectId(ObjectId::parse_str("65a1b2c3d4e5f60718293a4b").unwrap()),
        Bson::String("a string id".into()),
        Bson::Int64(1 << 40),
        Bson::Int32(-5),
        Bson::Binary(Binary {
            subtype: BinarySubtype::Uuid,
            bytes: uuid::Uuid::new_v4().as_bytes().to_vec(),
        }),
        Bson::Document(doc! {"tenant": "t1", "n": 2}),
        Bson::DateTime(mongodb::bson::DateTime::from_millis(1_700_000_000_000)),
    ];
    let docs: Vec<Document> = kinds
        .iter()
        .enumerate()
        .map(|(i, id)| doc! {"_id": id.clone(), "title": format!("Document {i}"), "extract": "Some text."})
        .collect();
    m.insert("kinds", &c, docs).await;
    let r = sync(&sink, &m, "kinds", &[&c], None).await.unwrap();
    assert_eq!(r.counts.embedded, kinds.len() as u64);
    for id in &kinds {
        let pid = mongo2qdrant::ids::point_id("kinds", &c, id, 0);
        let got = sink
            .retrieve(&c, &[pid], mongo2qdrant::sink::Fields::All, false)
            .await
            .unwrap();
        assert_eq!(got.len(), 1, "{id:?}");
        assert_eq!(got[0].payload[keys::ID], id.clone().into_relaxed_extjson());
    }
    let r2 = sync(&sink, &m, "kinds", &[&c], None).await.unwrap();
    assert_eq!(r2.counts.skipped_unchanged, kinds.len() as u64);
    assert_eq!(r2.counts.embedded, 0);
}

async fn wrong_dimension_is_refused<S: Sink>(sink: Arc<S>) {
    let m = Mongo::start();
    let c = unique("dims");
    m.insert("d", &c, movie_docs(3, |i| Bson::Int32(i as i32)))
        .await;
    let spec = VectorSpec {
        name: None,
        dimension: 3,
        distance: Default::default(),
    };
    mongo2qdrant::sink::ensure_collection(
        sink.as_ref(),
        &c,
        &spec,
        &Default::default(),
        mongo2qdrant::sink::Ensure::Create,
    )
    .await
    .unwrap();
    let marker = uuid::Uuid::new_v4();
    sink.upsert(
        &c,
        None,
        vec![Point {
            id: marker,
            vector: vec![1.0, 0.0, 0.0],
            sparse: None,
            payload: serde_json::Map::new(),
        }],
    )
    .await
    .unwrap();
    let err = sync(&sink, &m, "d", &[&c], None).await.unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(
            err,
            pipeline::PipelineError::Sink(SinkError::Incompatible { .. })
        ),
        "{msg}"
    );
    assert!(
        msg.contains("dimension 3") && msg.contains("384") && msg.contains("--recreate"),
        "{msg}"
    );
    // untouched
    assert_eq!(sink.count(&c).await.unwrap(), 1);
    assert_eq!(
        sink.retrieve(&c, &[marker], mongo2qdrant::sink::Fields::All, false)
            .await
            .unwrap()
            .len(),
        1
    );
    mongo2qdrant::sink::ensure_collection(
        sink.as_ref(),
        &c,
        &spec,
        &Default::default(),
        mongo2qdrant::sink::Ensure::Create,
    )
    .await
    .unwrap();
}

async fn checkpoint_is_recorded<S: Sink>(sink: Arc<S>) {
    let m = Mongo::start();
    let c = unique("cp");
    m.insert("cp", &c, movie_docs(10, |i| Bson::Int32(i as i32)))
        .await;
    sync(&sink, &m, "cp", &[&c], None).await.unwrap();
    let store = mongo2qdrant::state::StateStore::open(sink.as_ref(), false)
        .await
        .unwrap();
    let cp = store
        .checkpoint(&c, &format!("cp.{c}"), None, None)
        .await
        .unwrap()
        .unwrap();
    assert!(cp.complete);
    assert_eq!(cp.last_id(), Some(Bson::Int32(9)));
    assert_eq!(cp.counts.embedded, 10);
    assert_eq!(cp.dimension, 384);
    assert!(
        sink.exists(mongo2qdrant::state::RECORDS_COLLECTION)
            .await
            .unwrap()
    );
}

both_targets!(
    two_collections_then_rerun_then_changes,
    every_id_kind,
    wrong_dimension_is_refused,
    checkpoint_is_recorded,
);
