//! Loading a Qdrant server, measured: the time to load N points into a new collection and the
//! time from the end of the load to an indexed collection (the optimiser settled), for the
//! default write path, several writes in flight (`--write-concurrency`), and `--bulk` (HNSW
//! graph building off during the load). The pipeline is the real one (a mongoexport JSONL file
//! read, prepared, written and checkpointed), but the model is replaced by a hash of the text
//! (384 dimensions, unit length), so that what is timed is the target, not the CPU's embedding.
//!
//! `QDRANT_URL=http://127.0.0.1:6334 cargo +nightly bench --bench bulk_load -- --points 30000`
//! (`--modes default,concurrent,bulk` to choose).

use std::sync::Arc;
use std::time::{Duration, Instant};

use mongo2qdrant::embed::worker::EmbedWorker;
use mongo2qdrant::embed::{Compute, EmbedError, EmbedStats, Embedder};
use mongo2qdrant::pipeline::{self, SyncOptions};
use mongo2qdrant::report::Stats;
use mongo2qdrant::sink::{GrpcSink, Sink};

/// Vectors from a hash of the text: deterministic, unit length, spread like random vectors.
struct HashEmbedder {
    compute: Compute,
}

impl Embedder for HashEmbedder {
    fn embed(&self, texts: &[&str]) -> Result<(Vec<Vec<f32>>, EmbedStats), EmbedError> {
        let vectors = texts
            .iter()
            .map(|t| {
                let mut xof = blake3::Hasher::new().update(t.as_bytes()).finalize_xof();
                let mut bytes = [0u8; 384 * 2];
                xof.fill(&mut bytes);
                let mut v: Vec<f32> = bytes
                    .chunks(2)
                    .map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])))
                    .collect();
                let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
                v.iter_mut().for_each(|x| *x /= norm);
                v
            })
            .collect();
        let stats = EmbedStats {
            texts: texts.len() as u64,
            ..EmbedStats::default()
        };
        Ok((vectors, stats))
    }
    fn dimension(&self) -> usize {
        384
    }
    fn model_id(&self) -> &str {
        "bench-hash-384"
    }
    fn compute(&self) -> &Compute {
        &self.compute
    }
    fn chunk(&self, text: &str, _size: usize, _overlap: usize) -> Vec<String> {
        vec![text.to_owned()]
    }
}

fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| default.to_owned())
}

/// Wait until the optimiser of `collection` has settled (two calm reads a second apart).
async fn settled(sink: &GrpcSink, collection: &str) -> (f64, u64) {
    let since = Instant::now();
    let mut calm = 0;
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let s = sink.index_state(collection).await.unwrap().unwrap();
        calm = if s.settled { calm + 1 } else { 0 };
        if calm >= 2 {
            return (since.elapsed().as_secs_f64(), s.indexed);
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let Ok(url) = std::env::var("QDRANT_URL") else {
        eprintln!("bulk_load: set QDRANT_URL to a Qdrant server's gRPC URL");
        return;
    };
    let n: usize = arg("--points", "30000").parse().unwrap();
    let modes = arg("--modes", "default,concurrent,bulk");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("docs.jsonl");
    let lines: Vec<String> = (0..n)
        .map(|i| {
            serde_json::json!({"_id": i, "text": format!("document {i}: {}", "words ".repeat(i % 40))})
                .to_string()
        })
        .collect();
    std::fs::write(&file, lines.join("\n")).unwrap();
    let sink = Arc::new(GrpcSink::connect(&url, None).unwrap());
    let worker = EmbedWorker::spawn(
        Arc::new(HashEmbedder {
            compute: Compute::default(),
        }),
        2,
    );
    println!("| mode | points | load s | points/s | indexed after load s | indexed vectors |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    for mode in modes.split(',') {
        let target = format!("bulk_bench_{mode}_{}", uuid::Uuid::new_v4().simple());
        let source = mongo2qdrant::cli::SourceArgs {
            mongo_uri: None,
            database: None,
            collections: Vec::new(),
            files: vec![file.clone()],
            namespace: Some("bench.docs".into()),
            filter: None,
            projection: None,
            cursor_batch: 1000,
        };
        let jobs = mongo2qdrant::config::jobs(&source, Some(&target), "{text}", &[])
            .await
            .unwrap();
        let (_keep, stop) = tokio::sync::watch::channel(false);
        let mut opts = SyncOptions::new(stop);
        opts.batch_docs = 256;
        match mode {
            "default" => {}
            "concurrent" => opts.write_concurrency = 4,
            "bulk" => {
                opts.write_concurrency = 4;
                opts.bulk = true;
            }
            other => panic!("unknown mode {other}"),
        }
        let started = Instant::now();
        let report = pipeline::sync(
            sink.clone(),
            worker.clone(),
            jobs,
            opts,
            Arc::new(Stats::default()),
        )
        .await
        .unwrap();
        let (load, indexed_after, indexed) = match report.indexing.first() {
            Some(i) => (
                started.elapsed().as_secs_f64() - i.seconds_to_indexed,
                i.seconds_to_indexed,
                i.indexed_vectors,
            ),
            None => {
                let load = started.elapsed().as_secs_f64();
                let (after, indexed) = settled(&sink, &target).await;
                (load, after, indexed)
            }
        };
        println!(
            "| {mode} | {} | {load:.1} | {:.0} | {indexed_after:.1} | {indexed} |",
            report.counts.upserted,
            report.counts.upserted as f64 / load
        );
        sink.drop_collection(&target).await.unwrap();
    }
}
