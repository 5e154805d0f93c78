//! What a round reads, and with which settings: the collection, or a dump of it (mongoexport
//! JSONL or a mongodump archive, in random order, with stale copies of documents, or cut short),
//! and the same job as the real binary's flags.

use std::path::Path;

use mongo2qdrant::pipeline::{Chunking, Job, SyncOptions};
use mongodb::bson::{Bson, Document, RawDocumentBuf, doc};

use super::{Rng, Tally, text};
use crate::common::{self, Mongo};

/// How an iteration's source is read.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Dump {
    /// `mongoexport` JSONL (canonical Extended JSON, so every `_id` keeps its type).
    Jsonl,
    /// `mongodump --archive`.
    Archive,
}

/// The settings of one run: what it reads and how it builds points.
#[derive(Clone, Copy)]
pub struct Spec<'a> {
    pub c: &'a str,
    pub vector: Option<&'a str>,
    pub file: Option<(&'a Path, Dump)>,
    pub chunking: Option<Chunking>,
    pub template: &'a str,
    pub filter: Option<&'a str>,
    pub projection: Option<&'a str>,
    pub cursor_batch: u32,
    /// A BM25 sparse vector beside the dense one (`--sparse bm25`).
    pub sparse: bool,
    /// Collection settings asked this round (`--hnsw-m`, `--quantization scalar`).
    pub hnsw_m: Option<u64>,
    pub quantize: bool,
}

/// `jobs` asking for the collection settings of `s`.
fn with_settings(mut jobs: Vec<Job>, s: &Spec<'_>) -> Vec<Job> {
    for j in &mut jobs {
        j.settings.hnsw_m = s.hnsw_m;
        if s.quantize {
            j.settings.quantization = Some(mongo2qdrant::sink::settings::QuantKind::Scalar);
        }
    }
    jobs
}

/// `jobs` with the BM25 sparse vector `bm25` beside their dense vector when `on`.
pub fn with_sparse(mut jobs: Vec<Job>, on: bool) -> Vec<Job> {
    if on {
        let settings = mongo2qdrant::config::sparse::SparseSettings {
            name: "bm25".into(),
            text: None,
            language: "english".into(),
            dense: true,
        };
        for j in &mut jobs {
            j.sparse = Some(
                mongo2qdrant::config::sparse::spec(&settings, j.vector_name.as_deref()).unwrap(),
            );
        }
    }
    jobs
}

/// Write `coll` to the iteration's dump, in random order. With `stale`, some documents may also
/// get a stale copy (as when a document moves while the dump is taken), placed where the reader
/// keeps the current one: before it in an archive (the last copy is kept), after it in JSONL
/// (the first is kept, the second is bad input). With `cut`, an archive ends at a random segment
/// of the collection before its end: the dump is incomplete, and a run must neither prune nor
/// call it complete.
pub async fn export(
    coll: &mongodb::Collection<Document>,
    (path, format): (&Path, Dump),
    rng: &mut Rng,
    tally: &mut Tally,
    cut: bool,
    stale: bool,
) {
    let mut docs = common::all_docs(coll).await;
    for i in (1..docs.len()).rev() {
        docs.swap(i, rng.below(i as u64 + 1) as usize);
    }
    if stale && !docs.is_empty() && rng.chance(20) {
        tally.add("dump: stale copies of documents (duplicate _ids)");
        for _ in 0..1 + rng.below(3) {
            let at = rng.below(docs.len() as u64) as usize;
            let mut stale = docs[at].clone();
            stale.insert("text", format!("stale copy {}", text(rng)));
            stale.insert("tag", "stale");
            match format {
                Dump::Archive => docs.insert(at, stale),
                Dump::Jsonl => docs.insert(at + 1, stale),
            }
        }
    }
    let bytes = match format {
        Dump::Jsonl => docs
            .into_iter()
            .map(|d| Bson::Document(d).into_canonical_extjson().to_string())
            .collect::<Vec<_>>()
            .join("\n")
            .into_bytes(),
        Dump::Archive => {
            let name = coll.name();
            let raw: Vec<RawDocumentBuf> = docs
                .iter()
                .map(|d| RawDocumentBuf::from_document(d).unwrap())
                .collect();
            let whole = common::archive::archive(&[("h", name, &raw)]);
            let header = common::archive::bytes_of(
                &doc! {"db": "h", "collection": name, "EOF": false, "CRC": 0i64},
            );
            let segments: Vec<usize> = whole
                .windows(header.len())
                .enumerate()
                .filter(|(_, w)| *w == header.as_slice())
                .map(|(i, _)| i)
                .collect();
            match segments.is_empty() || !cut {
                true => whole,
                false => {
                    tally.add("dump: an archive cut short (no end of collection)");
                    whole[..*rng.pick(&segments)].to_vec()
                }
            }
        }
    };
    std::fs::write(path, bytes).unwrap();
}

/// The jobs of `s`: the collection `s.c` of database `h`, or its dump under the collection's
/// namespace (so the same point ids).
pub async fn jobs_of(m: &Mongo, s: &Spec<'_>) -> Vec<Job> {
    let Some((f, _)) = s.file else {
        let mut of = common::sync_of(m, "h", &[s.c])
            .template(s.template)
            .payload(&["tag"])
            .vector(s.vector)
            .cursor_batch(s.cursor_batch);
        if let Some(filter) = s.filter {
            of = of.filter(filter);
        }
        if let Some(p) = s.projection {
            of = of.projection(p);
        }
        return with_settings(with_sparse(of.jobs().await, s.sparse), s);
    };
    let mut source = common::source_args(m, "h", &[]);
    source.files = vec![f.to_path_buf()];
    source.namespace = Some(format!("h.{}", s.c));
    let mut jobs = mongo2qdrant::config::jobs(&source, Some(s.c), s.template, &["tag".to_owned()])
        .await
        .unwrap();
    for j in &mut jobs {
        j.vector_name = s.vector.map(str::to_owned);
    }
    with_settings(with_sparse(jobs, s.sparse), s)
}

/// Flags of the real binary for the same job (the kill -9 fault).
pub fn binary_args(m: &Mongo, s: &Spec<'_>, o: &SyncOptions, watching: bool) -> Vec<String> {
    let command = if watching { "watch" } else { "sync" };
    let mut a: Vec<String> = [command, "--quiet", "--text", s.template, "--payload", "tag"]
        .map(str::to_owned)
        .to_vec();
    if watching {
        a.extend(["--watch-delay-ms".into(), "100".into()]);
    }
    match s.file {
        Some((f, _)) => a.extend([
            "--file".into(),
            f.display().to_string(),
            "--namespace".into(),
            format!("h.{}", s.c),
        ]),
        None => a.extend([
            "--mongo-uri".into(),
            m.uri(),
            "--database".into(),
            "h".into(),
            "--collection".into(),
            s.c.into(),
        ]),
    }
    a.extend(["--collection-name".into(), s.c.into()]);
    a.extend(["--batch-size".into(), o.batch_docs.to_string()]);
    for (flag, value) in [
        ("--vector-name", s.vector),
        ("--filter", s.filter),
        ("--projection", s.projection),
    ] {
        if let Some(v) = value {
            a.extend([flag.into(), v.into()]);
        }
    }
    if s.sparse {
        a.extend(["--sparse".into(), "bm25".into()]);
    }
    if let Some(m) = s.hnsw_m {
        a.extend(["--hnsw-m".into(), m.to_string()]);
    }
    if s.quantize {
        a.extend(["--quantization".into(), "scalar".into()]);
    }
    if let Some(ch) = s.chunking {
        a.extend([
            "--chunk-size".into(),
            ch.size.to_string(),
            "--chunk-overlap".into(),
            ch.overlap.to_string(),
        ]);
    }
    for (flag, on) in [
        ("--prune", o.prune),
        ("--fresh", o.fresh),
        ("--bulk", o.bulk),
    ] {
        if on {
            a.push(flag.into());
        }
    }
    a
}
