//! Live counters and their display: indicatif bars on a terminal, a log line every few seconds
//! otherwise (cron, CI, containers).

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::report::Stats;

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    /// Bars when stderr is a terminal, log lines otherwise.
    Auto,
    /// Nothing (library use, tests).
    Off,
}

fn bar_style(sized: bool) -> ProgressStyle {
    let template = if sized {
        "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} read ({per_sec}, ETA {eta}) {msg}"
    } else {
        "{spinner} [{elapsed_precise}] {pos} read ({per_sec}) {msg}"
    };
    ProgressStyle::with_template(template).expect("valid template")
}

/// A running display; stops when dropped or [`Progress::finish`]ed.
pub struct Progress {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    /// Start showing `stats`.
    pub fn start(stats: Arc<Stats>, mode: ProgressMode) -> Self {
        if mode == ProgressMode::Off {
            return Self {
                stop: None,
                task: None,
            };
        }
        let (stop, mut stopped) = tokio::sync::oneshot::channel();
        let terminal = std::io::stderr().is_terminal();
        let task = tokio::spawn(async move {
            let started = Instant::now();
            let bar =
                terminal.then(|| ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()));
            let mut sized = None;
            let period = if terminal {
                Duration::from_millis(200)
            } else {
                Duration::from_secs(10)
            };
            loop {
                let c = stats.snapshot();
                let line = format!(
                    "embedded {} | unchanged {} | no text {} | upserted {} | deleted {} | failed {}",
                    c.embedded,
                    c.skipped_unchanged,
                    c.skipped_no_text,
                    c.upserted,
                    c.deleted,
                    c.failed
                );
                match &bar {
                    Some(b) => {
                        // A bar with ETA when the source's size is known, a counter otherwise.
                        let expected = stats.expected.load(Ordering::Relaxed);
                        if sized != Some(expected > 0) {
                            sized = Some(expected > 0);
                            b.set_style(bar_style(expected > 0));
                        }
                        if expected > 0 {
                            b.set_length(expected.max(c.read));
                        }
                        b.set_position(c.read);
                        b.set_message(line);
                    }
                    None => {
                        let secs = started.elapsed().as_secs_f64().max(1e-9);
                        tracing::info!(
                            read = c.read,
                            rate = format!("{:.1}/s", c.read as f64 / secs),
                            "{line}"
                        );
                    }
                }
                tokio::select! {
                    _ = &mut stopped => break,
                    _ = tokio::time::sleep(period) => {}
                }
            }
            if let Some(b) = bar {
                b.finish_and_clear();
            }
        });
        Self {
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Stop the display and wait for it to clear.
    pub async fn finish(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}
