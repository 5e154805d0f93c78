#!/usr/bin/env bash
# The whole test suite, from a fresh clone: fetch the model and ONNX Runtime, install the
# MongoDB-protocol test server, then run every test (each test starts its own server).
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$M2Q_ROOT"
bash models/fetch.sh
setup_secantus
cargo_cmd test --release "$@"
