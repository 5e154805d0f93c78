"""Load the shared movie extracts (../shared/data/movies/*.json) into a MongoDB server.

usage: load_movies.py MONGO_URI [DATABASE] [COLLECTION]   (defaults: bench, movies)
Each document gets a deterministic integer _id (file order), so reruns load identical data.
"""

import glob
import json
import os
import sys

from pymongo import MongoClient

uri = sys.argv[1]
db = sys.argv[2] if len(sys.argv) > 2 else "bench"
coll_name = sys.argv[3] if len(sys.argv) > 3 else "movies"
root = os.environ.get("M2Q_MOVIES", os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "movies"))
docs = []
for path in sorted(glob.glob(os.path.join(root, "movies-*.json"))):
    with open(path) as f:
        docs.extend(json.load(f))
for i, d in enumerate(docs):
    d["_id"] = i
coll = MongoClient(uri)[db][coll_name]
coll.drop()
for start in range(0, len(docs), 1000):
    coll.insert_many(docs[start : start + 1000])
print(f"loaded {coll.count_documents({})} movies into {db}.{coll_name}")
