#!/usr/bin/env python3
"""Prints criterion's mean estimates as a Markdown table, with each `jobs_core_*` benchmark's
ratio to the bare `serde_json_*` benchmark of the same group (the reference).
`--newer FILE`: only estimates written after FILE was (the target directory keeps every
benchmark ever run: a filtered run would otherwise print old rows beside its new ones)."""
import json, os, sys, glob

root = os.path.join(os.environ.get("CARGO_TARGET_DIR", "target"), "criterion")
since = os.path.getmtime(sys.argv[2]) if len(sys.argv) > 2 and sys.argv[1] == "--newer" else 0
groups = {}
for est in sorted(glob.glob(os.path.join(root, "*", "**", "new", "estimates.json"), recursive=True)):
    if os.path.getmtime(est) < since:
        continue
    rel = os.path.relpath(os.path.dirname(os.path.dirname(est)), root).split(os.sep)
    group, name = rel[0], "/".join(rel[1:])
    with open(est) as f:
        mean = json.load(f)["mean"]["point_estimate"]
    groups.setdefault(group, {})[name] = mean

def fmt(ns):
    return f"{ns/1e6:.3f} ms" if ns >= 1e6 else f"{ns/1e3:.3f} µs" if ns >= 1e3 else f"{ns:.0f} ns"

print("| group | benchmark | mean | ratio to bare serde_json |")
print("|---|---|---|---|")
for group, benches in groups.items():
    refs = {n: v for n, v in benches.items() if n.startswith("serde_json")}
    for name, mean in benches.items():
        ratio = ""
        if name.startswith("jobs_core"):
            suffix = name[len("jobs_core"):]
            # Pair by position: the reference whose name shares the longest suffix.
            ref = max(refs.items(), key=lambda kv: len(os.path.commonprefix([kv[0][::-1], suffix[::-1]])), default=None)
            if ref:
                ratio = f"{mean / ref[1]:.2f}x ({ref[0]})"
        print(f"| {group} | {name} | {fmt(mean)} | {ratio} |")
