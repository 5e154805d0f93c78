//! Shards: a deterministic partition of every namespace by a hash of the canonical `_id`, so
//! that N processes (a Kubernetes Indexed Job) each read, write, checkpoint, lease and prune
//! one part, and together produce exactly the points of one unsharded run. The one function is
//! [`shard_of`]; sync, verify and prune all ask it.
//!
//! A stored point is placed by its document's `_id` as stored in its payload, read back and
//! accepted only when it gives the point's own id again ([`Shard::owns_point`]): a point whose
//! `_id` does not read back exactly (a compound `_id` whose field order a server did not keep)
//! belongs to no shard, and no shard deletes it.

use mongodb::bson::Bson;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::ids::{Namespace, canonical_id_bytes, keys, point_id};

/// Part `index` of `count` (0-based, as Kubernetes numbers an Indexed Job's pods).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

/// A `--shard` / `--shards` setting that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ShardError {
    #[error(
        "--shard {0}: write it as INDEX/COUNT with 0 <= INDEX < COUNT, for example --shard 2/8 (the third of eight)"
    )]
    Syntax(String),
    #[error(
        "--shards {count} needs this process's index: give --shard I/{count}, or run it as a pod of a Kubernetes Indexed Job (which sets JOB_COMPLETION_INDEX)"
    )]
    NoIndex { count: u32 },
    #[error(
        "JOB_COMPLETION_INDEX={index} is not an index below --shards {count}: set `completions: {count}` in the Indexed Job, or --shards to its completions"
    )]
    BadIndex { index: String, count: u32 },
    #[error(
        "--shards 0: give the number of shards, at least 1 (for example --shards 4 in a Kubernetes Indexed Job with `completions: 4`)"
    )]
    NoShards,
    #[error("--shard {shard} and --shards {count} disagree: give one of them")]
    Conflict { shard: String, count: u32 },
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl std::str::FromStr for Shard {
    type Err = ShardError;

    fn from_str(text: &str) -> Result<Self, ShardError> {
        let bad = || ShardError::Syntax(text.to_owned());
        let (i, n) = text.trim().split_once('/').ok_or_else(bad)?;
        let index: u32 = i.trim().parse().map_err(|_| bad())?;
        let count: u32 = n.trim().parse().map_err(|_| bad())?;
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

/// The shard of this process from `--shard`, `--shards` and the Indexed Job's
/// `JOB_COMPLETION_INDEX` (`job_index`); `None` when unsharded (no flag, or one shard).
pub fn resolve(
    shard: Option<&str>,
    shards: Option<u32>,
    job_index: Option<&str>,
) -> Result<Option<Shard>, ShardError> {
    let s = match (shard, shards) {
        (None, None) => return Ok(None),
        (Some(text), count) => {
            let s: Shard = text.parse()?;
            if let Some(count) = count.filter(|c| *c != s.count) {
                return Err(ShardError::Conflict {
                    shard: text.to_owned(),
                    count,
                });
            }
            s
        }
        (None, Some(0)) => return Err(ShardError::NoShards),
        (None, Some(count)) => {
            let text = job_index.ok_or(ShardError::NoIndex { count })?;
            let bad = || ShardError::BadIndex {
                index: text.to_owned(),
                count,
            };
            let index: u32 = text.trim().parse().map_err(|_| bad())?;
            if count == 0 || index >= count {
                return Err(bad());
            }
            Shard { index, count }
        }
    };
    Ok((s.count > 1).then_some(s))
}

/// The shard (of `count`) of the document `id`: blake3 over its canonical bytes, the same on
/// every machine, for every source kind (numbers MongoDB treats as equal `_id`s share one).
pub fn shard_of(id: &Bson, count: u32) -> u32 {
    let mut h = blake3::Hasher::new_derive_key("mongo2qdrant shard v1");
    h.update(&canonical_id_bytes(id));
    let digest = h.finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&digest.as_bytes()[..8]);
    (u64::from_le_bytes(b) % u64::from(count)) as u32
}

impl Shard {
    /// Whether document `id` is this shard's.
    pub fn owns(&self, id: &Bson) -> bool {
        shard_of(id, self.count) == self.index
    }

    /// Whether the stored point `id` of `namespace`, with its `payload`, is this shard's:
    /// `None` when its document's `_id` cannot be told exactly (see the module's contract).
    pub fn owns_point(
        &self,
        namespace: &Namespace,
        id: Uuid,
        payload: &Map<String, Value>,
    ) -> Option<bool> {
        let doc_id = stored_id(namespace, id, payload)?;
        Some(self.owns(&doc_id))
    }
}

/// The `_id` of the document a stored point belongs to, when its payload gives it back exactly
/// (the point id computed from it is the point's own).
pub fn stored_id(namespace: &Namespace, id: Uuid, payload: &Map<String, Value>) -> Option<Bson> {
    let doc_id = Bson::try_from(payload.get(keys::ID)?.clone()).ok()?;
    let chunk = u32::try_from(
        payload
            .get(keys::CHUNK)
            .and_then(Value::as_u64)
            .unwrap_or(0),
    )
    .ok()?;
    if crate::ids::check_id(&doc_id).is_err() {
        return None;
    }
    let again = point_id(&namespace.database, &namespace.collection, &doc_id, chunk);
    (again == id).then_some(doc_id)
}

#[cfg(test)]
mod tests {
    use mongodb::bson::oid::ObjectId;
    use mongodb::bson::{Document, doc};

    use super::*;

    #[test]
    fn parses_and_resolves() {
        assert_eq!("2/8".parse(), Ok(Shard { index: 2, count: 8 }));
        assert!("8/8".parse::<Shard>().is_err());
        assert!("1/0".parse::<Shard>().is_err());
        assert!("x".parse::<Shard>().is_err());
        assert_eq!(resolve(None, None, Some("3")), Ok(None));
        assert_eq!(
            resolve(None, Some(4), Some("3")),
            Ok(Some(Shard { index: 3, count: 4 }))
        );
        assert_eq!(
            resolve(None, Some(4), None),
            Err(ShardError::NoIndex { count: 4 })
        );
        assert!(matches!(
            resolve(None, Some(4), Some("4")),
            Err(ShardError::BadIndex { .. })
        ));
        assert!(matches!(
            resolve(Some("1/2"), Some(4), None),
            Err(ShardError::Conflict { .. })
        ));
        // One shard is the whole namespace: the unsharded checkpoints and leases.
        assert_eq!(resolve(Some("0/1"), None, None), Ok(None));
        assert_eq!(resolve(None, Some(1), Some("0")), Ok(None));
    }

    #[test]
    fn every_document_has_exactly_one_shard_and_they_are_balanced() {
        let ids: Vec<Bson> = (0..4000)
            .map(|i| match i % 4 {
                0 => Bson::ObjectId(ObjectId::new()),
                1 => Bson::Int64(i),
                2 => Bson::String(format!("doc-{i}")),
                _ => Bson::Document(doc! {"a": i, "b": "x"}),
            })
            .collect();
        let mut sizes = [0u32; 4];
        for id in &ids {
            let owners: Vec<u32> = (0..4)
                .filter(|i| {
                    Shard {
                        index: *i,
                        count: 4,
                    }
                    .owns(id)
                })
                .collect();
            assert_eq!(owners.len(), 1, "{id}");
            sizes[owners[0] as usize] += 1;
        }
        assert!(sizes.iter().all(|s| (850..1150).contains(s)), "{sizes:?}");
        // Equal numbers are one _id, so one shard.
        assert_eq!(shard_of(&Bson::Int32(7), 5), shard_of(&Bson::Int64(7), 5));
        assert_eq!(
            shard_of(&Bson::Double(7.0), 5),
            shard_of(&Bson::Int64(7), 5)
        );
    }

    #[test]
    fn a_stored_point_is_placed_only_when_its_id_reads_back_exactly() {
        let ns = Namespace {
            database: "db".into(),
            collection: "c".into(),
        };
        let payload = |id: &Bson, chunk: u32| {
            let mut p = Map::new();
            p.insert(keys::ID.into(), id.clone().into_relaxed_extjson());
            p.insert(keys::CHUNK.into(), Value::from(chunk));
            p
        };
        for id in [
            Bson::ObjectId(ObjectId::new()),
            Bson::Int64(1 << 40),
            Bson::Int32(3),
            Bson::String("s".into()),
            Bson::Document(doc! {"a": 1, "b": 2}),
        ] {
            let pid = point_id("db", "c", &id, 2);
            assert_eq!(stored_id(&ns, pid, &payload(&id, 2)), Some(id.clone()));
            // Another chunk, another namespace: not this point's _id.
            assert_eq!(stored_id(&ns, pid, &payload(&id, 1)), None);
        }
        // A compound _id whose fields came back in another order is no one's.
        let id = Bson::Document(doc! {"b": 2, "a": 1});
        let pid = point_id("db", "c", &id, 0);
        let reordered: Document = doc! {"a": 1, "b": 2};
        let p = payload(&Bson::Document(reordered), 0);
        assert_eq!(stored_id(&ns, pid, &p), None);
        let s = Shard { index: 0, count: 2 };
        assert_eq!(s.owns_point(&ns, pid, &p), None);
        assert_eq!(s.owns_point(&ns, pid, &Map::new()), None);
    }
}
