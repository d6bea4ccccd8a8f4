"""Does training on shards keep its memory flat as the data grows? Peak RSS of `gru-edge train` on 1x and 10x data.

Writes two data sets of generated multivariate series (target y, features a, b, c), the second with ten times the
rows of the first in every shard, and trains the same model on each in its own process (one epoch over every
training window, GRU(16), global batch 256; the held-out evaluation, the kept windows and the run folder included).
The peak RSS is the process's maximum resident set size as the kernel counts it (getrusage).

    python benchmarks/memory.py [--shards 4] [--rows 25000] [--factor 10] [--json]

Needs the train extra. Prints a markdown table (or one JSON document): rows, files' size, peak RSS, wall time and
held-out RMSE per data set, and the ratio of the peak RSS (the target: 10x data <= 1.2x the 1x figure).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

MEASURE = ("import resource, subprocess, sys; rc = subprocess.run(sys.argv[1:]).returncode; "
           "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss if rc == 0 else -rc)")


def write_shards(folder: Path, shards: int, rows: int, seed: int = 0) -> int:
    """``shards`` CSV files of ``rows`` rows each (a noisy mix of slow cycles driven by a, b, c); their bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    size = 0
    for s in range(shards):
        rng = np.random.default_rng(seed + s)
        path = folder / f"device-{s:03d}.csv"
        with open(path, "w") as fh:
            fh.write("step,y,a,b,c\n")
            for start in range(0, rows, 100_000):
                t = np.arange(start, min(rows, start + 100_000))
                a, b, c = np.sin(t / 7 + s), np.cos(t / 11), rng.normal(size=len(t)) * 0.3
                y = np.sin(t / 5) + 0.5 * a + 0.2 * np.roll(c, 2) + rng.normal(size=len(t)) * 0.05
                np.savetxt(fh, np.c_[t, y, a, b, c], fmt=["%d", "%.5f", "%.5f", "%.5f", "%.5f"], delimiter=",")
        size += path.stat().st_size
    return size


def train(folder: Path, out: Path) -> dict:
    cmd = [sys.executable, "-m", "gru_edge", "train", "--data", str(folder / "*.csv"), "--column", "y",
           "--features", "a,b,c", "--transform", "none", "--units", "16", "--epochs", "1", "--patience", "0",
           "--batch-size", "256", "--test-size", "1000", "-q", "--json", "-o", str(out)]
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", MEASURE, *cmd], capture_output=True, text=True)
    wall = time.perf_counter() - started
    lines = done.stdout.strip().splitlines()
    peak_kib = int(lines[-1])
    if done.returncode or peak_kib < 0:
        sys.exit(f"gru-edge train failed on {folder}:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    result = json.loads("\n".join(lines[:-1]))["result"]
    return {"peak_rss_mib": round(peak_kib / 1024, 1), "wall_s": round(wall, 1),
            "heldout_rmse": round(result["metrics"]["heldout_rmse"], 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--rows", type=int, default=25_000, help="rows per shard in the 1x data")
    parser.add_argument("--factor", type=int, default=10)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for scale in (1, args.factor):
            folder = Path(tmp) / f"x{scale}"
            size = write_shards(folder, args.shards, args.rows * scale)
            figures = train(folder, Path(tmp) / f"run{scale}")
            rows.append({"data": f"{scale}x", "rows": args.shards * args.rows * scale,
                         "csv_mib": round(size / 2**20, 1), **figures})
    ratio = rows[1]["peak_rss_mib"] / rows[0]["peak_rss_mib"]
    if args.json:
        print(json.dumps({"runs": rows, "peak_rss_ratio": round(ratio, 3), "target": 1.2}, indent=2))
        return
    print("| data | rows | CSV (MiB) | peak RSS (MiB) | wall (s) | held-out RMSE |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['data']} | {r['rows']:,} | {r['csv_mib']} | {r['peak_rss_mib']} | {r['wall_s']} | "
              f"{r['heldout_rmse']} |")
    print(f"\npeak RSS {args.factor}x / 1x: {ratio:.3f} (target <= 1.2); {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
