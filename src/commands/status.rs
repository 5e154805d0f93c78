//! `status`: each namespace's checkpoint, its change-stream position (`watch`), the leases and
//! the last run's report, from the typed
//! records of the records collection.

use std::process::ExitCode;

use serde::Serialize;

use super::open_target;
use crate::cli::StatusArgs;
use crate::point::route;
use crate::report::RunReport;
use crate::shard::Shard;
use crate::sink::{Sink, TargetKind};
use crate::state::bulk::{BulkDone, BulkLoad};
use crate::state::{
    Checkpoint, Lease, LockError, Phase, Record, StateStore, WatchState, lock_store,
};

/// What `status` shows (and prints as JSON with `--json`).
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Status {
    /// A run holds the embedded store: who, without touching its files.
    Locked {
        store: String,
        locked_by: String,
        note: &'static str,
    },
    Records {
        target: String,
        checkpoints: Vec<Checkpoint>,
        /// Change-stream positions of `watch`.
        watches: Vec<WatchState>,
        /// Bulk loads under way (HNSW graph building off).
        bulk_loads: Vec<BulkStatus>,
        leases: Vec<Lease>,
        last_run: Option<Box<RunReport>>,
        /// The vectors each target collection holds, dense and sparse.
        collections: Vec<Collection>,
    },
}

/// A target collection's vectors, as the target describes them.
#[derive(Debug, Serialize)]
pub struct Collection {
    pub name: String,
    /// `NAME: DIMENSION DISTANCE` (`""` the unnamed vector).
    pub dense: Vec<String>,
    /// `NAME` with ` (idf)` where the `idf` modifier is on.
    pub sparse: Vec<String>,
    /// Payload indexes, `FIELD:TYPE` (`:tenant` for the tenant field).
    pub indexes: Vec<String>,
    /// Its settings, `key=value` (quantization, HNSW, on-disk, ...).
    pub settings: Vec<String>,
    /// Each setting the latest run asked for that the collection no longer has:
    /// `key: asked A at T, now B`.
    pub drift: Vec<String>,
}

/// The vectors of every collection named by a checkpoint.
async fn collections(
    target: &crate::sink::Target,
    checkpoints: &[Checkpoint],
    asked: &[crate::state::AskedSettings],
    bulk: &[&str],
) -> Vec<Collection> {
    let mut names: Vec<&str> = checkpoints.iter().map(|c| c.target.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    let mut out = Vec::new();
    for name in names {
        let Ok(Some(shape)) = target.shape(name).await else {
            continue;
        };
        let dense = match shape {
            crate::sink::Shape::Unnamed(p) => {
                vec![format!("(unnamed): {} {}", p.dimension, p.distance)]
            }
            crate::sink::Shape::Named(m) => m
                .iter()
                .map(|(k, p)| format!("{k}: {} {}", p.dimension, p.distance))
                .collect(),
        };
        let sparse = target
            .sparse_vectors(name)
            .await
            .ok()
            .flatten()
            .unwrap_or_default();
        let sparse = sparse
            .iter()
            .map(|(k, idf)| {
                if *idf {
                    format!("{k} (idf)")
                } else {
                    k.clone()
                }
            })
            .collect();
        let indexes = target.payload_indexes(name).await.unwrap_or_default();
        let indexes = indexes
            .iter()
            .map(|(f, i)| format!("{f}:{}{}", i.kind, if i.tenant { ":tenant" } else { "" }))
            .collect();
        let found = target.settings(name).await.unwrap_or_default();
        use crate::sink::settings::{Key, Support};
        // A bulk load keeps m at 0 until it is loaded: no drift.
        let loading = bulk.contains(&name);
        let mut drift = Vec::new();
        for a in asked.iter().filter(|a| a.target == name) {
            for k in a.asked.drift(&found) {
                if loading && k == Key::HnswM {
                    continue;
                }
                let now = found.value(k).unwrap_or_else(|| "unset".into());
                let was = a.asked.value(k).unwrap_or_default();
                let next = if target.support(k) != Support::Online {
                    "a run asking for it again is refused until --recreate"
                } else {
                    "the next run asking for it again changes it back"
                };
                drift.push(format!(
                    "{}: asked {was} at {}, now {now} ({next})",
                    k.name(),
                    a.at
                ));
            }
        }
        out.push(Collection {
            name: name.to_owned(),
            dense,
            sparse,
            indexes,
            settings: found.describe(),
            drift,
        });
    }
    out
}

/// A bulk load under way and the shards that have loaded their part.
#[derive(Debug, Serialize)]
pub struct BulkStatus {
    #[serde(flatten)]
    pub load: BulkLoad,
    pub done: Vec<u32>,
    /// Parts (namespace and shard) that joined the load and are still loading.
    pub loading: Vec<String>,
}

pub async fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let kind = args.target.kind()?;
    super::existing_store(&kind)?;
    let status = match &kind {
        TargetKind::Embedded { path } => match lock_store(path, "status") {
            Ok(_lock) => records(&kind).await?,
            Err(LockError::Held { holder, .. }) => Status::Locked {
                store: path.display().to_string(),
                locked_by: holder,
                note: "a run is writing this store; checkpoints are shown when it ends",
            },
            Err(e) => return Err(e.into()),
        },
        TargetKind::Grpc { .. } => records(&kind).await?,
    };
    if args.json {
        crate::out!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print_status(&status);
    }
    Ok(ExitCode::SUCCESS)
}

async fn records(kind: &TargetKind) -> anyhow::Result<Status> {
    let target = open_target(kind)?;
    let store = StateStore::open(target.as_ref(), false).await?;
    let (mut checkpoints, mut leases, mut last_run) = (Vec::new(), Vec::new(), None);
    let (mut watches, mut bulk_loads, mut bulk_done) = (Vec::new(), Vec::new(), Vec::new());
    let mut asked = Vec::new();
    for r in store.records().await? {
        match r {
            Record::Checkpoint(c) => checkpoints.push(c),
            Record::Lease(l) => leases.push(l),
            Record::Run { report } => last_run = Some(report),
            Record::Watch(w) => watches.push(w),
            Record::Bulk(b) => bulk_loads.push(b),
            Record::BulkDone(d) => bulk_done.push(d),
            Record::Settings(s) => asked.push(s),
        }
    }
    // A namespace's shards together, in index order.
    checkpoints.sort_by_cached_key(|c| {
        let shard = c.shard.as_deref().and_then(|s| s.parse::<Shard>().ok());
        (
            c.target.clone(),
            c.namespace.clone(),
            c.vector.clone(),
            shard.map(|s| (s.count, s.index)),
        )
    });
    let bulk_loads: Vec<BulkStatus> = bulk_loads
        .into_iter()
        .map(|load: BulkLoad| {
            let parts: Vec<&BulkDone> = bulk_done
                .iter()
                .filter(|d: &&BulkDone| {
                    d.target == load.target
                        && d.shards == load.shards
                        && d.load_started == load.started_at
                })
                .collect();
            let mut done: Vec<u32> = parts.iter().filter(|d| d.loaded).map(|d| d.shard).collect();
            done.sort_unstable();
            done.dedup();
            let loading = parts
                .iter()
                .filter(|d| {
                    !d.loaded
                        && !parts
                            .iter()
                            .any(|o| o.loaded && o.namespace == d.namespace && o.shard == d.shard)
                })
                .map(|d| format!("{} {}/{}", d.namespace, d.shard, d.shards))
                .collect();
            BulkStatus {
                load,
                done,
                loading,
            }
        })
        .collect();
    Ok(Status::Records {
        target: target.describe(),
        collections: {
            let bulk: Vec<&str> = bulk_loads.iter().map(|b| b.load.target.as_str()).collect();
            collections(&target, &checkpoints, &asked, &bulk).await
        },
        checkpoints,
        watches,
        bulk_loads,
        leases,
        last_run,
    })
}

fn print_status(s: &Status) {
    let (target, checkpoints, watches, bulk_loads, leases, last_run, colls) = match s {
        Status::Locked {
            store, locked_by, ..
        } => {
            crate::out!("{store}: locked by {locked_by}");
            return;
        }
        Status::Records {
            target,
            checkpoints,
            watches,
            bulk_loads,
            leases,
            last_run,
            collections,
        } => (
            target,
            checkpoints,
            watches,
            bulk_loads,
            leases,
            last_run,
            collections,
        ),
    };
    crate::out!("{target}");
    for c in colls {
        let sparse = if c.sparse.is_empty() {
            String::new()
        } else {
            format!("; sparse {}", c.sparse.join(", "))
        };
        let dense = if c.dense.is_empty() {
            "none".to_owned()
        } else {
            c.dense.join(", ")
        };
        let indexes = if c.indexes.is_empty() {
            String::new()
        } else {
            format!("; payload indexes {}", c.indexes.join(", "))
        };
        crate::out!("  collection {}: dense {dense}{sparse}{indexes}", c.name);
        if !c.settings.is_empty() {
            crate::out!("    settings {}", c.settings.join(", "));
        }
        for d in &c.drift {
            crate::out!("    drift {d}");
        }
    }
    if checkpoints.is_empty() {
        crate::out!("  no checkpoints yet (nothing synced)");
    }
    for c in checkpoints {
        let at = c
            .last_id()
            .map_or_else(|| "none".to_owned(), |id| crate::source::id_text(&id));
        crate::out!(
            "  {}{}: {} at _id {at}, updated {}, run {}, model {}",
            route(&c.namespace, &c.target, c.vector.as_deref()),
            c.shard
                .as_ref()
                .map_or_else(String::new, |s| format!(" (shard {s})")),
            if c.complete {
                "complete"
            } else {
                "in progress"
            },
            c.updated_at,
            c.run_id,
            c.model,
        );
    }
    for w in watches {
        crate::out!(
            "  watch {} -> {}: {}, changes applied up to cluster time {}, updated {}, run {}{}",
            w.namespace,
            w.target,
            match w.phase {
                Phase::Pass => "initial pass under way",
                Phase::Stream => "streaming",
            },
            w.applied_until,
            w.updated_at,
            w.run_id,
            if w.repass {
                "; more failed documents than can be kept: a full pass at the next start".to_owned()
            } else if w.owed.is_empty() {
                String::new()
            } else {
                format!(
                    "; {} failed document(s) owed, tried again at the next start (their points are as before): {}",
                    w.owed.len(),
                    w.owed
                        .iter()
                        .take(5)
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            },
        );
    }
    for b in bulk_loads {
        if b.load.finisher == crate::state::bulk::NOBODY {
            crate::out!(
                "  bulk load into {}: HNSW graph building off since {}, shards done {:?} of {}, still loading {:?} (the last to finish switches it back on to m = {}; a run without --bulk finishes it too)",
                b.load.target,
                b.load.started_at,
                b.done,
                b.load.shards,
                b.loading,
                b.load.restore_m,
            );
        } else {
            crate::out!(
                "  bulk load into {}: loaded, HNSW graph building back on (m = {}); run {} waits (or waited) for the optimiser, and the next run into it removes this record",
                b.load.target,
                b.load.restore_m,
                b.load.finisher,
            );
        }
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    for l in leases {
        let h = &l.holder;
        crate::out!(
            "  lease {} -> {}: {} by run {} (pid {} on {})",
            l.namespace,
            l.target,
            if h.expires_at > now {
                "held"
            } else {
                "expired"
            },
            h.run_id,
            h.pid,
            h.host,
        );
    }
    match last_run {
        None => crate::out!("  no run recorded"),
        Some(r) => crate::out!(
            "  last run {}: {} .. {}, read {}, embedded {}, unchanged {}, upserted {}, failed {}{}",
            r.run_id,
            r.started_at,
            r.finished_at,
            r.counts.read,
            r.counts.embedded,
            r.counts.skipped_unchanged,
            r.counts.upserted,
            r.counts.failed,
            if r.interrupted { " (interrupted)" } else { "" },
        ),
    }
}
