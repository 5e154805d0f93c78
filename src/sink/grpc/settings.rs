//! Collection settings on a Qdrant server: what a new collection is created with, what an
//! existing one reports, and the online changes (`UpdateCollection`). The server's 1.19 API
//! still speaks `on_disk` / `always_ram` (their `memory` successors are read too).
#![allow(deprecated)]

use qdrant_client::qdrant::{
    BinaryQuantization, CollectionInfo, CollectionParamsDiff, CompressionRatio,
    CreateCollectionBuilder, Disabled, HnswConfigDiff, Memory, OptimizersConfigDiff,
    PayloadStorageParams, ProductQuantization, QuantizationType, ScalarQuantization,
    UpdateCollectionBuilder, VectorParams, VectorParamsDiff, VectorParamsDiffMap,
    VectorsConfigDiff, quantization_config::Quantization, quantization_config_diff,
    vectors_config::Config, vectors_config_diff,
};

use super::convert::request_err;
use crate::sink::settings::{Key, QuantKind, Settings, Support};
use crate::sink::{Sink, SinkError};

/// What a server does with each setting: all online but the shard number.
pub(super) fn support(key: Key) -> Support {
    match key {
        Key::ShardNumber => Support::AtCreation,
        _ => Support::Online,
    }
}

fn ratio(c: u32) -> CompressionRatio {
    match c {
        8 => CompressionRatio::X8,
        16 => CompressionRatio::X16,
        32 => CompressionRatio::X32,
        64 => CompressionRatio::X64,
        _ => CompressionRatio::X4,
    }
}

/// The quantization `s` asks for (`None`: none, or no opinion).
fn quantization(s: &Settings) -> Option<Quantization> {
    let ram = s.always_ram;
    Some(match s.quantization? {
        QuantKind::None => return None,
        QuantKind::Scalar => Quantization::Scalar(ScalarQuantization {
            r#type: QuantizationType::Int8 as i32,
            quantile: s.quantile,
            always_ram: ram,
            ..Default::default()
        }),
        QuantKind::Binary => Quantization::Binary(BinaryQuantization {
            always_ram: ram,
            ..Default::default()
        }),
        QuantKind::Product => Quantization::Product(ProductQuantization {
            compression: ratio(s.compression.unwrap_or(16)) as i32,
            always_ram: ram,
            ..Default::default()
        }),
    })
}

fn hnsw(s: &Settings) -> HnswConfigDiff {
    HnswConfigDiff {
        m: s.hnsw_m,
        ef_construct: s.hnsw_ef_construct,
        ..Default::default()
    }
}

/// `builder` with every setting `s` asks for; `on_disk` goes into the dense vectors' params.
pub(super) fn create(builder: CreateCollectionBuilder, s: &Settings) -> CreateCollectionBuilder {
    let mut b = builder;
    if s.hnsw_m.is_some() || s.hnsw_ef_construct.is_some() {
        b = b.hnsw_config(hnsw(s));
    }
    if let Some(q) = quantization(s) {
        b = b.quantization_config(q);
    }
    if let Some(v) = s.on_disk_payload {
        b = b.on_disk_payload(v);
    }
    if let Some(t) = s.indexing_threshold {
        b = b.optimizers_config(OptimizersConfigDiff {
            indexing_threshold: Some(t),
            ..Default::default()
        });
    }
    if let Some(v) = s.shard_number {
        b = b.shard_number(v);
    }
    if let Some(v) = s.replication_factor {
        b = b.replication_factor(v);
    }
    if let Some(v) = s.write_consistency_factor {
        b = b.write_consistency_factor(v);
    }
    b
}

/// `memory` as the server names it for `on_disk` (1.19 reads either; a later `memory` wins).
fn placement(on_disk: bool) -> i32 {
    if on_disk {
        Memory::Cold as i32
    } else {
        Memory::Cached as i32
    }
}

/// A dense vector's params with the asked `on_disk`.
pub(super) fn vector_params(mut p: VectorParams, s: &Settings) -> VectorParams {
    if let Some(d) = s.on_disk {
        (p.on_disk, p.memory) = (Some(d), Some(placement(d)));
    }
    p
}

/// Whether stored vectors are on disk: `memory` where the server says it, else `on_disk`.
fn on_disk(memory: Option<i32>, on_disk: Option<bool>) -> bool {
    match memory.and_then(|m| Memory::try_from(m).ok()) {
        Some(Memory::Cold) => true,
        Some(Memory::Cached | Memory::Pinned) => false,
        _ => on_disk.unwrap_or(false),
    }
}

fn ram(memory: Option<i32>, always_ram: Option<bool>) -> Option<bool> {
    match memory.and_then(|m| Memory::try_from(m).ok()) {
        Some(Memory::Pinned) => Some(true),
        Some(Memory::Cold | Memory::Cached) => Some(false),
        _ => always_ram,
    }
}

/// The settings a collection reports. `on_disk` is that of its dense vectors (unset when they
/// differ, or it has none); quantization is the collection's.
pub(super) fn read(info: CollectionInfo) -> Settings {
    let mut s = Settings::default();
    let Some(config) = info.config else {
        return s;
    };
    if let Some(h) = &config.hnsw_config {
        (s.hnsw_m, s.hnsw_ef_construct) = (h.m, h.ef_construct);
    }
    s.indexing_threshold = config
        .optimizer_config
        .as_ref()
        .and_then(|o| o.indexing_threshold);
    s.quantization = Some(QuantKind::None);
    match config.quantization_config.and_then(|q| q.quantization) {
        Some(Quantization::Scalar(q)) => {
            s.quantization = Some(QuantKind::Scalar);
            s.quantile = q.quantile;
            s.always_ram = ram(q.memory, q.always_ram);
        }
        Some(Quantization::Binary(q)) => {
            s.quantization = Some(QuantKind::Binary);
            s.always_ram = ram(q.memory, q.always_ram);
        }
        Some(Quantization::Product(q)) => {
            s.quantization = Some(QuantKind::Product);
            s.compression = CompressionRatio::try_from(q.compression)
                .ok()
                .map(|r| 4 << (r as u32));
            s.always_ram = ram(q.memory, q.always_ram);
        }
        // Another kind (e.g. turbo): none of ours, so any asked kind differs.
        Some(_) => s.quantization = None,
        None => {}
    }
    if let Some(p) = config.params {
        s.shard_number = Some(p.shard_number);
        s.replication_factor = p.replication_factor;
        s.write_consistency_factor = p.write_consistency_factor;
        s.on_disk_payload = Some(match p.payload.as_ref().and_then(|x| x.memory) {
            Some(m) => on_disk(Some(m), None),
            None => p.on_disk_payload,
        });
        let vectors: Vec<(String, VectorParams)> = match p.vectors_config.and_then(|v| v.config) {
            Some(Config::Params(v)) => vec![(String::new(), v)],
            Some(Config::ParamsMap(m)) => m.map.into_iter().collect(),
            None => Vec::new(),
        };
        let flags: Vec<bool> = vectors
            .iter()
            .map(|(_, v)| on_disk(v.memory, v.on_disk))
            .collect();
        match flags.first() {
            Some(first) => s.on_disk = flags.iter().all(|f| f == first).then_some(*first),
            None => s.no_dense = true,
        }
        s.overridden = vectors
            .iter()
            .find(|(_, v)| {
                v.quantization_config.is_some()
                    || v.hnsw_config
                        .as_ref()
                        .is_some_and(|h| h.m.is_some() || h.ef_construct.is_some())
            })
            .map(|(k, _)| k.clone());
    }
    s
}

/// The update that gives a collection `merged`'s values of the `changed` settings; `vectors`:
/// the names of its dense vectors (`None` for the unnamed one).
pub(super) fn update(
    collection: &str,
    merged: &Settings,
    changed: &[Key],
    vectors: &[Option<String>],
) -> UpdateCollectionBuilder {
    let mut b = UpdateCollectionBuilder::new(collection);
    let has = |k: Key| changed.contains(&k);
    if has(Key::HnswM) || has(Key::HnswEfConstruct) {
        b = b.hnsw_config(hnsw(merged));
    }
    if changed.iter().any(|k| k.is_quantization()) {
        let q = match quantization(merged) {
            Some(Quantization::Scalar(q)) => quantization_config_diff::Quantization::Scalar(q),
            Some(Quantization::Binary(q)) => quantization_config_diff::Quantization::Binary(q),
            Some(Quantization::Product(q)) => quantization_config_diff::Quantization::Product(q),
            _ => quantization_config_diff::Quantization::Disabled(Disabled {}),
        };
        b = b.quantization_config(q);
    }
    if has(Key::IndexingThreshold) {
        b = b.optimizers_config(OptimizersConfigDiff {
            indexing_threshold: merged.indexing_threshold,
            ..Default::default()
        });
    }
    if has(Key::OnDiskPayload) || has(Key::ReplicationFactor) || has(Key::WriteConsistencyFactor) {
        let payload = merged.on_disk_payload.filter(|_| has(Key::OnDiskPayload));
        b = b.params(CollectionParamsDiff {
            on_disk_payload: payload,
            payload: payload.map(|d| PayloadStorageParams {
                memory: Some(placement(d)),
            }),
            replication_factor: merged
                .replication_factor
                .filter(|_| has(Key::ReplicationFactor)),
            write_consistency_factor: merged
                .write_consistency_factor
                .filter(|_| has(Key::WriteConsistencyFactor)),
            ..Default::default()
        });
    }
    if has(Key::OnDisk) {
        let diff = VectorParamsDiff {
            on_disk: merged.on_disk,
            memory: merged.on_disk.map(placement),
            ..Default::default()
        };
        let config = match vectors {
            [None] => vectors_config_diff::Config::Params(diff),
            names => vectors_config_diff::Config::ParamsMap(VectorParamsDiffMap {
                map: names.iter().flatten().map(|n| (n.clone(), diff)).collect(),
            }),
        };
        b = b.vectors_config(VectorsConfigDiff {
            config: Some(config),
        });
    }
    b
}

impl super::GrpcSink {
    pub(super) async fn read_settings(&self, collection: &str) -> Result<Settings, SinkError> {
        Ok(read(self.info(collection).await?))
    }

    pub(super) async fn change_settings(
        &self,
        collection: &str,
        merged: &Settings,
        changed: &[Key],
    ) -> Result<(), SinkError> {
        let names: Vec<Option<String>> = match self.shape(collection).await? {
            Some(crate::sink::Shape::Unnamed(_)) => vec![None],
            Some(crate::sink::Shape::Named(m)) => m.into_keys().map(Some).collect(),
            None => return Err(SinkError::NoCollection(collection.to_owned())),
        };
        self.client
            .update_collection(update(collection, merged, changed, &names))
            .await
            .map_err(|e| request_err("update_collection", collection, e))?;
        Ok(())
    }

    /// Where the index of `collection` stands. A grey collection (optimisations pending but
    /// not started, as after a server restart) is woken with an empty optimiser update, as
    /// Qdrant advises: whoever waits for the index would otherwise wait forever.
    pub(super) async fn index_state_woken(
        &self,
        collection: &str,
    ) -> Result<crate::sink::IndexState, SinkError> {
        let info = self.info(collection).await?;
        if info.status == qdrant_client::qdrant::CollectionStatus::Grey as i32 {
            let wake = UpdateCollectionBuilder::new(collection)
                .optimizers_config(OptimizersConfigDiff::default());
            self.client
                .update_collection(wake)
                .await
                .map_err(|e| request_err("update_collection", collection, e))?;
        }
        Ok(super::convert::index_state_of(info))
    }

    /// Switch HNSW graph building off (`m` 0) or on again, a bulk load's switch.
    pub(super) async fn switch_hnsw_m(&self, collection: &str, m: u64) -> Result<(), SinkError> {
        let only_m = Settings {
            hnsw_m: Some(m),
            ..Settings::default()
        };
        self.client
            .update_collection(update(collection, &only_m, &[Key::HnswM], &[]))
            .await
            .map_err(|e| request_err("update_collection", collection, e))?;
        Ok(())
    }
}
