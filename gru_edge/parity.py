"""Parity bundles (format ``gru-edge-parity/1``), comparison and metrics. No TensorFlow: runs on any device.

The format is documented in docs/parity-bundle.md; the Kotlin reader in android_demo/ follows the same rules.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from gru_edge import __version__
from gru_edge.errors import ParityError
from gru_edge.io import sha256_file
from gru_edge.recipes import Tolerances

FORMAT = "gru-edge-parity/1"
MANIFEST = "manifest.json"
REQUIRED_KEYS = ("format", "model", "inputs", "outputs", "samples", "tolerances")


@dataclass(frozen=True)
class OutputStats:
    name: str
    count: int
    scale: float
    max_abs_error: float
    max_rel_error: float  # max_abs_error / scale
    psnr_db: float  # inf when the outputs are identical
    failing_elements: int

    def to_dict(self) -> dict:
        d = asdict(self)
        d["psnr_db"] = None if math.isinf(self.psnr_db) else round(self.psnr_db, 3)
        return d


@dataclass(frozen=True)
class TaskStats:
    metric: str
    rows: int
    reference: float  # the original model's metric on the rows with targets
    converted: float
    relative_delta: float  # relative change for the worse: RMSE up, or accuracy down
    class_agreement: float | None = None  # classification: share of samples where both pick the same class

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ParityReport:
    passed: bool
    samples: int
    outputs: tuple[OutputStats, ...]
    task: TaskStats | None
    failures: tuple[str, ...]
    tolerances: Tolerances
    notes: tuple[str, ...] = field(default_factory=tuple)
    streaming: dict | None = None
    accelerator: dict | None = None

    def to_dict(self) -> dict:
        return {"passed": self.passed, "samples": self.samples, "outputs": [o.to_dict() for o in self.outputs],
                "task": self.task.to_dict() if self.task else None, "failures": list(self.failures),
                "tolerances": asdict(self.tolerances), "notes": list(self.notes), "streaming": self.streaming,
                "accelerator": self.accelerator or {"accelerator": "cpu", "runtime": "ai-edge-litert Interpreter"}}

    def with_notes(self, notes) -> "ParityReport":
        return replace(self, notes=self.notes + tuple(notes))

    @property
    def max_abs_error(self) -> float:
        return max((o.max_abs_error for o in self.outputs), default=math.nan)

    @property
    def psnr_db(self) -> float:
        return min((o.psnr_db for o in self.outputs), default=math.nan)


@dataclass(frozen=True)
class Task:
    """How to score outputs against targets: RMSE after mapping outputs by ``x * scale + offset``."""

    kind: str
    metric: str
    scale: float = 1.0
    offset: float = 0.0
    units: str = "model output"


def _rmse(pred: np.ndarray, truth: np.ndarray) -> float:
    return float(np.sqrt(np.mean((pred - truth) ** 2)))


def compare(expected: dict[str, np.ndarray], actual: dict[str, np.ndarray], tol: Tolerances,
            targets: np.ndarray | None = None, task: Task | None = None) -> ParityReport:
    """Check names, then shapes, then values of every output; list every failure, then fail once."""
    failures: list[str] = []
    notes: list[str] = []
    n = min((len(v) for v in expected.values()), default=0)
    if n == 0:
        failures.append("no samples: a parity check needs at least one sample sequence")
    missing = sorted(set(expected) - set(actual))
    if missing:
        failures.append(f"outputs missing from the converted model: {', '.join(missing)} "
                        f"(it has: {', '.join(sorted(actual)) or 'none'})")
    stats = []
    for name in sorted(set(expected) & set(actual)):
        e = np.asarray(expected[name], np.float64)
        a = np.asarray(actual[name], np.float64)
        if e.shape != a.shape:
            failures.append(f"{name}: shape {a.shape} differs from the expected {e.shape}")
            continue
        if e.size == 0:
            continue
        bad_expected = int((~np.isfinite(e)).sum())
        bad = int((~np.isfinite(a)).sum())
        if bad_expected:
            failures.append(f"{name}: {bad_expected} non-finite values (NaN/Inf) in the expected outputs")
        if bad:
            failures.append(f"{name}: {bad} non-finite values (NaN/Inf) in the converted model's outputs")
        if bad or bad_expected:
            stats.append(OutputStats(name, e.size, math.nan, math.inf, math.inf, -math.inf, bad))
            continue
        peak = float(np.abs(e).max())
        scale = peak if peak > 0 else 1.0
        err = np.abs(a - e)
        failing = int((err > tol.atol * scale + tol.rtol * np.abs(e)).sum())
        rms = float(np.sqrt(np.mean(err**2)))
        psnr = math.inf if rms == 0 else 20 * math.log10(scale / rms)
        st = OutputStats(name, e.size, scale, float(err.max()), float(err.max()) / scale, psnr, failing)
        stats.append(st)
        if failing:
            failures.append(f"{name}: {failing} of {e.size} values outside atol {tol.atol:g} x peak {scale:.4g} + "
                            f"rtol {tol.rtol:g} x |expected| (max abs error {st.max_abs_error:.3g})")
        if psnr < tol.min_psnr_db:
            failures.append(f"{name}: PSNR {psnr:.1f} dB below the minimum {tol.min_psnr_db:g} dB")

    task_stats = None
    if targets is not None and task is not None and stats:
        task_stats = _task(expected, actual, targets, task, notes)
        if task_stats and task_stats.relative_delta > tol.max_task_metric_delta:
            failures.append(f"task metric {task_stats.metric} worse by {task_stats.relative_delta:.2%} (converted "
                            f"{task_stats.converted:.4g} vs original {task_stats.reference:.4g}); allowed "
                            f"{tol.max_task_metric_delta:.2%}")
    elif targets is None:
        notes.append("no targets: the task-metric delta was not computed")
    return ParityReport(not failures, n, tuple(stats), task_stats, tuple(failures), tol, tuple(notes))


def on_accelerator(report_inputs: tuple, model_path: Path, inputs: np.ndarray, precision: str) -> ParityReport:
    """Compare the GPU's outputs instead of the CPU interpreter's; a partly accelerated model fails."""
    from gru_edge.gpu import gpu_outputs

    expected, tol, targets, task = report_inputs
    run = gpu_outputs(model_path, inputs, precision)
    report = compare(expected, run.outputs, tol, targets, task)
    report = check_streaming(report, run.stepped, expected, run.outputs)
    failures = report.failures
    if not run.fully_accelerated:
        failures += ("accelerator gpu: the model was not fully accelerated (some ops ran on the CPU)",)
    info = {"accelerator": "gpu", "precision": precision, "fully_accelerated": run.fully_accelerated}
    return replace(report, passed=not failures, failures=failures, accelerator=info)


def check_streaming(report: ParityReport, stepped: dict[str, np.ndarray] | None,
                    expected: dict[str, np.ndarray], full: dict[str, np.ndarray]) -> ParityReport:
    """Add the ``step`` signature's outputs (fed every sequence one step at a time; None: the model has no ``step``);
    they must meet the same limits as the full sequence."""
    if stepped is None:
        return report
    step_report = compare(expected, stepped, report.tolerances)
    diff = max((float(np.abs(stepped[k] - full[k]).max()) for k in stepped if k in full and len(full[k])),
               default=math.nan)
    summary = {"max_abs_error": step_report.max_abs_error, "max_abs_diff_vs_full_sequence": diff,
               "passed": step_report.passed}
    failures = report.failures + tuple(f"step signature: {f}" for f in step_report.failures)
    return replace(report, passed=not failures, failures=failures, streaming=summary)


def _task(expected, actual, targets, task: Task, notes: list[str]) -> TaskStats | None:
    name = sorted(expected)[0]
    e, a = np.asarray(expected[name], np.float64), np.asarray(actual.get(name), np.float64)
    t = np.asarray(targets, np.float64)
    if t.shape != e.shape or a.shape != e.shape or not np.all(np.isfinite(a)):
        notes.append(f"targets shape {t.shape} does not match the outputs {e.shape}: task metric skipped")
        return None
    rows = np.all(np.isfinite(t), axis=1)
    if not rows.any():
        notes.append("no sample has a target: the task-metric delta was not computed")
        return None
    if task.metric == "accuracy":
        # Classes: accuracy of the argmax on rows with a (one-hot) target; delta is the relative accuracy lost.
        truth = t[rows].argmax(axis=1)
        ref = float(np.mean(e[rows].argmax(axis=1) == truth))
        conv = float(np.mean(a[rows].argmax(axis=1) == truth))
        delta = (ref - conv) / ref if ref > 0 else (0.0 if conv == ref else math.inf)
        agreement = float(np.mean(a.argmax(axis=1) == e.argmax(axis=1)))
        return TaskStats(task.metric, int(rows.sum()), ref, conv, delta, agreement)
    m = lambda v: v[rows] * task.scale + task.offset  # noqa: E731
    ref, conv = _rmse(m(e), m(t)), _rmse(m(a), m(t))
    delta = (conv - ref) / ref if ref > 0 else (0.0 if conv == 0 else math.inf)
    return TaskStats(task.metric, int(rows.sum()), ref, conv, delta)


# ---- bundles ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bundle:
    path: Path
    manifest: dict
    inputs: np.ndarray
    expected: dict[str, np.ndarray]
    targets: np.ndarray | None

    @property
    def tolerances(self) -> Tolerances:
        return Tolerances(**self.manifest["tolerances"])

    @property
    def task(self) -> Task | None:
        t = self.manifest.get("task")
        if not t:
            return None
        return Task(t["kind"], t["metric"], t.get("output_scale", 1.0), t.get("output_offset", 0.0),
                    t.get("units", "model output"))

    @property
    def model_path(self) -> Path:
        return self.path / self.manifest["model"]["file"]


def write_bundle(out_dir: Path, model_path: Path, recipe: str, signature: str, input_name: str,
                 inputs: np.ndarray, expected: dict[str, np.ndarray], tolerances: Tolerances,
                 sample_kinds: dict[str, int], sample_source: str, targets: np.ndarray | None = None,
                 task: Task | None = None, reference: float | None = None, gpu: dict | None = None) -> Path:
    """Write a bundle folder (with a copy of the model) atomically: it is replaced whole or left as it was."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        np.save(tmp / "inputs.npy", np.ascontiguousarray(inputs, dtype="<f4"))
        outputs = []
        for i, (name, arr) in enumerate(sorted(expected.items())):
            fname = "expected.npy" if i == 0 else f"expected_{i}.npy"
            np.save(tmp / fname, np.ascontiguousarray(arr, dtype="<f4"))
            outputs.append({"name": name, "file": fname, "shape": list(arr.shape), "dtype": "float32"})
        manifest = {
            "format": FORMAT,
            "tool": f"gru-edge {__version__}",
            "model": {"file": Path(model_path).name, "sha256": sha256_file(model_path), "recipe": recipe,
                      "signature": signature, "gpu": gpu},
            "inputs": [{"name": input_name, "file": "inputs.npy", "shape": list(inputs.shape), "dtype": "float32"}],
            "outputs": outputs,
            "samples": {"count": int(len(inputs)), "kinds": sample_kinds, "source": sample_source},
            "tolerances": asdict(tolerances),
            "task": None,
        }
        if targets is not None and task is not None:
            np.save(tmp / "targets.npy", np.ascontiguousarray(targets, dtype="<f4"))
            manifest["task"] = {"kind": task.kind, "metric": task.metric, "targets": "targets.npy",
                                "output_scale": task.scale, "output_offset": task.offset, "units": task.units,
                                "reference": reference}
        shutil.copyfile(model_path, tmp / Path(model_path).name)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def _load_npy(path: Path, what: str) -> np.ndarray:
    if not path.is_file():
        raise ParityError(f"Bundle file missing: {path.name} ({what}).")
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise ParityError(f"{path.name} is not a readable .npy file ({str(e).strip()[:120]}).") from None
    if arr.dtype != np.dtype("<f4"):
        raise ParityError(f"{path.name} has dtype {arr.dtype}; a parity bundle stores little-endian float32 (<f4).")
    return arr


def read_bundle(path: Path) -> Bundle:
    """Read and validate a bundle folder; ParityError names the first problem found."""
    path = Path(path)
    mpath = path / MANIFEST
    if not mpath.is_file():
        raise ParityError(f"No {MANIFEST} in {path}: not a parity bundle (written by 'gru-edge verify -o DIR').")
    try:
        manifest = json.loads(mpath.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ParityError(f"{mpath} is not valid JSON: {e}.") from None
    missing = [k for k in REQUIRED_KEYS if k not in manifest]
    if missing:
        raise ParityError(f"{mpath} misses required key(s): {', '.join(missing)}.")
    if manifest["format"] != FORMAT:
        raise ParityError(f"{mpath}: format {manifest['format']!r} is not supported; expected '{FORMAT}'.")
    tol_keys = set(Tolerances.__dataclass_fields__)
    if set(manifest["tolerances"]) != tol_keys:
        raise ParityError(f"{mpath}: tolerances must have exactly {', '.join(sorted(tol_keys))}.")
    spec_in = manifest["inputs"][0]
    inputs = _load_npy(path / spec_in["file"], "inputs")
    if list(inputs.shape) != spec_in["shape"] or inputs.ndim != 3:
        raise ParityError(f"{spec_in['file']} has shape {list(inputs.shape)}; the manifest says {spec_in['shape']} "
                          "([N, T, F]).")
    expected = {}
    for spec in manifest["outputs"]:
        arr = _load_npy(path / spec["file"], f"expected output {spec['name']}")
        if list(arr.shape) != spec["shape"] or len(arr) != len(inputs):
            raise ParityError(f"{spec['file']} has shape {list(arr.shape)}; the manifest says {spec['shape']} "
                              f"with N = {len(inputs)} samples.")
        expected[spec["name"]] = arr
    targets = None
    if manifest.get("task"):
        targets = _load_npy(path / manifest["task"]["targets"], "targets")
        first = next(iter(expected.values()))
        if targets.shape != first.shape:
            raise ParityError(f"targets.npy has shape {list(targets.shape)}; expected {list(first.shape)}.")
    return Bundle(path, manifest, inputs, expected, targets)


def check_bundle(bundle_dir: Path, model: Path | None = None, threads: int = 1,
                 accelerator: str = "cpu") -> ParityReport:
    """Run the bundle's model (or ``model``) on its inputs with LiteRT and compare with the stored outputs."""
    from gru_edge.runtime import Runner

    bundle = read_bundle(bundle_dir)
    model_path = Path(model) if model else bundle.model_path
    if not model_path.is_file():
        raise ParityError(f"Model file not found: {model_path}. Pass --model PATH.tflite.")
    notes = []
    if sha256_file(model_path) != bundle.manifest["model"].get("sha256"):
        notes.append(f"{model_path.name} differs from the model the bundle was made with "
                     f"({bundle.manifest['model']['file']}); checking it against the same expected outputs")
    if accelerator == "gpu":
        precision = (bundle.manifest["model"].get("gpu") or {}).get("precision", "fp16")
        return on_accelerator((bundle.expected, bundle.tolerances, bundle.targets, bundle.task), model_path,
                              bundle.inputs, precision).with_notes(notes)
    runner = Runner(model_path, bundle.manifest["model"].get("signature"), threads=threads)
    actual = runner.run(bundle.inputs)
    report = compare(bundle.expected, actual, bundle.tolerances, bundle.targets, bundle.task)
    stepped = runner.run_steps(bundle.inputs) if runner.has_step else None
    return check_streaming(report, stepped, bundle.expected, actual).with_notes(notes)
