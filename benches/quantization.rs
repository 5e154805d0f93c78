//! Collection settings, measured on a Qdrant server: the memory of the server and recall@10
//! against exact search, without quantization and with scalar (int8) quantization, on the
//! shared movies split into one document per sentence (28k+, each "TITLE (YEAR): SENTENCE");
//! and the time payload indexes add to a load.
//!
//! `cargo +nightly bench --bench quantization [-- --movies DIR --start ../shared/qdrant/start.sh
//! --queries 200 --json out.json --no-index-loads]`
//!
//! Steps: (1) a dense load into a fresh collection without payload indexes and (2) the same
//! load with `year:integer,title:keyword` indexes, both timed (and the same pair as BM25-only
//! loads, where no model hides the index cost); (3) the server restarted with only the first
//! collection, the queries run once to warm up and once measured, HNSW and exact; RSS read;
//! (4) `--quantization scalar --quantile 0.99 --always-ram --on-disk` applied online by a rerun
//! (nothing embedded again), the optimiser awaited, the server restarted, queries and RSS again,
//! rescored and not. The server's process RSS is read from /proc (anonymous and file-backed).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mongo2qdrant::embed::worker::EmbedWorker;
use mongo2qdrant::embed::{EmbedConfig, Embedder, OnnxEmbedder};
use mongo2qdrant::pipeline::{self, Job, SyncOptions};
use mongo2qdrant::report::Stats;
use mongo2qdrant::sink::settings::QuantKind;
use mongo2qdrant::sink::{GrpcSink, Query, SearchParams, Settings, Sink};

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    let i = args.iter().position(|a| a == name)?;
    args.get(i + 1).cloned()
}

/// One document per sentence of every movie's extract; returns the documents written and
/// the query texts (every n-th movie's title, as a user would type it).
fn write_docs(movies: &Path, out: &Path, queries: usize) -> (usize, Vec<String>) {
    let mut lines = Vec::new();
    let mut titles = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(movies)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    for f in files {
        let all: Vec<serde_json::Value> =
            serde_json::from_str(&std::fs::read_to_string(&f).unwrap()).unwrap();
        for m in all {
            let title = m["title"].as_str().unwrap_or_default().to_owned();
            let year: i64 = m["year"].as_str().and_then(|y| y.parse().ok()).unwrap_or(0);
            let extract = m["extract"].as_str().unwrap_or_default();
            let mut rest = extract;
            let mut k = 0;
            while !rest.is_empty() {
                let end = rest
                    .match_indices(['.', '!', '?'])
                    .map(|(i, _)| i + 1)
                    .find(|i| rest[*i..].starts_with(' ') || *i == rest.len())
                    .unwrap_or(rest.len());
                let sentence = rest[..end].trim();
                rest = rest[end..].trim_start();
                if sentence.len() > 20 {
                    let doc = serde_json::json!({
                        "_id": format!("{}-{k}", lines.len()),
                        "title": title, "year": year,
                        "text": format!("{title} ({year}): {sentence}"),
                    });
                    lines.push(doc.to_string());
                    k += 1;
                }
            }
            titles.push(title);
        }
    }
    std::fs::write(out, lines.join("\n")).unwrap();
    let step = (titles.len() / queries).max(1);
    let q = titles.into_iter().step_by(step).take(queries).collect();
    (lines.len(), q)
}

async fn jobs(file: &Path, target: &str, indexes: bool, dense: bool) -> Vec<Job> {
    let source = mongo2qdrant::cli::SourceArgs {
        mongo_uri: None,
        database: None,
        collections: Vec::new(),
        files: vec![file.to_path_buf()],
        namespace: Some("bench.sentences".into()),
        filter: None,
        projection: None,
        cursor_batch: 1000,
    };
    let payload = ["title".to_owned(), "year".to_owned()];
    let mut jobs = mongo2qdrant::config::jobs(&source, Some(target), "{text}", &payload)
        .await
        .unwrap();
    for j in &mut jobs {
        if indexes {
            let items = ["year:integer".to_owned(), "title:keyword".to_owned()];
            j.indexes = mongo2qdrant::sink::index::parse(&items).unwrap();
        }
        if !dense {
            let s = mongo2qdrant::config::sparse::SparseSettings {
                name: "bm25".into(),
                text: None,
                language: "english".into(),
                dense: false,
            };
            j.sparse = Some(mongo2qdrant::config::sparse::spec(&s, None).unwrap());
            j.vector_name = Some("bm25".into());
        }
    }
    jobs
}

/// A Qdrant server under this bench's control: started (again) on the same ports and storage.
struct Server {
    start: PathBuf,
    storage: PathBuf,
    ports: (u16, u16),
    pid: u32,
    url: String,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Server {
    fn start(start: PathBuf, storage: PathBuf) -> Server {
        let mut s = Server {
            start,
            storage,
            ports: (free_port(), free_port()),
            pid: 0,
            url: String::new(),
        };
        s.up();
        s
    }

    fn up(&mut self) {
        let out = std::process::Command::new("bash")
            .arg(&self.start)
            .env("QDRANT_STORAGE", &self.storage)
            .env("QDRANT_HTTP_PORT", self.ports.0.to_string())
            .env("QDRANT_GRPC_PORT", self.ports.1.to_string())
            .output()
            .unwrap();
        let env = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "{env} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let get = |k: &str| {
            env.split_whitespace()
                .find_map(|w| w.strip_prefix(&format!("{k}=")))
                .unwrap()
                .to_owned()
        };
        self.pid = get("QDRANT_PID").parse().unwrap();
        self.url = get("QDRANT_URL");
    }

    fn restart(&mut self) {
        let _ = std::process::Command::new("kill")
            .arg(self.pid.to_string())
            .status();
        while Path::new(&format!("/proc/{}", self.pid)).exists() {
            std::thread::sleep(Duration::from_millis(100));
        }
        self.up();
    }

    /// Resident memory in MiB: the process's anonymous memory (quantized vectors kept in RAM are
    /// read into it), and the resident pages of the collection's mapped files by kind (original
    /// vectors, quantized vectors, HNSW graph), from
    /// /proc/PID/smaps.
    fn rss(&self) -> [f64; 4] {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap();
        let anon: f64 = status
            .lines()
            .find(|l| l.starts_with("RssAnon:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        let smaps = std::fs::read_to_string(format!("/proc/{}/smaps", self.pid)).unwrap();
        let mut kinds = [anon, 0.0, 0.0, 0.0];
        let mut kind = None;
        for l in smaps.lines() {
            let first = l.split_whitespace().next().unwrap_or_default();
            if first.contains('-') && !first.ends_with(':') {
                kind = if l.contains("/quantized") {
                    Some(2)
                } else if l.contains("/vector_storage/") && !l.contains("deleted") {
                    Some(1)
                } else if l.contains("/vector_index/") || l.contains("graph") || l.contains("links")
                {
                    Some(3)
                } else {
                    None
                };
            } else if let (Some(k), Some(rest)) = (kind, l.strip_prefix("Rss:")) {
                kinds[k] += rest
                    .trim()
                    .trim_end_matches(" kB")
                    .parse::<f64>()
                    .unwrap_or(0.0);
            }
        }
        kinds.map(|kb| kb / 1024.0)
    }

    fn sink(&self) -> Arc<GrpcSink> {
        Arc::new(GrpcSink::connect(&self.url, None).unwrap())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .arg(self.pid.to_string())
            .status();
    }
}

async fn settled(sink: &GrpcSink, c: &str) {
    let t = Instant::now();
    loop {
        if t.elapsed() > Duration::from_secs(600) {
            println!("(the optimiser of `{c}` did not settle in 600 s; measuring anyway)");
            return;
        }
        // Green with nothing queued: a segment under the indexing threshold stays plain.
        let s = sink.index_state(c).await.unwrap().unwrap();
        if s.settled {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Top-10 ids of each query.
async fn top10(
    sink: &GrpcSink,
    c: &str,
    vectors: &[Vec<f32>],
    p: SearchParams,
) -> Vec<Vec<uuid::Uuid>> {
    let mut out = Vec::new();
    for v in vectors {
        let q = Query {
            dense: Some((None, v.clone())),
            sparse: None,
            limit: 10,
            prefetch: 10,
            filter: None,
            params: p,
        };
        out.push(
            sink.query(c, q)
                .await
                .unwrap()
                .iter()
                .map(|h| h.id)
                .collect(),
        );
    }
    out
}

fn recall(got: &[Vec<uuid::Uuid>], exact: &[Vec<uuid::Uuid>]) -> f64 {
    let hits: usize = got
        .iter()
        .zip(exact)
        .map(|(g, e)| g.iter().filter(|id| e.contains(id)).count())
        .sum();
    hits as f64 / (10 * exact.len()) as f64
}

async fn load(
    worker: &EmbedWorker,
    sink: &Arc<GrpcSink>,
    jobs: Vec<Job>,
    s: Settings,
) -> (f64, u64) {
    let mut jobs = jobs;
    for j in &mut jobs {
        j.settings = s.clone();
    }
    let (_keep, stop) = tokio::sync::watch::channel(false);
    let mut o = SyncOptions::new(stop);
    o.write_concurrency = 4;
    let t = Instant::now();
    let r = pipeline::sync(
        sink.clone(),
        worker.clone(),
        jobs,
        o,
        Arc::new(Stats::default()),
    )
    .await
    .unwrap();
    (t.elapsed().as_secs_f64(), r.counts.embedded)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let movies = arg("--movies").map_or_else(|| root.join("../shared/data/movies"), PathBuf::from);
    let start =
        arg("--start").map_or_else(|| root.join("../shared/qdrant/start.sh"), PathBuf::from);
    let nq: usize = arg("--queries").map_or(200, |n| n.parse().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sentences.jsonl");
    let (n, queries) = write_docs(&movies, &file, nq);
    let config = EmbedConfig::with_defaults(
        root.join("models/cache/all-MiniLM-L6-v2"),
        root.join("models/cache/onnxruntime/libonnxruntime.so"),
    );
    let embedder: Arc<dyn Embedder> =
        Arc::new(OnnxEmbedder::load(&config).expect("run `bash models/fetch.sh` first"));
    let refs: Vec<&str> = queries.iter().map(String::as_str).collect();
    let vectors = embedder.embed_query(&refs).unwrap().0;
    let worker = EmbedWorker::spawn(embedder.clone(), 2);
    let mut server = Server::start(start, dir.path().join("qdrant"));
    let sink = server.sink();
    println!(
        "{n} documents (one per sentence of {} movies' extracts), {} queries",
        movies.display(),
        vectors.len()
    );

    // Payload indexes: the same load without and with them, dense and BM25-only.
    let mut loads = Vec::new();
    let all = [
        ("dense", true, false),
        ("dense_indexed", true, true),
        ("bm25", false, false),
        ("bm25_indexed", false, true),
    ];
    // `--no-index-loads`: only the dense load the search figures need.
    let n_loads = if std::env::args().any(|a| a == "--no-index-loads") {
        1
    } else {
        4
    };
    for (name, dense, indexes) in all.into_iter().take(n_loads) {
        let (secs, _) = load(
            &worker,
            &sink,
            jobs(&file, name, indexes, dense).await,
            Settings::default(),
        )
        .await;
        println!("load {name}: {secs:.1} s ({:.0} docs/s)", n as f64 / secs);
        loads.push((name, secs));
    }
    for (c, ..) in all.iter().skip(1).take(n_loads - 1) {
        sink.drop_collection(c).await.unwrap();
    }
    settled(&sink, "dense").await;

    let mut rows = Vec::new();
    let measure = async |server: &mut Server,
                         label: &str,
                         modes: &[(&str, SearchParams)],
                         rows: &mut Vec<serde_json::Value>| {
        server.restart();
        let sink = server.sink();
        // Any update wakes optimisations left pending by the restart; then wait for them.
        let m = sink.hnsw_m("dense").await.unwrap().unwrap();
        sink.set_hnsw_m("dense", m).await.unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
        settled(&sink, "dense").await;
        let exact = SearchParams {
            exact: true,
            ..SearchParams::default()
        };
        top10(&sink, "dense", &vectors, exact).await;
        let reference = top10(&sink, "dense", &vectors, exact).await;
        for (mode, p) in modes {
            top10(&sink, "dense", &vectors, *p).await;
            let t = Instant::now();
            let got = top10(&sink, "dense", &vectors, *p).await;
            let ms = t.elapsed().as_secs_f64() * 1000.0 / vectors.len() as f64;
            let [anon, vectors, quantized, graph] = server.rss();
            let r = recall(&got, &reference);
            println!(
                "| {label} | {mode} | {r:.4} | {ms:.2} | {vectors:.1} | {quantized:.1} | {graph:.1} | {anon:.0} |"
            );
            rows.push(serde_json::json!({"collection": label, "search": mode, "recall_at_10": r, "ms_per_query": ms, "resident_vectors_mib": vectors, "resident_quantized_mib": quantized, "resident_graph_mib": graph, "rss_anon_mib": anon}));
        }
    };
    println!(
        "| collection | search | recall@10 vs exact | ms/query | resident MiB: float32 vectors | int8 vectors | HNSW graph | server anonymous |"
    );
    println!("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    measure(
        &mut server,
        "float32, in RAM",
        &[("HNSW", SearchParams::default())],
        &mut rows,
    )
    .await;
    let quantized = Settings {
        quantization: Some(QuantKind::Scalar),
        quantile: Some(0.99),
        always_ram: Some(true),
        on_disk: Some(true),
        ..Settings::default()
    };
    let sink = server.sink();
    let (secs, embedded) = load(
        &worker,
        &sink,
        jobs(&file, "dense", false, true).await,
        quantized,
    )
    .await;
    assert_eq!(embedded, 0, "a settings change embeds nothing");
    println!("scalar quantization applied online in {secs:.1} s, nothing embedded again");
    // The optimiser picks the change up a moment later: give it time to start, then wait.
    let t = Instant::now();
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_secs(5)).await;
        settled(&sink, "dense").await;
    }
    println!("optimiser done {:.1} s later", t.elapsed().as_secs_f64());
    let no_rescore = SearchParams {
        no_rescore: true,
        ..SearchParams::default()
    };
    measure(
        &mut server,
        "int8 in RAM, float32 on disk",
        &[
            ("HNSW, rescored", SearchParams::default()),
            ("HNSW, not rescored", no_rescore),
        ],
        &mut rows,
    )
    .await;
    if let Some(out) = arg("--json") {
        let report = serde_json::json!({"documents": n, "queries": vectors.len(), "loads_seconds": loads.iter().map(|(k, v)| (k.to_string(), *v)).collect::<std::collections::BTreeMap<_, _>>(), "search": rows});
        std::fs::write(out, serde_json::to_string_pretty(&report).unwrap()).unwrap();
    }
}
