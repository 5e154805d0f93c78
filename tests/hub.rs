//! Models by name (issue 23.3): `--model OWNER/NAME` downloads the model from a Hugging Face
//! Hub endpoint (`HF_ENDPOINT`) into the model cache with the `hf-hub` client, over a real HTTP
//! connection to a local server that serves a model folder in the Hub's layout (these machines
//! cannot reach the Hub). A download cut off midway is resumed; one that comes down corrupted is
//! refused and removed, never used; offline mode uses the cache alone.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};

use mongodb::bson::doc;
use serde_json::Value;
use sha2::Digest;

use crate::common::{self, Mongo};

/// How the server misbehaves on the graph (`onnx/model.onnx`).
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// The first download of the graph stops halfway (the connection closes).
    CutOnce,
    /// Every download of the graph has one byte changed.
    Corrupt,
}

/// A Hub endpoint for one model: `/api/models/ID/revision/main` and
/// `/ID/resolve/main/FILE` with `Range`, `etag` / `x-linked-etag` and `x-repo-commit`.
struct Hub {
    url: String,
    /// Requests seen: (path, Range header).
    seen: Arc<Mutex<Vec<(String, String)>>>,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn serve(id: &'static str, files: BTreeMap<String, Vec<u8>>, mode: Mode) -> Hub {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        let mut cut = mode == Mode::CutOnce;
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut reader = BufReader::new(s.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let path = line.split_whitespace().nth(1).unwrap_or("").to_owned();
            let mut range = String::new();
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
                if let Some(v) = h.strip_prefix("Range: ").or(h.strip_prefix("range: ")) {
                    range = v.trim().to_owned();
                }
            }
            log.lock().unwrap().push((path.clone(), range.clone()));
            let api = format!("/api/models/{id}/revision/main");
            let resolve = format!("/{id}/resolve/main/");
            if path == api {
                let siblings: Vec<Value> = files
                    .keys()
                    .map(|f| serde_json::json!({"rfilename": f}))
                    .collect();
                let body = serde_json::json!({"sha": "0123456789abcdef", "siblings": siblings})
                    .to_string();
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                continue;
            }
            let Some(bytes) = path.strip_prefix(&resolve).and_then(|f| files.get(f)) else {
                let _ = write!(
                    s,
                    "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                );
                continue;
            };
            let graph = path.ends_with("onnx/model.onnx");
            // Large files: the sha256 as `x-linked-etag`; others: git's blob sha1 as `etag`.
            let etag = if graph {
                format!("x-linked-etag: \"{}\"", hex(&sha2::Sha256::digest(bytes)))
            } else {
                let mut h = sha1::Sha1::new();
                h.update(format!("blob {}\0", bytes.len()).as_bytes());
                h.update(bytes);
                format!("etag: \"{}\"", hex(&h.finalize()))
            };
            let mut body = bytes.clone();
            if graph && mode == Mode::Corrupt {
                let mid = body.len() / 2;
                body[mid] ^= 0x55;
            }
            let start: usize = range
                .strip_prefix("bytes=")
                .and_then(|r| r.split('-').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            let end = match range.split('-').nth(1) {
                Some(e) if !e.is_empty() => e.parse::<usize>().unwrap() + 1,
                _ => body.len(),
            };
            let part = &body[start..end.min(body.len())];
            let _ = write!(
                s,
                "HTTP/1.1 206 Partial Content\r\n{etag}\r\nx-repo-commit: 0123456789abcdef\r\ncontent-range: bytes {start}-{}/{}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                start + part.len() - 1,
                body.len(),
                part.len()
            );
            let whole_download = graph && part.len() > 1;
            if whole_download && std::mem::take(&mut cut) {
                let _ = s.write_all(&part[..part.len() / 2]);
                continue; // closed halfway
            }
            let _ = s.write_all(part);
            let _ = s.flush();
        }
    });
    Hub { url, seen }
}

/// The CLS-pooled variant of the reference models, as a Hub repository holds it (the graph
/// under `onnx/`).
fn files() -> (BTreeMap<String, Vec<u8>>, Value) {
    let r: Value = serde_json::from_slice(
        &std::fs::read(common::repo().join("tests/data/reference-variants.json")).unwrap(),
    )
    .unwrap();
    let fp32 = common::repo().join("models/cache/all-MiniLM-L6-v2-fp32");
    let mut files = BTreeMap::new();
    files.insert(
        "onnx/model.onnx".to_owned(),
        std::fs::read(fp32.join("model.onnx")).unwrap(),
    );
    files.insert(
        "tokenizer.json".to_owned(),
        std::fs::read(fp32.join("tokenizer.json")).unwrap(),
    );
    files.insert("README.md".to_owned(), b"a model card".to_vec());
    for (rel, content) in r["variants"]["cls"]["files"].as_object().unwrap() {
        files.insert(rel.clone(), serde_json::to_vec(content).unwrap());
    }
    (files, r)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_by_name_is_downloaded_resumed_checked_and_reused_offline() {
    let (files, r) = files();
    let m = Mongo::start();
    let texts: Vec<String> = r["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_owned())
        .collect();
    let docs = texts
        .iter()
        .enumerate()
        .map(|(i, t)| doc! {"_id": i as i32, "text": t})
        .collect();
    m.insert("hub", "notes", docs).await;
    let dir = tempfile::tempdir().unwrap();
    let sync = |home: &Path, endpoint: &str, offline: bool, store: &str| {
        let mut c = common::bin();
        c.env("M2Q_HOME", home)
            .env("HF_ENDPOINT", endpoint)
            .env_remove("HF_TOKEN")
            .env_remove("M2Q_MODEL");
        if offline {
            c.env("HF_HUB_OFFLINE", "1");
        } else {
            c.env_remove("HF_HUB_OFFLINE");
        }
        c.args(["sync", "--quiet", "--mongo-uri", &m.uri()])
            .args([
                "--database",
                "hub",
                "--collection",
                "notes",
                "--text",
                "{text}",
            ])
            .args(["--model", "local/minilm-cls", "--precision", "fp32"])
            .arg("--qdrant-path")
            .arg(dir.path().join(store))
            .output()
            .unwrap()
    };

    // Cut off midway, resumed: the model runs, as sentence-transformers computes it.
    let hub = serve("local/minilm-cls", files.clone(), Mode::CutOnce);
    let home = dir.path().join("home");
    common::assert_ok(&sync(&home, &hub.url, false, "a"));
    let resumed = hub.seen.lock().unwrap().iter().any(|(p, range)| {
        p.ends_with("onnx/model.onnx")
            && range.starts_with("bytes=")
            && !range.starts_with("bytes=0-")
    });
    assert!(
        resumed,
        "the cut download was resumed: {:?}",
        hub.seen.lock().unwrap()
    );
    let sink = mongo2qdrant::sink::EdgeSink::open(&dir.path().join("a")).unwrap();
    let points = common::points_with_vectors(&sink, "notes").await;
    let want = r["variants"]["cls"]["documents"].as_array().unwrap();
    for p in &points {
        let i = p.payload["_id"].as_u64().unwrap() as usize;
        let w: Vec<f32> = want[i]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect();
        let g = &p.values[""];
        let cos: f32 = g.iter().zip(&w).map(|(a, b)| a * b).sum();
        assert!(cos > 0.999, "point of _id {i}: cosine {cos}");
    }
    assert_eq!(points.len(), texts.len());
    drop(sink);

    // Offline, the cache alone serves it (the endpoint is gone); an empty cache names the fix.
    common::assert_ok(&sync(&home, "http://127.0.0.1:9", true, "b"));
    let out = sync(&dir.path().join("empty"), "http://127.0.0.1:9", true, "c");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("HF_HUB_OFFLINE"),
        "{err}"
    );

    // Corrupted on the way: refused, removed, never used.
    let bad = serve("local/minilm-cls", files, Mode::Corrupt);
    let home2 = dir.path().join("home2");
    let out = sync(&home2, &bad.url, false, "d");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("came down broken") && err.contains("onnx/model.onnx"),
        "{err}"
    );
    let blobs = home2.join("hub/models--local--minilm-cls/blobs");
    let big: Vec<_> = std::fs::read_dir(&blobs)
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.metadata().is_ok_and(|m| m.len() > 1_000_000))
                .collect()
        })
        .unwrap_or_default();
    assert!(big.is_empty(), "the broken graph was removed: {big:?}");
    assert!(
        !dir.path().join("d/notes").exists(),
        "nothing was written with it"
    );
}
