//! Command line: every flag has a long name and an environment variable, and says how to tune it.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::embed::{Device, Precision};

/// Reindex MongoDB collections into Qdrant: idempotent, resumable, no Kafka.
#[derive(Debug, Parser)]
#[command(name = "mongo2qdrant", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log format: `text` for people, `json` for log collectors.
    #[arg(
        long,
        env = "M2Q_LOG_FORMAT",
        value_enum,
        default_value = "text",
        global = true
    )]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Read documents, embed what changed, upsert into Qdrant, checkpoint.
    Sync(Box<SyncArgs>),
    /// Keep Qdrant in step with MongoDB continuously: a pass where needed, then the change
    /// streams. Takes the same flags as `sync`, and `--metrics-addr` for probes and Prometheus.
    Watch(Box<WatchArgs>),
    /// Compare source and target without writing: missing, stale, orphaned and duplicate
    /// points; exits 3 when they differ. Takes the same flags as `sync`.
    Verify(Box<SyncArgs>),
    /// Embed a query and print the nearest points with score and payload.
    Search(Box<SearchArgs>),
    /// Show each namespace's checkpoint, the last run's report and any lease or lock.
    Status(Box<StatusArgs>),
    /// Measure embedding throughput over batch sizes and session/thread layouts.
    Bench(Box<BenchArgs>),
}

/// Where the documents come from.
#[derive(Debug, Clone, Args)]
pub struct SourceArgs {
    /// MongoDB connection string (credentials are never printed); default
    /// mongodb://127.0.0.1:27017.
    #[arg(long, env = "MONGO_URI")]
    pub mongo_uri: Option<String>,
    /// Source database.
    #[arg(long, env = "M2Q_DATABASE")]
    pub database: Option<String>,
    /// Source collection(s), comma-separated or repeated; one reader task each.
    #[arg(long = "collection", env = "M2Q_COLLECTIONS", value_delimiter = ',')]
    pub collections: Vec<String>,
    /// mongoexport JSON or JSONL file(s) to read instead of MongoDB (namespace: --namespace, or
    /// --database, default `file`, and the file stem).
    #[arg(long = "file", env = "M2Q_FILES", value_delimiter = ',')]
    pub files: Vec<PathBuf>,
    /// The namespace of --file's documents as DATABASE.COLLECTION: give the live collection's,
    /// and a dump feeds the same points as the collection (successive dumps too).
    #[arg(long, env = "M2Q_NAMESPACE")]
    pub namespace: Option<String>,
    /// Only documents matching this filter (Extended JSON), e.g. '{"year": {"$gte": 2000}}'.
    #[arg(long, env = "M2Q_FILTER")]
    pub filter: Option<String>,
    /// Projection (Extended JSON); default: the fields the template and payload need.
    #[arg(long, env = "M2Q_PROJECTION")]
    pub projection: Option<String>,
    /// Documents per cursor batch from MongoDB.
    #[arg(long, env = "M2Q_CURSOR_BATCH", default_value_t = 1000)]
    pub cursor_batch: u32,
}

/// Where the points go.
#[derive(Debug, Clone, Args)]
pub struct TargetArgs {
    /// Qdrant server gRPC URL (e.g. http://localhost:6334); without it, the embedded store.
    /// [env: QDRANT_URL, used only when neither --qdrant-url nor --qdrant-path is given]
    #[arg(long)]
    pub qdrant_url: Option<String>,
    /// API key for the Qdrant server.
    #[arg(long, env = "QDRANT_API_KEY", hide_env_values = true)]
    pub qdrant_api_key: Option<String>,
    /// Directory of the embedded Qdrant store, used when no --qdrant-url; default
    /// ./qdrant-data. A target flag on the command line outranks the environment and the
    /// config file; both flags at once are refused.
    /// [env: M2Q_QDRANT_PATH, used only when neither --qdrant-url nor --qdrant-path is given]
    #[arg(long)]
    pub qdrant_path: Option<PathBuf>,
    /// The config file's `qdrant_url`, when it has one (set by the config, not a flag).
    #[arg(skip)]
    pub file_qdrant_url: Option<String>,
    /// The config file's `qdrant_path`, when it has one (set by the config, not a flag).
    #[arg(skip)]
    pub file_qdrant_path: Option<PathBuf>,
    /// Target collection; default: the source collection's name.
    #[arg(long, env = "M2Q_COLLECTION_NAME")]
    pub collection_name: Option<String>,
    /// Named vector to write and search, for collections that use named vectors.
    #[arg(long, env = "M2Q_VECTOR_NAME")]
    pub vector_name: Option<String>,
}

/// The embedding model and how it runs.
#[derive(Debug, Clone, Args)]
pub struct ModelArgs {
    /// Model folder: tokenizer.json and model.onnx (or onnx/*.onnx), and where the model ships
    /// them, its sentence-transformers configuration (pooling, normalisation, prompts,
    /// similarity), which is honoured (`bash models/fetch.sh` puts all-MiniLM-L6-v2 here).
    /// Default: all-MiniLM-L6-v2 from the model cache (`$M2Q_HOME/models`, default
    /// `~/.cache/mongo2qdrant/models`), beside the executable, or `models/cache` here.
    #[arg(long = "model", env = "M2Q_MODEL")]
    pub model_dir: Option<PathBuf>,
    /// The ONNX graph to run when the folder holds several (`onnx/model_quantized.onnx`...).
    #[arg(long, env = "M2Q_ONNX_FILE")]
    pub onnx_file: Option<String>,
    /// Text prepended to every document (default: the model's document prompt, e.g.
    /// `passage: `; "" for none). Part of the content identity: changing it re-embeds.
    #[arg(long, env = "M2Q_DOCUMENT_PROMPT")]
    pub document_prompt: Option<String>,
    /// Text prepended to every `search` query (default: the model's query prompt, e.g.
    /// `query: `; "" for none).
    #[arg(long, env = "M2Q_QUERY_PROMPT")]
    pub query_prompt: Option<String>,
    /// The ONNX Runtime shared library (>= 1.24).
    /// Default: `onnxruntime/libonnxruntime.so` found as the model is.
    #[arg(long, env = "ORT_DYLIB_PATH")]
    pub ort_library: Option<PathBuf>,
    /// cpu, or cuda (needs the onnxruntime-gpu libraries).
    #[arg(long, env = "M2Q_DEVICE", value_enum, default_value = "cpu")]
    pub device: Device,
    /// Compute precision: auto (bf16 on CPUs with AMX-BF16 or AVX-512 BF16 when OpenVINO is at hand, else
    /// fp32), fp32 (ONNX Runtime) or bf16 (OpenVINO). An explicit choice is part of the content
    /// hash (changing it re-embeds); auto is not.
    #[arg(long, env = "M2Q_PRECISION", value_enum, default_value = "auto")]
    pub precision: Precision,
    /// OpenVINO's C library, for bf16 (PyPI openvino >= 2025.1; `bash models/fetch.sh`).
    /// Default: `openvino/libopenvino_c.so` found as the model is.
    #[arg(long, env = "M2Q_OPENVINO_LIB")]
    pub openvino_library: Option<PathBuf>,
    /// Concurrent ONNX sessions; default: one per core up to 4 cores, then cores/4.
    #[arg(long, env = "M2Q_SESSIONS")]
    pub sessions: Option<usize>,
    /// Threads per session; default: 1 up to 4 cores, then 4.
    #[arg(long, env = "M2Q_INTRA_THREADS")]
    pub intra_threads: Option<usize>,
    /// Most texts per inference call; larger amortises call overhead, smaller pads less
    /// (on 2 CPU cores 8-16 measured best; on a GPU try 64-256).
    #[arg(long, env = "M2Q_MAX_BATCH", default_value_t = 16)]
    pub max_batch: usize,
    /// Most padded tokens (texts x longest) per inference call: bounds memory and padding on
    /// long texts (CPU: 512; GPU: 8192 or more).
    #[arg(long, env = "M2Q_MAX_BATCH_TOKENS", default_value_t = 512)]
    pub max_batch_tokens: usize,
}

/// A sparse vector beside (or instead of) the dense one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SparseKind {
    /// Qdrant's BM25: term-frequency weights, the collection's `idf` modifier at search time.
    Bm25,
}

/// The sparse vector's settings (sync, verify, watch and search).
#[derive(Debug, Clone, Args)]
pub struct SparseArgs {
    /// Also write a BM25 sparse vector per point, exactly as Qdrant computes it (for hybrid
    /// `search`). Switching it on adds the vector to stored points without embedding again.
    #[arg(long, env = "M2Q_SPARSE", value_enum)]
    pub sparse: Option<SparseKind>,
    /// Template of the sparse vector's text (default: the dense vector's text, per chunk).
    #[arg(long, env = "M2Q_SPARSE_TEXT")]
    pub sparse_text: Option<String>,
    /// Name of the sparse vector in the collection [default: bm25].
    #[arg(long, env = "M2Q_SPARSE_NAME")]
    pub sparse_name: Option<String>,
    /// Language of the stop words and Snowball stemmer (Qdrant's names: english, german,
    /// french, ...) [default: english].
    #[arg(long, env = "M2Q_SPARSE_LANGUAGE")]
    pub sparse_language: Option<String>,
    /// Write only the sparse vector: no model is loaded (needs --sparse).
    #[arg(long, env = "M2Q_NO_DENSE")]
    pub no_dense: bool,
}

#[derive(Debug, Clone, Args)]
pub struct SyncArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    #[command(flatten)]
    pub target: TargetArgs,
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub sparse: SparseArgs,
    /// Text template over fields: `{field}`, nested `{a.b}`, arrays joined; `\n` is a newline.
    /// Default `{text}`.
    #[arg(long, env = "M2Q_TEXT")]
    pub text: Option<String>,
    /// Fields copied into each point's payload, comma-separated (dotted paths allowed).
    #[arg(long, env = "M2Q_PAYLOAD", value_delimiter = ',')]
    pub payload: Vec<String>,
    /// Payload indexes of the target collection, FIELD:TYPE[:tenant] comma-separated (TYPE:
    /// keyword, integer, float, bool, datetime, text, uuid), e.g.
    /// year:integer,genres:keyword,org:keyword:tenant; created (or changed) before loading.
    #[arg(long, env = "M2Q_INDEX", value_delimiter = ',')]
    pub index: Vec<String>,
    #[command(flatten)]
    pub collection: crate::config::collection::CollectionArgs,
    /// TOML file mapping many source collections to target collections (see README); flags
    /// given on the command line override it.
    #[arg(long, env = "M2Q_CONFIG")]
    pub config: Option<PathBuf>,
    /// Documents per unit: the checkpoint step and the length-sorting window.
    #[arg(long, env = "M2Q_BATCH_SIZE", default_value_t = 256)]
    pub batch_size: usize,
    /// Split texts longer than this many tokens into overlapping chunks (one point each).
    #[arg(long, env = "M2Q_CHUNK_SIZE")]
    pub chunk_size: Option<usize>,
    /// Tokens shared by consecutive chunks.
    #[arg(long, env = "M2Q_CHUNK_OVERLAP", default_value_t = 32)]
    pub chunk_overlap: usize,
    /// Ignore checkpoints and start a new full pass (still idempotent).
    #[arg(long, env = "M2Q_FRESH")]
    pub fresh: bool,
    /// Report what would be embedded, skipped and deleted; write nothing.
    #[arg(long, env = "M2Q_DRY_RUN")]
    pub dry_run: bool,
    /// After a complete pass, delete points whose source document is gone.
    #[arg(long, env = "M2Q_PRUNE")]
    pub prune: bool,
    /// Drop and rebuild a target collection whose vectors do not fit the model.
    #[arg(long, env = "M2Q_RECREATE")]
    pub recreate: bool,
    /// The most a run may delete of a namespace's points, as a share (`50%`) or a count
    /// (`1000`): a run that would delete more (documents that lost their text, prune) deletes
    /// nothing and exits 1. `100%` allows any deletion.
    #[arg(long, env = "M2Q_MAX_DELETE", default_value = "50%")]
    pub max_delete: crate::pipeline::guard::MaxDelete,
    /// Check stored points beyond their hashes: every expected payload value, the vector present
    /// with the model's dimension. `sync --deep` writes a document again when its points differ
    /// (repair); `verify --deep` reports them. Costs one full read of the points.
    #[arg(long, env = "M2Q_DEEP")]
    pub deep: bool,
    /// With `--deep`: also embed the first N current documents of each namespace again and
    /// compare their stored vectors (cosine >= 0.99); `sync` rewrites those that differ.
    #[arg(long, value_name = "N", default_value_t = 0, requires = "deep")]
    pub sample: usize,
    /// Attempts for transient MongoDB / Qdrant failures (exponential backoff with jitter).
    #[arg(long, env = "M2Q_RETRIES", default_value_t = 6)]
    pub retries: u32,
    /// This process's part of every namespace as INDEX/COUNT (0-based: `--shard 2/8` is the
    /// third of eight): documents are split by a hash of their `_id`; each shard reads, writes,
    /// checkpoints, leases, prunes and verifies only its own. Run the COUNT shards side by side
    /// against a Qdrant server (the embedded store takes one writer at a time).
    #[arg(long, env = "M2Q_SHARD", value_name = "INDEX/COUNT")]
    pub shard: Option<String>,
    /// The number of shards, this process's index taken from JOB_COMPLETION_INDEX: a
    /// Kubernetes Indexed Job with `completions: COUNT` needs no per-pod flag.
    #[arg(long, env = "M2Q_SHARDS", value_name = "COUNT")]
    pub shards: Option<u32>,
    /// A first load into an empty collection of a Qdrant server: write with HNSW graph building
    /// off (`hnsw_config.m = 0`), then switch it back on, wait for the optimiser and report the
    /// time to an indexed collection. Shards share the load: the last to finish its part
    /// switches the graph back on. Ignored (with a warning) when the collection has points.
    #[arg(long, env = "M2Q_BULK")]
    pub bulk: bool,
    /// Units whose upserts may be in flight at once (acknowledged and checkpointed in order):
    /// 1 writes one unit at a time; 4 keeps a Qdrant server busy during a bulk load.
    #[arg(long, env = "M2Q_WRITE_CONCURRENCY", default_value_t = 1)]
    pub write_concurrency: usize,
    /// Write the run's counts as JSON to this file.
    #[arg(long, env = "M2Q_REPORT_JSON")]
    pub report_json: Option<PathBuf>,
    /// No progress bars or progress log lines.
    #[arg(long, env = "M2Q_QUIET")]
    pub quiet: bool,
}

#[derive(Debug, Clone, Args)]
pub struct WatchArgs {
    #[command(flatten)]
    pub sync: SyncArgs,
    /// Most change events per micro-batch (one read of the changed documents, one embedding
    /// call, one write each).
    #[arg(long, env = "M2Q_WATCH_BATCH", default_value_t = 256)]
    pub watch_batch: usize,
    /// Longest wait, in milliseconds, for more events after the first of a micro-batch (also
    /// the server's wait for new events per getMore): lower is fresher, higher batches more.
    #[arg(long, env = "M2Q_WATCH_DELAY_MS", default_value_t = 200)]
    pub watch_delay_ms: u64,
    /// Serve /healthz (readiness: every initial pass done, stream moving), /livez (liveness)
    /// and Prometheus /metrics on this address, e.g. 0.0.0.0:9187.
    #[arg(long, env = "M2Q_METRICS_ADDR")]
    pub metrics_addr: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct SearchArgs {
    /// The query text.
    pub query: String,
    #[command(flatten)]
    pub target: TargetArgs,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Number of hits.
    #[arg(long, short = 'k', env = "M2Q_LIMIT", default_value_t = 5)]
    pub limit: usize,
    /// Print hits as JSON lines (with each hit's fused and per-mode ranks).
    #[arg(long)]
    pub json: bool,
    /// dense, sparse (BM25), or hybrid (both fused by reciprocal rank); default: hybrid where
    /// the collection has both vectors, else the one it has.
    #[arg(long, env = "M2Q_SEARCH_MODE", value_enum)]
    pub mode: Option<SearchMode>,
    /// Candidates each vector contributes to a hybrid search.
    #[arg(long, env = "M2Q_PREFETCH", default_value_t = 50)]
    pub prefetch: usize,
    /// Only points whose payload matches this MongoDB-style filter, e.g.
    /// '{"year": {"$gte": 1950}, "genres": "Drama"}' (equality, $eq, $ne, $in, $nin, $gt,
    /// $gte, $lt, $lte, $exists, $and, $or).
    #[arg(long, env = "M2Q_SEARCH_FILTER")]
    pub filter: Option<String>,
    /// With a quantized collection: rank by the quantized vectors alone (faster, less exact);
    /// by default the candidates are rescored with the original vectors.
    #[arg(long, env = "M2Q_NO_RESCORE")]
    pub no_rescore: bool,
    /// With a quantized collection: candidates per result taken from the quantized vectors
    /// before rescoring (e.g. 2.0).
    #[arg(long, env = "M2Q_OVERSAMPLING")]
    pub oversampling: Option<f64>,
    /// Exact search: every vector compared, no HNSW graph, no quantization (the reference a
    /// recall is measured against).
    #[arg(long, env = "M2Q_EXACT")]
    pub exact: bool,
    /// Name of the sparse vector [default: bm25].
    #[arg(long, env = "M2Q_SPARSE_NAME")]
    pub sparse_name: Option<String>,
    /// Language of the sparse vector's stop words and stemmer: the one it was synced with
    /// [default: english].
    #[arg(long, env = "M2Q_SPARSE_LANGUAGE")]
    pub sparse_language: Option<String>,
}

/// Which vectors a search uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SearchMode {
    Dense,
    Sparse,
    Hybrid,
}

#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Read texts from MongoDB (--database/--collection) or files (--file); default: generated.
    #[command(flatten)]
    pub source: SourceArgs,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Template for texts read from MongoDB or files.
    #[arg(long, env = "M2Q_TEXT", default_value = "{text}")]
    pub text: String,
    /// Generated texts (when no --collection or --file).
    #[arg(long, default_value_t = 2000)]
    pub generate: usize,
    /// Average words per generated text (lengths vary +-50%).
    #[arg(long, default_value_t = 60)]
    pub words: usize,
    /// Use at most this many texts from the input.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Batch sizes to sweep (texts per inference call), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "4,8,16,32")]
    pub batch_sizes: Vec<usize>,
    /// Layouts to sweep as SESSIONSxTHREADS, comma-separated (e.g. 1x2,2x1); default: the
    /// configured one.
    #[arg(long, value_delimiter = ',')]
    pub layouts: Vec<String>,
    /// Texts per embed call (the sync's length-sorting window, --batch-size there).
    #[arg(long, default_value_t = 256)]
    pub window: usize,
    /// Runs per layout (the table shows medians).
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Also upsert every vector into a throwaway embedded store (times the upsert share).
    #[arg(long)]
    pub upsert: bool,
    /// Also compare the vectors with fp32 on the same texts: cosine min/mean, and recall@10 of
    /// a built-in query set (the first words of 100 texts) searched over the texts.
    #[arg(long)]
    pub fidelity: bool,
    /// Write the report as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}
