//! `watch`, measured: change-to-searchable latency of single-document updates at idle (p50 /
//! p99), and the sustained rate of changes it keeps up with, on the embedded store and (with
//! `QDRANT_URL`) on a Qdrant server. A real MongoDB-protocol server (SecantusDB from `.venv`,
//! as `tests/run.sh` installs it), the real model, `watch` in this process.
//!
//! `cargo +nightly bench --bench watch_latency` (after `bash tests/run.sh` once, or
//! `bash models/fetch.sh` and the SecantusDB venv); `-- --updates N --burst M` to size it,
//! `-- --delay-ms D` for `--watch-delay-ms` (default 200).
//!
//! "Searchable" means the point's content hash in the target is the new text's: the point the
//! target returns to a search from then on is the new one.

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use mongo2qdrant::metrics::Metrics;
use mongo2qdrant::pipeline::{self, SyncOptions, WatchOptions};
use mongo2qdrant::point::keys;
use mongo2qdrant::report::Stats;
use mongo2qdrant::sink::{Fields, Sink};
use mongodb::bson::{Document, doc};

const DB: &str = "bench";

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The content hash of `_id` `id`'s chunk 0 in `target`.
async fn stored_hash<S: Sink>(sink: &S, target: &str, id: i32) -> Option<String> {
    hashes(sink, target, &[id]).await.pop().flatten()
}

/// The content hashes of chunk 0 of `ids`, in order (`None` where absent).
async fn hashes<S: Sink>(sink: &S, target: &str, ids: &[i32]) -> Vec<Option<String>> {
    let pids: Vec<uuid::Uuid> = ids
        .iter()
        .map(|&id| mongo2qdrant::ids::point_id(DB, "films", &mongodb::bson::Bson::Int32(id), 0))
        .collect();
    let keys = [keys::HASH.to_owned()];
    let points = sink
        .retrieve(target, &pids, Fields::Only(&keys), false)
        .await
        .unwrap();
    let by_id: std::collections::HashMap<uuid::Uuid, Option<String>> = points
        .into_iter()
        .map(|p| {
            let h = p
                .payload
                .get(keys::HASH)
                .and_then(|v| v.as_str())
                .map(str::to_owned);
            (p.id, h)
        })
        .collect();
    pids.iter()
        .map(|p| by_id.get(p).cloned().flatten())
        .collect()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

async fn measure<S: Sink>(label: &str, sink: Arc<S>, m: &common::Mongo) {
    let updates = arg("--updates", 50);
    let burst = arg("--burst", 300);
    let target = common::unique("latency");
    let jobs = common::sync_of(m, DB, &["films"])
        .template(r"{title}\n{extract}")
        .payload(&["title"])
        .target(Some(&target))
        .jobs()
        .await;
    let (stop, rx) = tokio::sync::watch::channel(false);
    let stats = Arc::new(Stats::default());
    let metrics = Arc::new(Metrics::new(1, stats.clone()));
    let mut wopts = WatchOptions::new(metrics.clone());
    wopts.delay = Duration::from_millis(arg("--delay-ms", 200) as u64);
    let started = Instant::now();
    let task = tokio::spawn(pipeline::watch(
        sink.clone(),
        common::worker(),
        jobs,
        SyncOptions::new(rx),
        wopts,
        stats.clone(),
    ));
    while metrics.health().is_err() {
        if task.is_finished() {
            panic!("watch ended: {:?}", task.await);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pass = started.elapsed();
    let docs = stats.snapshot().read;

    let c = m.client().await;
    let films = c.database(DB).collection::<Document>("films");
    // At idle: one update, wait until the target holds it, pause, the next.
    let mut lat = Vec::new();
    for i in 0..updates {
        let id = (i * 7 % 300) as i32;
        let before = stored_hash(sink.as_ref(), &target, id).await;
        let t0 = Instant::now();
        films
            .update_one(
                doc! {"_id": id},
                doc! {"$set": {"extract": format!("Latency probe {i} ({label}): a film about waiting.")}},
            )
            .await
            .unwrap();
        while stored_hash(sink.as_ref(), &target, id).await == before {
            tokio::time::sleep(Duration::from_millis(2)).await;
            assert!(
                t0.elapsed() < Duration::from_secs(30) && !task.is_finished(),
                "update {i} never landed"
            );
        }
        lat.push(t0.elapsed().as_secs_f64());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    lat.sort_by(f64::total_cmp);

    // Sustained: `burst` text changes (each of the first `burst` documents once) as fast as
    // the client writes, until every one of them landed.
    let burst = burst.min(300);
    let ids: Vec<i32> = (0..burst as i32).collect();
    let before = hashes(sink.as_ref(), &target, &ids).await;
    // Realistic texts: each document gets another movie's extract (~100 tokens).
    let movies = common::movies(300);
    let t0 = Instant::now();
    for &id in &ids {
        let other = movies[(id as usize + 150) % 300]
            .get_str("extract")
            .unwrap_or("");
        films
            .update_one(
                doc! {"_id": id},
                doc! {"$set": {"extract": format!("{other} ({label})")}},
            )
            .await
            .unwrap();
    }
    let written = t0.elapsed();
    loop {
        let now = hashes(sink.as_ref(), &target, &ids).await;
        if now.iter().zip(&before).all(|(a, b)| a != b) {
            break;
        }
        if task.is_finished() || t0.elapsed() > Duration::from_secs(600) {
            let missing = now.iter().zip(&before).filter(|(a, b)| a == b).count();
            panic!("{missing} of the burst never landed: {:?}", task.await);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let applied = t0.elapsed();
    stop.send(true).unwrap();
    let report = task.await.unwrap().unwrap();
    println!(
        "{label}, --watch-delay-ms {}: initial pass of {docs} documents {:.1}s; idle update -> searchable over {} updates: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms; burst of {burst} text changes (other movies' extracts): written in {:.2}s, applied in {:.2}s = {:.0} changes/s ({} embedded in all, {} batches)",
        arg("--delay-ms", 200),
        pass.as_secs_f64(),
        lat.len(),
        percentile(&lat, 0.5) * 1e3,
        percentile(&lat, 0.99) * 1e3,
        lat.last().unwrap() * 1e3,
        written.as_secs_f64(),
        applied.as_secs_f64(),
        burst as f64 / applied.as_secs_f64(),
        report.counts.embedded,
        metrics
            .render()
            .lines()
            .find(|l| l.starts_with("mongo2qdrant_batch_seconds_count"))
            .unwrap_or("")
            .rsplit(' ')
            .next()
            .unwrap_or("?"),
    );
}

fn main() {
    // `cargo bench` passes `--bench`; anything else is ours.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let m = common::Mongo::start();
        common::load_movies(&m, DB, "films", 300).await;
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|c| {
                c.lines()
                    .find(|l| l.starts_with("model name"))
                    .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
            })
            .unwrap_or_default();
        println!("CPU: {cpu}; {} cores", num_cpus());
        let (_dir, edge) = common::edge_sink();
        measure("embedded store", edge, &m).await;
        if std::env::var("QDRANT_URL").is_ok_and(|u| !u.is_empty()) {
            measure("Qdrant server (gRPC)", common::grpc_sink(), &m).await;
        } else {
            println!("Qdrant server: skipped (set QDRANT_URL to measure it)");
        }
    });
}

fn num_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
