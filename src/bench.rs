//! Embedding throughput harness: the same texts through every (batch size, sessions x threads)
//! layout, with the time split between reading, tokenising, inference and (optionally)
//! upserting into a throwaway embedded store. Medians over several runs.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use crate::embed::{
    Compute, EmbedConfig, EmbedError, EmbedStats, Embedder, OnnxEmbedder, Precision,
};
use crate::fidelity::Fidelity;
use crate::sink::{EdgeSink, Point, Sink, SinkError, VectorSpec};

/// One measured layout.
#[derive(Debug, Clone, Serialize)]
pub struct BenchRow {
    pub max_batch: usize,
    pub sessions: usize,
    pub intra_threads: usize,
    pub docs: usize,
    pub tokens: u64,
    /// Median over runs.
    pub docs_per_sec: f64,
    pub tokens_per_sec: f64,
    pub padding_ratio: f64,
    pub tokenize_secs: f64,
    /// Wall-clock seconds of inference (all sessions together).
    pub infer_secs: f64,
    pub upsert_secs: f64,
    pub total_secs: f64,
}

/// What the harness ran on and what it found.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub device: String,
    /// The CPU flags that decide the precision's speed (as `lscpu` spells them).
    pub cpu_flags: String,
    pub cores: usize,
    pub model: String,
    pub compute: Compute,
    pub read_secs: f64,
    pub window: usize,
    pub runs: usize,
    pub rows: Vec<BenchRow>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fidelity: Option<Fidelity>,
}

/// Errors of the harness.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Embed(#[from] EmbedError),
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error("no texts to embed: check the input and --text")]
    NoTexts,
}

/// Harness settings.
#[derive(Debug, Clone)]
pub struct BenchPlan {
    pub base: EmbedConfig,
    pub batch_sizes: Vec<usize>,
    /// (sessions, intra-op threads) pairs.
    pub layouts: Vec<(usize, usize)>,
    /// Texts per embed call (the pipeline's length-sorting window).
    pub window: usize,
    pub runs: usize,
    /// Also upsert into an embedded store in this directory.
    pub upsert_into: Option<PathBuf>,
    /// Also compare with fp32 (cosine, recall@10).
    pub fidelity: bool,
}

/// `n` generated paragraphs of about `words` words (deterministic).
pub fn generated_texts(n: usize, words: usize) -> Vec<String> {
    const VOCAB: &[&str] = &[
        "river", "market", "engine", "quiet", "winter", "signal", "garden", "harbour", "ledger",
        "copper", "lantern", "meadow", "orbit", "pattern", "summit", "thunder", "velvet",
        "archive", "bridge", "canyon", "delta", "ember", "falcon", "glacier", "horizon", "island",
        "journey", "kernel", "lattice", "mirror", "network", "ocean", "prairie", "quartz",
        "reactor", "shadow", "timber", "umbrella", "valley", "whistle", "the", "of", "and", "a",
        "to", "in", "is", "was", "for", "on",
    ];
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    (0..n)
        .map(|i| {
            // vary the length +-50% so that padding matters, as in real data
            let len = words / 2 + (i * 7919) % words.max(1);
            (0..len.max(1))
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    VOCAB[(state % VOCAB.len() as u64) as usize]
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// CPU model name from /proc/cpuinfo, or the GPU when CUDA is used.
pub fn device_name(config: &EmbedConfig) -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    match config.device {
        crate::embed::Device::Cpu => cpu,
        crate::embed::Device::Cuda => {
            let gpu = std::process::Command::new("nvidia-smi")
                .args(["--query-gpu=name", "--format=csv,noheader"])
                .output()
                .ok()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "CUDA GPU".into());
            format!("{gpu} (CUDA), host {cpu}")
        }
    }
}

/// Run `plan` over `texts`.
pub async fn run(
    plan: &BenchPlan,
    texts: Vec<String>,
    read_secs: f64,
) -> Result<BenchReport, BenchError> {
    if texts.is_empty() {
        return Err(BenchError::NoTexts);
    }
    let texts = Arc::new(texts);
    let mut rows = Vec::new();
    let mut model = String::new();
    let mut compute = Compute::default();
    for &(sessions, intra) in &plan.layouts {
        for &batch in &plan.batch_sizes {
            let mut cfg = plan.base.clone();
            cfg.sessions = sessions;
            cfg.intra_threads = intra;
            cfg.max_batch = batch;
            let embedder = Arc::new(
                tokio::task::spawn_blocking(move || OnnxEmbedder::load(&cfg))
                    .await
                    .expect("load")?,
            );
            model = embedder.model_id().to_owned();
            compute = embedder.compute().clone();
            let mut samples = Vec::new();
            for run in 0..plan.runs.max(1) {
                let sink = match &plan.upsert_into {
                    Some(dir) => {
                        let d = dir.join(format!("run{run}"));
                        let _ = std::fs::remove_dir_all(&d);
                        let s = EdgeSink::open(&d)?;
                        let vectors = VectorSpec {
                            name: None,
                            dimension: embedder.dimension(),
                            distance: embedder.distance(),
                        };
                        s.create_collection("bench", &vectors, &Default::default())
                            .await?;
                        Some(s)
                    }
                    None => None,
                };
                samples.push(one_run(&embedder, &texts, plan.window, sink.as_ref()).await?);
            }
            let pick = |f: fn(&Sample) -> f64| median(samples.iter().map(f).collect());
            let stats = samples[0].stats;
            rows.push(BenchRow {
                max_batch: batch,
                sessions,
                intra_threads: intra,
                docs: texts.len(),
                tokens: stats.tokens,
                docs_per_sec: pick(|s| s.docs as f64 / s.total),
                tokens_per_sec: pick(|s| s.stats.tokens as f64 / s.total),
                padding_ratio: stats.padding_ratio(),
                tokenize_secs: pick(|s| s.tokenize),
                infer_secs: pick(|s| s.infer),
                upsert_secs: pick(|s| s.upsert),
                total_secs: pick(|s| s.total),
            });
            tracing::info!(
                batch,
                sessions,
                intra,
                docs_per_sec = rows.last().map(|r| r.docs_per_sec),
                "layout measured"
            );
        }
    }
    let fidelity = if plan.fidelity {
        Some(fidelity(plan, texts).await?)
    } else {
        None
    };
    Ok(BenchReport {
        device: device_name(&plan.base),
        cpu_flags: crate::embed::precision::relevant_flags(),
        cores: crate::embed::available_cores(),
        model,
        compute,
        read_secs,
        window: plan.window,
        runs: plan.runs.max(1),
        rows,
        fidelity,
    })
}

/// The configured precision against fp32 (ONNX Runtime) on the bench texts.
async fn fidelity(plan: &BenchPlan, texts: Arc<Vec<String>>) -> Result<Fidelity, BenchError> {
    let candidate = plan.base.clone();
    let mut fp32 = plan.base.clone();
    fp32.precision = Precision::Fp32;
    let f = tokio::task::spawn_blocking(move || {
        let a = OnnxEmbedder::load(&candidate)?;
        let b = OnnxEmbedder::load(&fp32)?;
        crate::fidelity::measure(&a, &b, &texts)
    })
    .await
    .expect("fidelity task")?;
    Ok(f)
}

struct Sample {
    docs: usize,
    stats: EmbedStats,
    tokenize: f64,
    infer: f64,
    upsert: f64,
    total: f64,
}

async fn one_run(
    embedder: &Arc<OnnxEmbedder>,
    texts: &Arc<Vec<String>>,
    window: usize,
    sink: Option<&EdgeSink>,
) -> Result<Sample, BenchError> {
    let started = Instant::now();
    let mut stats = EmbedStats::default();
    let (mut tokenize, mut infer, mut upsert) = (0.0, 0.0, 0.0);
    for (w, chunk) in texts.chunks(window.max(1)).enumerate() {
        let e = embedder.clone();
        let owned: Vec<String> = chunk.to_vec();
        let (vectors, s, t_tok, t_inf) = tokio::task::spawn_blocking(move || {
            let refs: Vec<&str> = owned.iter().map(String::as_str).collect();
            let t = Instant::now();
            let enc = e.tokenize(&refs)?;
            let t_tok = t.elapsed().as_secs_f64();
            let t = Instant::now();
            let (v, s) = e.embed_encodings(&enc)?;
            Ok::<_, EmbedError>((v, s, t_tok, t.elapsed().as_secs_f64()))
        })
        .await
        .expect("embedding task")?;
        stats.add(&s);
        tokenize += t_tok;
        infer += t_inf;
        if let Some(sink) = sink {
            let t = Instant::now();
            let points = vectors
                .into_iter()
                .enumerate()
                .map(|(i, vector)| Point {
                    id: crate::ids::named_uuid("bench", &[&format!("{w}/{i}")]),
                    vector,
                    sparse: None,
                    payload: serde_json::Map::new(),
                })
                .collect();
            sink.upsert("bench", None, points).await?;
            upsert += t.elapsed().as_secs_f64();
        }
    }
    Ok(Sample {
        docs: texts.len(),
        stats,
        tokenize,
        infer,
        upsert,
        total: started.elapsed().as_secs_f64(),
    })
}

/// The report as a fixed-width table.
pub fn table(r: &BenchReport) -> String {
    let mut out = format!(
        "device: {} ({} cores; {})\nmodel: {}\ncompute: {} on {} ({})\ndocs read in {:.2}s; window {}; median of {} run(s)\n\n",
        r.device,
        r.cores,
        r.cpu_flags,
        r.model,
        r.compute.precision,
        r.compute.runtime,
        r.compute.isa,
        r.read_secs,
        r.window,
        r.runs
    );
    out.push_str(&format!(
        "{:>5} {:>8} {:>7} {:>9} {:>10} {:>8} {:>9} {:>9} {:>9} {:>9}\n",
        "batch",
        "sessions",
        "threads",
        "docs/s",
        "tokens/s",
        "padding",
        "tokenize",
        "infer",
        "upsert",
        "total"
    ));
    for row in &r.rows {
        out.push_str(&format!(
            "{:>5} {:>8} {:>7} {:>9.1} {:>10.0} {:>7.1}% {:>8.2}s {:>8.2}s {:>8.2}s {:>8.2}s\n",
            row.max_batch,
            row.sessions,
            row.intra_threads,
            row.docs_per_sec,
            row.tokens_per_sec,
            row.padding_ratio * 100.0,
            row.tokenize_secs,
            row.infer_secs,
            row.upsert_secs,
            row.total_secs
        ));
    }
    if let Some(f) = &r.fidelity {
        out.push_str(&format!(
            "\nfidelity {} vs {} over {} texts: cosine min {:.5} mean {:.5}; recall@10 {:.3} ({} queries)\n",
            f.precision, f.against, f.texts, f.cosine_min, f.cosine_mean, f.recall_at_10, f.queries
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_texts_are_deterministic_and_varied() {
        let a = generated_texts(20, 60);
        assert_eq!(a, generated_texts(20, 60));
        let lens: std::collections::HashSet<usize> =
            a.iter().map(|t| t.split(' ').count()).collect();
        assert!(lens.len() > 5);
        assert!(a.iter().all(|t| !t.is_empty()));
    }

    #[test]
    fn median_of_samples() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
    }
}
