//! Turns command-line arguments into validated, immutable settings: jobs, embedding layout,
//! target. Everything that can be checked before connecting is checked here.

use std::path::PathBuf;

use mongodb::bson::Document;

use crate::cli::{ModelArgs, SourceArgs, SyncArgs, TargetArgs};
use crate::embed::{EmbedConfig, available_cores, default_layout};
use crate::pipeline::{Chunking, Job};
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
    #[error("--chunk-overlap ({overlap}) must be smaller than half of --chunk-size ({size})")]
    Overlap { size: usize, overlap: usize },
}

/// Where points go.
#[derive(Debug, Clone)]
pub enum TargetKind {
    Grpc {
        url: String,
        api_key: Option<String>,
    },
    Embedded {
        path: PathBuf,
    },
}

impl TargetArgs {
    pub fn kind(&self) -> TargetKind {
        match &self.qdrant_url {
            Some(url) => TargetKind::Grpc {
                url: url.clone(),
                api_key: self.qdrant_api_key.clone(),
            },
            None => TargetKind::Embedded {
                path: self.qdrant_path.clone(),
            },
        }
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

/// Jobs for `args`: one per source collection or file.
pub async fn jobs(
    source: &SourceArgs,
    target_name: Option<&str>,
    text: &str,
    payload: &[String],
) -> Result<Vec<Job>, ConfigError> {
    let template = Template::parse(text)?;
    let filter_text = source.filter.clone().unwrap_or_default();
    let filter = match &source.filter {
        Some(f) => parse_ext_json_doc("filter", f, r#"{"year": {"$gte": 2000}}"#)?,
        None => Document::new(),
    };
    let projection = match &source.projection {
        Some(p) => Some(parse_ext_json_doc(
            "projection",
            p,
            r#"{"title": 1, "body": 1}"#,
        )?),
        None => Some(derived_projection(&template, payload)),
    };
    let mut jobs = Vec::new();
    if !source.collections.is_empty() {
        let database = source.database.clone().ok_or(ConfigError::NoDatabase)?;
        let client = connect(&source.mongo_uri, "mongo2qdrant").await?;
        for c in &source.collections {
            let namespace = Namespace {
                database: database.clone(),
                collection: c.clone(),
            };
            jobs.push(Job {
                source: Source::Mongo(MongoSource::new(
                    client.clone(),
                    namespace,
                    filter.clone(),
                    projection.clone(),
                    source.cursor_batch,
                )),
                target: target_name.unwrap_or(c).to_owned(),
                template: template.clone(),
                payload_fields: payload.to_vec(),
                filter_text: filter_text.clone(),
            });
        }
    }
    for f in &source.files {
        let stem = f
            .file_stem()
            .map_or_else(|| "file".into(), |s| s.to_string_lossy().into_owned());
        let stem = stem.strip_suffix(".json").unwrap_or(&stem).to_owned();
        let namespace = Namespace {
            database: source.database.clone().unwrap_or_else(|| "file".into()),
            collection: stem.clone(),
        };
        jobs.push(Job {
            source: Source::File(FileSource::new(f.clone(), namespace)),
            target: target_name.unwrap_or(&stem).to_owned(),
            template: template.clone(),
            payload_fields: payload.to_vec(),
            filter_text: filter_text.clone(),
        });
    }
    if jobs.is_empty() {
        return Err(ConfigError::NoSource);
    }
    Ok(jobs)
}
