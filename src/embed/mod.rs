//! Embedding stage: the [`Embedder`] trait, the ONNX Runtime implementation and the worker
//! thread that keeps CPU work off the async runtime.

pub mod dequant;
pub mod folder;
pub mod hub;
mod loading;
pub mod locate;
pub mod onnx;
pub mod openvino;
pub mod pooling;
pub mod precision;
mod runner;
pub mod worker;

use std::path::{Path, PathBuf};

pub use onnx::OnnxEmbedder;
pub use precision::{Compute, Precision};

/// Errors of the embedding stage. Each names the fix.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error(
        "ONNX Runtime library not found at {0}: run `bash models/fetch.sh` (it fills the model cache, $M2Q_HOME/models), or set ORT_DYLIB_PATH to libonnxruntime.so (>= 1.24)"
    )]
    LibraryMissing(PathBuf),
    #[error(
        "could not load ONNX Runtime from {path}: {reason}; install onnxruntime >= 1.24 with `bash models/fetch.sh` or point ORT_DYLIB_PATH at a matching libonnxruntime.so"
    )]
    LibraryLoad { path: PathBuf, reason: String },
    #[error(
        "model file {0} not found: run `bash models/fetch.sh` (it fills the model cache, $M2Q_HOME/models, default ~/.cache/mongo2qdrant/models), or pass --model DIR holding model.onnx and tokenizer.json"
    )]
    ModelMissing(PathBuf),
    #[error(
        "model folder {dir}: {what}; use a sentence-transformers model this tool supports (README: Models), or fix the folder's configuration"
    )]
    Unsupported { dir: PathBuf, what: String },
    #[error("model {id} (Hugging Face Hub): {what}")]
    Hub { id: String, what: String },
    #[error("tokenizer {path}: {reason}")]
    Tokenizer { path: PathBuf, reason: String },
    #[error(
        "CUDA execution provider unavailable: {0}; install the onnxruntime-gpu wheel's libraries (CUDA 13, cuDNN 9), set ORT_DYLIB_PATH to its libonnxruntime.so, or use --device cpu"
    )]
    Cuda(String),
    #[error(
        "OpenVINO library not found at {0}: run `bash models/fetch.sh`, set M2Q_OPENVINO_LIB to libopenvino_c.so (PyPI openvino >= 2025.1), or use --precision fp32"
    )]
    OpenVinoMissing(PathBuf),
    #[error("OpenVINO ({0}): {1}; or use --precision fp32")]
    OpenVino(PathBuf, String),
    #[error("{0}")]
    Precision(String),
    #[error("inference: {0}")]
    Inference(String),
    #[error("ONNX Runtime: {0}")]
    Ort(#[from] ort::Error),
    #[error("model output has unexpected shape {0:?}; expected [batch, tokens, dim]")]
    OutputShape(Vec<i64>),
    #[error("the embedding worker stopped")]
    WorkerGone,
}

/// Where inference runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Device {
    #[default]
    Cpu,
    Cuda,
}

/// How the embedding stage is laid out and batched.
#[derive(Debug, Clone)]
pub struct EmbedConfig {
    /// Directory with `model.onnx` and `tokenizer.json`.
    pub model_dir: PathBuf,
    /// The ONNX Runtime shared library.
    pub ort_library: PathBuf,
    /// OpenVINO's C library (`libopenvino_c.so`), for bf16.
    pub openvino_library: PathBuf,
    pub device: Device,
    /// Requested precision; `auto` picks from the CPU's features.
    pub precision: Precision,
    /// Concurrent ONNX sessions.
    pub sessions: usize,
    /// Intra-op threads per session.
    pub intra_threads: usize,
    /// Most texts in one inference call.
    pub max_batch: usize,
    /// Most padded tokens (texts x longest) in one inference call.
    pub max_batch_tokens: usize,
    /// Tokens per text, including the special tokens, where the model folder does not say
    /// (`max_seq_length`; all-MiniLM-L6-v2: 256).
    pub max_tokens: usize,
    /// What flags override in the model folder (ONNX file, prompts).
    pub overrides: folder::Overrides,
}

impl EmbedConfig {
    /// Defaults for this machine: one single-threaded session per core and small batches
    /// (16 texts, 512 padded tokens): measured fastest on 2 cores (`mongo2qdrant bench`), and
    /// small batches keep the attention buffers, which grow with batch x length^2, small.
    pub fn with_defaults(model_dir: PathBuf, ort_library: PathBuf) -> Self {
        let (sessions, intra_threads) = default_layout(available_cores());
        // OpenVINO beside ONNX Runtime, where models/fetch.sh puts it.
        let openvino_library = ort_library
            .parent()
            .and_then(Path::parent)
            .unwrap_or(Path::new("."))
            .join("openvino/libopenvino_c.so");
        Self {
            model_dir,
            ort_library,
            openvino_library,
            device: Device::Cpu,
            precision: Precision::Auto,
            sessions,
            intra_threads,
            max_batch: 16,
            max_batch_tokens: 512,
            max_tokens: 256,
            overrides: folder::Overrides::default(),
        }
    }
}

/// Cores this process may use.
pub fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Sessions x intra-op threads for `cores`: single-threaded sessions up to 4 cores, then
/// sessions of 4 threads.
pub fn default_layout(cores: usize) -> (usize, usize) {
    if cores <= 4 {
        (cores.max(1), 1)
    } else {
        (cores / 4, 4)
    }
}

/// Time and token counts of one `embed` call.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct EmbedStats {
    pub texts: u64,
    /// Real tokens (attention mask ones).
    pub tokens: u64,
    /// Tokens fed to the model including padding.
    pub padded_tokens: u64,
    pub tokenize_secs: f64,
    pub infer_secs: f64,
}

impl EmbedStats {
    pub fn add(&mut self, o: &EmbedStats) {
        self.texts += o.texts;
        self.tokens += o.tokens;
        self.padded_tokens += o.padded_tokens;
        self.tokenize_secs += o.tokenize_secs;
        self.infer_secs += o.infer_secs;
    }

    /// Share of computed tokens that were padding.
    pub fn padding_ratio(&self) -> f64 {
        if self.padded_tokens == 0 {
            0.0
        } else {
            1.0 - self.tokens as f64 / self.padded_tokens as f64
        }
    }
}

/// Turns texts into unit-length vectors.
pub trait Embedder: Send + Sync {
    /// Vectors for `texts`, in the same order.
    fn embed(&self, texts: &[&str]) -> Result<(Vec<Vec<f32>>, EmbedStats), EmbedError>;
    /// Vectors for search queries, with the model's query prompt (documents go through
    /// [`Embedder::embed`], with its document prompt).
    fn embed_query(&self, texts: &[&str]) -> Result<(Vec<Vec<f32>>, EmbedStats), EmbedError> {
        self.embed(texts)
    }
    /// Vector dimension.
    fn dimension(&self) -> usize;
    /// How the model's vectors compare (its similarity function): the collection's distance.
    fn distance(&self) -> crate::sink::Distance {
        crate::sink::Distance::Cosine
    }
    /// Identity of the model (name and file digest): part of every content hash.
    fn model_id(&self) -> &str;
    /// The precision, runtime and instruction set inference runs on.
    fn compute(&self) -> &Compute;
    /// Split `text` into windows of at most `size` tokens overlapping by `overlap` tokens.
    /// Returns the text unchanged (one chunk) when it fits.
    fn chunk(&self, text: &str, size: usize, overlap: usize) -> Vec<String>;
}
