//! `watch` against a real MongoDB-protocol server (change streams) and both targets: changes
//! made while it runs reach the target (deleted documents and documents that leave the filter
//! lose their points), a restart applies what changed while it was down without a pass, lost
//! history is reconciled with a pass and prune; as a process: kill -9 while writes continue and
//! a restart converge, a second watcher exits 4, SIGTERM exits 5 with the token saved, the
//! probes and metrics answer.

use crate::common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::{Mongo, sync_of};
use mongo2qdrant::metrics::Metrics;
use mongo2qdrant::pipeline::{self, Job, PipelineError, SyncOptions, WatchOptions};
use mongo2qdrant::report::{Counts, RunReport, Stats};
use mongo2qdrant::sink::Sink;
use mongodb::bson::{Document, doc};

pub(crate) const DB: &str = "watch";
const TEMPLATE: &str = r"{title}\n{extract}";
/// Documents that leave this filter lose their points.
const FILTER: &str = r#"{"hidden": {"$ne": true}}"#;

/// A `watch` running in this process.
pub(crate) struct Running {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<RunReport, PipelineError>>,
    metrics: Arc<Metrics>,
    stats: Arc<Stats>,
}

pub(crate) fn start<S: Sink>(sink: &Arc<S>, jobs: Vec<Job>) -> Running {
    start_with(sink, jobs, |_| {})
}

/// [`start`] with `tune` applied to the options.
fn start_with<S: Sink>(
    sink: &Arc<S>,
    jobs: Vec<Job>,
    tune: impl FnOnce(&mut SyncOptions),
) -> Running {
    let (stop, rx) = tokio::sync::watch::channel(false);
    let mut opts = SyncOptions::new(rx);
    opts.batch_docs = 32;
    tune(&mut opts);
    let stats = Arc::new(Stats::default());
    let metrics = Arc::new(Metrics::new(1, stats.clone()));
    let mut w = WatchOptions::new(metrics.clone());
    w.delay = Duration::from_millis(100);
    let task = tokio::spawn(pipeline::watch(
        sink.clone(),
        common::worker(),
        jobs,
        opts,
        w,
        stats.clone(),
    ));
    Running {
        stop,
        task,
        metrics,
        stats,
    }
}

impl Running {
    /// Wait until every initial pass is done (`/healthz` would say ready).
    pub(crate) async fn ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while self.metrics.health().is_err() {
            assert!(!self.task.is_finished(), "watch ended before it was ready");
            assert!(Instant::now() < deadline, "{:?}", self.metrics.health());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Whether the watch has ended (on its own: an error).
    pub(crate) fn finished(&self) -> bool {
        self.task.is_finished()
    }

    /// The error the watch ended with.
    pub(crate) async fn error(self) -> String {
        match self.task.await.unwrap() {
            Ok(r) => panic!("the watch ended without an error: {r:?}"),
            Err(e) => e.to_string(),
        }
    }

    /// SIGTERM's path: stop, and the report.
    pub(crate) async fn stop(self) -> RunReport {
        self.stop.send(true).unwrap();
        let r = self.task.await.unwrap().unwrap();
        assert!(r.interrupted);
        r
    }
}

/// A server with `n` movies in `watch.films`, and the jobs into a new target named `name_*`.
pub(crate) async fn setup(n: usize, name: &str, args: &[&str]) -> (Mongo, Vec<Job>) {
    let m = Mongo::start_with(args);
    common::load_movies(&m, DB, "films", n).await;
    let target = common::unique(name);
    let jobs = jobs_of(&m, "films", &target).jobs().await;
    (m, jobs)
}

pub(crate) fn jobs_of<'a>(m: &'a Mongo, coll: &str, target: &str) -> common::SyncOf<'a> {
    sync_of(m, DB, &[coll])
        .template(TEMPLATE)
        .payload(&["title", "year"])
        .filter(FILTER)
        .target(Some(target))
}

/// Wait until `verify` finds the target in step with the source.
pub(crate) async fn until_in_sync<S: Sink>(sink: &Arc<S>, jobs: &[Job]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = mongo2qdrant::verify::verify(
            sink.clone(),
            common::embedder(),
            jobs.to_vec(),
            &common::options(),
        )
        .await
        .unwrap();
        if r.in_sync {
            return;
        }
        assert!(Instant::now() < deadline, "never in sync: {r:#?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn delta(after: &Counts, before: &Counts) -> Counts {
    Counts {
        read: after.read - before.read,
        embedded: after.embedded - before.embedded,
        skipped_unchanged: after.skipped_unchanged - before.skipped_unchanged,
        payload_updated: after.payload_updated - before.payload_updated,
        deleted: after.deleted - before.deleted,
        upserted: after.upserted - before.upserted,
        ..Counts::default()
    }
}

/// One change of each kind: insert, text update, unrelated update, payload update, delete, a
/// document leaving the filter.
async fn change_each_kind(m: &Mongo, coll: &str) {
    let c = m.client().await;
    let films = c.database(DB).collection::<Document>(coll);
    let mut new = common::movies(41).pop().unwrap();
    new.insert("_id", 1000);
    films.insert_one(new).await.unwrap();
    let set = |d: Document| doc! {"$set": d};
    films
        .update_one(
            doc! {"_id": 1},
            set(doc! {"extract": "A film rewritten while watched."}),
        )
        .await
        .unwrap();
    films
        .update_one(doc! {"_id": 2}, set(doc! {"views": 7}))
        .await
        .unwrap();
    films
        .update_one(doc! {"_id": 3}, set(doc! {"year": 1999}))
        .await
        .unwrap();
    films.delete_one(doc! {"_id": 4}).await.unwrap();
    films
        .update_one(doc! {"_id": 5}, set(doc! {"hidden": true}))
        .await
        .unwrap();
}

both_targets!(changes_while_watching_reach_the_target);

async fn changes_while_watching_reach_the_target<S: Sink>(sink: Arc<S>) {
    let (m, jobs) = setup(40, "watched", &[]).await;
    let w = start(&sink, jobs.clone());
    w.ready().await;
    until_in_sync(&sink, &jobs).await;
    let before = w.stats.snapshot();
    assert_eq!(
        before.embedded, 40,
        "the initial pass embeds every document"
    );

    change_each_kind(&m, "films").await;
    until_in_sync(&sink, &jobs).await;
    // Each document's change costs what it changed: two embeddings (the new and the rewritten
    // document), a payload rewrite, nothing for a field outside text and payload, the points
    // of the deleted and the hidden document.
    let deadline = Instant::now() + Duration::from_secs(30);
    let d = loop {
        let d = delta(&w.stats.snapshot(), &before);
        if d.deleted >= 2 || Instant::now() > deadline {
            break d;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        (
            d.embedded,
            d.payload_updated,
            d.skipped_unchanged,
            d.deleted
        ),
        (2, 1, 1, 2),
        "{d:?}"
    );
    let text = w.metrics.render();
    assert!(
        text.contains("mongo2qdrant_events_applied_total{kind=\"update\"} 4"),
        "{text}"
    );
    assert!(text.contains("mongo2qdrant_events_applied_total{kind=\"delete\"} 1"));
    let r = w.stop().await;
    assert_eq!(r.counts.failed, 0);
}

both_targets!(a_restart_applies_what_changed_while_it_was_down);

async fn a_restart_applies_what_changed_while_it_was_down<S: Sink>(sink: Arc<S>) {
    let (m, jobs) = setup(40, "restarted", &[]).await;
    let w = start(&sink, jobs.clone());
    w.ready().await;
    w.stop().await;

    change_each_kind(&m, "films").await;
    let w = start(&sink, jobs.clone());
    w.ready().await;
    until_in_sync(&sink, &jobs).await;
    let r = w.stop().await;
    // No pass: of the six changed documents, the four that still match the filter were read.
    assert_eq!(r.counts.read, 4, "{:?}", r.counts);
    assert_eq!(r.counts.embedded, 2, "{:?}", r.counts);
}

both_targets!(lost_history_is_reconciled_with_a_pass_and_prune);

async fn lost_history_is_reconciled_with_a_pass_and_prune<S: Sink>(sink: Arc<S>) {
    // A server that keeps only 10 oplog entries (it prunes every 1000 writes).
    let (m, jobs) = setup(40, "reconciled", &["--oplog-max-entries", "10"]).await;
    let w = start(&sink, jobs.clone());
    w.ready().await;
    w.stop().await;

    // While nobody watches: changes, then enough other writes to push them out of the oplog.
    change_each_kind(&m, "films").await;
    let filler: Vec<Document> = (0..1100).map(|i| doc! {"_id": i, "n": i}).collect();
    m.insert(DB, "filler", filler).await;

    let w = start(&sink, jobs.clone());
    w.ready().await;
    let text = w.metrics.render();
    assert!(text.contains("mongo2qdrant_reconciles_total 1"), "{text}");
    // The pass pruned the deleted and the hidden document.
    until_in_sync(&sink, &jobs).await;
    // And the new stream applies what comes next.
    let c = m.client().await;
    c.database(DB)
        .collection::<Document>("films")
        .delete_one(doc! {"_id": 6})
        .await
        .unwrap();
    until_in_sync(&sink, &jobs).await;
    w.stop().await;
}

// ---- the binary: kill -9, a second watcher, SIGTERM, probes ----

fn watch_cmd(m: &Mongo, store: &std::path::Path, metrics: u16) -> std::process::Command {
    let mut c = watch_of(m, metrics);
    c.arg("--qdrant-path").arg(store);
    c
}

/// `watch` of `watch.films` with its metrics on `metrics`, the target still to be given.
fn watch_of(m: &Mongo, metrics: u16) -> std::process::Command {
    let mut c = common::bin();
    c.args([
        "watch",
        "--quiet",
        "--database",
        DB,
        "--collection",
        "films",
    ])
    .args(["--mongo-uri", &m.uri()])
    .args([
        "--text",
        TEMPLATE,
        "--payload",
        "title,year",
        "--filter",
        FILTER,
    ])
    .args(["--watch-delay-ms", "100"])
    .args(["--metrics-addr", &format!("127.0.0.1:{metrics}")])
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::piped());
    c
}

/// GET `path` on loopback `port`: (status code, body); `None` when nothing listens.
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes())
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let code = out.split_whitespace().nth(1)?.parse().ok()?;
    let body = out.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    Some((code, body))
}

/// Wait until the watcher on `port` says ready.
fn until_ready(child: &mut std::process::Child, port: u16) {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        if let Some((200, _)) = http_get(port, "/healthz") {
            return;
        }
        if let Some(s) = child.try_wait().unwrap() {
            let mut err = String::new();
            use std::io::Read;
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            panic!("watch exited with {s} before it was ready:\n{err}");
        }
        assert!(Instant::now() < deadline, "watch never became ready");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn sigterm(child: &std::process::Child) {
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_watcher_resumes_and_every_change_lands() {
    let m = Mongo::start();
    common::load_movies(&m, DB, "films", 60).await;
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let port = common::free_port();
    let mut first = watch_cmd(&m, &store, port).spawn().unwrap();
    until_ready(&mut first, port);

    // Writes go on while the watcher is killed and restarted.
    let uri = m.uri();
    let writer = tokio::spawn(async move {
        let c = mongodb::Client::with_uri_str(uri).await.unwrap();
        let films = c.database(DB).collection::<Document>("films");
        for i in 0..40 {
            let id = i % 30;
            let change = if i % 7 == 3 {
                films.delete_one(doc! {"_id": 30 + i}).await.map(|_| ())
            } else {
                films
                    .update_one(
                        doc! {"_id": id},
                        doc! {"$set": {"extract": format!("Edit {i} of film {id}.")}},
                    )
                    .await
                    .map(|_| ())
            };
            change.unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    first.kill().unwrap();
    first.wait().unwrap();

    // A second watcher while the first runs is refused; after the kill, the restart takes over.
    let port2 = common::free_port();
    let mut second = watch_cmd(&m, &store, port2).spawn().unwrap();
    until_ready(&mut second, port2);
    let port3 = common::free_port();
    let third = watch_cmd(&m, &store, port3).output().unwrap();
    assert_eq!(
        third.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&third.stderr)
    );
    writer.await.unwrap();

    // Metrics count what the restart applied.
    let deadline = Instant::now() + Duration::from_secs(60);
    let metrics = loop {
        let (code, body) = http_get(port2, "/metrics").unwrap();
        assert_eq!(code, 200);
        let (_, live) = http_get(port2, "/livez").unwrap();
        assert_eq!(live, "ok\n");
        let lag =
            format!("mongo2qdrant_lag_seconds{{namespace=\"{DB}.films\",target=\"films\"}} 0");
        if body.contains(&lag) && body.contains("kind=\"update\"") {
            break body;
        }
        assert!(Instant::now() < deadline, "{body}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        metrics.contains("mongo2qdrant_batch_seconds_count"),
        "{metrics}"
    );
    std::thread::sleep(Duration::from_secs(2));
    sigterm(&second);
    let status = common::wait_timeout(&mut second, 30).expect("SIGTERM ends watch in time");
    assert_eq!(status.code(), Some(5));

    // Every change landed: the store agrees with the collection.
    let sink = Arc::new(mongo2qdrant::sink::EdgeSink::open(&store).unwrap());
    let jobs = jobs_of(&m, "films", "films").jobs().await;
    common::verify(&sink, jobs).await;
    // And `status` shows where the stream stands.
    drop(sink);
    let out = common::bin()
        .args(["status", "--qdrant-path"])
        .arg(&store)
        .output()
        .unwrap();
    common::assert_ok(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("watch watch.films -> films: streaming"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Qdrant server: tests/run.sh starts one and runs these; or set QDRANT_URL and pass --include-ignored"]
async fn a_second_watcher_on_a_server_target_exits_4() {
    let url = common::server_url();
    let m = Mongo::start();
    common::load_movies(&m, DB, "films", 10).await;
    let target = common::unique("leased");
    let with_server = |port: u16| {
        let mut c = watch_of(&m, port);
        c.args(["--qdrant-url", &url, "--collection-name", &target]);
        c
    };
    let port = common::free_port();
    let mut first = with_server(port).spawn().unwrap();
    until_ready(&mut first, port);
    let second = with_server(common::free_port()).output().unwrap();
    assert_eq!(
        second.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    sigterm(&first);
    let status = common::wait_timeout(&mut first, 30).expect("SIGTERM ends watch in time");
    assert_eq!(status.code(), Some(5));
    // The lease was released: a new watcher starts at once, and resumes without a pass.
    let port = common::free_port();
    let mut again = with_server(port).spawn().unwrap();
    until_ready(&mut again, port);
    sigterm(&again);
    assert_eq!(
        common::wait_timeout(&mut again, 30).and_then(|s| s.code()),
        Some(5)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_refuses_files_and_dry_runs() {
    let dir = tempfile::tempdir().unwrap();
    let file = common::repo().join(common::MOVIES);
    let out = common::bin()
        .args(["watch", "--file"])
        .arg(&file)
        .arg("--qdrant-path")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no change stream"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = common::bin()
        .args(["watch", "--dry-run", "--database", "x", "--collection", "y"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--dry-run is for `sync`"));
}

both_targets!(a_dropped_and_restored_collection_is_reconciled);

async fn a_dropped_and_restored_collection_is_reconciled<S: Sink>(sink: Arc<S>) {
    let (m, jobs) = setup(20, "restored", &[]).await;
    // A restore replaces most documents: allow the prune that follows the drop.
    let running = start_with(&sink, jobs.clone(), |o| {
        o.max_delete = mongo2qdrant::pipeline::guard::MaxDelete::Share(100);
    });
    running.ready().await;
    until_in_sync(&sink, &jobs).await;

    // mongorestore --drop: the collection goes, and comes back with other documents.
    let c = m.client().await;
    let films = c.database(DB).collection::<Document>("films");
    films.drop().await.unwrap();
    let back: Vec<Document> = common::movies(30)[20..]
        .iter()
        .cloned()
        .enumerate()
        .map(|(i, mut d)| {
            d.insert("_id", 500 + i as i32);
            d
        })
        .collect();
    films.insert_many(back).await.unwrap();
    until_in_sync(&sink, &jobs).await;
    assert!(
        running
            .metrics
            .render()
            .contains("mongo2qdrant_reconciles_total 1")
    );
    // The new stream goes on after the reconcile.
    films.delete_one(doc! {"_id": 501}).await.unwrap();
    until_in_sync(&sink, &jobs).await;
    running.stop().await;
}

both_targets!(a_target_dropped_while_nobody_watched_is_filled_again);

async fn a_target_dropped_while_nobody_watched_is_filled_again<S: Sink>(sink: Arc<S>) {
    let (_m, jobs) = setup(20, "refilled", &[]).await;
    let w = start(&sink, jobs.clone());
    w.ready().await;
    w.stop().await;
    // An operator drops the collection to rebuild it; the stream position stays behind in the
    // records collection.
    sink.drop_collection(&jobs[0].target).await.unwrap();
    let w = start(&sink, jobs.clone());
    w.ready().await;
    until_in_sync(&sink, &jobs).await;
    let r = w.stop().await;
    assert_eq!(r.counts.embedded, 20, "{:?}", r.counts);
}
