#!/usr/bin/env python3
"""Prints line and branch coverage per crate from `cargo llvm-cov report --json`, and
fails when a crate with a target is below it."""
import json
import os
import sys
from collections import defaultdict

# crate -> (line %, branch %) it must reach
TARGETS = {"leasing-abstractions": (95.0, 90.0), "leasing-testkit": (95.0, 90.0), "leasing-cli": (90.0, 85.0), "leasing-redis": (95.0, 90.0), "leasing-cosmos": (95.0, 90.0), "leasing-blob": (95.0, 90.0), "leasing-azure": (95.0, 90.0)}

data = json.load(open(sys.argv[1]))
root = os.getcwd() + "/"
sums = defaultdict(lambda: [0, 0, 0, 0])  # lines covered, lines, branches covered, branches
for f in data["data"][0]["files"]:
    path = f["filename"].replace(root, "")
    parts = path.split("/")
    if len(parts) < 3 or parts[0] != "crates" or parts[2] != "src":
        continue  # tests, examples, benches
    s = f["summary"]
    acc = sums[parts[1]]
    acc[0] += s["lines"]["covered"]
    acc[1] += s["lines"]["count"]
    acc[2] += s["branches"]["covered"]
    acc[3] += s["branches"]["count"]

def pct(a, b):
    return 100.0 * a / b if b else 100.0

failed = False
print(f"{'crate':<24} {'lines':>16} {'branches':>16}")
for crate in sorted(sums):
    lc, lt, bc, bt = sums[crate]
    lp, bp = pct(lc, lt), pct(bc, bt)
    mark = ""
    if crate in TARGETS:
        lmin, bmin = TARGETS[crate]
        if lp < lmin or bp < bmin:
            mark = f"  BELOW TARGET ({lmin}% lines, {bmin}% branches)"
            failed = True
        else:
            mark = f"  (target {lmin}% / {bmin}%: met)"
    print(f"{crate:<24} {lp:6.2f}% {lc:>4}/{lt:<4} {bp:6.2f}% {bc:>4}/{bt:<4}{mark}")
sys.exit(1 if failed else 0)
