//! Turns command-line arguments into validated, immutable settings: jobs, embedding layout,
//! target. Everything that can be checked before connecting is checked here: [`file`] reads a
//! config file, [`job`] resolves and validates one job.

pub mod collection;
mod file;
mod job;
pub mod sparse;

use std::path::PathBuf;

pub use file::{FileConfig, SyncEntry};
pub use job::{JobSpec, check_collection_name, check_vector_name};

use crate::cli::{ModelArgs, SourceArgs, SyncArgs, TargetArgs};
use crate::embed::{EmbedConfig, available_cores, default_layout};
use crate::point::{Chunking, Job};
pub use crate::sink::TargetKind;
use crate::source::SourceError;
use crate::text::TemplateError;

/// Errors in the settings themselves (exit code "usage").
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    // No `#[source]` on these two: the message already carries the cause, and a source would
    // print it twice (`--filter is not valid...: --filter is not valid...`).
    #[error("--text: {0}")]
    Template(TemplateError),
    #[error("{0}")]
    Source(SourceError),
    #[error(
        "two targets asked for: {url} and {path}; give one of them (a target flag on the command line outranks the environment and the config file)"
    )]
    TwoTargets { url: String, path: String },
    #[error("nothing to read: give --database with --collection NAME, or --file PATH")]
    NoSource,
    #[error(
        "--projection leaves out _id, and every point is keyed by its document's _id: drop \"_id\": 0 from it (for example --projection '{example}')"
    )]
    ProjectionWithoutId { example: String },
    #[error("--collection needs --database (or set M2Q_DATABASE)")]
    NoDatabase,
    #[error("--{flag} must be at least {min}")]
    TooSmall { flag: &'static str, min: usize },
    #[error("config file {path}: {reason}")]
    File { path: String, reason: String },
    #[error("each [[sync]] entry needs exactly one of `collection` or `file`")]
    EntrySource,
    #[error("--chunk-overlap ({overlap}) must be smaller than half of --chunk-size ({size})")]
    Overlap { size: usize, overlap: usize },
    #[error(
        "vector name `{0}`: use letters, digits, `_` and `-` only (for example `title` or `plot-minilm`)"
    )]
    VectorName(String),
    #[error(
        "{first} and {second} both write {route}: their points would overwrite, re-embed and prune each other. Give each its own `target` or `vector_name`, or a file its own `namespace` (--namespace DB.COLLECTION)"
    )]
    SharedRoute {
        route: String,
        first: String,
        second: String,
    },
    #[error(
        "{unnamed} writes the unnamed vector of `{target}` and {named} its named vector `{name}`: a Qdrant collection has one unnamed vector or named ones, not both (--recreate cannot help). Give every entry into `{target}` a `vector_name`, or use another `target`"
    )]
    MixedVectors {
        target: String,
        unnamed: String,
        named: String,
        name: String,
    },
    #[error("namespace `{0}`: write it as DATABASE.COLLECTION, for example shop.products")]
    Namespace(String),
    #[error("target collection `{name}`: {reason}; choose another --collection-name")]
    CollectionName { name: String, reason: &'static str },
    #[error(
        "{0} is for `sync` and `verify`; `watch` writes every change as it happens (run `sync {0}` first if you need it)"
    )]
    NotForWatch(&'static str),
    #[error(
        "{0} has no change stream: `watch` reads MongoDB collections; use `sync --file` for files"
    )]
    Unwatchable(String),
    #[error(
        "{0}: a mongodump archive holds several collections and this one none that can be told apart; give --namespace DB.COLLECTION (or `namespace` in the config entry)"
    )]
    ArchiveNamespace(String),
    #[error(
        "{file} holds no collection {namespace}; it holds {held}: give one of them with --namespace (or none, for all of them)"
    )]
    NotInArchive {
        file: String,
        namespace: String,
        held: String,
    },
    #[error(transparent)]
    Shard(#[from] crate::shard::ShardError),
    #[error(
        "--bulk is for a Qdrant server (--qdrant-url): the embedded store has no HNSW setting to switch off during a load"
    )]
    BulkEmbedded,
    #[error(
        "--recreate with --shard: each shard would drop the collection under the others' points; recreate it in one run without --shard first, then start the shards"
    )]
    ShardRecreate,
    #[error("--metrics-addr {addr}: {reason}; give a free HOST:PORT such as 0.0.0.0:9187")]
    MetricsAddr { addr: String, reason: String },
    #[error("{0}")]
    Sparse(String),
    /// A `--filter` of `search` or an `--index` that cannot be used, with the fix.
    #[error("{0}")]
    Filter(String),
}

impl From<TemplateError> for ConfigError {
    fn from(e: TemplateError) -> Self {
        ConfigError::Template(e)
    }
}

impl From<SourceError> for ConfigError {
    fn from(e: SourceError) -> Self {
        ConfigError::Source(e)
    }
}

/// Default MongoDB URI.
pub const DEFAULT_MONGO_URI: &str = "mongodb://127.0.0.1:27017";
/// Default embedded store directory.
pub const DEFAULT_QDRANT_PATH: &str = "qdrant-data";
/// Default text template.
pub const DEFAULT_TEMPLATE: &str = "{text}";

impl TargetArgs {
    /// Where to write. A target flag on the command line decides (both flags at once are
    /// refused, naming both), so a user who exported `QDRANT_URL` and runs with
    /// `--qdrant-path` gets the store asked for. Without one, a server URL (`QDRANT_URL`, else
    /// the config file's `qdrant_url`) is taken before a store path (`M2Q_QDRANT_PATH`, else
    /// `qdrant_path`): an image that sets a default store path still follows `QDRANT_URL`.
    pub fn kind(&self) -> Result<TargetKind, ConfigError> {
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let (url, path) = match (&self.qdrant_url, &self.qdrant_path) {
            (Some(url), Some(path)) => {
                return Err(ConfigError::TwoTargets {
                    url: format!("--qdrant-url {}", crate::redact::redact_uri(url)),
                    path: format!("--qdrant-path {}", path.display()),
                });
            }
            (None, None) => (
                env("QDRANT_URL").or_else(|| self.file_qdrant_url.clone()),
                env("M2Q_QDRANT_PATH")
                    .map(PathBuf::from)
                    .or_else(|| self.file_qdrant_path.clone()),
            ),
            (url, path) => (url.clone(), path.clone()),
        };
        Ok(match url {
            Some(url) => TargetKind::Grpc {
                url,
                api_key: self.qdrant_api_key.clone(),
            },
            None => TargetKind::Embedded {
                path: path.unwrap_or_else(|| PathBuf::from(DEFAULT_QDRANT_PATH)),
            },
        })
    }
}

/// The jobs and target of a `sync` (or `verify`): the config file, with command-line flags
/// overriding it.
pub async fn sync_plan(args: &crate::cli::SyncArgs) -> Result<(Vec<Job>, TargetArgs), ConfigError> {
    let file = match &args.config {
        Some(p) => FileConfig::load(p)?,
        None => FileConfig::default(),
    };
    // The file's target is taken when no target flag is given (TargetArgs::kind).
    let mut target = args.target.clone();
    target.file_qdrant_url = file.qdrant_url.clone();
    target.file_qdrant_path = file.qdrant_path.clone();
    let mut source = args.source.clone();
    source.mongo_uri = source.mongo_uri.or(file.mongo_uri.clone());

    // From the file: one entry per [[sync]]; --collection / --file select the file's entries
    // of that collection or file (flags still override their settings), and add an entry of
    // their own only for a source the file does not name.
    let flags = flag_entries(&source);
    let entries: Vec<SyncEntry> = if flags.is_empty() {
        file.sync.clone()
    } else {
        flags
            .into_iter()
            .flat_map(|f| {
                let named: Vec<SyncEntry> = file
                    .sync
                    .iter()
                    .filter(|e| {
                        (f.collection.is_some() && e.collection == f.collection)
                            || (f.file.is_some() && e.file == f.file)
                    })
                    .cloned()
                    .collect();
                if named.is_empty() { vec![f] } else { named }
            })
            .collect()
    };
    let mut specs = Vec::new();
    for e in entries {
        let text = args
            .text
            .clone()
            .or(e.text.clone())
            .unwrap_or_else(|| DEFAULT_TEMPLATE.to_owned());
        let payload = if args.payload.is_empty() {
            e.payload.clone()
        } else {
            args.payload.clone()
        };
        let spec = JobSpec {
            mongo_uri: source
                .mongo_uri
                .clone()
                .unwrap_or_else(|| DEFAULT_MONGO_URI.to_owned()),
            // A flag beats the entry, which beats the file's shared setting.
            database: source
                .database
                .clone()
                .or(e.database.clone())
                .or(file.database.clone()),
            collection: e.collection.clone(),
            file: e.file.clone(),
            namespace: source.namespace.clone().or(e.namespace.clone()),
            target: args.target.collection_name.clone().or(e.target.clone()),
            text,
            payload,
            filter: source.filter.clone().or(e.filter.clone()),
            projection: source.projection.clone().or(e.projection.clone()),
            cursor_batch: source.cursor_batch,
            vector_name: target
                .vector_name
                .clone()
                .or(e.vector_name.clone())
                .or(file.vector_name.clone()),
            sparse: sparse::settings(&args.sparse, &e)?,
            indexes: if args.index.is_empty() {
                e.index.clone()
            } else {
                args.index.clone()
            },
            settings: collection::settings(&args.collection, &e),
            distance: args.collection.distance.or(e.distance),
        };
        specs.push(spec);
    }
    let jobs = into_jobs(specs).await?;
    sparse::check_shared(&jobs)?;
    collection::check_shared(&jobs)?;
    if args.chunk_size.is_some() && jobs.iter().any(Job::sparse_only) {
        return Err(ConfigError::Sparse(
            "--chunk-size splits texts by the model's tokens, and --no-dense loads no model: drop --chunk-size (or --no-dense)".into(),
        ));
    }
    Ok((jobs, target))
}

impl ModelArgs {
    /// The embedding configuration these flags describe.
    pub fn embed_config(&self) -> Result<EmbedConfig, ConfigError> {
        let (sessions, intra) = default_layout(available_cores());
        for (flag, v) in [
            ("max-batch", self.max_batch),
            ("max-batch-tokens", self.max_batch_tokens),
        ] {
            if v == 0 {
                return Err(ConfigError::TooSmall { flag, min: 1 });
            }
        }
        use crate::embed::locate;
        let or_found =
            |p: &Option<std::path::PathBuf>, rel| p.clone().unwrap_or_else(|| locate::find(rel));
        let mut c = EmbedConfig::with_defaults(
            or_found(&self.model_dir, locate::DEFAULT_MODEL),
            or_found(&self.ort_library, locate::ORT_LIBRARY),
        );
        c.device = self.device;
        c.precision = self.precision;
        c.openvino_library = or_found(&self.openvino_library, locate::OPENVINO_LIBRARY);
        c.sessions = self.sessions.unwrap_or(sessions).max(1);
        c.intra_threads = self.intra_threads.unwrap_or(intra).max(1);
        c.max_batch = self.max_batch;
        c.max_batch_tokens = self.max_batch_tokens;
        c.overrides = crate::embed::folder::Overrides {
            onnx_file: self.onnx_file.clone(),
            document_prompt: self.document_prompt.clone(),
            query_prompt: self.query_prompt.clone(),
        };
        Ok(c)
    }
}

/// Chunking settings from the flags.
pub fn chunking(args: &SyncArgs) -> Result<Option<Chunking>, ConfigError> {
    match args.chunk_size {
        None => Ok(None),
        Some(size) if size < 16 => Err(ConfigError::TooSmall {
            flag: "chunk-size",
            min: 16,
        }),
        Some(size) if args.chunk_overlap * 2 >= size => Err(ConfigError::Overlap {
            size,
            overlap: args.chunk_overlap,
        }),
        Some(size) => Ok(Some(Chunking {
            size,
            overlap: args.chunk_overlap,
        })),
    }
}

/// Jobs for plain flags (no config file): one per `--collection` or `--file`.
pub async fn jobs(
    source: &SourceArgs,
    target_name: Option<&str>,
    text: &str,
    payload: &[String],
) -> Result<Vec<Job>, ConfigError> {
    let base = JobSpec {
        mongo_uri: source
            .mongo_uri
            .clone()
            .unwrap_or_else(|| DEFAULT_MONGO_URI.to_owned()),
        database: source.database.clone(),
        collection: None,
        file: None,
        namespace: source.namespace.clone(),
        target: target_name.map(str::to_owned),
        text: text.to_owned(),
        payload: payload.to_vec(),
        filter: source.filter.clone(),
        projection: source.projection.clone(),
        cursor_batch: source.cursor_batch,
        vector_name: None,
        sparse: None,
        indexes: Vec::new(),
        settings: Default::default(),
        distance: None,
    };
    let specs = flag_entries(source).into_iter().map(|e| JobSpec {
        collection: e.collection,
        file: e.file,
        ..base.clone()
    });
    into_jobs(specs).await
}

/// One entry per `--collection` and per `--file`.
fn flag_entries(source: &SourceArgs) -> Vec<SyncEntry> {
    let one = |collection: Option<String>, file: Option<PathBuf>| SyncEntry {
        collection,
        file,
        ..Default::default()
    };
    source
        .collections
        .iter()
        .map(|c| one(Some(c.clone()), None))
        .chain(source.files.iter().map(|f| one(None, Some(f.clone()))))
        .collect()
}

/// A mongodump archive without a namespace stands for every user collection in it: one spec
/// each.
fn expand_archives(specs: impl IntoIterator<Item = JobSpec>) -> Result<Vec<JobSpec>, ConfigError> {
    use crate::source::dump::{DumpKind, archive_namespaces, kind_of};
    let mut out = Vec::new();
    for spec in specs {
        let archive = match (&spec.file, &spec.namespace) {
            (Some(f), None) => kind_of(f) == Some(DumpKind::Archive),
            _ => false,
        };
        if !archive {
            out.push(spec);
            continue;
        }
        let path = spec.file.clone().expect("an archive spec names its file");
        for ns in archive_namespaces(&path)? {
            out.push(JobSpec {
                namespace: Some(ns.to_string()),
                ..spec.clone()
            });
        }
    }
    Ok(out)
}

/// Build every job, sharing one MongoDB client per URI; no job at all is an error, and so are
/// two jobs that would write the same points (same namespace, target and vector).
async fn into_jobs(specs: impl IntoIterator<Item = JobSpec>) -> Result<Vec<Job>, ConfigError> {
    let mut clients = std::collections::HashMap::new();
    let mut jobs: Vec<Job> = Vec::new();
    for spec in expand_archives(specs)? {
        let job = spec.into_job(&mut clients).await?;
        if let Some(other) = jobs.iter().find(|j| j.route() == job.route()) {
            return Err(ConfigError::SharedRoute {
                route: job.route(),
                first: other.source.describe(),
                second: job.source.describe(),
            });
        }
        let mixed = jobs.iter().find(|j| {
            j.target == job.target && j.vector_name.is_some() != job.vector_name.is_some()
        });
        if let Some(other) = mixed {
            let (unnamed, named) = if job.vector_name.is_none() {
                (&job, other)
            } else {
                (other, &job)
            };
            if named.sparse_only() {
                return Err(ConfigError::Sparse(format!(
                    "{} writes whole points of `{}` (its unnamed vector), which would drop the sparse vector {} writes beside them: give that entry `sparse = \"bm25\"` (--sparse bm25) instead of a sparse-only entry",
                    unnamed.source.describe(),
                    job.target,
                    named.source.describe()
                )));
            }
            return Err(ConfigError::MixedVectors {
                target: job.target.clone(),
                unnamed: unnamed.source.describe(),
                named: named.source.describe(),
                name: named.vector_name.clone().unwrap_or_default(),
            });
        }
        jobs.push(job);
    }
    if jobs.is_empty() {
        return Err(ConfigError::NoSource);
    }
    Ok(jobs)
}
