#!/usr/bin/env python3
"""Search latency over one keep-alive HTTP connection: p50/p95 per mode for the recall
questions (each asked ROUNDS times), and the embedder's own time for the same texts.

    latency.py --url http://127.0.0.1:PORT --answers answers.json [--rounds 4]
               [--modes lexical,vector,hybrid] [--embedder URL --model M]
"""
import argparse
import http.client
import json
import time
import urllib.parse


def timed_gets(host, port, paths):
    conn = http.client.HTTPConnection(host, port, timeout=60)
    out = []
    for p in paths:
        t = time.perf_counter()
        conn.request("GET", p)
        r = conn.getresponse()
        body = r.read()
        out.append((time.perf_counter() - t) * 1000)
        if r.status != 200:
            raise SystemExit(f"{p}: {r.status} {body[:200]}")
    conn.close()
    return out


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--answers", required=True)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--modes", default="lexical,vector,hybrid")
    ap.add_argument("--embedder")
    ap.add_argument("--model")
    args = ap.parse_args()
    u = urllib.parse.urlparse(args.url)
    questions = [a["question"] for a in json.load(open(args.answers))]
    figures = {}
    for mode in args.modes.split(","):
        paths = [
            "/api/memory/search?" + urllib.parse.urlencode({"q": q, "mode": mode, "limit": 10})
            for _ in range(args.rounds) for q in questions
        ]
        ms = timed_gets(u.hostname, u.port, paths)
        figures[mode] = (pct(ms, 0.5), pct(ms, 0.95))
        print(f"  {mode:<8} p50 {pct(ms, 0.5):6.1f} ms   p95 {pct(ms, 0.95):6.1f} ms   ({len(ms)} searches)")
    if args.embedder:
        e = urllib.parse.urlparse(args.embedder)
        conn = http.client.HTTPConnection(e.hostname, e.port, timeout=60)
        ms = []
        for _ in range(args.rounds):
            for q in questions:
                body = json.dumps({"model": args.model, "input": [q]})
                t = time.perf_counter()
                conn.request("POST", e.path.rstrip("/") + "/embeddings", body,
                             {"content-type": "application/json"})
                conn.getresponse().read()
                ms.append((time.perf_counter() - t) * 1000)
        print(f"  embedder alone, one question: p50 {pct(ms, 0.5):6.1f} ms   p95 {pct(ms, 0.95):6.1f} ms")
        figures["embedder"] = (pct(ms, 0.5), pct(ms, 0.95))
    print("FIGURES " + json.dumps(figures))


if __name__ == "__main__":
    main()
