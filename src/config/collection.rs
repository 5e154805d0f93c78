//! A target collection's settings as flags and config keys ([`crate::sink::settings`]): a flag
//! beats the entry's key; what neither names is left as the collection has it. Entries into
//! one target must agree (on each setting and each payload index).

use clap::Args;

use super::ConfigError;
use super::file::SyncEntry;
use crate::point::Job;
use crate::sink::settings::{QuantKind, Settings};

/// The target collection's settings (sync and watch); created with them, changed online where
/// Qdrant can, refused otherwise (`--recreate` rebuilds).
#[derive(Debug, Clone, Default, Args)]
pub struct CollectionArgs {
    /// How the collection compares vectors: cosine, dot, euclid or manhattan [default: the
    /// model's]. Fixed once created (`--recreate` rebuilds).
    #[arg(long, env = "M2Q_DISTANCE", value_enum)]
    pub distance: Option<crate::sink::Distance>,
    /// Quantize vectors: scalar (int8, 4x less vector memory), binary (1 bit, wide vectors),
    /// product, or none (removes it). Searching rescores with the original vectors.
    #[arg(long, env = "M2Q_QUANTIZATION", value_enum)]
    pub quantization: Option<QuantKind>,
    /// Scalar quantization's quantile (0.5-1.0): the share of values kept exact at the edges.
    #[arg(long, env = "M2Q_QUANTILE")]
    pub quantile: Option<f32>,
    /// Product quantization's compression ratio: 4, 8, 16, 32 or 64 [default: 16].
    #[arg(long, env = "M2Q_COMPRESSION")]
    pub compression: Option<u32>,
    /// Keep quantized vectors in RAM whatever the original vectors' storage.
    #[arg(long, env = "M2Q_ALWAYS_RAM", num_args = 0..=1, default_missing_value = "true")]
    pub always_ram: Option<bool>,
    /// Keep the original dense vectors on disk (memory-mapped) instead of in RAM.
    #[arg(long, env = "M2Q_ON_DISK", num_args = 0..=1, default_missing_value = "true")]
    pub on_disk: Option<bool>,
    /// Keep the payload on disk instead of in RAM.
    #[arg(long, env = "M2Q_ON_DISK_PAYLOAD", num_args = 0..=1, default_missing_value = "true")]
    pub on_disk_payload: Option<bool>,
    /// HNSW edges per node (Qdrant's default 16; 0 builds no graph).
    #[arg(long, env = "M2Q_HNSW_M")]
    pub hnsw_m: Option<u64>,
    /// HNSW neighbours considered while building (Qdrant's default 100).
    #[arg(long, env = "M2Q_HNSW_EF_CONSTRUCT")]
    pub hnsw_ef_construct: Option<u64>,
    /// KB of vectors a segment holds before it gets an HNSW index (Qdrant's default 10000).
    #[arg(long, env = "M2Q_INDEXING_THRESHOLD")]
    pub indexing_threshold: Option<u64>,
    /// Shards of a new collection on a Qdrant server (fixed once created).
    #[arg(long, env = "M2Q_SHARD_NUMBER")]
    pub shard_number: Option<u32>,
    /// Copies of each shard on a Qdrant cluster.
    #[arg(long, env = "M2Q_REPLICATION_FACTOR")]
    pub replication_factor: Option<u32>,
    /// Copies that must acknowledge a write on a Qdrant cluster.
    #[arg(long, env = "M2Q_WRITE_CONSISTENCY_FACTOR")]
    pub write_consistency_factor: Option<u32>,
}

impl CollectionArgs {
    fn settings(&self) -> Settings {
        Settings {
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
            ..Settings::default()
        }
    }
}

/// One entry's settings: each flag given beats the entry's key. A flag's other quantization
/// kind drops the entry's quantile and compression (they would not fit it).
pub fn settings(args: &CollectionArgs, e: &SyncEntry) -> Settings {
    let flags = args.settings();
    let mut entry = e.settings();
    if flags.quantization.is_some() && flags.quantization != entry.quantization {
        (entry.quantile, entry.compression) = (None, None);
    }
    flags.or(&entry)
}

/// Settings that do not fit, and entries into one target that ask for different settings or
/// index one field differently.
pub fn check_shared(jobs: &[Job]) -> Result<(), ConfigError> {
    for (i, a) in jobs.iter().enumerate() {
        a.settings.check().map_err(ConfigError::Filter)?;
        for b in jobs[i + 1..].iter().filter(|b| b.target == a.target) {
            if let Some(k) = a.settings.conflicts(&b.settings).first() {
                return Err(ConfigError::Filter(format!(
                    "two entries into `{}` ask for different {}; give them the same value, or set it on one",
                    a.target,
                    k.name()
                )));
            }
            if a.vector_name == b.vector_name && a.distance != b.distance {
                return Err(ConfigError::Filter(format!(
                    "two entries into `{}` ask for different distances of one vector; give them the same --distance",
                    a.target
                )));
            }
            let clash = a
                .indexes
                .iter()
                .find(|x| b.indexes.iter().any(|y| y.field == x.field && y != *x));
            if let Some(x) = clash {
                return Err(ConfigError::Filter(format!(
                    "--index: two entries into `{}` index `{}` differently; give them the same type",
                    a.target, x.field
                )));
            }
        }
    }
    Ok(())
}

/// The settings asked for `target` over all its jobs (they agree: [`check_shared`]).
pub fn for_target(jobs: &[Job], target: &str) -> Settings {
    jobs.iter()
        .filter(|j| j.target == target)
        .fold(Settings::default(), |acc, j| acc.or(&j.settings))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flag_beats_the_entry_and_its_quantization_replaces_the_entrys() {
        let e = SyncEntry {
            hnsw_m: Some(8),
            quantization: Some(QuantKind::Scalar),
            quantile: Some(0.95),
            on_disk: Some(true),
            ..SyncEntry::default()
        };
        let args = CollectionArgs {
            hnsw_m: Some(32),
            quantization: Some(QuantKind::Binary),
            ..CollectionArgs::default()
        };
        let s = settings(&args, &e);
        assert_eq!(
            s.describe(),
            ["hnsw_m=32", "quantization=binary", "on_disk=true"]
        );
        let s = settings(&CollectionArgs::default(), &e);
        assert_eq!(s.quantile, Some(0.95));
        let args = CollectionArgs {
            quantization: Some(QuantKind::Scalar),
            ..CollectionArgs::default()
        };
        assert_eq!(
            settings(&args, &e).quantile,
            Some(0.95),
            "the same kind keeps it"
        );
    }
}
