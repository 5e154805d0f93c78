//! Bad input gets a clear error that names the fix, and loses nothing: each case on the real
//! binary, real server, real model.

use crate::common;

use std::io::Write;

use crate::common::{Mongo, bin, load_movies, sync_cmd};
use mongo2qdrant::sink::EdgeSink;
use mongo2qdrant::state::{StateStore, checkpoint_id};

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn malformed_filter_is_a_usage_error_with_an_example() {
    let out = bin()
        .args([
            "sync",
            "--database",
            "d",
            "--collection",
            "c",
            "--filter",
            "{year: >2000}",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let e = stderr(&out);
    assert!(
        e.contains("--filter is not a valid Extended JSON") && e.contains("$gte"),
        "{e}"
    );
    // The cause once, not repeated by the error chain.
    assert_eq!(e.matches("is not a valid Extended JSON").count(), 1, "{e}");
}

#[test]
fn bad_template_is_a_usage_error() {
    let out = bin()
        .args([
            "sync",
            "--database",
            "d",
            "--collection",
            "c",
            "--text",
            "{title",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("unclosed"), "{}", stderr(&out));
}

#[test]
fn bad_uri_is_a_usage_error_without_the_password() {
    let out = bin()
        .args(["sync", "--database", "d", "--collection", "c"])
        .args(["--mongo-uri", "mongo://admin:hunter2@db.example:27017"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let e = stderr(&out);
    assert!(e.contains("--mongo-uri"), "{e}");
    assert!(!e.contains("hunter2"), "password printed: {e}");
}

#[test]
fn unreachable_server_fails_cleanly_without_the_password() {
    let port = common::free_port();
    let dir = tempfile::tempdir().unwrap();
    let out = bin()
        .args(["sync", "--quiet", "--database", "d", "--collection", "c", "--retries", "1"])
        .args([
            "--mongo-uri",
            &format!(
                "mongodb://admin:hunter2@127.0.0.1:{port}/?serverSelectionTimeoutMS=300&directConnection=true"
            ),
        ])
        .arg("--qdrant-path")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let e = stderr(&out);
    assert!(
        e.contains("MongoDB") && e.contains(&port.to_string()),
        "{e}"
    );
    assert!(!e.contains("hunter2"), "password printed: {e}");
}

/// A file to sync: the model is loaded before any document is read.
fn demo() -> String {
    crate::common::repo()
        .join("tests/data/demo.jsonl")
        .display()
        .to_string()
}

#[test]
fn missing_model_names_the_fetch_command() {
    let dir = tempfile::tempdir().unwrap();
    let out = bin()
        .args(["sync", "--quiet", "--file", &demo()])
        .arg("--qdrant-path")
        .arg(dir.path())
        .arg("--model")
        .arg(dir.path().join("nope"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let e = stderr(&out);
    assert!(
        e.contains("not found") && e.contains("bash models/fetch.sh"),
        "{e}"
    );
}

/// ONNX Runtime is the fp32 path (on a CPU with AMX, `auto` runs bf16 in OpenVINO instead).
#[test]
fn missing_or_wrong_onnx_runtime_names_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let out = bin()
        .args(["sync", "--quiet", "--file", &demo(), "--precision", "fp32"])
        .arg("--qdrant-path")
        .arg(dir.path())
        .env("ORT_DYLIB_PATH", dir.path().join("libonnxruntime.so"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let e = stderr(&out);
    assert!(
        e.contains("ONNX Runtime library not found") && e.contains("ORT_DYLIB_PATH"),
        "{e}"
    );

    // A shared library that is not ONNX Runtime.
    let not_ort = dir.path().join("libnot.so");
    std::fs::write(&not_ort, b"\x7fELF garbage").unwrap();
    let out = bin()
        .args(["sync", "--quiet", "--file", &demo(), "--precision", "fp32"])
        .arg("--qdrant-path")
        .arg(dir.path())
        .env("ORT_DYLIB_PATH", &not_ort)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let e = stderr(&out);
    assert!(
        e.contains("could not load ONNX Runtime") && e.contains(">= 1.24"),
        "{e}"
    );
}

/// A JSONL file with a malformed line, invalid UTF-8, a document without _id, a non-string
/// field, a document without the template's fields and a multi-megabyte text: the good
/// documents are all synced, the bad ones counted with their line numbers.
#[test]
fn messy_jsonl_file_loses_nothing_good() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("export.jsonl");
    let mut f = std::fs::File::create(&file).unwrap();
    let huge = "plenty of words ".repeat(200_000); // 3.2 MB
    writeln!(
        f,
        r#"{{"_id": 1, "title": "Fine", "extract": "A good one."}}"#
    )
    .unwrap();
    writeln!(f, r#"{{"_id": 2, "title": "Broken", "extract": "#).unwrap();
    f.write_all(b"{\"_id\": 3, \"title\": \"bad \xff\xfe bytes\"}\n")
        .unwrap();
    writeln!(f, r#"{{"title": "no id"}}"#).unwrap();
    writeln!(
        f,
        r#"{{"_id": 5, "title": 1999, "extract": {{"nested": true}}}}"#
    )
    .unwrap();
    writeln!(f, r#"{{"_id": 6, "other": "no template field"}}"#).unwrap();
    writeln!(f, r#"{{"_id": 7, "title": "Huge", "extract": "{huge}"}}"#).unwrap();
    writeln!(
        f,
        r#"{{"_id": {{"$oid": "65a1b2c3d4e5f60718293a4b"}}, "title": "Last"}}"#
    )
    .unwrap();
    drop(f);
    let report = dir.path().join("r.json");
    let out = bin()
        .args(["sync", "--quiet", "--text", r"{title}\n{extract}"])
        .arg("--file")
        .arg(&file)
        .arg("--qdrant-path")
        .arg(dir.path().join("store"))
        .arg("--report-json")
        .arg(&report)
        .output()
        .unwrap();
    common::assert_ok(&out);
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(r["read"], 8);
    assert_eq!(r["failed"], 3, "{r}");
    assert_eq!(r["skipped_no_text"], 1);
    assert_eq!(r["embedded"], 4, "ids 1, 5, 7 and the ObjectId");
    assert_eq!(r["exit_status"], 0);
    let failures = r["failures"].to_string();
    for needle in ["line 2", "line 3", "UTF-8", "no _id"] {
        assert!(failures.contains(needle), "{needle} missing in {failures}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_checkpoint_is_refused_and_fresh_recovers() {
    let m = Mongo::start();
    load_movies(&m, "cp", "films", 20).await;
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    assert!(
        sync_cmd(&m, "cp", "films", &store)
            .output()
            .unwrap()
            .status
            .success()
    );
    {
        let sink = EdgeSink::open(&store).unwrap();
        let cps = StateStore::open(&sink, false).await.unwrap();
        let mut garbage = serde_json::Map::new();
        garbage.insert("kind".into(), "checkpoint".into());
        garbage.insert("last_id".into(), "not what you think".into());
        cps.put_raw(checkpoint_id("films", "cp.films", None, None), garbage)
            .await
            .unwrap();
        mongo2qdrant::sink::Sink::flush(&sink).await.unwrap();
    }
    let out = sync_cmd(&m, "cp", "films", &store).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let e = stderr(&out);
    assert!(e.contains("corrupt") && e.contains("--fresh"), "{e}");
    let out = sync_cmd(&m, "cp", "films", &store)
        .arg("--fresh")
        .output()
        .unwrap();
    common::assert_ok(&out);
    assert!(
        sync_cmd(&m, "cp", "films", &store)
            .output()
            .unwrap()
            .status
            .success()
    );
}

/// `--device cuda` with an ONNX Runtime built without CUDA fails and says what to install.
#[test]
fn cuda_without_its_libraries_names_the_fix() {
    let out = bin()
        .args([
            "bench",
            "--generate",
            "4",
            "--runs",
            "1",
            "--device",
            "cuda",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let e = stderr(&out);
    assert!(
        e.contains("CUDA execution provider unavailable")
            && e.contains("onnxruntime-gpu")
            && e.contains("--device cpu"),
        "{e}"
    );
}

/// xorshift64*: the property test's inputs, the same on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Pieces of hostile input: valid and broken Extended JSON, control characters, NUL in keys,
/// out-of-range numbers, deep nesting, arrays as `_id`, invalid UTF-8, truncation.
const VALUES: &[&[u8]] = &[
    b"1",
    b"-9223372036854775809",
    b"1e400",
    b"\"text\"",
    b"\"a\\u0000b\"",
    b"\"\\ud800\"",
    b"null",
    b"[]",
    b"[1, [2, [3]]]",
    b"{}",
    b"{\"$oid\": \"5f1d7f3b2c9e4a0012345678\"}",
    b"{\"$oid\": \"zz\"}",
    b"{\"$numberLong\": \"12\"}",
    b"{\"$numberLong\": \"x\"}",
    b"{\"$numberDecimal\": \"1.5\"}",
    b"{\"$date\": \"2026-01-01T00:00:00Z\"}",
    b"{\"$date\": {\"$numberLong\": \"nope\"}}",
    b"{\"$binary\": {\"base64\": \"AQI=\", \"subType\": \"00\"}}",
    b"{\"$binary\": \"??\"}",
    b"{\"$timestamp\": {\"t\": 1, \"i\": 2}}",
    b"{\"$minKey\": 1}",
    b"{\"$regex\": \"a\", \"$options\": \"\"}",
    b"{\"a\\u0000b\": 1}",
    b"{\"$x\": 1}",
    b"\xff\xfe",
    b"\"\xc3\"",
    b"{\"a\": ",
    b"\t",
];
const KEYS: &[&str] = &[
    "_id", "text", "title", "a", "a.b", "$set", "", "tags", "\u{0}",
];

/// Indices of `VALUES` that are well-formed Extended JSON: a tame line uses only these.
const TAME: &[usize] = &[0, 3, 6, 7, 8, 9, 10, 12, 14, 15, 17, 19, 20];

fn value(rng: &mut Rng, depth: usize, tame: bool, out: &mut Vec<u8>) {
    match rng.below(6) {
        0 if depth < 40 => {
            out.extend_from_slice(b"{\"n\": ");
            value(rng, depth + 1, tame, out);
            out.push(b'}');
        }
        1 if depth < 40 => {
            out.push(b'[');
            value(rng, depth + 1, tame, out);
            out.push(b']');
        }
        _ if tame => out.extend_from_slice(VALUES[TAME[rng.below(TAME.len())]]),
        _ => out.extend_from_slice(VALUES[rng.below(VALUES.len())]),
    }
}

/// One line: half of them tame (documents that parse), half hostile.
fn line(rng: &mut Rng) -> Vec<u8> {
    let tame = rng.below(2) == 0;
    let mut out = b"{".to_vec();
    for i in 0..rng.below(5) {
        if i > 0 {
            out.extend_from_slice(b", ");
        }
        let key = if tame {
            KEYS[rng.below(5)]
        } else {
            KEYS[rng.below(KEYS.len())]
        };
        out.extend_from_slice(format!("{key:?}: ").as_bytes());
        value(rng, 0, tame, &mut out);
    }
    out.push(b'}');
    if !tame && rng.below(5) == 0 {
        out.truncate(rng.below(out.len()));
    }
    out
}

/// No input reaches a panic: random mongoexport files (JSONL and JSON arrays) built from
/// hostile pieces, read by the file source; every document through random templates, the
/// payload copy, the id functions and the continuation filter. Bounded (seeded) here; each
/// case prints its seed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_files_templates_and_ids_never_panic() {
    use mongo2qdrant::source::{FileSource, Namespace, SourceItem};
    let dir = tempfile::tempdir().unwrap();
    let ns = Namespace {
        database: "p".into(),
        collection: "q".into(),
    };
    let (mut docs, mut bad) = (0, 0);
    for seed in 1..=40u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let lines: Vec<Vec<u8>> = (0..60).map(|_| line(&mut rng)).collect();
        let body = if rng.below(3) == 0 {
            let mut b = b"[".to_vec();
            b.extend(lines.join(&b", "[..]));
            b.push(b']');
            b
        } else {
            lines.join(&b"\n"[..])
        };
        let path = dir.path().join(format!("case{seed}.json"));
        std::fs::write(&path, &body).unwrap();
        let source = FileSource::new(path, ns.clone());
        let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
        let read = tokio::spawn(async move { source.stream(&tx).await });
        let templates: Vec<String> = (0..8)
            .map(|_| {
                (0..rng.below(14))
                    .map(|_| {
                        ["{", "}", "{{", "text", "a.b", "\\n", "title", ".", " ", "$"]
                            [rng.below(10)]
                    })
                    .collect()
            })
            .collect();
        while let Some(item) = rx.recv().await {
            let SourceItem::Doc(d) = item else {
                bad += 1;
                continue;
            };
            docs += 1;
            for t in &templates {
                if let Ok(t) = mongo2qdrant::text::Template::parse(t) {
                    let _ = t.render(&d.doc);
                }
            }
            let _ = mongo2qdrant::text::payload_fields(
                &d.doc,
                &["a.b".into(), "tags".into(), "".into()],
            );
            let _ = mongo2qdrant::ids::check_id(&d.id);
            let _ = mongo2qdrant::ids::point_id("p", "q", &d.id, 3);
            let _ = mongo2qdrant::source::id_text(&d.id);
            let _ = mongo2qdrant::source::mongo::after_id(&d.id);
        }
        let r = read.await;
        assert!(r.is_ok(), "seed {seed}: the file source panicked");
    }
    // The generator makes both kinds: a test that only ever saw errors would prove little.
    assert!(docs > 100 && bad > 100, "docs {docs}, bad {bad}");
}
