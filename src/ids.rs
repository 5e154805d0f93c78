//! Point identity and content hashes: pure functions, the same on every run and every machine.
//!
//! A point id is a UUID built from blake3 over (database, collection, canonical `_id` bytes,
//! chunk index); the content hash is blake3 over (model id, template, text).

use mongodb::bson::{Bson, Document};
use uuid::Uuid;

/// Canonical bytes of an `_id`: its BSON encoding as the only field of a document, so that
/// the type is part of the identity (`1` and `"1"` differ). Numbers that MongoDB treats as
/// equal `_id`s (int32 `1`, int64 `1`, double `1.0`) share one encoding.
pub fn canonical_id_bytes(id: &Bson) -> Vec<u8> {
    let normalised = match id {
        Bson::Int32(v) => Bson::Int64(i64::from(*v)),
        Bson::Double(v) if v.fract() == 0.0 && v.abs() < 9.0e15 => Bson::Int64(*v as i64),
        other => other.clone(),
    };
    let mut doc = Document::new();
    doc.insert("_id", normalised);
    let mut out = Vec::with_capacity(32);
    doc.to_writer(&mut out)
        .expect("sources pass only _ids that encode (ids::check_id)");
    out
}

/// A fixed-size key of an `_id` (blake3 over [`canonical_id_bytes`]): equal for the `_id`s
/// that share point ids, for telling duplicates apart in a file or dump.
pub fn id_digest(id: &Bson) -> [u8; 32] {
    *blake3::hash(&canonical_id_bytes(id)).as_bytes()
}

/// Whether `id` can be encoded as BSON: every `_id` a MongoDB server returns can, but a file
/// can hold one that cannot (a key with a NUL byte). Sources refuse such a document as bad
/// input, so that [`canonical_id_bytes`] never meets one.
pub fn check_id(id: &Bson) -> Result<(), String> {
    let mut doc = Document::new();
    doc.insert("_id", id.clone());
    doc.to_writer(&mut Vec::new()).map_err(|e| e.to_string())
}

/// The deterministic point id of chunk `chunk` of document `id` in `database.collection`.
pub fn point_id(database: &str, collection: &str, id: &Bson, chunk: u32) -> Uuid {
    let mut h = blake3::Hasher::new_derive_key("mongo2qdrant point id v1");
    write_field(&mut h, database.as_bytes());
    write_field(&mut h, collection.as_bytes());
    write_field(&mut h, &canonical_id_bytes(id));
    h.update(&chunk.to_le_bytes());
    uuid_from(h)
}

/// A UUID derived from `parts` under `context` (used for checkpoint and lease records).
pub fn named_uuid(context: &str, parts: &[&str]) -> Uuid {
    let mut h = blake3::Hasher::new_derive_key(context);
    for p in parts {
        write_field(&mut h, p.as_bytes());
    }
    uuid_from(h)
}

/// Hex blake3 over (model id, template, text): equal hashes mean the stored point is current.
pub fn content_hash(model_id: &str, template: &str, text: &str) -> String {
    let mut h = blake3::Hasher::new_derive_key("mongo2qdrant content hash v1");
    write_field(&mut h, model_id.as_bytes());
    write_field(&mut h, template.as_bytes());
    write_field(&mut h, text.as_bytes());
    h.finalize().to_hex().to_string()
}

/// Hex blake3 over the JSON of the fields copied into a point's payload: equal hashes mean the
/// stored payload is current (independent of the text's content hash).
pub fn payload_hash(copied_json: &str) -> String {
    let mut h = blake3::Hasher::new_derive_key("mongo2qdrant payload hash v1");
    write_field(&mut h, copied_json.as_bytes());
    h.finalize().to_hex().to_string()
}

/// Length-prefix each field so that ("ab", "c") and ("a", "bc") never collide.
fn write_field(h: &mut blake3::Hasher, bytes: &[u8]) {
    h.update(&(bytes.len() as u64).to_le_bytes());
    h.update(bytes);
}

fn uuid_from(h: blake3::Hasher) -> Uuid {
    let digest = h.finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest.as_bytes()[..16]);
    // RFC 9562 version 8 (custom), variant 10.
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    Uuid::from_bytes(b)
}

/// Payload keys written on every point.
pub mod keys {
    pub const NAMESPACE: &str = "namespace";
    pub const ID: &str = "_id";
    pub const HASH: &str = "content_hash";
    pub const PAYLOAD_HASH: &str = "payload_hash";
    pub const CHUNK: &str = "chunk";
    pub const CHUNKS: &str = "chunk_count";

    /// Key of the content hash behind `vector`: [`HASH`] for the unnamed vector,
    /// `content_hash_<name>` for a named one (each named vector of a point is current or stale
    /// on its own).
    pub fn hash(vector: Option<&str>) -> String {
        per_vector(HASH, vector)
    }

    /// Key of the hash of the copied payload fields behind `vector`, like [`hash`].
    pub fn payload_hash(vector: Option<&str>) -> String {
        per_vector(PAYLOAD_HASH, vector)
    }

    /// Key of the chunk count behind `vector`, like [`hash`].
    pub fn chunks(vector: Option<&str>) -> String {
        per_vector(CHUNKS, vector)
    }

    fn per_vector(base: &str, vector: Option<&str>) -> String {
        match vector {
            None => base.to_owned(),
            Some(v) => format!("{base}_{v}"),
        }
    }

    /// Whether `key` is one of the bookkeeping keys above (of any vector).
    pub fn is_internal(key: &str) -> bool {
        [NAMESPACE, ID, CHUNK].contains(&key)
            || [HASH, PAYLOAD_HASH, CHUNKS]
                .iter()
                .any(|base| key.starts_with(base))
    }
}

/// `database.collection` of a source: part of every point id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct Namespace {
    pub database: String,
    pub collection: String,
}

impl std::fmt::Display for Namespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.database, self.collection)
    }
}

#[cfg(test)]
mod tests {
    use mongodb::bson::oid::ObjectId;
    use mongodb::bson::{Binary, doc, spec::BinarySubtype};

    use super::*;

    #[test]
    fn same_input_same_id() {
        let id = Bson::String("a".into());
        assert_eq!(point_id("db", "c", &id, 0), point_id("db", "c", &id, 0));
    }

    #[test]
    fn every_part_changes_the_id() {
        let id = Bson::String("a".into());
        let base = point_id("db", "c", &id, 0);
        assert_ne!(base, point_id("db2", "c", &id, 0));
        assert_ne!(base, point_id("db", "c2", &id, 0));
        assert_ne!(base, point_id("db", "c", &Bson::String("b".into()), 0));
        assert_ne!(base, point_id("db", "c", &id, 1));
        // field boundaries are not ambiguous
        assert_ne!(point_id("ab", "c", &id, 0), point_id("a", "bc", &id, 0));
    }

    #[test]
    fn id_types_are_distinct_but_equal_numbers_match() {
        let s = point_id("d", "c", &Bson::String("1".into()), 0);
        let i32_ = point_id("d", "c", &Bson::Int32(1), 0);
        let i64_ = point_id("d", "c", &Bson::Int64(1), 0);
        let dbl = point_id("d", "c", &Bson::Double(1.0), 0);
        assert_ne!(s, i32_);
        assert_eq!(i32_, i64_);
        assert_eq!(i64_, dbl);
        assert_ne!(dbl, point_id("d", "c", &Bson::Double(1.5), 0));
    }

    #[test]
    fn all_id_kinds_hash() {
        let oid = ObjectId::parse_str("65a1b2c3d4e5f60718293a4b").unwrap();
        let uuid = Bson::Binary(Binary {
            subtype: BinarySubtype::Uuid,
            bytes: vec![7; 16],
        });
        let kinds = [
            Bson::ObjectId(oid),
            Bson::String("x".into()),
            Bson::Int64(42),
            uuid,
            Bson::Document(doc! {"a": 1, "b": "x"}),
        ];
        let ids: std::collections::HashSet<_> =
            kinds.iter().map(|k| point_id("d", "c", k, 0)).collect();
        assert_eq!(ids.len(), kinds.len());
        // embedded documents: field order is significant in MongoDB, and here too
        assert_ne!(
            point_id("d", "c", &Bson::Document(doc! {"a": 1, "b": 2}), 0),
            point_id("d", "c", &Bson::Document(doc! {"b": 2, "a": 1}), 0)
        );
    }

    #[test]
    fn ids_are_stable_across_releases() {
        // Pinned: changing the derivation breaks every existing index.
        let id = point_id("db", "movies", &Bson::Int64(7), 0);
        assert_eq!(id.to_string(), "7f2e857b-f0ba-8169-ad97-660aa8437cde");
        assert_eq!(id.get_version_num(), 8);
        assert_eq!(id, point_id("db", "movies", &Bson::Int32(7), 0));
    }

    #[test]
    fn content_hash_depends_on_each_part() {
        let h = content_hash("m", "{t}", "hello");
        assert_eq!(h.len(), 64);
        assert_eq!(h, content_hash("m", "{t}", "hello"));
        assert_ne!(h, content_hash("m2", "{t}", "hello"));
        assert_ne!(h, content_hash("m", "{u}", "hello"));
        assert_ne!(h, content_hash("m", "{t}", "hello!"));
    }
}
