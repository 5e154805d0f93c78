//! The embedding worker: one dedicated OS thread that owns the embedder, fed through a bounded
//! channel, so ONNX and tokenisation never block the async runtime.

use std::sync::Arc;
use std::thread::JoinHandle;

use tokio::sync::{mpsc, oneshot};

use super::{EmbedError, EmbedStats, Embedder};

type Reply = Result<(Vec<Vec<f32>>, EmbedStats), EmbedError>;

struct Job {
    texts: Vec<String>,
    reply: oneshot::Sender<Reply>,
}

/// Handle to the worker thread; cloning shares the same thread.
#[derive(Clone)]
pub struct EmbedWorker {
    tx: mpsc::Sender<Job>,
    embedder: Arc<dyn Embedder>,
    _thread: Arc<JoinHandle<()>>,
}

impl EmbedWorker {
    /// Start the worker thread; at most `queue` jobs wait for it.
    pub fn spawn(embedder: Arc<dyn Embedder>, queue: usize) -> Self {
        let (tx, mut rx) = mpsc::channel::<Job>(queue.max(1));
        let e = embedder.clone();
        let thread = std::thread::Builder::new()
            .name("embed-worker".into())
            .spawn(move || {
                while let Some(job) = rx.blocking_recv() {
                    let refs: Vec<&str> = job.texts.iter().map(String::as_str).collect();
                    // The requester may have gone (cancelled run): nothing to deliver then.
                    let _ = job.reply.send(e.embed(&refs));
                }
            })
            .expect("spawning the embedding thread");
        Self {
            tx,
            embedder,
            _thread: Arc::new(thread),
        }
    }

    /// Embed `texts` on the worker thread; waits (backpressure) while the queue is full.
    pub async fn embed(&self, texts: Vec<String>) -> Reply {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Job { texts, reply })
            .await
            .map_err(|_| EmbedError::WorkerGone)?;
        rx.await.map_err(|_| EmbedError::WorkerGone)?
    }

    /// The embedder behind the worker (dimension, model id, chunking).
    pub fn embedder(&self) -> &Arc<dyn Embedder> {
        &self.embedder
    }
}
