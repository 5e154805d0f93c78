#!/usr/bin/env bash
# The whole test suite, from a fresh clone: fetch the model and ONNX Runtime, install the
# MongoDB-protocol test server, start a Qdrant server when one is at hand (see start_qdrant in
# env.sh), then run every test; --no-fail-fast, so one failure does not hide the rest.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$M2Q_ROOT"
bash models/fetch.sh
setup_secantus
start_qdrant
cargo_cmd test --release --no-fail-fast "$@"
