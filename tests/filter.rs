//! `search --filter` on real parts: each MongoDB-style filter selects, among the synced points,
//! exactly the documents MongoDB itself selects with the same filter (on both targets); an
//! unsupported operator exits 2 naming it.

use crate::common;

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::common::{Mongo, movie_docs, options, unique};
use mongo2qdrant::embed::Embedder;
use mongo2qdrant::point::keys;
use mongo2qdrant::sink::{Query, Sink};
use mongodb::bson::{Bson, Document, doc};

const FILTERS: &[&str] = &[
    r#"{"genres": "Drama"}"#,
    r#"{"year": {"$gte": 2021, "$lt": 2023}}"#,
    r#"{"$or": [{"genres": "Horror"}, {"year": 2020}]}"#,
    r#"{"genres": {"$nin": ["Drama", "Comedy"]}}"#,
    r#"{"genres": {"$in": ["Thriller", "Action"]}, "year": {"$ne": 2022}}"#,
    r#"{"rating": {"$exists": true}}"#,
    r#"{"rating": {"$exists": false}, "$and": [{"year": {"$lte": 2021}}]}"#,
    r#"{"rating": {"$gt": 2.5}}"#,
    r#"{"free": true}"#,
    // Doubles holding whole numbers, compared with integer literals.
    r#"{"score": 2}"#,
    r#"{"score": {"$in": [1, 3]}}"#,
    // null matches a missing field too.
    r#"{"rating": null}"#,
    r#"{"rating": {"$ne": null}}"#,
    // On an array, each bound may hold for another element.
    r#"{"nums": {"$gt": 5, "$lt": 9}}"#,
];

async fn filters_select_what_mongodb_selects<S: Sink>(sink: Arc<S>) {
    let m = Mongo::start();
    let c = unique("filter");
    let docs: Vec<Document> = movie_docs(60, |i| Bson::Int32(i as i32))
        .into_iter()
        .enumerate()
        .map(|(i, d)| {
            let mut out = doc! {
                "_id": d.get("_id").unwrap().clone(),
                "text": d.get_str("extract").unwrap_or("a film"),
                "title": d.get_str("title").unwrap(),
                "year": d.get("year").unwrap().clone(),
                "genres": d.get("genres").unwrap().clone(),
                "free": i % 3 == 0,
                "score": (i % 4) as f64,
                "nums": [(i % 7) as i32, (i % 5) as i32 + 10],
            };
            if i % 2 == 0 {
                out.insert("rating", (i % 5) as f64 + 0.5);
            }
            out
        })
        .collect();
    m.insert("f", &c, docs).await;
    let fields = ["title", "year", "genres", "rating", "free", "score", "nums"];
    common::sync_of(&m, "f", &[c.as_str()])
        .payload(&fields)
        .opts(options())
        .run(&sink)
        .await
        .unwrap();
    let coll = m.client().await.database("f").collection::<Document>(&c);
    let vector = common::embedder()
        .embed_query(&["a film"])
        .unwrap()
        .0
        .remove(0);
    let mut nonempty = 0;
    for f in FILTERS {
        let want: BTreeSet<i64> = {
            let filter: Document = serde_json::from_str(f).unwrap();
            let found = coll.find(filter).await.unwrap();
            use futures_util::TryStreamExt;
            let found: Vec<Document> = found.try_collect().await.unwrap();
            found
                .iter()
                .map(|d| i64::from(d.get_i32("_id").unwrap()))
                .collect()
        };
        let q = Query {
            dense: Some((None, vector.clone())),
            sparse: None,
            limit: 1000,
            prefetch: 1000,
            filter: Some(mongo2qdrant::filter::parse(f).unwrap()),
            params: Default::default(),
        };
        let got: BTreeSet<i64> = sink
            .query(&c, q)
            .await
            .unwrap()
            .iter()
            .map(|h| h.payload[keys::ID].as_i64().unwrap())
            .collect();
        assert_eq!(got, want, "{f}");
        nonempty += usize::from(!want.is_empty() && want.len() < 60);
    }
    assert!(
        nonempty >= 7,
        "the filters must select some documents, not all"
    );
}

/// Payload indexes as code: a dry run changes nothing, a run creates what is asked (keyword,
/// integer, a tenant field) over a collection already loaded without embedding anything again,
/// a later run changes one index's type and leaves the others alone, and filters still select
/// what MongoDB selects.
async fn payload_indexes_are_created_and_changed<S: Sink>(sink: Arc<S>) {
    use mongo2qdrant::sink::StoredIndex;
    let m = Mongo::start();
    let c = unique("index");
    let docs: Vec<Document> = movie_docs(20, |i| Bson::Int32(i as i32))
        .into_iter()
        .enumerate()
        .map(|(i, d)| {
            doc! {"_id": d.get("_id").unwrap().clone(), "text": d.get_str("extract").unwrap_or("a film"),
            "year": d.get("year").unwrap().clone(), "genres": d.get("genres").unwrap().clone(),
            "org": format!("org{}", i % 3)}
        })
        .collect();
    m.insert("f", &c, docs).await;
    let jobs = |indexes: &'static [&'static str], dry: bool| {
        let of = common::sync_of(&m, "f", &[c.as_str()]).payload(&["year", "genres", "org"]);
        async move {
            let mut jobs = of.jobs().await;
            let items: Vec<String> = indexes.iter().map(|s| s.to_string()).collect();
            for j in &mut jobs {
                j.indexes = mongo2qdrant::sink::index::parse(&items).unwrap();
            }
            let mut o = options();
            o.dry_run = dry;
            (jobs, o)
        }
    };
    let (j, o) = jobs(&[], false).await;
    common::sync_jobs(&sink, j, o).await.unwrap();
    let asked: &[&str] = &["year:integer", "genres:keyword", "org:keyword:tenant"];
    let (j, o) = jobs(asked, true).await;
    common::sync_jobs(&sink, j, o).await.unwrap();
    assert!(
        sink.payload_indexes(&c).await.unwrap().is_empty(),
        "a dry run writes nothing"
    );
    let (j, o) = jobs(asked, false).await;
    let r = common::sync_jobs(&sink, j, o).await.unwrap();
    assert_eq!(
        (r.counts.embedded, r.counts.skipped_unchanged),
        (0, 20),
        "{r:?}"
    );
    let stored = |kind: &str, tenant| StoredIndex {
        kind: kind.into(),
        tenant,
    };
    let want = std::collections::BTreeMap::from([
        ("genres".to_owned(), stored("keyword", false)),
        ("org".to_owned(), stored("keyword", true)),
        ("year".to_owned(), stored("integer", false)),
    ]);
    assert_eq!(sink.payload_indexes(&c).await.unwrap(), want);
    let (j, o) = jobs(&["year:float"], false).await;
    common::sync_jobs(&sink, j, o).await.unwrap();
    let mut want = want;
    want.insert("year".into(), stored("float", false));
    assert_eq!(sink.payload_indexes(&c).await.unwrap(), want);
    let vector = common::embedder()
        .embed_query(&["a film"])
        .unwrap()
        .0
        .remove(0);
    let q = Query {
        dense: Some((None, vector)),
        sparse: None,
        limit: 100,
        prefetch: 100,
        filter: Some(
            mongo2qdrant::filter::parse(r#"{"org": "org1", "year": {"$gte": 2021}}"#).unwrap(),
        ),
        params: Default::default(),
    };
    let got: BTreeSet<i64> = sink
        .query(&c, q)
        .await
        .unwrap()
        .iter()
        .map(|h| h.payload[keys::ID].as_i64().unwrap())
        .collect();
    let coll = m.client().await.database("f").collection::<Document>(&c);
    use futures_util::TryStreamExt;
    let found: Vec<Document> = coll
        .find(doc! {"org": "org1", "year": {"$gte": 2021}})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let want: BTreeSet<i64> = found
        .iter()
        .map(|d| i64::from(d.get_i32("_id").unwrap()))
        .collect();
    assert_eq!(got, want);
}

both_targets!(
    filters_select_what_mongodb_selects,
    payload_indexes_are_created_and_changed
);

/// The command line: a filtered search prints only matching hits; an unsupported operator or
/// bad JSON exits 2 naming it, before anything is opened.
#[test]
fn search_filter_on_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store").display().to_string();
    let file = common::repo()
        .join("tests/data/demo.jsonl")
        .display()
        .to_string();
    let out = common::bin()
        .args([
            "sync",
            "--file",
            &file,
            "--text",
            "{title} {body}",
            "--payload",
            "category",
        ])
        .args(["--qdrant-path", &store, "--collection-name", "demo"])
        .output()
        .unwrap();
    common::assert_ok(&out);
    let search = |filter: &str| {
        common::bin()
            .args([
                "search",
                "water",
                "--collection-name",
                "demo",
                "--qdrant-path",
                &store,
            ])
            .args(["--json", "-k", "50", "--filter", filter])
            .output()
            .unwrap()
    };
    let out = search(r#"{"category": "kitchen"}"#);
    common::assert_ok(&out);
    let hits: Vec<serde_json::Value> = out
        .stdout
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    assert!(!hits.is_empty());
    assert!(
        hits.iter().all(|h| h["payload"]["category"] == "kitchen"),
        "{hits:?}"
    );
    for (bad, named) in [
        (r#"{"category": {"$regex": "^k"}}"#, "$regex"),
        (r#"{"category": "#, "not valid JSON"),
        (r#"{"category": {"$in": []}}"#, "non-empty"),
    ] {
        let out = search(bad);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains(named), "{err}");
    }
}
