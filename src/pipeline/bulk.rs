//! Bulk loads into a Qdrant server (`--bulk`): a first load into an empty collection is written
//! with HNSW graph building off (`hnsw_config.m = 0`: the points are stored, searchable by a
//! full scan, and no graph is rebuilt while segments grow), then the graph is switched back on
//! and the optimiser awaited, and the time to an indexed collection is reported.
//!
//! Shards share a collection: the first to begin records the load (with the `m` to restore)
//! before switching the graph off, and later ones join it. Each shard records when it has
//! loaded its part completely; a shard that finds every part loaded switches the graph back on
//! (twice is harmless) and claims the wait (a compare-and-set on the record: of shards that
//! finish together, one waits for the optimiser, reports it and removes the records). A killed
//! or failed shard leaves the graph off until its rerun completes (`status` shows the load).

use std::time::{Duration, Instant};

use super::PipelineError;
pub use crate::report::IndexingReport;
use crate::shard::Shard;
use crate::sink::{IndexState, Sink};
use crate::state::bulk::{BulkDone, BulkLoad};
use crate::state::{StateStore, now_rfc3339};

/// A run's part in a load into one target: its shard and its namespaces there.
#[derive(Clone, Copy)]
pub(super) struct Part<'a> {
    pub shard: Option<Shard>,
    pub run_id: &'a str,
    pub namespaces: &'a [String],
}

impl Part<'_> {
    fn shards(&self) -> u32 {
        self.shard.map_or(1, |s| s.count)
    }

    /// This part's records in the load `b` began: joined, or (`loaded`) done.
    fn records(&self, b: &BulkLoad, loaded: bool) -> Vec<BulkDone> {
        self.namespaces
            .iter()
            .map(|ns| BulkDone {
                target: b.target.clone(),
                load_started: b.started_at.clone(),
                shard: self.shard.map_or(0, |s| s.index),
                shards: self.shards(),
                at: now_rfc3339(),
                run_id: self.run_id.to_owned(),
                namespace: ns.clone(),
                loaded,
            })
            .collect()
    }
}

/// Begin (or join) a bulk load into `target`. Returns whether this run takes part in one: not
/// when the target has points and no load is under way (bulk mode is for first loads), nor on
/// a target without HNSW settings (the embedded store).
pub(super) async fn begin<S: Sink>(
    sink: &S,
    target: &str,
    part: Part<'_>,
) -> Result<bool, PipelineError> {
    let store = StateStore::open(sink, false).await?;
    let (shards, run_id) = (part.shards(), part.run_id);
    if let Some(b) = unfinished(&store, target).await? {
        return join(&store, b, part).await;
    }
    let Some(m) = sink.hnsw_m(target).await? else {
        tracing::warn!(
            "--bulk: {} has no HNSW settings to switch off; writing as usual",
            sink.describe()
        );
        return Ok(false);
    };
    let points = sink.count(target).await?;
    if points > 0 || m == 0 {
        // A shard beside this one may have begun the load meanwhile (its record comes first).
        if let Some(b) = store.bulk_load(target).await?
            && b.finisher == crate::state::bulk::NOBODY
        {
            return join(&store, b, part).await;
        }
        if points > 0 {
            tracing::warn!(
                "--bulk: `{target}` already holds {points} points and no bulk load is under way; bulk mode is for a first load into an empty collection, so this run writes as usual"
            );
        } else {
            tracing::info!(
                "--bulk: `{target}` builds no HNSW graph (m = 0): nothing to switch off"
            );
        }
        return Ok(false);
    }
    let load = BulkLoad {
        target: target.to_owned(),
        shards,
        restore_m: m,
        started_at: now_rfc3339(),
        run_id: run_id.to_owned(),
        finisher: crate::state::bulk::NOBODY.to_owned(),
    };
    // The record first, written only if none is there: of shards that begin together, one
    // records the load and the others join it.
    let recorded = store.begin_bulk_load(&load).await?;
    if recorded.run_id != load.run_id {
        return join(&store, recorded, part).await;
    }
    for d in part.records(&load, false) {
        store.save_bulk_done(&d).await?;
    }
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

/// A run without `--bulk` into `target` that finds a load there (a `--bulk` run killed or
/// failed, its other shards never run): it takes part in the load as a `--bulk` run would, so
/// that when it (with the other shards, if sharded) has loaded everything, graph building goes
/// back on and the wait is reported. Without this, a plain rerun after a killed load left the
/// graph off for good behind a green report. A load whose graph is already back on (its waiter
/// died) is cleaned up. Returns whether this run takes part.
pub(super) async fn join_stale<S: Sink>(
    sink: &S,
    target: &str,
    part: Part<'_>,
) -> Result<bool, PipelineError> {
    let run_id = part.run_id;
    let store = StateStore::open(sink, false).await?;
    let Some(b) = unfinished(&store, target).await? else {
        return Ok(false);
    };
    // A run still holds a lease on the target: the load may be going on (its shards, or
    // another collection loaded into the same target). It is that load's to finish.
    if live_lease(&store, target, run_id).await?.is_some() {
        tracing::warn!(
            "`{target}` has a bulk load under way (begun {} by run {}) and a run holds a lease on it: this run writes as usual and leaves HNSW graph building (off) to that load; if it was killed, rerun once its lease has expired (60 s) and graph building goes back on",
            b.started_at,
            b.run_id
        );
        return Ok(false);
    }
    tracing::warn!(
        "`{target}` has an unfinished bulk load (begun {} by run {}): HNSW graph building is off (m = 0); this run takes part in it, and graph building goes back on (m = {}) once every document is loaded",
        b.started_at,
        b.run_id,
        b.restore_m
    );
    join(&store, b, part).await
}

/// Whether a bulk load into `target` keeps its graph off now (a run must not switch it on);
/// when the run asks for another `m` than the load will restore, the load restores the asked
/// one (a dry run only says so).
pub(super) async fn hold_m<S: Sink>(
    sink: &S,
    target: &str,
    asked: Option<u64>,
    dry_run: bool,
) -> Result<bool, PipelineError> {
    let store = StateStore::open(sink, false).await?;
    let Some(mut load) = store.bulk_load(target).await? else {
        return Ok(false);
    };
    if load.finisher != crate::state::bulk::NOBODY {
        return Ok(false);
    }
    if let Some(m) = asked.filter(|m| *m != load.restore_m) {
        let verb = if dry_run { "would restore" } else { "restores" };
        tracing::info!(
            "bulk load of `{target}` under way: it {verb} hnsw_m = {m} (was {}) when loaded",
            load.restore_m
        );
        if !dry_run {
            load.restore_m = m;
            store.save_bulk_load(&load).await?;
        }
    }
    Ok(true)
}

/// The unfinished load on `target`, if any. A load whose graph was switched back on and whose
/// waiter did not clean up (it died waiting) is removed on the way.
async fn unfinished<S: Sink>(
    store: &StateStore<'_, S>,
    target: &str,
) -> Result<Option<BulkLoad>, PipelineError> {
    match store.bulk_load(target).await? {
        Some(b) if b.finisher != crate::state::bulk::NOBODY => {
            store.end_bulk_load(&b).await?;
            Ok(None)
        }
        other => Ok(other),
    }
}

/// A live lease on `target` (any namespace) of a run other than `run_id`.
async fn live_lease<S: Sink>(
    store: &StateStore<'_, S>,
    target: &str,
    run_id: &str,
) -> Result<Option<crate::state::Lease>, PipelineError> {
    let me = crate::state::Holder::me(run_id);
    let live = crate::state::lease::others_live(store, target, &me).await?;
    Ok(live.into_iter().next())
}

/// Join the load `b` as a run of `shards` shards. A load begun by another number of shards is
/// taken over: it now waits for this run's shards (the points do not depend on the split).
async fn join<S: Sink>(
    store: &StateStore<'_, S>,
    mut b: BulkLoad,
    part: Part<'_>,
) -> Result<bool, PipelineError> {
    let (shards, run_id) = (part.shards(), part.run_id);
    if b.shards != shards {
        // Taken over only when nobody runs on the target: a run of the load's own count may
        // still be loading (and this one would be refused by its lease after rewriting the
        // load, leaving it waiting for shards that never come).
        if let Some(other) = live_lease(store, &b.target, run_id).await? {
            return Err(crate::state::lease::LockError::Held {
                what: format!(
                    "the bulk load of {} by {} shard(s), while {} runs",
                    b.target, b.shards, other.namespace
                ),
                holder: other.holder.to_string(),
            }
            .into());
        }
        tracing::warn!(
            "the bulk load of `{}` was begun by a run of {} shard(s) and this one is of {shards}: graph building is switched back on when these {shards} have loaded their parts",
            b.target,
            b.shards
        );
        b.shards = shards;
        store.save_bulk_load(&b).await?;
    }
    // Its parts are owed from now on: a part that finishes first waits for them.
    for d in part.records(&b, false) {
        store.save_bulk_done(&d).await?;
    }
    tracing::info!(
        "joining the bulk load of `{}` (HNSW graph building off since {})",
        b.target,
        b.started_at
    );
    Ok(true)
}

/// The longest wait for the optimiser after a load: the graph is on either way, the report
/// says whether it settled.
const MAX_INDEX_WAIT: Duration = Duration::from_secs(3600);

/// This run (`shard`) loaded its part of `target` completely: record it, and when every part
/// is loaded, switch graph building back on and wait (until `stop`) for the optimiser.
pub(super) async fn finish<S: Sink>(
    sink: &S,
    target: &str,
    part: Part<'_>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<Option<IndexingReport>, PipelineError> {
    let run_id = part.run_id;
    let store = StateStore::open(sink, false).await?;
    let Some(load) = store.bulk_load(target).await? else {
        return Ok(None); // another shard finished the load already
    };
    let done = part.records(&load, true);
    for d in &done {
        store.save_bulk_done(d).await?;
    }
    // The load may have ended between reading it and recording this part.
    let now = store.bulk_load(target).await?;
    if now.as_ref().is_none_or(|l| l.started_at != load.started_at) {
        for d in &done {
            store.remove_bulk_done(d).await?;
        }
        return Ok(None);
    }
    let pending = store.bulk_pending(&load).await?;
    if !pending.is_empty() {
        let parts: Vec<String> = pending
            .iter()
            .map(|(ns, s)| format!("{ns} {s}/{}", load.shards))
            .collect();
        tracing::info!(
            "bulk load of `{target}`: {} still loading; the last to finish switches HNSW graph building back on",
            parts.join(", ")
        );
        let mut shards: Vec<u32> = pending.iter().map(|p| p.1).collect();
        shards.sort_unstable();
        shards.dedup();
        return Ok(Some(IndexingReport {
            target: target.to_owned(),
            shards_pending: shards,
            ..IndexingReport::default()
        }));
    }
    // Every part is loaded: the graph goes back on whoever waits for it (setting it twice is
    // harmless; a waiter that dies must not leave it off).
    sink.set_hnsw_m(target, load.restore_m).await?;
    let since = Instant::now();
    if !store.claim_bulk_finish(&load, run_id).await? {
        tracing::info!(
            "bulk load of `{target}`: every part is loaded and graph building is on; another shard waits for the optimiser"
        );
        return Ok(Some(IndexingReport {
            target: target.to_owned(),
            ..IndexingReport::default()
        }));
    }
    tracing::info!(
        "bulk load of `{target}` loaded: HNSW graph building on (m = {}); waiting for the optimiser",
        load.restore_m
    );
    let state = tokio::select! {
        s = settled(sink, target) => Some(s?),
        _ = stop.wait_for(|s| *s) => None,
        _ = tokio::time::sleep(MAX_INDEX_WAIT) => None,
    };
    store.end_bulk_load(&load).await?;
    let seconds = since.elapsed().as_secs_f64();
    let (settled, state) = match state {
        Some(Some(s)) => (true, s),
        Some(None) => (false, IndexState::default()),
        None => {
            tracing::warn!(
                "`{target}`: stopped waiting for the optimiser after {seconds:.0}s; graph building is on and the server goes on indexing"
            );
            (false, sink.index_state(target).await?.unwrap_or_default())
        }
    };
    // An exact count: the collection info's is an estimate, and lags behind a rebuild.
    let points = sink.count(target).await?;
    if settled {
        tracing::info!(
            "`{target}` indexed {seconds:.1}s after the load: {} of {points} vectors in the HNSW graph",
            state.indexed,
        );
    }
    Ok(Some(IndexingReport {
        target: target.to_owned(),
        indexed: true,
        settled,
        shards_pending: Vec::new(),
        seconds_to_indexed: seconds,
        points,
        indexed_vectors: state.indexed,
    }))
}

/// Wait until the optimiser of `target` has settled: three reads a second apart that find no
/// optimisation running or pending (a change of settings takes a moment to start one). `None`
/// when the target does not say; an error when the server reports the collection failed.
async fn settled<S: Sink>(sink: &S, target: &str) -> Result<Option<IndexState>, PipelineError> {
    let mut calm = 0;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let Some(state) = sink.index_state(target).await? else {
            return Ok(None);
        };
        if state.failed {
            return Err(crate::sink::SinkError::Request {
                op: "optimize",
                collection: target.to_owned(),
                reason: "the server reports the collection's optimisation failed (status red); see its log".into(),
                transient: false,
            }
            .into());
        }
        calm = if state.settled { calm + 1 } else { 0 };
        if calm >= 3 {
            return Ok(Some(state));
        }
    }
}
