//! One vector per text from a `[n, len, dim]` output of token vectors, as sentence-transformers'
//! Pooling module computes it (over the tokens the attention mask keeps; right padding), then
//! L2-normalised where the model has a Normalize module.

use super::EmbedError;
use super::folder::Pooling;

/// How a batch's token vectors become text vectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub pooling: Pooling,
    pub normalize: bool,
}

impl Default for Head {
    fn default() -> Self {
        Head {
            pooling: Pooling::Mean,
            normalize: true,
        }
    }
}

/// The text vectors of a `[n, len, dim]` output `data` under `mask` (`[n, len]`, 1 = kept).
pub fn pool(
    head: Head,
    dims: &[usize],
    data: &[f32],
    mask: &[i64],
    n: usize,
    len: usize,
) -> Result<Vec<Vec<f32>>, EmbedError> {
    if dims.len() != 3 || dims[0] != n || dims[1] != len || data.len() != n * len * dims[2] {
        return Err(EmbedError::OutputShape(
            dims.iter().map(|&d| d as i64).collect(),
        ));
    }
    let dim = dims[2];
    let token = |r: usize, c: usize| &data[(r * len + c) * dim..(r * len + c + 1) * dim];
    let mut vectors = Vec::with_capacity(n);
    for r in 0..n {
        let kept: Vec<usize> = (0..len).filter(|&c| mask[r * len + c] == 1).collect();
        let mut v = vec![0f32; dim];
        match head.pooling {
            Pooling::Cls => v.copy_from_slice(token(r, 0)),
            Pooling::LastToken => {
                // The last kept token (right padding: the one before the first pad).
                let last = kept.last().copied().unwrap_or(len.saturating_sub(1));
                v.copy_from_slice(token(r, last));
            }
            Pooling::Max => {
                // Padding counts as -1e9, as sentence-transformers sets it.
                v.iter_mut().for_each(|x| *x = -1e9);
                for &c in &kept {
                    for (m, x) in v.iter_mut().zip(token(r, c)) {
                        *m = m.max(*x);
                    }
                }
            }
            Pooling::Mean | Pooling::MeanSqrtLen | Pooling::WeightedMean => {
                let mut weight = 0f32;
                for &c in &kept {
                    let w = match head.pooling {
                        Pooling::WeightedMean => (c + 1) as f32,
                        _ => 1.0,
                    };
                    for (acc, x) in v.iter_mut().zip(token(r, c)) {
                        *acc += w * x;
                    }
                    weight += w;
                }
                let weight = weight.max(1e-9);
                let by = match head.pooling {
                    Pooling::MeanSqrtLen => weight.sqrt(),
                    _ => weight,
                };
                v.iter_mut().for_each(|x| *x /= by);
            }
        }
        if head.normalize {
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
            v.iter_mut().for_each(|x| *x /= norm);
        }
        vectors.push(v);
    }
    Ok(vectors)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two texts of 3 token slots, 2-dimensional token vectors; the second text has 2 tokens.
    const DATA: [f32; 12] = [
        1., 0., 3., 4., 5., 2., /* row 2 */ 2., 2., 0., 6., 9., 9.,
    ];
    const MASK: [i64; 6] = [1, 1, 1, 1, 1, 0];

    fn pooled(pooling: Pooling) -> Vec<Vec<f32>> {
        let head = Head {
            pooling,
            normalize: false,
        };
        pool(head, &[2, 3, 2], &DATA, &MASK, 2, 3).unwrap()
    }

    #[test]
    fn every_mode_over_the_kept_tokens() {
        assert_eq!(pooled(Pooling::Mean), vec![vec![3., 2.], vec![1., 4.]]);
        assert_eq!(pooled(Pooling::Cls), vec![vec![1., 0.], vec![2., 2.]]);
        assert_eq!(pooled(Pooling::LastToken), vec![vec![5., 2.], vec![0., 6.]]);
        assert_eq!(pooled(Pooling::Max), vec![vec![5., 4.], vec![2., 6.]]);
        let s3 = 3f32.sqrt();
        let s2 = 2f32.sqrt();
        assert_eq!(
            pooled(Pooling::MeanSqrtLen),
            vec![vec![9. / s3, 6. / s3], vec![2. / s2, 8. / s2]]
        );
        // Weights 1, 2, 3: (1*1 + 2*3 + 3*5) / 6, (0 + 2*4 + 3*2) / 6; the padding is not kept.
        assert_eq!(
            pooled(Pooling::WeightedMean),
            vec![vec![22. / 6., 14. / 6.], vec![2. / 3., 14. / 3.]]
        );
    }

    #[test]
    fn normalised_to_unit_length_and_shapes_checked() {
        let v = pool(Head::default(), &[2, 3, 2], &DATA, &MASK, 2, 3).unwrap();
        for x in &v {
            let norm: f32 = x.iter().map(|a| a * a).sum::<f32>().sqrt();
            assert!((norm - 1.0).abs() < 1e-6);
        }
        assert!(matches!(
            pool(Head::default(), &[2, 2], &DATA[..4], &MASK, 2, 2),
            Err(EmbedError::OutputShape(_))
        ));
    }
}
