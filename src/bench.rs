//! Embedding throughput harness (see issue 3).
