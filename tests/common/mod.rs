//! Test support: a real SecantusDB server (MongoDB wire protocol) per test, the real model, and
//! the embedded Qdrant engine in a temporary directory. Addresses come from env vars with
//! working local defaults.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use mongo2qdrant::embed::worker::EmbedWorker;
use mongo2qdrant::embed::{EmbedConfig, Embedder, OnnxEmbedder};
use mongodb::bson::Document;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Model settings: `M2Q_MODEL` / `ORT_DYLIB_PATH`, else what `models/fetch.sh` fetched.
pub fn embed_config() -> EmbedConfig {
    let model = std::env::var_os("M2Q_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("models/cache/all-MiniLM-L6-v2"));
    let lib = std::env::var_os("ORT_DYLIB_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("models/cache/onnxruntime/libonnxruntime.so"));
    EmbedConfig::with_defaults(model, lib)
}

/// One embedder per test binary (loading takes a moment).
pub fn embedder() -> Arc<OnnxEmbedder> {
    static E: OnceLock<Arc<OnnxEmbedder>> = OnceLock::new();
    E.get_or_init(|| {
        Arc::new(OnnxEmbedder::load(&embed_config()).expect(
            "model and ONNX Runtime missing: run `bash models/fetch.sh` (the README's test command does)",
        ))
    })
    .clone()
}

/// The fp32 twin of the model (`models/fetch.sh` builds it).
pub fn embedder_fp32() -> Arc<OnnxEmbedder> {
    static E: OnceLock<Arc<OnnxEmbedder>> = OnceLock::new();
    E.get_or_init(|| {
        let mut c = embed_config();
        c.model_dir = c.model_dir.with_file_name("all-MiniLM-L6-v2-fp32");
        Arc::new(OnnxEmbedder::load(&c).expect("run `bash models/fetch.sh`"))
    })
    .clone()
}

pub fn worker() -> EmbedWorker {
    let e: Arc<dyn Embedder> = embedder();
    EmbedWorker::spawn(e, 2)
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The SecantusDB server command: `M2Q_SECANTUSD`, else the venv the test script made.
pub fn secantusd() -> PathBuf {
    std::env::var_os("M2Q_SECANTUSD")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".venv/bin/secantusd-py"))
}

/// A MongoDB-protocol server on loopback for one test; killed on drop.
pub struct Mongo {
    child: Option<Child>,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

impl Mongo {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut m = Mongo {
            child: None,
            port,
            dir,
        };
        m.spawn();
        m
    }

    fn spawn(&mut self) {
        let exe = secantusd();
        assert!(
            exe.exists(),
            "{} missing: run the README's test command (it installs SecantusDB into .venv)",
            exe.display()
        );
        let log = std::fs::File::create(self.dir.path().join("server.log")).unwrap();
        let child = Command::new(&exe)
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .arg("--storage-path")
            .arg(self.dir.path().join("data"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting secantusd-py");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "SecantusDB did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn uri(&self) -> String {
        format!("mongodb://127.0.0.1:{}/?directConnection=true", self.port)
    }

    /// Kill the server (data stays on disk).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start it again on the same port and data.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    pub async fn client(&self) -> mongodb::Client {
        mongodb::Client::with_uri_str(self.uri()).await.unwrap()
    }

    pub async fn insert(&self, db: &str, coll: &str, docs: Vec<Document>) {
        let c = self.client().await;
        c.database(db)
            .collection::<Document>(coll)
            .insert_many(docs)
            .await
            .unwrap();
    }
}

impl Drop for Mongo {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The shared movie data set (`../shared/data/movies`), or `None` when it is not there.
pub fn movies_dir() -> Option<PathBuf> {
    let d = std::env::var_os("M2Q_MOVIES")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("../shared/data/movies"));
    d.join("movies-2020s.json").exists().then_some(d)
}

/// `n` movie documents (title, year, extract...) from the shared data, without `_id`.
pub fn movies(n: usize) -> Vec<Document> {
    let dir = movies_dir().expect("../shared/data/movies is missing");
    let mut out = Vec::new();
    for f in [
        "movies-2020s.json",
        "movies-2010s.json",
        "movies-2000s.json",
        "movies-1990s.json",
    ] {
        let v: Vec<serde_json::Value> =
            serde_json::from_slice(&std::fs::read(dir.join(f)).unwrap()).unwrap();
        for m in v {
            if out.len() == n {
                return out;
            }
            if let Ok(mongodb::bson::Bson::Document(d)) = mongodb::bson::Bson::try_from(m) {
                out.push(d);
            }
        }
    }
    out
}

pub fn path_str(p: &Path) -> String {
    p.display().to_string()
}
