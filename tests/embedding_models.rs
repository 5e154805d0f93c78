//! Model folders that pool, normalise and prompt differently, each held to the vectors
//! sentence-transformers computes for the same folder (`tests/data/reference-variants.json`,
//! made by `models/reference_variants.py`): all-MiniLM-L6-v2's fp32 ONNX graph with its
//! sentence-transformers configuration changed to CLS pooling; max pooling without Normalize;
//! position-weighted mean with lower-casing and a 128-token limit; query / passage prompts with
//! dot-product similarity. And what cannot be honoured is refused by name (exit 2).

use std::path::{Path, PathBuf};

use mongo2qdrant::embed::{Embedder, OnnxEmbedder, Precision};
use serde_json::Value;

use crate::common::{self, Mongo};

fn references() -> Value {
    let path = common::repo().join("tests/data/reference-variants.json");
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

/// A model folder in `dir`: the fp32 MiniLM graph and tokenizer, and `files` (relative path ->
/// JSON) as its sentence-transformers configuration.
fn model_folder(dir: &Path, files: &serde_json::Map<String, Value>) -> PathBuf {
    let fp32 = common::repo().join("models/cache/all-MiniLM-L6-v2-fp32");
    for f in ["model.onnx", "tokenizer.json"] {
        std::os::unix::fs::symlink(fp32.join(f), dir.join(f)).unwrap();
    }
    for (rel, content) in files {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, serde_json::to_vec_pretty(content).unwrap()).unwrap();
    }
    dir.to_path_buf()
}

fn load(dir: &Path) -> OnnxEmbedder {
    let mut c = common::embed_config();
    c.model_dir = dir.to_path_buf();
    c.precision = Precision::Fp32;
    OnnxEmbedder::load(&c).unwrap()
}

fn rows(v: &Value) -> Vec<Vec<f32>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect()
        })
        .collect()
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect()
}

/// Lowest cosine between `got` and `want`, and the largest relative difference of lengths (the
/// vectors of a model without Normalize keep theirs).
fn agreement(got: &[Vec<f32>], want: &[Vec<f32>]) -> (f32, f32) {
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    let mut worst = (1f32, 0f32);
    for (g, w) in got.iter().zip(want) {
        let dot: f32 = g.iter().zip(w).map(|(a, b)| a * b).sum();
        worst.0 = worst.0.min(dot / (norm(g) * norm(w)));
        worst.1 = worst.1.max((norm(g) - norm(w)).abs() / norm(w));
    }
    worst
}

#[test]
fn every_pooling_and_prompt_matches_sentence_transformers() {
    let r = references();
    let texts = strings(&r["texts"]);
    let queries = strings(&r["queries"]);
    let mut ids = Vec::new();
    for (name, v) in r["variants"].as_object().unwrap() {
        let dir = tempfile::tempdir().unwrap();
        let folder = model_folder(dir.path(), v["files"].as_object().unwrap());
        let e = load(&folder);
        let (docs, _) = e.embed(&texts).unwrap();
        let (qs, _) = e.embed_query(&queries).unwrap();
        let (d, dl) = agreement(&docs, &rows(&v["documents"]));
        let (q, ql) = agreement(&qs, &rows(&v["queries"]));
        eprintln!(
            "{name}: worst cosine {d:.6} (documents), {q:.6} (queries); lengths within {:.1e}",
            dl.max(ql)
        );
        assert!(d >= 0.999 && q >= 0.999, "{name}: {d} {q}");
        assert!(
            dl < 1e-3 && ql < 1e-3,
            "{name}: lengths differ by {dl} {ql}"
        );
        ids.push(e.model_id().to_owned());
        if name == "prompted-dot" {
            assert_eq!(e.distance(), mongo2qdrant::sink::Distance::Dot);
        }
    }
    // Pooling, normalisation, case and prompts are part of the content identity.
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 4, "{ids:?}");
}

/// A prompted dot-product model end to end: `sync` creates a Dot collection and embeds with
/// the document prompt (the stored vector is the reference's); `search` embeds with the query
/// prompt. A Dense module, which this tool does not run, is refused naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prompted_model_syncs_and_searches_and_a_dense_module_is_refused() {
    use mongo2qdrant::sink::{Shape, Sink};
    let r = references();
    let v = &r["variants"]["prompted-dot"];
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("m")).unwrap();
    let folder = model_folder(&dir.path().join("m"), v["files"].as_object().unwrap());
    let m = Mongo::start();
    let texts = strings(&r["texts"]);
    let docs = texts
        .iter()
        .enumerate()
        .map(|(i, t)| mongodb::bson::doc! {"_id": i as i32, "text": *t})
        .collect();
    m.insert("models", "notes", docs).await;
    let store = dir.path().join("store");
    let run = |args: &[&str]| {
        common::bin()
            .args(args)
            .arg("--model")
            .arg(&folder)
            .args(["--precision", "fp32", "--qdrant-path"])
            .arg(&store)
            .output()
            .unwrap()
    };
    let uri = m.uri();
    let out = run(&[
        "sync",
        "--quiet",
        "--mongo-uri",
        &uri,
        "--database",
        "models",
        "--collection",
        "notes",
        "--text",
        "{text}",
    ]);
    common::assert_ok(&out);
    {
        let sink = mongo2qdrant::sink::EdgeSink::open(&store).unwrap();
        let Some(Shape::Unnamed(p)) = sink.shape("notes").await.unwrap() else {
            panic!("no unnamed vector")
        };
        assert_eq!((p.dimension, p.distance.as_str()), (384, "Dot"));
        let points = common::points_with_vectors(&sink, "notes").await;
        let want = rows(&v["documents"]);
        let got: Vec<Vec<f32>> = (0..texts.len())
            .map(|i| {
                let p = points
                    .iter()
                    .find(|p| p.payload.get("_id") == Some(&serde_json::json!(i)))
                    .unwrap_or_else(|| panic!("no point for _id {i}"));
                p.values[""].clone()
            })
            .collect();
        let (c, _) = agreement(&got, &want);
        assert!(c >= 0.999, "stored vectors carry the document prompt: {c}");
    }
    let out = run(&[
        "search",
        "Which film is about dreams?",
        "--collection-name",
        "notes",
        "--limit",
        "3",
    ]);
    common::assert_ok(&out);

    // A Dense module after the pooling: its vectors would differ; refused by name.
    let mut files = v["files"].as_object().unwrap().clone();
    let mut modules = files["modules.json"].as_array().unwrap().clone();
    modules.push(serde_json::json!({"idx": 3, "name": "3", "path": "2_Dense", "type": "sentence_transformers.models.Dense"}));
    files.insert("modules.json".into(), Value::Array(modules));
    let dense = tempfile::tempdir().unwrap();
    let dense = model_folder(dense.path(), &files);
    let out = common::bin()
        .args(["search", "x", "--collection-name", "notes", "--qdrant-path"])
        .arg(&store)
        .arg("--model")
        .arg(&dense)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("sentence_transformers.models.Dense") && err.contains("2_Dense"),
        "{err}"
    );
}
