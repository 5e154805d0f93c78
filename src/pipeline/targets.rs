//! Target collections made ready before a run writes: each fits every vector its jobs write
//! (or `--recreate` rebuilds it), has the settings and payload indexes asked, and the records
//! collection exists.

use std::collections::HashSet;

use super::{Job, PipelineError, SyncOptions};
use crate::sink::settings::Support;
use crate::sink::{Ensure, Sink, SinkError, VectorSpec};
use crate::state::StateStore;

/// Make every job's target collection fit (a dry run only checks), and open the records
/// collection. A target is judged on every vector its jobs write: when one of them does not
/// fit, `--recreate` drops the collection once and creates it with all of them (a dry run says
/// it would). Returns the targets dropped (or that would be).
pub(super) async fn prepare_targets<S: Sink>(
    sink: &S,
    jobs: &[Job],
    opts: &SyncOptions,
    embedder: &dyn crate::embed::Embedder,
) -> Result<HashSet<String>, PipelineError> {
    let (dimension, distance) = (embedder.dimension(), embedder.distance());
    let mut rebuilt = HashSet::new();
    // Per target: the dense vectors and the sparse ones its jobs write.
    let mut targets: Vec<(&str, Vec<VectorSpec>, Vec<String>)> = Vec::new();
    for job in jobs {
        let i = match targets.iter().position(|(t, ..)| *t == job.target) {
            Some(i) => i,
            None => {
                targets.push((&job.target, Vec::new(), Vec::new()));
                targets.len() - 1
            }
        };
        let (_, specs, sparse) = &mut targets[i];
        let spec = VectorSpec {
            name: job.vector_name.clone(),
            dimension,
            distance: job.distance.unwrap_or(distance),
        };
        if !job.sparse_only() && !specs.contains(&spec) {
            specs.push(spec);
        }
        if let Some(s) = &job.sparse
            && !sparse.contains(&s.name)
        {
            sparse.push(s.name.clone());
        }
    }
    // Every target is checked before any is changed: a refusal (or a setting the target
    // cannot have) must not come after another target was dropped or created.
    let mut plans = Vec::new();
    for (target, specs, sparse) in targets {
        let asked = crate::config::collection::for_target(jobs, target);
        crate::sink::settings::unsupported(sink, &asked)?;
        let shape = sink.shape(target).await?;
        let sparse_now = match &shape {
            Some(_) => sink.sparse_vectors(target).await?,
            None => None,
        };
        for stale in sparse_now.iter().flat_map(|m| m.keys()) {
            if !sparse.contains(stale) {
                tracing::warn!(
                    "`{target}` holds the sparse vector `{stale}`, which this run does not write: it goes stale as documents change (and search fuses it by default); pass --sparse bm25 --sparse-name {stale} to keep it current, or --recreate to rebuild `{target}` without it"
                );
            }
        }
        // A sparse-only run would leave an unnamed dense vector as it is: never updated, its
        // gone documents' points kept for it.
        let unnamed_left = (specs.is_empty()
            && matches!(shape, Some(crate::sink::Shape::Unnamed(_))))
        .then(|| SinkError::Incompatible {
            collection: target.to_owned(),
            found: "an unnamed dense vector that a sparse-only run (--no-dense) would leave stale"
                .into(),
            wanted: "sparse vectors only (or drop --no-dense to keep the dense one current)".into(),
        });
        let misfit = unnamed_left
            .into_iter()
            .chain(specs.iter().filter_map(|s| {
                crate::sink::fit::fit(target, shape.as_ref(), s, Ensure::Check).err()
            }))
            .next()
            .or_else(|| {
                sparse.iter().find_map(|n| {
                    let f = crate::sink::fit::fit_sparse;
                    f(
                        target,
                        shape.as_ref(),
                        sparse_now.as_ref(),
                        n,
                        Ensure::Check,
                    )
                    .err()
                })
            });
        let misfit = match (misfit, &shape) {
            (None, Some(_)) => crate::sink::settings::fixed(sink, target, &asked).await?,
            (m, _) => m,
        };
        // A target that sets on-disk storage only at creation puts a named vector added
        // later in RAM: refused before anything is written, as no rerun could fix it.
        let added = match (&shape, &misfit) {
            (Some(_), None) => specs
                .iter()
                .filter(|v| {
                    let f = crate::sink::fit::fit(target, shape.as_ref(), v, Ensure::Create);
                    matches!(f, Ok(crate::sink::fit::Fit::AddVector))
                })
                .count(),
            _ => specs.len().saturating_sub(1),
        };
        if added > 0
            && asked.on_disk == Some(true)
            && sink.support(crate::sink::settings::Key::OnDisk) != Support::Online
        {
            return Err(SinkError::OnDiskAdded {
                collection: target.to_owned(),
                target: sink.describe(),
            }
            .into());
        }
        let misfit = match misfit {
            Some(e) if !opts.recreate => return Err(e.into()),
            m => m,
        };
        plans.push((target, specs, sparse, asked, shape, misfit));
    }
    let mut asked_of = Vec::new();
    for (target, specs, sparse, mut asked, shape, misfit) in plans {
        asked_of.push((target, asked.clone()));
        if let Some(e) = misfit {
            let why = match &e {
                SinkError::Incompatible { found, wanted, .. } => {
                    format!("it has {found}, the model needs {wanted}")
                }
                SinkError::FixedSetting {
                    setting,
                    found,
                    wanted,
                    ..
                } => format!("it has {setting} = {found}, {wanted} was asked"),
                other => other.to_string(),
            };
            let points = sink.count(target).await?;
            if opts.dry_run {
                tracing::warn!(
                    "--recreate would drop `{target}` ({why}) with its {points} points, and write every document again"
                );
            } else {
                tracing::warn!(
                    "--recreate: dropping `{target}` ({why}) with its {points} points; every document is written again"
                );
                sink.drop_collection(target).await?;
            }
            rebuilt.insert(target.to_owned());
        }
        let existed = shape.is_some() && !rebuilt.contains(target);
        if opts.dry_run && !existed && !asked.is_empty() {
            tracing::info!(
                "{target}: would be created with {}",
                asked.describe().join(", ")
            );
        }
        if !opts.dry_run {
            for s in &specs {
                crate::sink::ensure_collection(sink, target, s, &asked, Ensure::Create).await?;
            }
            for name in &sparse {
                crate::sink::fit::ensure_sparse(sink, target, name, &asked).await?;
            }
        }
        // Also on a collection just made: a named vector added after the first gets the
        // collection's on-disk storage online (a server) this way.
        if existed || !opts.dry_run {
            // A bulk load under way keeps its graph off; it restores the `m` asked now.
            if super::bulk::hold_m(sink, target, asked.hnsw_m, opts.dry_run).await? {
                asked.hnsw_m = None;
            }
            crate::sink::settings::ensure_settings(sink, target, &asked, opts.dry_run).await?;
        }
        let mut indexes: Vec<crate::sink::IndexSpec> = Vec::new();
        for i in jobs
            .iter()
            .filter(|j| j.target == target)
            .flat_map(|j| &j.indexes)
        {
            if !indexes.iter().any(|x| x.field == i.field) {
                indexes.push(i.clone());
            }
        }
        crate::sink::index::ensure_indexes(sink, target, &indexes, opts.dry_run).await?;
    }
    let store = StateStore::open(sink, !opts.dry_run).await?;
    if !opts.dry_run {
        for (target, asked) in asked_of {
            store.save_settings(target, &asked).await?;
        }
    }
    Ok(rebuilt)
}
