#!/usr/bin/env python3
"""Stores a random unit vector for every chunk of an index database that has none for
MODEL, quantised as the daemon stores them (one signed byte per dimension and a scale).

    fill_vectors.py INDEX_DB MODEL [DIM]

For the latency and memory benchmarks at 100,000 chunks: a search's cost does not depend
on what the vectors say, and embedding 100,000 chunks with a CPU model takes longer than a
benchmark should. The daemon must be stopped while this runs.
"""
import random
import sqlite3
import struct
import sys


def main():
    db, model = sys.argv[1], sys.argv[2]
    dim = int(sys.argv[3]) if len(sys.argv) > 3 else 384
    conn = sqlite3.connect(db)
    hashes = [h for (h,) in conn.execute(
        "SELECT DISTINCT hash FROM chunks WHERE hash NOT IN "
        "(SELECT hash FROM vectors WHERE model = ?)", (model,))]
    r = random.Random(1)
    rows = []
    for h in hashes:
        v = [r.gauss(0, 1) for _ in range(dim)]
        n = sum(x * x for x in v) ** 0.5
        v = [x / n for x in v]
        scale = max(abs(x) for x in v) / 127
        q = bytes(struct.pack(f"{dim}b", *[max(-127, min(127, round(x / scale))) for x in v]))
        rows.append((h, model, scale, q))
    conn.executemany("INSERT INTO vectors (hash, model, scale, data) VALUES (?, ?, ?, ?)", rows)
    conn.commit()
    print(f"{len(rows)} vectors stored")


if __name__ == "__main__":
    main()
