//! A killed run (SIGKILL mid-run) resumes from its checkpoint and ends identical to an
//! uninterrupted run, without redoing what the first run had acknowledged.

use crate::common;

use std::io::{BufRead, BufReader};
use std::process::Command;

use crate::common::Mongo;
use mongodb::bson::{Bson, Document};

const BATCH: usize = 16;

fn sync_cmd(m: &Mongo, store: &std::path::Path, report: Option<&std::path::Path>) -> Command {
    let mut c = common::bin();
    c.args(["sync", "--database", "kill", "--collection", "films"])
        .args(["--mongo-uri", &m.uri()])
        .args(["--text", r"{title}\n{extract}", "--payload", "title"])
        .args(["--batch-size", &BATCH.to_string()])
        .arg("--qdrant-path")
        .arg(store)
        .env("M2Q_LOG", "mongo2qdrant=debug");
    if let Some(r) = report {
        c.arg("--report-json").arg(r);
    }
    c
}

fn report(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

async fn snapshot(store: &std::path::Path) -> Vec<(uuid::Uuid, String)> {
    common::edge_snapshot(store, "films").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_run_then_resume_matches_uninterrupted_run() {
    let m = Mongo::start();
    let total = 240;
    let docs: Vec<Document> = common::movies(total)
        .into_iter()
        .enumerate()
        .map(|(i, mut d)| {
            d.insert("_id", Bson::Int32(i as i32));
            d
        })
        .collect();
    m.insert("kill", "films", docs).await;
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("killed");

    // First run: kill it once a few units are acknowledged.
    let mut child = sync_cmd(&m, &store, None).spawn().unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let mut acked = 0u64;
    let mut lines = Vec::new();
    for line in stderr.lines() {
        let line = line.unwrap();
        if line.contains("checkpoint advanced") {
            let n: u64 = line
                .split("upserted=")
                .nth(1)
                .and_then(|s| s.split_whitespace().next())
                .and_then(|s| s.parse().ok())
                .unwrap();
            acked = n;
            if n >= 3 * BATCH as u64 {
                break;
            }
        }
        lines.push(line);
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(acked >= 3 * BATCH as u64, "never saw progress: {lines:#?}");
    assert!(acked < total as u64, "the run finished before the kill");

    // Second run resumes.
    let r2_path = tmp.path().join("r2.json");
    let out = sync_cmd(&m, &store, Some(&r2_path)).output().unwrap();
    common::assert_ok(&out);
    let r2 = report(&r2_path);
    let read2 = r2["read"].as_u64().unwrap();
    let embedded2 = r2["embedded"].as_u64().unwrap();
    assert!(
        r2["namespaces"][0]["resumed_after"].is_string(),
        "second run resumed from the checkpoint: {r2}"
    );
    // Nothing the first run had acknowledged is embedded again, and it is not even read again.
    assert!(
        embedded2 <= total as u64 - acked,
        "{embedded2} > {total} - {acked}"
    );
    assert!(read2 <= total as u64 - acked, "{read2} > {total} - {acked}");
    assert!(read2 > 0);

    // Uninterrupted reference run into a fresh store.
    let clean = tmp.path().join("clean");
    let out = sync_cmd(&m, &clean, None).output().unwrap();
    common::assert_ok(&out);
    let (a, b) = (snapshot(&store).await, snapshot(&clean).await);
    assert_eq!(a.len(), total);
    assert_eq!(a, b, "killed+resumed target equals the uninterrupted one");

    // A third run has nothing to do.
    let r3_path = tmp.path().join("r3.json");
    let out = sync_cmd(&m, &store, Some(&r3_path)).output().unwrap();
    common::assert_ok(&out);
    let r3 = report(&r3_path);
    assert_eq!(r3["embedded"], 0);
    assert_eq!(r3["skipped_unchanged"], total as u64);
}
