//! criterion benches: tokenisation, one embedding batch at several sizes and layouts, id and
//! hash computation, and an end-to-end sync of a JSONL file into the embedded store.
//! Run with `cargo +nightly bench` after `bash models/fetch.sh`.

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use mongo2qdrant::bench::generated_texts;
use mongo2qdrant::embed::worker::EmbedWorker;
use mongo2qdrant::embed::{EmbedConfig, Embedder, OnnxEmbedder};
use mongodb::bson::Bson;

fn config() -> EmbedConfig {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    EmbedConfig::with_defaults(
        root.join("models/cache/all-MiniLM-L6-v2"),
        root.join("models/cache/onnxruntime/libonnxruntime.so"),
    )
}

fn load(sessions: usize, threads: usize, batch: usize) -> OnnxEmbedder {
    let mut c = config();
    c.sessions = sessions;
    c.intra_threads = threads;
    c.max_batch = batch;
    c.max_batch_tokens = batch * 128;
    OnnxEmbedder::load(&c).expect("run `bash models/fetch.sh` first")
}

fn tokenise(c: &mut Criterion) {
    let e = load(1, 1, 16);
    let texts = generated_texts(256, 60);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let mut g = c.benchmark_group("tokenise");
    g.throughput(Throughput::Elements(refs.len() as u64));
    g.bench_function("256 texts of ~60 words (rayon)", |b| {
        b.iter(|| e.tokenize(&refs).unwrap())
    });
    g.finish();
}

fn embed_batches(c: &mut Criterion) {
    let texts = generated_texts(64, 60);
    let mut g = c.benchmark_group("embed");
    g.sample_size(10);
    for (sessions, threads) in [(2, 1), (1, 2)] {
        for batch in [4, 16, 64] {
            let e = load(sessions, threads, batch);
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            g.throughput(Throughput::Elements(refs.len() as u64));
            g.bench_with_input(
                BenchmarkId::new(format!("{sessions}x{threads}"), batch),
                &refs,
                |b, refs| b.iter(|| e.embed(refs).unwrap()),
            );
        }
    }
    g.finish();
}

fn ids_and_hashes(c: &mut Criterion) {
    let mut g = c.benchmark_group("identity");
    g.throughput(Throughput::Elements(1000));
    let text = "A paragraph of text about a film. ".repeat(10);
    g.bench_function("1000 point ids", |b| {
        b.iter(|| {
            for i in 0..1000 {
                black_box(mongo2qdrant::ids::point_id(
                    "db",
                    "movies",
                    &Bson::Int32(i),
                    0,
                ));
            }
        })
    });
    g.bench_function("1000 content hashes", |b| {
        b.iter(|| {
            for _ in 0..1000 {
                black_box(mongo2qdrant::ids::content_hash(
                    "model",
                    "{t}",
                    black_box(&text),
                ));
            }
        })
    });
    g.finish();
}

fn sync_end_to_end(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("docs.jsonl");
    let n = 128;
    let lines: Vec<String> = generated_texts(n, 60)
        .into_iter()
        .enumerate()
        .map(|(i, t)| serde_json::json!({"_id": i, "text": t}).to_string())
        .collect();
    std::fs::write(&file, lines.join("\n")).unwrap();
    let embedder: Arc<dyn Embedder> = Arc::new(load(2, 1, 16));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut g = c.benchmark_group("sync");
    g.sample_size(10);
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function("128 docs, JSONL -> embedded store", |b| {
        b.iter(|| {
            rt.block_on(async {
                let store = tempfile::tempdir().unwrap();
                let sink = Arc::new(mongo2qdrant::sink::EdgeSink::open(store.path()).unwrap());
                let source = mongo2qdrant::cli::SourceArgs {
                    mongo_uri: None,
                    database: None,
                    collections: vec![],
                    files: vec![file.clone()],
                    namespace: None,
                    filter: None,
                    projection: None,
                    cursor_batch: 1000,
                };
                let jobs = mongo2qdrant::config::jobs(&source, None, "{text}", &[])
                    .await
                    .unwrap();
                let (_tx, stop) = tokio::sync::watch::channel(false);
                let mut opts = mongo2qdrant::pipeline::SyncOptions::new(stop);
                opts.batch_docs = 64;
                mongo2qdrant::pipeline::sync(
                    sink,
                    EmbedWorker::spawn(embedder.clone(), 2),
                    jobs,
                    opts,
                    Default::default(),
                )
                .await
                .unwrap()
            })
        })
    });
    g.finish();
}

criterion_group!(
    benches,
    tokenise,
    embed_batches,
    ids_and_hashes,
    sync_end_to_end
);
criterion_main!(benches);
