#!/usr/bin/env bash
# The whole test suite, from a fresh clone: fetch the model and ONNX Runtime, install the
# MongoDB-protocol test server, start a Qdrant server when one is at hand (see start_qdrant in
# env.sh), then run every test; --no-fail-fast, so one failure does not hide the rest.
# The tests that need a Qdrant server are #[ignore]d without one: with a server they run
# (--include-ignored); without, the summary counts them as ignored, never as passed.
# Arguments go to cargo test: `bash tests/run.sh --test suites watch::` runs one suite.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$M2Q_ROOT"
bash models/fetch.sh
setup_secantus
start_qdrant
# Outside CI, this crate builds incrementally: after an edit only what changed is compiled
# again (seconds instead of minutes); the first such build takes longer. CI (CI=true) builds
# from scratch anyway, and faster without it.
if [[ -z "${CI:-}" ]]; then
  export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-1}"
fi
args=("$@")
if [[ -n "${QDRANT_URL:-}" ]]; then
  # After the first `--` (the test binaries' own arguments); add one if there is none.
  if [[ " ${args[*]-} " != *" -- "* ]]; then args+=(--); fi
  args+=(--include-ignored)
else
  echo "setup: the tests that need a Qdrant server are ignored (see 'ignored' in the summary)"
fi
cargo_cmd test --release --no-fail-fast ${args[@]+"${args[@]}"}
