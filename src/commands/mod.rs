//! The binary's commands, one module each with its printer beside it, and what they share:
//! exit codes, loading the model off the runtime, opening and locking the target, signals,
//! JSON files.

pub mod bench;
pub mod search;
pub mod status;
pub mod sync;
pub mod verify;
pub mod watch;

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;

use crate::cli::ModelArgs;
use crate::config;
use crate::embed::{Embedder, OnnxEmbedder};
use crate::pipeline::PipelineError;
use crate::sink::{Target, TargetKind};
use crate::state::{LockError, StoreLock, lock_store};

/// `println!` that never panics: a closed stdout (`mongo2qdrant verify | head`, a cron job
/// without a reader) loses the rest of the text, never the exit code or the report.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// Documented exit codes.
pub mod exit {
    pub const FAILURE: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const DRIFT: u8 = 3;
    pub const LOCKED: u8 = 4;
    pub const INTERRUPTED: u8 = 5;
}

/// Exit code for an error: usage, locked, or failure.
pub fn exit_code(e: &anyhow::Error) -> u8 {
    if e.downcast_ref::<config::ConfigError>().is_some()
        || matches!(
            e.downcast_ref::<crate::embed::EmbedError>(),
            Some(
                crate::embed::EmbedError::Precision(_)
                    | crate::embed::EmbedError::Unsupported { .. }
            )
        )
        || matches!(
            e.downcast_ref::<PipelineError>(),
            Some(PipelineError::Sink(
                crate::sink::SinkError::Unsupported { .. }
                    | crate::sink::SinkError::OnDiskAdded { .. }
            ))
        )
    {
        return exit::USAGE;
    }
    let locked = e.downcast_ref::<LockError>().is_some()
        || matches!(
            e.downcast_ref::<PipelineError>(),
            Some(PipelineError::Locked(_) | PipelineError::LeaseLost(_))
        );
    if locked { exit::LOCKED } else { exit::FAILURE }
}

/// Load the model on a blocking thread (it reads and optimises the ONNX graph).
/// The model `jobs` need: none when every one is sparse-only (`--no-dense`).
pub async fn embedder_for(
    model: &ModelArgs,
    jobs: &[crate::point::Job],
) -> anyhow::Result<Arc<dyn Embedder>> {
    if !jobs.is_empty() && jobs.iter().all(crate::point::Job::sparse_only) {
        return Ok(Arc::new(crate::sparse::NoModel::default()));
    }
    load_embedder(model).await
}

pub async fn load_embedder(model: &ModelArgs) -> anyhow::Result<Arc<dyn Embedder>> {
    let model = model.clone();
    tokio::task::spawn_blocking(move || {
        let config = model.embed_config()?;
        let embedder = OnnxEmbedder::load(&config)?;
        tracing::info!(
            model = embedder.model_id(),
            dimension = embedder.dimension(),
            precision = embedder.compute().precision,
            runtime = embedder.compute().runtime,
            isa = embedder.compute().isa,
            why = %embedder.compute().reason,
            sessions = config.sessions,
            intra_threads = config.intra_threads,
            "model loaded"
        );
        Ok(Arc::new(embedder) as Arc<dyn Embedder>)
    })
    .await?
}

/// The embedded store's lock for `holder`; none for a Qdrant server (leases work there).
pub fn lock_target(target: &TargetKind, holder: &str) -> Result<Option<StoreLock>, LockError> {
    Ok(match target {
        TargetKind::Embedded { path } => Some(lock_store(path, holder)?),
        TargetKind::Grpc { .. } => None,
    })
}

/// For commands that only read: an embedded store that does not exist is a mistyped path, not
/// an empty store.
pub fn existing_store(kind: &TargetKind) -> anyhow::Result<()> {
    if let TargetKind::Embedded { path } = kind
        && !path.is_dir()
    {
        anyhow::bail!(
            "no embedded store at {}: check --qdrant-path (or M2Q_QDRANT_PATH); `mongo2qdrant sync` creates it",
            path.display()
        );
    }
    Ok(())
}

/// Open the target `kind` describes.
pub fn open_target(kind: &TargetKind) -> anyhow::Result<Arc<Target>> {
    Ok(Arc::new(Target::open(kind)?))
}

/// Run a writing command (`sync`, `watch`) with a new run id and live counters; every way
/// out writes its report to `report_json` (a cron job must not keep showing the last good
/// one), a failure with its error and counts. The exit code is the report's.
pub async fn reported(
    report_json: Option<&Path>,
    run: impl AsyncFnOnce(&str, Arc<crate::report::Stats>) -> anyhow::Result<crate::report::RunReport>,
) -> anyhow::Result<std::process::ExitCode> {
    use crate::report::{RunReport, RunStatus, Stats};
    let run_id = uuid::Uuid::new_v4().to_string();
    let started_at = crate::state::now_rfc3339();
    let stats = Arc::new(Stats::default());
    let outcome = run(&run_id, stats.clone()).await;
    let report = match &outcome {
        Ok(report) => report.clone(),
        Err(e) => RunReport {
            run_id,
            started_at,
            finished_at: crate::state::now_rfc3339(),
            counts: stats.snapshot(),
            status: RunStatus::Failed,
            exit_status: exit_code(e),
            error: Some(format!("{e:#}")),
            ..RunReport::default()
        },
    };
    if let Some(path) = report_json {
        write_json(path, "--report-json", &report)?;
    }
    outcome?;
    Ok(std::process::ExitCode::from(report.exit_status))
}

/// Write `value` as pretty JSON to `path` (the file a `flag` named).
pub fn write_json(path: &Path, flag: &str, value: &impl serde::Serialize) -> anyhow::Result<()> {
    std::fs::write(path, serde_json::to_vec_pretty(value)?)
        .with_context(|| format!("writing {flag} {}", path.display()))
}

/// How long a stopping run may take to finish its in-flight batches after SIGINT/SIGTERM.
const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

/// SIGINT/SIGTERM set the returned flag: reading stops, in-flight batches finish, the
/// checkpoint covers what was acknowledged. A second signal, or the grace period running out,
/// exits at once (the checkpoint is never ahead of the target, so nothing is lost).
pub fn install_signals() -> anyhow::Result<tokio::sync::watch::Receiver<bool>> {
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
