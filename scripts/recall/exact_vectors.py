#!/usr/bin/env python3
"""The upper bound of the daemon's vector search: every stored vector of an index ranked
exactly against each question (the daemon ranks exactly only the few hundred its sign
bits pick). Compare its hit@3 and MRR with `evaluate.py --modes vector` on the same index.

    exact_vectors.py --db INDEX_DB --model M --embedder URL --answers answers.json

Needs numpy (not needed by the benchmark itself).
"""
import argparse
import http.client
import json
import sqlite3
import urllib.parse

import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--embedder", required=True)
    ap.add_argument("--answers", required=True)
    args = ap.parse_args()
    conn = sqlite3.connect(args.db)
    rows = conn.execute("SELECT hash, scale, data FROM vectors WHERE model = ?", (args.model,)).fetchall()
    hashes = np.array([h for h, _, _ in rows], dtype=np.int64)
    matrix = np.stack([np.frombuffer(d, dtype=np.int8).astype(np.float32) * s for _, s, d in rows])
    chunks = {}
    for h, path, a, b in conn.execute("SELECT hash, path, line_start, line_end FROM chunks ORDER BY id"):
        chunks.setdefault(h, []).append((path, a, b))
    u = urllib.parse.urlparse(args.embedder)
    http_conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    answers = json.load(open(args.answers))
    ranks = []
    for a in answers:
        http_conn.request("POST", u.path.rstrip("/") + "/embeddings",
                          json.dumps({"model": args.model, "input": [a["question"]]}),
                          {"content-type": "application/json"})
        q = np.array(json.loads(http_conn.getresponse().read())["data"][0]["embedding"], dtype=np.float32)
        q /= np.linalg.norm(q)
        top = np.argsort(-(matrix @ q))[:10]
        results = [c for i in top for c in chunks.get(int(hashes[i]), [])][:10]
        rank = next((n + 1 for n, (f, x, y) in enumerate(results)
                     if f == a["file"] and x <= a["line"] <= y), None)
        ranks.append(rank)
    n = len(ranks)
    print(f"exact vector ranking over {len(rows)} vectors: "
          f"hit@1 {sum(1 for r in ranks if r == 1) / n:.2f}  "
          f"hit@3 {sum(1 for r in ranks if r and r <= 3) / n:.2f}  "
          f"MRR {sum(1 / r for r in ranks if r) / n:.3f}")


if __name__ == "__main__":
    main()
