//! What loading a model folder reads besides the folder's configuration: the graph's inputs
//! (each one fed, or the graph refused), its external weights, file digests, and the
//! tokenizer's lower-casing.

use std::path::Path;

use tokenizers::Tokenizer;

use super::EmbedError;
use super::folder::ModelFolder;
use super::pooling::Head;
use super::runner::{Feed, Input};

/// The inputs the graph in `bytes` takes, each one this tool feeds (or refused by name), and
/// the folder's pooling.
pub(super) fn feed_of(bytes: &[u8], folder: &ModelFolder) -> Result<Feed, EmbedError> {
    let unsupported = |what: String| EmbedError::Unsupported {
        dir: folder.onnx.parent().unwrap_or(Path::new(".")).to_path_buf(),
        what,
    };
    let names = super::dequant::graph_inputs(bytes)
        .map_err(|e| unsupported(format!("{}: {e}", folder.onnx.display())))?;
    let mut inputs = Vec::with_capacity(names.len());
    for name in names {
        match Input::of(&name) {
            Some(i) => inputs.push((name, i)),
            None => {
                return Err(unsupported(format!(
                    "the graph {} needs the input `{name}`, which this tool does not feed (it feeds input_ids, attention_mask, token_type_ids)",
                    folder.onnx.display()
                )));
            }
        }
    }
    for (needed, what) in [
        (Input::Ids, "input_ids: not a text encoder"),
        (
            Input::Mask,
            "attention_mask: padded texts would attend to their padding, and a text's vector would depend on its batch",
        ),
    ] {
        if !inputs.iter().any(|(_, i)| *i == needed) {
            return Err(unsupported(format!(
                "the graph {} takes no {what}",
                folder.onnx.display()
            )));
        }
    }
    Ok(Feed {
        inputs,
        head: Head {
            pooling: folder.pooling,
            normalize: folder.normalize,
        },
    })
}

/// Lower-case before every other normalisation, as sentence-transformers does for a model whose
/// `do_lower_case` is set (a Lowercase normalizer in front of the tokenizer's own; special
/// tokens written in the text stay as they are).
pub(super) fn lowercase_first(tokenizer: &mut Tokenizer) -> tokenizers::Result<()> {
    use tokenizers::normalizers::{Lowercase, NormalizerWrapper, Sequence};
    let mut chain = vec![NormalizerWrapper::Lowercase(Lowercase)];
    match tokenizer.get_normalizer().cloned() {
        Some(NormalizerWrapper::Lowercase(_)) => return Ok(()),
        Some(n) => chain.push(n),
        None => {}
    }
    tokenizer.with_normalizer(Some(NormalizerWrapper::Sequence(Sequence::new(chain))))?;
    Ok(())
}

/// External-data files of the graph at `model`: `model.onnx_data`, `model.onnx.data` and the
/// like beside it.
pub(super) fn external_data(model: &Path) -> Vec<std::path::PathBuf> {
    let (Some(dir), Some(name)) = (model.parent(), model.file_name()) else {
        return Vec::new();
    };
    let name = name.to_string_lossy();
    let mut out: Vec<std::path::PathBuf> = std::fs::read_dir(dir)
        .map(|r| {
            r.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name().is_some_and(|f| {
                        let f = f.to_string_lossy();
                        f != name
                            && (f.starts_with(&format!("{name}_data"))
                                || f.starts_with(&format!("{name}.data")))
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// Hex blake3 of a file's bytes.
pub(super) fn file_digest(path: &Path) -> std::io::Result<String> {
    let bytes = std::fs::read(path)?;
    Ok(blake3::hash(&bytes).to_hex().to_string())
}
