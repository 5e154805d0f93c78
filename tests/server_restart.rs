//! The Qdrant server restarted under a run: a refused connection (which the client reports as
//! gRPC status 13, Internal) is retried under `--retries` with backoff, and the run ends as if
//! nothing had happened. Each test starts a server of its own (`../shared/qdrant/start.sh`, or
//! the script `M2Q_QDRANT_START` names) on fixed ports and storage, so that it can stop it and
//! bring it back at the same address with the same data.

use std::io::{BufRead, BufReader};
use std::process::Child;
use std::time::Duration;

use crate::common::server::Server;
use crate::common::{self, Mongo, load_movies, wait_timeout};

/// Wait until the run's stderr shows its first acknowledged unit; keep draining it after.
fn wait_for_a_checkpoint(child: &mut Child) {
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines() {
            let Ok(line) = line else { break };
            if line.contains("checkpoint advanced") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(300))
        .expect("the run ended before a unit was acknowledged");
}

/// The server killed after the first acknowledged unit and back 3 s later: the run retries the
/// refused connections, exits 0 and leaves every document's point; a rerun finds all unchanged.
#[test]
#[ignore = "needs a Qdrant server: tests/run.sh starts one and runs these; or set QDRANT_URL and pass --include-ignored"]
fn a_sync_rides_out_a_restart_of_the_server() {
    let mut server = Server::start();
    let url = server.url();
    let m = Mongo::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(load_movies(&m, "rs", "films", 160));
    let sync = || {
        let mut c = common::bin();
        c.args([
            "sync",
            "--quiet",
            "--database",
            "rs",
            "--collection",
            "films",
        ])
        .args(["--mongo-uri", &m.uri(), "--qdrant-url", &url])
        .args(["--text", r"{title}\n{extract}", "--batch-size", "16"])
        .args(["--retries", "8"]);
        c
    };
    let mut child = sync().env("M2Q_LOG", "mongo2qdrant=debug").spawn().unwrap();
    wait_for_a_checkpoint(&mut child);
    server.kill();
    std::thread::sleep(Duration::from_secs(3));
    server.up();
    let status = wait_timeout(&mut child, 300).expect("the run ends");
    assert_eq!(status.code(), Some(0), "the restart was retried, not fatal");

    let report = tempfile::NamedTempFile::new().unwrap();
    let out = sync()
        .arg("--report-json")
        .arg(report.path())
        .output()
        .unwrap();
    common::assert_ok(&out);
    let r = common::read_json(report.path());
    assert_eq!(
        r["skipped_unchanged"], 160,
        "every document was written: {r}"
    );
    assert_eq!(r["embedded"], 0, "{r}");
}
