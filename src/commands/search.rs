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
    super::existing_store(&args.target.kind()?)?;
    // Opening a shard may replay and flush it: never beside a running sync.
    let _lock = lock_target(&args.target.kind()?, "search")?;
    let embedder = load_embedder(&args.model).await?;
    let (mut vectors, _) = embedder.embed_query(&[args.query.as_str()])?;
    let vector = vectors.pop().expect("one vector");
    let target = open_target(&args.target.kind()?)?;
    let vector_name = args.target.vector_name.as_deref();
    searchable(&target, &collection, vector_name, vector.len()).await?;
    let hits = target
        .search(&collection, vector_name, vector, args.limit)
        .await?;
    print_hits(&hits, args.json);
    if hits.is_empty() {
        use std::io::Write;
        // A closed stderr is no reason to fail a search.
        let _ = writeln!(
            std::io::stderr(),
            "no hits: is `{collection}` synced? (`mongo2qdrant sync ...`)"
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Whether `collection` can answer a query for `vector_name` of `dimension`; else an error
/// that names what the collection holds and the flag that fits it.
async fn searchable(
    target: &crate::sink::Target,
    collection: &str,
    vector_name: Option<&str>,
    dimension: usize,
) -> anyhow::Result<()> {
    use crate::sink::{Shape, SinkError};
    let params = match (target.shape(collection).await?, vector_name) {
        (None, _) => return Err(SinkError::NoCollection(collection.to_owned()).into()),
        (Some(Shape::Unnamed(p)), None) => p,
        (Some(Shape::Unnamed(_)), Some(v)) => anyhow::bail!(
            "`{collection}` holds one unnamed vector, not a vector `{v}`: drop --vector-name"
        ),
        (Some(Shape::Named(m)), v) => {
            let names: Vec<&str> = m.keys().map(String::as_str).collect();
            match v.and_then(|v| m.get(v)) {
                Some(p) => p.clone(),
                None => anyhow::bail!(
                    "`{collection}` holds the named vectors {}: pass --vector-name NAME with one of them",
                    names.join(", ")
                ),
            }
        }
    };
    if params.dimension != dimension {
        anyhow::bail!(
            "`{collection}` holds vectors of dimension {}, but the model makes {dimension}: pass the --model it was synced with",
            params.dimension
        );
    }
    Ok(())
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
