//! Where the default model, ONNX Runtime and OpenVINO are found without flags, so that a binary
//! copied anywhere and started from any directory (cron, `/usr/local/bin`) works: the model
//! cache (`$M2Q_HOME/models`, by default `~/.cache/mongo2qdrant/models`, which
//! `bash models/fetch.sh` fills), then beside the executable (a release unpacked with its
//! `models/`, or `target/release` in the repository), then `models/cache` under the working
//! directory. Flags and their environment variables override each.

use std::path::PathBuf;

/// The default model's folder under the cache.
pub const DEFAULT_MODEL: &str = "all-MiniLM-L6-v2";
/// ONNX Runtime's library under the cache.
pub const ORT_LIBRARY: &str = "onnxruntime/libonnxruntime.so";
/// OpenVINO's C library under the cache.
pub const OPENVINO_LIBRARY: &str = "openvino/libopenvino_c.so";

/// `$M2Q_HOME`, else `$XDG_CACHE_HOME/mongo2qdrant`, else `~/.cache/mongo2qdrant`.
pub fn home() -> Option<PathBuf> {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    var("M2Q_HOME")
        .or_else(|| var("XDG_CACHE_HOME").map(|c| c.join("mongo2qdrant")))
        .or_else(|| var("HOME").map(|h| h.join(".cache/mongo2qdrant")))
}

/// Where `rel` (a path under the model cache) is looked for, in order.
pub fn candidates(rel: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(h) = home() {
        out.push(h.join("models").join(rel));
    }
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(PathBuf::from))
    {
        out.push(dir.join("models").join(rel));
        out.push(dir.join("../../models/cache").join(rel));
    }
    out.push(PathBuf::from("models/cache").join(rel));
    out
}

/// The first of [`candidates`] that exists; else the first (the one errors name, beside the
/// fix: `bash models/fetch.sh`, or the flag).
pub fn find(rel: &str) -> PathBuf {
    let all = candidates(rel);
    all.iter()
        .find(|p| p.exists())
        .or(all.first())
        .cloned()
        .unwrap_or_else(|| PathBuf::from(rel))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_comes_first_and_the_working_directory_last() {
        let c = candidates(DEFAULT_MODEL);
        assert!(c.last().unwrap().ends_with("models/cache/all-MiniLM-L6-v2"));
        assert!(c.len() >= 2);
    }
}
