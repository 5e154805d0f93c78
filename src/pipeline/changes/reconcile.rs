//! `watch`'s opening and reconciling: the stream opened at the stored token (or now), the
//! retries of a failed open, and the full passes that come before streaming (the first start,
//! changed settings, lost history, a dropped or renamed collection).

use super::*;

impl<S: Sink> Watcher<S> {
    /// Open the stream at `token` (or now), retrying transient errors by the policy.
    pub(super) async fn open(
        &self,
        mongo: &MongoSource,
        token: Option<&str>,
    ) -> Result<ChangeFeed, SourceError> {
        let what = format!("opening the change stream on {}", mongo.namespace);
        let delay = self.wopts.delay;
        self.opts
            .retry
            .run(&what, || mongo.changes(token, delay))
            .await
    }

    /// Wait before the next attempt after `e`, or fail when the policy allows no more.
    pub(super) async fn backoff(
        &self,
        attempt: &mut u32,
        e: SourceError,
    ) -> Result<(), PipelineError> {
        self.wopts.metrics.error();
        if !self.opts.retry.allows(*attempt, &e) {
            return Err(e.into());
        }
        *attempt += 1;
        let d = self.opts.retry.delay(*attempt);
        tracing::warn!("the change stream failed ({e}); reopening at the stored token in {d:?}");
        // Waiting to retry, as told: alive (not ready).
        self.wopts.metrics.alive();
        tokio::time::sleep(d).await;
        self.wopts.metrics.alive();
        Ok(())
    }

    /// The stream cannot go on (`why`): a new one from now, and a full pass with prune (under
    /// the `--max-delete` guard). `None` when stopped during the pass.
    pub(super) async fn reconcile(
        &self,
        mongo: &MongoSource,
        settings: &str,
        why: &str,
        lease: &Option<watch::Receiver<Option<String>>>,
        totals: &mut [Counts],
    ) -> Result<Option<(ChangeFeed, WatchState)>, PipelineError> {
        tracing::warn!(
            namespace = %mongo.namespace,
            "{why}: reconciling with a full pass and prune (the --max-delete guard applies), then a new change stream"
        );
        let metrics = &self.wopts.metrics;
        metrics.reconcile();
        metrics.unready();
        let (feed, mut state) = self.start_over(mongo, settings, true).await?;
        let plan = PassPlan {
            fresh: true,
            prune: true,
        };
        if !self.passes(plan, &mut state, lease, totals).await? {
            return Ok(None);
        }
        metrics.ready_one();
        Ok(Some((feed, state)))
    }

    /// A new stream from now, and the record of a pass that starts after it: every job's
    /// checkpoint reset first, so that a restart resumes this pass, never an older one.
    pub(super) async fn start_over(
        &self,
        mongo: &MongoSource,
        settings: &str,
        prune: bool,
    ) -> Result<(ChangeFeed, WatchState), PipelineError> {
        let feed = self.open(mongo, None).await?;
        let token = feed.token().ok_or_else(|| {
            SourceError::NoChangeStream(format!(
                "collection {}: the server gave no resume token",
                mongo.namespace
            ))
        })?;
        let store = StateStore::open(self.sink.as_ref(), false).await?;
        for job in &self.group {
            let key = pass_key(job, &self.opts, self.worker.embedder().as_ref());
            let mut cursor = Cursor::open(
                StateStore::open(self.sink.as_ref(), false).await?,
                key,
                true,
                true,
                false,
            )
            .await?;
            cursor.finish(false, &Counts::default()).await?;
        }
        let state = WatchState {
            anchor: None,
            target: self.group[0].target.clone(),
            namespace: mongo.namespace.to_string(),
            token,
            phase: Phase::Pass,
            prune,
            settings: settings.to_owned(),
            run_id: self.opts.run_id.clone(),
            updated_at: now_rfc3339(),
            applied_until: 0,
            lost_text: self.lost_text.snapshot(),
            // The pass reads every document again (and reports those that fail).
            owed: Vec::new(),
            repass: false,
        };
        store.save_watch(&state).await?;
        Ok((feed, state))
    }

    /// Every job's pass, then the state says streaming (and whether a prune is still owed:
    /// a pass with failed documents does not prune, and the next start tries again). `false`
    /// when stopped before the end.
    pub(super) async fn passes(
        &self,
        plan: PassPlan,
        state: &mut WatchState,
        lease: &Option<watch::Receiver<Option<String>>>,
        totals: &mut [Counts],
    ) -> Result<bool, PipelineError> {
        let mut opts = self.opts.clone();
        opts.fresh = plan.fresh;
        opts.prune = plan.prune;
        let mut owed = false;
        for (job, t) in self.group.iter().zip(totals.iter_mut()) {
            let r = pass(
                &self.sink,
                &self.worker,
                job.clone(),
                &opts,
                &self.log,
                lease.clone(),
            )
            .await?;
            t.add(&r.counts);
            if !r.complete {
                return Ok(false);
            }
            owed |= r.prune_skipped;
            let c = &r.counts;
            tracing::info!(
                namespace = %r.namespace,
                target = %r.target,
                "pass done: read {}, embedded {}, unchanged {}, payload only {}, deleted {}, failed {}",
                c.read,
                c.embedded,
                c.skipped_unchanged,
                c.payload_updated,
                c.deleted,
                c.failed
            );
        }
        if owed {
            tracing::error!(
                namespace = %state.namespace,
                "the pass had failed documents, so it did not prune: points of documents deleted meanwhile stay until a pass prunes (the next start tries again; fix the failed documents)"
            );
        }
        state.phase = Phase::Stream;
        state.prune = owed;
        state.repass = false;
        StateStore::open(self.sink.as_ref(), false)
            .await?
            .save_watch(state)
            .await?;
        Ok(true)
    }
}
