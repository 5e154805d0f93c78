"""The straightforward Python peer, for a side-by-side with `mongo2qdrant bench`.

A plain batch loop: read documents, tokenise (padding to the longest in each batch, no length
sorting), run the same ONNX model in onnxruntime (or sentence-transformers), mean-pool,
normalise, optionally upsert into a local Qdrant (qdrant-client's embedded mode).

  pip install onnxruntime==1.32.0 tokenizers numpy pymongo   # (+ sentence-transformers, qdrant-client)
  python benches/peer_python.py --jsonl movies.jsonl --fields title,extract --runs 3
  python benches/peer_python.py --mongo-uri mongodb://127.0.0.1:27017 --database bench \
      --collection movies --fields title,extract
  python benches/peer_python.py --generate 2000 --words 60 --engine st

Each peer at its fastest documented CPU setting: `--engine st` loads bf16 weights
(`model_kwargs={"torch_dtype": torch.bfloat16}`) on a CPU with bf16 instructions (`--dtype`
overrides: fp32, bf16, autocast); `--engine fastembed` is fastembed's TextEmbedding over the same
ONNX file; `--engine ort` is plain onnxruntime. Prints documents/s (median of --runs), the
threads, the dtype and the CPU's bf16 flags.
"""

import argparse
import json
import os
import statistics
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
MODEL = os.path.join(HERE, "..", "models", "cache", "all-MiniLM-L6-v2")


def generated(n, words):
    vocab = ("river market engine quiet winter signal garden harbour ledger copper lantern "
             "meadow orbit pattern summit thunder velvet archive bridge canyon delta ember the of "
             "and a to in is was for on").split()
    state, out = 0x9E3779B97F4A7C15, []
    for i in range(n):
        length = max(1, words // 2 + (i * 7919) % max(words, 1))
        ws = []
        for _ in range(length):
            state ^= (state << 13) & 0xFFFFFFFFFFFFFFFF
            state ^= state >> 7
            state ^= (state << 17) & 0xFFFFFFFFFFFFFFFF
            ws.append(vocab[state % len(vocab)])
        out.append(" ".join(ws))
    return out


def read_texts(args):
    if args.generate:
        return generated(args.generate, args.words)
    fields = args.fields.split(",")
    if args.jsonl:
        docs = [json.loads(line) for line in open(args.jsonl) if line.strip()]
    else:
        from pymongo import MongoClient

        coll = MongoClient(args.mongo_uri)[args.database][args.collection]
        docs = list(coll.find({}, {f: 1 for f in fields}).sort("_id", 1))
    texts = ["\n".join(str(d.get(f, "")) for f in fields) for d in docs]
    return texts[: args.limit] if args.limit else texts


def ort_embedder(threads):
    import onnxruntime as ort
    from tokenizers import Tokenizer

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    session = ort.InferenceSession(os.path.join(MODEL, "model.onnx"), so, providers=["CPUExecutionProvider"])
    tok = Tokenizer.from_file(os.path.join(MODEL, "tokenizer.json"))
    tok.enable_padding()  # pad to the longest in the batch
    tok.enable_truncation(256)

    def embed(batch):
        enc = tok.encode_batch(batch)
        ids = np.array([e.ids for e in enc], dtype=np.int64)
        mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
        out = session.run(None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)})[0]
        v = (out * mask[:, :, None]).sum(1) / mask.sum(1, keepdims=True)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    return embed


def cpu_flags():
    try:
        line = next(l for l in open("/proc/cpuinfo") if l.startswith("flags"))
    except (OSError, StopIteration):
        return set()
    return set(line.split(":", 1)[1].split())


def st_embedder(threads, dtype):
    import contextlib

    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(threads)
    name = os.environ.get("ST_MODEL", "sentence-transformers/all-MiniLM-L6-v2")
    kwargs = {"model_kwargs": {"torch_dtype": torch.bfloat16}} if dtype == "bf16" else {}
    model = SentenceTransformer(name, device="cpu", **kwargs)
    model.max_seq_length = 256

    def embed(texts, batch_size):
        # All texts in one call: encode sorts them by length and batches them itself, its
        # documented fast path.
        ctx = torch.autocast("cpu", dtype=torch.bfloat16) if dtype == "autocast" else contextlib.nullcontext()
        with ctx:
            v = model.encode(texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=False)
        return np.stack([x.float().numpy() for x in v])

    embed.whole = True
    return embed


def fastembed_embedder(threads):
    from fastembed import TextEmbedding
    from fastembed.common.model_description import ModelSource, PoolingType

    # The same ONNX file and tokenizer as ours, registered as a custom model (no hub download).
    TextEmbedding.add_custom_model(
        model="local/all-MiniLM-L6-v2", pooling=PoolingType.MEAN, normalization=True,
        sources=ModelSource(hf="local/all-MiniLM-L6-v2"), dim=384, model_file="model.onnx",
    )
    model = TextEmbedding("local/all-MiniLM-L6-v2", specific_model_path=MODEL, threads=threads)

    def embed(texts, batch_size):
        return np.stack(list(model.embed(texts, batch_size=batch_size)))

    embed.whole = True
    return embed


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--jsonl")
    p.add_argument("--mongo-uri")
    p.add_argument("--database", default="bench")
    p.add_argument("--collection", default="movies")
    p.add_argument("--fields", default="text")
    p.add_argument("--generate", type=int)
    p.add_argument("--words", type=int, default=60)
    p.add_argument("--limit", type=int)
    p.add_argument("--engine", choices=["ort", "st", "fastembed"], default="ort")
    p.add_argument("--dtype", choices=["auto", "fp32", "bf16", "autocast"], default="auto",
                   help="sentence-transformers: auto = bf16 weights where the CPU has bf16 instructions")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--qdrant-path", help="also upsert into qdrant-client's local mode here")
    args = p.parse_args()

    t = time.perf_counter()
    texts = read_texts(args)
    read_secs = time.perf_counter() - t
    flags = cpu_flags()
    bf16_cpu = bool(flags & {"avx512_bf16", "amx_bf16"})
    dtype = args.dtype
    if args.engine != "st":
        dtype = "fp32"
    elif dtype == "auto":
        dtype = "bf16" if bf16_cpu else "fp32"
    if args.engine == "st":
        embed = st_embedder(args.threads, dtype)
    elif args.engine == "fastembed":
        embed = fastembed_embedder(args.threads)
    else:
        embed = ort_embedder(args.threads)
    rates = []
    for run in range(args.runs):
        client = None
        if args.qdrant_path:
            from qdrant_client import QdrantClient, models

            client = QdrantClient(path=f"{args.qdrant_path}/run{run}")
            client.recreate_collection("peer", vectors_config=models.VectorParams(size=384, distance=models.Distance.COSINE))
        t = time.perf_counter()
        if getattr(embed, "whole", False) and client is None:
            embed(texts, args.batch)
            rates.append(len(texts) / (time.perf_counter() - t))
            continue
        for start in range(0, len(texts), args.batch):
            batch = texts[start : start + args.batch]
            vectors = embed(batch, len(batch)) if getattr(embed, "whole", False) else embed(batch)
            if client is not None:
                client.upsert("peer", points=[
                    models.PointStruct(id=start + i, vector=v.tolist()) for i, v in enumerate(vectors)
                ])
        rates.append(len(texts) / (time.perf_counter() - t))
    print(json.dumps({
        "engine": args.engine, "dtype": dtype, "threads": args.threads, "batch": args.batch, "docs": len(texts),
        "cpu_bf16_flags": sorted(flags & {"avx512_bf16", "amx_bf16", "amx_tile", "amx_int8", "avx512_vnni"}),
        "read_secs": round(read_secs, 2), "docs_per_sec_median": round(statistics.median(rates), 1),
        "docs_per_sec_runs": [round(r, 1) for r in rates],
    }))


if __name__ == "__main__":
    main()
