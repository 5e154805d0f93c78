//! BM25 sparse vectors, computed the way Qdrant computes them: qdrant-edge's own BM25 over the
//! server's tokenizer pipeline (lower-casing, the language's stop words, its Snowball stemmer,
//! the token length limit), murmur3 token ids and the term-frequency formula with `k = 1.2`,
//! `b = 0.75` and an average document length of 256. The inverse document frequency is not in
//! the vector: the collection's `idf` modifier applies it at search time, over what it holds.
//! `tests/sparse.rs` checks the vectors against what the Qdrant server infers for
//! `qdrant/bm25` from the same texts.

use std::sync::Arc;

use qdrant_edge::bm25_embed::{EdgeBm25, EdgeBm25Config};

use crate::text::Template;

/// The name of the sparse vector when none is given.
pub const DEFAULT_NAME: &str = "bm25";
/// The language whose stop words and stemmer apply when none is given (Qdrant's default).
pub const DEFAULT_LANGUAGE: &str = "english";

/// A sparse vector: token ids (sorted, unique) and their weights.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SparseVector {
    pub indices: Vec<u32>,
    pub values: Vec<f32>,
}

/// The BM25 model of one language.
pub struct Bm25 {
    model: EdgeBm25,
    language: String,
}

impl std::fmt::Debug for Bm25 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bm25({})", self.language)
    }
}

impl Bm25 {
    /// BM25 for `language` (a Snowball language as Qdrant names it: `english`, `german`, ...).
    pub fn new(language: &str) -> Result<Self, String> {
        let config = EdgeBm25Config {
            language: Some(language.to_owned()),
            ..EdgeBm25Config::default()
        };
        let model = EdgeBm25::new(config).map_err(|e| match e {
            qdrant_edge::bm25_embed::EdgeBm25Error::UnsupportedLanguage(l) => format!(
                "--sparse-language `{l}` is not a language Qdrant's BM25 knows; use one of Qdrant's text index languages, e.g. english, german, french, spanish"
            ),
            other => other.to_string(),
        })?;
        Ok(Self {
            model,
            language: language.to_owned(),
        })
    }

    /// What identifies these vectors: part of the content hash of every point that has one.
    pub fn id(&self) -> String {
        format!(
            "qdrant/bm25 k=1.2 b=0.75 avg_len=256 language={}",
            self.language
        )
    }

    /// The document vector of `text` (term-frequency weights).
    pub fn document(&self, text: &str) -> SparseVector {
        let v = self.model.embed_document(text);
        SparseVector {
            indices: v.indices,
            values: v.values,
        }
    }

    /// The query vector of `text` (weight 1 per distinct token; the collection's `idf`
    /// modifier weighs them).
    pub fn query(&self, text: &str) -> SparseVector {
        let v = self.model.embed_query(text);
        SparseVector {
            indices: v.indices,
            values: v.values,
        }
    }
}

/// A job's sparse vector: its name, what it is made of, and whether the job also writes a
/// dense vector.
#[derive(Debug, Clone)]
pub struct SparseSpec {
    /// The sparse vector's name in the collection.
    pub name: String,
    /// Its own text template (`--sparse-text`); `None`: the dense vector's text (per chunk).
    pub template: Option<Template>,
    pub bm25: Arc<Bm25>,
    /// `false`: a sparse-only job (no model).
    pub dense: bool,
}

impl SparseSpec {
    /// What decides the sparse vectors besides the text: part of their content hash and of
    /// the settings a resume must match.
    pub fn context(&self) -> String {
        format!(
            "{}|sparse={}|sparse_text={:?}",
            self.bm25.id(),
            self.name,
            self.template.as_ref().map(Template::source)
        )
    }
}

/// The embedder of a run whose jobs are all sparse-only (`--no-dense`): no model is loaded,
/// and nothing may ask it for a dense vector.
pub struct NoModel {
    compute: crate::embed::Compute,
}

impl Default for NoModel {
    fn default() -> Self {
        Self {
            compute: crate::embed::Compute {
                precision: "none".into(),
                runtime: "none".into(),
                isa: "none".into(),
                reason: "--no-dense: BM25 sparse vectors only, no model".into(),
            },
        }
    }
}

impl crate::embed::Embedder for NoModel {
    fn embed(
        &self,
        _texts: &[&str],
    ) -> Result<(Vec<Vec<f32>>, crate::embed::EmbedStats), crate::embed::EmbedError> {
        Err(crate::embed::EmbedError::Inference(
            "no model is loaded (--no-dense): dense vectors cannot be made; drop --no-dense".into(),
        ))
    }
    fn dimension(&self) -> usize {
        0
    }
    fn model_id(&self) -> &str {
        "none"
    }
    fn compute(&self) -> &crate::embed::Compute {
        &self.compute
    }
    fn chunk(&self, text: &str, _size: usize, _overlap: usize) -> Vec<String> {
        vec![text.to_owned()]
    }
}

/// Whether `a` and `b` hold the same terms with the same weights (to 1e-6; the order of the
/// terms aside).
pub fn same(a: &SparseVector, b: &SparseVector) -> bool {
    let sorted = |v: &SparseVector| {
        let mut pairs: Vec<(u32, f32)> = v
            .indices
            .iter()
            .copied()
            .zip(v.values.iter().copied())
            .collect();
        pairs.sort_by_key(|(i, _)| *i);
        pairs
    };
    let (a, b) = (sorted(a), sorted(b));
    a.len() == b.len()
        && a.iter()
            .zip(&b)
            .all(|((i, x), (j, y))| i == j && (x - y).abs() <= 1e-6)
}

/// The sparse vectors of `texts`, computed in parallel (rayon) off the async runtime.
pub async fn documents(bm25: Arc<Bm25>, texts: Vec<String>) -> Vec<SparseVector> {
    use rayon::prelude::*;
    tokio::task::spawn_blocking(move || texts.par_iter().map(|t| bm25.document(t)).collect())
        .await
        .expect("BM25 worker panicked")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_words_stemming_and_term_frequency() {
        let bm = Bm25::new("english").unwrap();
        // "the" is a stop word; "running" and "runs" stem to "run".
        let v = bm.document("the running runs");
        assert_eq!(v.indices.len(), 1, "{v:?}");
        // tf = 2 * 2.2 / (2 + 1.2 * (0.25 + 0.75 * 2 / 256))
        let want = 2.0 * 2.2 / (2.0 + 1.2 * (0.25 + 0.75 * 2.0 / 256.0));
        assert!((f64::from(v.values[0]) - want).abs() < 1e-6, "{v:?}");
        assert!(bm.document("the and of").indices.is_empty());
        assert!(bm.document("").indices.is_empty());
        let q = bm.query("running run");
        assert_eq!(q.values, vec![1.0]);
    }

    #[test]
    fn an_unknown_language_names_the_flag() {
        let e = Bm25::new("klingon").unwrap_err();
        assert!(e.contains("--sparse-language"), "{e}");
    }

    #[test]
    fn the_language_is_part_of_the_identity() {
        let (en, de) = (Bm25::new("english").unwrap(), Bm25::new("german").unwrap());
        assert_ne!(en.id(), de.id());
        assert_ne!(en.document("Häuser laufen"), de.document("Häuser laufen"));
    }
}
