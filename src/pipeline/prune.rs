//! What a complete pass may delete: the points of a namespace (of one shard, when sharded)
//! as the target holds them, and how many of those to prune belong to documents that merely
//! fall outside the filter. The deletions themselves, under the guard, are the pass's.

use std::collections::HashSet;

use mongodb::bson::Bson;
use serde_json::Value;
use uuid::Uuid;

use super::PipelineError;
use crate::point::{Job, keys};
use crate::shard::Shard;
use crate::sink::{Fields, MatchFilter, Sink, SinkError, scroll_all};

/// How many of the `stale` points belong to documents that exist in the source but outside
/// the job's filter (0 where the source cannot tell).
pub(super) async fn outside_filter(
    job: &Job,
    stored: &[(Uuid, Option<Value>)],
    stale: &[Uuid],
) -> Result<u64, PipelineError> {
    let stale: HashSet<&Uuid> = stale.iter().collect();
    let ids: Vec<(&Uuid, String, Bson)> = stored
        .iter()
        .filter(|(id, _)| stale.contains(id))
        .filter_map(|(id, v)| {
            let v = v.as_ref()?;
            Some((id, v.to_string(), Bson::try_from(v.clone()).ok()?))
        })
        .collect();
    let mut distinct: Vec<Bson> = Vec::new();
    let mut texts = HashSet::new();
    for (_, text, id) in &ids {
        if texts.insert(text.as_str()) {
            distinct.push(id.clone());
        }
    }
    let Some(existing) = job.source.existing(&distinct).await? else {
        return Ok(0);
    };
    Ok(ids.iter().filter(|(_, t, _)| existing.contains(t)).count() as u64)
}

/// The points of `job`'s namespace that hold its vector (of `shard` only, when sharded: see
/// [`shard_points`]), with their document's `_id` as stored.
pub(super) async fn namespace_points<S: Sink>(
    sink: &S,
    job: &Job,
    shard: Option<Shard>,
    known: impl Fn(&Uuid) -> bool,
) -> Result<Vec<(Uuid, Option<Value>)>, SinkError> {
    let (points, unplaced) = shard_points(sink, job, shard, &job.stored_keys(), known).await?;
    if unplaced > 0 {
        tracing::warn!(
            namespace = %job.source.namespace(),
            "{unplaced} points have a stored _id that does not give their id back (a compound _id whose field order the server did not keep, or a point of another writer): no shard prunes them; a `sync --prune` without --shard does"
        );
    }
    Ok(points
        .into_iter()
        .map(|mut p| (p.id, p.payload.remove(keys::ID)))
        .collect())
}

/// The points of `job`'s namespace that hold its vector, with `keys` of their payload; when
/// sharded, only `shard`'s: those `known` to be (the points of its documents) and those its
/// [`Shard::owns_point`] places. A point whose shard cannot be told is no shard's: it is left
/// out and counted (the second value); a run without a shard sees it.
pub(crate) async fn shard_points<S: Sink>(
    sink: &S,
    job: &Job,
    shard: Option<Shard>,
    keys: &[String],
    known: impl Fn(&Uuid) -> bool,
) -> Result<(Vec<crate::sink::StoredPoint>, u64), SinkError> {
    if !sink.exists(&job.target).await? {
        return Ok((Vec::new(), 0));
    }
    let ns = job.source.namespace();
    let filter = MatchFilter {
        key: keys::NAMESPACE.into(),
        value: ns.to_string(),
    };
    let mut keys = keys.to_vec();
    for k in [keys::ID, keys::CHUNK] {
        if !keys.iter().any(|have| have == k) {
            keys.push(k.to_owned());
        }
    }
    let mut unplaced = 0u64;
    let points = scroll_all(sink, &job.target, Some(&filter), Fields::Only(&keys))
        .await?
        .into_iter()
        .filter(|p| job.owns(&p.payload))
        .filter(|p| match shard {
            None => true,
            Some(_) if known(&p.id) => true,
            Some(s) => match s.owns_point(ns, p.id, &p.payload) {
                Some(mine) => mine,
                None => {
                    unplaced += 1;
                    false
                }
            },
        })
        .collect();
    Ok((points, unplaced))
}
