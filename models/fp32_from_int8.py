"""Build an fp32 twin of the int8-weight all-MiniLM-L6-v2 ONNX graph.

The int8 graph stores each large weight as int8 plus a per-channel scale and dequantises it at
run time (Cast -> Mul). This replaces every such chain by the original fp32 tensor from the
sentence-transformers checkpoint (model.safetensors of the tokenizer package). Each int8 tensor
is matched to the fp32 tensor (as is, or transposed) that it is a quantisation of: the match
must lie within one quantisation step everywhere, or the script fails. No names are guessed.

usage: fp32_from_int8.py INT8.onnx MODEL.safetensors OUT.onnx
"""

import json
import struct
import sys

import numpy as np
import onnx
from onnx import numpy_helper


def load_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    body = data[8 + n :]
    out = {}
    for name, meta in header.items():
        if name == "__metadata__" or meta["dtype"] != "F32":
            continue
        a, b = meta["data_offsets"]
        out[name] = np.frombuffer(body[a:b], dtype="<f4").reshape(meta["shape"])
    return out


def main(int8_path, st_path, out_path):
    model = onnx.load(int8_path)
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    consumers = {}
    for node in graph.node:
        for x in node.input:
            consumers.setdefault(x, []).append(node)
    weights = load_safetensors(st_path)
    used = set()
    drop_nodes, drop_inits, new_inits = [], [], []
    for init in list(graph.initializer):
        if init.data_type != onnx.TensorProto.INT8:
            continue
        (cast,) = consumers[init.name]
        (mul,) = consumers[cast.output[0]]
        assert cast.op_type == "Cast" and mul.op_type == "Mul", (cast.op_type, mul.op_type)
        scale_name = [x for x in mul.input if x != cast.output[0]][0]
        q = numpy_helper.to_array(init).astype(np.float32)
        scale = numpy_helper.to_array(inits[scale_name]).astype(np.float32)
        deq = q * scale
        step = np.broadcast_to(np.abs(scale), deq.shape)
        best = None
        for name, w in weights.items():
            if name in used:
                continue
            for cand in (w, w.T):
                if cand.shape != deq.shape:
                    continue
                excess = float(np.max(np.abs(cand - deq) - step))
                if best is None or excess < best[0]:
                    best = (excess, name, cand)
        if best is None or best[0] > 1e-6:
            sys.exit(f"no fp32 tensor matches {init.name} within one quantisation step")
        used.add(best[1])
        new_inits.append(numpy_helper.from_array(np.ascontiguousarray(best[2]), mul.output[0]))
        drop_nodes += [cast, mul]
        drop_inits += [init.name, scale_name]
        print(f"  {init.name} <- {best[1]}")
    for node in drop_nodes:
        graph.node.remove(node)
    for name in drop_inits:
        graph.initializer.remove(inits[name])
    graph.initializer.extend(new_inits)
    onnx.checker.check_model(model)
    onnx.save(model, out_path)


if __name__ == "__main__":
    main(*sys.argv[1:])
