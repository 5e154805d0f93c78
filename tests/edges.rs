//! Exact at the edges, on the real binary: config entries and flags, files and their paths,
//! names, reports and closed pipes. Each test is named after the scenario that went wrong.

use crate::common;

use std::path::Path;
use std::process::{Output, Stdio};

use crate::common::{Mongo, bin};
use mongodb::bson::{Document, doc};

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn report(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn notes(n: usize, kind: &str) -> Vec<Document> {
    (0..n)
        .map(|i| doc! {"_id": format!("{kind}{i}"), "kind": kind, "text": format!("{kind} note {i}")})
        .collect()
}

/// `sync` with `args` against `m`, into the embedded store `store`.
fn sync(m: &Mongo, store: &Path, args: &[&str]) -> Output {
    bin()
        .args(["sync", "--quiet", "--mongo-uri", &m.uri()])
        .arg("--qdrant-path")
        .arg(store)
        .args(args)
        .output()
        .unwrap()
}

/// Two `[[sync]]` entries on one collection and one target without distinct vector names
/// (one per document kind) pruned each other's points: refused at load time, naming the fix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_entries_on_one_collection_and_target_are_refused() {
    let m = Mongo::start();
    m.insert("pm", "t1", notes(4, "a")).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("pm.toml");
    std::fs::write(
        &config,
        r#"
database = "pm"
[[sync]]
collection = "t1"
filter = '{"kind": "a"}'
[[sync]]
collection = "t1"
filter = '{"kind": "b"}'
"#,
    )
    .unwrap();
    let out = sync(
        &m,
        &dir.path().join("store"),
        &["--config", &config.display().to_string()],
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let e = stderr(&out);
    assert!(e.contains("both write") && e.contains("vector_name"), "{e}");
}

/// `--config pm.toml --collection t1` built the job from the flags alone (template `{text}`,
/// no payload, default target), and every document "lost its text": the flag now selects the
/// file's entry, whose settings stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collection_flag_selects_the_config_entry() {
    let m = Mongo::start();
    let docs: Vec<Document> = (0..6)
        .map(|i| doc! {"_id": i, "body": format!("task {i}: fix the build"), "owner": "ann"})
        .collect();
    m.insert("pm", "t1", docs.clone()).await;
    m.insert("pm", "t2", docs).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("pm.toml");
    std::fs::write(
        &config,
        r#"
database = "pm"
[[sync]]
collection = "t1"
target = "tasks"
text = "{body}"
payload = ["owner"]
[[sync]]
collection = "t2"
target = "tasks2"
text = "{body}"
"#,
    )
    .unwrap();
    let store = dir.path().join("store");
    let r = dir.path().join("r.json");
    let cfg = config.display().to_string();
    let rep = r.display().to_string();
    common::assert_ok(&sync(&m, &store, &["--config", &cfg]));
    let out = sync(
        &m,
        &store,
        &[
            "--config",
            &cfg,
            "--collection",
            "t1",
            "--report-json",
            &rep,
        ],
    );
    common::assert_ok(&out);
    let r = report(&r);
    assert_eq!(r["skipped_no_text"], 0, "{r}");
    assert_eq!(r["skipped_unchanged"], 6, "{r}");
    assert_eq!(r["deleted"], 0, "{r}");
    assert_eq!(r["namespaces"].as_array().unwrap().len(), 1, "only t1: {r}");
    assert_eq!(r["namespaces"][0]["target"], "tasks");
}

/// `file` and `qdrant_path` in a config file are relative to the file, not to where the run
/// starts: a run from elsewhere reads the same file and writes the same store.
#[test]
fn config_paths_are_relative_to_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("notes.jsonl"),
        "{\"_id\": 1, \"text\": \"hello\"}\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("c.toml"),
        "qdrant_path = \"store\"\n[[sync]]\nfile = \"notes.jsonl\"\n",
    )
    .unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let out = bin()
        .current_dir(elsewhere.path())
        .args(["sync", "--quiet", "--config"])
        .arg(dir.path().join("c.toml"))
        .output()
        .unwrap();
    common::assert_ok(&out);
    assert!(
        dir.path().join("store").is_dir(),
        "the store beside the config"
    );
    assert!(!elsewhere.path().join("store").exists());
}

/// The records collection as a target was met with "pass --recreate", which wiped every
/// checkpoint; a name with `..` wrote outside the store. Both are usage errors now.
#[test]
fn reserved_and_path_like_collection_names_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("n.jsonl");
    std::fs::write(&f, "{\"_id\": 1, \"text\": \"hello\"}\n").unwrap();
    for name in ["mongo2qdrant_checkpoints", "../x", "a/b"] {
        let out = bin()
            .args(["sync", "--quiet", "--file"])
            .arg(&f)
            .args(["--collection-name", name, "--qdrant-path"])
            .arg(dir.path().join("store"))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{name}: {out:?}");
        assert!(
            stderr(&out).contains("--collection-name"),
            "{name}: {}",
            stderr(&out)
        );
    }
    assert!(!dir.path().join("x").exists());
}

/// `status`, `search` and `verify` on a mistyped `--qdrant-path` created an empty store and
/// said "no checkpoints yet", exit 0: now they say the store does not exist.
#[test]
fn a_mistyped_store_path_is_an_error_not_an_empty_store() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("qdrant-dtaa");
    for args in [
        vec!["status"],
        vec!["search", "hello", "--collection-name", "c"],
        vec!["verify", "--file", "x.jsonl"],
    ] {
        let out = bin()
            .args(&args)
            .arg("--qdrant-path")
            .arg(&missing)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}: {out:?}");
        assert!(
            stderr(&out).contains("no embedded store"),
            "{args:?}: {}",
            stderr(&out)
        );
        assert!(!missing.exists(), "{args:?} created it");
    }
}

/// A closed stdout (`sync ... | true`, `verify | head`) panicked (exit 101, no report): the
/// exit code and the report do not depend on anyone reading.
#[test]
fn a_closed_stdout_changes_neither_exit_code_nor_report() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("n.jsonl");
    std::fs::write(
        &f,
        "{\"_id\": 1, \"text\": \"hello\"}\n{\"_id\": 2, \"text\": \"world\"}\n",
    )
    .unwrap();
    let store = dir.path().join("store");
    let r = dir.path().join("r.json");
    let run = |args: &[&str]| {
        let mut child = bin()
            .args(args)
            .arg("--file")
            .arg(&f)
            .arg("--qdrant-path")
            .arg(&store)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take()); // the reader goes away
        child.wait_with_output().unwrap()
    };
    let out = run(&["sync", "--quiet", "--report-json", &r.display().to_string()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(report(&r)["embedded"], 2);
    // verify against another template differs: exit 3, whoever reads.
    let out = run(&["verify", "--text", "{text}!"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
}

/// A usage error, a store locked by another run and a missing model wrote no report, so a cron
/// job kept showing the last good one: every way out writes it, with its exit status.
#[test]
fn every_failure_writes_its_report() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("n.jsonl");
    std::fs::write(&f, "{\"_id\": 1, \"text\": \"hello\"}\n").unwrap();
    let store = dir.path().join("store");
    let r = dir.path().join("r.json");
    let rep = r.display().to_string();
    let sync = |extra: &[&str]| {
        bin()
            .args(["sync", "--quiet", "--file"])
            .arg(&f)
            .arg("--qdrant-path")
            .arg(&store)
            .args(["--report-json", &rep])
            .args(extra)
            .output()
            .unwrap()
    };
    let out = sync(&["--text", "{unclosed"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(report(&r)["exit_status"], 2);
    assert_eq!(report(&r)["status"], "failed");

    let out = sync(&["--model", "/nonexistent/model"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(report(&r)["exit_status"], 1);

    let _held = mongo2qdrant::state::lock_store(&store, "someone-else").unwrap();
    let out = sync(&[]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let rep = report(&r);
    assert_eq!(rep["exit_status"], 4);
    assert!(
        rep["error"].as_str().unwrap().contains("someone-else"),
        "{rep}"
    );
}

/// A value nested `levels` deep: `{"n": {"n": ... "leaf" ...}}`.
fn nested(levels: usize) -> mongodb::bson::Bson {
    let mut v = mongodb::bson::Bson::String("leaf".into());
    for _ in 0..levels {
        v = mongodb::bson::Bson::Document(doc! {"n": v});
    }
    v
}

/// A copied payload field nested ~35 levels (MongoDB allows 100) was written, and then every
/// read of that point over gRPC failed to decode: every later sync, verify, prune and search
/// failed for ever. The server target now refuses (counts as failed) a payload it could not
/// return, and reads back only the keys a decision needs, so a deep point written by anyone
/// else does not wedge a run either.
async fn a_deeply_nested_copied_field_never_wedges_the_target<S: mongo2qdrant::sink::Sink>(
    sink: std::sync::Arc<S>,
) {
    use mongo2qdrant::sink::Fields;
    let m = Mongo::start();
    let c = common::unique("deep");
    let mut docs: Vec<Document> = (0..6)
        .map(|i| doc! {"_id": i, "text": format!("note {i}"), "meta": nested(2)})
        .collect();
    docs[3].insert("meta", nested(35));
    m.insert("x", &c, docs).await;
    let run = || common::sync_of(&m, "x", &[&c]).payload(&["meta"]);
    let limited = sink.max_payload_depth().is_some();
    let r = run().run(&sink).await.unwrap();
    assert_eq!(r.counts.failed, u64::from(limited), "{r:#?}");
    assert_eq!(sink.count(&c).await.unwrap(), 6 - u64::from(limited));
    if limited {
        let why = &r.failures[0].reason;
        assert!(
            why.contains("`meta` nests 35 levels") && why.contains("--payload"),
            "{why}"
        );
    }

    // A deep value on a stored point, as an older version or another tool wrote it.
    let p0 = mongo2qdrant::ids::point_id("x", &c, &mongodb::bson::Bson::Int32(0), 0);
    let deep: serde_json::Value = nested(40).into_relaxed_extjson();
    let mut extra = serde_json::Map::new();
    extra.insert("other".into(), deep);
    sink.set_payload(&c, &[p0], extra, false).await.unwrap();

    // Still a working target: sync, prune and verify read only what they need.
    m.client()
        .await
        .database("x")
        .collection::<Document>(&c)
        .delete_one(doc! {"_id": 5})
        .await
        .unwrap();
    let mut o = common::options();
    o.prune = true;
    o.max_delete = mongo2qdrant::pipeline::guard::MaxDelete::Share(100);
    let r = run().opts(o).run(&sink).await.unwrap();
    assert_eq!(r.counts.failed, u64::from(limited), "{r:#?}");
    let jobs = run().jobs().await;
    let v =
        mongo2qdrant::verify::verify(sink.clone(), common::embedder(), jobs, &common::options())
            .await
            .unwrap();
    assert_eq!(v.namespaces[0].missing, u64::from(limited), "{v:#?}");
    let keys = ["_id".to_owned()];
    let got = sink
        .retrieve(&c, &[p0], Fields::Only(&keys), false)
        .await
        .unwrap();
    assert_eq!(got[0].payload.len(), 1, "{got:?}");
}

/// `--recreate` was spent on a target's first job: a collection whose first named vector fit
/// and whose second did not (an old model's dimension) failed on the second; and
/// `--dry-run --recreate` failed instead of previewing. The target is now judged on all of its
/// vectors, dropped once, rebuilt with all of them, and every document is written again.
async fn recreate_rebuilds_every_vector_of_a_target<S: mongo2qdrant::sink::Sink>(
    sink: std::sync::Arc<S>,
) {
    use mongo2qdrant::sink::{Shape, VectorParams};
    let m = Mongo::start();
    let c = common::unique("rebuild");
    let docs: Vec<Document> = (0..5)
        .map(|i| doc! {"_id": i, "title": format!("title {i}"), "body": format!("the body of note {i}")})
        .collect();
    m.insert("x", &c, docs).await;
    let title = || {
        common::sync_of(&m, "x", &[&c])
            .template("{title}")
            .vector(Some("title"))
    };
    let body = || {
        common::sync_of(&m, "x", &[&c])
            .template("{body}")
            .vector(Some("body"))
    };
    title().run(&sink).await.unwrap();
    // The body vector as an older model left it: another dimension.
    sink.add_vector(&c, "body", 8, Default::default())
        .await
        .unwrap();
    let mut jobs = title().jobs().await;
    jobs.extend(body().jobs().await);

    let e = common::sync_jobs(&sink, jobs.clone(), common::options())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("--recreate"), "{e}");

    let mut o = common::options();
    o.recreate = true;
    o.dry_run = true;
    let r = common::sync_jobs(&sink, jobs.clone(), o.clone())
        .await
        .unwrap();
    assert_eq!(r.counts.embedded, 10, "a preview of the rebuild: {r:#?}");
    assert_eq!(r.counts.deleted, 0, "{r:#?}");
    assert_eq!(sink.count(&c).await.unwrap(), 5, "a dry run writes nothing");

    o.dry_run = false;
    let r = common::sync_jobs(&sink, jobs.clone(), o).await.unwrap();
    assert_eq!(r.counts.embedded, 10, "{r:#?}");
    let v = |dimension| VectorParams {
        dimension,
        distance: "Cosine".into(),
    };
    assert_eq!(
        sink.shape(&c).await.unwrap(),
        Some(Shape::Named(
            [("body".to_owned(), v(384)), ("title".to_owned(), v(384))].into()
        ))
    );
    assert_eq!(sink.count(&c).await.unwrap(), 5);
    common::verify(&sink, jobs).await;
}

/// A config with an unnamed and a named entry into one target was told to pass `--recreate`,
/// which cannot help (a collection holds one unnamed vector or named ones): refused at load.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unnamed_and_a_named_vector_into_one_target_are_refused() {
    let m = Mongo::start();
    m.insert("pm", "t1", notes(3, "a")).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("pm.toml");
    std::fs::write(
        &config,
        r#"
database = "pm"
[[sync]]
collection = "t1"
target = "all"
[[sync]]
collection = "t1"
target = "all"
text = "{kind}"
vector_name = "kind"
"#,
    )
    .unwrap();
    let out = sync(
        &m,
        &dir.path().join("store"),
        &["--config", &config.display().to_string()],
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let e = stderr(&out);
    assert!(e.contains("not both") && e.contains("vector_name"), "{e}");
    assert!(!dir.path().join("store").join("all").exists());
}

/// A narrowed `--filter` with `--prune` deleted the points of documents that still exist,
/// with no word of why. The report now says how many of the pruned points are outside the
/// filter (their documents exist), and the log says it too.
async fn a_narrowed_filter_says_which_pruned_points_are_outside_it<S: mongo2qdrant::sink::Sink>(
    sink: std::sync::Arc<S>,
) {
    let m = Mongo::start();
    let c = common::unique("narrow");
    let mut docs = notes(6, "a");
    docs.extend(notes(4, "b"));
    m.insert("x", &c, docs).await;
    common::sync_of(&m, "x", &[&c]).run(&sink).await.unwrap();
    m.client()
        .await
        .database("x")
        .collection::<Document>(&c)
        .delete_one(doc! {"_id": "b0"})
        .await
        .unwrap();
    let mut o = common::options();
    o.prune = true;
    o.max_delete = mongo2qdrant::pipeline::guard::MaxDelete::Share(100);
    let narrowed = || common::sync_of(&m, "x", &[&c]).filter(r#"{"kind": "a"}"#);
    o.dry_run = true;
    let r = narrowed().opts(o.clone()).run(&sink).await.unwrap();
    assert_eq!(
        (
            r.namespaces[0].pruned,
            r.namespaces[0].pruned_outside_filter
        ),
        (4, 3),
        "{r:#?}"
    );
    o.dry_run = false;
    let r = narrowed().opts(o).run(&sink).await.unwrap();
    assert_eq!(
        (
            r.namespaces[0].pruned,
            r.namespaces[0].pruned_outside_filter
        ),
        (4, 3),
        "{r:#?}"
    );
    assert_eq!(sink.count(&c).await.unwrap(), 6);
}

/// Messages name one cause and the fix: an unreachable MongoDB printed the driver's topology
/// dump twice; `search` blamed `--vector-name` for unrelated errors; `verify` against a
/// collection of another dimension reported every point "missing".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_name_one_cause_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let f = dir.path().join("notes.jsonl");
    std::fs::write(&f, "{\"_id\": 1, \"text\": \"one\"}\n").unwrap();
    let uri = format!(
        "mongodb://127.0.0.1:{}/?serverSelectionTimeoutMS=500",
        common::free_port()
    );
    let out = bin()
        .args(["sync", "--quiet", "--retries", "1", "--mongo-uri", &uri])
        .args(["--database", "x", "--collection", "y", "--qdrant-path"])
        .arg(&store)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let e = stderr(&out);
    let last = e.lines().last().unwrap_or_default();
    assert!(
        last.contains("no MongoDB server reachable") && last.contains("--mongo-uri"),
        "{e}"
    );
    assert_eq!(last.matches("refused").count(), 1, "{last}");
    assert!(
        !last.contains("Topology") && !last.contains("labels"),
        "{last}"
    );

    // A target collection of another dimension (an older model).
    {
        let sink = mongo2qdrant::sink::EdgeSink::open(&store).unwrap();
        let spec = mongo2qdrant::sink::VectorSpec {
            name: None,
            dimension: 3,
            distance: Default::default(),
        };
        use mongo2qdrant::sink::Sink;
        sink.create_collection("notes", &spec, &Default::default())
            .await
            .unwrap();
        sink.create_collection(
            "named",
            &mongo2qdrant::sink::VectorSpec {
                name: Some("title".into()),
                dimension: 384,
                distance: Default::default(),
            },
            &Default::default(),
        )
        .await
        .unwrap();
    }
    let out = bin()
        .args(["verify", "--file"])
        .arg(&f)
        .args(["--database", "x", "--qdrant-path"])
        .arg(&store)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let e = stderr(&out);
    assert!(e.contains("dimension 3") && !e.contains("missing"), "{e}");

    let search = |coll: &str, extra: &[&str]| {
        bin()
            .args([
                "search",
                "hello",
                "--collection-name",
                coll,
                "--qdrant-path",
            ])
            .arg(&store)
            .args(extra)
            .output()
            .unwrap()
    };
    let out = search("nothing", &[]);
    assert_eq!(out.status.code(), Some(1));
    let e = stderr(&out);
    assert!(
        e.contains("does not exist") && !e.contains("--vector-name"),
        "{e}"
    );
    let out = search("named", &[]);
    let e = stderr(&out);
    assert!(
        e.contains("named vectors title") && e.contains("--vector-name"),
        "{e}"
    );
    let out = search("notes", &[]);
    let e = stderr(&out);
    assert!(
        e.contains("dimension 3") && !e.contains("--vector-name"),
        "{e}"
    );
}

/// `verify` and the unchanged check trusted the stored hashes alone: a copied value edited in
/// Qdrant, a vector overwritten, a named vector deleted while its hash key stays, an edited
/// `_id` or `chunk` were all "in sync", and `sync` never repaired them. `--deep` checks the
/// points themselves (`--sample N` also the vectors against the model) and `sync --deep`
/// writes the documents again.
async fn deep_verify_finds_and_deep_sync_repairs_what_hashes_miss<S: mongo2qdrant::sink::Sink>(
    sink: std::sync::Arc<S>,
) {
    use mongodb::bson::Bson;
    let m = Mongo::start();
    let c = common::unique("tamper");
    let docs: Vec<Document> = (0..6)
        .map(|i| doc! {"_id": i, "text": format!("note {i} about topic {}", i % 3), "title": format!("title {i}"), "kind": "a"})
        .collect();
    m.insert("x", &c, docs).await;
    let body = common::sync_of(&m, "x", &[&c])
        .payload(&["kind"])
        .vector(Some("body"));
    let title = common::sync_of(&m, "x", &[&c])
        .template("{title}")
        .vector(Some("title"));
    let mut jobs = body.jobs().await;
    jobs.extend(title.jobs().await);
    common::sync_jobs(&sink, jobs.clone(), common::options())
        .await
        .unwrap();

    let pid = |i: i32| mongo2qdrant::ids::point_id("x", &c, &Bson::Int32(i), 0);
    let set = |k: &str, v: serde_json::Value| {
        let mut m = serde_json::Map::new();
        m.insert(k.to_owned(), v);
        m
    };
    sink.set_payload(&c, &[pid(1)], set("kind", "forged".into()), false)
        .await
        .unwrap();
    sink.update_vectors(&c, "body", vec![(pid(2), vec![0.05; 384])])
        .await
        .unwrap();
    sink.remove_vector(&c, "body", &[pid(3)], &["no_such_key".to_owned()])
        .await
        .unwrap();
    sink.set_payload(&c, &[pid(4)], set("_id", 999.into()), false)
        .await
        .unwrap();
    sink.set_payload(&c, &[pid(5)], set("chunk", 7.into()), false)
        .await
        .unwrap();

    let verify = |deep: bool, sample: usize| {
        let (sink, jobs) = (sink.clone(), jobs.clone());
        async move {
            let mut o = common::options();
            o.deep = deep;
            o.sample = sample;
            let v = mongo2qdrant::verify::verify(sink, common::embedder(), jobs, &o)
                .await
                .unwrap();
            let n: Vec<u64> = v.namespaces.iter().map(|n| n.defective).collect();
            (v, n)
        }
    };
    let (v, _) = verify(false, 0).await;
    assert!(v.in_sync, "the hashes alone see nothing: {v:#?}");
    let (v, n) = verify(true, 0).await;
    assert_eq!(n, [4, 2], "{v:#?}");
    assert!(!v.in_sync);
    let (v, n) = verify(true, 6).await;
    assert_eq!(n, [5, 2], "{v:#?}");
    let why = |id: &str| {
        v.namespaces[0]
            .defects
            .iter()
            .find(|d| d.doc_id == id)
            .map(|d| d.reason.clone())
            .unwrap_or_default()
    };
    assert!(why("1").contains("`kind`"), "{}", why("1"));
    assert!(why("2").contains("cosine"), "{}", why("2"));
    assert!(why("3").contains("no vector `body`"), "{}", why("3"));

    let mut o = common::options();
    o.deep = true;
    let r = common::sync_jobs(&sink, jobs.clone(), o.clone())
        .await
        .unwrap();
    assert_eq!(r.counts.repaired, 4, "{r:#?}");
    let (_, n) = verify(true, 6).await;
    assert_eq!(n, [1, 0], "the overwritten vector needs --sample");
    o.sample = 6;
    let r = common::sync_jobs(&sink, jobs.clone(), o).await.unwrap();
    assert_eq!(r.counts.repaired, 1, "{r:#?}");
    let (v, n) = verify(true, 6).await;
    assert_eq!(n, [0, 0], "{v:#?}");
    assert!(v.in_sync, "{v:#?}");
}

both_targets!(
    a_deeply_nested_copied_field_never_wedges_the_target,
    recreate_rebuilds_every_vector_of_a_target,
    a_narrowed_filter_says_which_pruned_points_are_outside_it,
    deep_verify_finds_and_deep_sync_repairs_what_hashes_miss,
);
