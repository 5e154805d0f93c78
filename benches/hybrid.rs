//! Hybrid retrieval, measured on a BEIR-format set (corpus.jsonl, queries.jsonl,
//! qrels/test.tsv): what BM25 costs a sync (a dense sync, the same with `--sparse bm25`, and a
//! sparse-only sync, each the real pipeline from the corpus file into a fresh embedded
//! collection), and the retrieval quality (nDCG@10 over the test queries) of dense, sparse and
//! hybrid (reciprocal rank fusion) search.
//!
//! `cargo +nightly bench --bench hybrid -- --beir /path/to/scifact [--json out.json]`
//! (`--docs N` for the first N documents only; the model is all-MiniLM-L6-v2 from the cache).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use mongo2qdrant::config::sparse::{SparseSettings, spec};
use mongo2qdrant::embed::worker::EmbedWorker;
use mongo2qdrant::embed::{EmbedConfig, Embedder, OnnxEmbedder};
use mongo2qdrant::pipeline::{self, Job, SyncOptions};
use mongo2qdrant::report::Stats;
use mongo2qdrant::sink::{EdgeSink, Query, Sink};
use mongo2qdrant::sparse::Bm25;

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    let i = args.iter().position(|a| a == name)?;
    args.get(i + 1).cloned()
}

fn lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// nDCG@10 of `ranked` document ids against the graded judgements `rel`.
fn ndcg10(ranked: &[String], rel: &HashMap<String, f64>) -> f64 {
    let gain = |i: usize, g: f64| g / ((i + 2) as f64).log2();
    let dcg: f64 = ranked
        .iter()
        .take(10)
        .enumerate()
        .map(|(i, d)| gain(i, rel.get(d).copied().unwrap_or(0.0)))
        .sum();
    let mut ideal: Vec<f64> = rel.values().copied().collect();
    ideal.sort_by(|a, b| b.total_cmp(a));
    let idcg: f64 = ideal
        .iter()
        .take(10)
        .enumerate()
        .map(|(i, g)| gain(i, *g))
        .sum();
    if idcg == 0.0 { 0.0 } else { dcg / idcg }
}

async fn jobs(file: &Path, target: &str, sparse: Option<bool>) -> Vec<Job> {
    let source = mongo2qdrant::cli::SourceArgs {
        mongo_uri: None,
        database: None,
        collections: Vec::new(),
        files: vec![file.to_path_buf()],
        namespace: Some("beir.corpus".into()),
        filter: None,
        projection: None,
        cursor_batch: 1000,
    };
    let mut jobs = mongo2qdrant::config::jobs(&source, Some(target), "{title} {text}", &[])
        .await
        .unwrap();
    if let Some(dense) = sparse {
        let s = SparseSettings {
            name: "bm25".into(),
            text: None,
            language: "english".into(),
            dense,
        };
        for j in &mut jobs {
            j.sparse = Some(spec(&s, None).unwrap());
            if !dense {
                j.vector_name = Some("bm25".into());
            }
        }
    }
    jobs
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let Some(beir) = arg("--beir").map(PathBuf::from) else {
        eprintln!(
            "hybrid: pass --beir DIR (a BEIR-format set: corpus.jsonl, queries.jsonl, qrels/test.tsv)"
        );
        return;
    };
    let limit: usize = arg("--docs").map_or(usize::MAX, |n| n.parse().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("corpus.jsonl");
    let docs = lines(&beir.join("corpus.jsonl"));
    let docs: Vec<String> = docs.iter().take(limit).map(|d| d.to_string()).collect();
    std::fs::write(&corpus, docs.join("\n")).unwrap();
    let n = docs.len();

    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let config = EmbedConfig::with_defaults(
        root.join("models/cache/all-MiniLM-L6-v2"),
        root.join("models/cache/onnxruntime/libonnxruntime.so"),
    );
    let embedder: Arc<dyn Embedder> =
        Arc::new(OnnxEmbedder::load(&config).expect("run `bash models/fetch.sh` first"));
    let c = embedder.compute();
    println!(
        "model: all-MiniLM-L6-v2 ({} on {}, {}), BM25: qdrant/bm25 english",
        c.precision, c.runtime, c.isa
    );
    let worker = EmbedWorker::spawn(embedder.clone(), 2);
    let sink = Arc::new(EdgeSink::open(&dir.path().join("store")).unwrap());

    // What BM25 costs a sync.
    let mut seconds = HashMap::new();
    for (name, sparse) in [
        ("dense", None),
        ("dense+bm25", Some(true)),
        ("bm25 only", Some(false)),
    ] {
        let target = name.replace([' ', '+'], "_");
        let (_keep, stop) = tokio::sync::watch::channel(false);
        let t = Instant::now();
        let r = pipeline::sync(
            sink.clone(),
            worker.clone(),
            jobs(&corpus, &target, sparse).await,
            SyncOptions::new(stop),
            Arc::new(Stats::default()),
        )
        .await
        .unwrap();
        assert_eq!(r.counts.upserted as usize, n, "{r:?}");
        seconds.insert(name, t.elapsed().as_secs_f64());
    }
    println!("| sync of {n} documents | seconds | docs/s |");
    println!("| --- | ---: | ---: |");
    for name in ["dense", "dense+bm25", "bm25 only"] {
        println!(
            "| {name} | {:.1} | {:.0} |",
            seconds[name],
            n as f64 / seconds[name]
        );
    }
    let overhead = seconds["dense+bm25"] / seconds["dense"] - 1.0;
    println!(
        "BM25 beside the dense vector adds {:.1}% to the sync",
        overhead * 100.0
    );

    // Retrieval quality over the test queries.
    let queries: HashMap<String, String> = lines(&beir.join("queries.jsonl"))
        .into_iter()
        .map(|q| {
            (
                q["_id"].as_str().unwrap().to_owned(),
                q["text"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let mut qrels: HashMap<String, HashMap<String, f64>> = HashMap::new();
    let tsv = std::fs::read_to_string(beir.join("qrels/test.tsv")).unwrap();
    for l in tsv.lines().skip(1) {
        let f: Vec<&str> = l.split('\t').collect();
        if f.len() == 3 {
            let score: f64 = f[2].trim().parse().unwrap();
            qrels
                .entry(f[0].into())
                .or_default()
                .insert(f[1].into(), score);
        }
    }
    let bm25 = Bm25::new("english").unwrap();
    let mut sums: HashMap<&str, f64> = HashMap::new();
    let mut asked = 0;
    for (qid, rel) in &qrels {
        let text = &queries[qid];
        asked += 1;
        let dense = embedder.embed_query(&[text]).unwrap().0.remove(0);
        for mode in ["dense", "sparse", "hybrid"] {
            let q = Query {
                dense: (mode != "sparse").then(|| (None, dense.clone())),
                sparse: (mode != "dense").then(|| ("bm25".to_owned(), bm25.query(text))),
                limit: 10,
                prefetch: 100,
                filter: None,
                params: Default::default(),
            };
            let hits = sink.query("dense_bm25", q).await.unwrap();
            let ranked: Vec<String> = hits
                .iter()
                .map(|h| h.payload["_id"].as_str().unwrap_or_default().to_owned())
                .collect();
            *sums.entry(mode).or_default() += ndcg10(&ranked, rel);
        }
    }
    println!("| search ({asked} test queries) | nDCG@10 |");
    println!("| --- | ---: |");
    for mode in ["dense", "sparse", "hybrid"] {
        println!("| {mode} | {:.4} |", sums[mode] / asked as f64);
    }
    if let Some(path) = arg("--json") {
        let out = serde_json::json!({
            "documents": n,
            "sync_seconds": seconds,
            "bm25_overhead": overhead,
            "queries": asked,
            "ndcg_at_10": sums.iter().map(|(k, v)| (k.to_string(), v / asked as f64)).collect::<HashMap<_, _>>(),
        });
        std::fs::write(path, out.to_string()).unwrap();
    }
}
