//! `watch`: sync where needed, then apply changes as they happen until SIGINT/SIGTERM; the
//! report is written (and recorded next to the checkpoints) on every way out.

use std::process::ExitCode;
use std::sync::Arc;

use super::sync::sync_options;
use super::{exit, install_signals, lock_target, open_target};
use crate::cli::WatchArgs;
use crate::config::{self, ConfigError};
use crate::embed::worker::EmbedWorker;
use crate::metrics::Metrics;
use crate::pipeline::{self, WatchOptions};
use crate::report::{RunReport, Stats};
use crate::sink::Sink;
use crate::source::Source;
use crate::state::StateStore;

pub async fn watch(args: WatchArgs) -> anyhow::Result<ExitCode> {
    super::reported(args.sync.report_json.as_deref(), async |run_id, stats| {
        run(&args, run_id, stats).await
    })
    .await
}

async fn run(args: &WatchArgs, run_id: &str, stats: Arc<Stats>) -> anyhow::Result<RunReport> {
    let sync = &args.sync;
    let sharded = sync.shard.is_some() || sync.shards.is_some();
    for (set, flag) in [
        (sync.dry_run, "--dry-run"),
        (sync.deep, "--deep"),
        (sharded, "--shard"),
        (sync.bulk, "--bulk"),
    ] {
        if set {
            return Err(ConfigError::NotForWatch(flag).into());
        }
    }
    let (jobs, target) = config::sync_plan(sync).await?;
    if let Some(job) = jobs.iter().find(|j| !matches!(j.source, Source::Mongo(_))) {
        return Err(ConfigError::Unwatchable(job.source.describe()).into());
    }
    let chunking = config::chunking(sync)?;
    let stop = install_signals()?;
    let mut opts = sync_options(sync, chunking, stop)?;
    opts.run_id = run_id.to_owned();
    let lock = lock_target(&target.kind()?, run_id)?;
    let metrics = Arc::new(Metrics::new(namespaces(&jobs), stats.clone()));
    if let Some(addr) = &args.metrics_addr {
        let at = crate::metrics::serve(addr, metrics.clone())
            .await
            .map_err(|e| ConfigError::MetricsAddr {
                addr: addr.clone(),
                reason: e.to_string(),
            })?;
        tracing::info!("serving /healthz, /livez and /metrics on http://{at}");
    }
    let wopts = WatchOptions {
        max_events: args.watch_batch.max(1),
        delay: std::time::Duration::from_millis(args.watch_delay_ms.max(1)),
        metrics,
    };
    let embedder = super::embedder_for(&sync.model, &jobs).await?;
    let worker = EmbedWorker::spawn(embedder, 2);
    let target = open_target(&target.kind()?)?;
    let mut report =
        pipeline::watch(target.clone(), worker, jobs, opts, wopts, stats.clone()).await?;
    report.store = target.describe();
    if report.interrupted {
        report.exit_status = exit::INTERRUPTED;
    }
    StateStore::open(target.as_ref(), true)
        .await?
        .save_run(&report)
        .await?;
    drop(lock);
    let c = &report.counts;
    crate::out!(
        "watched for {:.1}s into {}: read {}, embedded {}, unchanged {}, payload only {}, upserted {} points, deleted {}, failed {}",
        report.seconds,
        report.store,
        c.read,
        c.embedded,
        c.skipped_unchanged,
        c.payload_updated,
        c.upserted,
        c.deleted,
        c.failed
    );
    Ok(report)
}

/// How many streams the jobs make: one per (namespace, target).
fn namespaces(jobs: &[crate::pipeline::Job]) -> usize {
    let mut routes: Vec<(String, &str)> = jobs
        .iter()
        .map(|j| (j.source.namespace().to_string(), j.target.as_str()))
        .collect();
    routes.sort();
    routes.dedup();
    routes.len()
}
