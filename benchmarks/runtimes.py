"""The runtime matrix: each shipped recipe's parity bundle checked on the runtimes people ship.

    python benchmarks/runtimes.py                        # every recipe x every column: the README's table
    python benchmarks/runtimes.py --recipes float32,int8 --columns tflite-2.14,arm64 --json

One model (GRU(32) on the airline series, window 12, 5 epochs: the suite's R1) is converted with every shipped recipe
and verified against Keras into a parity bundle; then ``gru-edge verify --bundle`` runs each bundle in each column's
environment. A cell is PASS, FAIL (the first failure), refused at load (the runtime's reason), or not run (why).
The "predicted" column is ``gru-edge inspect --runtime tflite-runtime==2.14``: it must equal the tflite-runtime
columns' load outcome.

Environments, made on first use and cached in $GRU_EDGE_CACHE/runtimes (default ~/.cache/gru-edge/runtimes):
- tflite-runtime 2.14 on x86-64: a venv with tflite-runtime==2.14.0, numpy<2 and click (its last release imports
  only with numpy 1).
- ARM64: a Debian 12 arm64 root (``mmdebstrap --variant=extract``, Python 3.11 as on Raspberry Pi OS 12), run under
  qemu-user 10 from bookworm-backports (unpacked, not installed: Debian 12's qemu 7.2 shows the host's /proc/cpuinfo,
  so LiteRT skips XNNPACK or crashes), with the aarch64 wheels of ai-edge-litert (and, apart, tflite-runtime 2.14 +
  numpy 1.26) installed by pip's ``--platform``. No binfmt, no chroot: ``python3-qemu`` in the root is a host script
  that starts the emulator, and is what gru-edge's child processes run as their ``sys.executable``.
Needs Debian's apt and mmdebstrap (installed with apt-get when missing, as root) and PyPI.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("GRU_EDGE_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
             / "gru-edge") / "runtimes"
DEBIAN = "http://deb.debian.org/debian"
AARCH64 = ["--only-binary=:all:", "--platform", "manylinux_2_34_aarch64", "--platform", "manylinux_2_27_aarch64",
           "--platform", "manylinux_2_17_aarch64", "--platform", "manylinux2014_aarch64", "--python-version", "3.11",
           "--implementation", "cp", "--abi", "cp311"]
PACKAGES = {"litert": ["ai-edge-litert==2.3.0", "click>=8.1"],
            "tflite": ["tflite-runtime==2.14.0", "numpy<2", "click>=8.1"]}


def log(msg: str) -> None:
    print(f"runtimes: {msg}", file=sys.stderr, flush=True)


def run(cmd: list, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    if proc.returncode != 0:
        raise SystemExit(f"runtimes: {' '.join(map(str, cmd[:4]))} ... failed: "
                         f"{(proc.stderr.strip().splitlines() or ['no output'])[-1]}")
    return proc


# ---- environments -----------------------------------------------------------------------------------------------

def tflite_venv() -> Path:
    """The python of a venv holding tflite-runtime 2.14 (x86-64)."""
    venv = CACHE / "tflite-runtime-2.14"
    python = venv / "bin" / "python"
    if not (venv / ".ready").is_file():
        log(f"making {venv} (tflite-runtime 2.14.0, numpy<2)")
        shutil.rmtree(venv, ignore_errors=True)
        run([sys.executable, "-m", "venv", venv])
        run([python, "-m", "pip", "install", "-q", *PACKAGES["tflite"]])
        (venv / ".ready").touch()
    return python


def _apt(*args) -> list:
    state = CACHE / "apt"
    for d in ("lists/partial", "archives/partial"):
        (state / d).mkdir(parents=True, exist_ok=True)
    (state / "sources.list").write_text(f"deb {DEBIAN} bookworm-backports main\n")
    return [*args, "-o", f"Dir::Etc::SourceList={state / 'sources.list'}", "-o", "Dir::Etc::SourceParts=/nonexistent",
            "-o", f"Dir::State::Lists={state / 'lists'}", "-o", f"Dir::Cache::Archives={state / 'archives'}",
            "-o", "Dir::State::Status=/dev/null", "-o", "APT::Architecture=amd64", "-o", "APT::Sandbox::User=root"]


def arm64_python(site: str) -> tuple[Path, dict]:
    """(the emulated python, its environment) for the ARM64 root with the wheels of ``site`` ("litert" or
    "tflite")."""
    root, qemu = CACHE / "arm64-root", CACHE / "qemu" / "usr" / "bin" / "qemu-aarch64"
    if not qemu.is_file():
        log("fetching qemu-user 10 from bookworm-backports (unpacked, not installed)")
        run(_apt("apt-get", "-qq", "update"))
        debs = CACHE / "apt" / "debs"
        debs.mkdir(exist_ok=True)
        run(_apt("apt-get", "-qq", "download", "qemu-user/bookworm-backports"), cwd=debs)
        run(["dpkg-deb", "-x", next(debs.glob("qemu-user_*.deb")), CACHE / "qemu"])
    if not (root / ".ready").is_file():
        if shutil.which("mmdebstrap") is None:
            log("installing mmdebstrap (apt-get)")
            run(["apt-get", "install", "-y", "-qq", "mmdebstrap"])
        log(f"making the Debian 12 arm64 root {root}")
        shutil.rmtree(root, ignore_errors=True)
        run(["mmdebstrap", "--arch=arm64", "--variant=extract", "--include=python3,libstdc++6", "bookworm", root,
             DEBIAN])
        wrapper = root / "usr" / "bin" / "python3-qemu"
        wrapper.write_text(f"#!/bin/sh\nexec {qemu} -L {root} -0 {wrapper} {root}/usr/bin/python3.11 \"$@\"\n")
        wrapper.chmod(0o755)
        (root / ".ready").touch()
    target = root / "opt" / f"site-{site}"
    if not (target / ".ready").is_file():
        log(f"installing the aarch64 wheels of {' '.join(PACKAGES[site])}")
        wheels = CACHE / f"wheels-{site}"
        run([sys.executable, "-m", "pip", "download", "-q", *AARCH64, "-d", wheels, *PACKAGES[site]])
        shutil.rmtree(target, ignore_errors=True)
        run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--find-links", wheels, *AARCH64,
             "--target", target, *PACKAGES[site]])
        (target / ".ready").touch()
    return root / "usr" / "bin" / "python3-qemu", {"PYTHONPATH": f"{target}:{REPO}"}


# ---- columns ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Column:
    key: str
    title: str
    runtime: str  # gru-edge verify --runtime
    where: str  # host, tflite-venv, arm64-litert, arm64-tflite
    accelerator: str = "cpu"

    def python(self) -> tuple[Path, dict]:
        if self.where == "host":
            return Path(sys.executable), {"PYTHONPATH": str(REPO)}
        if self.where == "tflite-venv":
            return tflite_venv(), {"PYTHONPATH": str(REPO)}
        return arm64_python(self.where.split("-")[1])


COLUMNS = {c.key: c for c in [
    Column("litert", "x86-64 LiteRT Interpreter", "litert", "host"),
    Column("compiled", "x86-64 LiteRT CompiledModel (weight cache)", "litert-compiled", "host"),
    Column("tensorflow", "x86-64 TensorFlow tf.lite", "tensorflow", "host"),
    Column("tflite-2.14", "x86-64 tflite-runtime 2.14", "tflite-runtime", "tflite-venv"),
    Column("arm64", "ARM64 LiteRT", "litert", "arm64-litert"),
    Column("arm64-tflite-2.14", "ARM64 tflite-runtime 2.14", "tflite-runtime", "arm64-tflite"),
    Column("gpu", "LiteRT GPU", "litert", "host", accelerator="gpu"),
]}


def check(column: Column, bundle: Path) -> dict:
    """One cell: ``gru-edge verify --bundle`` in the column's environment."""
    python, env = column.python()
    cmd = [python, "-m", "gru_edge", "verify", "--bundle", bundle, "--json"]
    cmd += ["--accelerator", "gpu"] if column.accelerator == "gpu" else ["--runtime", column.runtime]
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True,
                          env={**os.environ, **env, "TF_CPP_MIN_LOG_LEVEL": "3"})
    try:
        doc = json.loads(proc.stdout)
    except json.JSONDecodeError:
        return {"verdict": "error", "reason": (proc.stderr.strip().splitlines() or ["no output"])[-1][:200]}
    result, error = doc.get("result") or {}, doc.get("error") or ""
    if proc.returncode == 3:
        return {"verdict": "not run", "reason": error}
    if error:
        verdict = "refused at load" if "cannot load" in error else "error"
        return {"verdict": verdict, "reason": error}
    ran = (result.get("accelerator") or {}).get("runtime", "")
    if result.get("passed"):
        return {"verdict": "PASS", "reason": "", "ran": ran, "max_abs_error": _max_error(result)}
    return {"verdict": "FAIL", "reason": (result.get("failures") or ["?"])[0], "ran": ran}


def _max_error(result: dict) -> float | None:
    errors = [o.get("max_abs_error") for o in result.get("outputs", []) if o.get("max_abs_error") is not None]
    return max(errors) if errors else None


# ---- the model and its bundles ----------------------------------------------------------------------------------

def make_bundles(recipes: list[str], folder: Path) -> dict[str, tuple[Path, Path]]:
    """recipe -> (model, bundle) for the R1 airline model."""
    sys.path.insert(0, str(REPO))
    from gru_edge.conversion import convert
    from gru_edge.model import TrainConfig, train
    from gru_edge.verification import verify

    run_dir = folder / "run"
    log("training GRU(32) on the airline series (5 epochs)")
    train(TrainConfig(units=32, window=12, epochs=5), run_dir)
    log(f"converting with {', '.join(recipes)}")
    result = convert(run_dir / "model.keras", recipes, folder / "models").require_all()
    made = {}
    for m in result.models:
        log(f"bundle for {m.recipe}")
        made[m.recipe] = (m.path, verify(run_dir / "model.keras", m.path, folder / "bundles" / m.recipe).bundle)
    return made


def predicted(model: Path) -> str:
    from gru_edge import runtimes, tflite_model

    p = runtimes.predict(tflite_model.read(model), "tflite-runtime==2.14")
    return "loads" if p.loads else "refused at load: " + "; ".join(p.refused)


def matrix(recipes: list[str], columns: list[str], folder: Path) -> dict:
    made = make_bundles(recipes, folder)
    rows = {}
    for recipe, (model, bundle) in made.items():
        rows[recipe] = {"predicted tflite-runtime 2.14": predicted(model)}
        for key in columns:
            log(f"{recipe} on {COLUMNS[key].title}")
            rows[recipe][key] = check(COLUMNS[key], bundle)
    return {"date": datetime.date.today().isoformat(),
            "machine": f"{platform.machine()} {platform.system()}, {os.cpu_count()} cores (ARM64: qemu-aarch64 10)",
            "columns": {k: COLUMNS[k].title for k in columns}, "rows": rows}


def markdown(doc: dict) -> str:
    keys = list(doc["columns"])
    head = ["recipe", *doc["columns"].values(), "inspect --runtime tflite-runtime==2.14"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    notes: list[str] = []
    for recipe, row in doc["rows"].items():
        cells = []
        for k in keys:
            cell = row[k]
            text = cell["verdict"]
            if cell["reason"]:
                if cell["reason"] not in notes:
                    notes.append(cell["reason"])
                text += f" [{notes.index(cell['reason']) + 1}]"
            cells.append(text)
        pred = row["predicted tflite-runtime 2.14"]
        cells.append("loads" if pred == "loads" else "refused: " + pred.split(": ", 1)[1])
        lines.append(f"| {recipe} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(f"Run {doc['date']} on {doc['machine']} by `python benchmarks/runtimes.py`.")
    lines += [f"[{i}] {n}" for i, n in enumerate(notes, 1)]
    return "\n".join(lines)


def main() -> None:
    sys.path.insert(0, str(REPO))
    from gru_edge.recipes import shipped_names

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--recipes", default=",".join(shipped_names()))
    ap.add_argument("--columns", default=",".join(COLUMNS), help=f"of {', '.join(COLUMNS)}")
    ap.add_argument("--json", action="store_true", help="print the matrix as JSON instead of Markdown")
    ap.add_argument("--keep", type=Path, help="keep the model, bundles and run in this new folder")
    args = ap.parse_args()
    columns = [c.strip() for c in args.columns.split(",") if c.strip()]
    unknown = [c for c in columns if c not in COLUMNS]
    if unknown:
        ap.error(f"unknown column(s) {', '.join(unknown)}; choose from {', '.join(COLUMNS)}")
    recipes = [r.strip() for r in args.recipes.split(",") if r.strip()]
    with tempfile.TemporaryDirectory(prefix="gru-edge-runtimes-") as tmp:
        folder = args.keep or Path(tmp)
        if args.keep and args.keep.exists():
            ap.error(f"--keep {args.keep}: the folder exists; name a new one")
        doc = matrix(recipes, columns, folder)
    print(json.dumps(doc, indent=2) if args.json else markdown(doc))


if __name__ == "__main__":
    main()
