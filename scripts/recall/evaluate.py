#!/usr/bin/env python3
"""Scores memory search on the recall set: hit@3 and MRR (over the top 10) per mode,
against a grep-style baseline that ranks lines by how many of the question's words they
hold.

    evaluate.py --url http://127.0.0.1:PORT --workspace WS --answers answers.json
                [--modes lexical,vector,hybrid] [--misses]

A result is a hit when it comes from the fact's file and its line range holds the fact's
line. Every search must answer with the mode asked for (else the daemon fell back to
lexical, and the figures would be mislabelled): that is checked and reported.
"""
import argparse
import json
import os
import re
import sys
import urllib.parse
import urllib.request
from collections import defaultdict

# The same stop words the daemon drops (src/memory/query.rs), so the baseline is not
# handicapped by them.
STOP = set("""a about above after again against all am an and any are as at be because been
before being below between both but by can could did do does doing down during each few for
from further had has have having he her here hers herself him himself his how i if in into
is it its itself just me more most my myself no nor not now of off on once only or other
our ours ourselves out over own same she should so some such than that the their theirs
them themselves then there these they this those through to too under until up very was we
were what when where which while who whom why will with would you your yours yourself
yourselves""".split())

WORD = re.compile(r"\w+", re.UNICODE)


def words(text):
    return {w.lower() for w in WORD.findall(text)} - STOP


def grep_rank(question, lines):
    """Ranks every line by the number of distinct question words it holds (ties in file
    order), as `grep -c` per word would; returns the ranked (file, line) pairs."""
    q = words(question)
    scored = [(-len(q & ws), i) for i, (_, _, ws) in enumerate(lines) if q & ws]
    scored.sort()
    return [(lines[i][0], lines[i][1]) for _, i in scored[:10]]


def search(url, question, mode, limit=10):
    query = urllib.parse.urlencode({"q": question, "mode": mode, "limit": limit})
    with urllib.request.urlopen(f"{url}/api/memory/search?{query}", timeout=60) as r:
        body = json.load(r)
    return body["mode"], [(h["file"], h["line_start"], h["line_end"]) for h in body["results"]]


def rank_of(answer, results):
    for i, (f, a, b) in enumerate(results):
        if f == answer["file"] and a <= answer["line"] <= b:
            return i + 1
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--workspace", required=True)
    ap.add_argument("--answers", required=True)
    ap.add_argument("--modes", default="lexical,vector,hybrid")
    ap.add_argument("--misses", action="store_true")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()
    answers = json.load(open(args.answers))
    lines = []
    for root, _, files in sorted(os.walk(args.workspace)):
        for name in sorted(files):
            if name.endswith(".md"):
                path = os.path.join(root, name)
                rel = os.path.relpath(path, args.workspace)
                for n, text in enumerate(open(path, encoding="utf-8").read().split("\n"), 1):
                    lines.append((rel, n, words(text)))
    systems = ["grep"] + args.modes.split(",")
    ranks = defaultdict(list)
    wrong_mode = defaultdict(int)
    for a in answers:
        got = [(f, n, n) for f, n in grep_rank(a["question"], lines)]
        ranks["grep"].append(rank_of(a, got))
        for mode in systems[1:]:
            ran, results = search(args.url, a["question"], mode)
            if ran != mode:
                wrong_mode[mode] += 1
            ranks[mode].append(rank_of(a, results))
    figures = {}
    print(f"{len(answers)} questions; hit@3 and MRR@10 (share of questions)")
    kinds = sorted({a["kind"] for a in answers})
    print(f"{'system':<10} {'hit@1':>6} {'hit@3':>6} {'MRR':>6}   " + " ".join(f"{k:>9}" for k in kinds))
    for s in systems:
        r = ranks[s]
        hit1 = sum(1 for x in r if x and x <= 1) / len(r)
        hit3 = sum(1 for x in r if x and x <= 3) / len(r)
        mrr = sum(1 / x for x in r if x) / len(r)
        per_kind = []
        for k in kinds:
            ks = [x for x, a in zip(r, answers) if a["kind"] == k]
            per_kind.append(f"{sum(1 for x in ks if x and x <= 3)}/{len(ks)}")
        note = f"  ({wrong_mode[s]} answered in another mode!)" if wrong_mode[s] else ""
        print(f"{s:<10} {hit1:6.2f} {hit3:6.2f} {mrr:6.3f}   " + " ".join(f"{p:>9}" for p in per_kind) + note)
        figures[s] = {"hit1": hit1, "hit3": hit3, "mrr": mrr, "wrong_mode": wrong_mode[s]}
    if args.misses:
        for s in systems[1:]:
            for x, a in zip(ranks[s], answers):
                if not x or x > 3:
                    print(f"  miss {s:<8} rank {x}: {a['question']!r} -> {a['fact'][:60]!r}")
    if args.json:
        json.dump(figures, open(args.json, "w"), indent=1)
    sys.exit(1 if any(wrong_mode.values()) else 0)


if __name__ == "__main__":
    main()
