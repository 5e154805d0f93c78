//! `bench`: embedding throughput over batch sizes and session/thread layouts, on generated
//! texts or the documents of a source.

use std::process::ExitCode;

use anyhow::Context;

use crate::cli::BenchArgs;
use crate::config;
use crate::point::Job;
use crate::source::SourceItem;

pub async fn bench(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let base = args.model.embed_config()?;
    let limit = args.limit.unwrap_or(usize::MAX);
    let started = std::time::Instant::now();
    let texts = if args.source.collections.is_empty() && args.source.files.is_empty() {
        crate::bench::generated_texts(args.generate.min(limit), args.words)
    } else {
        let jobs = config::jobs(&args.source, None, &args.text, &[]).await?;
        read_texts(jobs, limit).await?
    };
    let read_secs = started.elapsed().as_secs_f64();
    let layouts = if args.layouts.is_empty() {
        vec![(base.sessions, base.intra_threads)]
    } else {
        args.layouts
            .iter()
            .map(|l| parse_layout(l))
            .collect::<anyhow::Result<_>>()?
    };
    let scratch = scratch_dir()?;
    let plan = crate::bench::BenchPlan {
        base,
        batch_sizes: args.batch_sizes.clone(),
        layouts,
        window: args.window,
        runs: args.runs,
        upsert_into: args.upsert.then(|| scratch.clone()),
        fidelity: args.fidelity,
    };
    let report = crate::bench::run(&plan, texts, read_secs).await;
    let _ = std::fs::remove_dir_all(&scratch);
    let report = report?;
    crate::out!("{}", crate::bench::table(&report).trim_end());
    if let Some(path) = &args.json {
        super::write_json(path, "--json", &report)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Parse `2x1` into (sessions, threads).
fn parse_layout(s: &str) -> anyhow::Result<(usize, usize)> {
    let (a, b) = s
        .split_once('x')
        .with_context(|| format!("--layouts: `{s}` is not SESSIONSxTHREADS, e.g. 2x1"))?;
    Ok((a.trim().parse()?, b.trim().parse()?))
}

/// Texts of every job's documents, rendered through the template, at most `limit`.
async fn read_texts(jobs: Vec<Job>, limit: usize) -> anyhow::Result<Vec<String>> {
    let mut texts = Vec::new();
    for job in jobs {
        let (mut rx, reader) = job.source.spawn_reader(1024, None);
        while texts.len() < limit
            && let Some(item) = rx.recv().await
        {
            if let SourceItem::Doc(d) = item
                && let Some(t) = job.template.render(&d.doc)
            {
                texts.push(t);
            }
        }
        drop(rx);
        crate::source::finished(reader).await?;
    }
    Ok(texts)
}

/// A scratch directory for the bench's throwaway store.
fn scratch_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("mongo2qdrant-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
