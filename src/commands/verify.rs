//! `verify`: compare source and target without writing; print the differences, exit 3 when
//! there are any.

use std::process::ExitCode;

use super::{exit, lock_target, open_target};
use crate::cli::SyncArgs;
use crate::config;
use crate::point::route;
use crate::verify::VerifyReport;

pub async fn verify(args: SyncArgs) -> anyhow::Result<ExitCode> {
    let (jobs, target) = config::sync_plan(&args).await?;
    let chunking = config::chunking(&args)?;
    super::existing_store(&target.kind()?)?;
    let embedder = super::embedder_for(&args.model, &jobs).await?;
    let (_keep, stop) = tokio::sync::watch::channel(false);
    let opts = super::sync::sync_options(&args, chunking, stop)?;
    let _lock = lock_target(&target.kind()?, &opts.run_id)?;
    let sink = open_target(&target.kind()?)?;
    let report = crate::verify::verify(sink, embedder, jobs, &opts).await?;
    print_report(&report);
    if let Some(path) = &args.report_json {
        super::write_json(path, "--report-json", &report)?;
    }
    Ok(if report.in_sync {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(exit::DRIFT)
    })
}

fn print_report(report: &VerifyReport) {
    for ns in &report.namespaces {
        crate::out!(
            "{}{}: {} documents, {} points expected, {} found: {} missing, {} stale, {} orphaned, {} duplicate{}",
            route(&ns.namespace, &ns.target, ns.vector.as_deref()),
            ns.shard
                .as_ref()
                .map_or_else(String::new, |s| format!(" (shard {s})")),
            ns.documents,
            ns.expected_points,
            ns.points,
            ns.missing,
            ns.stale,
            ns.orphaned,
            ns.duplicates,
            if ns.in_sync() { " (in sync)" } else { "" }
        );
        for (kind, list) in [
            ("missing", &ns.missing_ids),
            ("stale", &ns.stale_ids),
            ("orphaned", &ns.orphaned_ids),
            ("duplicate", &ns.duplicate_ids),
        ] {
            for d in list {
                crate::out!("  {kind:<9} point {} (_id {})", d.point, d.doc_id);
            }
        }
        if ns.unplaced > 0 {
            crate::out!(
                "  {} points could not be placed in a shard (their stored _id does not give their id back): run verify without --shard to check them",
                ns.unplaced
            );
        }
        if ns.deep_checked > 0 {
            crate::out!(
                "  deep: {} documents checked point by point, {} differ from the source (`sync --deep` repairs them)",
                ns.deep_checked,
                ns.defective
            );
        }
        for d in &ns.defects {
            crate::out!("  differs   _id {}: {}", d.doc_id, d.reason);
        }
    }
}
