//! A randomized, seeded, model-based fault harness (in the spirit of FoundationDB's simulation
//! and Jepsen's checked histories). Each iteration builds a random collection (every kind of
//! `_id`, texts long enough to chunk, a copied field, the unnamed or a named vector), read
//! from MongoDB (by `sync` or `watch`) or from a dump of it under the collection's namespace
//! (mongoexport JSONL or a mongodump archive, in random order, sometimes with stale duplicate
//! copies of documents or cut short), then runs rounds of random mutations (inserts, updates of
//! text and payload, lost texts, deletes, also below the checkpoint and while a run goes,
//! numeric `_id`s retyped in one transaction, payloads too deep for the target) and runs under
//! random faults: MongoDB fail points (dropped connections, also many in one pass, lost cursors,
//! failing commands), MongoDB restarted mid-run, failing target writes (transient and
//! permanent), a stop request, a crash (every write from a random one on fails), the target
//! dropped (and maybe created again) between runs, and on a Qdrant server (one the harness owns):
//! the server killed and started again mid-run, a kill -9 of the real binary at a random moment
//! (also during a bulk load), foreign points with numeric ids planted in the target; a watch
//! also restarted with another `--text`, `--filter`, `--projection` or `--fresh`.
//!
//! After each round no point of a live document may be gone (nothing is deleted that a user did
//! not ask to delete). A last clean run with prune (or a clean `watch`) must leave the target
//! equal to an oracle computed from the source alone: the same point ids, hashes and copied
//! values, this job's vector on every point, no orphan, the planted points untouched, graph
//! building on, nothing owed, and `verify` in sync.
//!
//! Every iteration prints its seed; `M2Q_HARNESS_SEED=S M2Q_HARNESS_ITERATIONS=1` replays one
//! (the same source, mutations and faults; what a concurrent mutation or a kill meets depends
//! on timing). CI runs a few iterations per target; set `M2Q_HARNESS_ITERATIONS` for more.

mod faults;
mod oracle;
mod round;
mod source;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::common::server::Server;
use crate::common::{self, Mongo};
use mongo2qdrant::sink::Sink;
use mongodb::bson::oid::ObjectId;
use mongodb::bson::{Bson, DateTime, Document, doc};
use round::Target;

/// xorshift64*: small, seeded, the same on every machine.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len() as u64) as usize]
    }
}

const WORDS: &[&str] = &[
    "river", "mountain", "harbour", "engine", "violin", "garden", "comet", "ledger", "falcon",
    "lantern", "orchard", "glacier", "market", "thunder", "canyon", "meadow",
];

fn text(rng: &mut Rng) -> String {
    let n = if rng.chance(25) {
        60 + rng.below(80)
    } else {
        3 + rng.below(12)
    };
    (0..n)
        .map(|_| *rng.pick(WORDS))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A random `_id` of a random BSON type; `k` keeps them distinct.
fn id(rng: &mut Rng, k: u64) -> Bson {
    match rng.below(7) {
        0 => Bson::Int32(k as i32),
        1 => Bson::Int64(1_000_000 + k as i64),
        2 => Bson::Double(k as f64 + 0.25),
        3 => Bson::String(format!("s{k:05}")),
        4 => Bson::Document(doc! {"z": k as i64, "a": "x"}),
        5 => Bson::ObjectId(ObjectId::from_bytes({
            let mut b = [7u8; 12];
            b[4..12].copy_from_slice(&k.to_be_bytes());
            b
        })),
        _ => Bson::DateTime(DateTime::from_millis(1_600_000_000_000 + k as i64)),
    }
}

fn new_doc(rng: &mut Rng, k: u64) -> Document {
    let mut d = doc! {"_id": id(rng, k), "text": text(rng)};
    if rng.chance(70) {
        d.insert("tag", *rng.pick(WORDS));
    }
    d
}

/// Faults injected, by kind, over all iterations.
#[derive(Default, Debug)]
struct Tally(BTreeMap<&'static str, u64>);

impl Tally {
    /// Counts `kind` and prints it, so a failing seed's output says what it met.
    fn add(&mut self, kind: &'static str) {
        eprintln!("harness:   {kind}");
        *self.0.entry(kind).or_default() += 1;
    }
}

async fn harness<S: Sink>(target: Target<S>) {
    let iterations: u64 = std::env::var("M2Q_HARNESS_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let base: u64 = std::env::var("M2Q_HARNESS_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs()
        });
    // --sync-on-commit: what a change stream shows survives a kill -9, as on mongod (whose
    // streams show only majority-committed, on one node journaled, writes). Without it
    // SecantusDB shows writes before they are durable and loses them on kill -9, with the
    // events a watch has already applied.
    let m = Arc::new(Mongo::start_with(&[
        "--enable-test-commands",
        "--sync-on-commit",
    ]));
    // `M2Q_LOG=mongo2qdrant=info` shows what the runs (and the killed binary) log.
    if let Ok(filter) = std::env::var("M2Q_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::stderr)
            .try_init();
    }
    let mut tally = Tally::default();
    let started = std::time::Instant::now();
    for i in 0..iterations {
        let seed = base + i;
        eprintln!(
            "harness: iteration {i}, seed {seed} (replay: M2Q_HARNESS_SEED={seed} M2Q_HARNESS_ITERATIONS=1)"
        );
        round::iteration(&target, &m, seed, &mut tally).await;
    }
    eprintln!(
        "harness: {iterations} iterations in {:.0?}, zero divergence; faults by kind: {:?}",
        started.elapsed(),
        tally.0
    );
}

/// `harness::harness::{edge,grpc}`: the names every other suite's targets have.
#[allow(clippy::module_inception)]
mod harness {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn edge() {
        let (_dir, sink) = common::edge_sink();
        let (server, url) = (None, None);
        super::harness(Target { sink, server, url }).await;
    }

    /// A Qdrant server of its own, so that a round can kill it and start it again; without a
    /// start script (a clone alone), the server at `QDRANT_URL`, and no restarts.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs a Qdrant server: tests/run.sh starts one and runs these; or set QDRANT_URL and pass --include-ignored"]
    async fn grpc() {
        let server = Server::script().is_file().then(Server::start);
        let url = server.as_ref().map_or_else(common::server_url, Server::url);
        let sink = Arc::new(mongo2qdrant::sink::GrpcSink::connect(&url, None).unwrap());
        let server = server.map(|s| Arc::new(Mutex::new(s)));
        let url = Some(url);
        super::harness(Target { sink, server, url }).await;
    }
}
