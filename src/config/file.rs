//! The TOML config file: shared settings, then one `[[sync]]` entry per source; unknown keys are
//! an error, relative paths are relative to the file.

use std::path::PathBuf;

use super::ConfigError;

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
    /// `"bm25"`: a sparse vector beside the dense one (`--sparse`).
    pub sparse: Option<crate::cli::SparseKind>,
    /// The sparse vector's own text template (`--sparse-text`).
    pub sparse_text: Option<String>,
    /// The sparse vector's name (`--sparse-name`, default `bm25`).
    pub sparse_name: Option<String>,
    /// Its stop words' and stemmer's language (`--sparse-language`, default `english`).
    pub sparse_language: Option<String>,
    /// `false`: only the sparse vector, no model (`--no-dense`).
    pub dense: Option<bool>,
    /// Payload indexes of the target, `FIELD:TYPE[:tenant]` (`--index`).
    #[serde(default)]
    pub index: Vec<String>,
    // The target collection's settings, as the flags of the same names.
    pub distance: Option<crate::sink::Distance>,
    pub quantization: Option<crate::sink::settings::QuantKind>,
    pub quantile: Option<f32>,
    pub compression: Option<u32>,
    pub always_ram: Option<bool>,
    pub on_disk: Option<bool>,
    pub on_disk_payload: Option<bool>,
    pub hnsw_m: Option<u64>,
    pub hnsw_ef_construct: Option<u64>,
    pub indexing_threshold: Option<u64>,
    pub shard_number: Option<u32>,
    pub replication_factor: Option<u32>,
    pub write_consistency_factor: Option<u32>,
}

impl SyncEntry {
    /// The target collection settings this entry names.
    pub fn settings(&self) -> crate::sink::Settings {
        crate::sink::Settings {
            hnsw_m: self.hnsw_m,
            hnsw_ef_construct: self.hnsw_ef_construct,
            quantization: self.quantization,
            quantile: self.quantile,
            compression: self.compression,
            always_ram: self.always_ram,
            on_disk: self.on_disk,
            on_disk_payload: self.on_disk_payload,
            indexing_threshold: self.indexing_threshold,
            shard_number: self.shard_number,
            replication_factor: self.replication_factor,
            write_consistency_factor: self.write_consistency_factor,
            ..Default::default()
        }
    }
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
