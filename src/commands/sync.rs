//! `sync`: read, embed what changed, write, checkpoint; print a summary, write the report
//! (also when the run fails) and record it next to the checkpoints.

use std::process::ExitCode;
use std::sync::Arc;

use super::{exit, install_signals, lock_target, open_target};
use crate::cli::SyncArgs;
use crate::config;
use crate::embed::worker::EmbedWorker;
use crate::pipeline::{self, Chunking, Job, RetryPolicy, SyncOptions};
use crate::point::route;
use crate::progress::{Progress, ProgressMode};
use crate::report::{RunReport, Stats};
use crate::sink::{Sink, Target};
use crate::state::StateStore;

pub async fn sync(args: SyncArgs) -> anyhow::Result<ExitCode> {
    super::reported(args.report_json.as_deref(), async |run_id, stats| {
        run(&args, run_id, stats).await
    })
    .await
}

async fn run(args: &SyncArgs, run_id: &str, stats: Arc<Stats>) -> anyhow::Result<RunReport> {
    let (jobs, target) = config::sync_plan(args).await?;
    let chunking = config::chunking(args)?;
    let stop = install_signals()?;
    let mut opts = sync_options(args, chunking, stop)?;
    if opts.recreate && opts.shard.is_some() {
        return Err(config::ConfigError::ShardRecreate.into());
    }
    if opts.bulk && matches!(target.kind()?, crate::sink::TargetKind::Embedded { .. }) {
        return Err(config::ConfigError::BulkEmbedded.into());
    }
    opts.run_id = run_id.to_owned();
    // Take the embedded store's lock before loading the model: a refused run costs nothing.
    let lock = lock_target(&target.kind()?, run_id)?;
    let embedder = super::embedder_for(&args.model, &jobs).await?;
    let worker = EmbedWorker::spawn(embedder, 2);
    let mode = if args.quiet {
        ProgressMode::Off
    } else {
        ProgressMode::Auto
    };
    let progress = Progress::start(stats.clone(), mode);
    let outcome = match open_target(&target.kind()?) {
        Ok(t) => finish_run(t, worker, jobs, opts, stats).await,
        Err(e) => Err(e),
    };
    progress.finish().await;
    drop(lock);
    let report = outcome?;
    print_summary(&report);
    Ok(report)
}

/// Run the pipeline, then record the run's report next to the checkpoints (for `status`).
async fn finish_run(
    target: Arc<Target>,
    worker: EmbedWorker,
    jobs: Vec<Job>,
    opts: SyncOptions,
    stats: Arc<Stats>,
) -> anyhow::Result<RunReport> {
    let dry_run = opts.dry_run;
    let mut report = pipeline::sync(target.clone(), worker, jobs, opts, stats).await?;
    report.store = target.describe();
    if report.interrupted {
        report.exit_status = exit::INTERRUPTED;
    }
    if !dry_run {
        let store = StateStore::open(target.as_ref(), true).await?;
        store.save_run(&report).await?;
    }
    Ok(report)
}

/// The pipeline's settings from the flags.
pub fn sync_options(
    args: &SyncArgs,
    chunking: Option<Chunking>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<SyncOptions, config::ConfigError> {
    let shard = crate::shard::resolve(
        args.shard.as_deref(),
        args.shards,
        std::env::var("JOB_COMPLETION_INDEX").ok().as_deref(),
    )?;
    Ok(SyncOptions {
        batch_docs: args.batch_size.max(1),
        fresh: args.fresh,
        dry_run: args.dry_run,
        prune: args.prune,
        recreate: args.recreate,
        max_delete: args.max_delete,
        deep: args.deep,
        sample: args.sample,
        chunking,
        retry: RetryPolicy {
            attempts: args.retries.max(1),
            ..RetryPolicy::default()
        },
        shard,
        bulk: args.bulk,
        write_concurrency: args.write_concurrency.max(1),
        ..SyncOptions::new(stop)
    })
}

fn print_summary(r: &RunReport) {
    let c = &r.counts;
    let verb = if r.dry_run { "would embed" } else { "embedded" };
    crate::out!(
        "{} documents read in {:.1}s into {}: {verb} {}, unchanged {}, payload only {}, no text {}, upserted {} points, deleted {}, failed {}",
        c.read,
        r.seconds,
        r.store,
        c.embedded,
        c.skipped_unchanged,
        c.payload_updated,
        c.skipped_no_text,
        c.upserted,
        c.deleted,
        c.failed
    );
    if c.repaired > 0 {
        crate::out!(
            "  repaired {} documents whose points differed from the source",
            c.repaired
        );
    }
    for ns in &r.namespaces {
        let pruned = match (ns.pruned, ns.pruned_outside_filter) {
            (0, _) => String::new(),
            (n, 0) => format!(", pruned {n}"),
            (n, o) => format!(", pruned {n} ({o} of documents outside the --filter)"),
        };
        crate::out!(
            "  {}{}: read {}, embedded {}, unchanged {}{pruned}{}",
            route(&ns.namespace, &ns.target, ns.vector.as_deref()),
            ns.shard
                .as_ref()
                .map_or_else(String::new, |s| format!(" (shard {s})")),
            ns.counts.read,
            ns.counts.embedded,
            ns.counts.skipped_unchanged,
            if ns.complete {
                ""
            } else {
                " (incomplete: rerun to resume)"
            }
        );
    }
    for i in &r.indexing {
        if i.indexed {
            crate::out!(
                "  bulk load into {}: indexed {:.1}s after the load ({} of {} vectors in the HNSW graph)",
                i.target,
                i.seconds_to_indexed,
                i.indexed_vectors,
                i.points
            );
        } else {
            crate::out!(
                "  bulk load into {}: this shard's part is loaded; shard(s) {:?} still loading (the last switches HNSW graph building back on)",
                i.target,
                i.shards_pending
            );
        }
    }
    for f in &r.failures {
        crate::out!("  failed {} {}: {}", f.namespace, f.at, f.reason);
    }
}
