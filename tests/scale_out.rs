//! Scaling out. Shards (`--shard I/N`, or `--shards N` with an Indexed Job's
//! `JOB_COMPLETION_INDEX`): N shards side by side produce exactly the points of one unsharded
//! run (ids, payloads with their hashes, vectors), from a collection and from a file; each
//! reads, checkpoints, verifies and prunes only its own part; a shard killed with SIGKILL
//! resumes and converges. On both targets (the embedded store runs the binary's shards one
//! after the other: it takes one writer at a time). Bulk loads (`--bulk`, a Qdrant server):
//! shards load a new collection with HNSW graph building off; the last to finish switches it
//! back on; the points are those of a plain run.

use crate::common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::sync::Arc;

use crate::common::{Mongo, options, sync_of, unique};
use futures_util::future::join_all;
use mongo2qdrant::point::keys;
use mongo2qdrant::report::RunReport;
use mongo2qdrant::shard::{Shard, shard_of};
use mongo2qdrant::sink::{GrpcSink, Point, Sink};
use mongo2qdrant::state::{Record, StateStore};
use mongodb::bson::oid::ObjectId;
use mongodb::bson::{Bson, doc};
use serde_json::{Map, Value};

const DB: &str = "shards";
const TEMPLATE: &str = r"{title}\n{extract}";

/// `_id`s of every kind a collection holds: numbers, ObjectIds, strings and compound ones
/// (whose field order a Qdrant server does not keep in a payload).
fn id_of(i: usize) -> Bson {
    match i % 5 {
        0 => Bson::Int32(i as i32),
        1 => {
            let mut b = [0u8; 12];
            b[..8].copy_from_slice(&(i as u64).to_be_bytes());
            Bson::ObjectId(ObjectId::from_bytes(b))
        }
        2 => Bson::String(format!("film-{i:03}")),
        3 => Bson::Int64(i as i64 * 1_000_000_007),
        _ => Bson::Document(doc! {"z": i as i32, "a": "x"}),
    }
}

fn shard(index: u32, count: u32) -> Shard {
    Shard { index, count }
}

/// Every point of `collection`: id -> (payload, vector of the unnamed vector).
async fn points<S: Sink>(
    sink: &S,
    collection: &str,
) -> BTreeMap<uuid::Uuid, (Map<String, Value>, Vec<f32>)> {
    common::points_with_vectors(sink, collection)
        .await
        .into_iter()
        .map(|p| {
            let v = p.values.into_values().next().unwrap_or_default();
            (p.id, (p.payload, v))
        })
        .collect()
}

/// The same points: ids and payloads exactly, vectors to the model's precision (a batch of
/// other texts pads differently).
fn assert_same_points(
    a: &BTreeMap<uuid::Uuid, (Map<String, Value>, Vec<f32>)>,
    b: &BTreeMap<uuid::Uuid, (Map<String, Value>, Vec<f32>)>,
) {
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (id, (pa, va)) in a {
        let (pb, vb) = &b[id];
        assert_eq!(pa, pb, "payload of {id}");
        let cos: f32 = va.iter().zip(vb).map(|(x, y)| x * y).sum();
        assert!(cos > 0.9999, "vector of {id}: cosine {cos}");
    }
}

/// The suites' sync of `shards.films` into `target`: the template, `title` copied.
fn films<'a>(m: &'a Mongo, target: &str) -> common::SyncOf<'a> {
    sync_of(m, DB, &["films"])
        .template(TEMPLATE)
        .payload(&["title"])
        .target(Some(target))
}

async fn shard_syncs<S: Sink>(
    m: &Mongo,
    sink: &Arc<S>,
    target: &str,
    count: u32,
    prune: bool,
) -> Vec<mongo2qdrant::report::RunReport> {
    let runs = (0..count).map(|i| {
        let mut o = options();
        o.shard = Some(shard(i, count));
        o.prune = prune;
        let run = films(m, target).opts(o);
        async move { run.run(sink).await.unwrap() }
    });
    join_all(runs).await
}

async fn shards_together_make_the_points_of_one_run<S: Sink>(sink: Arc<S>) {
    let m = Mongo::start();
    let n = 90;
    m.insert(DB, "films", common::movie_docs(n, id_of)).await;
    let (whole, parts, from_file) = (unique("whole"), unique("parts"), unique("file"));
    films(&m, &whole).run(&sink).await.unwrap();

    // Three shards at once into one collection.
    let reports = shard_syncs(&m, &sink, &parts, 3, false).await;
    for (i, r) in reports.iter().enumerate() {
        let mine = (0..n)
            .filter(|j| shard_of(&id_of(*j), 3) == i as u32)
            .count() as u64;
        let ns = &r.namespaces[0];
        assert_eq!(ns.shard.as_deref(), Some(format!("{i}/3").as_str()));
        // A shard reads its own documents only, and embeds them.
        assert_eq!(
            (ns.counts.read, ns.counts.embedded),
            (mine, mine),
            "shard {i}"
        );
        assert!(mine > 15, "an unbalanced split: {mine} of {n}");
        assert!(ns.complete);
    }
    assert_same_points(
        &points(sink.as_ref(), &whole).await,
        &points(sink.as_ref(), &parts).await,
    );

    // Each shard has its own checkpoint; a rerun of one finds all of its part current.
    let store = StateStore::open(sink.as_ref(), false).await.unwrap();
    let mut shards: Vec<String> = store
        .records()
        .await
        .unwrap()
        .into_iter()
        .filter_map(|r| match r {
            Record::Checkpoint(c) if c.target == parts => {
                assert!(c.complete);
                c.shard
            }
            _ => None,
        })
        .collect();
    shards.sort();
    assert_eq!(shards, ["0/3", "1/3", "2/3"]);
    let mut o = options();
    o.shard = Some(shard(1, 3));
    let again = films(&m, &parts).opts(o.clone()).run(&sink).await.unwrap();
    assert_eq!(again.counts.embedded, 0);
    assert_eq!(again.counts.skipped_unchanged, reports[1].counts.read);

    // verify: a shard checks its part and finds it whole; without a shard, everything.
    let jobs = films(&m, &parts).jobs().await;
    let report = mongo2qdrant::verify::verify(sink.clone(), common::embedder(), jobs.clone(), &o)
        .await
        .unwrap();
    assert!(report.in_sync, "{report:#?}");
    let ns = &report.namespaces[0];
    assert_eq!(ns.documents, reports[1].counts.read);
    assert_eq!(ns.points, reports[1].counts.read, "{ns:#?}");
    common::verify(&sink, jobs).await;

    // A file (here a mongoexport of the collection, given the collection's namespace) is
    // sharded by the same function: the same points again.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("films.jsonl");
    export(&m, &file).await;
    let source = mongo2qdrant::cli::SourceArgs {
        files: vec![file],
        namespace: Some(format!("{DB}.films")),
        ..common::source_args(&m, DB, &[])
    };
    let runs = (0..2).map(|i| {
        let mut o = options();
        o.shard = Some(shard(i, 2));
        let (sink, source, from_file) = (sink.clone(), source.clone(), from_file.clone());
        async move {
            let payload = ["title".to_owned()];
            let jobs = mongo2qdrant::config::jobs(&source, Some(&from_file), TEMPLATE, &payload)
                .await
                .unwrap();
            common::sync_jobs(&sink, jobs, o).await.unwrap()
        }
    });
    let file_reports = join_all(runs).await;
    let read: u64 = file_reports.iter().map(|r| r.counts.read).sum();
    assert_eq!(read, n as u64);
    assert_same_points(
        &points(sink.as_ref(), &whole).await,
        &points(sink.as_ref(), &from_file).await,
    );
}

/// mongoexport's JSONL of `shards.films` (canonical Extended JSON, one document a line).
async fn export(m: &Mongo, path: &Path) {
    let films = m.client().await.database(DB).collection("films");
    let docs = crate::common::all_docs(&films).await;
    let lines: Vec<String> = docs
        .into_iter()
        .map(|d| Bson::Document(d).into_canonical_extjson().to_string())
        .collect();
    std::fs::write(path, lines.join("\n")).unwrap();
}

async fn each_shard_prunes_exactly_its_own<S: Sink>(sink: Arc<S>) {
    let m = Mongo::start();
    let n = 60;
    m.insert(DB, "films", common::movie_docs(n, id_of)).await;
    let (parts, whole) = (unique("parts"), unique("whole"));
    shard_syncs(&m, &sink, &parts, 2, false).await;
    let before = points(sink.as_ref(), &parts).await;
    assert_eq!(before.len(), n);

    // Delete ten documents of both shards (every kind of _id but the compound one), and plant
    // a point whose stored _id does not give its id back (another writer's).
    let gone: Vec<usize> = (0..n)
        .filter(|i| i % 5 != 4 && i % 6 == 1)
        .take(10)
        .collect();
    let coll = m
        .client()
        .await
        .database(DB)
        .collection::<mongodb::bson::Document>("films");
    for i in &gone {
        coll.delete_one(doc! {"_id": id_of(*i)}).await.unwrap();
    }
    let foreign = uuid::Uuid::new_v4();
    let mut payload = Map::new();
    payload.insert(keys::NAMESPACE.into(), Value::from(format!("{DB}.films")));
    payload.insert(keys::ID.into(), Value::from("not its id"));
    payload.insert(keys::HASH.into(), Value::from("h"));
    sink.upsert(
        &parts,
        None,
        vec![Point {
            id: foreign,
            vector: before.values().next().unwrap().1.clone(),
            sparse: None,
            payload,
        }],
    )
    .await
    .unwrap();
    let ids_of = |shard_index: u32| -> Vec<uuid::Uuid> {
        gone.iter()
            .filter(|i| shard_of(&id_of(**i), 2) == shard_index)
            .map(|i| mongo2qdrant::ids::point_id(DB, "films", &id_of(*i), 0))
            .collect()
    };
    let (gone0, gone1) = (ids_of(0), ids_of(1));
    assert!(!gone0.is_empty() && !gone1.is_empty(), "{gone:?}");

    // Shard 0 prunes its deleted documents' points, and nothing of shard 1's.
    let mut o = options();
    o.shard = Some(shard(0, 2));
    o.prune = true;
    let run = |o| films(&m, &parts).opts(o);
    let r0 = run(o.clone()).run(&sink).await.unwrap();
    assert_eq!(r0.namespaces[0].pruned, gone0.len() as u64);
    let now = points(sink.as_ref(), &parts).await;
    assert!(gone0.iter().all(|id| !now.contains_key(id)));
    assert!(gone1.iter().all(|id| now.contains_key(id)));
    assert!(now.contains_key(&foreign));
    o.shard = Some(shard(1, 2));
    let r1 = run(o).run(&sink).await.unwrap();
    assert_eq!(r1.namespaces[0].pruned, gone1.len() as u64);

    // What is left is exactly what an unsharded run makes of the source, plus the point that
    // no shard can place: a prune without a shard removes it.
    films(&m, &whole).run(&sink).await.unwrap();
    let mut left = points(sink.as_ref(), &parts).await;
    assert!(left.remove(&foreign).is_some());
    assert_same_points(&points(sink.as_ref(), &whole).await, &left);
    let mut o = options();
    o.prune = true;
    let all = run(o).run(&sink).await.unwrap();
    assert_eq!(all.namespaces[0].pruned, 1);
    assert_same_points(
        &points(sink.as_ref(), &whole).await,
        &points(sink.as_ref(), &parts).await,
    );
}

/// A shard's read dropped mid-way (the connection closed on a `getMore` of the `_id` scan or
/// of a fetch) continues after the last document it sent: with `--prune`, no live point goes.
async fn a_dropped_shard_read_continues_and_prunes_nothing_live<S: Sink>(sink: Arc<S>) {
    let m = Mongo::start_with(&["--enable-test-commands"]);
    let n = 60;
    m.insert(DB, "films", common::movie_docs(n, id_of)).await;
    let target = unique("dropped");
    let run = |index: u32, prune: bool| {
        let mut o = options();
        o.shard = Some(shard(index, 2));
        o.prune = prune;
        o.batch_docs = 8;
        sync_of(&m, DB, &["films"])
            .template(TEMPLATE)
            .target(Some(&target))
            .cursor_batch(7)
            .opts(o)
    };
    for index in 0..2 {
        run(index, false).run(&sink).await.unwrap();
    }
    for (index, skip) in [(0, 1), (1, 4)] {
        m.fail_once(
            skip,
            doc! {"failCommands": ["getMore"], "closeConnection": true},
        )
        .await;
        let r = run(index, true).run(&sink).await.unwrap();
        let mine = (0..n).filter(|j| shard_of(&id_of(*j), 2) == index).count() as u64;
        assert_eq!(
            r.counts.read, mine,
            "shard {index} read each of its documents once"
        );
        assert_eq!(r.namespaces[0].pruned, 0, "{r:#?}");
    }
    assert_eq!(sink.count(&target).await.unwrap(), n as u64);
}

/// A line of a file that cannot be read may be any shard's document: every shard counts it as
/// failed and none prunes, so the point of the document it was stays.
async fn an_unreadable_line_blocks_every_shards_prune<S: Sink>(sink: Arc<S>) {
    let m = Mongo::start();
    m.insert(DB, "films", common::movie_docs(20, id_of)).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("films.jsonl");
    export(&m, &file).await;
    let target = unique("badline");
    let source = mongo2qdrant::cli::SourceArgs {
        files: vec![file.clone()],
        namespace: Some(format!("{DB}.films")),
        ..common::source_args(&m, DB, &[])
    };
    let run = |index: u32| {
        let (sink, source, target) = (sink.clone(), source.clone(), target.clone());
        async move {
            let mut o = options();
            o.shard = Some(shard(index, 2));
            o.prune = true;
            let jobs = mongo2qdrant::config::jobs(&source, Some(&target), TEMPLATE, &[])
                .await
                .unwrap();
            common::sync_jobs(&sink, jobs, o).await.unwrap()
        }
    };
    for index in 0..2 {
        run(index).await;
    }
    assert_eq!(sink.count(&target).await.unwrap(), 20);
    // The third document's line is damaged.
    let text = std::fs::read_to_string(&file).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    lines[2] = format!("{{\"_id\": {}", &lines[2][8..20]);
    std::fs::write(&file, lines.join("\n")).unwrap();
    for index in 0..2 {
        let r = run(index).await;
        assert_eq!(r.counts.failed, 1, "shard {index}: {r:#?}");
        assert!(r.namespaces[0].prune_skipped, "shard {index}: {r:#?}");
    }
    assert_eq!(sink.count(&target).await.unwrap(), 20);
}

both_targets!(
    shards_together_make_the_points_of_one_run,
    each_shard_prunes_exactly_its_own,
    a_dropped_shard_read_continues_and_prunes_nothing_live,
    an_unreadable_line_blocks_every_shards_prune
);

/// On a server, a run of the whole namespace (a sync, or `watch`) and shards of it exclude
/// each other, as do shards of different counts; shards of one count run side by side.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Qdrant server: tests/run.sh starts one and runs these; or set QDRANT_URL and pass --include-ignored"]
async fn whole_and_sharded_runs_exclude_each_other_on_a_server() {
    let sink = common::grpc_sink();
    let m = Mongo::start();
    m.insert(DB, "films", common::movie_docs(10, id_of)).await;
    let target = unique("leases");
    sync_of(&m, DB, &["films"])
        .template(TEMPLATE)
        .target(Some(&target))
        .run(&sink)
        .await
        .unwrap();
    let store = StateStore::open(sink.as_ref(), false).await.unwrap();
    let ns = format!("{DB}.films");
    let run = |s: Option<Shard>| {
        let mut o = options();
        o.shard = s;
        sync_of(&m, DB, &["films"])
            .template(TEMPLATE)
            .target(Some(&target))
            .opts(o)
    };
    let locked = |r: Result<RunReport, mongo2qdrant::pipeline::PipelineError>| {
        matches!(r, Err(mongo2qdrant::pipeline::PipelineError::Locked(_)))
    };
    for (held, attempt, refused) in [
        (ns.clone(), Some(shard(0, 2)), true),
        (format!("{ns} shard 1/2"), None, true),
        (format!("{ns} shard 1/4"), Some(shard(0, 2)), true),
        (format!("{ns} shard 1/2"), Some(shard(0, 2)), false),
    ] {
        let other = mongo2qdrant::state::Holder::me(&uuid::Uuid::new_v4().to_string());
        mongo2qdrant::state::lease::acquire(&store, &target, &held, &other)
            .await
            .unwrap();
        let r = run(attempt).run(&sink).await;
        assert_eq!(locked(r), refused, "{held} held, {attempt:?} tried");
        mongo2qdrant::state::lease::release(&store, &target, &held, &other)
            .await
            .unwrap();
    }
}

/// The binary's `sync` (or another command) of `shards.films` into `target`: the Qdrant server
/// at `url`, else the embedded store at `store`.
fn cmd(
    m: &Mongo,
    command: &str,
    url: Option<&str>,
    store: &Path,
    target: &str,
) -> std::process::Command {
    let mut c = common::bin();
    c.args([command, "--database", DB, "--collection", "films"])
        .args(["--mongo-uri", &m.uri()])
        .args([
            "--text",
            TEMPLATE,
            "--payload",
            "title",
            "--batch-size",
            "16",
        ])
        .args(["--collection-name", target])
        .env("M2Q_LOG", "mongo2qdrant=debug");
    match url {
        Some(u) => c.args(["--qdrant-url", u]),
        None => c.arg("--qdrant-path").arg(store),
    };
    c
}

/// Kill a shard with SIGKILL once it acknowledged a unit; rerun it: the shards converge on the
/// points of one unsharded run, each verifies, and `status` shows every shard's checkpoint.
/// One shard takes its index from `JOB_COMPLETION_INDEX`, as in a Kubernetes Indexed Job.
fn a_killed_shard_resumes_and_the_shards_converge(url: Option<&str>) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let m = Mongo::start();
    rt.block_on(m.insert(DB, "films", common::movie_docs(160, id_of)));
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let (target, whole) = (unique("films"), unique("whole"));
    let shard0 = || {
        let mut c = cmd(&m, "sync", url, &store, &target);
        c.args(["--shards", "2", "--quiet"])
            .env("JOB_COMPLETION_INDEX", "0");
        c
    };
    let shard1 = || {
        let mut c = cmd(&m, "sync", url, &store, &target);
        c.args(["--shard", "1/2", "--quiet"]);
        c
    };
    // On a server the shards run side by side; the embedded store takes one at a time.
    let mut first = url.map(|_| shard0().spawn().unwrap());
    let mut victim = shard1().spawn().unwrap();
    let stderr = BufReader::new(victim.stderr.take().unwrap());
    let mut acked = false;
    for line in stderr.lines() {
        if line.unwrap().contains("checkpoint advanced") {
            acked = true;
            break;
        }
    }
    assert!(acked, "shard 1 never acknowledged a unit");
    victim.kill().unwrap();
    victim.wait().unwrap();
    match first.take() {
        Some(c) => common::assert_ok(&c.wait_with_output().unwrap()),
        None => common::assert_ok(&shard0().output().unwrap()),
    }
    let out = shard1()
        .arg("--report-json")
        .arg(dir.path().join("r.json"))
        .output()
        .unwrap();
    common::assert_ok(&out);
    let report: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("r.json")).unwrap()).unwrap();
    let ns = &report["namespaces"][0];
    assert!(
        !ns["resumed_after"].is_null(),
        "the rerun did not resume: {report}"
    );
    assert_eq!(ns["shard"], "1/2");

    for extra in [&["--shard", "0/2"][..], &["--shard", "1/2"], &[]] {
        let out = cmd(&m, "verify", url, &store, &target)
            .args(extra)
            .output()
            .unwrap();
        common::assert_ok(&out);
    }
    let mut status = common::bin();
    status.arg("status");
    match url {
        Some(u) => status.args(["--qdrant-url", u]),
        None => status.arg("--qdrant-path").arg(&store),
    };
    let out = status.output().unwrap();
    common::assert_ok(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    for s in ["0/2", "1/2"] {
        let line = text
            .lines()
            .find(|l| l.contains(&target) && l.contains(&format!("(shard {s})")))
            .unwrap_or_else(|| panic!("no checkpoint of shard {s}:\n{text}"));
        assert!(line.contains("complete"), "{line}");
    }

    common::assert_ok(&cmd(&m, "sync", url, &store, &whole).output().unwrap());
    let (a, b) = rt.block_on(async {
        match url {
            Some(u) => {
                let sink = mongo2qdrant::sink::GrpcSink::connect(u, None).unwrap();
                (
                    common::hash_snapshot(&sink, &whole).await,
                    common::hash_snapshot(&sink, &target).await,
                )
            }
            None => {
                let sink = mongo2qdrant::sink::EdgeSink::open(&store).unwrap();
                (
                    common::hash_snapshot(&sink, &whole).await,
                    common::hash_snapshot(&sink, &target).await,
                )
            }
        }
    });
    assert_eq!(a.len(), 160);
    assert_eq!(a, b);
}

#[test]
fn a_killed_shard_resumes_and_converges_embedded() {
    a_killed_shard_resumes_and_the_shards_converge(None);
}

#[test]
#[ignore = "needs a Qdrant server: tests/run.sh starts one and runs these; or set QDRANT_URL and pass --include-ignored"]
fn a_killed_shard_resumes_and_converges_on_a_server() {
    a_killed_shard_resumes_and_the_shards_converge(Some(&common::server_url()));
}

#[test]
fn bad_shard_settings_are_refused_naming_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    for (args, env, want) in [
        (&["--shard", "2/2"][..], None, "INDEX/COUNT"),
        (&["--shards", "4"], None, "JOB_COMPLETION_INDEX"),
        (&["--shards", "4"], Some("4"), "completions: 4"),
        (&["--shard", "1/2", "--shards", "4"], None, "disagree"),
        (&["--shards", "0"], Some("0"), "at least 1"),
    ] {
        let mut c = common::bin();
        c.args(["sync", "--database", DB, "--collection", "films"])
            .args(["--mongo-uri", "mongodb://127.0.0.1:1"])
            .arg("--qdrant-path")
            .arg(dir.path())
            .args(args)
            .env_remove("JOB_COMPLETION_INDEX");
        if let Some(e) = env {
            c.env("JOB_COMPLETION_INDEX", e);
        }
        let out = c.output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{args:?}: {err}");
        // Said once ("X: X" before), and never a shard count of 0 to use.
        assert_eq!(err.matches(want).count(), 1, "{args:?}: {err}");
        assert!(!err.contains("I/0"), "{args:?}: {err}");
    }
    let out = common::bin()
        .args([
            "watch",
            "--database",
            DB,
            "--collection",
            "films",
            "--shard",
            "0/2",
        ])
        .arg("--qdrant-path")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

const BULK_DB: &str = "bulk";

async fn bulk_load(
    m: &Mongo,
    sink: &Arc<GrpcSink>,
    target: &str,
    shard: Option<Shard>,
) -> RunReport {
    let mut o = options();
    o.bulk = true;
    o.shard = shard;
    o.write_concurrency = 4;
    sync_of(m, BULK_DB, &["films"])
        .template(r"{title}\n{extract}")
        .target(Some(target))
        .opts(o)
        .run(sink)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Qdrant server: tests/run.sh starts one and runs these; or set QDRANT_URL and pass --include-ignored"]
async fn shards_load_with_the_graph_off_and_the_last_switches_it_on() {
    let sink = common::grpc_sink();
    let m = Mongo::start();
    m.insert(
        BULK_DB,
        "films",
        common::movie_docs(120, |i| Bson::Int32(i as i32)),
    )
    .await;
    let target = unique("bulk");

    let first = bulk_load(&m, &sink, &target, Some(Shard { index: 0, count: 2 })).await;
    assert_eq!(
        sink.hnsw_m(&target).await.unwrap(),
        Some(0),
        "graph building is off"
    );
    assert!((1..120).contains(&first.counts.read), "{:?}", first.counts);
    let i = &first.indexing[0];
    assert!(!i.indexed && i.shards_pending == [1], "{i:?}");
    let store = StateStore::open(sink.as_ref(), false).await.unwrap();
    let bulk = store
        .bulk_load(&target)
        .await
        .unwrap()
        .expect("the load is recorded");
    assert_eq!((bulk.shards, bulk.restore_m), (2, 16));

    let last = bulk_load(&m, &sink, &target, Some(Shard { index: 1, count: 2 })).await;
    let i = &last.indexing[0];
    assert!(i.indexed, "{i:?}");
    assert_eq!(i.points, 120, "{i:?}");
    assert_eq!(sink.hnsw_m(&target).await.unwrap(), Some(16), "restored");
    assert!(sink.index_state(&target).await.unwrap().unwrap().settled);
    assert!(
        store.bulk_load(&target).await.unwrap().is_none(),
        "records removed"
    );

    // The points of a plain run.
    let plain = unique("plain");
    sync_of(&m, BULK_DB, &["films"])
        .template(r"{title}\n{extract}")
        .target(Some(&plain))
        .run(&sink)
        .await
        .unwrap();
    let ids = |c: String| {
        let sink = sink.clone();
        async move {
            let mut v: Vec<_> = common::points_with_vectors(sink.as_ref(), &c)
                .await
                .into_iter()
                .map(|p| (p.id, p.payload))
                .collect();
            v.sort_by_key(|p| p.0);
            v
        }
    };
    assert_eq!(ids(target.clone()).await, ids(plain).await);

    // Three shards that begin together into a new collection: one records the load, the others
    // join it, and the graph is switched back on once, at the end.
    let together = unique("bulk3");
    let runs = (0..3).map(|i| bulk_load(&m, &sink, &together, Some(Shard { index: i, count: 3 })));
    let reports = join_all(runs).await;
    let indexed: Vec<bool> = reports.iter().map(|r| r.indexing[0].indexed).collect();
    assert_eq!(indexed.iter().filter(|i| **i).count(), 1, "{reports:#?}");
    assert_eq!(sink.hnsw_m(&together).await.unwrap(), Some(16));
    assert!(store.bulk_load(&together).await.unwrap().is_none());
    assert_eq!(sink.count(&together).await.unwrap(), 120);

    // A collection with points is not a first load: written as usual, the graph stays on.
    let again = bulk_load(&m, &sink, &target, None).await;
    assert!(again.indexing.is_empty(), "{:?}", again.indexing);
    assert_eq!(sink.hnsw_m(&target).await.unwrap(), Some(16));
    assert!(store.bulk_load(&target).await.unwrap().is_none());
}

/// Issue 22.8: a `--bulk` load left unfinished (here its second shard never ran; a killed
/// shard leaves the same records and `m = 0`), then the plain `sync` the README recommends.
/// Before, it exited 0 with HNSW graph building off for good and nothing said so; now the plain
/// run takes part in the load and, having loaded everything, switches the graph back on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Qdrant server: tests/run.sh starts one and runs these; or set QDRANT_URL and pass --include-ignored"]
async fn a_plain_run_finishes_a_bulk_load_left_behind() {
    let sink = common::grpc_sink();
    let m = Mongo::start();
    m.insert(
        BULK_DB,
        "films",
        common::movie_docs(60, |i| Bson::Int32(i as i32)),
    )
    .await;
    let target = unique("stale_bulk");
    bulk_load(&m, &sink, &target, Some(Shard { index: 0, count: 2 })).await;
    assert_eq!(sink.hnsw_m(&target).await.unwrap(), Some(0));
    let store = StateStore::open(sink.as_ref(), false).await.unwrap();
    let plain = async || {
        sync_of(&m, BULK_DB, &["films"])
            .template(r"{title}\n{extract}")
            .target(Some(&target))
            .run(&sink)
            .await
    };

    // While another run holds a lease on the target (here: loading another collection into
    // it), the load may be going on: a plain run leaves it alone.
    let mut other = mongo2qdrant::state::Holder::me("run-other-load");
    other.expires_at = u64::MAX / 2;
    common::plant_lease(&store, &other, &target, "bulk.other").await;
    let r = plain().await.unwrap();
    assert!(r.indexing.is_empty(), "{:?}", r.indexing);
    assert_eq!(sink.hnsw_m(&target).await.unwrap(), Some(0));
    assert_eq!(store.bulk_load(&target).await.unwrap().unwrap().shards, 2);
    // Nor does a --bulk run of another shard count take the load over then (before, it
    // rewrote the load to its count and was refused by a lease only afterwards).
    let mut o = options();
    o.bulk = true;
    o.shard = Some(Shard { index: 0, count: 3 });
    let e = sync_of(&m, BULK_DB, &["films"])
        .template(r"{title}\n{extract}")
        .target(Some(&target))
        .opts(o)
        .run(&sink)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("run-other-load"), "{e}");
    assert_eq!(store.bulk_load(&target).await.unwrap().unwrap().shards, 2);

    // That run gone (its lease expired), the next plain run takes part and finishes the load.
    other.expires_at = 1;
    common::plant_lease(&store, &other, &target, "bulk.other").await;
    let plain = sync_of(&m, BULK_DB, &["films"])
        .template(r"{title}\n{extract}")
        .target(Some(&target))
        .run(&sink)
        .await
        .unwrap();
    let i = plain
        .indexing
        .first()
        .expect("the plain run reports the load");
    assert!(i.indexed && i.shards_pending.is_empty(), "{i:?}");
    assert_eq!(sink.hnsw_m(&target).await.unwrap(), Some(16), "restored");
    assert!(store.bulk_load(&target).await.unwrap().is_none());
    assert_eq!(sink.count(&target).await.unwrap(), 60);
}

/// Issue 22.8: two collections bulk-loaded into one target by two runs at once. Before, the
/// run of the smaller one declared the load indexed (and switched the graph back on) while the
/// other was still loading, and the other's run reported nothing. Every namespace that joins
/// now owes its part, and the last to finish switches the graph on with every point there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Qdrant server: tests/run.sh starts one and runs these; or set QDRANT_URL and pass --include-ignored"]
async fn two_collections_bulk_loaded_into_one_target_wait_for_each_other() {
    let sink = common::grpc_sink();
    let m = Mongo::start();
    for (coll, n) in [("small", 10), ("large", 150)] {
        m.insert(
            BULK_DB,
            coll,
            common::movie_docs(n, |i| Bson::Int32(i as i32)),
        )
        .await;
    }
    let target = unique("bulk_two");
    let run = async |coll: &'static str| {
        let mut o = options();
        o.bulk = true;
        o.write_concurrency = 4;
        sync_of(&m, BULK_DB, &[coll])
            .template(r"{title}\n{extract}")
            .target(Some(&target))
            .opts(o)
            .run(&sink)
            .await
    };
    let (small, large) = tokio::join!(run("small"), run("large"));
    let (small, large) = (small.unwrap(), large.unwrap());
    let s = small.indexing.first().expect("the small run took part");
    assert!(!s.indexed && s.shards_pending == [0], "{s:?}");
    let l = large.indexing.first().expect("the large run took part");
    assert!(l.indexed && l.points == 160, "{l:?}");
    assert_eq!(sink.hnsw_m(&target).await.unwrap(), Some(16));
    let store = StateStore::open(sink.as_ref(), false).await.unwrap();
    assert!(store.bulk_load(&target).await.unwrap().is_none());
}

#[test]
fn the_embedded_store_refuses_bulk() {
    let dir = tempfile::tempdir().unwrap();
    let out = common::bin()
        .args([
            "sync",
            "--database",
            BULK_DB,
            "--collection",
            "films",
            "--bulk",
        ])
        .args(["--mongo-uri", "mongodb://127.0.0.1:1"])
        .arg("--qdrant-path")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--qdrant-url"));
}
