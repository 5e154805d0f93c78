//! Leases around a job's writes on a Qdrant server: one writer per namespace (or shard), the
//! lease renewed while the work runs and released on every way out; writes stop once it is lost.

use std::sync::Arc;

use tokio::sync::watch;

use super::PipelineError;
use crate::point::Job;
use crate::shard::Shard;
use crate::sink::Sink;
use crate::state::StateStore;
use crate::state::lease::{self, Holder, LockError, Renewer};

/// What a lease is named by: the namespace, and the shard when sharded (shards of one namespace
/// run side by side, each under its own lease).
pub(super) fn lease_name(job: &Job, shard: Option<Shard>) -> String {
    match shard {
        None => job.source.namespace().to_string(),
        Some(s) => format!("{} shard {s}", job.source.namespace()),
    }
}

/// Run `work` under the lease of (`target`, `namespace`) on a Qdrant server (the embedded
/// store is locked as a whole: no lease, `None`): the lease is renewed while `work` runs and
/// released on every way out, so that a retry (a restarted pod) need not wait for it to
/// expire. `work` gets the receiver that says when the lease was lost: writes stop there.
pub(super) async fn under_lease<S: Sink, T>(
    sink: &Arc<S>,
    target: &str,
    namespace: &str,
    run_id: &str,
    work: impl AsyncFnOnce(Option<watch::Receiver<Option<String>>>) -> Result<T, PipelineError>,
) -> Result<T, PipelineError> {
    if !sink.needs_lease() {
        return work(None).await;
    }
    let store = StateStore::open(sink.as_ref(), false).await?;
    let holder = Holder::me(run_id);
    // The bound on writing without a renewal counts from here (the record's expiry is set by
    // the write that takes it, a whole second rounded down).
    let now = std::time::Instant::now();
    let since = now
        .checked_sub(std::time::Duration::from_secs(1))
        .unwrap_or(now);
    lease::acquire(&store, target, namespace, &holder).await?;
    // A whole-namespace run (sync or watch) and shards of it must not write at once.
    if let Some(other) = lease::conflicting(&store, target, namespace, &holder).await? {
        let _ = lease::release(&store, target, namespace, &holder).await;
        return Err(LockError::Held {
            what: format!("{} -> {target}", other.namespace),
            holder: other.holder.to_string(),
        }
        .into());
    }
    let renewer = Renewer::start(
        sink.clone(),
        target.to_owned(),
        namespace.to_owned(),
        holder.clone(),
        since,
    );
    let result = work(Some(renewer.lost())).await;
    drop(renewer);
    if let Err(e) = lease::release(&store, target, namespace, &holder).await {
        tracing::warn!(
            "releasing the lease of {namespace} -> {target} failed ({e}); it expires by itself"
        );
    }
    result
}

/// Fails once the lease of this pass was lost to another run: from then on nothing is written.
pub(super) fn still_held(
    lease: &Option<watch::Receiver<Option<String>>>,
) -> Result<(), PipelineError> {
    match lease.as_ref().and_then(|l| l.borrow().clone()) {
        Some(why) => Err(PipelineError::LeaseLost(why)),
        None => Ok(()),
    }
}

/// Resolves, with why, once the lease is lost; never without a lease (the embedded store) or
/// once its renewer is gone.
pub(super) async fn lease_lost(lease: &Option<watch::Receiver<Option<String>>>) -> String {
    let Some(l) = lease else {
        return std::future::pending().await;
    };
    let mut l = l.clone();
    let why = l
        .wait_for(Option::is_some)
        .await
        .map(|why| why.clone().unwrap_or_default());
    match why {
        Ok(why) => why,
        Err(_) => std::future::pending().await,
    }
}
