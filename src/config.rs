//! Turns command-line arguments into validated, immutable settings: jobs, embedding layout,
//! target. Everything that can be checked before connecting is checked here.

use std::path::PathBuf;

use mongodb::bson::Document;

use crate::cli::{ModelArgs, SourceArgs, SyncArgs, TargetArgs};
use crate::embed::{EmbedConfig, available_cores, default_layout};
use crate::point::{Chunking, Job};
pub use crate::sink::TargetKind;
use crate::source::mongo::connect;
use crate::source::{FileSource, MongoSource, Namespace, Source, SourceError, parse_ext_json_doc};
use crate::text::{Template, TemplateError};

/// Errors in the settings themselves (exit code "usage").
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("--text: {0}")]
    Template(#[from] TemplateError),
    #[error("{0}")]
    Source(#[from] SourceError),
    #[error("nothing to read: give --database with --collection NAME, or --file PATH")]
    NoSource,
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
    #[error("namespace `{0}`: write it as DATABASE.COLLECTION, for example shop.products")]
    Namespace(String),
    #[error("target collection `{name}`: {reason}; choose another --collection-name")]
    CollectionName { name: String, reason: &'static str },
}

/// Default MongoDB URI.
pub const DEFAULT_MONGO_URI: &str = "mongodb://127.0.0.1:27017";
/// Default embedded store directory.
pub const DEFAULT_QDRANT_PATH: &str = "qdrant-data";
/// Default text template.
pub const DEFAULT_TEMPLATE: &str = "{text}";

impl TargetArgs {
    pub fn kind(&self) -> TargetKind {
        match &self.qdrant_url {
            Some(url) => TargetKind::Grpc {
                url: url.clone(),
                api_key: self.qdrant_api_key.clone(),
            },
            None => TargetKind::Embedded {
                path: self
                    .qdrant_path
                    .clone()
                    .unwrap_or_else(|| PathBuf::from(DEFAULT_QDRANT_PATH)),
            },
        }
    }
}

/// A TOML config file: shared settings, then one `[[sync]]` table per source collection or file.
/// Unknown keys are an error.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub mongo_uri: Option<String>,
    pub database: Option<String>,
    pub qdrant_url: Option<String>,
    pub qdrant_path: Option<PathBuf>,
    pub vector_name: Option<String>,
    #[serde(default)]
    pub sync: Vec<SyncEntry>,
}

/// One source collection (or file) into one target collection.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncEntry {
    pub collection: Option<String>,
    pub file: Option<PathBuf>,
    /// The namespace of a file's documents (`db.collection`): the same as the live collection's
    /// makes a dump and the collection feed the same points. Default: `database` (or `file`) and
    /// the file's stem.
    pub namespace: Option<String>,
    pub database: Option<String>,
    /// Target collection (default: the source collection's name).
    pub target: Option<String>,
    pub text: Option<String>,
    #[serde(default)]
    pub payload: Vec<String>,
    pub filter: Option<String>,
    pub projection: Option<String>,
    /// Named vector of this entry; entries with different names may share a source and a
    /// target (one point per document, one vector per entry).
    pub vector_name: Option<String>,
}

impl FileConfig {
    /// Read and parse `path`.
    /// Relative paths in it (`file`, `qdrant_path`) are relative to the file's own directory, so
    /// a run from anywhere reads the same files and writes the same store.
    pub fn load(path: &std::path::Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        let mut config: FileConfig = toml::from_str(&text).map_err(|e| ConfigError::File {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        let base = path.parent().unwrap_or(std::path::Path::new(""));
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        if let Some(p) = config.qdrant_path.as_mut() {
            resolve(p);
        }
        for e in &mut config.sync {
            if let Some(f) = e.file.as_mut() {
                resolve(f);
            }
        }
        Ok(config)
    }
}

/// The jobs and target of a `sync` (or `verify`): the config file, with command-line flags
/// overriding it.
pub async fn sync_plan(args: &crate::cli::SyncArgs) -> Result<(Vec<Job>, TargetArgs), ConfigError> {
    let file = match &args.config {
        Some(p) => FileConfig::load(p)?,
        None => FileConfig::default(),
    };
    let mut target = args.target.clone();
    target.qdrant_url = target.qdrant_url.or(file.qdrant_url.clone());
    target.qdrant_path = target.qdrant_path.or(file.qdrant_path.clone());
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
        };
        specs.push(spec);
    }
    let jobs = into_jobs(specs).await?;
    Ok((jobs, target))
}

/// Everything one job needs, resolved.
#[derive(Debug, Clone)]
pub struct JobSpec {
    pub mongo_uri: String,
    pub database: Option<String>,
    pub collection: Option<String>,
    pub file: Option<PathBuf>,
    /// A file's namespace (`db.collection`), when given.
    pub namespace: Option<String>,
    pub target: Option<String>,
    pub text: String,
    pub payload: Vec<String>,
    pub filter: Option<String>,
    pub projection: Option<String>,
    pub cursor_batch: u32,
    pub vector_name: Option<String>,
}

impl JobSpec {
    /// Validate and build the job (one MongoDB client per URI).
    pub async fn into_job(
        self,
        clients: &mut std::collections::HashMap<String, mongodb::Client>,
    ) -> Result<Job, ConfigError> {
        let template = Template::parse(&self.text)?;
        if let Some(v) = &self.vector_name {
            check_vector_name(v)?;
        }
        let filter_text = self.filter.clone().unwrap_or_default();
        let filter = match &self.filter {
            Some(f) => parse_ext_json_doc("filter", f, r#"{"year": {"$gte": 2000}}"#)?,
            None => Document::new(),
        };
        let projection = match &self.projection {
            Some(p) => parse_ext_json_doc("projection", p, r#"{"title": 1, "body": 1}"#)?,
            None => derived_projection(&template, &self.payload),
        };
        let (source, name) = match (&self.collection, &self.file) {
            (Some(c), None) => {
                let database = self.database.clone().ok_or(ConfigError::NoDatabase)?;
                let client = match clients.get(&self.mongo_uri) {
                    Some(c) => c.clone(),
                    None => {
                        let c = connect(&self.mongo_uri, "mongo2qdrant").await?;
                        clients.insert(self.mongo_uri.clone(), c.clone());
                        c
                    }
                };
                let namespace = Namespace {
                    database,
                    collection: c.clone(),
                };
                let src = MongoSource::new(
                    client,
                    namespace,
                    filter,
                    Some(projection),
                    self.cursor_batch,
                );
                (Source::Mongo(src), c.clone())
            }
            (None, Some(f)) => {
                let namespace = match &self.namespace {
                    Some(ns) => parse_namespace(ns)?,
                    None => {
                        let stem = f
                            .file_stem()
                            .map_or_else(|| "file".into(), |s| s.to_string_lossy().into_owned());
                        Namespace {
                            database: self.database.clone().unwrap_or_else(|| "file".into()),
                            collection: stem.strip_suffix(".json").unwrap_or(&stem).to_owned(),
                        }
                    }
                };
                let name = namespace.collection.clone();
                (Source::File(FileSource::new(f.clone(), namespace)), name)
            }
            _ => return Err(ConfigError::EntrySource),
        };
        let target = self.target.unwrap_or(name);
        check_collection_name(&target)?;
        Ok(Job {
            source,
            target,
            template,
            payload_fields: self.payload,
            filter_text,
            vector_name: self.vector_name,
        })
    }
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
        let mut c = EmbedConfig::with_defaults(self.model_dir.clone(), self.ort_library.clone());
        c.device = self.device;
        c.sessions = self.sessions.unwrap_or(sessions).max(1);
        c.intra_threads = self.intra_threads.unwrap_or(intra).max(1);
        c.max_batch = self.max_batch;
        c.max_batch_tokens = self.max_batch_tokens;
        Ok(c)
    }
}

/// A vector name must be a plain payload key suffix (`content_hash_<name>`): letters, digits,
/// `_` and `-`.
pub fn check_vector_name(name: &str) -> Result<(), ConfigError> {
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(ConfigError::VectorName(name.to_owned()))
    }
}

/// A target collection name must be one Qdrant accepts (it is a directory of the embedded
/// store) and not the records collection, which holds every checkpoint.
pub fn check_collection_name(name: &str) -> Result<(), ConfigError> {
    let bad = |reason| {
        Err(ConfigError::CollectionName {
            name: name.to_owned(),
            reason,
        })
    };
    if name == crate::state::RECORDS_COLLECTION {
        return bad("it is reserved for the checkpoints, leases and run records");
    }
    if name.is_empty() || name.len() > 255 {
        return bad("a name has 1 to 255 bytes");
    }
    if name == "."
        || name == ".."
        || name
            .chars()
            .any(|c| "/\\:*?\"<>|".contains(c) || c.is_control())
    {
        return bad(
            "a name cannot be `.` or `..` nor contain / \\ : * ? \" < > | or control characters",
        );
    }
    Ok(())
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

/// The projection a template and payload need (top-level fields), plus `_id`.
fn derived_projection(template: &Template, payload: &[String]) -> Document {
    let mut p = Document::new();
    for f in template.fields().chain(payload.iter().cloned()) {
        let top = f.split('.').next().unwrap_or(&f).to_owned();
        p.insert(top, 1);
    }
    p.insert("_id", 1);
    p
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

/// `db.collection` as a namespace (the collection may contain dots, the database may not).
fn parse_namespace(text: &str) -> Result<Namespace, ConfigError> {
    match text.split_once('.') {
        Some((db, coll)) if !db.is_empty() && !coll.is_empty() => Ok(Namespace {
            database: db.to_owned(),
            collection: coll.to_owned(),
        }),
        _ => Err(ConfigError::Namespace(text.to_owned())),
    }
}

/// Build every job, sharing one MongoDB client per URI; no job at all is an error, and so are
/// two jobs that would write the same points (same namespace, target and vector).
async fn into_jobs(specs: impl IntoIterator<Item = JobSpec>) -> Result<Vec<Job>, ConfigError> {
    let mut clients = std::collections::HashMap::new();
    let mut jobs: Vec<Job> = Vec::new();
    for spec in specs {
        let job = spec.into_job(&mut clients).await?;
        if let Some(other) = jobs.iter().find(|j| j.route() == job.route()) {
            return Err(ConfigError::SharedRoute {
                route: job.route(),
                first: other.source.describe(),
                second: job.source.describe(),
            });
        }
        jobs.push(job);
    }
    if jobs.is_empty() {
        return Err(ConfigError::NoSource);
    }
    Ok(jobs)
}
