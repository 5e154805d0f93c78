//! BM25 sparse vectors on real parts: the vectors equal what the Qdrant server infers for
//! `qdrant/bm25` from the same texts; switching the sparse vector on adds it to stored points
//! without embedding again; a text change rewrites both vectors, a sparse setting only the
//! sparse one; verify (and `--deep`) sees a missing or wrong sparse vector; hybrid queries fuse
//! both on either target; a sparse-only run needs no model.

use crate::common;

use std::sync::Arc;

use crate::common::{Mongo, movie_docs, options, unique};
use mongo2qdrant::config::sparse::{SparseSettings, spec};
use mongo2qdrant::embed::Embedder;
use mongo2qdrant::pipeline::Job;
use mongo2qdrant::point::keys;
use mongo2qdrant::sink::{Fields, Query, Sink, SparseVector};
use mongo2qdrant::sparse::{Bm25, same};
use mongodb::bson::{Bson, doc};
use uuid::Uuid;

fn bm25() -> Bm25 {
    Bm25::new("english").unwrap()
}

/// `jobs` with the BM25 vector `bm25` (and, unless `dense`, only it), its text from
/// `sparse_text` when given.
fn sparse(mut jobs: Vec<Job>, dense: bool, sparse_text: Option<&str>) -> Vec<Job> {
    let settings = SparseSettings {
        name: "bm25".into(),
        text: sparse_text.map(str::to_owned),
        language: "english".into(),
        dense,
    };
    for j in &mut jobs {
        j.sparse = Some(spec(&settings, j.vector_name.as_deref()).unwrap());
        if !dense {
            j.vector_name = Some("bm25".into());
        }
    }
    jobs
}

/// At least 300 texts: movie extracts and titles, and the edges of tokenisation (unicode,
/// numbers, stop words only, empty, punctuation, long repetitive text).
fn texts() -> Vec<String> {
    let mut t: Vec<String> = Vec::new();
    for m in common::movies(300) {
        t.push(m.get_str("extract").unwrap_or_default().to_owned());
        if t.len().is_multiple_of(3) {
            t.push(m.get_str("title").unwrap_or_default().to_owned());
        }
    }
    t.extend(
        [
            "",
            "   ",
            "the and of a to in is it",
            "THE And OF",
            "1999 2000 3.14 42nd 1,000,000 007 0x1F",
            "Ünïcödé naïve café résumé Straße Ærøskøbing",
            "東京タワー 北京 서울 Москва Αθήνα",
            "emoji 🎬 film 🍿 popcorn 🎬",
            "don't stop-word re-entry e-mail U.S.A. C++ C# .NET",
            "running runs ran runner easily fairly generously",
            "a",
            "I",
            "supercalifragilisticexpialidocious pneumonoultramicroscopicsilicovolcanoconiosis",
            "tab\tseparated\nnew line\r\nwindows",
        ]
        .map(str::to_owned),
    );
    t.push("word ".repeat(600));
    t.push("alpha beta gamma ".repeat(120));
    t
}

/// Our BM25 vectors equal what the Qdrant 1.19 server infers itself (`qdrant/bm25`) from the
/// same texts: the same token ids, weights within 1e-6.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Qdrant server: tests/run.sh starts one and runs these; or set QDRANT_URL and pass --include-ignored"]
async fn bm25_vectors_equal_what_the_server_infers() {
    use qdrant_client::qdrant::{Document, PointStruct, UpsertPointsBuilder, Vector};
    let sink = common::grpc_sink();
    let c = unique("bm25_exact");
    sink.create_sparse_collection(&c, "bm25", &Default::default())
        .await
        .unwrap();
    let client = qdrant_client::Qdrant::from_url(&common::server_url())
        .api_key(std::env::var("QDRANT_API_KEY").ok())
        .skip_compatibility_check()
        .build()
        .unwrap();
    let texts = texts();
    assert!(texts.len() >= 300, "{}", texts.len());
    let ids: Vec<Uuid> = (0..texts.len()).map(|_| Uuid::new_v4()).collect();
    let points: Vec<PointStruct> = ids
        .iter()
        .zip(&texts)
        .map(|(id, t)| {
            let doc = Document {
                text: t.clone(),
                model: "qdrant/bm25".into(),
                options: Default::default(),
            };
            let vectors = std::collections::HashMap::from([("bm25".to_owned(), Vector::from(doc))]);
            PointStruct::new(id.to_string(), vectors, qdrant_client::Payload::new())
        })
        .collect();
    for chunk in points.chunks(64) {
        client
            .upsert_points(UpsertPointsBuilder::new(&c, chunk.to_vec()).wait(true))
            .await
            .unwrap();
    }
    let stored = sink
        .retrieve(&c, &ids, Fields::Only(&[]), true)
        .await
        .unwrap();
    assert_eq!(stored.len(), texts.len());
    let by_id: std::collections::HashMap<Uuid, SparseVector> = stored
        .into_iter()
        .map(|p| (p.id, p.sparse.get("bm25").cloned().unwrap_or_default()))
        .collect();
    let model = bm25();
    let (mut differ, mut terms) = (Vec::new(), 0);
    for (id, text) in ids.iter().zip(&texts) {
        let (ours, theirs) = (model.document(text), &by_id[id]);
        terms += ours.indices.len();
        if !same(&ours, theirs) {
            differ.push(format!("{text:?}: ours {ours:?}, the server's {theirs:?}"));
        }
    }
    assert!(
        differ.is_empty(),
        "{} of {} differ: {:#?}",
        differ.len(),
        texts.len(),
        &differ[..differ.len().min(5)]
    );
    assert!(terms > 10_000, "the texts must carry terms: {terms}");

    // The embedded store (qdrant-edge, whose BM25 this is) keeps them as they are.
    let (_dir, edge) = common::edge_sink();
    edge.create_sparse_collection(&c, "bm25", &Default::default())
        .await
        .unwrap();
    let points = ids
        .iter()
        .zip(&texts)
        .map(|(id, t)| mongo2qdrant::sink::Point {
            id: *id,
            vector: Vec::new(),
            sparse: Some(("bm25".into(), model.document(t))),
            payload: Default::default(),
        })
        .collect();
    edge.upsert(&c, Some("bm25"), points).await.unwrap();
    for p in edge
        .retrieve(&c, &ids, Fields::Only(&[]), true)
        .await
        .unwrap()
    {
        let got = p.sparse.get("bm25").cloned().unwrap_or_default();
        assert!(same(&got, &by_id[&p.id]), "{p:?}");
    }
    sink.drop_collection(&c).await.unwrap();
}

/// Each point's text (the movie's extract) and the point's stored sparse vector.
async fn sparse_of<S: Sink>(sink: &S, c: &str) -> Vec<(String, Option<SparseVector>)> {
    common::points_with_vectors(sink, c)
        .await
        .into_iter()
        .map(|p| {
            let id = p.payload[keys::ID].as_i64().unwrap() as usize;
            (id.to_string(), p.sparse.get("bm25").cloned())
        })
        .collect()
}

/// The sparse vector switched on over a dense collection: added without embedding, then kept
/// current on its own (a text change rewrites both vectors, a sparse setting only the sparse
/// one); switched off again, nothing is embedded or deleted. Verify and `--deep` agree, and a
/// hybrid query finds a document by a rare word of its title.
async fn switching_sparse_on_adds_it_without_embedding<S: Sink>(sink: Arc<S>) {
    let m = Mongo::start();
    let c = unique("sparse_on");
    let docs: Vec<_> = movie_docs(8, |i| Bson::Int32(i as i32))
        .into_iter()
        .map(|d| {
            doc! {"_id": d.get("_id").unwrap().clone(), "title": d.get_str("title").unwrap(),
            "text": d.get_str("extract").unwrap()}
        })
        .collect();
    m.insert("sp", &c, docs.clone()).await;
    let of = || common::sync_of(&m, "sp", &[c.as_str()]).payload(&["title"]);
    let dense = of().jobs().await;
    let with = |t: Option<&'static str>| {
        let of = of();
        async move { sparse(of.jobs().await, true, t) }
    };

    let r = common::sync_jobs(&sink, dense.clone(), options())
        .await
        .unwrap();
    assert_eq!(r.counts.embedded, 8);
    assert!(
        sparse_of(sink.as_ref(), &c)
            .await
            .iter()
            .all(|(_, s)| s.is_none())
    );

    // A dry run says what switching it on would do, and writes nothing.
    let mut dry = options();
    dry.dry_run = true;
    let r = common::sync_jobs(&sink, with(None).await, dry)
        .await
        .unwrap();
    assert_eq!(
        (r.counts.embedded, r.counts.payload_updated),
        (0, 8),
        "{r:?}"
    );
    assert!(
        sparse_of(sink.as_ref(), &c)
            .await
            .iter()
            .all(|(_, s)| s.is_none())
    );
    assert!(sink.sparse_vectors(&c).await.unwrap().unwrap().is_empty());

    // On: every point gets BM25 of its text; nothing is embedded again.
    let r = common::sync_jobs(&sink, with(None).await, options())
        .await
        .unwrap();
    assert_eq!(
        (r.counts.embedded, r.counts.payload_updated),
        (0, 8),
        "{r:?}"
    );
    let model = bm25();
    let check = |got: Vec<(String, Option<SparseVector>)>, text: &dyn Fn(usize) -> String| {
        assert_eq!(got.len(), 8);
        for (id, s) in got {
            let want = model.document(&text(id.parse().unwrap()));
            assert!(
                same(s.as_ref().expect("a sparse vector"), &want),
                "_id {id}: {s:?}"
            );
        }
    };
    let extract = |i: usize| docs[i].get_str("text").unwrap().to_owned();
    check(sparse_of(sink.as_ref(), &c).await, &extract);
    let r = common::sync_jobs(&sink, with(None).await, options())
        .await
        .unwrap();
    assert_eq!(
        (r.counts.embedded, r.counts.skipped_unchanged),
        (0, 8),
        "{r:?}"
    );
    common::verify(&sink, with(None).await).await;
    let mut deep = options();
    deep.deep = true;
    let v = mongo2qdrant::verify::verify(sink.clone(), common::embedder(), with(None).await, &deep)
        .await
        .unwrap();
    assert!(v.in_sync && v.namespaces[0].deep_checked == 8, "{v:#?}");

    // A hybrid query: the exact title of one movie brings it first.
    let title = docs[5].get_str("title").unwrap();
    let q = Query {
        dense: Some((
            None,
            common::embedder()
                .embed_query(&[title])
                .unwrap()
                .0
                .remove(0),
        )),
        sparse: Some(("bm25".into(), model.query(title))),
        limit: 3,
        prefetch: 8,
        filter: None,
        params: Default::default(),
    };
    let hits = sink.query(&c, q).await.unwrap();
    assert_eq!(hits[0].payload[keys::ID], 5, "{hits:?}");
    let sparse_only = Query {
        dense: None,
        sparse: Some(("bm25".into(), model.query(title))),
        limit: 1,
        prefetch: 1,
        filter: None,
        params: Default::default(),
    };
    assert_eq!(
        sink.query(&c, sparse_only).await.unwrap()[0].payload[keys::ID],
        5
    );

    // A text change rewrites both vectors of that document only.
    m.client()
        .await
        .database("sp")
        .collection::<mongodb::bson::Document>(&c)
        .update_one(
            doc! {"_id": 2},
            doc! {"$set": {"text": "zeppelin zeppelin over the harbour"}},
        )
        .await
        .unwrap();
    let r = common::sync_jobs(&sink, with(None).await, options())
        .await
        .unwrap();
    assert_eq!(
        (r.counts.embedded, r.counts.skipped_unchanged),
        (1, 7),
        "{r:?}"
    );
    let text = |i: usize| {
        if i == 2 {
            "zeppelin zeppelin over the harbour".into()
        } else {
            extract(i)
        }
    };
    check(sparse_of(sink.as_ref(), &c).await, &text);

    // Its own text (the title): only the sparse vectors are computed again.
    let r = common::sync_jobs(&sink, with(Some("{title}")).await, options())
        .await
        .unwrap();
    assert_eq!(
        (r.counts.embedded, r.counts.payload_updated),
        (0, 8),
        "{r:?}"
    );
    let title_of = |i: usize| docs[i].get_str("title").unwrap().to_owned();
    check(sparse_of(sink.as_ref(), &c).await, &title_of);
    common::verify(&sink, with(Some("{title}")).await).await;
    // The old setting is stale for verify.
    let v = mongo2qdrant::verify::verify(
        sink.clone(),
        common::embedder(),
        with(None).await,
        &options(),
    )
    .await
    .unwrap();
    assert_eq!(v.namespaces[0].stale, 8, "{v:#?}");

    // A lost sparse vector is a defect for --deep (its hash still says current) and repaired.
    let first = mongo2qdrant::ids::point_id("sp", &c, &Bson::Int32(3), 0);
    sink.remove_vector(&c, "bm25", &[first], &[]).await.unwrap();
    let mut repair = options();
    repair.deep = true;
    let r = common::sync_jobs(&sink, with(Some("{title}")).await, repair)
        .await
        .unwrap();
    assert_eq!(r.counts.repaired, 1, "{r:?}");
    check(sparse_of(sink.as_ref(), &c).await, &title_of);

    // Off again: the dense vectors are current, nothing is embedded or deleted.
    let r = common::sync_jobs(&sink, dense, options()).await.unwrap();
    assert_eq!(
        (r.counts.embedded, r.counts.skipped_unchanged),
        (0, 8),
        "{r:?}"
    );
    assert!(
        sparse_of(sink.as_ref(), &c)
            .await
            .iter()
            .all(|(_, s)| s.is_some())
    );
}

/// A sparse-only job: a collection with the sparse vector alone, kept current and pruned like
/// any vector, with no model asked for anything.
async fn sparse_only_jobs_need_no_model<S: Sink>(sink: Arc<S>) {
    let m = Mongo::start();
    let c = unique("sparse_only");
    m.insert("sp", &c, movie_docs(6, |i| Bson::Int32(i as i32)))
        .await;
    let jobs = || async {
        sparse(
            common::sync_of(&m, "sp", &[c.as_str()])
                .template("{extract}")
                .jobs()
                .await,
            false,
            None,
        )
    };
    let worker = mongo2qdrant::embed::worker::EmbedWorker::spawn(
        Arc::new(mongo2qdrant::sparse::NoModel::default()),
        2,
    );
    let stats = Arc::new(mongo2qdrant::report::Stats::default());
    let r = mongo2qdrant::pipeline::sync(
        sink.clone(),
        worker.clone(),
        jobs().await,
        options(),
        stats.clone(),
    )
    .await
    .unwrap();
    assert_eq!(r.counts.embedded, 6, "{r:?}");
    let ps = common::points_with_vectors(sink.as_ref(), &c).await;
    assert_eq!(ps.len(), 6);
    assert!(
        ps.iter()
            .all(|p| p.vectors == ["bm25"] && p.values.is_empty()),
        "{ps:?}"
    );
    let r = mongo2qdrant::pipeline::sync(
        sink.clone(),
        worker.clone(),
        jobs().await,
        options(),
        stats.clone(),
    )
    .await
    .unwrap();
    assert_eq!(r.counts.skipped_unchanged, 6, "{r:?}");
    let mut deep = options();
    deep.deep = true;
    let v = mongo2qdrant::verify::verify(
        sink.clone(),
        Arc::new(mongo2qdrant::sparse::NoModel::default()),
        jobs().await,
        &deep,
    )
    .await
    .unwrap();
    assert!(v.in_sync && v.namespaces[0].deep_checked == 6, "{v:#?}");
    // A deleted document's point goes with --prune.
    m.client()
        .await
        .database("sp")
        .collection::<mongodb::bson::Document>(&c)
        .delete_one(doc! {"_id": 4})
        .await
        .unwrap();
    let mut prune = options();
    prune.prune = true;
    let r = mongo2qdrant::pipeline::sync(sink.clone(), worker, jobs().await, prune, stats)
        .await
        .unwrap();
    assert_eq!(r.counts.deleted, 1, "{r:?}");
    assert_eq!(sink.count(&c).await.unwrap(), 5);
}

/// A named dense vector with the sparse vector beside it, sharing points with another job's
/// named vector: a document that loses the text of the first job loses that job's dense and
/// sparse vector, and keeps its point with the other job's vector.
async fn named_vectors_with_sparse_share_points<S: Sink>(sink: Arc<S>) {
    let m = Mongo::start();
    let c = unique("sparse_named");
    let docs: Vec<_> = movie_docs(5, |i| Bson::Int32(i as i32))
        .into_iter()
        .map(|d| {
            doc! {"_id": d.get("_id").unwrap().clone(), "title": d.get_str("title").unwrap(),
            "plot": d.get_str("extract").unwrap()}
        })
        .collect();
    m.insert("sp", &c, docs).await;
    let job = |template: &'static str, vector: &'static str, with_sparse: bool| {
        let of = common::sync_of(&m, "sp", &[c.as_str()])
            .template(template)
            .vector(Some(vector));
        async move {
            let jobs = of.jobs().await;
            if with_sparse {
                sparse(jobs, true, None)
            } else {
                jobs
            }
        }
    };
    let jobs = || async {
        let mut j = job("{title}", "title", false).await;
        j.extend(job("{plot}", "plot", true).await);
        j
    };
    let r = common::sync_jobs(&sink, jobs().await, options())
        .await
        .unwrap();
    assert_eq!(r.counts.embedded, 10, "{r:?}");
    let names = |p: &mongo2qdrant::sink::StoredPoint| {
        let mut v = p.vectors.clone();
        v.sort();
        v
    };
    let ps = common::points_with_vectors(sink.as_ref(), &c).await;
    assert_eq!(ps.len(), 5);
    assert!(
        ps.iter().all(|p| names(p) == ["bm25", "plot", "title"]),
        "{ps:?}"
    );
    common::verify(&sink, jobs().await).await;

    // _id 1 loses its plot: the plot job takes its dense and its sparse vector off the point.
    m.client()
        .await
        .database("sp")
        .collection::<mongodb::bson::Document>(&c)
        .update_one(doc! {"_id": 1}, doc! {"$unset": {"plot": ""}})
        .await
        .unwrap();
    let r = common::sync_jobs(&sink, jobs().await, options())
        .await
        .unwrap();
    assert_eq!(r.counts.deleted, 1, "{r:?}");
    let ps = common::points_with_vectors(sink.as_ref(), &c).await;
    assert_eq!(ps.len(), 5, "the point stays for the title vector");
    let one = ps.iter().find(|p| p.payload[keys::ID] == 1).unwrap();
    assert_eq!(names(one), ["title"], "{one:?}");
    assert!(!one.payload.contains_key("content_hash_bm25"), "{one:?}");
    common::verify(&sink, jobs().await).await;
}

/// A named vector whose sparse vector was switched off: a gone document's point does not stay
/// behind for the sparse vector nobody keeps any more.
async fn a_sparse_vector_switched_off_keeps_no_gone_document<S: Sink>(sink: Arc<S>) {
    let m = Mongo::start();
    let c = unique("sparse_off");
    m.insert("sp", &c, movie_docs(5, |i| Bson::Int32(i as i32)))
        .await;
    let jobs = |on: bool| {
        let of = common::sync_of(&m, "sp", &[c.as_str()])
            .template("{extract}")
            .vector(Some("plot"));
        async move {
            sparse(of.jobs().await, true, None)
                .into_iter()
                .map(|mut j| {
                    if !on {
                        j.sparse = None;
                    }
                    j
                })
                .collect::<Vec<_>>()
        }
    };
    common::sync_jobs(&sink, jobs(true).await, options())
        .await
        .unwrap();
    let r = common::sync_jobs(&sink, jobs(false).await, options())
        .await
        .unwrap();
    assert_eq!(r.counts.skipped_unchanged, 5, "{r:?}");
    m.client()
        .await
        .database("sp")
        .collection::<mongodb::bson::Document>(&c)
        .delete_one(doc! {"_id": 2})
        .await
        .unwrap();
    let mut prune = options();
    prune.prune = true;
    let r = common::sync_jobs(&sink, jobs(false).await, prune)
        .await
        .unwrap();
    assert_eq!(r.counts.deleted, 1, "{r:?}");
    assert_eq!(
        sink.count(&c).await.unwrap(),
        4,
        "no point left for the gone document"
    );
}

/// Switching the sparse vector on over chunked documents, one of whose points was removed
/// behind the tool's back: that document is written whole again (not a failed sparse update on
/// every run), the others get their sparse vectors only.
async fn a_missing_chunk_point_is_rewritten_when_sparse_is_switched_on<S: Sink>(sink: Arc<S>) {
    let m = Mongo::start();
    let c = unique("sparse_chunks");
    m.insert("sp", &c, movie_docs(4, |i| Bson::Int32(i as i32)))
        .await;
    let mut o = options();
    o.chunking = Some(mongo2qdrant::pipeline::Chunking {
        size: 32,
        overlap: 4,
    });
    let of = || common::sync_of(&m, "sp", &[c.as_str()]).template("{extract}");
    common::sync_jobs(&sink, of().jobs().await, o.clone())
        .await
        .unwrap();
    let n = sink.count(&c).await.unwrap();
    assert!(n > 8, "texts long enough to chunk: {n} points");
    let second = mongo2qdrant::ids::point_id("sp", &c, &Bson::Int32(1), 1);
    sink.delete(&c, &[second]).await.unwrap();
    let r = common::sync_jobs(&sink, sparse(of().jobs().await, true, None), o.clone())
        .await
        .unwrap();
    assert_eq!(
        (
            r.counts.embedded,
            r.counts.repaired,
            r.counts.payload_updated
        ),
        (1, 1, 3),
        "{r:?}"
    );
    assert_eq!(sink.count(&c).await.unwrap(), n);
    let ps = common::points_with_vectors(sink.as_ref(), &c).await;
    assert!(ps.iter().all(|p| p.sparse.contains_key("bm25")), "{ps:?}");
}

both_targets!(
    switching_sparse_on_adds_it_without_embedding,
    sparse_only_jobs_need_no_model,
    named_vectors_with_sparse_share_points,
    a_sparse_vector_switched_off_keeps_no_gone_document,
    a_missing_chunk_point_is_rewritten_when_sparse_is_switched_on
);

/// The command line: a sparse-only sync from a file with no model anywhere (`M2Q_MODEL`
/// points at nothing), then `search` by BM25 without a model, and hybrid search with one.
#[test]
fn sparse_only_sync_and_search_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store").display().to_string();
    let file = common::repo()
        .join("tests/data/demo.jsonl")
        .display()
        .to_string();
    let no_model = |args: &[&str]| {
        common::bin()
            .env("M2Q_MODEL", dir.path().join("no-model"))
            .args(args)
            .output()
            .unwrap()
    };
    let out = no_model(&[
        "sync",
        "--file",
        &file,
        "--text",
        "{title} {body}",
        "--qdrant-path",
        &store,
        "--collection-name",
        "demo",
        "--sparse",
        "bm25",
        "--no-dense",
    ]);
    common::assert_ok(&out);
    let out = no_model(&[
        "search",
        "dripping washer",
        "--collection-name",
        "demo",
        "--qdrant-path",
        &store,
        "--json",
        "-k",
        "1",
    ]);
    common::assert_ok(&out);
    let hit: serde_json::Value =
        serde_json::from_slice(out.stdout.split(|b| *b == b'\n').next().unwrap()).unwrap();
    assert_eq!(
        (hit["payload"]["_id"].as_i64(), hit["mode"].as_str()),
        (Some(2), Some("sparse")),
        "{hit}"
    );
    // Hybrid needs a dense vector, which this collection lacks: refused naming the fix,
    // before any model is looked for.
    let out = no_model(&[
        "search",
        "tap",
        "--collection-name",
        "demo",
        "--qdrant-path",
        &store,
        "--mode",
        "hybrid",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("no dense vector: search its sparse vector with --mode sparse"),
        "{err}"
    );
    // A setting of the sparse vector without --sparse is refused before anything runs.
    let out = no_model(&[
        "sync",
        "--file",
        &file,
        "--qdrant-path",
        &store,
        "--no-dense",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--sparse bm25"));

    // --no-dense has no model to split texts by tokens with.
    let out = no_model(&[
        "sync",
        "--file",
        &file,
        "--qdrant-path",
        &store,
        "--sparse",
        "bm25",
        "--no-dense",
        "--chunk-size",
        "64",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("drop --chunk-size"));
    // A sparse-only entry beside an entry that writes whole points of the same collection:
    // the whole points would drop its vector; refused naming the fix.
    let cfg = dir.path().join("mixed.toml");
    let entry = |extra: &str| {
        format!(
            "[[sync]]\nfile = {file:?}\nnamespace = \"d.demo\"\ntarget = \"mixed\"\ntext = \"{{title}}\"\n{extra}\n"
        )
    };
    let toml = entry("") + &entry("sparse = \"bm25\"\ndense = false\nsparse_text = \"{body}\"");
    std::fs::write(&cfg, toml).unwrap();
    let out = no_model(&[
        "sync",
        "--config",
        &cfg.display().to_string(),
        "--qdrant-path",
        &store,
    ]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("instead of a sparse-only entry"));

    // With the model: the dense vector joins the sparse one, and search fuses them.
    let out = common::bin()
        .args([
            "sync",
            "--file",
            &file,
            "--text",
            "{title} {body}",
            "--qdrant-path",
            &store,
            "--collection-name",
            "both",
            "--sparse",
            "bm25",
        ])
        .output()
        .unwrap();
    common::assert_ok(&out);
    let out = common::bin()
        .args([
            "search",
            "how do I fix a leaking faucet washer",
            "--collection-name",
            "both",
            "--qdrant-path",
            &store,
            "--json",
            "-k",
            "3",
        ])
        .output()
        .unwrap();
    common::assert_ok(&out);
    let hits: Vec<serde_json::Value> = out
        .stdout
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    assert_eq!(hits[0]["mode"], "hybrid", "{hits:?}");
    assert_eq!(hits[0]["payload"]["_id"], 2, "{hits:?}");
    assert!(
        hits.iter()
            .all(|h| h["dense_rank"].is_u64() || h["sparse_rank"].is_u64()),
        "{hits:?}"
    );
    // A sparse-only run into a collection whose unnamed dense vector it would leave stale.
    let out = no_model(&[
        "sync",
        "--file",
        &file,
        "--text",
        "{title} {body}",
        "--qdrant-path",
        &store,
        "--collection-name",
        "both",
        "--sparse",
        "bm25",
        "--no-dense",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("--recreate"), "{err}");
    // status names each collection's vectors, dense and sparse.
    let out = common::bin()
        .args(["status", "--qdrant-path", &store])
        .output()
        .unwrap();
    common::assert_ok(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("collection demo: dense none; sparse bm25 (idf)"),
        "{text}"
    );
    assert!(
        text.contains("collection both: dense (unnamed): 384 Cosine; sparse bm25 (idf)"),
        "{text}"
    );
}
