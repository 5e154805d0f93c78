//! A randomized, seeded, model-based fault harness (in the spirit of FoundationDB's simulation
//! and Jepsen's checked histories). Each iteration builds a random collection (every kind of
//! `_id`, texts long enough to chunk, a copied field, the unnamed or a named vector), read
//! either from MongoDB or from a dump of it (a JSONL file in random order under the
//! collection's namespace), then runs rounds of random mutations (inserts, updates of text and
//! payload, lost texts, deletes, also below the checkpoint, and also while a run is going) and
//! syncs under random faults: MongoDB fail points (dropped connections, lost cursors, failing
//! commands), MongoDB restarted mid-run, failing target writes (transient and permanent), a
//! stop request, a crash (every write from a random one on fails, as the target sees a dead
//! process) and, on a Qdrant server, a kill -9 of the real binary at a random moment. A last
//! clean run with prune must leave the target equal to an oracle computed from the source
//! alone: the same point ids, hashes and copied values, this job's vector on every point, no
//! orphan, and `verify` in sync.
//!
//! Every iteration prints its seed; `M2Q_HARNESS_SEED=S M2Q_HARNESS_ITERATIONS=1` replays one
//! (the same source, mutations and faults; what a concurrent mutation or a kill -9 meets
//! depends on timing). CI runs a few iterations per target; set `M2Q_HARNESS_ITERATIONS` for
//! more.

use crate::common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::common::{Mongo, unique};
use mongo2qdrant::pipeline::guard::MaxDelete;
use mongo2qdrant::pipeline::{Chunking, SyncOptions};
use mongo2qdrant::point::{hash_context, keys, prepare_doc};
use mongo2qdrant::sink::{MatchFilter, Sink, SinkError, scroll_all};
use mongo2qdrant::source::SourceDoc;
use mongodb::bson::oid::ObjectId;
use mongodb::bson::{Bson, DateTime, Document, doc};
use serde_json::Value;
use uuid::Uuid;

/// xorshift64*: small, seeded, the same on every machine.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len() as u64) as usize]
    }
}

const WORDS: &[&str] = &[
    "river", "mountain", "harbour", "engine", "violin", "garden", "comet", "ledger", "falcon",
    "lantern", "orchard", "glacier", "market", "thunder", "canyon", "meadow",
];

fn text(rng: &mut Rng) -> String {
    let n = if rng.chance(25) {
        60 + rng.below(80)
    } else {
        3 + rng.below(12)
    };
    (0..n)
        .map(|_| *rng.pick(WORDS))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A random `_id` of a random BSON type; `k` keeps them distinct.
fn id(rng: &mut Rng, k: u64) -> Bson {
    match rng.below(7) {
        0 => Bson::Int32(k as i32),
        1 => Bson::Int64(1_000_000 + k as i64),
        2 => Bson::Double(k as f64 + 0.25),
        3 => Bson::String(format!("s{k:05}")),
        4 => Bson::Document(doc! {"z": k as i64, "a": "x"}),
        5 => Bson::ObjectId(ObjectId::from_bytes({
            let mut b = [7u8; 12];
            b[4..12].copy_from_slice(&k.to_be_bytes());
            b
        })),
        _ => Bson::DateTime(DateTime::from_millis(1_600_000_000_000 + k as i64)),
    }
}

fn new_doc(rng: &mut Rng, k: u64) -> Document {
    let mut d = doc! {"_id": id(rng, k), "text": text(rng)};
    if rng.chance(70) {
        d.insert("tag", *rng.pick(WORDS));
    }
    d
}

/// Which target writes fail (counting every write: upsert, update-vectors, set-payload,
/// remove-vector, delete, of the data and of the records).
#[derive(Clone, Copy, Debug)]
enum Fault {
    /// The n-th write fails once, as a timeout would (the retry policy tries again).
    Transient(u64),
    /// From the n-th write on, every write fails: the process is gone (a kill -9 at that
    /// point, as the target sees it).
    Crash(u64),
}

/// The fault of a round, checked before every write (`writes` counts them).
struct Injector {
    writes: AtomicU64,
    fault: std::sync::Mutex<Option<Fault>>,
}

impl Injector {
    fn trip(&self, collection: &str) -> Result<(), SinkError> {
        let n = self.writes.fetch_add(1, Ordering::SeqCst);
        let mut f = self.fault.lock().unwrap();
        let transient = match *f {
            Some(Fault::Transient(k)) if k == n => {
                *f = None;
                true
            }
            Some(Fault::Crash(k)) if n >= k => false,
            _ => return Ok(()),
        };
        Err(common::injected(collection, transient))
    }
}

/// One random mutation of `coll` among the `ids` it had (or an insert with key `key`); a
/// failure (the server restarting under it) is ignored: the oracle reads what is there.
async fn mutate(coll: &mongodb::Collection<Document>, rng: &mut Rng, ids: &[Bson], key: u64) {
    let Some(id) = (!ids.is_empty()).then(|| rng.pick(ids).clone()) else {
        return;
    };
    match rng.below(5) {
        0 => {
            let _ = coll.insert_one(new_doc(rng, key)).await;
        }
        1 => {
            let _ = coll.delete_one(doc! {"_id": id}).await;
        }
        2 => {
            let t = text(rng);
            let _ = coll
                .update_one(doc! {"_id": id}, doc! {"$set": {"text": t}})
                .await;
        }
        3 => {
            let t = *rng.pick(WORDS);
            let _ = coll
                .update_one(doc! {"_id": id}, doc! {"$set": {"tag": t}})
                .await;
        }
        _ => {
            let _ = coll
                .update_one(doc! {"_id": id}, doc! {"$unset": {"text": ""}})
                .await;
        }
    }
}

/// Dump `coll` to `path` as a mongoexport-like JSONL file (canonical Extended JSON, so every
/// `_id` keeps its type), in random order.
async fn export(coll: &mongodb::Collection<Document>, path: &std::path::Path, rng: &mut Rng) {
    use futures_util::TryStreamExt;
    let mut docs: Vec<Document> = coll
        .find(doc! {})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    for i in (1..docs.len()).rev() {
        docs.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let lines: Vec<String> = docs
        .into_iter()
        .map(|d| Bson::Document(d).into_canonical_extjson().to_string())
        .collect();
    std::fs::write(path, lines.join("\n")).unwrap();
}

/// The job of an iteration: the collection `c` of database `h`, or its dump `file` under the
/// collection's namespace (so the same point ids).
async fn jobs_of(
    m: &Mongo,
    c: &str,
    vector: Option<&str>,
    file: Option<&std::path::Path>,
    cursor_batch: u32,
    template: &str,
) -> Vec<mongo2qdrant::pipeline::Job> {
    let Some(f) = file else {
        return common::sync_of(m, "h", &[c])
            .template(template)
            .payload(&["tag"])
            .vector(vector)
            .cursor_batch(cursor_batch)
            .jobs()
            .await;
    };
    let mut source = common::source_args(m, "h", &[]);
    source.files = vec![f.to_path_buf()];
    source.namespace = Some(format!("h.{c}"));
    let mut jobs = mongo2qdrant::config::jobs(&source, Some(c), template, &["tag".to_owned()])
        .await
        .unwrap();
    for j in &mut jobs {
        j.vector_name = vector.map(str::to_owned);
    }
    jobs
}

/// Flags of the real binary for the same job (the kill -9 fault).
#[allow(clippy::too_many_arguments)]
fn binary_args(
    m: &Mongo,
    c: &str,
    vector: Option<&str>,
    file: Option<&std::path::Path>,
    chunking: Option<Chunking>,
    o: &SyncOptions,
    watching: bool,
    template: &str,
) -> Vec<String> {
    let command = if watching { "watch" } else { "sync" };
    let mut a: Vec<String> = [command, "--quiet", "--text", template, "--payload", "tag"]
        .map(str::to_owned)
        .to_vec();
    if watching {
        a.extend(["--watch-delay-ms".into(), "100".into()]);
    }
    match file {
        Some(f) => a.extend([
            "--file".into(),
            f.display().to_string(),
            "--namespace".into(),
            format!("h.{c}"),
        ]),
        None => a.extend([
            "--mongo-uri".into(),
            m.uri(),
            "--database".into(),
            "h".into(),
            "--collection".into(),
            c.into(),
        ]),
    }
    a.extend(["--collection-name".into(), c.into()]);
    a.extend(["--batch-size".into(), o.batch_docs.to_string()]);
    if let Some(v) = vector {
        a.extend(["--vector-name".into(), v.into()]);
    }
    if let Some(ch) = chunking {
        a.extend([
            "--chunk-size".into(),
            ch.size.to_string(),
            "--chunk-overlap".into(),
            ch.overlap.to_string(),
        ]);
    }
    if o.prune {
        a.push("--prune".into());
    }
    if o.fresh {
        a.push("--fresh".into());
    }
    a
}

/// Faults injected, by kind, over all iterations.
#[derive(Default, Debug)]
struct Tally(BTreeMap<&'static str, u64>);

impl Tally {
    /// Counts `kind` and prints it, so a failing seed's output says what it met.
    fn add(&mut self, kind: &'static str) {
        eprintln!("harness:   {kind}");
        *self.0.entry(kind).or_default() += 1;
    }
}

/// One iteration: a random source, rounds of mutations and faulty syncs, a clean run, and the
/// comparison with the oracle. Panics (naming the seed) on any divergence.
async fn iteration<S: Sink>(sink: &Arc<S>, m: &Arc<Mongo>, seed: u64, tally: &mut Tally) {
    let mut rng = Rng::new(seed);
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("dump.jsonl");
    let c = unique("h");
    let coll = m.client().await.database("h").collection::<Document>(&c);
    let mut next_key = 0u64;
    let n = 8 + rng.below(40);
    let docs: Vec<Document> = (0..n)
        .map(|_| {
            next_key += 1;
            new_doc(&mut rng, next_key)
        })
        .collect();
    coll.insert_many(docs).await.unwrap();
    let vector = rng.chance(40).then_some("v");
    let chunking = rng.chance(50).then_some(Chunking {
        size: 32,
        overlap: 4,
    });
    let file = rng.chance(25).then_some(dump.as_path());
    if file.is_some() {
        tally.add("source: a dump file");
    }
    // `watch` instead of `sync`: every round runs it for a while (stopped, or killed), and a
    // last clean `watch`, not a sync with prune, must reach the oracle.
    let watching = file.is_none() && rng.chance(35);
    if watching {
        tally.add("watch instead of sync");
    }
    let run_id = format!("harness-{seed}");
    let injector = Arc::new(Injector {
        writes: AtomicU64::new(0),
        fault: std::sync::Mutex::new(None),
    });
    let faulty = {
        let injector = injector.clone();
        common::Faulty::new(sink.clone(), move |_, c: &str| injector.trip(c))
    };

    for _round in 0..(2 + rng.below(4)) {
        // Mutations: a few of each kind, any `_id` (also below the checkpoint).
        let all: Vec<Document> = {
            use futures_util::TryStreamExt;
            coll.find(doc! {})
                .await
                .unwrap()
                .try_collect()
                .await
                .unwrap()
        };
        for d in &all {
            let id = d.get("_id").unwrap().clone();
            match rng.below(100) {
                0..=5 => {
                    coll.delete_one(doc! {"_id": id}).await.unwrap();
                }
                6..=14 => {
                    let t = text(&mut rng);
                    coll.update_one(doc! {"_id": id}, doc! {"$set": {"text": t}})
                        .await
                        .unwrap();
                }
                15..=20 => {
                    let t = *rng.pick(WORDS);
                    coll.update_one(doc! {"_id": id}, doc! {"$set": {"tag": t}})
                        .await
                        .unwrap();
                }
                21..=22 => {
                    coll.update_one(doc! {"_id": id}, doc! {"$unset": {"tag": ""}})
                        .await
                        .unwrap();
                }
                23 => {
                    coll.update_one(doc! {"_id": id}, doc! {"$unset": {"text": ""}})
                        .await
                        .unwrap();
                }
                24..=25 if matches!(id, Bson::Int32(_)) => {
                    // The same number under another type, in one transaction (one micro-batch
                    // for a watch): MongoDB holds another key, the point id stays the same.
                    tally.add("mutation: a numeric _id retyped in one transaction");
                    let Bson::Int32(k) = id else { unreachable!() };
                    let mut moved = d.clone();
                    moved.insert(
                        "_id",
                        if rng.chance(50) {
                            Bson::Int64(i64::from(k))
                        } else {
                            Bson::Double(f64::from(k))
                        },
                    );
                    let mut session = coll.client().start_session().await.unwrap();
                    session.start_transaction().await.unwrap();
                    coll.delete_one(doc! {"_id": k})
                        .session(&mut session)
                        .await
                        .unwrap();
                    coll.insert_one(moved).session(&mut session).await.unwrap();
                    session.commit_transaction().await.unwrap();
                }
                _ => {}
            }
        }
        for _ in 0..rng.below(6) {
            next_key += 1;
            coll.insert_one(new_doc(&mut rng, next_key)).await.unwrap();
        }

        // A sync under a random fault.
        if let Some(f) = file {
            export(&coll, f, &mut rng).await;
        }
        let mut o: SyncOptions = common::options();
        o.run_id = run_id.clone();
        o.batch_docs = 3 + rng.below(12) as usize;
        o.prune = rng.chance(50);
        // A watch started with other settings, or --fresh, after the changes made while it
        // was down: a pass replaces the stored stream, and must prune what went meanwhile
        // (the clean watch at the end, with the iteration's own template, is another).
        let template = if watching && rng.chance(20) {
            tally.add("watch: another --text this round");
            "{text} {tag}"
        } else {
            "{text}"
        };
        if watching && rng.chance(15) {
            tally.add("watch: --fresh");
            o.fresh = true;
        }
        o.chunking = chunking;
        o.retry.base = Duration::from_millis(5);
        o.retry.max = Duration::from_millis(20);
        let (stop_tx, stop) = tokio::sync::watch::channel(false);
        let stop_tx = Arc::new(stop_tx);
        o.stop = stop;
        *injector.fault.lock().unwrap() = None;
        injector.writes.store(0, Ordering::SeqCst);
        let mut restart = None;
        let mut kill = None;
        match rng.below(10) {
            0 => {
                tally.add("mongo: dropped connection on getMore");
                let skip = rng.below(3) as i32;
                m.fail_once(
                    skip,
                    doc! {"failCommands": ["getMore"], "closeConnection": true},
                )
                .await;
            }
            1 => {
                tally.add("mongo: cursor lost (43) on getMore");
                let skip = rng.below(3) as i32;
                m.fail_once(skip, doc! {"failCommands": ["getMore"], "errorCode": 43})
                    .await;
            }
            2 => {
                tally.add("mongo: failing find/getMore (fatal)");
                let skip = rng.below(4) as i32;
                m.fail_once(
                    skip,
                    doc! {"failCommands": ["getMore", "find"], "errorCode": 2},
                )
                .await;
            }
            3 | 4 => {
                tally.add("target: transient write failure");
                *injector.fault.lock().unwrap() = Some(Fault::Transient(rng.below(12)));
            }
            5 => {
                tally.add("stop request (SIGTERM)");
                let ms = rng.below(300);
                let stop_tx = stop_tx.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    let _ = stop_tx.send(true);
                });
            }
            6 => {
                tally.add("crash (every write from a random one on fails)");
                *injector.fault.lock().unwrap() = Some(Fault::Crash(rng.below(16)));
            }
            7 if file.is_none() => {
                tally.add("mongo: server restarted mid-run");
                restart = Some(Duration::from_millis(rng.below(400)));
            }
            8 if sink.needs_lease() => {
                tally.add("kill -9 of the binary (Qdrant server)");
                kill = Some(Duration::from_millis(200 + rng.below(2500)));
            }
            _ => tally.add("none"),
        }
        // Mutations while the run goes, from their own seed.
        let concurrent = rng.chance(30).then(|| {
            tally.add("mutations during the run");
            let (coll, seed, key) = (coll.clone(), rng.next(), next_key);
            next_key += 10;
            tokio::spawn(async move {
                use futures_util::TryStreamExt;
                let mut r = Rng::new(seed);
                let Ok(found) = coll.find(doc! {}).await else {
                    return;
                };
                let ids: Vec<Bson> = found
                    .try_collect::<Vec<Document>>()
                    .await
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|d| d.get("_id").cloned())
                    .collect();
                for k in 0..(1 + r.below(6)) {
                    tokio::time::sleep(Duration::from_millis(r.below(120))).await;
                    mutate(&coll, &mut r, &ids, key + k).await;
                }
            })
        });
        let cursor_batch = 2 + rng.below(10) as u32;
        let restarter = restart.map(|delay| {
            let m = m.clone();
            std::thread::spawn(move || {
                std::thread::sleep(delay);
                m.restart();
            })
        });
        if let Some(after) = kill {
            let url = std::env::var("QDRANT_URL").unwrap();
            let mut child = common::bin()
                .args(binary_args(
                    m, &c, vector, file, chunking, &o, watching, template,
                ))
                .args(["--qdrant-url", &url])
                .spawn()
                .unwrap();
            tokio::time::sleep(after).await;
            let _ = child.kill();
            let _ = child.wait();
        } else if watching {
            // The round's stop (also the SIGTERM fault's) stops the watch.
            let jobs = jobs_of(m, &c, vector, file, cursor_batch, template).await;
            let (w, _) = start_watch(&faulty, jobs, o);
            tokio::time::sleep(Duration::from_millis(200 + rng.below(1500))).await;
            if rng.chance(30) {
                tally.add("watch: killed mid-stream (task aborted)");
                w.abort();
            }
            let _ = stop_tx.send(true);
            let _ = w.await;
        } else {
            let jobs = jobs_of(m, &c, vector, file, cursor_batch, template).await;
            let _ = common::sync_jobs(&faulty, jobs, o).await;
        }
        if let Some(t) = restarter {
            t.join().unwrap();
        }
        if let Some(t) = concurrent {
            t.await.unwrap();
        }
        m.fail_point_off().await;
    }
    if let Some(f) = file {
        export(&coll, f, &mut rng).await;
    }

    // A clean run with prune (or a clean watch), then the target must match the oracle.
    let mut o = common::options();
    o.run_id = run_id;
    o.prune = true;
    o.chunking = chunking;
    o.max_delete = MaxDelete::Share(100);
    let jobs = jobs_of(m, &c, vector, file, 100, "{text}").await;
    if watching {
        clean_watch(sink, jobs.clone(), o.clone(), seed).await;
    } else {
        let r = common::sync_jobs(sink, jobs.clone(), o.clone()).await;
        let r = r.unwrap_or_else(|e| panic!("seed {seed}: the clean run failed: {e}"));
        // A resumed pass does not prune: one more full pass does.
        if r.namespaces.iter().any(|n| n.resumed_after.is_some()) {
            common::sync_jobs(sink, jobs.clone(), o.clone())
                .await
                .unwrap();
        }
    }
    check(sink, m, &c, vector, chunking, seed).await;
    let report = mongo2qdrant::verify::verify(sink.clone(), common::embedder(), jobs, &o)
        .await
        .unwrap();
    assert!(report.in_sync, "seed {seed}: verify: {report:#?}");
    // Keep the store small: every later iteration would flush this collection too.
    sink.drop_collection(&c).await.unwrap();
}

type WatchTask = tokio::task::JoinHandle<
    Result<mongo2qdrant::report::RunReport, mongo2qdrant::pipeline::PipelineError>,
>;

/// `watch` of `jobs` into `sink` in a task of its own (100 ms micro-batches).
fn start_watch<S: Sink>(
    sink: &Arc<S>,
    jobs: Vec<mongo2qdrant::pipeline::Job>,
    o: SyncOptions,
) -> (WatchTask, Arc<mongo2qdrant::metrics::Metrics>) {
    let stats = Arc::new(mongo2qdrant::report::Stats::default());
    let metrics = Arc::new(mongo2qdrant::metrics::Metrics::new(1, stats.clone()));
    let mut w = mongo2qdrant::pipeline::WatchOptions::new(metrics.clone());
    w.delay = Duration::from_millis(100);
    let task = tokio::spawn(mongo2qdrant::pipeline::watch(
        sink.clone(),
        common::worker(),
        jobs,
        o,
        w,
        stats,
    ));
    (task, metrics)
}

/// A clean `watch`: ready, then quiet (nothing applied for a second, nothing pending), then
/// stopped.
async fn clean_watch<S: Sink>(
    sink: &Arc<S>,
    jobs: Vec<mongo2qdrant::pipeline::Job>,
    mut o: SyncOptions,
    seed: u64,
) {
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    o.stop = stop;
    o.prune = false;
    let (task, metrics) = start_watch(sink, jobs, o);
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let mut last = String::new();
    loop {
        assert!(
            !task.is_finished(),
            "seed {seed}: the clean watch ended: {:?}",
            task.await
        );
        assert!(
            std::time::Instant::now() < deadline,
            "seed {seed}: the clean watch never settled"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = metrics.render();
        if metrics.health().is_ok() && now == last && now.contains("mongo2qdrant_pending_events 0")
        {
            break;
        }
        last = now;
    }
    stop_tx.send(true).unwrap();
    let r = task.await.unwrap();
    r.unwrap_or_else(|e| panic!("seed {seed}: the clean watch failed: {e}"));
}

/// The target against the oracle: every document's expected points (from the source alone, by
/// the pure preparation) and nothing else.
async fn check<S: Sink>(
    sink: &Arc<S>,
    m: &Mongo,
    c: &str,
    vector: Option<&str>,
    chunking: Option<Chunking>,
    seed: u64,
) {
    let job = common::sync_of(m, "h", &[c])
        .template("{text}")
        .payload(&["tag"])
        .vector(vector)
        .jobs()
        .await
        .remove(0);
    let embedder = common::embedder();
    let model = mongo2qdrant::embed::Embedder::model_id(embedder.as_ref()).to_owned();
    let context = hash_context(&job, chunking);
    let docs: Vec<Document> = {
        use futures_util::TryStreamExt;
        let coll = m.client().await.database("h").collection::<Document>(c);
        coll.find(doc! {})
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap()
    };
    let mut want: BTreeMap<Uuid, (String, Option<String>, Value)> = BTreeMap::new();
    for d in docs {
        let sd = SourceDoc {
            id: d.get("_id").unwrap().clone(),
            doc: d,
        };
        let Some(p) = prepare_doc(&job, &model, &context, chunking, embedder.as_ref(), &sd) else {
            continue;
        };
        let tag = sd
            .doc
            .get("tag")
            .map_or(Value::Null, |t| Value::from(t.as_str().unwrap()));
        for (id, _) in p.chunks {
            want.insert(id, (p.hash.clone(), p.payload_hash.clone(), tag.clone()));
        }
    }
    let filter = MatchFilter {
        key: keys::NAMESPACE.into(),
        value: job.source.namespace().to_string(),
    };
    let points = scroll_all(
        sink.as_ref(),
        c,
        Some(&filter),
        mongo2qdrant::sink::Fields::All,
    )
    .await
    .unwrap();
    let ids: Vec<Uuid> = points.iter().map(|p| p.id).collect();
    let with_vectors = sink
        .retrieve(c, &ids, mongo2qdrant::sink::Fields::All, true)
        .await
        .unwrap();
    let mut got: BTreeMap<Uuid, (String, Option<String>, Value)> = BTreeMap::new();
    for p in with_vectors {
        let name = vector.unwrap_or("");
        assert!(
            p.vectors.iter().any(|v| v == name),
            "seed {seed}: point {} lacks its vector `{name}`: {:?}",
            p.id,
            p.vectors
        );
        let text = |k: &str| p.payload.get(k).and_then(Value::as_str).map(str::to_owned);
        got.insert(
            p.id,
            (
                text(&keys::hash(vector)).unwrap_or_default(),
                text(&keys::payload_hash(vector)),
                p.payload.get("tag").cloned().unwrap_or(Value::Null),
            ),
        );
    }
    let missing: Vec<_> = want.keys().filter(|k| !got.contains_key(k)).collect();
    let extra: Vec<_> = got.keys().filter(|k| !want.contains_key(k)).collect();
    for p in points.iter().filter(|p| extra.contains(&&p.id)) {
        eprintln!("seed {seed}: orphan {} {:?}", p.id, p.payload);
    }
    assert!(
        missing.is_empty() && extra.is_empty(),
        "seed {seed}: {} missing {missing:?}, {} orphaned {extra:?}",
        missing.len(),
        extra.len()
    );
    for (id, w) in &want {
        assert_eq!(&got[id], w, "seed {seed}: point {id} differs");
    }
}

async fn harness<S: Sink>(sink: Arc<S>) {
    let iterations: u64 = std::env::var("M2Q_HARNESS_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let base: u64 = std::env::var("M2Q_HARNESS_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs()
        });
    // --sync-on-commit: what a change stream shows survives a kill -9, as on mongod (whose
    // streams show only majority-committed, on one node journaled, writes). Without it
    // SecantusDB shows writes before they are durable and loses them on kill -9, with the
    // events a watch has already applied.
    let m = Arc::new(Mongo::start_with(&[
        "--enable-test-commands",
        "--sync-on-commit",
    ]));
    let mut tally = Tally::default();
    let started = std::time::Instant::now();
    for i in 0..iterations {
        let seed = base + i;
        eprintln!(
            "harness: iteration {i}, seed {seed} (replay: M2Q_HARNESS_SEED={seed} M2Q_HARNESS_ITERATIONS=1)"
        );
        iteration(&sink, &m, seed, &mut tally).await;
    }
    eprintln!(
        "harness: {iterations} iterations in {:.0?}, zero divergence; faults by kind: {:?}",
        started.elapsed(),
        tally.0
    );
}

both_targets!(harness);
