//! `watch`: keep the target in step with MongoDB continuously. Per source namespace and target,
//! under one lease for as long as it runs:
//!
//! ```text
//! open the change stream (at the stored token, or now) -> a full pass when needed
//!   -> micro-batches of changed _ids -> read their current versions (with the filter)
//!   -> prepare -> embed -> write (the pass's stages) -> store the token (after the acks)
//! ```
//!
//! The stream is opened before the pass, so nothing that changes during the pass is missed.
//! A pass is needed on the first start, when the settings changed, and to reconcile: when the
//! server lost the history after the stored token, or the collection was dropped or renamed
//! (then the pass prunes, under the `--max-delete` guard). The token is stored only after the
//! writes of every event before it were acknowledged, so a restart (also after kill -9) applies
//! some events twice at worst, which changes nothing.

mod apply;
mod reconcile;

use std::sync::Arc;
use std::time::{Duration, Instant};

use mongodb::bson::Bson;
use tokio::sync::watch;

use super::prepare::Preparer;
use super::stages;
use super::{
    PipelineError, SyncOptions, groups, lease_lost, pass, pass_key, prepare_targets, report,
    still_held, under_lease,
};
use crate::embed::worker::EmbedWorker;
use crate::metrics::Metrics;
use crate::point::Job;
use crate::report::{Counts, NamespaceReport, RunLog, RunReport, Stats};
use crate::sink::{Retrying, Sink};
use crate::source::changes::ChangeFeed;
use crate::source::{MongoSource, Source, SourceError, SourceItem};
use crate::state::checkpoint::Cursor;
use crate::state::{Phase, StateStore, WatchState, now_rfc3339};
use crate::writer::Writer;

/// How a watch reads its streams.
#[derive(Clone)]
pub struct WatchOptions {
    /// Most events per micro-batch.
    pub max_events: usize,
    /// Longest a micro-batch waits for more events after its first, and a getMore for any.
    pub delay: Duration,
    pub metrics: Arc<Metrics>,
}

impl WatchOptions {
    /// Batches of up to 256 events, 200 ms.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            max_events: 256,
            delay: Duration::from_millis(200),
            metrics,
        }
    }
}

/// How often an idle stream's position is stored (its token moves with the server's clock).
const IDLE_SAVE: Duration = Duration::from_secs(10);

/// Watch every job until `opts.stop`: a pass where needed, then the change streams. Returns the
/// report when stopped; an error ends every stream (the stored tokens hold).
pub async fn watch<S: Sink>(
    sink: Arc<S>,
    worker: EmbedWorker,
    jobs: Vec<Job>,
    opts: SyncOptions,
    wopts: WatchOptions,
    stats: Arc<Stats>,
) -> Result<RunReport, PipelineError> {
    let sink = Arc::new(Retrying::new(sink, opts.retry));
    wopts.metrics.set_delay(wopts.delay);
    let started = Instant::now();
    let started_at = now_rfc3339();
    let log = Arc::new(RunLog::new(stats));
    // A target that does not exist yet (also one dropped while nobody watched) gets a full
    // pass, whatever position the records collection still holds.
    let mut missing = std::collections::HashSet::new();
    for job in &jobs {
        if !sink.exists(&job.target).await? {
            missing.insert(job.target.clone());
        }
    }
    let mut rebuilt =
        prepare_targets(sink.as_ref(), &jobs, &opts, worker.embedder().as_ref()).await?;
    rebuilt.extend(missing);
    let mut tasks = tokio::task::JoinSet::new();
    for group in groups(jobs) {
        let rebuilt = rebuilt.contains(&group[0].target);
        let w = Watcher {
            sink: sink.clone(),
            worker: worker.clone(),
            group,
            opts: opts.clone(),
            wopts: wopts.clone(),
            log: log.clone(),
            lost_text: Default::default(),
        };
        tasks.spawn(w.run(rebuilt));
    }
    let mut namespaces = Vec::new();
    let mut first_error = None;
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(Ok(r)) => namespaces.extend(r),
            Ok(Err(e)) => {
                wopts.metrics.error();
                if first_error.is_none() {
                    // One stream failed: the process ends (a supervisor restarts it, and every
                    // stream resumes from its token).
                    tasks.abort_all();
                }
                first_error.get_or_insert(e);
            }
            Err(j) if j.is_cancelled() => {}
            Err(j) => std::panic::resume_unwind(j.into_panic()),
        }
    }
    sink.flush().await?;
    if let Some(e) = first_error {
        return Err(e);
    }
    Ok(report(
        &opts, started, started_at, &log, namespaces, &worker,
    ))
}

/// The jobs of one namespace and target (several named vectors share points), one stream.
struct Watcher<S> {
    sink: Arc<S>,
    worker: EmbedWorker,
    group: Vec<Job>,
    opts: SyncOptions,
    wopts: WatchOptions,
    log: Arc<RunLog>,
    lost_text: super::guard::LostText,
}

/// A full pass to run before streaming.
struct PassPlan {
    /// From the start, ignoring the checkpoint.
    fresh: bool,
    prune: bool,
}

impl<S: Sink> Watcher<S> {
    async fn run(self, rebuilt: bool) -> Result<Vec<NamespaceReport>, PipelineError> {
        let (target, namespace) = (
            self.group[0].target.clone(),
            self.group[0].source.namespace().to_string(),
        );
        let Source::Mongo(mongo) = self.group[0].source.clone() else {
            return Err(SourceError::NoChangeStream(self.group[0].source.describe()).into());
        };
        let sink = self.sink.clone();
        under_lease(
            &sink,
            &target,
            &namespace,
            &self.opts.run_id,
            async |lease| self.watch(&mongo, rebuilt, lease).await,
        )
        .await
    }

    /// Hash of what decides the points of every job of the group.
    fn settings(&self) -> String {
        let model = self.worker.embedder().model_id().to_owned();
        let parts: Vec<String> = self
            .group
            .iter()
            .map(|j| crate::point::settings_hash(&j.model_id(&model), j, self.opts.chunking))
            .collect();
        let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
        crate::ids::named_uuid("mongo2qdrant watch settings v1", &parts).to_string()
    }

    async fn watch(
        &self,
        mongo: &MongoSource,
        rebuilt: bool,
        lease: Option<watch::Receiver<Option<String>>>,
    ) -> Result<Vec<NamespaceReport>, PipelineError> {
        let (target, ns) = (&self.group[0].target, mongo.namespace.to_string());
        let settings = self.settings();
        let store = StateStore::open(self.sink.as_ref(), false).await?;
        let stored = match store.watch_state(target, &ns).await {
            Ok(s) => s,
            Err(e @ crate::state::StateError::Corrupt { .. }) => {
                tracing::warn!(namespace = %ns, "{e}: starting over with a full pass");
                None
            }
            Err(e) => return Err(e.into()),
        };
        let mut totals: Vec<Counts> = vec![Counts::default(); self.group.len()];
        let metrics = &self.wopts.metrics;

        // Where the stream starts, and which pass comes first.
        // A stream that ran before and is now replaced by a pass (settings changed, --fresh):
        // documents deleted while it was down are only found by that pass's prune.
        let replaced = stored.is_some();
        let vector = self.group[0].vector_name.as_deref();
        let rebuilt = match &stored {
            Some(s) if !rebuilt => match store.anchor_gone(s, vector).await? {
                Some(a) => {
                    tracing::warn!(namespace = %ns, "the target's point {a}, there when the stream position was saved, is gone: the collection was dropped or recreated since");
                    true
                }
                None => false,
            },
            _ => rebuilt,
        };
        let valid = stored.filter(|s| s.settings == settings && !rebuilt && !self.opts.fresh);
        if rebuilt {
            tracing::info!(namespace = %ns, "the target is new or was rebuilt: a full pass, then the change stream");
        }
        let resumed = match &valid {
            Some(s) => match self.open(mongo, Some(&s.token)).await {
                Ok(feed) => Some((feed, s.clone())),
                Err(e) if e.is_history_lost() => {
                    tracing::warn!(namespace = %ns, "{e}: reconciling with a full pass and prune, then streaming again");
                    metrics.reconcile();
                    None
                }
                Err(e) => return Err(e.into()),
            },
            None => None,
        };
        if let Some((_, s)) = &resumed {
            self.lost_text.restore(&s.lost_text);
        }
        let (feed, mut state, plan) = match resumed {
            Some((feed, s)) if s.phase == Phase::Stream && !s.prune && !s.repass => {
                tracing::info!(namespace = %ns, "resuming the change stream from the stored token");
                if self.opts.prune {
                    tracing::warn!(namespace = %ns, "--prune does nothing here: the stream resumes where it stopped and no pass runs (deletes arrive as events); to prune now, restart with --fresh or run `sync --prune`");
                }
                (feed, s, None)
            }
            Some((feed, s)) => {
                // A pass under way (resumed from its checkpoint), or a prune still owed (then a
                // whole pass again: a resumed pass does not prune).
                tracing::info!(namespace = %ns, "resuming {} and, after it, the change stream", if s.prune { "a pass with prune" } else { "the initial pass" });
                let plan = PassPlan {
                    fresh: s.prune || s.repass,
                    prune: s.prune,
                };
                (feed, s, Some(plan))
            }
            None => {
                let prune = replaced || self.opts.prune;
                let (feed, state) = self.start_over(mongo, &settings, prune).await?;
                let plan = PassPlan { fresh: true, prune };
                (feed, state, Some(plan))
            }
        };
        let mut feed = Some(feed);
        if let Some(plan) = plan
            && !self.passes(plan, &mut state, &lease, &mut totals).await?
        {
            return Ok(self.reports(totals, false));
        }
        // The status names the watcher that streams now.
        state.run_id = self.opts.run_id.clone();
        self.retry_owed(&mut state, &lease, &mut totals).await?;
        self.save(&store, &mut state, &lease).await?;
        metrics.ready_one();
        metrics.pending((&ns, target), 0);
        tracing::info!(namespace = %ns, "streaming changes");

        let mut attempt = 0;
        let mut saved = Instant::now();
        let mut stop = self.opts.stop.clone();
        let delay = self.wopts.delay;
        // Whether this stream is failing now (then the process is not ready).
        let mut down = false;
        loop {
            if *stop.borrow() {
                break;
            }
            // After an error the feed is gone: events it had read but not applied come again
            // from the stored token.
            let Some(f) = feed.as_mut() else {
                match mongo.changes(Some(&state.token), delay).await {
                    Ok(f) => feed = Some(f),
                    Err(e) if e.is_history_lost() => {
                        match self
                            .reconcile(mongo, &settings, &e.to_string(), &lease, &mut totals)
                            .await?
                        {
                            Some((f, s)) => (feed, state) = (Some(f), s),
                            None => break,
                        }
                    }
                    Err(e) => {
                        if !std::mem::replace(&mut down, true) {
                            metrics.source_down(true);
                        }
                        tokio::select! {
                            r = self.backoff(&mut attempt, e) => r?,
                            why = lease_lost(&lease) => return Err(PipelineError::LeaseLost(why)),
                        }
                    }
                }
                continue;
            };
            // Idle or not, the watch stops once its lease is lost (another watcher may hold it
            // by then): no write, and no readiness, after that.
            let batch = tokio::select! {
                b = f.next_batch(self.wopts.max_events, delay) => b,
                _ = stop.wait_for(|s| *s) => break,
                why = lease_lost(&lease) => return Err(PipelineError::LeaseLost(why)),
            };
            let batch = match batch {
                Ok(b) => b,
                Err(e) if e.is_history_lost() => {
                    drop(feed.take());
                    match self
                        .reconcile(mongo, &settings, &e.to_string(), &lease, &mut totals)
                        .await?
                    {
                        Some((f, s)) => (feed, state) = (Some(f), s),
                        None => break,
                    }
                    continue;
                }
                Err(e) => {
                    feed = None;
                    if !std::mem::replace(&mut down, true) {
                        metrics.source_down(true);
                    }
                    tokio::select! {
                        r = self.backoff(&mut attempt, e) => r?,
                        why = lease_lost(&lease) => return Err(PipelineError::LeaseLost(why)),
                    }
                    continue;
                }
            };
            attempt = 0;
            if std::mem::take(&mut down) {
                metrics.source_down(false);
            }
            if batch.events == 0 {
                metrics.caught_up((&ns, target));
                // An idle stream's token still moves on: store it now and then, so that a
                // restart does not start from history the server may have dropped by then.
                if saved.elapsed() >= IDLE_SAVE
                    && let Some(token) = f.token()
                    && token != state.token
                {
                    state.token = token;
                    self.save(&store, &mut state, &lease).await?;
                    saved = Instant::now();
                }
                continue;
            }
            metrics.pending((&ns, target), batch.events);
            let began = Instant::now();
            metrics.busy(true);
            let failed = self.apply_all(&batch.ids, &lease, &mut totals).await?;
            self.settle(&mut state, &batch.ids, failed);
            metrics.busy(false);
            metrics.applied(
                (&ns, target),
                &batch.kinds,
                began.elapsed(),
                batch.cluster_time,
            );
            tracing::debug!(namespace = %ns, events = batch.events, documents = batch.ids.len(), "changes applied");
            if let Some(why) = &batch.invalidated {
                // The invalidating event's token cannot be resumed after: the new stream's
                // position replaces it.
                drop(feed.take());
                match self
                    .reconcile(mongo, &settings, why, &lease, &mut totals)
                    .await?
                {
                    Some((f, s)) => (feed, state) = (Some(f), s),
                    None => break,
                }
                continue;
            }
            if let Some(token) = f.token() {
                state.token = token;
            }
            if let Some(t) = batch.cluster_time {
                state.applied_until = t;
            }
            self.save(&store, &mut state, &lease).await?;
            saved = Instant::now();
        }
        Ok(self.reports(totals, true))
    }

    /// Store `state` with the lost-text sum, while this run still holds its lease.
    async fn save(
        &self,
        store: &StateStore<'_, S>,
        state: &mut WatchState,
        lease: &Option<watch::Receiver<Option<String>>>,
    ) -> Result<(), PipelineError> {
        still_held(lease)?;
        state.lost_text = self.lost_text.snapshot();
        // What the target holds now, after the acknowledged writes: the incarnation this
        // position belongs to.
        let vector = self.group[0].vector_name.as_deref();
        state.anchor = store.anchor_now(state, vector).await?;
        Ok(store.save_watch(state).await?)
    }

    fn reports(&self, totals: Vec<Counts>, complete: bool) -> Vec<NamespaceReport> {
        self.group
            .iter()
            .zip(totals)
            .map(|(job, counts)| NamespaceReport {
                namespace: job.source.namespace().to_string(),
                target: job.target.clone(),
                vector: job.vector_name.clone(),
                shard: None,
                counts,
                complete,
                resumed_after: None,
                pruned: 0,
                pruned_outside_filter: 0,
                prune_skipped: false,
            })
            .collect()
    }
}
