//! Bulk loads into a Qdrant server (`--bulk`): a first load into an empty collection is written
//! with HNSW graph building off (`hnsw_config.m = 0`: the points are stored, searchable by a
//! full scan, and no graph is rebuilt while segments grow), then the graph is switched back on
//! and the optimiser awaited, and the time to an indexed collection is reported.
//!
//! Shards share a collection: the first to begin records the load (with the `m` to restore)
//! before switching the graph off, and later ones join it. Each shard records when it has
//! loaded its part completely; the shard that finds every part loaded switches the graph back
//! on, waits for the optimiser and removes the records. A killed or failed shard leaves the
//! graph off until its rerun completes (`status` shows the load). Two shards that finish at
//! once both restore the same `m`: harmless.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::PipelineError;
use crate::shard::Shard;
use crate::sink::{IndexState, Sink};
use crate::state::bulk::{BulkDone, BulkLoad};
use crate::state::{StateStore, now_rfc3339};

/// What a run did about a bulk load into one target.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct IndexingReport {
    pub target: String,
    /// This run switched graph building back on and waited for the optimiser.
    pub indexed: bool,
    /// Shards still loading (graph building stays off until they finish).
    #[serde(default)]
    pub shards_pending: Vec<u32>,
    /// Seconds from switching graph building on to the optimiser settled.
    #[serde(default)]
    pub seconds_to_indexed: f64,
    #[serde(default)]
    pub points: u64,
    #[serde(default)]
    pub indexed_vectors: u64,
}

/// Begin (or join) a bulk load into `target`. Returns whether this run takes part in one: not
/// when the target has points and no load is under way (bulk mode is for first loads), nor on
/// a target without HNSW settings (the embedded store).
pub(super) async fn begin<S: Sink>(
    sink: &S,
    target: &str,
    shard: Option<Shard>,
    run_id: &str,
) -> Result<bool, PipelineError> {
    let store = StateStore::open(sink, false).await?;
    let shards = shard.map_or(1, |s| s.count);
    if let Some(b) = store.bulk_load(target).await? {
        if b.shards != shards {
            tracing::warn!(
                "the bulk load of `{target}` was begun by a run of {} shard(s), this one is of {shards}: the graph is switched back on when those {} have loaded their parts",
                b.shards,
                b.shards
            );
        }
        tracing::info!(
            "joining the bulk load of `{target}` (HNSW graph building off since {})",
            b.started_at
        );
        return Ok(true);
    }
    let Some(m) = sink.hnsw_m(target).await? else {
        tracing::warn!(
            "--bulk: {} has no HNSW settings to switch off; writing as usual",
            sink.describe()
        );
        return Ok(false);
    };
    let points = sink.count(target).await?;
    if points > 0 {
        tracing::warn!(
            "--bulk: `{target}` already holds {points} points and no bulk load is under way; bulk mode is for a first load into an empty collection, so this run writes as usual"
        );
        return Ok(false);
    }
    if m == 0 {
        tracing::info!("--bulk: `{target}` builds no HNSW graph (m = 0): nothing to switch off");
        return Ok(false);
    }
    // The record first: a shard that then finds the graph off finds the load too.
    let load = BulkLoad {
        target: target.to_owned(),
        shards,
        restore_m: m,
        started_at: now_rfc3339(),
        run_id: run_id.to_owned(),
    };
    store.save_bulk_load(&load).await?;
    sink.set_hnsw_m(target, 0).await?;
    tracing::info!(
        "bulk load of `{target}`: HNSW graph building off until {} loaded",
        if shards == 1 {
            "the collection is".to_owned()
        } else {
            format!("all {shards} shards have")
        }
    );
    Ok(true)
}

/// This run (`shard`) loaded its part of `target` completely: record it, and when every part
/// is loaded, switch graph building back on and wait (until `stop`) for the optimiser.
pub(super) async fn finish<S: Sink>(
    sink: &S,
    target: &str,
    shard: Option<Shard>,
    run_id: &str,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<Option<IndexingReport>, PipelineError> {
    let store = StateStore::open(sink, false).await?;
    let Some(load) = store.bulk_load(target).await? else {
        return Ok(None); // another shard finished the load already
    };
    let (index, count) = shard.map_or((0, 1), |s| (s.index, s.count));
    store
        .save_bulk_done(&BulkDone {
            target: target.to_owned(),
            shard: index,
            shards: count,
            at: now_rfc3339(),
            run_id: run_id.to_owned(),
        })
        .await?;
    let pending = store.bulk_pending(&load).await?;
    if !pending.is_empty() {
        tracing::info!(
            "bulk load of `{target}`: shard(s) {pending:?} of {} still loading; the last to finish switches HNSW graph building back on",
            load.shards
        );
        return Ok(Some(IndexingReport {
            target: target.to_owned(),
            shards_pending: pending,
            ..IndexingReport::default()
        }));
    }
    sink.set_hnsw_m(target, load.restore_m).await?;
    let since = Instant::now();
    tracing::info!(
        "bulk load of `{target}` loaded: HNSW graph building on (m = {}); waiting for the optimiser",
        load.restore_m
    );
    let state = tokio::select! {
        s = settled(sink, target) => s?,
        _ = stop.wait_for(|s| *s) => None,
    };
    store.end_bulk_load(&load).await?;
    let seconds = since.elapsed().as_secs_f64();
    let state = state.unwrap_or_default();
    tracing::info!(
        "`{target}` indexed {seconds:.1}s after the load: {} of {} vectors in the HNSW graph",
        state.indexed,
        state.points
    );
    Ok(Some(IndexingReport {
        target: target.to_owned(),
        indexed: true,
        shards_pending: Vec::new(),
        seconds_to_indexed: seconds,
        points: state.points,
        indexed_vectors: state.indexed,
    }))
}

/// Wait until the optimiser of `target` has settled: two reads a second apart that find no
/// optimisation running or pending (a change of settings takes a moment to start one).
async fn settled<S: Sink>(sink: &S, target: &str) -> Result<Option<IndexState>, PipelineError> {
    let mut calm = 0;
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let Some(state) = sink.index_state(target).await? else {
            return Ok(None);
        };
        calm = if state.settled { calm + 1 } else { 0 };
        if calm >= 2 {
            return Ok(Some(state));
        }
    }
}
