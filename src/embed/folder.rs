//! A model folder read for what it says, in the sentence-transformers layout models ship with:
//! `modules.json` (Transformer, Pooling, Normalize), `1_Pooling/config.json` (the pooling mode),
//! `sentence_bert_config.json` (token limit, lower-casing), `config_sentence_transformers.json`
//! (prompts, the similarity -> the collection's distance), and the ONNX graph as `model.onnx`
//! or under `onnx/`. Whatever this cannot honour is refused by name: never a silently
//! different vector. A folder without these files is read as all-MiniLM-L6-v2 wants it (mean
//! pooling, L2-normalised, no prompt, cosine), and the log says so once.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::EmbedError;
use crate::sink::Distance;

/// How token vectors become one text vector (sentence-transformers' pooling modes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// Mean over the tokens the attention mask keeps.
    Mean,
    /// The first token's vector (`[CLS]`).
    Cls,
    /// The element-wise maximum over the kept tokens.
    Max,
    /// The sum over the kept tokens divided by the square root of their count.
    MeanSqrtLen,
    /// The mean weighted by position (1, 2, 3, ...).
    WeightedMean,
    /// The last kept token's vector.
    LastToken,
}

impl Pooling {
    /// As sentence-transformers names it in `1_Pooling/config.json`.
    pub fn name(self) -> &'static str {
        match self {
            Pooling::Mean => "mean",
            Pooling::Cls => "cls",
            Pooling::Max => "max",
            Pooling::MeanSqrtLen => "mean_sqrt_len",
            Pooling::WeightedMean => "weightedmean",
            Pooling::LastToken => "lasttoken",
        }
    }
}

/// Flags that override what the folder says.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// The ONNX file under `onnx/` (or the folder) to run, by name.
    pub onnx_file: Option<String>,
    /// Prepended to every document text (`""`: none).
    pub document_prompt: Option<String>,
    /// Prepended to every query (`""`: none).
    pub query_prompt: Option<String>,
}

/// What a model folder says about running its model.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelFolder {
    pub onnx: PathBuf,
    pub tokenizer: PathBuf,
    pub pooling: Pooling,
    pub normalize: bool,
    /// Tokens per text, special tokens included (`max_seq_length`).
    pub max_seq_length: Option<usize>,
    /// Lower-case texts before tokenising (`do_lower_case`).
    pub lowercase: bool,
    pub document_prompt: Option<String>,
    pub query_prompt: Option<String>,
    pub distance: Distance,
    /// The dimension the pooling config names, checked against the graph's output.
    pub dimension: Option<usize>,
    /// Whether the folder has a sentence-transformers configuration (`modules.json`).
    pub described: bool,
}

/// Prompt names models use for documents and for queries, in order of preference.
const DOCUMENT_PROMPTS: [&str; 5] = ["document", "passage", "corpus", "search_document", "doc"];
const QUERY_PROMPTS: [&str; 2] = ["query", "search_query"];

impl ModelFolder {
    /// Read `dir` with `o` applied.
    pub fn read(dir: &Path, o: &Overrides) -> Result<Self, EmbedError> {
        let unsupported = |what: String| EmbedError::Unsupported {
            dir: dir.to_path_buf(),
            what,
        };
        let mut me = ModelFolder {
            onnx: onnx_file(dir, o.onnx_file.as_deref())?,
            tokenizer: dir.join("tokenizer.json"),
            pooling: Pooling::Mean,
            normalize: true,
            max_seq_length: None,
            lowercase: false,
            document_prompt: None,
            query_prompt: None,
            distance: Distance::Cosine,
            dimension: None,
            described: false,
        };
        if !me.tokenizer.is_file() {
            return Err(EmbedError::ModelMissing(me.tokenizer));
        }
        if let Some(modules) = json(dir, "modules.json")? {
            me.described = true;
            me.read_modules(dir, &modules).map_err(unsupported)?;
        }
        if let Some(c) = json(dir, "sentence_bert_config.json")? {
            me.max_seq_length = c
                .get("max_seq_length")
                .and_then(Value::as_u64)
                .map(|n| n as usize);
            me.lowercase = c
                .get("do_lower_case")
                .and_then(Value::as_bool)
                .unwrap_or(false);
        }
        if let Some(c) = json(dir, "config_sentence_transformers.json")? {
            me.read_st_config(&c).map_err(unsupported)?;
        }
        if me.described && me.max_seq_length.is_none() {
            // As sentence-transformers does without `max_seq_length`: the tokenizer's
            // `model_max_length`, capped by the model's `max_position_embeddings`.
            let number = |v: Option<Value>, k: &str| {
                v.and_then(|c| c.get(k).and_then(Value::as_f64))
                    .filter(|n| *n > 0.0 && *n < 1e6)
                    .map(|n| n as usize)
            };
            let tokenizer = number(json(dir, "tokenizer_config.json")?, "model_max_length");
            let positions = number(json(dir, "config.json")?, "max_position_embeddings");
            me.max_seq_length = match (tokenizer, positions) {
                (Some(t), Some(p)) => Some(t.min(p)),
                (t, p) => t.or(p),
            };
        }
        let given = |p: &Option<String>| p.as_ref().map(|s| (!s.is_empty()).then(|| s.clone()));
        if let Some(p) = given(&o.document_prompt) {
            me.document_prompt = p;
        }
        if let Some(p) = given(&o.query_prompt) {
            me.query_prompt = p;
        }
        Ok(me)
    }

    fn read_modules(&mut self, dir: &Path, modules: &Value) -> Result<(), String> {
        let list = modules
            .as_array()
            .ok_or("modules.json is not a list of modules")?;
        let mut pooling = None;
        let mut normalize = false;
        for (i, m) in list.iter().enumerate() {
            let kind = m.get("type").and_then(Value::as_str).unwrap_or("");
            let short = kind.rsplit('.').next().unwrap_or(kind);
            let path = m.get("path").and_then(Value::as_str).unwrap_or("");
            match (i, short) {
                (0, "Transformer") if path.is_empty() => {}
                (0, _) => {
                    return Err(format!(
                        "the first module is {kind} at `{path}`; only a Transformer in the folder itself is supported"
                    ));
                }
                (_, "Pooling") if pooling.is_none() => {
                    pooling = Some(read_pooling(&dir.join(path).join("config.json"))?);
                }
                (_, "Normalize") => normalize = true,
                _ => {
                    return Err(format!(
                        "module {kind} (`{path}`) is not supported (supported: Transformer, one Pooling, Normalize); its vectors would differ from the model's"
                    ));
                }
            }
        }
        let (mode, dimension) = pooling.ok_or(
            "modules.json has no Pooling module: the model gives token vectors, not one vector per text",
        )?;
        self.pooling = mode;
        self.dimension = dimension;
        self.normalize = normalize;
        Ok(())
    }

    fn read_st_config(&mut self, c: &Value) -> Result<(), String> {
        let prompts: Vec<(String, String)> = c
            .get("prompts")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                    .collect()
            })
            .unwrap_or_default();
        // The first of `names` the config has, even when empty (an explicit "no prompt").
        let named = |names: &[&str]| {
            names
                .iter()
                .find_map(|n| prompts.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone()))
        };
        // sentence-transformers prepends the default prompt to every text it encodes.
        let default = c
            .get("default_prompt_name")
            .and_then(Value::as_str)
            .and_then(|n| named(&[n]));
        let some = |p: Option<String>| p.filter(|p| !p.is_empty());
        self.document_prompt = some(named(&DOCUMENT_PROMPTS).or(default.clone()));
        self.query_prompt = some(named(&QUERY_PROMPTS).or(default));
        if let Some(f) = c.get("similarity_fn_name").and_then(Value::as_str) {
            self.distance = match f {
                "cosine" => Distance::Cosine,
                "dot" | "dot_product" => Distance::Dot,
                "euclidean" => Distance::Euclid,
                "manhattan" => Distance::Manhattan,
                other => return Err(format!("similarity function `{other}` is not supported")),
            };
        }
        Ok(())
    }

    /// What decides the vectors beyond the graph and tokenizer, for the content identity:
    /// empty for mean pooling, normalised, no prompt (so such a folder keeps the ids it had).
    pub fn identity(&self) -> String {
        let mut id = String::new();
        if self.pooling != Pooling::Mean {
            id.push_str(&format!("/pool-{}", self.pooling.name()));
        }
        if !self.normalize {
            id.push_str("/raw");
        }
        if self.lowercase {
            id.push_str("/lower");
        }
        if let Some(p) = &self.document_prompt {
            id.push_str(&format!(
                "/prompt-{}",
                &blake3::hash(p.as_bytes()).to_hex()[..16]
            ));
        }
        id
    }
}

/// `name` in `dir` as JSON; `None` when there is no such file.
fn json(dir: &Path, name: &str) -> Result<Option<Value>, EmbedError> {
    let path = dir.join(name);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(EmbedError::Unsupported {
                dir: dir.to_path_buf(),
                what: format!("{name} cannot be read ({e})"),
            });
        }
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| EmbedError::Unsupported {
            dir: dir.to_path_buf(),
            what: format!("{name} is not valid JSON ({e})"),
        })
}

/// The pooling mode and dimension of a sentence-transformers `Pooling` config.
fn read_pooling(path: &Path) -> Result<(Pooling, Option<usize>), String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("the Pooling module's {}: {e}", path.display()))?;
    let c: Value = serde_json::from_str(&text)
        .map_err(|e| format!("{} is not valid JSON ({e})", path.display()))?;
    let on = |k: &str| c.get(k).and_then(Value::as_bool).unwrap_or(false);
    let modes = [
        ("pooling_mode_cls_token", Pooling::Cls),
        ("pooling_mode_mean_tokens", Pooling::Mean),
        ("pooling_mode_max_tokens", Pooling::Max),
        ("pooling_mode_mean_sqrt_len_tokens", Pooling::MeanSqrtLen),
        ("pooling_mode_weightedmean_tokens", Pooling::WeightedMean),
        ("pooling_mode_lasttoken", Pooling::LastToken),
    ];
    let mut chosen: Vec<Pooling> = modes
        .iter()
        .filter(|(k, _)| on(k))
        .map(|(_, p)| *p)
        .collect();
    // sentence-transformers >= 6 writes one `pooling_mode` (a name, or a list to concatenate).
    let named: Vec<&str> = match c.get("pooling_mode") {
        Some(Value::String(m)) => vec![m.as_str()],
        Some(Value::Array(ms)) => ms.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    for m in named {
        chosen.push(match m {
            "cls" => Pooling::Cls,
            "mean" => Pooling::Mean,
            "max" => Pooling::Max,
            "mean_sqrt_len_tokens" => Pooling::MeanSqrtLen,
            "weightedmean" => Pooling::WeightedMean,
            "lasttoken" => Pooling::LastToken,
            other => {
                return Err(format!(
                    "{}: pooling mode `{other}` is not supported",
                    path.display()
                ));
            }
        });
    }
    if c.get("include_prompt").and_then(Value::as_bool) == Some(false) {
        return Err(
            "pooling without the prompt's tokens (include_prompt: false) is not supported".into(),
        );
    }
    let dimension = ["word_embedding_dimension", "embedding_dimension"]
        .iter()
        .find_map(|k| c.get(*k).and_then(Value::as_u64))
        .map(|d| d as usize);
    match chosen.as_slice() {
        [one] => Ok((*one, dimension)),
        [] => Err(format!("{}: no pooling mode is on", path.display())),
        _ => Err(format!(
            "{}: several pooling modes at once ({}) concatenate vectors, which is not supported",
            path.display(),
            chosen
                .iter()
                .map(|p| p.name())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// The ONNX graph: `name` when given (in the folder or under `onnx/`), else `model.onnx` in
/// the folder or under `onnx/`; several candidates and no `model.onnx` are refused by name.
fn onnx_file(dir: &Path, name: Option<&str>) -> Result<PathBuf, EmbedError> {
    let sub = dir.join("onnx");
    let candidates = |d: &Path| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .map(|r| {
                r.filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.ends_with(".onnx"))
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    };
    let want = name.unwrap_or("model.onnx");
    for d in [dir, sub.as_path()] {
        let p = d.join(want);
        if p.is_file() {
            return Ok(p);
        }
    }
    let found: Vec<String> = candidates(dir)
        .into_iter()
        .chain(candidates(&sub).into_iter().map(|n| format!("onnx/{n}")))
        .collect();
    match found.as_slice() {
        [] => Err(EmbedError::ModelMissing(dir.join(want))),
        [one] if name.is_none() => Ok(dir.join(one)),
        _ => Err(EmbedError::Unsupported {
            dir: dir.to_path_buf(),
            what: format!(
                "no {want} here; it holds {}: pick one with --onnx-file NAME",
                found.join(", ")
            ),
        }),
    }
}

#[cfg(test)]
#[path = "folder_tests.rs"]
mod tests;
