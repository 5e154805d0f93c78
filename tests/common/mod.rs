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
use mongo2qdrant::pipeline::SyncOptions;
use mongodb::bson::{Bson, Document};

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
    let mut c = EmbedConfig::with_defaults(model, lib);
    if let Some(ov) = std::env::var_os("M2Q_OPENVINO_LIB") {
        c.openvino_library = PathBuf::from(ov);
    }
    c
}

/// The default model at an explicit `precision` (not cached: each call loads).
pub fn embedder_at(precision: mongo2qdrant::embed::Precision) -> OnnxEmbedder {
    let mut c = embed_config();
    c.precision = precision;
    OnnxEmbedder::load(&c).expect("run `bash models/fetch.sh` (it fetches OpenVINO too)")
}

/// Whether this machine's CPU computes bf16 (its own flags, not `M2Q_CPU_FLAGS`): what the
/// tests of `--precision bf16` expect follows it, so the suite holds on every CPU kind.
pub fn cpu_computes_bf16() -> bool {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let flags = info.lines().find(|l| l.starts_with("flags")).unwrap_or("");
    mongo2qdrant::embed::precision::CpuFeatures::from_flags(flags).computes_bf16()
}

/// The first `n` test movies rendered as `{title}\n{extract}`.
pub fn movie_texts(n: usize) -> Vec<String> {
    movies(n)
        .iter()
        .map(|d| {
            format!(
                "{}\n{}",
                d.get_str("title").unwrap_or(""),
                d.get_str("extract").unwrap_or("")
            )
        })
        .collect()
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
        c.precision = mongo2qdrant::embed::Precision::Fp32;
        Arc::new(OnnxEmbedder::load(&c).expect("run `bash models/fetch.sh`"))
    })
    .clone()
}

pub fn worker() -> EmbedWorker {
    let e: Arc<dyn Embedder> = embedder();
    EmbedWorker::spawn(e, 2)
}

/// A free TCP port on loopback, never the same twice in one test process: a server that takes
/// a few seconds to bind (SecantusDB) would otherwise find its port given to a second test
/// meanwhile, and that test would talk to the first test's server (and lose it when that test
/// ends).
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut given = GIVEN.lock().unwrap();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// The SecantusDB server command: `M2Q_SECANTUSD`, else the venv the test script made.
pub fn secantusd() -> PathBuf {
    std::env::var_os("M2Q_SECANTUSD")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".venv/bin/secantusd-py"))
}

/// A MongoDB-protocol server on loopback for one test; killed on drop.
pub struct Mongo {
    /// Behind a lock so that a test can restart the server while a run uses it.
    child: std::sync::Mutex<Option<Child>>,
    pub port: u16,
    pub dir: tempfile::TempDir,
    args: Vec<String>,
}

impl Mongo {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// A server started with extra flags (e.g. `--enable-test-commands` for fail points).
    pub fn start_with(args: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let m = Mongo {
            child: std::sync::Mutex::new(None),
            port,
            dir,
            args: args.iter().map(|a| a.to_string()).collect(),
        };
        m.spawn();
        m
    }

    fn spawn(&self) {
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
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting secantusd-py");
        *self.child.lock().unwrap() = Some(child);
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
    pub fn kill(&self) {
        if let Some(mut c) = self.child.lock().unwrap().take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start it again on the same port and data.
    pub fn restart(&self) {
        self.kill();
        self.spawn();
    }

    pub async fn client(&self) -> mongodb::Client {
        mongodb::Client::with_uri_str(self.uri()).await.unwrap()
    }

    /// Arm MongoDB's `failCommand` fail point to fire once, after `skip` matching commands
    /// (the server needs `--enable-test-commands`).
    pub async fn fail_once(&self, skip: i32, data: Document) {
        let mode = mongodb::bson::doc! {"skip": skip, "times": 1};
        self.fail_point(Bson::Document(mode), data).await;
    }

    /// Arm MongoDB's `failCommand` fail point to fire on the next `times` matching commands.
    pub async fn fail_times(&self, times: i32, data: Document) {
        let mode = mongodb::bson::doc! {"times": times};
        self.fail_point(Bson::Document(mode), data).await;
    }

    /// Disarm the `failCommand` fail point (mode `"off"`).
    pub async fn fail_point_off(&self) {
        self.fail_point(Bson::String("off".into()), Document::new())
            .await;
    }

    async fn fail_point(&self, mode: Bson, data: Document) {
        let cmd =
            mongodb::bson::doc! {"configureFailPoint": "failCommand", "mode": mode, "data": data};
        self.client()
            .await
            .database("admin")
            .run_command(cmd)
            .await
            .unwrap();
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

/// The movie extracts the suites use: a subset kept in the repository, so that a clone alone
/// passes its tests (`tests/data/movies/`, MIT, with its license).
pub const MOVIES: &str = "tests/data/movies/movies-2020s-first300.json";

/// The first `n` movie documents (title, year, extract...), without `_id`; at most 300.
pub fn movies(n: usize) -> Vec<Document> {
    static ALL: OnceLock<Vec<Document>> = OnceLock::new();
    let all = ALL.get_or_init(|| {
        let v: Vec<serde_json::Value> =
            serde_json::from_slice(&std::fs::read(repo().join(MOVIES)).unwrap()).unwrap();
        v.into_iter()
            .map(|m| match mongodb::bson::Bson::try_from(m) {
                Ok(mongodb::bson::Bson::Document(d)) => d,
                other => panic!("{MOVIES}: not a document: {other:?}"),
            })
            .collect()
    });
    assert!(
        n <= all.len(),
        "{MOVIES} holds {} movies, {n} asked",
        all.len()
    );
    all[..n].to_vec()
}

pub fn path_str(p: &Path) -> String {
    p.display().to_string()
}

/// `pipeline::sync` of `jobs` into `sink` with the shared model and fresh counters.
pub async fn sync_jobs<S: mongo2qdrant::sink::Sink>(
    sink: &Arc<S>,
    jobs: Vec<mongo2qdrant::pipeline::Job>,
    opts: SyncOptions,
) -> Result<mongo2qdrant::report::RunReport, mongo2qdrant::pipeline::PipelineError> {
    let stats = Arc::new(mongo2qdrant::report::Stats::default());
    mongo2qdrant::pipeline::sync(sink.clone(), worker(), jobs, opts, stats).await
}

/// A sync of collections of one database into a target, built up step by step: the one way
/// the suites describe a run (`sync_of(&m, "db", &["films"]).template(T).run(&sink)`).
pub struct SyncOf<'a> {
    m: &'a Mongo,
    db: String,
    colls: Vec<String>,
    cursor_batch: u32,
    filter: Option<String>,
    projection: Option<String>,
    target: Option<String>,
    template: String,
    payload: Vec<String>,
    vector: Option<String>,
    opts: SyncOptions,
}

/// A sync of `colls` of `db` on `m`: template `{text}`, no payload, [`options`].
pub fn sync_of<'a>(m: &'a Mongo, db: &str, colls: &[&str]) -> SyncOf<'a> {
    SyncOf {
        m,
        db: db.to_owned(),
        colls: colls.iter().map(|c| c.to_string()).collect(),
        cursor_batch: 100,
        filter: None,
        projection: None,
        target: None,
        template: "{text}".into(),
        payload: Vec::new(),
        vector: None,
        opts: options(),
    }
}

impl SyncOf<'_> {
    pub fn template(mut self, t: &str) -> Self {
        self.template = t.to_owned();
        self
    }
    pub fn payload(mut self, fields: &[&str]) -> Self {
        self.payload = fields.iter().map(|f| f.to_string()).collect();
        self
    }
    /// Target collection (default: the source collection's name).
    pub fn target(mut self, t: Option<&str>) -> Self {
        self.target = t.map(str::to_owned);
        self
    }
    /// The named vector written (`None`: the unnamed one).
    pub fn vector(mut self, v: Option<&str>) -> Self {
        self.vector = v.map(str::to_owned);
        self
    }
    pub fn opts(mut self, o: SyncOptions) -> Self {
        self.opts = o;
        self
    }
    /// Only documents matching this filter (Extended JSON).
    pub fn filter(mut self, f: &str) -> Self {
        self.filter = Some(f.to_owned());
        self
    }
    /// The fields read (Extended JSON), instead of those the template and payload need.
    pub fn projection(mut self, p: &str) -> Self {
        self.projection = Some(p.to_owned());
        self
    }
    /// Documents per MongoDB cursor batch (each further batch is a `getMore`).
    pub fn cursor_batch(mut self, n: u32) -> Self {
        self.cursor_batch = n;
        self
    }
    /// The jobs this sync runs.
    pub async fn jobs(&self) -> Vec<mongo2qdrant::pipeline::Job> {
        let colls: Vec<&str> = self.colls.iter().map(String::as_str).collect();
        let mut source = source_args(self.m, &self.db, &colls);
        source.cursor_batch = self.cursor_batch;
        source.filter = self.filter.clone();
        source.projection = self.projection.clone();
        let mut jobs = mongo2qdrant::config::jobs(
            &source,
            self.target.as_deref(),
            &self.template,
            &self.payload,
        )
        .await
        .unwrap();
        for j in &mut jobs {
            j.vector_name = self.vector.clone();
        }
        jobs
    }
    /// Run it into `sink`.
    pub async fn run<S: mongo2qdrant::sink::Sink>(
        &self,
        sink: &Arc<S>,
    ) -> Result<mongo2qdrant::report::RunReport, mongo2qdrant::pipeline::PipelineError> {
        sync_jobs(sink, self.jobs().await, self.opts.clone()).await
    }
}

/// Assert that `verify` finds the target in step with the source for `jobs`.
pub async fn verify<S: mongo2qdrant::sink::Sink>(
    sink: &Arc<S>,
    jobs: Vec<mongo2qdrant::pipeline::Job>,
) {
    let report = mongo2qdrant::verify::verify(sink.clone(), embedder(), jobs, &options())
        .await
        .unwrap();
    assert!(report.in_sync, "{report:#?}");
}

/// Sync options for tests: small units, no stop requested.
pub fn options() -> SyncOptions {
    let (tx, stop) = tokio::sync::watch::channel(false);
    // keep the sender alive: a dropped sender is not a stop, but a live one is clearer
    std::mem::forget(tx);
    let mut o = SyncOptions::new(stop);
    o.batch_docs = 32;
    o
}

/// The JSON document in the file at `path` (a `--report-json` or `--json` output).
pub fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Assert that a finished command succeeded; otherwise show what it printed.
pub fn assert_ok(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "{} ({})\n{}\n{}",
        out.status,
        std::os::unix::process::ExitStatusExt::signal(&out.status)
            .map_or_else(|| "no signal".to_owned(), |s| format!("signal {s}")),
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
}

/// A unique name so that runs against a shared Qdrant server never collide.
pub fn unique(name: &str) -> String {
    format!("{name}_{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
}

/// Every document of `coll`, as MongoDB returns them.
pub async fn all_docs(coll: &mongodb::Collection<Document>) -> Vec<Document> {
    use futures_util::TryStreamExt;
    coll.find(mongodb::bson::doc! {})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap()
}

/// `n` movie documents with `_id`s from `id`.
pub fn movie_docs(n: usize, id: impl Fn(usize) -> Bson) -> Vec<Document> {
    movies(n)
        .into_iter()
        .enumerate()
        .map(|(i, mut d)| {
            d.insert("_id", id(i));
            d
        })
        .collect()
}

/// The embedded target in a temporary directory.
pub fn edge_sink() -> (tempfile::TempDir, Arc<mongo2qdrant::sink::EdgeSink>) {
    let dir = tempfile::tempdir().unwrap();
    let sink = Arc::new(mongo2qdrant::sink::EdgeSink::open(dir.path()).unwrap());
    (dir, sink)
}

/// Every point of `collection` with its payload and the names of its vectors, in id order.
pub async fn points_with_vectors<S: mongo2qdrant::sink::Sink>(
    sink: &S,
    collection: &str,
) -> Vec<mongo2qdrant::sink::StoredPoint> {
    let ids: Vec<uuid::Uuid> =
        mongo2qdrant::sink::scroll_all(sink, collection, None, mongo2qdrant::sink::Fields::All)
            .await
            .unwrap()
            .into_iter()
            .map(|p| p.id)
            .collect();
    let mut points = sink
        .retrieve(collection, &ids, mongo2qdrant::sink::Fields::All, true)
        .await
        .unwrap();
    points.sort_by_key(|p| p.id);
    points
}

/// The reason every test that needs a Qdrant server gives for being ignored without one.
/// (`#[ignore]` takes a literal, so the tests spell it out; this is what they say.)
pub const NEEDS_SERVER: &str = "needs a Qdrant server: tests/run.sh starts one and runs these; or set QDRANT_URL and pass --include-ignored";

/// The Qdrant server's gRPC URL. Only tests ignored without a server call it, so a missing
/// `QDRANT_URL` here means they were asked for by hand: fail, never pass without running.
pub fn server_url() -> String {
    match std::env::var("QDRANT_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => panic!("{NEEDS_SERVER} (QDRANT_URL is not set)"),
    }
}

/// The gRPC target: the Qdrant server at `QDRANT_URL` (see [`server_url`]).
pub fn grpc_sink() -> Arc<mongo2qdrant::sink::GrpcSink> {
    Arc::new(
        mongo2qdrant::sink::GrpcSink::connect(&server_url(), std::env::var("QDRANT_API_KEY").ok())
            .unwrap(),
    )
}

/// Run the generic suite function `$name(sink)` against both targets: `$name::edge` always,
/// `$name::grpc` against a Qdrant server (ignored without one, so the summary counts it).
#[macro_export]
macro_rules! both_targets {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn edge() {
                let (_dir, sink) = $crate::common::edge_sink();
                super::$name(sink).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[ignore = "needs a Qdrant server: tests/run.sh starts one and runs these; or set QDRANT_URL and pass --include-ignored"]
            async fn grpc() {
                super::$name($crate::common::grpc_sink()).await;
            }
        }
    )*};
}

/// The binary with the test model; stdout/stderr piped.
pub fn bin() -> Command {
    let cfg = embed_config();
    let mut c = Command::new(env!("CARGO_BIN_EXE_mongo2qdrant"));
    c.env("M2Q_MODEL", &cfg.model_dir)
        .env("ORT_DYLIB_PATH", &cfg.ort_library)
        .env("M2Q_OPENVINO_LIB", &cfg.openvino_library)
        .env_remove("M2Q_PRECISION")
        .env_remove("M2Q_CPU_FLAGS")
        .env("NO_COLOR", "1")
        .env_remove("QDRANT_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

/// `sync` of `db.coll` on `m` into the embedded store at `store`.
pub fn sync_cmd(m: &Mongo, db: &str, coll: &str, store: &Path) -> Command {
    let mut c = bin();
    c.args(["sync", "--quiet", "--database", db, "--collection", coll])
        .args(["--mongo-uri", &m.uri()])
        .args(["--text", r"{title}\n{extract}", "--payload", "title"])
        .args(["--batch-size", "16"])
        .arg("--qdrant-path")
        .arg(store);
    c
}

/// Every point of `collection` in the embedded store at `store`: (id, content hash), sorted.
pub async fn edge_snapshot(store: &Path, collection: &str) -> Vec<(uuid::Uuid, String)> {
    let sink = mongo2qdrant::sink::EdgeSink::open(store).unwrap();
    hash_snapshot(&sink, collection).await
}

/// Every point of `collection`: (id, content hash), sorted.
pub async fn hash_snapshot<S: mongo2qdrant::sink::Sink>(
    sink: &S,
    collection: &str,
) -> Vec<(uuid::Uuid, String)> {
    let mut v: Vec<_> =
        mongo2qdrant::sink::scroll_all(sink, collection, None, mongo2qdrant::sink::Fields::All)
            .await
            .unwrap()
            .into_iter()
            .map(|p| {
                (
                    p.id,
                    p.payload[mongo2qdrant::point::keys::HASH]
                        .as_str()
                        .unwrap()
                        .to_owned(),
                )
            })
            .collect();
    v.sort();
    v
}

/// Insert `n` movies with integer `_id`s into `db.coll`.
pub async fn load_movies(m: &Mongo, db: &str, coll: &str, n: usize) {
    m.insert(db, coll, movie_docs(n, |i| Bson::Int32(i as i32)))
        .await;
}

/// Wait for `child` to exit, at most `secs` seconds.
pub fn wait_timeout(child: &mut Child, secs: u64) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Source flags for `collections` of `db` on `m`.
pub fn source_args(m: &Mongo, db: &str, collections: &[&str]) -> mongo2qdrant::cli::SourceArgs {
    mongo2qdrant::cli::SourceArgs {
        mongo_uri: Some(m.uri()),
        database: Some(db.into()),
        collections: collections.iter().map(|c| c.to_string()).collect(),
        files: vec![],
        namespace: None,
        filter: None,
        projection: None,
        cursor_batch: 100,
    }
}

/// A target write, as fault injection sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOp {
    Upsert,
    UpdateVectors,
    SetPayload,
    RemoveVector,
    Delete,
    /// A change of the collection's settings (HNSW `m`, a bulk load's switch).
    Config,
}

/// The real target with a hook before every write (unit-level fault injection around real
/// parts): the hook's error is what the write returns, and the write does not happen.
pub struct Faulty<S, F> {
    pub inner: Arc<S>,
    pub before_write: F,
    /// Upsert requests above this many bytes (the points' JSON) are refused as too large, as a
    /// proxy in front of a server would.
    pub request_limit: Option<usize>,
    /// How long an upsert that the hook fails takes to fail (others overtake it meanwhile).
    pub fail_delay: std::time::Duration,
}

impl<S, F> Faulty<S, F>
where
    F: Fn(WriteOp, &str) -> Result<(), mongo2qdrant::sink::SinkError>,
{
    pub fn new(inner: Arc<S>, before_write: F) -> Arc<Self> {
        Arc::new(Self {
            inner,
            before_write,
            request_limit: None,
            fail_delay: std::time::Duration::ZERO,
        })
    }
}

/// No fault before writes.
pub type NoFault = fn(WriteOp, &str) -> Result<(), mongo2qdrant::sink::SinkError>;

impl<S> Faulty<S, NoFault> {
    /// The real target behind a request size limit of `bytes`.
    pub fn limited(inner: Arc<S>, bytes: usize) -> Arc<Self> {
        Arc::new(Self {
            inner,
            before_write: |_, _| Ok(()),
            request_limit: Some(bytes),
            fail_delay: std::time::Duration::ZERO,
        })
    }
}

/// An injected failure of `collection`'s write (transient ones are retried by the pipeline).
pub fn injected(collection: &str, transient: bool) -> mongo2qdrant::sink::SinkError {
    mongo2qdrant::sink::SinkError::Request {
        op: "injected",
        collection: collection.to_owned(),
        reason: "injected failure".into(),
        transient,
    }
}

pub mod archive;
pub mod server;

mod faulty_sink {
    use mongo2qdrant::sink::{
        Hit, MatchFilter, Point, Shape, Sink, SinkError, StoredPoint, VectorSpec,
    };
    use serde_json::{Map, Value};
    use uuid::Uuid;

    use super::{Faulty, WriteOp};

    impl<S, F> Sink for Faulty<S, F>
    where
        S: Sink,
        F: Fn(WriteOp, &str) -> Result<(), SinkError> + Send + Sync + 'static,
    {
        fn describe(&self) -> String {
            self.inner.describe()
        }
        fn needs_lease(&self) -> bool {
            self.inner.needs_lease()
        }
        fn max_payload_depth(&self) -> Option<usize> {
            self.inner.max_payload_depth()
        }
        async fn shape(&self, c: &str) -> Result<Option<Shape>, SinkError> {
            self.inner.shape(c).await
        }
        async fn create_collection(
            &self,
            c: &str,
            v: &VectorSpec,
            s: &mongo2qdrant::sink::Settings,
        ) -> Result<(), SinkError> {
            self.inner.create_collection(c, v, s).await
        }
        fn support(
            &self,
            k: mongo2qdrant::sink::settings::Key,
        ) -> mongo2qdrant::sink::settings::Support {
            self.inner.support(k)
        }
        async fn settings(&self, c: &str) -> Result<mongo2qdrant::sink::Settings, SinkError> {
            self.inner.settings(c).await
        }
        async fn update_settings(
            &self,
            c: &str,
            s: &mongo2qdrant::sink::Settings,
            k: &[mongo2qdrant::sink::settings::Key],
        ) -> Result<(), SinkError> {
            (self.before_write)(WriteOp::Config, c)?;
            self.inner.update_settings(c, s, k).await
        }
        async fn add_vector(
            &self,
            c: &str,
            n: &str,
            d: usize,
            distance: mongo2qdrant::sink::Distance,
        ) -> Result<(), SinkError> {
            self.inner.add_vector(c, n, d, distance).await
        }
        async fn drop_collection(&self, c: &str) -> Result<(), SinkError> {
            self.inner.drop_collection(c).await
        }
        async fn payload_indexes(
            &self,
            c: &str,
        ) -> Result<std::collections::BTreeMap<String, mongo2qdrant::sink::StoredIndex>, SinkError>
        {
            self.inner.payload_indexes(c).await
        }
        async fn create_index(
            &self,
            c: &str,
            i: &mongo2qdrant::sink::IndexSpec,
        ) -> Result<(), SinkError> {
            (self.before_write)(WriteOp::Config, c)?;
            self.inner.create_index(c, i).await
        }
        async fn drop_index(&self, c: &str, f: &str) -> Result<(), SinkError> {
            (self.before_write)(WriteOp::Config, c)?;
            self.inner.drop_index(c, f).await
        }
        async fn sparse_vectors(
            &self,
            c: &str,
        ) -> Result<Option<std::collections::BTreeMap<String, bool>>, SinkError> {
            self.inner.sparse_vectors(c).await
        }
        async fn create_sparse_collection(
            &self,
            c: &str,
            n: &str,
            s: &mongo2qdrant::sink::Settings,
        ) -> Result<(), SinkError> {
            self.inner.create_sparse_collection(c, n, s).await
        }
        async fn add_sparse(&self, c: &str, n: &str) -> Result<(), SinkError> {
            (self.before_write)(WriteOp::Config, c)?;
            self.inner.add_sparse(c, n).await
        }
        async fn update_sparse(
            &self,
            c: &str,
            n: &str,
            v: Vec<(Uuid, mongo2qdrant::sink::SparseVector)>,
        ) -> Result<(), SinkError> {
            (self.before_write)(WriteOp::UpdateVectors, c)?;
            self.inner.update_sparse(c, n, v).await
        }
        async fn query(
            &self,
            c: &str,
            q: mongo2qdrant::sink::Query,
        ) -> Result<Vec<Hit>, SinkError> {
            self.inner.query(c, q).await
        }
        async fn exists(&self, c: &str) -> Result<bool, SinkError> {
            self.inner.exists(c).await
        }
        async fn upsert(&self, c: &str, n: Option<&str>, p: Vec<Point>) -> Result<(), SinkError> {
            if let Err(e) = (self.before_write)(WriteOp::Upsert, c) {
                tokio::time::sleep(self.fail_delay).await;
                return Err(e);
            }
            if let Some(limit) = self.request_limit {
                let bytes: usize = p
                    .iter()
                    .map(|p| {
                        4 * p.vector.len() + Value::Object(p.payload.clone()).to_string().len()
                    })
                    .sum();
                if bytes > limit {
                    return Err(SinkError::TooLarge {
                        op: "upsert",
                        collection: c.to_owned(),
                        reason: format!("{bytes} bytes, the limit is {limit}"),
                    });
                }
            }
            self.inner.upsert(c, n, p).await
        }
        async fn upsert_if(
            &self,
            c: &str,
            p: Point,
            cond: mongo2qdrant::sink::WriteIf<'_>,
        ) -> Result<(), SinkError> {
            (self.before_write)(WriteOp::Upsert, c)?;
            self.inner.upsert_if(c, p, cond).await
        }
        async fn retrieve(
            &self,
            c: &str,
            ids: &[Uuid],
            fields: mongo2qdrant::sink::Fields<'_>,
            v: bool,
        ) -> Result<Vec<StoredPoint>, SinkError> {
            self.inner.retrieve(c, ids, fields, v).await
        }
        async fn update_vectors(
            &self,
            c: &str,
            n: &str,
            v: Vec<(Uuid, Vec<f32>)>,
        ) -> Result<(), SinkError> {
            (self.before_write)(WriteOp::UpdateVectors, c)?;
            self.inner.update_vectors(c, n, v).await
        }
        async fn set_payload(
            &self,
            c: &str,
            ids: &[Uuid],
            p: Map<String, Value>,
            r: bool,
        ) -> Result<(), SinkError> {
            (self.before_write)(WriteOp::SetPayload, c)?;
            self.inner.set_payload(c, ids, p, r).await
        }
        async fn remove_vector(
            &self,
            c: &str,
            n: &str,
            ids: &[Uuid],
            k: &[String],
        ) -> Result<(), SinkError> {
            (self.before_write)(WriteOp::RemoveVector, c)?;
            self.inner.remove_vector(c, n, ids, k).await
        }
        async fn delete(&self, c: &str, ids: &[Uuid]) -> Result<(), SinkError> {
            (self.before_write)(WriteOp::Delete, c)?;
            self.inner.delete(c, ids).await
        }
        async fn scroll(
            &self,
            c: &str,
            f: Option<&MatchFilter>,
            fields: mongo2qdrant::sink::Fields<'_>,
            o: Option<mongo2qdrant::sink::PageOffset>,
            l: usize,
        ) -> Result<mongo2qdrant::sink::Page, SinkError> {
            self.inner.scroll(c, f, fields, o, l).await
        }
        async fn search(
            &self,
            c: &str,
            n: Option<&str>,
            v: Vec<f32>,
            l: usize,
        ) -> Result<Vec<Hit>, SinkError> {
            self.inner.search(c, n, v, l).await
        }
        async fn hnsw_m(&self, c: &str) -> Result<Option<u64>, SinkError> {
            self.inner.hnsw_m(c).await
        }
        async fn set_hnsw_m(&self, c: &str, m: u64) -> Result<(), SinkError> {
            (self.before_write)(WriteOp::Config, c)?;
            self.inner.set_hnsw_m(c, m).await
        }
        async fn index_state(
            &self,
            c: &str,
        ) -> Result<Option<mongo2qdrant::sink::IndexState>, SinkError> {
            self.inner.index_state(c).await
        }
        async fn count(&self, c: &str) -> Result<u64, SinkError> {
            self.inner.count(c).await
        }
        async fn flush(&self) -> Result<(), SinkError> {
            self.inner.flush().await
        }
    }
}

/// Write `holder`'s lease on `namespace` -> `target` into the records, as another run holding
/// (or, with an old `expires_at`, once holding) it would have written it.
pub async fn plant_lease<S: mongo2qdrant::sink::Sink + ?Sized>(
    store: &mongo2qdrant::state::StateStore<'_, S>,
    holder: &mongo2qdrant::state::Holder,
    target: &str,
    namespace: &str,
) {
    let mut record = serde_json::to_value(holder)
        .unwrap()
        .as_object()
        .unwrap()
        .clone();
    record.insert("kind".into(), "lease".into());
    record.insert("target".into(), target.into());
    record.insert("namespace".into(), namespace.into());
    store
        .put_raw(
            mongo2qdrant::state::lease::lease_id(target, namespace),
            record,
        )
        .await
        .unwrap();
}
