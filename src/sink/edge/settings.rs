//! Collection settings in the embedded store: qdrant-edge takes HNSW, quantization, on-disk
//! vectors and payload and the indexing threshold when a shard is created, and changes HNSW
//! and the optimizer thresholds of an existing one; it has no shards, replicas or write
//! consistency (one process, one copy). Quantization goes through its JSON form, the one API
//! the crate exposes for it.

use qdrant_edge::{
    EdgeConfig, EdgeOptimizersConfig, EdgeVectorParams, HnswIndexConfig, Memory, QuantizationConfig,
};
use serde_json::{Value, json};

use super::EdgeSink;
use crate::sink::SinkError;
use crate::sink::settings::{Key, QuantKind, Settings, Support};

/// What the embedded store does with each setting.
pub(super) fn support(key: Key) -> Support {
    match key {
        Key::HnswM | Key::HnswEfConstruct | Key::IndexingThreshold => Support::Online,
        Key::ShardNumber | Key::ReplicationFactor | Key::WriteConsistencyFactor => Support::Never,
        _ => Support::AtCreation,
    }
}

fn memory(ram: Option<bool>) -> Value {
    match ram {
        Some(true) => json!("pinned"),
        Some(false) => json!("cached"),
        None => Value::Null,
    }
}

/// The quantization `s` asks for (`None`: none, or no opinion).
fn quantization(s: &Settings) -> Option<QuantizationConfig> {
    let value = match s.quantization? {
        QuantKind::None => return None,
        QuantKind::Scalar => json!({"scalar": {
            "type": "int8", "quantile": s.quantile, "memory": memory(s.always_ram)}}),
        QuantKind::Binary => json!({"binary": {"memory": memory(s.always_ram)}}),
        QuantKind::Product => json!({"product": {
            "compression": format!("x{}", s.compression.unwrap_or(16)),
            "memory": memory(s.always_ram)}}),
    };
    // The values were checked when parsed ([`Settings::check`]).
    serde_json::from_value(value).ok()
}

fn hnsw(mut h: HnswIndexConfig, s: &Settings) -> HnswIndexConfig {
    if let Some(m) = s.hnsw_m {
        h.m = m as usize;
    }
    if let Some(ef) = s.hnsw_ef_construct {
        h.ef_construct = ef as usize;
    }
    h
}

/// `vector` with the asked `on_disk`.
pub(super) fn vector_params(mut vector: EdgeVectorParams, s: &Settings) -> EdgeVectorParams {
    if let Some(d) = s.on_disk {
        vector.memory = Some(Memory::from_on_disk(d));
    }
    vector
}

/// `config` with every collection-wide setting `s` asks for.
pub(super) fn create(mut config: EdgeConfig, s: &Settings) -> EdgeConfig {
    if s.hnsw_m.is_some() || s.hnsw_ef_construct.is_some() {
        config.hnsw_config = Some(hnsw(config.hnsw_config(), s));
    }
    config.quantization_config = quantization(s);
    if let Some(d) = s.on_disk_payload {
        config.payload_memory = Some(Memory::from_on_disk(d));
    }
    if let Some(t) = s.indexing_threshold {
        config.optimizers = Some(EdgeOptimizersConfig {
            indexing_threshold: Some(t as usize),
            ..config.optimizers()
        });
    }
    config
}

/// The settings a shard's config holds.
pub(super) fn read(config: &EdgeConfig) -> Settings {
    let h = config.hnsw_config();
    let mut s = Settings {
        hnsw_m: Some(h.m as u64),
        hnsw_ef_construct: Some(h.ef_construct as u64),
        quantization: Some(QuantKind::None),
        on_disk_payload: Some(config.payload_memory_placement() == Memory::Cold),
        indexing_threshold: config.optimizers().indexing_threshold.map(|t| t as u64),
        ..Settings::default()
    };
    let q = config
        .quantization_config
        .as_ref()
        .and_then(|q| serde_json::to_value(q).ok());
    if let Some(Value::Object(q)) = q {
        let (kind, body) = q.into_iter().next().unwrap_or((String::new(), Value::Null));
        s.quantization = match kind.as_str() {
            "scalar" => Some(QuantKind::Scalar),
            "binary" => Some(QuantKind::Binary),
            "product" => Some(QuantKind::Product),
            _ => None,
        };
        s.quantile = body["quantile"].as_f64().map(|v| v as f32);
        s.compression = body["compression"]
            .as_str()
            .and_then(|c| c.trim_start_matches('x').parse().ok());
        s.always_ram = match body["memory"].as_str() {
            Some(m) => Some(m == "pinned"),
            None => body["always_ram"].as_bool(),
        };
    }
    let flags: Vec<bool> = config
        .vectors
        .values()
        .map(|v| v.memory_placement() == Some(Memory::Cold))
        .collect();
    match flags.first() {
        Some(first) => s.on_disk = flags.iter().all(|f| f == first).then_some(*first),
        None => s.no_dense = true,
    }
    s.overridden = config
        .vectors
        .iter()
        .find(|(_, v)| v.hnsw_config.is_some() || v.quantization_config.is_some())
        .map(|(k, _)| k.to_string());
    s
}

impl EdgeSink {
    pub(super) async fn change_settings(
        &self,
        collection: &str,
        merged: &Settings,
        changed: &[Key],
    ) -> Result<(), SinkError> {
        let shard = self.shard(collection)?;
        if changed.contains(&Key::HnswM) || changed.contains(&Key::HnswEfConstruct) {
            let h = hnsw(shard.config().hnsw_config(), merged);
            shard
                .set_hnsw_config(h)
                .map_err(|e| self.store_err(collection, e))?;
        }
        if changed.contains(&Key::IndexingThreshold) {
            let o = EdgeOptimizersConfig {
                indexing_threshold: merged.indexing_threshold.map(|t| t as usize),
                ..shard.config().optimizers()
            };
            shard
                .set_optimizers_config(o)
                .map_err(|e| self.store_err(collection, e))?;
        }
        Ok(())
    }
}

impl EdgeSink {
    /// Create the shard of `collection` from `config` with the collection-wide settings of `s`.
    pub(super) fn create_shard(
        &self,
        collection: &str,
        config: EdgeConfig,
        s: &Settings,
    ) -> Result<(), SinkError> {
        let shard = qdrant_edge::EdgeShard::new(&self.dir(collection), create(config, s))
            .map_err(|e| self.store_err(collection, e))?;
        self.shards
            .lock()
            .expect("shard map poisoned")
            .insert(collection.to_owned(), std::sync::Arc::new(shard));
        Ok(())
    }
}
