//! Models by name: `--model BAAI/bge-small-en-v1.5` (a Hugging Face model id with an ONNX export)
//! resolves to a folder in the model cache (`$M2Q_HOME/hub`, the Hub client's layout), and is
//! downloaded with the `hf-hub` client when missing: `HF_ENDPOINT`, `HF_TOKEN` and
//! `HF_HUB_OFFLINE=1` (the cache only) are honoured. Every file the model needs is fetched
//! (tokenizer, sentence-transformers configuration, the ONNX graph and its external data) and
//! checked against the Hub's digest (sha256 for large files, git's sha1 for the others): a
//! broken download is resumed by the client or refused and removed, never used.

use std::path::{Path, PathBuf};

use hf_hub::api::sync::{ApiBuilder, ApiRepo};
use hf_hub::{Cache, Repo, RepoType};
use sha2::Digest;

use super::EmbedError;

/// Files a sentence-transformers model folder may carry besides the graph and the pooling
/// configs its `modules.json` names.
const CONFIGS: [&str; 4] = [
    "modules.json",
    "sentence_bert_config.json",
    "config_sentence_transformers.json",
    "tokenizer_config.json",
];

/// Whether `model` names a Hub model rather than a folder: `owner/name`, not a path that exists.
pub fn is_model_id(model: &Path) -> bool {
    let s = model.to_string_lossy();
    !model.exists()
        && !s.starts_with(['/', '.', '~'])
        && s.split('/').count() == 2
        && s.split('/').all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        })
}

fn err(id: &str, what: impl std::fmt::Display) -> EmbedError {
    EmbedError::Hub {
        id: id.to_owned(),
        what: what.to_string(),
    }
}

/// The local folder of the Hub model `id`, every file it needs present and checked: from the
/// cache under `home`, downloading what is missing (unless offline). `onnx_file` picks the
/// graph as `--onnx-file` does.
pub fn resolve(id: &str, home: &Path, onnx_file: Option<&str>) -> Result<PathBuf, EmbedError> {
    let cache = Cache::new(home.join("hub"));
    let repo = Repo::new(id.to_owned(), RepoType::Model);
    let offline = std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| v == "1" || v == "true");
    if offline {
        let local = cache.repo(repo);
        let tok = local.get("tokenizer.json").ok_or_else(|| {
            err(id, format!("HF_HUB_OFFLINE is set and the model cache ({}) does not hold it; download it once without HF_HUB_OFFLINE", home.join("hub").display()))
        })?;
        return Ok(tok.parent().unwrap_or(home).to_path_buf());
    }
    let mut builder = ApiBuilder::from_cache(cache)
        .with_progress(false)
        .with_retries(3)
        .with_token(std::env::var("HF_TOKEN").ok().filter(|t| !t.is_empty()));
    if let Ok(endpoint) = std::env::var("HF_ENDPOINT") {
        builder = builder.with_endpoint(endpoint.trim_end_matches('/').to_owned());
    }
    let api = builder.build().map_err(|e| err(id, e))?;
    let remote = api.repo(repo);
    let info = remote.info().map_err(|e| {
        err(id, format!("{e} (is the id right, and the Hub at HF_ENDPOINT reachable? set HF_TOKEN for gated models, or pass a local folder)"))
    })?;
    let listed: Vec<String> = info.siblings.into_iter().map(|s| s.rfilename).collect();
    let has = |f: &str| listed.iter().any(|l| l == f);
    let graph = match onnx_file {
        Some(name) => [name.to_owned(), format!("onnx/{name}")]
            .into_iter()
            .find(|f| has(f)),
        None => ["model.onnx", "onnx/model.onnx"]
            .into_iter()
            .find(|f| has(f))
            .map(str::to_owned),
    };
    let Some(graph) = graph else {
        let graphs: Vec<&String> = listed.iter().filter(|f| f.ends_with(".onnx")).collect();
        return Err(err(
            id,
            if graphs.is_empty() {
                "it has no ONNX export (model.onnx or onnx/*.onnx); export one (optimum-cli export onnx) and pass its folder".to_owned()
            } else {
                format!(
                    "no {} there; it holds {graphs:?}: pick one with --onnx-file NAME",
                    onnx_file.unwrap_or("model.onnx")
                )
            },
        ));
    };
    let mut wanted: Vec<String> = vec!["tokenizer.json".into(), graph.clone()];
    wanted.extend(
        listed
            .iter()
            .filter(|f| {
                f.starts_with(&format!("{graph}_data")) || f.starts_with(&format!("{graph}.data"))
            })
            .cloned(),
    );
    wanted.extend(CONFIGS.iter().filter(|f| has(f)).map(|f| f.to_string()));
    // The modules' own configs (`1_Pooling/config.json`...).
    wanted.extend(
        listed
            .iter()
            .filter(|f| {
                f.matches('/').count() == 1
                    && f.ends_with("/config.json")
                    && !f.starts_with("onnx/")
            })
            .cloned(),
    );
    let mut folder = None;
    for f in &wanted {
        let path = fetch(&remote, id, f)?;
        if f == "tokenizer.json" {
            folder = path.parent().map(Path::to_path_buf);
        }
    }
    let folder = folder.ok_or_else(|| err(id, "no tokenizer.json in the download"))?;
    // The graph under `onnx/` is found there by the folder reader.
    Ok(folder)
}

/// `file` of the model, downloaded (or found) and checked against the Hub's digest: the blob's
/// name, sha256 (large files) or git's sha1 of the blob. A mismatch removes the file.
fn fetch(remote: &ApiRepo, id: &str, file: &str) -> Result<PathBuf, EmbedError> {
    let path = remote
        .get(file)
        .map_err(|e| err(id, format!("downloading {file}: {e}; run again to resume")))?;
    let blob = std::fs::canonicalize(&path).map_err(|e| err(id, format!("{file}: {e}")))?;
    let digest = blob
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let read = |e: std::io::Error| err(id, format!("{file}: {e}"));
    let actual = match digest.len() {
        64 => hex(&stream_digest(sha2::Sha256::new(), &blob).map_err(read)?),
        40 => {
            // git's blob id: the header with the length, then the bytes.
            let len = std::fs::metadata(&blob).map_err(read)?.len();
            let mut h = sha1::Sha1::new();
            h.update(format!("blob {len}\0").as_bytes());
            hex(&stream_digest(h, &blob).map_err(read)?)
        }
        _ => return Ok(path), // no digest the Hub gives to check against
    };
    if actual != digest {
        let _ = std::fs::remove_file(&blob);
        let _ = std::fs::remove_file(&path);
        return Err(err(
            id,
            format!(
                "{file} came down broken (digest {actual}, the Hub says {digest}); it was removed: run again"
            ),
        ));
    }
    Ok(path)
}

/// `hasher` over the file at `path`, read a block at a time (a graph can be gigabytes).
fn stream_digest<D: Digest>(mut hasher: D, path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut block = vec![0u8; 1 << 20];
    loop {
        match file.read(&mut block)? {
            0 => return Ok(hasher.finalize().to_vec()),
            n => hasher.update(&block[..n]),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_folders_are_told_apart() {
        assert!(is_model_id(Path::new("BAAI/bge-small-en-v1.5")));
        assert!(is_model_id(Path::new("intfloat/e5-small-v2")));
        for not in [
            "models/cache/all-MiniLM-L6-v2/x",
            "/opt/model",
            "./a/b",
            "model",
            "a/b c",
        ] {
            assert!(!is_model_id(Path::new(not)), "{not}");
        }
    }
}
