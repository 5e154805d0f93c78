//! Named vectors on real parts: several fields and several models in one collection, one point
//! per document (chunk) carrying one vector per job, each vector current, pruned and verified on
//! its own, and a config file with one entry per vector.

use crate::common;

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::common::{Mongo, movie_docs, options, unique};
use mongo2qdrant::embed::Embedder;
use mongo2qdrant::embed::worker::EmbedWorker;
use mongo2qdrant::ids::point_id;
use mongo2qdrant::pipeline::{self, Chunking, Job, SyncOptions};
use mongo2qdrant::point::keys;
use mongo2qdrant::report::{RunReport, Stats};
use mongo2qdrant::sink::{Hit, Sink, StoredPoint};
use mongodb::bson::{Bson, Document, doc};
use uuid::Uuid;

/// One job: `coll` rendered through `template` into the named vector `vector` of `target`.
async fn job(m: &Mongo, coll: &str, target: &str, template: &str, vector: &str) -> Job {
    common::sync_of(m, "nv", &[coll])
        .target(Some(target))
        .template(template)
        .payload(&[vector])
        .vector(Some(vector))
        .jobs()
        .await
        .remove(0)
}

async fn run<S: Sink>(
    sink: &Arc<S>,
    worker: EmbedWorker,
    jobs: Vec<Job>,
    opts: SyncOptions,
) -> RunReport {
    pipeline::sync(sink.clone(), worker, jobs, opts, Arc::new(Stats::default()))
        .await
        .unwrap()
}

async fn verify_in_sync<S: Sink>(sink: &Arc<S>, jobs: Vec<Job>, opts: &SyncOptions) {
    let report = mongo2qdrant::verify::verify(sink.clone(), common::embedder(), jobs, opts)
        .await
        .unwrap();
    assert!(report.in_sync, "{report:#?}");
}

fn names(p: &StoredPoint) -> BTreeSet<&str> {
    p.vectors.iter().map(String::as_str).collect()
}

fn embed(text: &str) -> Vec<f32> {
    common::embedder().embed(&[text]).unwrap().0.remove(0)
}

/// The best hit for `text` (embedded by the int8 model) in the named vector `vector`.
async fn top_hit<S: Sink>(sink: &S, c: &str, vector: &str, text: &str) -> Hit {
    let mut hits = sink.search(c, Some(vector), embed(text), 1).await.unwrap();
    hits.remove(0)
}

/// Documents with the movie's `title` and `extract` kept as the fields `title` and `plot`.
fn docs(n: usize) -> Vec<Document> {
    movie_docs(n, |i| Bson::Int32(i as i32))
        .into_iter()
        .map(|d| {
            doc! {
                "_id": d.get("_id").unwrap().clone(),
                "title": d.get_str("title").unwrap(),
                "plot": d.get_str("extract").unwrap(),
            }
        })
        .collect()
}

/// Two fields of one collection as two named vectors of one point per document: each vector
/// is written, skipped, re-embedded, pruned and verified on its own, without touching the other.
async fn two_fields_share_points<S: Sink>(sink: Arc<S>) {
    let m = Mongo::start();
    let c = unique("nv_fields");
    m.insert("nv", &c, docs(6)).await;
    let title = || job(&m, &c, &c, "{title}", "title");
    let plot = || job(&m, &c, &c, "{plot}", "plot");

    // The title vector first: one point per document.
    let r = run(&sink, common::worker(), vec![title().await], options()).await;
    assert_eq!(r.counts.embedded, 6);
    let ps = common::points_with_vectors(sink.as_ref(), &c).await;
    assert_eq!(ps.len(), 6);
    assert!(ps.iter().all(|p| names(p) == BTreeSet::from(["title"])));
    let title_hashes: Vec<_> = ps
        .iter()
        .map(|p| p.payload["content_hash_title"].clone())
        .collect();

    // The plot vector is added to the collection and to the same points.
    let r = run(&sink, common::worker(), vec![plot().await], options()).await;
    assert_eq!(r.counts.embedded, 6);
    assert_eq!(r.namespaces[0].vector.as_deref(), Some("plot"));
    let ps = common::points_with_vectors(sink.as_ref(), &c).await;
    assert_eq!(ps.len(), 6, "no new points: one point per document");
    for (p, h) in ps.iter().zip(&title_hashes) {
        assert_eq!(names(p), BTreeSet::from(["plot", "title"]), "{p:?}");
        assert_eq!(&p.payload["content_hash_title"], h, "title untouched");
        assert!(p.payload["content_hash_plot"].is_string());
        assert!(p.payload["title"].is_string() && p.payload["plot"].is_string());
    }
    let movies = docs(6);
    let hit = top_hit(
        sink.as_ref(),
        &c,
        "plot",
        movies[3].get_str("plot").unwrap(),
    )
    .await;
    assert_eq!(hit.payload[keys::ID], 3);
    let hit = top_hit(
        sink.as_ref(),
        &c,
        "title",
        movies[4].get_str("title").unwrap(),
    )
    .await;
    assert_eq!(hit.payload[keys::ID], 4);
    assert!(hit.score > 0.99, "{}", hit.score);

    // Both jobs in one run: nothing to do.
    let r = run(
        &sink,
        common::worker(),
        vec![title().await, plot().await],
        options(),
    )
    .await;
    assert_eq!((r.counts.embedded, r.counts.upserted), (0, 0), "{r:?}");
    assert_eq!(r.counts.skipped_unchanged, 12);

    // A changed plot re-embeds that vector only; the title vector keeps its value.
    let coll = m.client().await.database("nv").collection::<Document>(&c);
    coll.update_one(
        doc! {"_id": 2},
        doc! {"$set": {"plot": "A lighthouse keeper befriends a seal during a winter storm."}},
    )
    .await
    .unwrap();
    let r = run(
        &sink,
        common::worker(),
        vec![title().await, plot().await],
        options(),
    )
    .await;
    assert_eq!(r.counts.embedded, 1, "{r:?}");
    let p2 = point_id("nv", &c, &Bson::Int32(2), 0);
    let hit = top_hit(sink.as_ref(), &c, "plot", "a lighthouse keeper and a seal").await;
    assert_eq!(hit.id, p2);
    let hit = top_hit(
        sink.as_ref(),
        &c,
        "title",
        movies[2].get_str("title").unwrap(),
    )
    .await;
    assert_eq!(hit.id, p2);
    assert!(hit.score > 0.99, "title vector kept: {}", hit.score);

    // A deleted document: pruning one vector leaves the point to the other vector ...
    coll.delete_one(doc! {"_id": 5}).await.unwrap();
    let p5 = point_id("nv", &c, &Bson::Int32(5), 0);
    let mut o = options();
    o.prune = true;
    let r = run(&sink, common::worker(), vec![plot().await], o.clone()).await;
    assert_eq!(r.namespaces[0].pruned, 1);
    let left = sink
        .retrieve(&c, &[p5], mongo2qdrant::sink::Fields::All, true)
        .await
        .unwrap();
    assert_eq!(names(&left[0]), BTreeSet::from(["title"]));
    assert!(!left[0].payload.contains_key("content_hash_plot"));
    assert!(left[0].payload.contains_key("content_hash_title"));
    verify_in_sync(&sink, vec![plot().await], &o).await;
    // ... and pruning the last vector removes the point.
    let r = run(&sink, common::worker(), vec![title().await], o.clone()).await;
    assert_eq!(r.namespaces[0].pruned, 1);
    assert!(
        sink.retrieve(&c, &[p5], mongo2qdrant::sink::Fields::All, false)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(sink.count(&c).await.unwrap(), 5);
    verify_in_sync(&sink, vec![title().await, plot().await], &o).await;
}

/// A vector written in chunks beside one that is not: the chunk points carry only their vector,
/// a shrinking document loses exactly its surplus chunks, and the other vector's prune and verify
/// leave them alone.
async fn chunked_vector_beside_a_whole_one<S: Sink>(sink: Arc<S>) {
    let m = Mongo::start();
    let c = unique("nv_chunks");
    // Document 1's plot: four movie extracts, several windows of 48 tokens.
    let mut d = docs(4);
    let long: Vec<&str> = d.iter().map(|d| d.get_str("plot").unwrap()).collect();
    let long = long.join(" ");
    d[1].insert("plot", long);
    m.insert("nv", &c, d).await;
    let title = || job(&m, &c, &c, "{title}", "title");
    let plot = || job(&m, &c, &c, "{plot}", "plot");
    let mut chunked = options();
    chunked.chunking = Some(Chunking {
        size: 48,
        overlap: 8,
    });
    chunked.prune = true;
    let mut whole = options();
    whole.prune = true;

    run(&sink, common::worker(), vec![title().await], whole.clone()).await;
    run(&sink, common::worker(), vec![plot().await], chunked.clone()).await;
    let ps = common::points_with_vectors(sink.as_ref(), &c).await;
    let chunks_of_1 = ps
        .iter()
        .find(|p| p.id == point_id("nv", &c, &Bson::Int32(1), 0))
        .unwrap()
        .payload["chunk_count_plot"]
        .as_u64()
        .unwrap();
    assert!(chunks_of_1 >= 3, "{chunks_of_1} chunks");
    let extra: Vec<_> = ps.iter().filter(|p| p.payload[keys::CHUNK] != 0).collect();
    assert!(!extra.is_empty());
    assert!(extra.iter().all(|p| names(p) == BTreeSet::from(["plot"])));
    assert!(
        extra
            .iter()
            .all(|p| !p.payload.contains_key("content_hash_title"))
    );
    // The whole vector's prune and verify do not count the other vector's chunk points.
    let r = run(&sink, common::worker(), vec![title().await], whole.clone()).await;
    assert_eq!((r.counts.embedded, r.namespaces[0].pruned), (0, 0), "{r:?}");
    verify_in_sync(&sink, vec![title().await], &whole).await;
    verify_in_sync(&sink, vec![plot().await], &chunked).await;

    // Document 1 shrinks to one chunk: its surplus chunk points go, its chunk 0 keeps both.
    let coll = m.client().await.database("nv").collection::<Document>(&c);
    coll.update_one(doc! {"_id": 1}, doc! {"$set": {"plot": "Short now."}})
        .await
        .unwrap();
    let before = sink.count(&c).await.unwrap();
    let r = run(&sink, common::worker(), vec![plot().await], chunked.clone()).await;
    assert_eq!(r.counts.embedded, 1);
    assert_eq!(r.counts.deleted, chunks_of_1 - 1);
    assert_eq!(sink.count(&c).await.unwrap(), before - (chunks_of_1 - 1));
    let surplus: Vec<Uuid> = (1..chunks_of_1 as u32)
        .map(|i| point_id("nv", &c, &Bson::Int32(1), i))
        .collect();
    assert!(
        sink.retrieve(&c, &surplus, mongo2qdrant::sink::Fields::All, false)
            .await
            .unwrap()
            .is_empty()
    );
    let p1 = sink
        .retrieve(
            &c,
            &[point_id("nv", &c, &Bson::Int32(1), 0)],
            mongo2qdrant::sink::Fields::All,
            true,
        )
        .await
        .unwrap();
    assert_eq!(names(&p1[0]), BTreeSet::from(["plot", "title"]));
    assert_eq!(p1[0].payload["chunk_count_plot"], 1);
    verify_in_sync(&sink, vec![title().await], &whole).await;
    verify_in_sync(&sink, vec![plot().await], &chunked).await;
}

/// Two models (the int8 model and its fp32 twin) in one collection, one named vector each,
/// written by separate runs; each is current on its own.
async fn two_models_one_collection<S: Sink>(sink: Arc<S>) {
    let m = Mongo::start();
    let c = unique("nv_models");
    m.insert("nv", &c, docs(5)).await;
    let int8 = common::embedder();
    let fp32 = common::embedder_fp32();
    assert_ne!(int8.model_id(), fp32.model_id());
    let fp32_worker = || {
        let e: Arc<dyn Embedder> = common::embedder_fp32();
        EmbedWorker::spawn(e, 2)
    };
    let int8_job = || job(&m, &c, &c, "{title}: {plot}", "int8");
    let fp32_job = || job(&m, &c, &c, "{title}: {plot}", "fp32");

    let r = run(&sink, common::worker(), vec![int8_job().await], options()).await;
    assert_eq!(r.counts.embedded, 5);
    let r = run(&sink, fp32_worker(), vec![fp32_job().await], options()).await;
    assert_eq!(r.counts.embedded, 5, "another model, another vector: {r:?}");
    let ps = common::points_with_vectors(sink.as_ref(), &c).await;
    assert_eq!(ps.len(), 5);
    for p in &ps {
        assert_eq!(names(p), BTreeSet::from(["fp32", "int8"]));
        assert_ne!(
            p.payload["content_hash_int8"],
            p.payload["content_hash_fp32"]
        );
    }
    let q = docs(5)[1].get_str("plot").unwrap().to_owned();
    assert_eq!(
        top_hit(sink.as_ref(), &c, "int8", &q).await.payload[keys::ID],
        1
    );
    let (v, _) = fp32.embed(&[q.as_str()]).unwrap();
    let via_fp32 = sink
        .search(&c, Some("fp32"), v[0].clone(), 1)
        .await
        .unwrap();
    assert_eq!(via_fp32[0].payload[keys::ID], 1);
    // Each model's rerun finds its own vector current.
    let r = run(&sink, common::worker(), vec![int8_job().await], options()).await;
    assert_eq!(r.counts.embedded, 0);
    let r = run(&sink, fp32_worker(), vec![fp32_job().await], options()).await;
    assert_eq!(r.counts.embedded, 0);
}

/// A dry run does not add a vector to a collection; an unnamed collection refuses a named
/// vector (and the other way round) with the fix in the message.
async fn collection_shapes<S: Sink>(sink: Arc<S>) {
    let m = Mongo::start();
    let c = unique("nv_shape");
    m.insert("nv", &c, docs(3)).await;
    run(
        &sink,
        common::worker(),
        vec![job(&m, &c, &c, "{title}", "title").await],
        options(),
    )
    .await;
    let mut dry = options();
    dry.dry_run = true;
    let r = run(
        &sink,
        common::worker(),
        vec![job(&m, &c, &c, "{plot}", "plot").await],
        dry,
    )
    .await;
    assert_eq!(r.counts.embedded, 3);
    let err = sink
        .search(&c, Some("plot"), embed("anything"), 1)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("plot"), "{err}");

    // The plain flag path: an unnamed collection refuses a named vector.
    let u = unique("nv_unnamed");
    let source = common::source_args(&m, "nv", &[c.as_str()]);
    let plain = mongo2qdrant::config::jobs(&source, Some(&u), "{title}", &[])
        .await
        .unwrap();
    run(&sink, common::worker(), plain.clone(), options()).await;
    let mut named = plain;
    named[0].vector_name = Some("title".into());
    let err = common::sync_jobs(&sink, named, options())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("drop --vector-name"), "{err}");
    assert_eq!(sink.count(&u).await.unwrap(), 3);
}

both_targets!(
    two_fields_share_points,
    chunked_vector_beside_a_whole_one,
    two_models_one_collection,
    collection_shapes,
);

/// A config file with one entry per vector of the same source collection, and a `--database`
/// flag that beats the entries' own `database`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_file_entries_per_vector() {
    let m = Mongo::start();
    m.insert("nv", "films", docs(4)).await;
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let cfg = dir.path().join("m2q.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"
database = "nowhere"
qdrant_path = "{store}"

[[sync]]
collection = "films"
database = "elsewhere"
target = "search"
text = "{{title}}"
vector_name = "title"

[[sync]]
collection = "films"
target = "search"
text = "{{plot}}"
payload = ["title"]
vector_name = "plot"
"#,
            store = store.display()
        ),
    )
    .unwrap();
    let cli = |args: &[&str]| common::bin().args(args).output().unwrap();
    let cfg_s = cfg.display().to_string();
    let uri = m.uri();
    let sync = [
        "sync",
        "--quiet",
        "--config",
        &cfg_s,
        "--mongo-uri",
        &uri,
        "--database",
        "nv",
    ];
    let out = cli(&sync);
    common::assert_ok(&out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("nv.films -> search (vector title)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("nv.films -> search (vector plot)"),
        "{stdout}"
    );

    let out = cli(&[
        "verify",
        "--config",
        &cfg_s,
        "--mongo-uri",
        &uri,
        "--database",
        "nv",
    ]);
    common::assert_ok(&out);
    let out = cli(&sync);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("embedded 0, unchanged 8"), "{stdout}");
    {
        let sink = mongo2qdrant::sink::EdgeSink::open(&store).unwrap();
        let ps = common::points_with_vectors(&sink, "search").await;
        assert_eq!(ps.len(), 4);
        assert!(
            ps.iter()
                .all(|p| names(p) == BTreeSet::from(["plot", "title"]))
        );
        sink.flush().await.unwrap();
    }
    let out = cli(&["status", "--qdrant-path", &store.display().to_string()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("nv.films -> search (vector plot): complete"),
        "{stdout}"
    );
    assert!(
        stdout.contains("nv.films -> search (vector title): complete"),
        "{stdout}"
    );

    // search: by one of the vectors; without a name it says what is missing.
    let store_s = store.display().to_string();
    let title = docs(4)[2].get_str("title").unwrap().to_owned();
    let out = cli(&[
        "search",
        &title,
        "--collection-name",
        "search",
        "--qdrant-path",
        &store_s,
        "--vector-name",
        "title",
        "-k",
        "1",
        "--json",
    ]);
    common::assert_ok(&out);
    let hit: serde_json::Value =
        serde_json::from_slice(out.stdout.split(|b| *b == b'\n').next().unwrap()).unwrap();
    assert_eq!(hit["payload"]["_id"], 2, "{hit}");
    let out = cli(&[
        "search",
        &title,
        "--collection-name",
        "search",
        "--qdrant-path",
        &store_s,
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--vector-name NAME"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A vector name that cannot be a payload key suffix is refused before anything runs.
    let out = cli(&[
        "sync",
        "--config",
        &cfg_s,
        "--mongo-uri",
        &uri,
        "--database",
        "nv",
        "--vector-name",
        "my vector",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("letters, digits"));
}
