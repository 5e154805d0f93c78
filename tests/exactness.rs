//! Exactness against an adversary, on both targets: each test is a scenario that lost or
//! wrongly deleted points before its fix. Mixed `_id` types (MongoDB orders them by type
//! bracket, and a `$gt` matches only within one), dropped cursors and failed runs injected with
//! `configureFailPoint`, a compound `_id` as the resume point.

use crate::common;

use std::sync::Arc;

use crate::common::{Mongo, unique};
use mongo2qdrant::pipeline::PipelineError;
use mongo2qdrant::pipeline::guard::MaxDelete;
use mongo2qdrant::sink::Sink;
use mongo2qdrant::state::{Checkpoint, StateStore};
use mongodb::bson::oid::ObjectId;
use mongodb::bson::spec::BinarySubtype;
use mongodb::bson::{Binary, Bson, DateTime, Document, Timestamp, doc};

/// Documents with every kind of `_id` MongoDB allows as a key of `n` documents each (numbers of
/// three types, strings, documents with unsorted keys, ObjectIds, binary, dates, timestamps),
/// plus null, both booleans, MinKey and MaxKey: `8 * n + 5` documents, inserted shuffled.
fn mixed_docs(n: usize) -> Vec<Document> {
    let mut ids: Vec<Bson> = vec![
        Bson::Null,
        Bson::Boolean(false),
        Bson::Boolean(true),
        Bson::MinKey,
        Bson::MaxKey,
    ];
    for i in 0..n {
        let k = i as i64;
        ids.push(match i % 3 {
            0 => Bson::Int32(i as i32),
            1 => Bson::Int64(k),
            _ => Bson::Double(k as f64 + 0.5),
        });
        ids.push(Bson::String(format!("s{i:03}")));
        ids.push(Bson::Document(doc! {"z": i as i32, "a": "x"}));
        ids.push(Bson::ObjectId(ObjectId::new()));
        ids.push(Bson::Binary(Binary {
            subtype: BinarySubtype::Generic,
            bytes: vec![1, i as u8, 7],
        }));
        ids.push(Bson::DateTime(DateTime::from_millis(1_600_000_000_000 + k)));
        ids.push(Bson::Timestamp(Timestamp {
            time: 1_700_000_000,
            increment: i as u32 + 1,
        }));
        ids.push(Bson::Int32(1000 + i as i32));
    }
    // A fixed shuffle: insertion order must not matter.
    ids.sort_by_key(|id| blake3::hash(id.to_string().as_bytes()).to_hex().to_string());
    ids.into_iter()
        .enumerate()
        .map(|(i, id)| doc! {"_id": id, "text": format!("note {i}: a short text about topic {}", i % 7)})
        .collect()
}

async fn count<S: Sink>(sink: &S, c: &str) -> u64 {
    sink.count(c).await.unwrap()
}

/// A dropped connection mid-pass, then `--prune`: the reader continues after the last `_id` it
/// sent, which must include every later type bracket, or prune deletes the points of the
/// documents it skipped (70 of 270 in the review's reproduction).
async fn mixed_id_types_and_a_dropped_cursor_never_prune_live_points<S: Sink>(sink: Arc<S>) {
    let m = Mongo::start_with(&["--enable-test-commands"]);
    let c = unique("mixed");
    let docs = mixed_docs(12);
    let n = docs.len() as u64;
    m.insert("x", &c, docs).await;
    let run = |prune| {
        let mut o = common::options();
        o.batch_docs = 8;
        o.prune = prune;
        common::sync_of(&m, "x", &[&c]).cursor_batch(10).opts(o)
    };
    run(false).run(&sink).await.unwrap();
    assert_eq!(count(sink.as_ref(), &c).await, n);

    m.fail_once(
        1,
        doc! {"failCommands": ["getMore"], "closeConnection": true},
    )
    .await;
    let r = run(true).run(&sink).await.unwrap();
    assert_eq!(r.counts.read, n, "every document read once");
    assert_eq!(r.namespaces[0].pruned, 0, "{r:#?}");
    assert_eq!(count(sink.as_ref(), &c).await, n);
    common::verify(&sink, run(false).jobs().await).await;
}

/// A run that fails mid-pass leaves a checkpoint inside one type bracket; the resumed run must
/// read the rest of the collection, every later bracket included.
async fn a_resumed_pass_reads_every_later_id_type<S: Sink>(sink: Arc<S>) {
    let m = Mongo::start_with(&["--enable-test-commands"]);
    let c = unique("resume");
    let docs = mixed_docs(12);
    let n = docs.len() as u64;
    m.insert("x", &c, docs).await;
    let run = || {
        let mut o = common::options();
        o.batch_docs = 8;
        common::sync_of(&m, "x", &[&c]).cursor_batch(10).opts(o)
    };
    m.fail_once(2, doc! {"failCommands": ["getMore"], "errorCode": 2})
        .await;
    assert!(
        run().run(&sink).await.is_err(),
        "the injected error ends the run"
    );
    let first = count(sink.as_ref(), &c).await;
    assert!(
        first > 0 && first < n,
        "the first run stopped midway ({first} of {n})"
    );

    let r = run().run(&sink).await.unwrap();
    assert!(r.namespaces[0].resumed_after.is_some(), "{r:#?}");
    assert_eq!(count(sink.as_ref(), &c).await, n);
    common::verify(&sink, run().jobs().await).await;
}

/// A compound `_id` as the resume point comes back exactly (field order included): a Qdrant
/// server returns payload objects as protobuf maps, which keep no order.
async fn a_compound_id_checkpoint_keeps_its_field_order<S: Sink>(sink: Arc<S>) {
    let id = Bson::Document(doc! {"z": 1, "a": {"y": 2, "b": [3, "x"]}, "m": 1.5});
    let store = StateStore::open(sink.as_ref(), true).await.unwrap();
    let target = unique("compound");
    let mut cp = Checkpoint {
        target: target.clone(),
        namespace: "x.y".into(),
        vector: None,
        shard: None,
        last_id: None,
        complete: false,
        anchor: None,
        settings: "s".into(),
        run_id: "r".into(),
        started_at: "t".into(),
        updated_at: "t".into(),
        model: "m".into(),
        dimension: 384,
        counts: Default::default(),
    };
    cp.set_last_id(&id);
    store.save_checkpoint(&cp).await.unwrap();
    let back = store
        .checkpoint(&target, "x.y", None, None)
        .await
        .unwrap()
        .unwrap();
    let got = back.resume_after("s").unwrap();
    assert_eq!(got, id, "{got} != {id}");
    // The same bytes, so the same point ids and the same cursor position.
    assert_eq!(
        mongo2qdrant::ids::canonical_id_bytes(&got),
        mongo2qdrant::ids::canonical_id_bytes(&id)
    );
}

/// Isolated read failures over one long pass, with progress between them, never add up: the
/// retry count is of consecutive failures. With one retry allowed, four dropped `getMore`s
/// (each after a resumed read made progress) ended the run at the second before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolated_read_drops_with_progress_between_do_not_add_up() {
    let m = Mongo::start_with(&["--enable-test-commands"]);
    let (_dir, sink) = common::edge_sink();
    let c = unique("drops");
    m.insert("x", &c, notes(80)).await;
    let mut o = common::options();
    o.retry = mongo2qdrant::pipeline::RetryPolicy {
        attempts: 2,
        base: std::time::Duration::from_millis(10),
        max: std::time::Duration::from_millis(20),
    };
    m.fail_times(
        4,
        doc! {"failCommands": ["getMore"], "closeConnection": true},
    )
    .await;
    let r = common::sync_of(&m, "x", &[&c])
        .cursor_batch(10)
        .opts(o)
        .run(&sink)
        .await
        .expect("isolated drops with progress between are retried");
    m.fail_point_off().await;
    assert_eq!(r.counts.read, 80, "every document read once: {r:#?}");
    assert_eq!(count(sink.as_ref(), &c).await, 80);

    // Consecutive failures without progress still end the run when the retries are spent.
    let c = unique("drops_fatal");
    m.insert("x", &c, notes(30)).await;
    let mut o = common::options();
    o.retry.attempts = 2;
    o.retry.base = std::time::Duration::from_millis(10);
    m.fail_times(6, doc! {"failCommands": ["find"], "closeConnection": true})
        .await;
    let r = common::sync_of(&m, "x", &[&c]).opts(o).run(&sink).await;
    m.fail_point_off().await;
    assert!(r.is_err(), "failed finds in a row, one retry: {r:?}");
}

both_targets!(
    mixed_id_types_and_a_dropped_cursor_never_prune_live_points,
    a_resumed_pass_reads_every_later_id_type,
    a_compound_id_checkpoint_keeps_its_field_order,
);

/// `n` short documents with integer `_id`s and a `text` field.
fn notes(n: usize) -> Vec<Document> {
    (0..n)
        .map(
            |i| doc! {"_id": i as i32, "kind": "a", "text": format!("note {i} on topic {}", i % 5)},
        )
        .collect()
}

/// A template whose field names nothing (`{txet}`) makes every document "lose its text": the
/// run must delete nothing, exit with an error that says how many, why and the flag, and a dry
/// run must say the same. An explicit `--max-delete 100%` allows it.
async fn a_template_typo_deletes_nothing_and_names_the_fix<S: Sink>(sink: Arc<S>) {
    let m = Mongo::start();
    let c = unique("typo");
    m.insert("x", &c, notes(20)).await;
    common::sync_of(&m, "x", &[&c]).run(&sink).await.unwrap();
    assert_eq!(count(sink.as_ref(), &c).await, 20);

    let typo = |o| common::sync_of(&m, "x", &[&c]).template("{txet}").opts(o);
    let err = typo(common::options()).run(&sink).await.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, PipelineError::MassDelete(_)), "{msg}");
    for needle in [
        "20 of its 20",
        "--text",
        "--max-delete 100%",
        "nothing was deleted",
    ] {
        assert!(msg.contains(needle), "{needle}: {msg}");
    }
    assert_eq!(count(sink.as_ref(), &c).await, 20);

    let mut dry = common::options();
    dry.dry_run = true;
    let err = typo(dry).run(&sink).await.unwrap_err();
    assert!(matches!(err, PipelineError::MassDelete(_)), "{err}");

    let mut allow = common::options();
    allow.max_delete = MaxDelete::Share(100);
    let r = typo(allow).run(&sink).await.unwrap();
    assert_eq!(r.counts.deleted, 20);
    assert_eq!(count(sink.as_ref(), &c).await, 0);
}

/// `--prune` with a filter that matches nothing (a typo in a field name) would delete the whole
/// namespace: refused, and the message points at the filter.
async fn a_filter_that_matches_nothing_prunes_nothing<S: Sink>(sink: Arc<S>) {
    let m = Mongo::start();
    let c = unique("filter");
    m.insert("x", &c, notes(20)).await;
    let mut prune = common::options();
    prune.prune = true;
    common::sync_of(&m, "x", &[&c])
        .opts(prune.clone())
        .run(&sink)
        .await
        .unwrap();
    let err = common::sync_of(&m, "x", &[&c])
        .filter(r#"{"knid": "a"}"#)
        .opts(prune)
        .run(&sink)
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("--filter") && msg.contains("20 of its 20"),
        "{msg}"
    );
    assert_eq!(count(sink.as_ref(), &c).await, 20);
}

/// A few deletions stay below the guard: documents deleted at the source are pruned, and a
/// document that lost its text loses its points, in the same run.
async fn ordinary_deletions_pass_the_guard<S: Sink>(sink: Arc<S>) {
    let m = Mongo::start();
    let c = unique("ordinary");
    m.insert("x", &c, notes(20)).await;
    let mut prune = common::options();
    prune.prune = true;
    let run = || common::sync_of(&m, "x", &[&c]).opts(prune.clone());
    run().run(&sink).await.unwrap();
    let coll = m.client().await.database("x").collection::<Document>(&c);
    coll.delete_many(doc! {"_id": {"$in": [1, 2, 3]}})
        .await
        .unwrap();
    coll.update_one(doc! {"_id": 4}, doc! {"$unset": {"text": ""}})
        .await
        .unwrap();
    let r = run().run(&sink).await.unwrap();
    assert_eq!(r.counts.deleted, 4, "{r:#?}");
    assert_eq!(r.namespaces[0].pruned, 3);
    assert_eq!(count(sink.as_ref(), &c).await, 16);
    common::verify(&sink, run().jobs().await).await;
}

both_targets!(
    a_template_typo_deletes_nothing_and_names_the_fix,
    a_filter_that_matches_nothing_prunes_nothing,
    ordinary_deletions_pass_the_guard,
);

/// Run the binary's `sync` on `files` into the embedded store at `store`, with `args`.
fn sync_files(
    store: &std::path::Path,
    files: &[&std::path::Path],
    args: &[&str],
) -> std::process::Output {
    let files: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    common::bin()
        .args(["sync", "--quiet", "--file", &files.join(",")])
        .arg("--qdrant-path")
        .arg(store)
        .args(args)
        .output()
        .unwrap()
}

fn write_lines(path: &std::path::Path, lines: &[&str]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

/// Two files with the same stem would share a namespace, so the second's prune deleted the
/// first's points: refused before anything runs, naming `--namespace`.
#[test]
fn two_files_with_one_stem_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (
        dir.path().join("a/products.jsonl"),
        dir.path().join("b/products.jsonl"),
    );
    write_lines(
        &a,
        &[
            r#"{"_id": 1, "text": "red shoes"}"#,
            r#"{"_id": 2, "text": "blue hat"}"#,
        ],
    );
    write_lines(&b, &[r#"{"_id": 3, "text": "green scarf"}"#]);
    let out = sync_files(
        &dir.path().join("store"),
        &[&a, &b],
        &["--database", "shop", "--prune"],
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("both write") && e.contains("--namespace"), "{e}");
}

/// A document whose `_id` cannot be encoded (a NUL in a key) crashed every run: now it is one
/// failed document in the report, and the others are synced.
#[test]
fn a_nul_in_an_id_key_is_counted_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("odd.jsonl");
    write_lines(
        &f,
        &[
            r#"{"_id": {"a\u0000b": 1}, "text": "hi"}"#,
            r#"{"_id": 2, "text": "fine"}"#,
        ],
    );
    let report = dir.path().join("report.json");
    let out = sync_files(
        &dir.path().join("store"),
        &[&f],
        &["--report-json", &report.display().to_string()],
    );
    common::assert_ok(&out);
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(r["failed"], 1, "{r}");
    assert_eq!(r["embedded"], 1, "{r}");
    assert!(r["failures"].to_string().contains("_id"), "{r}");
}

/// Successive dumps of one collection under one `--namespace` are one set of points (the live
/// collection's ids): the second dump updates and prunes the first's, never duplicates them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn successive_dumps_with_one_namespace_share_points() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let day1 = dir.path().join("products-2026-01-01.jsonl");
    let day2 = dir.path().join("products-2026-01-02.jsonl");
    write_lines(
        &day1,
        &[
            r#"{"_id": 1, "text": "red shoes"}"#,
            r#"{"_id": 2, "text": "blue hat"}"#,
            r#"{"_id": 3, "text": "green scarf"}"#,
        ],
    );
    write_lines(
        &day2,
        &[
            r#"{"_id": 1, "text": "red shoes"}"#,
            r#"{"_id": 2, "text": "blue hat, wool"}"#,
            r#"{"_id": 4, "text": "yellow gloves"}"#,
        ],
    );
    let args = [
        "--namespace",
        "shop.products",
        "--collection-name",
        "products",
        "--prune",
    ];
    common::assert_ok(&sync_files(&store, &[&day1], &args));
    common::assert_ok(&sync_files(&store, &[&day2], &args));
    let sink = mongo2qdrant::sink::EdgeSink::open(&store).unwrap();
    let mut got: Vec<uuid::Uuid> =
        mongo2qdrant::sink::scroll_all(&sink, "products", None, mongo2qdrant::sink::Fields::All)
            .await
            .unwrap()
            .into_iter()
            .map(|p| p.id)
            .collect();
    got.sort();
    // The ids a sync of the live collection shop.products writes.
    let mut want: Vec<uuid::Uuid> = [1, 2, 4]
        .iter()
        .map(|i| mongo2qdrant::ids::point_id("shop", "products", &Bson::Int32(*i), 0))
        .collect();
    want.sort();
    assert_eq!(got, want);
}

/// A named vector's payload hash stayed behind when its document lost every copied field:
/// "payload only 1" on every run and `verify` stale for ever. The third run must settle.
async fn a_named_vector_that_loses_its_payload_fields_settles<S: Sink>(sink: Arc<S>) {
    let m = Mongo::start();
    let c = unique("lostpayload");
    m.insert("x", &c, notes(6)).await;
    let run = || {
        common::sync_of(&m, "x", &[&c])
            .payload(&["kind"])
            .vector(Some("body"))
    };
    run().run(&sink).await.unwrap();
    m.client()
        .await
        .database("x")
        .collection::<Document>(&c)
        .update_one(doc! {"_id": 2}, doc! {"$unset": {"kind": ""}})
        .await
        .unwrap();
    let r = run().run(&sink).await.unwrap();
    assert_eq!(r.counts.payload_updated, 1, "{r:#?}");
    let r = run().run(&sink).await.unwrap();
    assert_eq!(r.counts.payload_updated, 0, "{r:#?}");
    assert_eq!(r.counts.skipped_unchanged, 6);
    common::verify(&sink, run().jobs().await).await;
}

/// A cursor the server dropped (CursorNotFound, 43) ended the run; a new cursor after the last
/// `_id` read continues it.
async fn a_lost_cursor_is_continued<S: Sink>(sink: Arc<S>) {
    let m = Mongo::start_with(&["--enable-test-commands"]);
    let c = unique("lostcursor");
    let docs = mixed_docs(6);
    let n = docs.len() as u64;
    m.insert("x", &c, docs).await;
    m.fail_once(1, doc! {"failCommands": ["getMore"], "errorCode": 43})
        .await;
    let mut o = common::options();
    o.batch_docs = 8;
    let r = common::sync_of(&m, "x", &[&c])
        .cursor_batch(10)
        .opts(o)
        .run(&sink)
        .await
        .unwrap();
    assert_eq!(r.counts.read, n);
    assert_eq!(count(sink.as_ref(), &c).await, n);
}

/// A dry run predicts the real run's counts exactly: surplus chunks of a document that shrank
/// were counted once as surplus and again by prune.
async fn a_dry_run_predicts_the_real_run<S: Sink>(sink: Arc<S>) {
    let m = Mongo::start();
    let c = unique("predict");
    let long = |i: i32| {
        (0..40)
            .map(|k| format!("sentence {k} of document {i} about rivers and mountains"))
            .collect::<Vec<_>>()
            .join(". ")
    };
    let docs: Vec<Document> = (0..8).map(|i| doc! {"_id": i, "text": long(i)}).collect();
    m.insert("x", &c, docs).await;
    let opts = |dry_run: bool| {
        let mut o = common::options();
        o.chunking = Some(mongo2qdrant::pipeline::Chunking {
            size: 64,
            overlap: 8,
        });
        o.prune = true;
        o.dry_run = dry_run;
        o
    };
    let run = |dry| common::sync_of(&m, "x", &[&c]).opts(opts(dry));
    run(false).run(&sink).await.unwrap();
    let coll = m.client().await.database("x").collection::<Document>(&c);
    coll.update_one(doc! {"_id": 1}, doc! {"$set": {"text": "now short"}})
        .await
        .unwrap();
    coll.delete_one(doc! {"_id": 2}).await.unwrap();
    let predicted = run(true).run(&sink).await.unwrap();
    let real = run(false).run(&sink).await.unwrap();
    let c1 = &predicted.counts;
    let c2 = &real.counts;
    assert_eq!(
        (c1.read, c1.embedded, c1.skipped_unchanged, c1.deleted),
        (c2.read, c2.embedded, c2.skipped_unchanged, c2.deleted),
        "predicted {c1:?}, real {c2:?}"
    );
    assert_eq!(predicted.namespaces[0].pruned, real.namespaces[0].pruned);
    assert!(c2.deleted > 1, "{c2:?}");
}

both_targets!(
    a_named_vector_that_loses_its_payload_fields_settles,
    a_lost_cursor_is_continued,
    a_dry_run_predicts_the_real_run,
);

/// The same `_id` twice in one file: both copies were written in turn, and every run embedded
/// both again. The first is kept, the second reported.
#[test]
fn duplicate_ids_in_a_file_are_reported_and_settle() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("dup.jsonl");
    write_lines(
        &f,
        &[
            r#"{"_id": 1, "text": "first copy"}"#,
            r#"{"_id": 2, "text": "other"}"#,
            r#"{"_id": 1, "text": "second copy"}"#,
        ],
    );
    let store = dir.path().join("store");
    let r = dir.path().join("r.json");
    let rep = r.display().to_string();
    for (run, embedded) in [(1, 2), (2, 0)] {
        common::assert_ok(&sync_files(&store, &[&f], &["--report-json", &rep]));
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&r).unwrap()).unwrap();
        assert_eq!(v["embedded"], embedded, "run {run}: {v}");
        assert_eq!(v["failed"], 1, "run {run}: {v}");
        assert!(v["failures"].to_string().contains("duplicate _id"), "{v}");
    }
}

/// A JSON array with a byte that is not UTF-8 was decoded lossily (a JSONL line is refused):
/// now the array is refused too, with its line.
#[test]
fn a_json_array_that_is_not_utf8_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("bad.json");
    std::fs::write(&f, b"[\n{\"_id\": 1, \"text\": \"caf\xe9\"}\n]\n").unwrap();
    let out = sync_files(&dir.path().join("store"), &[&f], &[]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("not valid UTF-8") && e.contains("line 2"), "{e}");
}

/// The model's identity is what decides its vectors: a renamed model directory re-embeds
/// nothing; a changed tokenizer re-embeds everything.
#[test]
fn model_identity_is_its_files_not_its_directory() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("n.jsonl");
    write_lines(
        &f,
        &[
            r#"{"_id": 1, "text": "alpha"}"#,
            r#"{"_id": 2, "text": "beta"}"#,
        ],
    );
    let model = common::embed_config().model_dir;
    let copy = |name: &str| {
        let to = dir.path().join(name);
        std::fs::create_dir_all(&to).unwrap();
        for e in std::fs::read_dir(&model).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
        to
    };
    let store = dir.path().join("store");
    let r = dir.path().join("r.json");
    let rep = r.display().to_string();
    let embedded = |model_dir: &std::path::Path| {
        let m = model_dir.display().to_string();
        common::assert_ok(&sync_files(
            &store,
            &[&f],
            &["--model", &m, "--report-json", &rep],
        ));
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&r).unwrap()).unwrap();
        v["embedded"].as_u64().unwrap()
    };
    assert_eq!(embedded(&model), 2);
    assert_eq!(
        embedded(&copy("renamed-model")),
        0,
        "a new directory name changes nothing"
    );
    let edited = copy("edited-tokenizer");
    let tok = edited.join("tokenizer.json");
    let text = std::fs::read_to_string(&tok).unwrap();
    std::fs::write(&tok, text + "\n").unwrap();
    assert_eq!(embedded(&edited), 2, "another tokenizer file re-embeds");
}

/// A unit whose points together exceed a request limit (a proxy in front of the server, or a
/// server configured lower: Qdrant 1.19 itself accepted 150 MB over gRPC) failed at the same
/// place on every run: 40 documents copying a 1 MB field each, behind a 4 MiB limit. Writes now
/// go in requests of at most 8 MiB, split in halves when refused as too large.
async fn a_unit_over_the_request_limit_is_written_in_parts<S: Sink>(sink: Arc<S>) {
    let m = Mongo::start();
    let c = unique("big");
    let blob: String = (0..1_000_000u32)
        .map(|i| char::from(b'a' + (i * 7 % 26) as u8))
        .collect();
    let docs: Vec<Document> = (0..40)
        .map(|i| doc! {"_id": i, "text": format!("document {i}"), "blob": blob.clone()})
        .collect();
    m.insert("x", &c, docs).await;
    let limited = common::Faulty::limited(sink.clone(), 4 << 20);
    let mut o = common::options();
    o.batch_docs = 64;
    let run = || {
        common::sync_of(&m, "x", &[&c])
            .payload(&["blob"])
            .opts(o.clone())
    };
    let r = run().run(&limited).await.unwrap();
    assert_eq!(r.counts.upserted, 40, "{r:#?}");
    assert_eq!(count(sink.as_ref(), &c).await, 40);
    common::verify(&sink, run().jobs().await).await;
}

both_targets!(a_unit_over_the_request_limit_is_written_in_parts);
