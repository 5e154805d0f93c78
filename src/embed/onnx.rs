//! Sentence embeddings through ONNX Runtime (`ort`, loaded dynamically), as the model folder
//! says ([`super::folder`]): the prompt prepended, tokenised in parallel (rayon), sorted by
//! length, batched by count and token budget with dynamic padding, pooled as the model's
//! Pooling module does and L2-normalised where it has a Normalize module, as
//! sentence-transformers computes them. In bf16 (see [`super::precision`]) the same graph runs
//! in OpenVINO instead.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use rayon::prelude::*;
use tokenizers::{Encoding, Tokenizer, TruncationParams};

use super::folder::ModelFolder;
use super::loading::{external_data, feed_of, file_digest, lowercase_first};
use super::precision::{Compute, Precision};
use super::runner::{Feed, Runner, run_batch, runners};
use super::{EmbedConfig, EmbedError, EmbedStats, Embedder};

/// A tokenizer and a pool of runners (ONNX Runtime sessions or OpenVINO requests) over one
/// ONNX model.
pub struct OnnxEmbedder {
    tokenizer: Tokenizer,
    /// The same tokenizer without truncation, for splitting long texts into chunks.
    chunk_tokenizer: Tokenizer,
    sessions: Vec<Mutex<Runner>>,
    dimension: usize,
    model_id: String,
    compute: Compute,
    config: EmbedConfig,
    folder: ModelFolder,
    feed: Feed,
    /// Tokens the document prompt takes (what a chunk leaves it).
    prompt_tokens: usize,
}

impl std::fmt::Debug for OnnxEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnnxEmbedder")
            .field("model_id", &self.model_id)
            .field("dimension", &self.dimension)
            .field("sessions", &self.sessions.len())
            .field("compute", &self.compute)
            .finish()
    }
}

impl OnnxEmbedder {
    /// Load the tokenizer and `config.sessions` sessions; probes the output dimension.
    pub fn load(config: &EmbedConfig) -> Result<Self, EmbedError> {
        let mut config = config.clone();
        if super::hub::is_model_id(&config.model_dir) {
            let id = config.model_dir.to_string_lossy().into_owned();
            let home = super::locate::home().unwrap_or_else(|| std::path::PathBuf::from("."));
            config.model_dir =
                super::hub::resolve(&id, &home, config.overrides.onnx_file.as_deref())?;
            tracing::info!(model = %id, dir = %config.model_dir.display(), "model from the Hugging Face Hub cache");
        }
        let folder = ModelFolder::read(&config.model_dir, &config.overrides)?;
        if !folder.described {
            tracing::info!(
                dir = %config.model_dir.display(),
                "no sentence-transformers configuration (modules.json) in the model folder: mean pooling, L2-normalised, no prompt"
            );
        }
        if let Some(n) = folder.max_seq_length {
            config.max_tokens = n;
        }
        let config = &config;
        let model_path = folder.onnx.clone();
        let tokenizer_path = folder.tokenizer.clone();
        let bytes =
            std::fs::read(&model_path).map_err(|_| EmbedError::ModelMissing(model_path.clone()))?;
        let feed = feed_of(&bytes, &folder)?;
        let mut tokenizer =
            Tokenizer::from_file(&tokenizer_path).map_err(|e| EmbedError::Tokenizer {
                path: tokenizer_path.clone(),
                reason: e.to_string(),
            })?;
        // The shipped tokenizer.json pads to a fixed 128 and truncates at 128: we pad per batch
        // ourselves and truncate where sentence-transformers does.
        tokenizer.with_padding(None);
        if folder.lowercase {
            lowercase_first(&mut tokenizer).map_err(|e| EmbedError::Tokenizer {
                path: tokenizer_path.clone(),
                reason: e.to_string(),
            })?;
        }
        let mut chunk_tokenizer = tokenizer.clone();
        chunk_tokenizer
            .with_truncation(None)
            .map_err(|e| EmbedError::Tokenizer {
                path: tokenizer_path.clone(),
                reason: e.to_string(),
            })?;
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: config.max_tokens,
                ..Default::default()
            }))
            .map_err(|e| EmbedError::Tokenizer {
                path: tokenizer_path.clone(),
                reason: e.to_string(),
            })?;

        let (compute, sessions) = runners(config, &model_path)?;

        // What decides the vectors: the graph and weights, the tokenizer, the token limit, the
        // pooling, normalisation and document prompt; not where the files happen to be (a
        // renamed directory must not re-embed anything).
        let mut hasher = blake3::Hasher::new();
        hasher.update(&bytes);
        drop(bytes);
        // Weights kept beside the graph (exports over 2 GB, and many under `onnx/`).
        for data in external_data(&model_path) {
            let b = std::fs::read(&data).map_err(|_| EmbedError::ModelMissing(data.clone()))?;
            hasher.update(&b);
        }
        let digest = hasher.finalize().to_hex().to_string();
        let tok = file_digest(&tokenizer_path)
            .map_err(|_| EmbedError::ModelMissing(tokenizer_path.clone()))?;
        let mut model_id = format!(
            "onnx-{}/tokenizer-{}/max{}",
            &digest[..16],
            &tok[..16],
            config.max_tokens
        );
        model_id.push_str(&folder.identity());
        // An explicit precision is part of the identity; `auto` is not (module precision).
        match config.precision {
            Precision::Auto => {}
            Precision::Fp32 => model_id.push_str("/fp32"),
            Precision::Bf16 => model_id.push_str("/bf16"),
        }

        let prompt_tokens = match &folder.document_prompt {
            Some(p) => chunk_tokenizer
                .encode(p.as_str(), false)
                .map_or(0, |e| e.get_ids().len()),
            None => 0,
        };
        let mut me = Self {
            tokenizer,
            chunk_tokenizer,
            sessions,
            dimension: 0,
            model_id,
            compute,
            config: config.clone(),
            folder,
            feed,
            prompt_tokens,
        };
        let (probe, _) = me.embed(&["probe"])?;
        me.dimension = probe[0].len();
        if let Some(d) = me.folder.dimension
            && d != me.dimension
        {
            return Err(EmbedError::Unsupported {
                dir: config.model_dir.clone(),
                what: format!(
                    "the Pooling config says dimension {d}, the graph gives {}: the graph is not this model's",
                    me.dimension
                ),
            });
        }
        Ok(me)
    }

    /// What the model folder says (pooling, prompts, distance).
    pub fn folder(&self) -> &ModelFolder {
        &self.folder
    }

    /// Tokenise documents in parallel, without padding (with the document prompt).
    pub fn tokenize(&self, texts: &[&str]) -> Result<Vec<Encoding>, EmbedError> {
        self.tokenize_with(texts, self.folder.document_prompt.as_deref())
    }

    /// Tokenise `texts` with `prompt` prepended (and lower-cased where the model says so).
    fn tokenize_with(
        &self,
        texts: &[&str],
        prompt: Option<&str>,
    ) -> Result<Vec<Encoding>, EmbedError> {
        texts
            .par_iter()
            .map(|t| {
                let text = match prompt {
                    Some(p) => format!("{p}{t}"),
                    None => (*t).to_owned(),
                };
                self.tokenizer
                    .encode_fast(text, true)
                    .map_err(|e| EmbedError::Tokenizer {
                        path: self.folder.tokenizer.clone(),
                        reason: e.to_string(),
                    })
            })
            .collect()
    }

    /// Embed already tokenised texts: length-sorted, batched by count and token budget, spread
    /// over the session pool. Results come back in input order.
    pub fn embed_encodings(
        &self,
        encodings: &[Encoding],
    ) -> Result<(Vec<Vec<f32>>, EmbedStats), EmbedError> {
        let mut order: Vec<usize> = (0..encodings.len()).collect();
        order.sort_by_key(|&i| encodings[i].get_ids().len());
        let batches = plan_batches(
            order.iter().map(|&i| encodings[i].get_ids().len()),
            self.config.max_batch,
            self.config.max_batch_tokens,
        );

        let next = AtomicUsize::new(0);
        let results: Mutex<Vec<Option<Vec<f32>>>> = Mutex::new(vec![None; encodings.len()]);
        let stats = Mutex::new(EmbedStats::default());
        let workers = self.sessions.len().min(batches.len()).max(1);
        let outcome: Result<(), EmbedError> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..workers)
                .map(|w| {
                    let (next, results, stats, batches, order) =
                        (&next, &results, &stats, &batches, &order);
                    scope.spawn(move || -> Result<(), EmbedError> {
                        let mut session = self.sessions[w].lock().expect("session lock poisoned");
                        loop {
                            let b = next.fetch_add(1, Ordering::Relaxed);
                            let Some(range) = batches.get(b) else {
                                return Ok(());
                            };
                            let members: Vec<usize> = order[range.clone()].to_vec();
                            let batch: Vec<&Encoding> =
                                members.iter().map(|&i| &encodings[i]).collect();
                            let (vectors, s) = run_batch(&mut session, &batch, &self.feed)?;
                            stats.lock().expect("stats").add(&s);
                            let mut out = results.lock().expect("results");
                            for (i, v) in members.into_iter().zip(vectors) {
                                out[i] = Some(v);
                            }
                        }
                    })
                })
                .collect();
            handles
                .into_iter()
                .try_for_each(|h| h.join().expect("embedding thread panicked"))
        });
        outcome?;
        let vectors = results
            .into_inner()
            .expect("results")
            .into_iter()
            .map(|v| v.expect("every text was embedded"))
            .collect();
        Ok((vectors, stats.into_inner().expect("stats")))
    }

    /// The configuration this embedder was loaded with.
    pub fn config(&self) -> &EmbedConfig {
        &self.config
    }
}

impl Embedder for OnnxEmbedder {
    fn embed(&self, texts: &[&str]) -> Result<(Vec<Vec<f32>>, EmbedStats), EmbedError> {
        let t = Instant::now();
        let encodings = self.tokenize(texts)?;
        let tokenize_secs = t.elapsed().as_secs_f64();
        let (vectors, mut stats) = self.embed_encodings(&encodings)?;
        stats.tokenize_secs += tokenize_secs;
        Ok((vectors, stats))
    }

    fn embed_query(&self, texts: &[&str]) -> Result<(Vec<Vec<f32>>, EmbedStats), EmbedError> {
        let t = Instant::now();
        let encodings = self.tokenize_with(texts, self.folder.query_prompt.as_deref())?;
        let tokenize_secs = t.elapsed().as_secs_f64();
        let (vectors, mut stats) = self.embed_encodings(&encodings)?;
        stats.tokenize_secs += tokenize_secs;
        Ok((vectors, stats))
    }

    fn dimension(&self) -> usize {
        self.dimension
    }

    fn distance(&self) -> crate::sink::Distance {
        self.folder.distance
    }

    fn model_id(&self) -> &str {
        &self.model_id
    }

    fn compute(&self) -> &Compute {
        &self.compute
    }

    fn chunk(&self, text: &str, size: usize, overlap: usize) -> Vec<String> {
        // Content tokens per window: the model adds [CLS] and [SEP], the prompt its own.
        let room = self
            .config
            .max_tokens
            .saturating_sub(2 + self.prompt_tokens);
        let size = size.clamp(8, room.max(8));
        let overlap = overlap.min(size / 2);
        match self.chunk_tokenizer.encode(text, false) {
            Ok(enc) => chunk_by_offsets(text, enc.get_offsets(), size, overlap),
            Err(_) => vec![text.to_owned()],
        }
    }
}

/// Split `text` into windows of `size` tokens (by their byte offsets), `overlap` shared.
pub fn chunk_by_offsets(
    text: &str,
    offsets: &[(usize, usize)],
    size: usize,
    overlap: usize,
) -> Vec<String> {
    if offsets.len() <= size {
        return vec![text.to_owned()];
    }
    let step = (size - overlap).max(1);
    let mut out = Vec::new();
    let mut start = 0;
    loop {
        let end = (start + size).min(offsets.len());
        let from = if start == 0 { 0 } else { offsets[start].0 };
        let to = if end == offsets.len() {
            text.len()
        } else {
            offsets[end].0
        };
        if let Some(s) = text.get(from..to) {
            out.push(s.trim().to_owned());
        }
        if end == offsets.len() {
            return out;
        }
        start += step;
    }
}

/// Cut `lengths` (already sorted) into index ranges of at most `max_batch` items whose padded
/// size (count x longest) stays within `max_tokens`.
pub fn plan_batches(
    lengths: impl Iterator<Item = usize>,
    max_batch: usize,
    max_tokens: usize,
) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut longest = 0;
    let mut i = 0;
    for len in lengths {
        let cand_longest = longest.max(len);
        let count = i - start + 1;
        if i > start && (count > max_batch.max(1) || count * cand_longest > max_tokens) {
            out.push(start..i);
            start = i;
            longest = len;
        } else {
            longest = cand_longest;
        }
        i += 1;
    }
    if i > start {
        out.push(start..i);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_respect_count_and_token_budget() {
        let lens = [3, 3, 4, 10, 10, 10, 50];
        let b = plan_batches(lens.iter().copied(), 3, 40);
        assert_eq!(b, vec![0..3, 3..6, 6..7]);
        let b = plan_batches(lens.iter().copied(), 100, 25);
        // 3,3,4 -> 12 ok, +10 -> 4*10=40 > 25
        assert_eq!(b[0], 0..3);
        assert!(b.iter().all(|r| !r.is_empty()));
        assert_eq!(b.last().unwrap().end, lens.len());
        // a single item larger than the budget still gets a batch of its own
        assert_eq!(plan_batches([500].into_iter(), 8, 10), vec![0..1]);
        assert!(plan_batches(std::iter::empty(), 8, 10).is_empty());
    }

    #[test]
    fn chunks_overlap_and_cover_the_text() {
        let text = "a b c d e f g h i j";
        let offsets: Vec<(usize, usize)> = (0..10).map(|i| (i * 2, i * 2 + 1)).collect();
        let chunks = chunk_by_offsets(text, &offsets, 4, 1);
        assert_eq!(chunks, vec!["a b c d", "d e f g", "g h i j"]);
        assert_eq!(chunk_by_offsets(text, &offsets, 10, 2), vec![text]);
    }
}
