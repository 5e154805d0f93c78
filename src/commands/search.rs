//! `search`: the nearest points to a query by the dense vector, the BM25 sparse vector, or both
//! fused by reciprocal rank (hybrid), printed with score and payload.

use std::process::ExitCode;

use anyhow::Context;

use std::collections::HashMap;

use super::{load_embedder, lock_target, open_target};
use crate::cli::{SearchArgs, SearchMode};
use crate::config::ConfigError;
use crate::point::keys;
use crate::sink::{Hit, Query, Shape, Sink, SinkError};

pub async fn search(args: SearchArgs) -> anyhow::Result<ExitCode> {
    let collection = args
        .target
        .collection_name
        .clone()
        .context("search needs --collection-name (the target collection)")?;
    let filter = match &args.filter {
        Some(f) => Some(crate::filter::parse(f).map_err(ConfigError::Filter)?),
        None => None,
    };
    if let Some(o) = args.oversampling.filter(|o| o.is_nan() || *o < 1.0) {
        return Err(ConfigError::Filter(format!(
            "--oversampling {o}: give 1.0 or more (candidates per result, e.g. 2.0)"
        ))
        .into());
    }
    super::existing_store(&args.target.kind()?)?;
    // Opening a shard may replay and flush it: never beside a running sync.
    let _lock = lock_target(&args.target.kind()?, "search")?;
    let target = open_target(&args.target.kind()?)?;
    let Some(shape) = target.shape(&collection).await? else {
        return Err(SinkError::NoCollection(collection).into());
    };
    let sparse_name = args
        .sparse_name
        .clone()
        .unwrap_or_else(|| crate::sparse::DEFAULT_NAME.to_owned());
    let has_sparse = target
        .sparse_vectors(&collection)
        .await?
        .is_some_and(|m| m.contains_key(&sparse_name));
    let vector_name = args.target.vector_name.clone();
    let has_dense = match (&shape, &vector_name) {
        (Shape::Unnamed(_), None) => true,
        (Shape::Named(m), Some(v)) => m.contains_key(v),
        (Shape::Named(m), None) => !m.is_empty(),
        _ => false,
    };
    let mode = match args.mode {
        Some(m) => m,
        None if has_sparse && has_dense => SearchMode::Hybrid,
        None if has_sparse => SearchMode::Sparse,
        None => SearchMode::Dense,
    };
    if mode != SearchMode::Sparse && !has_dense {
        let which = match &vector_name {
            Some(v) => format!("no dense vector `{v}`"),
            None => "no dense vector".to_owned(),
        };
        let fix = if has_sparse {
            "search its sparse vector with --mode sparse"
        } else {
            "check --collection-name and --vector-name"
        };
        return Err(ConfigError::Sparse(format!("`{collection}` has {which}: {fix}")).into());
    }
    if mode != SearchMode::Dense && !has_sparse {
        return Err(ConfigError::Sparse(format!(
            "`{collection}` has no sparse vector `{sparse_name}`: sync it with --sparse bm25 (or pass --sparse-name, or --mode dense)"
        ))
        .into());
    }
    let dense = if mode == SearchMode::Sparse {
        None
    } else {
        let embedder = load_embedder(&args.model).await?;
        let (mut vectors, _) = embedder.embed_query(&[args.query.as_str()])?;
        let vector = vectors.pop().expect("one vector");
        searchable(&target, &collection, vector_name.as_deref(), vector.len()).await?;
        Some((vector_name, vector))
    };
    let sparse = if mode == SearchMode::Dense {
        None
    } else {
        let language = args
            .sparse_language
            .as_deref()
            .unwrap_or(crate::sparse::DEFAULT_LANGUAGE);
        let bm25 = crate::sparse::Bm25::new(language).map_err(ConfigError::Sparse)?;
        Some((sparse_name, bm25.query(&args.query)))
    };
    let query = Query {
        dense,
        sparse,
        limit: args.limit,
        prefetch: args.prefetch.max(args.limit),
        filter,
        params: crate::sink::SearchParams {
            no_rescore: args.no_rescore,
            oversampling: args.oversampling,
            exact: args.exact,
        },
    };
    let hits = target.query(&collection, query.clone()).await?;
    let ranks = if args.json && mode == SearchMode::Hybrid {
        Some(per_mode_ranks(&target, &collection, &query).await?)
    } else {
        None
    };
    print_hits(&hits, args.json, mode, ranks.as_ref());
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

/// Each point's rank (from 1) among the dense and among the sparse candidates of a hybrid
/// query: what the fusion was made of.
async fn per_mode_ranks(
    target: &crate::sink::Target,
    collection: &str,
    q: &Query,
) -> anyhow::Result<Ranks> {
    let one = |dense: bool| Query {
        dense: q.dense.clone().filter(|_| dense),
        sparse: q.sparse.clone().filter(|_| !dense),
        limit: q.prefetch,
        prefetch: q.prefetch,
        filter: q.filter.clone(),
        params: q.params,
    };
    let rank = |hits: Vec<Hit>| -> HashMap<uuid::Uuid, usize> {
        hits.iter()
            .enumerate()
            .map(|(i, h)| (h.id, i + 1))
            .collect()
    };
    Ok(Ranks {
        dense: rank(target.query(collection, one(true)).await?),
        sparse: rank(target.query(collection, one(false)).await?),
    })
}

/// Per-mode ranks of a hybrid query's candidates.
struct Ranks {
    dense: HashMap<uuid::Uuid, usize>,
    sparse: HashMap<uuid::Uuid, usize>,
}

/// Whether `collection` can answer a query for `vector_name` of `dimension`; else an error
/// that names what the collection holds and the flag that fits it.
async fn searchable(
    target: &crate::sink::Target,
    collection: &str,
    vector_name: Option<&str>,
    dimension: usize,
) -> anyhow::Result<()> {
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

fn print_hits(hits: &[Hit], json: bool, mode: SearchMode, ranks: Option<&Ranks>) {
    let mode_name = format!("{mode:?}").to_lowercase();
    for (i, h) in hits.iter().enumerate() {
        if json {
            let mut line = serde_json::json!({"rank": i + 1, "id": h.id, "score": h.score, "mode": mode_name, "payload": h.payload});
            if let Some(r) = ranks {
                line["dense_rank"] = r.dense.get(&h.id).copied().into();
                line["sparse_rank"] = r.sparse.get(&h.id).copied().into();
            }
            crate::out!("{line}");
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
