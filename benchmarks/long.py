"""Long sequences: does a converted GRU's file, conversion time and memory stay flat as the window grows?

For each window length T, one GRU(64) on 4 features -> Dense(1) (Keras' initial weights, seed 0), 48 calibration
windows and 16 sample windows of noisy sines of 64 different rhythms. Each row is one `gru-edge convert` process (one
recipe), timed and measured by the kernel (peak RSS of the process and its converter child, getrusage), then
`gru-edge verify` on the sample windows, and the batch-1 latency of the file (LiteRT's Interpreter, and CompiledModel
on the CPU with XNNPACK's weight cache, one thread, median of interleaved rounds).

Rows per T:
- the shipped CPU recipes as they are (unroll = "auto": unrolled up to 100 steps, gru-edge's WHILE loop beyond);
- float32 in each form: gru-edge unrolled (unroll = true), gru-edge loop (unroll = false), and TensorFlow's plain
  paths on the Keras layers (lowering = "keras"): its WHILE loop and Keras' own unroll.

    python benchmarks/long.py [--lengths 50,200,1000,5000] [--max-seconds 300] [--json]

A conversion that runs past --max-seconds is stopped and shown as such. Prints a markdown table (or one JSON
document) and the acceptance checks of the long-sequence issue: at the longest T, every shipped CPU recipe's file
<= 1.10 x its weights + 32 KiB, its conversion <= 2x and its peak RSS <= 1.5x the shortest T's, and the loop's
latency per step within 1.3x of the unrolled graph's at T=200.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MEASURE = ("import resource, subprocess, sys; rc = subprocess.run(sys.argv[1:]).returncode; "
           "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss if rc == 0 else -abs(rc))")
SHIPPED = ("float32", "float16", "dynamic-int8", "int8", "int16x8")
FORMS = {  # float32 in each form: [convert] keys
    "gru-edge unrolled": 'lowering = "gru-edge"\nunroll = true',
    "gru-edge loop": 'lowering = "gru-edge"\nunroll = false',
    "TF plain WHILE": 'lowering = "keras"\nunroll = false',
    "TF plain unrolled": 'lowering = "keras"\nunroll = true',
}
MAKE_MODEL = """
import sys, numpy as np, keras
t_steps, out = int(sys.argv[1]), sys.argv[2]
keras.utils.set_random_seed(0)
inp = keras.Input((t_steps, 4), name="sequence")
keras.Model(inp, keras.layers.Dense(1, name="out")(keras.layers.GRU(64, name="gru")(inp))).save(out + "/model.keras")
rng = np.random.default_rng(0)
t = np.arange(t_steps)[None, :, None]
phase, rate = rng.uniform(0, 6.28, (64, 1, 4)), rng.uniform(0.01, 0.2, (64, 1, 4))
x = (np.sin(t * rate + phase) + 0.1 * rng.normal(size=(64, t_steps, 4))).astype(np.float32)
np.save(out + "/calibration.npy", x[:48]); np.save(out + "/samples.npy", x[48:])
"""


def gru_edge(*args) -> list[str]:
    return [sys.executable, "-m", "gru_edge", *args]


def recipe_file(folder: Path, name: str, keys: str) -> Path:
    path = folder / f"{name}.toml"
    path.write_text(f'description = "{name}: float32 (benchmarks/long.py)"\n[convert]\nquantization = "float32"\n'
                    f'{keys}\n[verify]\natol = 1e-5\nrtol = 1e-5\nmin_psnr_db = 90.0\nmax_task_metric_delta = 0.001\n')
    return path


def convert(folder: Path, recipe: str, out: Path, max_seconds: float) -> dict:
    cmd = gru_edge("convert", str(folder / "model.keras"), "--to", recipe, "--calibration",
                   str(folder / "calibration.npy"), "-o", str(out), "--json", "-q")
    started = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-c", MEASURE, *cmd], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, start_new_session=True)
    try:
        stdout, stderr = child.communicate(timeout=max_seconds)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)  # the converter's child process too
        child.communicate()
        return {"error": f"stopped after {max_seconds:.0f} s"}
    wall = time.perf_counter() - started
    done = subprocess.CompletedProcess(cmd, child.returncode, stdout, stderr)
    lines = done.stdout.strip().splitlines()
    doc = json.loads("\n".join(lines[:-1])) if len(lines) > 1 else {}
    if done.returncode or int(lines[-1]) < 0 or doc.get("exit_code"):
        return {"error": (doc.get("error") or done.stderr.strip()[-300:] or "failed")}
    model = doc["result"]["models"][0]
    return {"path": model["path"], "size_bytes": model["size_bytes"], "weight_bytes": model["weight_bytes"],
            "convert_s": round(wall, 2), "peak_rss_mib": round(int(lines[-1]) / 1024, 1)}


def verify(folder: Path, tflite: str) -> str:
    done = subprocess.run(gru_edge("verify", str(folder / "model.keras"), tflite, "--samples",
                                   str(folder / "samples.npy"), "--json", "-q"), capture_output=True, text=True)
    try:
        result = json.loads(done.stdout)["result"]
    except (json.JSONDecodeError, KeyError, TypeError):
        return "error"
    return "PASS" if result and result.get("passed") else "FAIL"


def latency(rows: list[dict], t_steps: int) -> None:
    from gru_edge.bench import time_files

    paths = {str(i): Path(r["path"]) for i, r in enumerate(rows) if "path" in r}
    iterations = max(10, min(200, 20_000 // t_steps))
    for i, (interp, cached) in time_files(paths, iterations=iterations, rounds=5).items():
        rows[int(i)] |= {"us": round(interp, 1), "us_per_step": round(interp / t_steps, 3),
                    "cached_us": round(cached, 1), "cached_us_per_step": round(cached / t_steps, 3)}


def run(lengths: list[int], max_seconds: float, log) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="gru-edge-long-") as tmp:
        forms = {name: recipe_file(Path(tmp), name.replace(" ", "-"), keys) for name, keys in FORMS.items()}
        for t_steps in lengths:
            folder = Path(tmp) / f"T{t_steps}"
            folder.mkdir()
            subprocess.run([sys.executable, "-c", MAKE_MODEL, str(t_steps), str(folder)], check=True,
                           env=os.environ | {"TF_CPP_MIN_LOG_LEVEL": "3"}, capture_output=True)
            here = []
            cells = [(name, name, name) for name in SHIPPED] + [(name, "float32", str(path))
                                                                 for name, path in forms.items()]
            for form, recipe, to in cells:
                log(f"T={t_steps} {form}")
                row = {"T": t_steps, "form": form, "recipe": recipe,
                       **convert(folder, to, folder / form.replace(" ", "-"), max_seconds)}
                if "path" in row:
                    row["verify"] = verify(folder, row["path"])
                here.append(row)
            latency(here, t_steps)
            rows += here
    return rows


def checks(rows: list[dict]) -> list[str]:
    """The issue's acceptance lines, each with its figures."""
    first, last = min(r["T"] for r in rows), max(r["T"] for r in rows)
    by = {(r["T"], r["form"]): r for r in rows}
    lines = []
    for name in SHIPPED:
        a, b = by.get((first, name), {}), by.get((last, name), {})
        if "size_bytes" not in a or "size_bytes" not in b:
            lines.append(f"{name}: not measured at T={first} and T={last}")
            continue
        limit = 1.10 * b["weight_bytes"] + 32 * 1024
        ok = (b["size_bytes"] <= limit and b["convert_s"] <= 2 * a["convert_s"]
              and b["peak_rss_mib"] <= 1.5 * a["peak_rss_mib"] and b["verify"] == "PASS")
        lines.append(f"{'ok  ' if ok else 'MISS'} {name} at T={last}: file {b['size_bytes'] / 1024:.1f} KiB <= "
                     f"{limit / 1024:.1f} KiB; convert {b['convert_s']:.1f} s <= 2 x {a['convert_s']:.1f} s; peak RSS "
                     f"{b['peak_rss_mib']:.0f} <= 1.5 x {a['peak_rss_mib']:.0f} MiB; verify {b['verify']}")
    loop, unrolled = by.get((last, "float32"), {}), by.get((200, "gru-edge unrolled"), {})
    for key, what in (("us_per_step", "Interpreter"), ("cached_us_per_step", "CompiledModel + weight cache")):
        if key in loop and key in unrolled:
            ok = loop[key] <= 1.3 * unrolled[key]
            lines.append(f"{'ok  ' if ok else 'MISS'} latency per step ({what}): float32 at T={last} "
                         f"{loop[key]:.3f} µs <= 1.3 x {unrolled[key]:.3f} µs (unrolled, T=200)")
    return lines


def markdown(rows: list[dict]) -> str:
    out = ["| T | form | file | weights | file ÷ weights | convert | peak RSS | verify | latency (µs/step) | "
           "weight cache (µs/step) |", "|---:|---|---:|---:|---:|---:|---:|---|---:|---:|"]
    for r in rows:
        if "size_bytes" not in r:
            out.append(f"| {r['T']} | {r['form']} | {r['error']} | | | | | | | |")
            continue
        out.append(f"| {r['T']} | {r['form']} | {r['size_bytes'] / 1024:.1f} KiB "
                   f"| {r['weight_bytes'] / 1024:.1f} KiB | {r['size_bytes'] / r['weight_bytes']:.2f} "
                   f"| {r['convert_s']:.1f} s | {r['peak_rss_mib']:.0f} MiB "
                   f"| {r['verify']} | {r.get('us', 0):.0f} ({r.get('us_per_step', 0):.2f}) "
                   f"| {r.get('cached_us', 0):.0f} ({r.get('cached_us_per_step', 0):.2f}) |")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", default="50,200,1000,5000")
    parser.add_argument("--max-seconds", type=float, default=300.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    lengths = [int(v) for v in args.lengths.split(",")]
    rows = run(lengths, args.max_seconds, log=lambda m: print(m, file=sys.stderr, flush=True))
    for r in rows:
        r.pop("path", None)
    if args.json:
        print(json.dumps({"rows": rows, "checks": checks(rows)}, indent=2))
    else:
        print(markdown(rows))
        print()
        print("\n".join(checks(rows)))


if __name__ == "__main__":
    main()
