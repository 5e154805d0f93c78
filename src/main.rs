//! The `mongo2qdrant` binary: parse the command line, set up logging, run, map the outcome to an
//! exit code.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use mongo2qdrant::cli::{
    BenchArgs, Cli, Command, LogFormat, ModelArgs, SearchArgs, StatusArgs, SyncArgs, TargetArgs,
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
    pub const LOCKED: u8 = 4;
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
            // stderr may be closed (cron): never panic over a message
            let _ = writeln!(std::io::stderr(), "error: {e:#}");
            ExitCode::from(exit_code(&e))
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
        Command::Status(args) => status(*args).await,
        Command::Bench(args) => bench(*args).await,
    }
}

/// Load the model on a blocking thread (it reads and optimises the ONNX graph).
async fn load_embedder_off_runtime(model: &ModelArgs) -> anyhow::Result<Arc<dyn Embedder>> {
    let model = model.clone();
    tokio::task::spawn_blocking(move || load_embedder(&model)).await?
}

/// The embedded store's lock for `holder`; none for a Qdrant server (leases work there).
fn lock_target(
    target: &TargetKind,
    holder: &str,
) -> anyhow::Result<Option<mongo2qdrant::lease::StoreLock>> {
    Ok(match target {
        TargetKind::Embedded { path } => Some(mongo2qdrant::lease::lock_store(path, holder)?),
        TargetKind::Grpc { .. } => None,
    })
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

/// How long a stopping run may take to finish its in-flight batches after SIGINT/SIGTERM.
const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

/// SIGINT/SIGTERM set the returned flag: reading stops, in-flight batches finish, the
/// checkpoint covers what was acknowledged. A second signal, or the grace period running out,
/// exits at once (the checkpoint is never ahead of the target, so nothing is lost).
fn install_signals() -> anyhow::Result<tokio::sync::watch::Receiver<bool>> {
    use tokio::signal::unix::{SignalKind, signal};
    let (tx, rx) = tokio::sync::watch::channel(false);
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::warn!("stopping: finishing in-flight batches, then writing the checkpoint");
        let _ = tx.send(true);
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
            _ = tokio::time::sleep(STOP_GRACE) => {}
        }
        let _ = writeln!(
            std::io::stderr(),
            "stopped without waiting; the checkpoint covers what the target acknowledged"
        );
        std::process::exit(i32::from(exit::INTERRUPTED));
    });
    Ok(rx)
}

/// Exit code for an error: usage, locked, or failure.
fn exit_code(e: &anyhow::Error) -> u8 {
    if e.downcast_ref::<config::ConfigError>().is_some() {
        return exit::USAGE;
    }
    let locked = e.downcast_ref::<mongo2qdrant::lease::LockError>().is_some()
        || matches!(
            e.downcast_ref::<pipeline::PipelineError>(),
            Some(pipeline::PipelineError::Locked(_))
        );
    if locked { exit::LOCKED } else { exit::FAILURE }
}

async fn sync(args: SyncArgs) -> anyhow::Result<ExitCode> {
    let (jobs, target) = config::sync_plan(&args).await?;
    let chunking = config::chunking(&args)?;
    let stop = install_signals()?;
    let run_id = uuid::Uuid::new_v4().to_string();
    let started_at = pipeline::now_rfc3339();
    // Take the embedded store's lock before loading the model: a refused run costs nothing.
    let lock = lock_target(&target.kind(), &run_id)?;
    let embedder = load_embedder_off_runtime(&args.model).await?;
    let worker = EmbedWorker::spawn(embedder, 2);
    let mut opts = sync_options(&args, chunking, stop);
    opts.run_id = run_id.clone();
    let stats = Arc::new(Stats::default());
    let mode = if args.quiet {
        ProgressMode::Off
    } else {
        ProgressMode::Auto
    };
    let progress = Progress::start(stats.clone(), mode);
    let outcome = match target.kind() {
        TargetKind::Grpc { url, api_key } => {
            let sink = Arc::new(GrpcSink::connect(&url, api_key)?);
            finish_run(sink, worker, jobs, opts, stats.clone()).await
        }
        TargetKind::Embedded { path } => {
            let sink = Arc::new(EdgeSink::open(&path)?);
            finish_run(sink, worker, jobs, opts, stats.clone()).await
        }
    };
    progress.finish().await;
    drop(lock);
    let (report, code) = match &outcome {
        Ok(report) => {
            print_summary(report);
            report_json(report)?
        }
        Err(e) => {
            let code = exit_code(e);
            let mut v = serde_json::to_value(stats.snapshot())?;
            v["run_id"] = run_id.clone().into();
            v["started_at"] = started_at.into();
            v["finished_at"] = pipeline::now_rfc3339().into();
            v["status"] = "failed".into();
            v["error"] = format!("{e:#}").into();
            v["exit_status"] = code.into();
            (v, code)
        }
    };
    if let Some(path) = &args.report_json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing --report-json {}", path.display()))?;
    }
    outcome?;
    Ok(ExitCode::from(code))
}

/// The report of a finished run as JSON, with its status and exit code.
fn report_json(report: &RunReport) -> anyhow::Result<(serde_json::Value, u8)> {
    let code = if report.interrupted {
        exit::INTERRUPTED
    } else {
        0
    };
    let mut v = serde_json::to_value(report)?;
    v["status"] = (if report.interrupted {
        "interrupted"
    } else {
        "ok"
    })
    .into();
    v["exit_status"] = code.into();
    Ok((v, code))
}

/// Run the pipeline, then record the run's report next to the checkpoints (for `status`).
async fn finish_run<S: Sink>(
    sink: Arc<S>,
    worker: EmbedWorker,
    jobs: Vec<pipeline::Job>,
    opts: SyncOptions,
    stats: Arc<Stats>,
) -> anyhow::Result<RunReport> {
    let dry_run = opts.dry_run;
    let report = pipeline::sync(sink.clone(), worker, jobs, opts, stats).await?;
    if !dry_run {
        let store = mongo2qdrant::checkpoint::CheckpointStore::open(sink.as_ref(), true).await?;
        store.save_run(&report_json(&report)?.0).await?;
    }
    Ok(report)
}

fn sync_options(
    args: &SyncArgs,
    chunking: Option<pipeline::Chunking>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> SyncOptions {
    SyncOptions {
        batch_docs: args.batch_size.max(1),
        fresh: args.fresh,
        dry_run: args.dry_run,
        prune: args.prune,
        recreate: args.recreate,
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
    let embedder = load_embedder_off_runtime(&args.model).await?;
    let (_keep, stop) = tokio::sync::watch::channel(false);
    let opts = sync_options(&args, chunking, stop);
    let _lock = lock_target(&target.kind(), &opts.run_id)?;
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
            "{}: {} documents, {} points expected, {} found: {} missing, {} stale, {} orphaned, {} duplicate{}",
            route(&ns.namespace, &ns.target, ns.vector.as_deref()),
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

/// `NAMESPACE -> TARGET`, with ` (vector NAME)` for a named vector: how every command names a
/// job.
fn route(namespace: &str, target: &str, vector: Option<&str>) -> String {
    match vector {
        Some(v) => format!("{namespace} -> {target} (vector {v})"),
        None => format!("{namespace} -> {target}"),
    }
}

fn print_summary(r: &RunReport) {
    let c = &r.counts;
    let verb = if r.dry_run { "would embed" } else { "embedded" };
    println!(
        "{} documents read in {:.1}s: {verb} {}, unchanged {}, payload only {}, no text {}, upserted {} points, deleted {}, failed {}",
        c.read,
        r.seconds,
        c.embedded,
        c.skipped_unchanged,
        c.payload_updated,
        c.skipped_no_text,
        c.upserted,
        c.deleted,
        c.failed
    );
    for ns in &r.namespaces {
        println!(
            "  {}: read {}, embedded {}, unchanged {}{}",
            route(&ns.namespace, &ns.target, ns.vector.as_deref()),
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
    // Opening a shard may replay and flush it: never beside a running sync.
    let _lock = lock_target(&args.target.kind(), "search")?;
    let embedder = load_embedder_off_runtime(&args.model).await?;
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
        .await
        .with_context(|| match &args.target.vector_name {
            None => format!(
                "searching `{collection}` (a collection of named vectors needs --vector-name NAME)"
            ),
            Some(v) => format!("searching the vector `{v}` of `{collection}`"),
        })?;
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
            shown.retain(|k, _| !keys::is_internal(k));
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

async fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let out = match args.target.kind() {
        TargetKind::Grpc { url, api_key } => status_of(&GrpcSink::connect(&url, api_key)?).await?,
        TargetKind::Embedded { path } => {
            // A running sync holds the store: show who, without touching its files.
            match mongo2qdrant::lease::lock_store(&path, "status") {
                Ok(_lock) => status_of(&EdgeSink::open(&path)?).await?,
                Err(mongo2qdrant::lease::LockError::Held { holder, .. }) => serde_json::json!({
                    "store": path.display().to_string(),
                    "locked_by": holder,
                    "note": "a run is writing this store; checkpoints are shown when it ends",
                }),
                Err(e) => return Err(e.into()),
            }
        }
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print_status(&out);
    }
    Ok(ExitCode::SUCCESS)
}

/// Checkpoints, leases and the last run's report, as JSON.
async fn status_of<S: Sink>(sink: &S) -> anyhow::Result<serde_json::Value> {
    use mongo2qdrant::checkpoint::CHECKPOINT_COLLECTION;
    let records = if sink.exists(CHECKPOINT_COLLECTION).await? {
        mongo2qdrant::sink::scroll_all(sink, CHECKPOINT_COLLECTION, None).await?
    } else {
        Vec::new()
    };
    let (mut checkpoints, mut leases, mut last_run) = (Vec::new(), Vec::new(), None);
    for r in records {
        match r.payload.get("kind").and_then(|k| k.as_str()) {
            Some("checkpoint") => checkpoints.push(serde_json::Value::Object(r.payload)),
            Some("lease") => leases.push(serde_json::Value::Object(r.payload)),
            Some("run") => last_run = r.payload.get("report").cloned(),
            _ => {}
        }
    }
    Ok(serde_json::json!({
        "target": sink.describe(),
        "checkpoints": checkpoints,
        "leases": leases,
        "last_run": last_run,
    }))
}

fn print_status(s: &serde_json::Value) {
    if let Some(holder) = s.get("locked_by") {
        println!(
            "{}: locked by {}",
            s["store"].as_str().unwrap_or(""),
            holder.as_str().unwrap_or("")
        );
        return;
    }
    println!("{}", s["target"].as_str().unwrap_or(""));
    let empty = Vec::new();
    let checkpoints = s["checkpoints"].as_array().unwrap_or(&empty);
    if checkpoints.is_empty() {
        println!("  no checkpoints yet (nothing synced)");
    }
    for c in checkpoints {
        println!(
            "  {}: {} at _id {}, updated {}, run {}, model {}",
            route(
                c["namespace"].as_str().unwrap_or("?"),
                c["target"].as_str().unwrap_or("?"),
                c["vector"].as_str()
            ),
            if c["complete"].as_bool() == Some(true) {
                "complete"
            } else {
                "in progress"
            },
            c["last_id"],
            c["updated_at"].as_str().unwrap_or("?"),
            c["run_id"].as_str().unwrap_or("?"),
            c["model"].as_str().unwrap_or("?"),
        );
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    for l in s["leases"].as_array().unwrap_or(&empty) {
        let live = l["expires_at"].as_u64().unwrap_or(0) > now;
        println!(
            "  lease {} -> {}: {} by run {} (pid {} on {})",
            l["namespace"].as_str().unwrap_or("?"),
            l["target"].as_str().unwrap_or("?"),
            if live { "held" } else { "expired" },
            l["run_id"].as_str().unwrap_or("?"),
            l["pid"],
            l["host"].as_str().unwrap_or("?"),
        );
    }
    match &s["last_run"] {
        serde_json::Value::Null => println!("  no run recorded"),
        r => println!(
            "  last run {}: {} .. {}, read {}, embedded {}, unchanged {}, upserted {}, failed {}{}",
            r["run_id"].as_str().unwrap_or("?"),
            r["started_at"].as_str().unwrap_or("?"),
            r["finished_at"].as_str().unwrap_or("?"),
            r["read"],
            r["embedded"],
            r["skipped_unchanged"],
            r["upserted"],
            r["failed"],
            if r["interrupted"].as_bool() == Some(true) {
                " (interrupted)"
            } else {
                ""
            },
        ),
    }
}
