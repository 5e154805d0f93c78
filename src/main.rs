//! The `mongo2qdrant` binary: parse the command line, set up logging, run, map the outcome to an
//! exit code.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use mongo2qdrant::cli::{
    BenchArgs, Cli, Command, LogFormat, ModelArgs, SearchArgs, SyncArgs, TargetArgs,
};
use mongo2qdrant::config::{self, TargetKind};
use mongo2qdrant::embed::worker::EmbedWorker;
use mongo2qdrant::embed::{Embedder, OnnxEmbedder};
use mongo2qdrant::pipeline::{self, RetryPolicy, RunReport, SyncOptions, keys};
use mongo2qdrant::progress::{Progress, ProgressMode, Stats};
use mongo2qdrant::sink::{EdgeSink, GrpcSink, Sink};

/// Documented exit codes.
mod exit {
    pub const FAILURE: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const DRIFT: u8 = 3;
    pub const INTERRUPTED: u8 = 5;
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            let code = if e.downcast_ref::<config::ConfigError>().is_some() {
                exit::USAGE
            } else {
                exit::FAILURE
            };
            eprintln!("error: {e:#}");
            ExitCode::from(code)
        }
    }
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("M2Q_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,ort=warn,qdrant_edge=error"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Sync(args) => sync(*args).await,
        Command::Verify(args) => verify(*args).await,
        Command::Search(args) => search(*args).await,
        Command::Bench(args) => bench(*args).await,
    }
}

fn load_embedder(model: &ModelArgs) -> anyhow::Result<Arc<dyn Embedder>> {
    let config = model.embed_config()?;
    let embedder = OnnxEmbedder::load(&config)?;
    tracing::info!(
        model = embedder.model_id(),
        dimension = embedder.dimension(),
        sessions = config.sessions,
        intra_threads = config.intra_threads,
        "model loaded"
    );
    Ok(Arc::new(embedder))
}

async fn sync(args: SyncArgs) -> anyhow::Result<ExitCode> {
    let (jobs, target) = config::sync_plan(&args).await?;
    let chunking = config::chunking(&args)?;
    let embedder = tokio::task::spawn_blocking({
        let model = args.model.clone();
        move || load_embedder(&model)
    })
    .await??;
    let worker = EmbedWorker::spawn(embedder, 2);
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        tracing::warn!("interrupted: finishing in-flight batches, then writing the checkpoint");
        let _ = stop_tx.send(true);
    });
    let opts = sync_options(&args, &target, chunking, stop);
    let stats = Arc::new(Stats::default());
    let mode = if args.quiet {
        ProgressMode::Off
    } else {
        ProgressMode::Auto
    };
    let progress = Progress::start(stats.clone(), mode);
    let result = match target.kind() {
        TargetKind::Grpc { url, api_key } => {
            let sink = Arc::new(GrpcSink::connect(&url, api_key)?);
            pipeline::sync(sink, worker, jobs, opts, stats).await
        }
        TargetKind::Embedded { path } => {
            let sink = Arc::new(EdgeSink::open(&path)?);
            pipeline::sync(sink, worker, jobs, opts, stats).await
        }
    };
    progress.finish().await;
    let report = result?;
    print_summary(&report);
    if let Some(path) = &args.report_json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing --report-json {}", path.display()))?;
    }
    Ok(if report.interrupted {
        ExitCode::from(exit::INTERRUPTED)
    } else {
        ExitCode::SUCCESS
    })
}

fn sync_options(
    args: &SyncArgs,
    target: &TargetArgs,
    chunking: Option<pipeline::Chunking>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> SyncOptions {
    SyncOptions {
        batch_docs: args.batch_size.max(1),
        fresh: args.fresh,
        dry_run: args.dry_run,
        prune: args.prune,
        recreate: args.recreate,
        vector_name: target.vector_name.clone(),
        chunking,
        retry: RetryPolicy {
            attempts: args.retries.max(1),
            ..RetryPolicy::default()
        },
        run_id: uuid::Uuid::new_v4().to_string(),
        stop,
    }
}

async fn verify(args: SyncArgs) -> anyhow::Result<ExitCode> {
    let (jobs, target) = config::sync_plan(&args).await?;
    let chunking = config::chunking(&args)?;
    let embedder = tokio::task::spawn_blocking({
        let model = args.model.clone();
        move || load_embedder(&model)
    })
    .await??;
    let (_keep, stop) = tokio::sync::watch::channel(false);
    let opts = sync_options(&args, &target, chunking, stop);
    let report = match target.kind() {
        TargetKind::Grpc { url, api_key } => {
            let sink = Arc::new(GrpcSink::connect(&url, api_key)?);
            mongo2qdrant::verify::verify(sink, embedder, jobs, &opts).await?
        }
        TargetKind::Embedded { path } => {
            let sink = Arc::new(EdgeSink::open(&path)?);
            mongo2qdrant::verify::verify(sink, embedder, jobs, &opts).await?
        }
    };
    for ns in &report.namespaces {
        println!(
            "{} -> {}: {} documents, {} points expected, {} found: {} missing, {} stale, {} orphaned, {} duplicate{}",
            ns.namespace,
            ns.target,
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
                println!("  {kind:<9} point {} (_id {})", d.point, d.doc_id);
            }
        }
    }
    if let Some(path) = &args.report_json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing --report-json {}", path.display()))?;
    }
    Ok(if report.in_sync {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(exit::DRIFT)
    })
}

fn print_summary(r: &RunReport) {
    let c = &r.counts;
    let verb = if r.dry_run { "would embed" } else { "embedded" };
    println!(
        "{} documents read in {:.1}s: {verb} {}, unchanged {}, no text {}, upserted {} points, deleted {}, failed {}",
        c.read,
        r.seconds,
        c.embedded,
        c.skipped_unchanged,
        c.skipped_no_text,
        c.upserted,
        c.deleted,
        c.failed
    );
    for ns in &r.namespaces {
        println!(
            "  {} -> {}: read {}, embedded {}, unchanged {}{}",
            ns.namespace,
            ns.target,
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
    for f in &r.failures {
        println!("  failed {} {}: {}", f.namespace, f.at, f.reason);
    }
}

async fn search(args: SearchArgs) -> anyhow::Result<ExitCode> {
    let collection = args
        .target
        .collection_name
        .clone()
        .context("search needs --collection-name (the target collection)")?;
    let embedder = tokio::task::spawn_blocking({
        let model = args.model.clone();
        move || load_embedder(&model)
    })
    .await??;
    let (mut vectors, _) = embedder.embed(&[args.query.as_str()])?;
    let vector = vectors.pop().expect("one vector");
    match args.target.kind() {
        TargetKind::Grpc { url, api_key } => {
            print_hits(
                &GrpcSink::connect(&url, api_key)?,
                &args,
                &collection,
                vector,
            )
            .await
        }
        TargetKind::Embedded { path } => {
            print_hits(&EdgeSink::open(&path)?, &args, &collection, vector).await
        }
    }
}

async fn print_hits<S: Sink>(
    sink: &S,
    args: &SearchArgs,
    collection: &str,
    vector: Vec<f32>,
) -> anyhow::Result<ExitCode> {
    let _: &TargetArgs = &args.target;
    let hits = sink
        .search(
            collection,
            args.target.vector_name.as_deref(),
            vector,
            args.limit,
        )
        .await?;
    for (i, h) in hits.iter().enumerate() {
        if args.json {
            println!(
                "{}",
                serde_json::json!({"rank": i + 1, "id": h.id, "score": h.score, "payload": h.payload})
            );
        } else {
            let mut shown = h.payload.clone();
            let id = shown.remove(keys::ID).unwrap_or_default();
            let chunk = shown.remove(keys::CHUNK);
            for k in [keys::HASH, keys::CHUNKS, keys::NAMESPACE] {
                shown.remove(k);
            }
            let chunk = chunk
                .filter(|c| c.as_u64() != Some(0))
                .map_or_else(String::new, |c| format!(" chunk {c}"));
            println!(
                "{:>2}. {:.4}  _id {id}{chunk}  {}",
                i + 1,
                h.score,
                serde_json::Value::Object(shown)
            );
        }
    }
    if hits.is_empty() {
        eprintln!("no hits: is `{collection}` synced? (`mongo2qdrant sync ...`)");
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

/// Texts of every job's documents, rendered through the template.
async fn read_texts(jobs: Vec<pipeline::Job>, limit: usize) -> anyhow::Result<Vec<String>> {
    let mut texts = Vec::new();
    for job in jobs {
        let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
        let source = job.source.clone();
        let reader = tokio::spawn(async move {
            let mut last = None;
            source.stream(None, &tx, &mut last).await
        });
        while let Some(item) = rx.recv().await {
            if let mongo2qdrant::source::SourceItem::Doc(d) = item
                && let Some(t) = job.template.render(&d.doc)
            {
                texts.push(t);
                if texts.len() >= limit {
                    break;
                }
            }
        }
        drop(rx);
        match reader.await? {
            Ok(_) | Err(mongo2qdrant::source::SourceError::Closed) => {}
            Err(e) => return Err(e.into()),
        }
        if texts.len() >= limit {
            break;
        }
    }
    Ok(texts)
}

async fn bench(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let base = args.model.embed_config()?;
    let limit = args.limit.unwrap_or(usize::MAX);
    let started = std::time::Instant::now();
    let texts = if args.source.collections.is_empty() && args.source.files.is_empty() {
        mongo2qdrant::bench::generated_texts(args.generate.min(limit), args.words)
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
    let scratch = tempfile_dir()?;
    let plan = mongo2qdrant::bench::BenchPlan {
        base,
        batch_sizes: args.batch_sizes.clone(),
        layouts,
        window: args.window,
        runs: args.runs,
        upsert_into: args.upsert.then(|| scratch.clone()),
    };
    let report = mongo2qdrant::bench::run(&plan, texts, read_secs).await;
    let _ = std::fs::remove_dir_all(&scratch);
    let report = report?;
    print!("{}", mongo2qdrant::bench::table(&report));
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing --json {}", path.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// A scratch directory for the bench's throwaway store.
fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("mongo2qdrant-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
