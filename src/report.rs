//! What a run did: one set of counters ([`Counts`], added up with [`Counts::add`]), their live
//! form for progress ([`Stats`]), and the reports that `sync` prints, writes as JSON and records
//! next to the checkpoints.

use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

use serde::{Deserialize, Serialize};

use crate::embed::EmbedStats;

/// Counts of one run (or one namespace of a run). The only definition of each counter.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Counts {
    pub read: u64,
    pub embedded: u64,
    pub skipped_unchanged: u64,
    pub skipped_no_text: u64,
    /// Documents whose text was current but copied payload changed: payload rewritten, no
    /// embedding.
    #[serde(default)]
    pub payload_updated: u64,
    pub upserted: u64,
    pub deleted: u64,
    pub failed: u64,
    /// Documents whose hashes were current but whose stored points were not (`--deep`): written
    /// again (counted in `embedded` too).
    #[serde(default)]
    pub repaired: u64,
}

impl Counts {
    /// Add `o` to these counts.
    pub fn add(&mut self, o: &Counts) {
        let Counts {
            read,
            embedded,
            skipped_unchanged,
            skipped_no_text,
            payload_updated,
            upserted,
            deleted,
            failed,
            repaired,
        } = o;
        self.read += read;
        self.embedded += embedded;
        self.skipped_unchanged += skipped_unchanged;
        self.skipped_no_text += skipped_no_text;
        self.payload_updated += payload_updated;
        self.upserted += upserted;
        self.deleted += deleted;
        self.failed += failed;
        self.repaired += repaired;
    }
}

/// Live counters shared by the pipeline stages and the progress display.
#[derive(Debug, Default)]
pub struct Stats {
    counts: Mutex<Counts>,
    /// Estimated documents to read (sum over sources), 0 when unknown.
    pub expected: AtomicU64,
}

impl Stats {
    pub fn add(&self, c: &Counts) {
        self.counts.lock().expect("stats").add(c);
    }

    pub fn snapshot(&self) -> Counts {
        self.counts.lock().expect("stats").clone()
    }
}

/// A per-document problem, for reports.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Failure {
    pub namespace: String,
    pub at: String,
    pub reason: String,
}

/// Outcome of one namespace.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NamespaceReport {
    pub namespace: String,
    pub target: String,
    /// The named vector written, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vector: Option<String>,
    /// The shard this run wrote (`INDEX/COUNT`), when sharded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<String>,
    pub counts: Counts,
    /// The pass reached the end of the source.
    pub complete: bool,
    /// `_id` this pass resumed after, if it resumed.
    pub resumed_after: Option<String>,
    pub pruned: u64,
    /// Of the pruned points (with `--filter`), those whose document still exists but does not
    /// match the filter.
    #[serde(default)]
    pub pruned_outside_filter: u64,
    /// A prune was asked for and did not happen (the pass stopped early, resumed, or had
    /// failed documents).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub prune_skipped: bool,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    #[default]
    Ok,
    Interrupted,
    Failed,
}

/// Outcome of a run: what `--report-json` writes and `status` shows, on success and failure.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunReport {
    pub run_id: String,
    pub started_at: String,
    pub finished_at: String,
    #[serde(default)]
    pub seconds: f64,
    /// Where the run wrote: the Qdrant server's URL (no credentials) or the store's path.
    #[serde(default)]
    pub store: String,
    #[serde(default)]
    pub dry_run: bool,
    #[serde(default)]
    pub interrupted: bool,
    #[serde(flatten)]
    pub counts: Counts,
    #[serde(default)]
    pub namespaces: Vec<NamespaceReport>,
    /// A sample of per-document problems (at most 20).
    #[serde(default)]
    pub failures: Vec<Failure>,
    #[serde(default)]
    pub embedding: EmbedStatsReport,
    /// The precision, runtime and instruction set the run embedded with.
    #[serde(default)]
    pub compute: crate::embed::Compute,
    /// Bulk loads (`--bulk`) this run took part in: whether it switched graph building back on,
    /// and how long the collection then took to be indexed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub indexing: Vec<IndexingReport>,
    #[serde(default)]
    pub status: RunStatus,
    /// The process's exit code.
    #[serde(default)]
    pub exit_status: u8,
    /// What ended a failed run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What a run did about a bulk load into one target.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct IndexingReport {
    pub target: String,
    /// This run switched graph building back on and waited for the optimiser.
    pub indexed: bool,
    /// The optimiser settled within the wait (not stopped, not timed out).
    #[serde(default)]
    pub settled: bool,
    /// Shards still loading (graph building stays off until they finish).
    #[serde(default)]
    pub shards_pending: Vec<u32>,
    /// Seconds from switching graph building on to the optimiser settled.
    #[serde(default)]
    pub seconds_to_indexed: f64,
    #[serde(default)]
    pub points: u64,
    #[serde(default)]
    pub indexed_vectors: u64,
}

/// Embedding figures of a run.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct EmbedStatsReport {
    pub texts: u64,
    pub tokens: u64,
    pub padding_ratio: f64,
    pub tokenize_secs: f64,
    pub infer_secs: f64,
}

impl From<EmbedStats> for EmbedStatsReport {
    fn from(e: EmbedStats) -> Self {
        Self {
            texts: e.texts,
            tokens: e.tokens,
            padding_ratio: e.padding_ratio(),
            tokenize_secs: e.tokenize_secs,
            infer_secs: e.infer_secs,
        }
    }
}

/// Most per-document problems kept in a report.
pub const MAX_FAILURE_SAMPLES: usize = 20;

/// What the stages of one run share: live counters, sampled failures, embedding figures.
#[derive(Debug, Default)]
pub struct RunLog {
    pub stats: std::sync::Arc<Stats>,
    failures: Mutex<Vec<Failure>>,
    embed: Mutex<EmbedStats>,
}

impl RunLog {
    pub fn new(stats: std::sync::Arc<Stats>) -> Self {
        Self {
            stats,
            ..Default::default()
        }
    }

    /// Count nothing, but log and sample a per-document problem.
    pub fn fail(&self, namespace: &str, at: String, reason: String) {
        tracing::warn!(namespace, at, "skipped: {reason}");
        let mut f = self.failures.lock().expect("failures");
        if f.len() < MAX_FAILURE_SAMPLES {
            f.push(Failure {
                namespace: namespace.to_owned(),
                at,
                reason,
            });
        }
    }

    pub fn embedded(&self, s: &EmbedStats) {
        self.embed.lock().expect("embed stats").add(s);
    }

    pub fn failures(&self) -> Vec<Failure> {
        self.failures.lock().expect("failures").clone()
    }

    pub fn embedding(&self) -> EmbedStatsReport {
        (*self.embed.lock().expect("embed stats")).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_add_every_field() {
        let one = Counts {
            read: 1,
            embedded: 2,
            skipped_unchanged: 3,
            skipped_no_text: 4,
            payload_updated: 5,
            upserted: 6,
            deleted: 7,
            failed: 8,
            repaired: 9,
        };
        let mut c = one.clone();
        c.add(&one);
        let twice = serde_json::to_value(&c).unwrap();
        for (k, v) in serde_json::to_value(&one).unwrap().as_object().unwrap() {
            assert_eq!(twice[k], v.as_u64().unwrap() * 2, "{k}");
        }
    }

    #[test]
    fn a_report_reads_back() {
        let r = RunReport {
            run_id: "r".into(),
            status: RunStatus::Failed,
            exit_status: 1,
            error: Some("boom".into()),
            ..Default::default()
        };
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["status"], "failed");
        let back: RunReport = serde_json::from_value(v).unwrap();
        assert_eq!(back.status, RunStatus::Failed);
    }
}
