//! The embedded store's plumbing: a collection's directory and open shard, and running engine
//! work off the async runtime.

use std::path::PathBuf;
use std::sync::Arc;

use qdrant_edge::{EdgeShard, UpdateOperation};

use super::EdgeSink;
use crate::sink::SinkError;

impl EdgeSink {
    pub(super) fn dir(&self, collection: &str) -> PathBuf {
        self.root.join(collection)
    }

    pub(super) fn store_err(&self, collection: &str, e: impl std::fmt::Display) -> SinkError {
        SinkError::Store {
            path: self.dir(collection).display().to_string(),
            reason: e.to_string(),
        }
    }

    /// The open shard of `collection`, loading it from disk on first use.
    pub(super) fn shard(&self, collection: &str) -> Result<Arc<EdgeShard>, SinkError> {
        let mut shards = self.shards.lock().expect("shard map poisoned");
        if let Some(s) = shards.get(collection) {
            return Ok(s.clone());
        }
        let dir = self.dir(collection);
        if !dir.join("edge_config.json").is_file() {
            return Err(SinkError::NoCollection(collection.to_owned()));
        }
        let shard =
            Arc::new(EdgeShard::load(&dir, None).map_err(|e| self.store_err(collection, e))?);
        shards.insert(collection.to_owned(), shard.clone());
        Ok(shard)
    }

    /// Apply one update operation off the async runtime.
    pub(super) async fn apply(
        &self,
        collection: &str,
        op: UpdateOperation,
    ) -> Result<(), SinkError> {
        self.blocking(collection, move |shard| {
            shard.update(op).map_err(|e| e.to_string())
        })
        .await
    }

    /// Run blocking engine work off the async runtime.
    pub(super) async fn blocking<T: Send + 'static>(
        &self,
        collection: &str,
        f: impl FnOnce(Arc<EdgeShard>) -> Result<T, String> + Send + 'static,
    ) -> Result<T, SinkError> {
        let shard = self.shard(collection)?;
        tokio::task::spawn_blocking(move || f(shard))
            .await
            .map_err(|e| self.store_err(collection, e))?
            .map_err(|e| self.store_err(collection, e))
    }
}
