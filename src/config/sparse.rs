//! The sparse vector's settings: from the flags (which win) and a config entry, validated
//! into a [`SparseSpec`].

use std::sync::Arc;

use super::ConfigError;
use super::file::SyncEntry;
use crate::cli::{SparseArgs, SparseKind};
use crate::point::Job;
use crate::sparse::{Bm25, DEFAULT_LANGUAGE, DEFAULT_NAME, SparseSpec};
use crate::text::Template;

/// A job's sparse vector as asked for, before it is built.
#[derive(Debug, Clone)]
pub struct SparseSettings {
    pub name: String,
    pub text: Option<String>,
    pub language: String,
    pub dense: bool,
}

/// The sparse settings of one entry (flags over the entry); `None` without `--sparse`. A
/// sparse setting without `--sparse` is refused rather than silently ignored.
pub fn settings(
    flags: &SparseArgs,
    entry: &SyncEntry,
) -> Result<Option<SparseSettings>, ConfigError> {
    let kind = flags.sparse.or(entry.sparse);
    let no_dense = flags.no_dense || entry.dense == Some(false);
    let name = flags.sparse_name.clone().or(entry.sparse_name.clone());
    let text = flags.sparse_text.clone().or(entry.sparse_text.clone());
    let language = flags
        .sparse_language
        .clone()
        .or(entry.sparse_language.clone());
    let Some(SparseKind::Bm25) = kind else {
        let given = [
            (no_dense, "--no-dense"),
            (name.is_some(), "--sparse-name"),
            (text.is_some(), "--sparse-text"),
            (language.is_some(), "--sparse-language"),
        ];
        return match given.iter().find(|(on, _)| *on) {
            Some((_, flag)) => Err(ConfigError::Sparse(format!(
                "{flag} is a setting of the sparse vector: add --sparse bm25 (or `sparse = \"bm25\"` in the entry)"
            ))),
            None => Ok(None),
        };
    };
    Ok(Some(SparseSettings {
        name: name.unwrap_or_else(|| DEFAULT_NAME.to_owned()),
        text,
        language: language.unwrap_or_else(|| DEFAULT_LANGUAGE.to_owned()),
        dense: !no_dense,
    }))
}

/// The sparse vector of a job whose dense vector is `vector_name`.
pub fn spec(s: &SparseSettings, vector_name: Option<&str>) -> Result<SparseSpec, ConfigError> {
    super::check_vector_name(&s.name)?;
    if s.dense && vector_name == Some(s.name.as_str()) {
        return Err(ConfigError::Sparse(format!(
            "the dense and the sparse vector are both named `{}`: give the sparse one another --sparse-name",
            s.name
        )));
    }
    if !s.dense && vector_name.is_some_and(|v| v != s.name) {
        return Err(ConfigError::Sparse(
            "--vector-name names a dense vector, and --no-dense writes none: name the sparse vector with --sparse-name".into(),
        ));
    }
    let template = match &s.text {
        Some(t) => Some(
            Template::parse(t).map_err(|e| ConfigError::Sparse(format!("--sparse-text: {e}")))?,
        ),
        None => None,
    };
    Ok(SparseSpec {
        name: s.name.clone(),
        template,
        bm25: Arc::new(Bm25::new(&s.language).map_err(ConfigError::Sparse)?),
        dense: s.dense,
    })
}

/// Two jobs into one target must not write the same sparse vector (each would overwrite the
/// other's and take it for stale).
pub fn check_shared(jobs: &[Job]) -> Result<(), ConfigError> {
    for (i, a) in jobs.iter().enumerate() {
        let Some(sa) = &a.sparse else { continue };
        let twin = jobs[i + 1..].iter().find(|b| {
            b.target == a.target
                && b.source.namespace() == a.source.namespace()
                && b.sparse.as_ref().is_some_and(|sb| sb.name == sa.name)
        });
        let dense_twin = jobs.iter().find(|b| {
            b.target == a.target && !b.sparse_only() && b.vector_name.as_deref() == Some(&sa.name)
        });
        if let Some(b) = dense_twin {
            return Err(ConfigError::Sparse(format!(
                "{} writes a dense vector named `{}` into `{}`, and {} a sparse vector of that name: give the sparse one another --sparse-name (`sparse_name`)",
                b.route(),
                sa.name,
                a.target,
                a.route()
            )));
        }
        if let Some(b) = twin {
            return Err(ConfigError::Sparse(format!(
                "{} and {} both write the sparse vector `{}` of `{}`: give one of them another --sparse-name (`sparse_name`)",
                a.route(),
                b.route(),
                sa.name,
                a.target
            )));
        }
    }
    Ok(())
}
