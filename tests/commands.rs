//! The `bench`, `status` and `search` commands on the real binary.

mod common;

use common::{Mongo, bin, load_movies, sync_cmd};

#[test]
fn bench_sweeps_layouts_and_reports_the_split() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let out = bin()
        .args(["bench", "--generate", "64", "--words", "30", "--runs", "2"])
        .args(["--batch-sizes", "4,16", "--layouts", "1x1,2x1", "--upsert"])
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    common::assert_ok(&out);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("docs/s") && table.contains("padding"),
        "{table}"
    );
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let rows = r["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 4, "2 layouts x 2 batch sizes");
    for row in rows {
        assert_eq!(row["docs"], 64);
        assert!(row["docs_per_sec"].as_f64().unwrap() > 0.0);
        assert!(row["tokens"].as_u64().unwrap() > 64 * 10);
        assert!(row["infer_secs"].as_f64().unwrap() > 0.0);
        assert!(row["upsert_secs"].as_f64().unwrap() > 0.0);
        let pad = row["padding_ratio"].as_f64().unwrap();
        assert!((0.0..0.5).contains(&pad), "{pad}");
    }
    assert!(r["device"].as_str().unwrap().len() > 3);
    assert_eq!(
        r["cores"].as_u64().unwrap() as usize,
        mongo2qdrant::embed::available_cores()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_search_after_a_sync() {
    let m = Mongo::start();
    load_movies(&m, "s", "films", 30).await;
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    // Before any sync the store does not exist: said so, not shown as an empty store.
    let out = bin()
        .args(["status", "--json"])
        .arg("--qdrant-path")
        .arg(&store)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no embedded store"));

    common::assert_ok(&sync_cmd(&m, "s", "films", &store).output().unwrap());
    let out = bin()
        .args(["status", "--json"])
        .arg("--qdrant-path")
        .arg(&store)
        .output()
        .unwrap();
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let cp = &s["checkpoints"][0];
    assert_eq!(cp["namespace"], "s.films");
    assert_eq!(cp["complete"], true);
    assert_eq!(s["last_run"]["embedded"], 30);
    assert_eq!(s["last_run"]["status"], "ok");
    assert_eq!(s["last_run"]["exit_status"], 0);

    // search finds the film by a paraphrase of its own title and extract
    let films = common::movies(30);
    let title = films[7].get_str("title").unwrap().to_owned();
    let extract = films[7].get_str("extract").unwrap();
    let query: String = extract
        .split_whitespace()
        .take(25)
        .collect::<Vec<_>>()
        .join(" ");
    let out = bin()
        .args([
            "search",
            &query,
            "--collection-name",
            "films",
            "-k",
            "3",
            "--json",
        ])
        .arg("--qdrant-path")
        .arg(&store)
        .output()
        .unwrap();
    common::assert_ok(&out);
    let first: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().next().unwrap()).unwrap();
    assert_eq!(first["payload"]["title"], title.as_str());
    assert!(first["score"].as_f64().unwrap() > 0.5);
}

/// `bench --fidelity`: the compute it ran on and the comparison with fp32 are reported.
#[test]
fn bench_reports_its_precision_and_fidelity() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let out = bin()
        .args(["bench", "--generate", "120", "--words", "40", "--runs", "1"])
        .args(["--batch-sizes", "16", "--precision", "bf16", "--fidelity"])
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    common::assert_ok(&out);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("compute: ") && table.contains("on openvino"),
        "{table}"
    );
    assert!(
        table.contains("fidelity bf16 vs fp32 over 120 texts"),
        "{table}"
    );
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(r["compute"]["runtime"], "openvino");
    let f = &r["fidelity"];
    assert_eq!(f["against"], "fp32");
    assert!(f["cosine_min"].as_f64().unwrap() >= 0.999, "{f}");
    let recall = f["recall_at_10"].as_f64().unwrap();
    assert!((0.5..=1.0).contains(&recall), "{f}");
    assert_eq!(f["queries"], 100);
}

/// `auto` never re-embeds because a run landed on another kind of CPU (a CronJob on mixed
/// nodes): a run on an AMX CPU (bf16) and one on a CPU without AMX (fp32) share every content
/// hash. An explicit `--precision` is part of the hash: choosing it re-embeds once, like a
/// model change, and then skips. (`M2Q_CPU_FLAGS` stands in for the two kinds of CPU.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_precision_keeps_hashes_across_cpu_kinds_and_an_explicit_one_reembeds() {
    let m = Mongo::start();
    load_movies(&m, "p", "films", 24).await;
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let report = dir.path().join("report.json");
    let run = |flags: &str, precision: &[&str]| {
        let out = sync_cmd(&m, "p", "films", &store)
            .env("M2Q_CPU_FLAGS", flags)
            .args(precision)
            .arg("--report-json")
            .arg(&report)
            .output()
            .unwrap();
        common::assert_ok(&out);
        let r: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
        (
            r["embedded"].as_u64().unwrap(),
            r["skipped_unchanged"].as_u64().unwrap(),
            r["compute"]["precision"].as_str().unwrap().to_owned(),
            r["compute"]["runtime"].as_str().unwrap().to_owned(),
        )
    };
    let xeon = "avx2 avx512f avx512_bf16 amx_tile amx_bf16 amx_int8";
    let zen4 = "avx2 avx512f avx512_bf16 avx512_vnni";
    let (embedded, _, _, runtime) = run(xeon, &[]);
    assert_eq!((embedded, runtime.as_str()), (24, "openvino"));
    let before = common::edge_snapshot(&store, "films").await;
    let (embedded, skipped, precision, runtime) = run(zen4, &[]);
    assert_eq!(
        (embedded, skipped),
        (0, 24),
        "auto re-embedded on another CPU"
    );
    assert_eq!(
        (precision.as_str(), runtime.as_str()),
        ("fp32", "onnxruntime")
    );
    assert_eq!(common::edge_snapshot(&store, "films").await, before);

    // An explicit precision re-embeds once, then skips.
    let (embedded, _, precision, _) = run(xeon, &["--precision", "fp32"]);
    assert_eq!((embedded, precision.as_str()), (24, "fp32"));
    assert_eq!(run(zen4, &["--precision", "fp32"]).0, 0);
    assert_eq!(run(xeon, &["--precision", "bf16"]).0, 24);
    assert_ne!(common::edge_snapshot(&store, "films").await, before);
}
