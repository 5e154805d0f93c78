//! One job's settings, resolved and validated into a [`Job`]: template, filter, projection,
//! source, namespace, target name and vector name.

use std::path::PathBuf;

use mongodb::bson::{Bson, Document};

use super::ConfigError;
use crate::point::Job;
use crate::source::dump::{self, DumpKind};
use crate::source::mongo::connect;
use crate::source::{DumpSource, FileSource, MongoSource, Namespace, Source, parse_ext_json_doc};
use crate::text::Template;

/// Everything one job needs, resolved.
#[derive(Debug, Clone)]
pub struct JobSpec {
    pub mongo_uri: String,
    pub database: Option<String>,
    pub collection: Option<String>,
    pub file: Option<PathBuf>,
    /// A file's namespace (`db.collection`), when given.
    pub namespace: Option<String>,
    pub target: Option<String>,
    pub text: String,
    pub payload: Vec<String>,
    pub filter: Option<String>,
    pub projection: Option<String>,
    pub cursor_batch: u32,
    pub vector_name: Option<String>,
    pub sparse: Option<super::sparse::SparseSettings>,
    /// `FIELD:TYPE[:tenant]` payload indexes of the target.
    pub indexes: Vec<String>,
    /// The target collection's settings.
    pub settings: crate::sink::Settings,
    /// The dense vector's distance (`None`: the model's).
    pub distance: Option<crate::sink::Distance>,
}

impl JobSpec {
    /// Validate and build the job (one MongoDB client per URI).
    pub async fn into_job(
        self,
        clients: &mut std::collections::HashMap<String, mongodb::Client>,
    ) -> Result<Job, ConfigError> {
        let sparse = match &self.sparse {
            Some(s) => Some(super::sparse::spec(s, self.vector_name.as_deref())?),
            None => None,
        };
        // A sparse-only job writes its sparse vector as its (named) vector, from its text.
        let sparse_only = sparse.as_ref().filter(|s| !s.dense);
        let template = match sparse_only.and_then(|s| s.template.clone()) {
            Some(t) => t,
            None => Template::parse(&self.text)?,
        };
        let vector_name = match sparse_only {
            Some(s) => Some(s.name.clone()),
            None => self.vector_name.clone(),
        };
        if let Some(v) = &vector_name {
            check_vector_name(v)?;
        }
        let filter_text = self.filter.clone().unwrap_or_default();
        let filter = match &self.filter {
            Some(f) => parse_ext_json_doc("filter", f, r#"{"year": {"$gte": 2000}}"#)?,
            None => Document::new(),
        };
        let projection = match &self.projection {
            Some(p) => without_id_refused(parse_ext_json_doc(
                "projection",
                p,
                r#"{"title": 1, "body": 1}"#,
            )?)?,
            None => derived_projection(&template, &self.payload),
        };
        let projection_text = self.projection.clone().unwrap_or_default();
        let (source, name) = match (&self.collection, &self.file) {
            (Some(c), None) => {
                let database = self.database.clone().ok_or(ConfigError::NoDatabase)?;
                let client = match clients.get(&self.mongo_uri) {
                    Some(c) => c.clone(),
                    None => {
                        let c = connect(&self.mongo_uri, "mongo2qdrant").await?;
                        clients.insert(self.mongo_uri.clone(), c.clone());
                        c
                    }
                };
                let namespace = Namespace {
                    database,
                    collection: c.clone(),
                };
                let src = MongoSource::new(
                    client,
                    namespace,
                    filter,
                    Some(projection),
                    self.cursor_batch,
                );
                (Source::Mongo(src), c.clone())
            }
            (None, Some(f)) => {
                let kind = dump::kind_of(f);
                let namespace = match (&self.namespace, kind) {
                    (Some(ns), _) => parse_namespace(ns)?,
                    (None, Some(DumpKind::Archive)) => {
                        return Err(ConfigError::ArchiveNamespace(f.display().to_string()));
                    }
                    // mongodump's layout: DB/COLL.bson (a --database names another DB).
                    (None, Some(DumpKind::Bson)) if self.database.is_none() => {
                        dump::bson_namespace(f)
                            .ok_or_else(|| ConfigError::ArchiveNamespace(f.display().to_string()))?
                    }
                    (None, _) => {
                        let stem = f
                            .file_stem()
                            .map_or_else(|| "file".into(), |s| s.to_string_lossy().into_owned());
                        let stem = stem.strip_suffix(".bson").unwrap_or(&stem);
                        Namespace {
                            database: self.database.clone().unwrap_or_else(|| "file".into()),
                            collection: stem.strip_suffix(".json").unwrap_or(stem).to_owned(),
                        }
                    }
                };
                if kind == Some(DumpKind::Archive) {
                    let held = dump::archive_namespaces(f)?;
                    if !held.contains(&namespace) {
                        let held: Vec<String> = held.iter().map(|n| n.to_string()).collect();
                        return Err(ConfigError::NotInArchive {
                            file: f.display().to_string(),
                            namespace: namespace.to_string(),
                            held: if held.is_empty() {
                                "no user collection".into()
                            } else {
                                held.join(", ")
                            },
                        });
                    }
                }
                let name = namespace.collection.clone();
                let source = match kind {
                    None => Source::File(FileSource::new(f.clone(), namespace)),
                    Some(kind) => Source::Dump(DumpSource {
                        namespace,
                        path: f.clone(),
                        kind,
                    }),
                };
                (source, name)
            }
            _ => return Err(ConfigError::EntrySource),
        };
        let target = self.target.unwrap_or(name);
        check_collection_name(&target)?;
        Ok(Job {
            source,
            target,
            template,
            payload_fields: self.payload,
            filter_text,
            projection_text,
            vector_name,
            sparse,
            indexes: crate::sink::index::parse(&self.indexes).map_err(ConfigError::Filter)?,
            settings: self.settings,
            distance: self.distance,
        })
    }
}

/// A vector name must be a plain payload key suffix (`content_hash_<name>`): letters, digits,
/// `_` and `-`.
pub fn check_vector_name(name: &str) -> Result<(), ConfigError> {
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(ConfigError::VectorName(name.to_owned()))
    }
}

/// A target collection name must be one Qdrant accepts (it is a directory of the embedded
/// store) and not the records collection, which holds every checkpoint.
pub fn check_collection_name(name: &str) -> Result<(), ConfigError> {
    let bad = |reason| {
        Err(ConfigError::CollectionName {
            name: name.to_owned(),
            reason,
        })
    };
    if name == crate::state::RECORDS_COLLECTION {
        return bad("it is reserved for the checkpoints, leases and run records");
    }
    if name.is_empty() || name.len() > 255 {
        return bad("a name has 1 to 255 bytes");
    }
    if name == "."
        || name == ".."
        || name
            .chars()
            .any(|c| "/\\:*?\"<>|".contains(c) || c.is_control())
    {
        return bad(
            "a name cannot be `.` or `..` nor contain / \\ : * ? \" < > | or control characters",
        );
    }
    Ok(())
}

/// `projection`, unless it may leave out or replace `_id`: only an absent `_id`, `true` or a
/// non-zero number keeps it (`0`, `false`, a decimal zero, `null`, an expression such as
/// `"$sku"` or `"$$REMOVE"`, or a path below `_id` do not). A document read without its own
/// `_id` has no point id: `sync` would count it failed, `watch` take it for deleted.
fn without_id_refused(projection: Document) -> Result<Document, ConfigError> {
    let keeps = match projection.get("_id") {
        None | Some(Bson::Boolean(true)) => true,
        Some(Bson::Int32(n)) => *n != 0,
        Some(Bson::Int64(n)) => *n != 0,
        Some(Bson::Double(d)) => *d != 0.0 && !d.is_nan(),
        Some(_) => false,
    };
    if keeps && !projection.keys().any(|k| k.starts_with("_id.")) {
        return Ok(projection);
    }
    let mut example = projection;
    let id_keys: Vec<String> = example
        .keys()
        .filter(|k| *k == "_id" || k.starts_with("_id."))
        .cloned()
        .collect();
    for k in id_keys {
        example.remove(&k);
    }
    Err(ConfigError::ProjectionWithoutId {
        example: Bson::Document(example).into_relaxed_extjson().to_string(),
    })
}

/// The projection a template and payload need (top-level fields), plus `_id`.
pub(super) fn derived_projection(template: &Template, payload: &[String]) -> Document {
    let mut p = Document::new();
    for f in template.fields().chain(payload.iter().cloned()) {
        let top = f.split('.').next().unwrap_or(&f).to_owned();
        p.insert(top, 1);
    }
    p.insert("_id", 1);
    p
}

/// `db.collection` as a namespace (the collection may contain dots, the database may not).
pub(super) fn parse_namespace(text: &str) -> Result<Namespace, ConfigError> {
    match text.split_once('.') {
        Some((db, coll)) if !db.is_empty() && !coll.is_empty() => Ok(Namespace {
            database: db.to_owned(),
            collection: coll.to_owned(),
        }),
        _ => Err(ConfigError::Namespace(text.to_owned())),
    }
}

#[cfg(test)]
mod projection_tests {
    use super::*;
    use mongodb::bson::doc;

    #[test]
    fn only_a_projection_that_keeps_id_passes() {
        for kept in [
            doc! {"t": 1},
            doc! {"_id": 1, "t": 1},
            doc! {"_id": true},
            doc! {"_id": 2.5},
        ] {
            assert!(without_id_refused(kept.clone()).is_ok(), "{kept}");
        }
        let decimal_zero = mongodb::bson::Decimal128::from_bytes([0; 16]);
        for dropped in [
            doc! {"_id": 0, "t": 1},
            doc! {"_id": 0_i64},
            doc! {"_id": 0.0},
            doc! {"_id": false},
            doc! {"_id": decimal_zero},
            doc! {"_id": null},
            doc! {"_id": "$sku"},
            doc! {"_id": "$$REMOVE"},
            doc! {"_id": {"$literal": 1}},
            doc! {"_id.x": 0, "t": 1},
        ] {
            let e = without_id_refused(dropped.clone()).unwrap_err().to_string();
            assert!(e.contains("leaves out _id"), "{dropped}: {e}");
        }
    }
}
