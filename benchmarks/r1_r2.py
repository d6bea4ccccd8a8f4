"""Reproduce the benchmark table for the two reference models of the issues.

R1 = GRU(32), T=12, F=1 -> Dense(1), trained on the airline data.
R2 = GRU(64, return_sequences) -> GRU(64) -> Dense(3), T=24, F=4, trained on a generated 4-column series.

    python benchmarks/r1_r2.py [--out DIR] [--threads 1] [--iterations 200] [--rounds 5]

Needs the train extra (and the bench extra for the ONNX Runtime row). Prints one markdown table per model.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
from pathlib import Path

from gru_edge.bench import bench
from gru_edge.data import write_synthetic_csv
from gru_edge.model import TrainConfig, train


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="keep the trained models here (default: a temporary folder)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="gru-edge-bench-"))
    out.mkdir(parents=True, exist_ok=True)
    csv = write_synthetic_csv(out / "synthetic.csv")
    models = {
        "R1: GRU(32), T=12, F=1 -> 1": TrainConfig(units=32, window=12, epochs=50),
        "R2: GRU(64, seq) -> GRU(64) -> Dense(3), T=24, F=4": TrainConfig(
            data=str(csv), column="y", features=("a", "b", "c"), window=24, horizon=3, units=64, layers=2,
            epochs=5),
    }
    print(f"Machine: {platform.machine()}, {platform.processor() or 'cpu'}, Python {platform.python_version()}; "
          f"batch 1, {args.threads} thread(s)\n")
    for i, (title, cfg) in enumerate(models.items(), start=1):
        run = train(cfg, out / f"r{i}", log=lambda m: print(m, file=sys.stderr))
        result = bench(run.model_path, threads=args.threads, iterations=args.iterations, rounds=args.rounds,
                       log=lambda m: print(m, file=sys.stderr))
        print(f"### {title}\n\n{result.markdown()}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
