//! `search`: embed a query and print the nearest points with score and payload.

use std::process::ExitCode;

use anyhow::Context;

use super::{load_embedder, lock_target, open_target};
use crate::cli::SearchArgs;
use crate::point::keys;
use crate::sink::{Hit, Sink};

pub async fn search(args: SearchArgs) -> anyhow::Result<ExitCode> {
    let collection = args
        .target
        .collection_name
        .clone()
        .context("search needs --collection-name (the target collection)")?;
    super::existing_store(&args.target.kind())?;
    // Opening a shard may replay and flush it: never beside a running sync.
    let _lock = lock_target(&args.target.kind(), "search")?;
    let embedder = load_embedder(&args.model).await?;
    let (mut vectors, _) = embedder.embed(&[args.query.as_str()])?;
    let vector = vectors.pop().expect("one vector");
    let target = open_target(&args.target.kind())?;
    let vector_name = args.target.vector_name.as_deref();
    let hits = target
        .search(&collection, vector_name, vector, args.limit)
        .await
        .with_context(|| match vector_name {
            None => format!(
                "searching `{collection}` (a collection of named vectors needs --vector-name NAME)"
            ),
            Some(v) => format!("searching the vector `{v}` of `{collection}`"),
        })?;
    print_hits(&hits, args.json);
    if hits.is_empty() {
        eprintln!("no hits: is `{collection}` synced? (`mongo2qdrant sync ...`)");
    }
    Ok(ExitCode::SUCCESS)
}

fn print_hits(hits: &[Hit], json: bool) {
    for (i, h) in hits.iter().enumerate() {
        if json {
            crate::out!(
                "{}",
                serde_json::json!({"rank": i + 1, "id": h.id, "score": h.score, "payload": h.payload})
            );
            continue;
        }
        let mut shown = h.payload.clone();
        let id = shown.remove(keys::ID).unwrap_or_default();
        let chunk = shown.remove(keys::CHUNK);
        shown.retain(|k, _| !keys::is_internal(k));
        let chunk = chunk
            .filter(|c| c.as_u64() != Some(0))
            .map_or_else(String::new, |c| format!(" chunk {c}"));
        crate::out!(
            "{:>2}. {:.4}  _id {id}{chunk}  {}",
            i + 1,
            h.score,
            serde_json::Value::Object(shown)
        );
    }
}
