//! The faults and mutations of a round: failing target writes, the source's documents changed
//! between and during runs (also retyped numeric `_id`s and payloads too deep to store), the
//! Qdrant server restarted.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mongo2qdrant::sink::SinkError;
use mongodb::bson::{Bson, Document, doc};

use super::{Rng, Tally, WORDS, new_doc, text};
use crate::common::{self, server::Server};

/// Which target writes fail (counting every write: upsert, update-vectors, set-payload,
/// remove-vector, delete, of the data and of the records).
#[derive(Clone, Copy, Debug)]
pub enum Fault {
    /// The n-th write fails once, as a timeout would (the retry policy tries again).
    Transient(u64),
    /// From the n-th write on, every write fails: the process is gone (a kill -9 at that
    /// point, as the target sees it).
    Crash(u64),
}

/// The fault of a round, checked before every write (`writes` counts them).
#[derive(Default)]
pub struct Injector {
    pub writes: AtomicU64,
    pub fault: Mutex<Option<Fault>>,
}

impl Injector {
    pub fn trip(&self, collection: &str) -> Result<(), SinkError> {
        let n = self.writes.fetch_add(1, Ordering::SeqCst);
        let mut f = self.fault.lock().unwrap();
        let transient = match *f {
            Some(Fault::Transient(k)) if k == n => {
                *f = None;
                true
            }
            Some(Fault::Crash(k)) if n >= k => false,
            _ => return Ok(()),
        };
        Err(common::injected(collection, transient))
    }

    /// A new round: `fault`, and the writes counted from zero.
    pub fn arm(&self, fault: Option<Fault>) {
        *self.fault.lock().unwrap() = fault;
        self.writes.store(0, Ordering::SeqCst);
    }
}

/// A value nested `depth` levels deep.
fn nested(depth: usize) -> Bson {
    (0..depth).fold(Bson::from("deep"), |v, _| Bson::Document(doc! {"n": v}))
}

/// The mutations between runs: a few of each kind over every document, any `_id` (also below
/// the checkpoint). `too_deep`: a payload nesting the target cannot store, when it has one.
pub async fn mutate_all(
    coll: &mongodb::Collection<Document>,
    rng: &mut Rng,
    tally: &mut Tally,
    too_deep: Option<usize>,
) {
    for d in &common::all_docs(coll).await {
        let id = d.get("_id").unwrap().clone();
        let set = |v: Document| doc! {"$set": v};
        let change = match rng.below(100) {
            0..=5 => {
                coll.delete_one(doc! {"_id": id}).await.unwrap();
                continue;
            }
            6..=14 => set(doc! {"text": text(rng)}),
            15..=20 => set(doc! {"tag": *rng.pick(WORDS)}),
            21..=22 => doc! {"$unset": {"tag": ""}},
            23 => doc! {"$unset": {"text": ""}},
            24..=25 if matches!(id, Bson::Int32(_)) => {
                retype(coll, rng, tally, d).await;
                continue;
            }
            26 if too_deep.is_some() => {
                // Fails under watch and sync alike: the old point stays and the document is
                // owed; the harness puts a plain tag back before its clean run.
                tally.add("mutation: a payload too deep for the target (a failing document)");
                set(doc! {"tag": nested(too_deep.unwrap_or(0) + 2)})
            }
            _ => continue,
        };
        coll.update_one(doc! {"_id": id}, change).await.unwrap();
    }
}

/// The same number under another type, in one transaction (one micro-batch for a watch):
/// MongoDB holds another key, the point id stays the same.
async fn retype(
    coll: &mongodb::Collection<Document>,
    rng: &mut Rng,
    tally: &mut Tally,
    d: &Document,
) {
    tally.add("mutation: a numeric _id retyped in one transaction");
    let Some(Bson::Int32(k)) = d.get("_id").cloned() else {
        return;
    };
    let mut moved = d.clone();
    moved.insert(
        "_id",
        if rng.chance(50) {
            Bson::Int64(i64::from(k))
        } else {
            Bson::Double(f64::from(k))
        },
    );
    let mut session = coll.client().start_session().await.unwrap();
    session.start_transaction().await.unwrap();
    coll.delete_one(doc! {"_id": k})
        .session(&mut session)
        .await
        .unwrap();
    coll.insert_one(moved).session(&mut session).await.unwrap();
    session.commit_transaction().await.unwrap();
}

/// Put a plain tag back where a mutation made one too deep (before the clean run).
pub async fn fix_deep_tags(coll: &mongodb::Collection<Document>) {
    coll.update_many(
        doc! {"tag": {"$type": "object"}},
        doc! {"$set": {"tag": "fixed"}},
    )
    .await
    .unwrap();
}

/// One random mutation of `coll` among the `ids` it had (or an insert with key `key`); a
/// failure (the server restarting under it) is ignored: the oracle reads what is there.
pub async fn mutate(coll: &mongodb::Collection<Document>, rng: &mut Rng, ids: &[Bson], key: u64) {
    let Some(id) = (!ids.is_empty()).then(|| rng.pick(ids).clone()) else {
        return;
    };
    let change = match rng.below(5) {
        0 => {
            let _ = coll.insert_one(new_doc(rng, key)).await;
            return;
        }
        1 => {
            let _ = coll.delete_one(doc! {"_id": id}).await;
            return;
        }
        2 => doc! {"$set": {"text": text(rng)}},
        3 => doc! {"$set": {"tag": *rng.pick(WORDS)}},
        _ => doc! {"$unset": {"text": ""}},
    };
    let _ = coll.update_one(doc! {"_id": id}, change).await;
}

/// Mutations while the run goes, from their own seed, keys from `key` on.
pub fn concurrently(
    coll: &mongodb::Collection<Document>,
    seed: u64,
    key: u64,
) -> tokio::task::JoinHandle<()> {
    let coll = coll.clone();
    tokio::spawn(async move {
        use futures_util::TryStreamExt;
        let mut r = Rng::new(seed);
        let Ok(found) = coll.find(doc! {}).await else {
            return;
        };
        let ids: Vec<Bson> = found
            .try_collect::<Vec<Document>>()
            .await
            .unwrap_or_default()
            .into_iter()
            .filter_map(|d| d.get("_id").cloned())
            .collect();
        for k in 0..(1 + r.below(6)) {
            tokio::time::sleep(Duration::from_millis(r.below(120))).await;
            mutate(&coll, &mut r, &ids, key + k).await;
        }
    })
}

/// The Qdrant server killed (-9) after `delay` and started again `down` later, at the same
/// address with the same storage.
pub fn restart_qdrant(
    server: &Arc<Mutex<Server>>,
    delay: Duration,
    down: Duration,
) -> std::thread::JoinHandle<()> {
    let server = server.clone();
    std::thread::spawn(move || {
        std::thread::sleep(delay);
        let mut s = server.lock().unwrap();
        s.kill();
        std::thread::sleep(down);
        s.up();
    })
}
