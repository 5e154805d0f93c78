#!/usr/bin/env bash
# The README's first command: set up everything on a fresh machine, load a small demo
# collection (tests/data/demo.jsonl, written for this project) into a local MongoDB-protocol
# server, sync it into the embedded Qdrant store, then search it.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$M2Q_ROOT"
bash models/fetch.sh
setup_secantus
cargo_cmd build --release --quiet
bin="${CARGO_TARGET_DIR:-$M2Q_ROOT/target}/release/mongo2qdrant"

work="$(mktemp -d)"
port="${M2Q_DEMO_PORT:-27117}"
"$M2Q_SECANTUSD" --host 127.0.0.1 --port "$port" --storage-path "$work/mongo" >"$work/mongo.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null || true' EXIT
uri="mongodb://127.0.0.1:$port/?directConnection=true"
for _ in $(seq 1 100); do
  (echo >/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break
  sleep 0.1
done

"$M2Q_ROOT/.venv/bin/python" - "$uri" tests/data/demo.jsonl <<'PY'
import sys
from bson import json_util
from pymongo import MongoClient
uri, path = sys.argv[1:]
coll = MongoClient(uri).demo.howto
coll.drop()
coll.insert_many([json_util.loads(line) for line in open(path) if line.strip()])
print(f"demo: loaded {coll.count_documents({})} documents into demo.howto")
PY

store="${M2Q_DEMO_STORE:-$M2Q_ROOT/qdrant-data}"
"$bin" sync --mongo-uri "$uri" --database demo --collection howto \
  --text '{title}\n{body}' --payload title,category --qdrant-path "$store"
echo
echo "demo: search 'my sink is clogged'"
"$bin" search "my sink is clogged" --collection-name howto --qdrant-path "$store" -k 3
echo
echo "demo: search 'keeping warm on a mountain walk'"
"$bin" search "keeping warm on a mountain walk" --collection-name howto --qdrant-path "$store" -k 3
