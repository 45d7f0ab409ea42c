#!/usr/bin/env python3
"""Evaluates the crm-bots lists against the corpora in tests/corpora (dev tool, not run by CI).

Approximates the Rust detector: a UA is a bot if it is empty (after trimming), or matches any
pattern of data/patterns.txt or data/patterns-fancy.txt (case-insensitive, unanchored search),
or contains a marker of data/markers.txt (case-insensitive substring). The Rust side also uses
woothee's crawler category, which is not reproduced here, so Rust recall can only be higher
(and its false-positive rate too, in principle).

Python's `re` rejects look-behinds whose alternatives differ in length, e.g. `(?<! channel/|google/)`;
such a look-behind is split the way fancy-regex compiles it: `(?<!a|bb)` -> `(?<!a)(?<!bb)` and
`(?<=a|bb)` -> `(?:(?<=a)|(?<=bb))`.

Corpora: `bots-*.txt.gz` are scored by recall, `browsers-*.txt.gz` by false-positive rate
(unweighted, and weighted when lines are `weight<TAB>UA`). Lines starting with `#` are headers.

Usage: python3 shared/bots/tests/eval_bots.py [--limit 40] [--extra-marker TOKEN ...]
           [--drop RULE ...] [--no-markers] [--no-patterns] [--corpus SUBSTRING]
Exit status 0 when every target holds: recall >= 97% on each held-out bot corpus (all bots-*
but bots-insample, which must stay >= 99%), and false positives <= 0.5% on each browser corpus.
"""
import argparse
import gzip
import os
import re
import sys
from collections import defaultdict

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "data")
CORPORA = os.path.join(HERE, "corpora")
RECALL_TARGET = 0.97
INSAMPLE_TARGET = 0.99
FP_TARGET = 0.005


def read_list(path):
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [l.rstrip("\n") for l in f if l.strip() and not l.startswith("#")]


_LOOKBEHIND_ALT = re.compile(r"\(\?<([=!])((?:[^()\\|]|\\.)*(?:\|(?:[^()\\|]|\\.)*)+)\)")


def split_lookbehinds(p):
    def repl(m):
        kind, alts = m.group(1), re.split(r"(?<!\\)\|", m.group(2))
        if kind == "!":
            return "".join(f"(?<!{a})" for a in alts)
        return "(?:" + "|".join(f"(?<={a})" for a in alts) + ")"
    return _LOOKBEHIND_ALT.sub(repl, p)


def compile_rule(p):
    try:
        return re.compile(p, re.I)
    except re.error:
        return re.compile(split_lookbehinds(p), re.I)


class Detector:
    def __init__(self, patterns, markers):
        self.patterns = []
        self.errors = []
        for p in patterns:
            try:
                self.patterns.append((p, compile_rule(p)))
            except re.error as e:
                self.errors.append((p, str(e)))
        self.markers = [m.lower() for m in markers]
        # one joined regex as a fast pre-check; attribution then tests rules one by one
        joinable = all(not re.search(r"\\[1-9]|\(\?P?<[A-Za-z]", p) for p, _ in self.patterns)
        self.joined = None
        if joinable and self.patterns:
            self.joined = re.compile("|".join(f"(?:{split_lookbehinds(p)})" for p, _ in self.patterns), re.I)

    def rules(self, ua):
        """All rules that flag ua (empty list: not a bot)."""
        if not ua.strip():
            return ["<empty>"]
        hits = []
        low = ua.lower()
        hits += [f"marker:{m}" for m in self.markers if m in low]
        if self.joined is None or self.joined.search(ua):
            hits += [f"pattern:{p}" for p, rx in self.patterns if rx.search(ua)]
        return hits


def read_corpus(path):
    out = []
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith("#"):
                continue
            w = 1.0
            head, sep, tail = line.partition("\t")
            if sep:
                try:
                    w, line = float(head), tail
                except ValueError:
                    pass
            out.append((w, line))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--limit", type=int, default=40, help="misses / false positives listed per corpus")
    ap.add_argument("--extra-marker", action="append", default=[], help="try an additional marker")
    ap.add_argument("--drop", action="append", default=[], help="leave out a pattern or marker (exact text)")
    ap.add_argument("--no-markers", action="store_true")
    ap.add_argument("--no-patterns", action="store_true")
    ap.add_argument("--corpus", default="", help="only corpora whose file name contains this")
    args = ap.parse_args()

    drop = set(args.drop)
    patterns = [] if args.no_patterns else [
        p for f in ("patterns.txt", "patterns-fancy.txt") for p in read_list(os.path.join(DATA, f))
        if p not in drop]
    markers = [] if args.no_markers else [
        m for m in read_list(os.path.join(DATA, "markers.txt")) + args.extra_marker if m not in drop]
    det = Detector(patterns, markers)
    print(f"rules: {len(det.patterns)} patterns, {len(det.markers)} markers")
    for p, e in det.errors:
        print(f"  PATTERN DOES NOT COMPILE IN PYTHON (skipped): {p!r}: {e}")

    files = sorted(f for f in os.listdir(CORPORA) if f.endswith(".txt.gz") and args.corpus in f)
    rows, details, ok = [], [], True
    for f in files:
        corpus = read_corpus(os.path.join(CORPORA, f))
        n = len(corpus)
        total_w = sum(w for w, _ in corpus) or 1.0
        flagged, flagged_w, listed = 0, 0.0, []
        by_rule, by_rule_only = defaultdict(lambda: [0, 0.0]), defaultdict(lambda: [0, 0.0])
        is_bots = f.startswith("bots-")
        for w, ua in corpus:
            hits = det.rules(ua)
            if hits:
                flagged += 1
                flagged_w += w
            if not is_bots and hits:
                for r in hits:
                    by_rule[r][0] += 1
                    by_rule[r][1] += w
                if len(hits) == 1:
                    by_rule_only[hits[0]][0] += 1
                    by_rule_only[hits[0]][1] += w
                listed.append((w, ua, hits))
            elif is_bots and not hits:
                listed.append((w, ua, []))
        name = f[: -len(".txt.gz")]
        if is_bots:
            recall = flagged / n if n else float("nan")
            target = INSAMPLE_TARGET if "insample" in f else RECALL_TARGET
            met = n == 0 or recall >= target
            rows.append((name, n, flagged, f"recall {100 * recall:.2f}%", "", f">={100 * target:.0f}%", met))
            title = f"{name}: misses ({len(listed)})"
        else:
            fp, fp_w = flagged / n if n else 0.0, flagged_w / total_w
            weighted = any(w != 1.0 for w, _ in corpus)
            met = fp <= FP_TARGET and fp_w <= FP_TARGET
            rows.append((name, n, flagged, f"FP {100 * fp:.2f}%",
                         f"weighted {100 * fp_w:.3f}%" if weighted else "(unweighted)",
                         f"<={100 * FP_TARGET:.1f}%", met))
            title = f"{name}: false positives ({len(listed)})"
            listed.sort(key=lambda x: -x[0])
        ok &= met
        details.append((title, listed, by_rule, by_rule_only, total_w))

    print(f"\n{'corpus':<22} {'n':>6} {'flagged':>8}  {'rate':<16} {'weighted':<20} {'target':<7} met")
    for name, n, fl, rate, wrate, target, met in rows:
        print(f"{name:<22} {n:>6} {fl:>8}  {rate:<16} {wrate:<20} {target:<7} {'yes' if met else 'NO'}")

    for title, listed, by_rule, by_rule_only, total_w in details:
        if not listed:
            continue
        print(f"\n== {title}, first {min(args.limit, len(listed))}")
        for w, ua, hits in listed[: args.limit]:
            wtxt = f"[w {100 * w / total_w:.3f}%] " if w != 1.0 else ""
            print(f"  {wtxt}{ua!r}" + (f"  <= {', '.join(hits)}" if hits else ""))
        if by_rule:
            print("  rules behind these false positives (count, weight share; 'only' = sole rule):")
            for r, (c, w) in sorted(by_rule.items(), key=lambda kv: (-kv[1][0], kv[0]))[:25]:
                oc, ow = by_rule_only.get(r, [0, 0.0])
                print(f"    {c:>5} {100 * w / total_w:7.3f}%  only {oc:>5} {100 * ow / total_w:7.3f}%  {r}")
    print("\nall targets met" if ok else "\nsome targets NOT met")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
