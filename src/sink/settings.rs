//! Collection settings as code: quantization, on-disk storage, HNSW, the indexing threshold and,
//! on a server cluster, shards, replicas and write consistency. A run asks for some of them
//! (flags or config keys; what it does not name it leaves alone); a new collection is created
//! with them, and an existing one is compared: what the target changes online is applied with
//! one log line per change (nothing is embedded again), what it cannot is refused by name
//! (`--recreate` rebuilds). A dry run only says what would change.

use serde::{Deserialize, Serialize};

use super::{Sink, SinkError};

/// How vectors are quantized.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum QuantKind {
    /// No quantization (removes one the collection has).
    None,
    /// int8 per dimension: 4x less vector memory, the usual choice.
    Scalar,
    /// One bit per dimension: 32x less, for wide vectors (1024+ dimensions) and rescoring.
    Binary,
    /// Product quantization: 4-64x less, slower and less exact.
    Product,
}

impl QuantKind {
    pub fn name(self) -> &'static str {
        match self {
            QuantKind::None => "none",
            QuantKind::Scalar => "scalar",
            QuantKind::Binary => "binary",
            QuantKind::Product => "product",
        }
    }
}

/// One setting, named as its config key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Key {
    HnswM,
    HnswEfConstruct,
    Quantization,
    Quantile,
    Compression,
    AlwaysRam,
    OnDisk,
    OnDiskPayload,
    IndexingThreshold,
    ShardNumber,
    ReplicationFactor,
    WriteConsistencyFactor,
}

impl Key {
    pub const ALL: [Key; 12] = [
        Key::HnswM,
        Key::HnswEfConstruct,
        Key::Quantization,
        Key::Quantile,
        Key::Compression,
        Key::AlwaysRam,
        Key::OnDisk,
        Key::OnDiskPayload,
        Key::IndexingThreshold,
        Key::ShardNumber,
        Key::ReplicationFactor,
        Key::WriteConsistencyFactor,
    ];

    /// The config key (the flag is the same with dashes).
    pub fn name(self) -> &'static str {
        match self {
            Key::HnswM => "hnsw_m",
            Key::HnswEfConstruct => "hnsw_ef_construct",
            Key::Quantization => "quantization",
            Key::Quantile => "quantile",
            Key::Compression => "compression",
            Key::AlwaysRam => "always_ram",
            Key::OnDisk => "on_disk",
            Key::OnDiskPayload => "on_disk_payload",
            Key::IndexingThreshold => "indexing_threshold",
            Key::ShardNumber => "shard_number",
            Key::ReplicationFactor => "replication_factor",
            Key::WriteConsistencyFactor => "write_consistency_factor",
        }
    }

    /// Whether the key belongs to the quantization config (sent whole when any part changes).
    pub fn is_quantization(self) -> bool {
        matches!(
            self,
            Key::Quantization | Key::Quantile | Key::Compression | Key::AlwaysRam
        )
    }
}

/// Settings of a collection: asked (`None`: the run has no opinion) or found (`None`: the
/// target does not say, or has no such thing).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub hnsw_m: Option<u64>,
    pub hnsw_ef_construct: Option<u64>,
    pub quantization: Option<QuantKind>,
    /// Scalar quantization's quantile (0.5-1.0).
    pub quantile: Option<f32>,
    /// Product quantization's compression ratio: 4, 8, 16, 32 or 64.
    pub compression: Option<u32>,
    /// Quantized vectors kept in RAM whatever the original vectors' storage.
    pub always_ram: Option<bool>,
    /// Original dense vectors on disk (memory-mapped) instead of RAM.
    pub on_disk: Option<bool>,
    pub on_disk_payload: Option<bool>,
    /// KB of vectors a segment holds before it is indexed (HNSW).
    pub indexing_threshold: Option<u64>,
    pub shard_number: Option<u32>,
    pub replication_factor: Option<u32>,
    pub write_consistency_factor: Option<u32>,
    /// Found: the collection has no dense vector (sparse only), so `on_disk` does not apply.
    #[serde(skip)]
    pub no_dense: bool,
    /// Found: a dense vector with HNSW or quantization settings of its own, which win over the
    /// collection's.
    #[serde(skip)]
    pub overridden: Option<String>,
}

impl Settings {
    /// A setting's value as text, `None` when unset.
    pub fn value(&self, key: Key) -> Option<String> {
        let s = |v: Option<&dyn std::fmt::Display>| v.map(|v| v.to_string());
        match key {
            Key::HnswM => s(self.hnsw_m.as_ref().map(|v| v as _)),
            Key::HnswEfConstruct => s(self.hnsw_ef_construct.as_ref().map(|v| v as _)),
            Key::Quantization => self.quantization.map(|q| q.name().to_owned()),
            Key::Quantile => s(self.quantile.as_ref().map(|v| v as _)),
            Key::Compression => s(self.compression.as_ref().map(|v| v as _)),
            Key::AlwaysRam => s(self.always_ram.as_ref().map(|v| v as _)),
            Key::OnDisk => s(self.on_disk.as_ref().map(|v| v as _)),
            Key::OnDiskPayload => s(self.on_disk_payload.as_ref().map(|v| v as _)),
            Key::IndexingThreshold => s(self.indexing_threshold.as_ref().map(|v| v as _)),
            Key::ShardNumber => s(self.shard_number.as_ref().map(|v| v as _)),
            Key::ReplicationFactor => s(self.replication_factor.as_ref().map(|v| v as _)),
            Key::WriteConsistencyFactor => {
                s(self.write_consistency_factor.as_ref().map(|v| v as _))
            }
        }
    }

    /// Whether nothing is asked.
    pub fn is_empty(&self) -> bool {
        Key::ALL.iter().all(|k| self.value(*k).is_none())
    }

    /// `key=value` for each setting that is set.
    pub fn describe(&self) -> Vec<String> {
        Key::ALL
            .iter()
            .filter_map(|k| self.value(*k).map(|v| format!("{}={v}", k.name())))
            .collect()
    }

    /// Each key set in both with different values.
    pub fn conflicts(&self, other: &Settings) -> Vec<Key> {
        Key::ALL
            .into_iter()
            .filter(|k| matches!((self.value(*k), other.value(*k)), (Some(a), Some(b)) if a != b))
            .collect()
    }

    /// These settings with `other`'s set values added where these have none.
    pub fn or(&self, other: &Settings) -> Settings {
        Settings {
            hnsw_m: self.hnsw_m.or(other.hnsw_m),
            hnsw_ef_construct: self.hnsw_ef_construct.or(other.hnsw_ef_construct),
            quantization: self.quantization.or(other.quantization),
            quantile: self.quantile.or(other.quantile),
            compression: self.compression.or(other.compression),
            always_ram: self.always_ram.or(other.always_ram),
            on_disk: self.on_disk.or(other.on_disk),
            on_disk_payload: self.on_disk_payload.or(other.on_disk_payload),
            indexing_threshold: self.indexing_threshold.or(other.indexing_threshold),
            shard_number: self.shard_number.or(other.shard_number),
            replication_factor: self.replication_factor.or(other.replication_factor),
            write_consistency_factor: self
                .write_consistency_factor
                .or(other.write_consistency_factor),
            no_dense: self.no_dense || other.no_dense,
            overridden: self.overridden.clone().or(other.overridden.clone()),
        }
    }

    /// The keys asked here whose value `found` does not have (`on_disk` only where there are
    /// dense vectors).
    pub fn drift(&self, found: &Settings) -> Vec<Key> {
        Key::ALL
            .into_iter()
            .filter(|k| !(found.no_dense && *k == Key::OnDisk))
            .filter(|k| match self.value(*k) {
                Some(v) => found.value(*k).as_deref() != Some(v.as_str()),
                None => false,
            })
            .collect()
    }

    /// Settings that do not fit together; the error names the fix.
    pub fn check(&self) -> Result<(), String> {
        let q = self.quantization;
        let needs = |set: bool, flag: &str, kind: QuantKind| {
            if set && q != Some(kind) {
                Err(format!(
                    "--{flag} belongs to --quantization {}; add that or drop --{flag}",
                    kind.name()
                ))
            } else {
                Ok(())
            }
        };
        needs(self.quantile.is_some(), "quantile", QuantKind::Scalar)?;
        needs(
            self.compression.is_some(),
            "compression",
            QuantKind::Product,
        )?;
        if self.always_ram.is_some() && matches!(q, None | Some(QuantKind::None)) {
            return Err(
                "--always-ram keeps quantized vectors in RAM: add --quantization scalar, binary or product, or drop it".into(),
            );
        }
        if let Some(v) = self.quantile
            && !(0.5..=1.0).contains(&v)
        {
            return Err(format!(
                "--quantile {v}: give a value from 0.5 to 1.0, e.g. 0.99"
            ));
        }
        if let Some(c) = self.compression
            && ![4, 8, 16, 32, 64].contains(&c)
        {
            return Err(format!("--compression {c}: give 4, 8, 16, 32 or 64"));
        }
        if let Some(ef) = self.hnsw_ef_construct
            && ef < 4
        {
            return Err(format!(
                "--hnsw-ef-construct {ef}: give 4 or more (Qdrant's default is 100)"
            ));
        }
        if let (Some(r), Some(w)) = (self.replication_factor, self.write_consistency_factor)
            && w > r
        {
            return Err(format!(
                "--write-consistency-factor {w} is more than --replication-factor {r}: no write could be acknowledged by that many copies; give at most {r}"
            ));
        }
        for (v, flag) in [
            (self.shard_number, "shard-number"),
            (self.replication_factor, "replication-factor"),
            (self.write_consistency_factor, "write-consistency-factor"),
        ] {
            if v == Some(0) {
                return Err(format!("--{flag} 0: give 1 or more"));
            }
        }
        Ok(())
    }
}

/// What a target does with each setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Support {
    /// Set at creation and changed online.
    Online,
    /// Set at creation only: a change needs `--recreate`.
    AtCreation,
    /// Not there at all (e.g. shards of the embedded store).
    Never,
}

/// Give the existing `collection` what `asked` names: each online change logged and applied (a
/// dry run only logs), settings the target has only at creation refused by name. Returns the
/// settings found before any change.
pub async fn ensure_settings<S: Sink + ?Sized>(
    sink: &S,
    collection: &str,
    asked: &Settings,
    dry_run: bool,
) -> Result<Settings, SinkError> {
    unsupported(sink, asked)?;
    let found = sink.settings(collection).await?;
    if let Some(e) = refusal(sink, collection, asked, &found) {
        return Err(e);
    }
    let changed = asked.drift(&found);
    if changed.is_empty() {
        return Ok(found);
    }
    for k in &changed {
        let was = found.value(*k).unwrap_or_else(|| "unset".into());
        let to = asked.value(*k).unwrap_or_default();
        let verb = if dry_run { "would change" } else { "changing" };
        tracing::info!("{collection}: {verb} {} from {was} to {to}", k.name());
    }
    if !dry_run {
        // A changed quantization is sent whole: what was not asked stays as found (always_ram
        // too), except the parts of another kind of quantization.
        let mut merged = asked.or(&found);
        if changed.contains(&Key::Quantization) {
            merged.quantile = asked.quantile;
            merged.compression = asked.compression;
        }
        if changed.contains(&Key::ReplicationFactor) {
            tracing::info!(
                "{collection}: on a self-hosted cluster Qdrant does not copy existing shards to new replicas by itself; replicate them (its cluster API) for the new factor to hold"
            );
        }
        sink.update_settings(collection, &merged, &changed).await?;
    }
    Ok(found)
}

/// The first asked setting of the existing `collection` that differs and that the target
/// cannot change online, as the error that names it.
pub async fn fixed<S: Sink + ?Sized>(
    sink: &S,
    collection: &str,
    asked: &Settings,
) -> Result<Option<SinkError>, SinkError> {
    let found = sink.settings(collection).await?;
    Ok(refusal(sink, collection, asked, &found))
}

/// [`fixed`] over settings already read.
fn refusal<S: Sink + ?Sized>(
    sink: &S,
    collection: &str,
    asked: &Settings,
    found: &Settings,
) -> Option<SinkError> {
    let per_vector = [Key::HnswM, Key::HnswEfConstruct, Key::Quantization];
    if let Some(vector) = &found.overridden
        && per_vector.iter().any(|k| asked.value(*k).is_some())
    {
        return Some(SinkError::Overridden {
            collection: collection.to_owned(),
            vector: vector.clone(),
        });
    }
    asked
        .drift(found)
        .into_iter()
        .find(|k| sink.support(*k) != Support::Online)
        .map(|key| SinkError::FixedSetting {
            collection: collection.to_owned(),
            setting: key.name(),
            found: found.value(key).unwrap_or_else(|| "unset".into()),
            wanted: asked.value(key).unwrap_or_default(),
            target: sink.describe(),
        })
}

/// A setting a target cannot have, refused before anything is written.
pub fn unsupported<S: Sink + ?Sized>(sink: &S, asked: &Settings) -> Result<(), SinkError> {
    match Key::ALL
        .into_iter()
        .find(|k| asked.value(*k).is_some() && sink.support(*k) == Support::Never)
    {
        Some(k) => Err(SinkError::Unsupported {
            setting: k.name(),
            target: sink.describe(),
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drift_is_what_is_asked_and_differs() {
        let asked = Settings {
            hnsw_m: Some(32),
            quantization: Some(QuantKind::Scalar),
            quantile: Some(0.99),
            ..Settings::default()
        };
        let found = Settings {
            hnsw_m: Some(16),
            hnsw_ef_construct: Some(100),
            quantization: Some(QuantKind::Scalar),
            ..Settings::default()
        };
        assert_eq!(asked.drift(&found), [Key::HnswM, Key::Quantile]);
        assert!(asked.drift(&asked.or(&found)).is_empty());
        assert_eq!(
            asked.describe(),
            ["hnsw_m=32", "quantization=scalar", "quantile=0.99"]
        );
    }

    #[test]
    fn misfits_are_named() {
        let bad = |s: Settings, says: &str| {
            let e = s.check().unwrap_err();
            assert!(e.contains(says), "{e}");
        };
        bad(
            Settings {
                quantile: Some(0.9),
                ..Settings::default()
            },
            "--quantization scalar",
        );
        bad(
            Settings {
                quantization: Some(QuantKind::Product),
                compression: Some(3),
                ..Settings::default()
            },
            "4, 8, 16",
        );
        bad(
            Settings {
                always_ram: Some(true),
                ..Settings::default()
            },
            "--always-ram",
        );
        bad(
            Settings {
                quantization: Some(QuantKind::Scalar),
                quantile: Some(0.2),
                ..Settings::default()
            },
            "0.5 to 1.0",
        );
        bad(
            Settings {
                shard_number: Some(0),
                ..Settings::default()
            },
            "--shard-number 0",
        );
        let a = Settings {
            hnsw_m: Some(8),
            ..Settings::default()
        };
        let b = Settings {
            hnsw_m: Some(16),
            on_disk: Some(true),
            ..Settings::default()
        };
        assert_eq!(a.conflicts(&b), [Key::HnswM]);
        assert!(a.check().is_ok() && b.check().is_ok());
    }
}
