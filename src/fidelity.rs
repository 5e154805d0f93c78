//! How close a reduced precision comes to fp32: cosine of each text's two vectors, and
//! recall@10 of a built-in query set searched over the same texts (exact search, both sides).

use serde::Serialize;

use crate::embed::{EmbedError, Embedder};

/// Neighbours compared per query.
pub const K: usize = 10;
/// Most queries taken from the texts.
pub const QUERIES: usize = 100;
/// Words per query.
const QUERY_WORDS: usize = 8;

/// One precision against fp32 on the same texts.
#[derive(Debug, Clone, Serialize)]
pub struct Fidelity {
    pub precision: String,
    pub against: String,
    pub texts: usize,
    pub cosine_min: f64,
    pub cosine_mean: f64,
    pub queries: usize,
    /// Mean share of fp32's top 10 that this precision's top 10 also holds.
    pub recall_at_10: f64,
}

/// The built-in queries over `texts`: the first words of evenly spaced texts, the way a user
/// types part of a title or a sentence they remember.
pub fn queries(texts: &[String]) -> Vec<String> {
    let n = QUERIES.min(texts.len());
    (0..n)
        .map(|k| &texts[k * texts.len() / n])
        .map(|t| {
            t.split_whitespace()
                .take(QUERY_WORDS)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .filter(|q| !q.is_empty())
        .collect()
}

/// `candidate` against `fp32` over `texts`.
pub fn measure(
    candidate: &dyn Embedder,
    fp32: &dyn Embedder,
    texts: &[String],
) -> Result<Fidelity, EmbedError> {
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let qs = queries(texts);
    let qrefs: Vec<&str> = qs.iter().map(String::as_str).collect();
    let (a, _) = candidate.embed(&refs)?;
    let (b, _) = fp32.embed(&refs)?;
    let (qa, _) = candidate.embed_query(&qrefs)?;
    let (qb, _) = fp32.embed_query(&qrefs)?;
    let cos: Vec<f64> = a
        .iter()
        .zip(&b)
        .map(|(x, y)| f64::from(dot(x, y)))
        .collect();
    Ok(Fidelity {
        precision: candidate.compute().precision.clone(),
        against: fp32.compute().precision.clone(),
        texts: texts.len(),
        cosine_min: cos.iter().copied().fold(1.0, f64::min),
        cosine_mean: cos.iter().sum::<f64>() / cos.len().max(1) as f64,
        queries: qs.len(),
        recall_at_10: recall(&qa, &a, &qb, &b, K),
    })
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Indices of the `k` best texts for `q` (vectors are unit length: dot = cosine).
fn top(q: &[f32], corpus: &[Vec<f32>], k: usize) -> Vec<usize> {
    let mut scored: Vec<(f32, usize)> = corpus
        .iter()
        .enumerate()
        .map(|(i, v)| (dot(q, v), i))
        .collect();
    scored.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)));
    scored.into_iter().take(k).map(|(_, i)| i).collect()
}

/// Mean over queries of |top_k(candidate) ∩ top_k(reference)| / k.
pub fn recall(
    queries_a: &[Vec<f32>],
    corpus_a: &[Vec<f32>],
    queries_b: &[Vec<f32>],
    corpus_b: &[Vec<f32>],
    k: usize,
) -> f64 {
    let k = k.min(corpus_a.len()).max(1);
    let hits: usize = queries_a
        .iter()
        .zip(queries_b)
        .map(|(qa, qb)| {
            let want = top(qb, corpus_b, k);
            top(qa, corpus_a, k)
                .iter()
                .filter(|i| want.contains(i))
                .count()
        })
        .sum();
    hits as f64 / (k * queries_a.len().max(1)) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recall_counts_shared_neighbours() {
        let unit = |x: f32, y: f32| {
            let n = (x * x + y * y).sqrt();
            vec![x / n, y / n]
        };
        let corpus = vec![
            unit(1.0, 0.0),
            unit(0.9, 0.1),
            unit(0.0, 1.0),
            unit(0.1, 0.9),
        ];
        let q = vec![unit(1.0, 0.05)];
        assert_eq!(recall(&q, &corpus, &q, &corpus, 2), 1.0);
        // The candidate's corpus swaps which texts lie near the query: half of the top 2 stays.
        let moved = vec![
            unit(1.0, 0.0),
            unit(0.0, 1.0),
            unit(0.9, 0.1),
            unit(0.1, 0.9),
        ];
        assert_eq!(recall(&q, &moved, &q, &corpus, 2), 0.5);
    }

    #[test]
    fn queries_are_spread_over_the_texts() {
        let texts: Vec<String> = (0..1000)
            .map(|i| format!("text {i} with several words in it and more"))
            .collect();
        let q = queries(&texts);
        assert_eq!(q.len(), QUERIES);
        assert_eq!(q[1], "text 10 with several words in it and");
        assert!(queries(&[]).is_empty());
    }
}
