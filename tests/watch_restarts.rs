//! `watch` restarted with other settings after documents were deleted while it was down: the
//! stored stream position is replaced by a pass, and that pass must prune what it no longer
//! finds (under `--max-delete`), as a reconcile does. Before, the deleted documents' points
//! stayed for good.

use std::sync::Arc;

use mongo2qdrant::sink::Sink;
use mongodb::bson::{Document, doc};

use super::watch::{DB, jobs_of, setup, start, until_in_sync};

async fn a_restart_with_new_settings_prunes_what_went_while_down<S: Sink>(sink: Arc<S>) {
    let (m, jobs) = setup(30, "restart_text", &[]).await;
    let target = jobs[0].target.clone();
    let w = start(&sink, jobs);
    w.ready().await;
    w.stop().await;
    let before = sink.count(&target).await.unwrap();
    assert!(before >= 30, "{before}");

    // Five documents go while nothing watches; then watch comes back with another template.
    let films = m
        .client()
        .await
        .database(DB)
        .collection::<Document>("films");
    films.delete_many(doc! {"_id": {"$lt": 5}}).await.unwrap();
    let jobs = jobs_of(&m, "films", &target)
        .template("{title}")
        .jobs()
        .await;
    let w = start(&sink, jobs.clone());
    w.ready().await;
    until_in_sync(&sink, &jobs).await;
    w.stop().await;
    let after = sink.count(&target).await.unwrap();
    assert!(
        after <= before - 5,
        "the orphans were pruned: {before} -> {after}"
    );
}

both_targets!(a_restart_with_new_settings_prunes_what_went_while_down);
