# Shared by the project's scripts: the repository root, a cargo new enough for this crate
# (rust-version 1.97: the stable toolchain if it is, else the installed nightly), and the
# SecantusDB server (MongoDB wire protocol) in .venv.
M2Q_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export M2Q_ROOT

cargo_cmd() {
  local v
  v="$(cargo --version 2>/dev/null | awk '{print $2}')"
  if [[ "$(printf '%s\n1.97.0\n' "${v%%-*}" | sort -V | head -n1)" == "1.97.0" ]]; then
    cargo "$@"
  else
    cargo +nightly "$@"
  fi
}

# Install SecantusDB (pinned) into .venv once.
setup_secantus() {
  local venv="$M2Q_ROOT/.venv"
  if [[ ! -x "$venv/bin/secantusd-py" ]]; then
    echo "setup: installing SecantusDB==0.7.0b3 into .venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check SecantusDB==0.7.0b3
  fi
  export M2Q_SECANTUSD="$venv/bin/secantusd-py"
}

# A real Qdrant server for the gRPC half of the suites. QDRANT_URL already set: use that server.
# Else start the one in ../shared/qdrant (stopped when the calling shell exits). Else say that
# the server half is skipped and how to run it.
start_qdrant() {
  if [[ -n "${QDRANT_URL:-}" ]]; then
    echo "setup: gRPC suites against the Qdrant server at $QDRANT_URL"
    return
  fi
  local start="$M2Q_ROOT/../shared/qdrant/start.sh"
  if [[ -x "$start" || -f "$start" ]]; then
    eval "$(bash "$start")"
    export QDRANT_URL
    trap 'kill "$QDRANT_PID" 2>/dev/null || true' EXIT
    echo "setup: started Qdrant 1.19 (../shared/qdrant) at $QDRANT_URL for the gRPC suites"
  else
    echo "setup: no Qdrant server: the gRPC half of each suite is skipped (the embedded half runs)."
    echo "       To run it: docker run -p 6334:6334 qdrant/qdrant, then QDRANT_URL=http://localhost:6334 bash tests/run.sh"
  fi
}
