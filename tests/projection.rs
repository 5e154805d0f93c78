//! `--projection` (issue 21, items 3-5): one that leaves out `_id` is refused before anything is
//! read, and a changed projection is a changed setting: `watch` replaces its stored stream
//! position by a pass, so no point keeps what the old projection read.

use std::sync::Arc;

use mongo2qdrant::sink::Sink;

use super::watch::{jobs_of, setup, start, until_in_sync};
use crate::common::bin;

#[test]
fn a_projection_without_id_is_a_usage_error_naming_the_fix() {
    for projection in [r#"{"_id": 0, "title": 1}"#, r#"{"title": 1, "_id": false}"#] {
        let out = bin()
            .args(["sync", "--database", "d", "--collection", "c"])
            .args(["--projection", projection])
            .output()
            .unwrap();
        let e = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{e}");
        assert!(
            e.contains("leaves out _id") && e.contains(r#"--projection '{"title":1}'"#),
            "{e}"
        );
    }
}

/// The first watch copies `year` (its projection reads it); the second one's projection does
/// not read it. Before, the stored stream was resumed, no pass ran, and every unchanged
/// document kept its old `year`: `verify` never in sync.
async fn a_changed_projection_runs_a_pass<S: Sink>(sink: Arc<S>) {
    let (m, jobs) = setup(20, "projection", &[]).await;
    let target = jobs[0].target.clone();
    let with_year = jobs_of(&m, "films", &target)
        .projection(r#"{"title": 1, "extract": 1, "year": 1, "hidden": 1}"#)
        .jobs()
        .await;
    let w = start(&sink, with_year.clone());
    w.ready().await;
    until_in_sync(&sink, &with_year).await;
    w.stop().await;

    let without_year = jobs_of(&m, "films", &target)
        .projection(r#"{"title": 1, "extract": 1, "hidden": 1}"#)
        .jobs()
        .await;
    let w = start(&sink, without_year.clone());
    w.ready().await;
    until_in_sync(&sink, &without_year).await;
    w.stop().await;
}

both_targets!(a_changed_projection_runs_a_pass);
