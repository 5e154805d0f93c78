//! Cron and bad days, on real processes: concurrent runs, SIGTERM, the MongoDB server dying
//! mid-run, and ten SIGKILLs at random moments. Each ends identical to an uninterrupted run.

use crate::common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use crate::common::{Mongo, bin, edge_snapshot, load_movies, sync_cmd, wait_timeout};

/// Reference: an uninterrupted run into a fresh store.
async fn reference(m: &Mongo, db: &str, coll: &str, dir: &Path) -> Vec<(uuid::Uuid, String)> {
    let store = dir.join("reference");
    let out = sync_cmd(m, db, coll, &store).output().unwrap();
    common::assert_ok(&out);
    edge_snapshot(&store, coll).await
}

/// Wait until the run's stderr shows `units` acknowledged units (debug log). The pipe keeps
/// being drained afterwards, so the child never writes into a closed pipe.
fn wait_for_progress(child: &mut Child, units: usize) {
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut seen = 0;
        for line in stderr.lines() {
            let Ok(line) = line else { break };
            if line.contains("checkpoint advanced") {
                seen += 1;
                if seen == units {
                    let _ = tx.send(());
                }
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(300))
        .expect("the run ended before enough units were acknowledged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_concurrent_runs_one_proceeds_one_is_locked() {
    let m = Mongo::start();
    load_movies(&m, "c", "films", 240).await;
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let mut first = sync_cmd(&m, "c", "films", &store).spawn().unwrap();
    // The first run writes its name into the lock file once it holds the lock.
    let lock = store.join(".mongo2qdrant.lock");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::read_to_string(&lock).map_or(true, |s| !s.contains("run_id")) {
        assert!(Instant::now() < deadline, "first run never took the lock");
        std::thread::sleep(Duration::from_millis(20));
    }
    let second = sync_cmd(&m, "c", "films", &store).output().unwrap();
    assert_eq!(second.status.code(), Some(4), "locked exit code");
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(
        err.contains("locked by run") && err.contains("pid"),
        "{err}"
    );
    // Reading the store while it is written is refused too (opening a shard flushes it).
    let search = bin()
        .args(["search", "a film", "--collection-name", "films"])
        .arg("--qdrant-path")
        .arg(&store)
        .output()
        .unwrap();
    assert_eq!(
        search.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&search.stderr)
    );
    let status = wait_timeout(&mut first, 300).expect("first run finishes");
    assert!(status.success());
    let snap = edge_snapshot(&store, "films").await;
    assert_eq!(snap.len(), 240, "every document once, nothing duplicated");
    assert_eq!(snap, reference(&m, "c", "films", dir.path()).await);
    // The lock is gone with its holder: the next run proceeds.
    assert!(
        sync_cmd(&m, "c", "films", &store)
            .output()
            .unwrap()
            .status
            .success()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_run_then_rerun_is_identical() {
    let m = Mongo::start();
    load_movies(&m, "t", "films", 200).await;
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let report = dir.path().join("r.json");
    let mut child = sync_cmd(&m, "t", "films", &store)
        .env("M2Q_LOG", "mongo2qdrant=debug")
        .arg("--report-json")
        .arg(&report)
        .spawn()
        .unwrap();
    wait_for_progress(&mut child, 2);
    let t = Instant::now();
    // SIGTERM
    assert!(
        std::process::Command::new("kill")
            .arg(child.id().to_string())
            .status()
            .unwrap()
            .success()
    );
    let status = wait_timeout(&mut child, 60).expect("stops within the grace period");
    assert!(t.elapsed() < Duration::from_secs(30));
    assert_eq!(status.code(), Some(5), "interrupted exit code");
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(r["status"], "interrupted");
    assert_eq!(r["exit_status"], 5);
    let done = r["upserted"].as_u64().unwrap();
    assert!(done > 0 && done < 200, "{r}");

    let r2 = dir.path().join("r2.json");
    let out = sync_cmd(&m, "t", "films", &store)
        .arg("--report-json")
        .arg(&r2)
        .output()
        .unwrap();
    common::assert_ok(&out);
    let r2: serde_json::Value = serde_json::from_slice(&std::fs::read(&r2).unwrap()).unwrap();
    assert_eq!(
        r2["embedded"].as_u64().unwrap(),
        200 - done,
        "only the rest is embedded"
    );
    assert_eq!(
        edge_snapshot(&store, "films").await,
        reference(&m, "t", "films", dir.path()).await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongodb_dies_mid_run_then_rerun_is_identical() {
    let m = Mongo::start();
    load_movies(&m, "k", "films", 200).await;
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let mut child = sync_cmd(&m, "k", "films", &store)
        .env("M2Q_LOG", "mongo2qdrant=debug")
        .args(["--cursor-batch", "10", "--retries", "2"])
        .spawn()
        .unwrap();
    wait_for_progress(&mut child, 1);
    m.kill();
    std::thread::sleep(Duration::from_secs(2));
    m.restart();
    // With retries it may finish on its own; without, it fails cleanly. Either way:
    let status = wait_timeout(&mut child, 300).expect("the run ends");
    assert!(matches!(status.code(), Some(0) | Some(1)), "{status:?}");
    let out = sync_cmd(&m, "k", "films", &store).output().unwrap();
    common::assert_ok(&out);
    let snap = edge_snapshot(&store, "films").await;
    assert_eq!(snap.len(), 200);
    assert_eq!(snap, reference(&m, "k", "films", dir.path()).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_sigkills_at_random_moments_then_identical() {
    let m = Mongo::start();
    load_movies(&m, "r", "films", 300).await;
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    // A fixed xorshift sequence: "random" moments that replay identically.
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    let mut kills = Vec::new();
    for _ in 0..10 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let after = Duration::from_millis(300 + x % 2500);
        let mut child = sync_cmd(&m, "r", "films", &store).spawn().unwrap();
        std::thread::sleep(after);
        let finished = child.try_wait().unwrap().is_some();
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        kills.push((after.as_millis(), finished));
    }
    let report = dir.path().join("final.json");
    let out = sync_cmd(&m, "r", "films", &store)
        .arg("--report-json")
        .arg(&report)
        .output()
        .unwrap();
    common::assert_ok(&out);
    let snap = edge_snapshot(&store, "films").await;
    let mut ids: Vec<_> = snap.iter().map(|(id, _)| *id).collect();
    ids.dedup();
    assert_eq!(
        ids.len(),
        300,
        "nothing missing, nothing duplicated ({kills:?})"
    );
    assert_eq!(snap, reference(&m, "r", "films", dir.path()).await);
    eprintln!("kills (ms after start, already finished): {kills:?}");
}

/// The server-side lease logic (what the gRPC target uses per namespace), on the real engine as
/// the record store: a live lease refuses others and names its holder, a released or expired
/// one does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_refuse_live_holders_and_expire() {
    use mongo2qdrant::state::StateStore;
    use mongo2qdrant::state::lease::{Holder, LockError, acquire, read_lease, release};

    let (_dir, sink) = common::edge_sink();
    let store = StateStore::open(sink.as_ref(), true).await.unwrap();
    let a = Holder::me("run-a");
    let b = Holder::me("run-b");
    acquire(&store, "films", "db.films", &a).await.unwrap();
    let held = read_lease(&store, "films", "db.films")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(held.run_id, "run-a");
    assert!(held.expires_at > 0);

    let err = acquire(&store, "films", "db.films", &b).await.unwrap_err();
    assert!(matches!(err, LockError::Held { .. }));
    assert!(err.to_string().contains("run-a"), "{err}");
    // Another namespace is independent.
    acquire(&store, "films", "db.other", &b).await.unwrap();

    release(&store, "films", "db.films", &a).await.unwrap();
    acquire(&store, "films", "db.films", &b).await.unwrap();

    // A holder that died stops renewing: once expired, its lease no longer counts.
    let mut dead = Holder::me("run-dead");
    dead.expires_at = 1;
    crate::common::plant_lease(&store, &dead, "films", "db.gone").await;
    assert_eq!(
        read_lease(&store, "films", "db.gone")
            .await
            .unwrap()
            .unwrap()
            .run_id,
        "run-dead"
    );
    acquire(&store, "films", "db.gone", &a).await.unwrap();
}

/// After a kill -9 the lease of the dead run is still live for up to a minute; a rerun on the
/// same host takes it over at once when that process no longer exists (a restarted Kubernetes
/// pod), but never from a live process, and never from another host before expiry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_of_a_dead_process_on_this_host_is_taken_over() {
    use mongo2qdrant::state::StateStore;
    use mongo2qdrant::state::lease::{Holder, LockError, acquire, read_lease, renew};

    let (_dir, sink) = common::edge_sink();
    let store = StateStore::open(sink.as_ref(), true).await.unwrap();
    let mut other = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    // The holder is another process of this host (`sleep` stands in for it).
    let mut alive = Holder::me("run-alive");
    alive.pid = other.id();
    alive.process = "another process".into();
    acquire(&store, "films", "db.films", &alive).await.unwrap();
    let me = Holder::me("run-me");
    assert!(
        acquire(&store, "films", "db.films", &me).await.is_err(),
        "a live process keeps its lease"
    );
    other.kill().unwrap();
    other.wait().unwrap();
    acquire(&store, "films", "db.films", &me).await.unwrap();
    let held = read_lease(&store, "films", "db.films")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(held.run_id, "run-me");
    // The run it was taken from cannot renew it back (compare, then write).
    let err = renew(&store, "films", "db.films", &alive)
        .await
        .unwrap_err();
    assert!(matches!(err, LockError::Lost { .. }), "{err}");
    renew(&store, "films", "db.films", &me).await.unwrap();

    // Another host's lease is judged by its expiry only.
    let mut remote = Holder::me("run-remote");
    remote.host = "elsewhere".into();
    remote.pid = 999_999;
    remote.process = "a process elsewhere".into();
    acquire(&store, "films", "db.remote", &remote)
        .await
        .unwrap();
    assert!(acquire(&store, "films", "db.remote", &me).await.is_err());
}

/// The `run_id` of record `id`, if it exists.
async fn holder_of<S: mongo2qdrant::sink::Sink>(sink: &S, id: uuid::Uuid) -> Option<String> {
    sink.retrieve(
        mongo2qdrant::state::RECORDS_COLLECTION,
        &[id],
        mongo2qdrant::sink::Fields::All,
        false,
    )
    .await
    .unwrap()
    .first()
    .map(|p| p.payload["run_id"].as_str().unwrap().to_owned())
}

/// Lease writes are compare-and-set on the target itself: a write conditioned on the record
/// being absent, or held by a given run, never overwrites what another run wrote in between
/// (before, renewal and takeover read the record and then wrote it unconditionally).
async fn lease_writes_are_compare_and_set_on_the_target<S: mongo2qdrant::sink::Sink>(
    sink: std::sync::Arc<S>,
) {
    use mongo2qdrant::sink::{MatchFilter, Point, WriteIf};
    use mongo2qdrant::state::StateStore;
    use mongo2qdrant::state::lease::{Holder, acquire, read_lease};

    let store = StateStore::open(sink.as_ref(), true).await.unwrap();
    let records = mongo2qdrant::state::RECORDS_COLLECTION;
    let id = uuid::Uuid::new_v4();
    let point = |who: &str| {
        let mut payload = serde_json::Map::new();
        payload.insert("run_id".into(), who.into());
        Point {
            id,
            vector: vec![1.0],
            sparse: None,
            payload,
        }
    };
    let by = |who: &str| MatchFilter {
        key: "run_id".into(),
        value: who.into(),
    };
    sink.upsert_if(records, point("a"), WriteIf::Matches(&by("a")))
        .await
        .unwrap();
    assert_eq!(
        holder_of(sink.as_ref(), id).await,
        None,
        "a conditional update inserts nothing"
    );
    sink.upsert_if(records, point("a"), WriteIf::Absent)
        .await
        .unwrap();
    assert_eq!(holder_of(sink.as_ref(), id).await.as_deref(), Some("a"));
    sink.upsert_if(records, point("b"), WriteIf::Absent)
        .await
        .unwrap();
    assert_eq!(
        holder_of(sink.as_ref(), id).await.as_deref(),
        Some("a"),
        "present: not absent"
    );
    sink.upsert_if(records, point("b"), WriteIf::Matches(&by("z")))
        .await
        .unwrap();
    assert_eq!(
        holder_of(sink.as_ref(), id).await.as_deref(),
        Some("a"),
        "held by another run"
    );
    sink.upsert_if(records, point("b"), WriteIf::Matches(&by("a")))
        .await
        .unwrap();
    assert_eq!(holder_of(sink.as_ref(), id).await.as_deref(), Some("b"));

    // Two runs racing for free leases: exactly one of them gets each.
    let target = common::unique("race");
    for i in 0..8 {
        let ns = format!("db.c{i}");
        let (a, b) = (Holder::me("race-a"), Holder::me("race-b"));
        let (ra, rb) = tokio::join!(
            acquire(&store, &target, &ns, &a),
            acquire(&store, &target, &ns, &b)
        );
        assert!(ra.is_ok() != rb.is_ok(), "{i}: {ra:?} {rb:?}");
        let held = read_lease(&store, &target, &ns).await.unwrap().unwrap();
        let winner = if ra.is_ok() { "race-a" } else { "race-b" };
        assert_eq!(held.run_id, winner);
    }
}

both_targets!(lease_writes_are_compare_and_set_on_the_target);
