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
