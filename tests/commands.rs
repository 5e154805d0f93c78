//! The `bench`, `status` and `search` commands on the real binary.

use crate::common;

use crate::common::{Mongo, bin, load_movies, sync_cmd};

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

/// `bench --fidelity`: the compute it ran on and the comparison with fp32 are reported. On a
/// CPU that cannot compute bf16 (AVX2 only, AVX-512 without BF16), `--precision bf16` is refused
/// instead: what is expected follows this CPU's own flags.
#[test]
fn bench_reports_its_precision_and_fidelity() {
    if !common::cpu_computes_bf16() {
        let out = bin()
            .args([
                "bench",
                "--generate",
                "20",
                "--runs",
                "1",
                "--precision",
                "bf16",
            ])
            .output()
            .unwrap();
        assert_refuses_bf16(&out);
        return;
    }
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
    // A CPU that computes no bf16 (AVX2 only, as AMD Zen 3): auto is fp32 there.
    let zen4 = "avx2 fma";
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
    if common::cpu_computes_bf16() {
        assert_eq!(run(xeon, &["--precision", "bf16"]).0, 24);
    } else {
        // Flags that claim bf16 do not make this CPU compute it: refused, nothing written.
        let fp32 = common::edge_snapshot(&store, "films").await;
        let out = sync_cmd(&m, "p", "films", &store)
            .env("M2Q_CPU_FLAGS", xeon)
            .args(["--precision", "bf16"])
            .output()
            .unwrap();
        assert_refuses_bf16(&out);
        assert_eq!(common::edge_snapshot(&store, "films").await, fp32);
    }
    assert_ne!(common::edge_snapshot(&store, "films").await, before);
}

/// `--precision bf16` where the CPU cannot compute bf16: exit 2 naming the lack and the fix.
fn assert_refuses_bf16(out: &std::process::Output) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--precision bf16 needs a CPU that computes bf16")
            && err.contains("avx512_bf16")
            && err.contains("--precision fp32"),
        "{err}"
    );
}

/// On any CPU, flags without bf16 (an AVX2-only CPU) refuse an explicit `--precision bf16`
/// before anything is read or written, and `auto` computes fp32 there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_explicit_bf16_is_refused_on_a_cpu_without_bf16() {
    let m = Mongo::start();
    load_movies(&m, "nb", "films", 8).await;
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let out = sync_cmd(&m, "nb", "films", &store)
        .env("M2Q_CPU_FLAGS", "fpu sse4_2 avx fma avx2")
        .args(["--precision", "bf16"])
        .output()
        .unwrap();
    assert_refuses_bf16(&out);
    assert!(String::from_utf8_lossy(&out.stderr).contains("its best: avx2"));
    assert!(!store.join("films").exists(), "nothing written");
    let report = dir.path().join("report.json");
    let out = sync_cmd(&m, "nb", "films", &store)
        .env("M2Q_CPU_FLAGS", "fpu sse4_2 avx fma avx2")
        .arg("--report-json")
        .arg(&report)
        .output()
        .unwrap();
    common::assert_ok(&out);
    let r = common::read_json(&report);
    assert_eq!(r["compute"]["precision"], "fp32");
    assert_eq!(r["compute"]["isa"], "avx2");
    assert_eq!(r["embedded"], 8);
}

/// The target a run writes to is the one asked for: `--qdrant-path` on the command line
/// outranks `QDRANT_URL` in the environment (here a server that is not there), and the summary,
/// the report and `status` name the store written. Both flags at once exit 2 naming both.
#[test]
fn an_explicit_store_outranks_qdrant_url_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let report = dir.path().join("r.json");
    let nowhere = "http://user:secret@127.0.0.1:9";
    let demo = common::repo().join("tests/data/demo.jsonl");
    let sync = || {
        let mut c = bin();
        c.env("QDRANT_URL", nowhere)
            .args(["sync", "--text", "{title}\n{body}", "--file"])
            .arg(&demo)
            .args(["--namespace", "demo.notes"]);
        c
    };
    let out = sync()
        .arg("--qdrant-path")
        .arg(&store)
        .arg("--report-json")
        .arg(&report)
        .output()
        .unwrap();
    common::assert_ok(&out);
    let shown = format!("embedded Qdrant at {}", store.display());
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(summary.contains(&format!("into {shown}:")), "{summary}");
    let r = common::read_json(&report);
    assert_eq!(r["store"], shown.as_str());
    assert!(r["upserted"].as_u64().unwrap() > 0, "{r}");
    let status = bin()
        .env("QDRANT_URL", nowhere)
        .arg("status")
        .arg("--qdrant-path")
        .arg(&store)
        .output()
        .unwrap();
    common::assert_ok(&status);
    assert!(String::from_utf8_lossy(&status.stdout).starts_with(&shown));

    // Two targets at one level: refused, naming both, with the password masked.
    let out = sync()
        .arg("--qdrant-path")
        .arg(&store)
        .args(["--qdrant-url", nowhere])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("two targets asked for: --qdrant-url http://user:***@127.0.0.1:9")
            && err.contains(&format!("--qdrant-path {}", store.display()))
            && !err.contains("secret"),
        "{err}"
    );
    // Without a flag, a store path from the environment is used when no URL is there.
    let elsewhere = dir.path().join("from_env");
    let mut c = sync();
    c.env_remove("QDRANT_URL")
        .env("M2Q_QDRANT_PATH", &elsewhere);
    common::assert_ok(&c.output().unwrap());
    assert!(elsewhere.join("notes").is_dir());
}

/// Hostile MongoDB URIs (a password with an unescaped `/`, a TLS key password in the query,
/// malformed ones): no credential is printed, in any message or log line.
#[test]
fn credentials_in_a_mongodb_uri_are_never_printed() {
    let dir = tempfile::tempdir().unwrap();
    for (uri, secrets) in [
        (
            "mongodb://bob:hunter/2secret@127.0.0.1:1/?serverSelectionTimeoutMS=300",
            &["hunter", "2secret"][..],
        ),
        (
            "mongodb://bob:s3cretpw@127.0.0.1:1/?serverSelectionTimeoutMS=300&tls=true&tlsCertificateKeyFilePassword=k3ypass",
            &["s3cretpw", "k3ypass"],
        ),
        ("mongodb://bob:pass:word99@", &["word99"]),
        ("mongodb://bob:topsecret@127.0.0.1:1:2:3/x", &["topsecret"]),
        ("bob:plainsecret@127.0.0.1", &["plainsecret"]),
    ] {
        let out = bin()
            .env("M2Q_LOG", "debug")
            .args([
                "sync",
                "--database",
                "d",
                "--collection",
                "c",
                "--mongo-uri",
                uri,
            ])
            .arg("--qdrant-path")
            .arg(dir.path().join("store"))
            .output()
            .unwrap();
        assert_ne!(out.status.code(), Some(0), "{uri}");
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        for s in secrets {
            assert!(!all.contains(s), "{uri}: {s} printed in\n{all}");
        }
    }
}

/// Issue 23.4: a binary copied elsewhere and started from `/` with only source and target flags
/// finds the model, ONNX Runtime and OpenVINO in the model cache (`$M2Q_HOME/models`, which
/// `models/fetch.sh` fills). Before, it looked under `models/cache` in the working directory
/// and failed. Without a cache it names the fix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copied_binary_runs_from_root_without_model_flags() {
    let m = Mongo::start();
    load_movies(&m, "anywhere", "films", 12).await;
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("mongo2qdrant");
    std::fs::copy(env!("CARGO_BIN_EXE_mongo2qdrant"), &exe).unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let run = |home: &std::path::Path| {
        let mut c = std::process::Command::new(&exe);
        for var in [
            "M2Q_MODEL",
            "ORT_DYLIB_PATH",
            "M2Q_OPENVINO_LIB",
            "M2Q_PRECISION",
        ] {
            c.env_remove(var);
        }
        c.current_dir("/")
            .env("M2Q_HOME", home)
            .args(["sync", "--quiet", "--mongo-uri", &m.uri()])
            .args(["--database", "anywhere", "--collection", "films"])
            .args(["--text", "{title}", "--qdrant-path"])
            .arg(dir.path().join("store"))
            .output()
            .unwrap()
    };
    let out = run(&home);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("bash models/fetch.sh") && err.contains(&home.display().to_string()),
        "names the fix and where it looked: {err}"
    );

    std::os::unix::fs::symlink(common::repo().join("models/cache"), home.join("models")).unwrap();
    common::assert_ok(&run(&home));
}
