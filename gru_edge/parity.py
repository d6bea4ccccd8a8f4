"""Parity: comparison, metrics and the verdict on a bundle. No TensorFlow: runs on any device.

The rules are documented in docs/parity-bundle.md; the Kotlin core in android_demo/ follows the same rules. The
bundle format itself lives in gru_edge/bundle.py.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from gru_edge import recipes
from gru_edge.bundle import Bundle, Task, bundle_file, read_bundle
from gru_edge.errors import ParityError
from gru_edge.io import sha256_file
from gru_edge.recipes import Tolerances
from gru_edge.tflite_model import MAX_BYTES


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
    units: str = ""  # what the metric is measured in (the bundle's task units)

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
    tolerances_source: str = ""  # where the limits came from: a recipe, a sidecar, a bundle's manifest
    notes: tuple[str, ...] = field(default_factory=tuple)
    streaming: dict | None = None
    accelerator: dict | None = None

    def to_dict(self) -> dict:
        return {"passed": self.passed, "samples": self.samples, "outputs": [o.to_dict() for o in self.outputs],
                "task": self.task.to_dict() if self.task else None, "failures": list(self.failures),
                "tolerances": asdict(self.tolerances), "tolerances_source": self.tolerances_source,
                "notes": list(self.notes), "streaming": self.streaming,
                "accelerator": self.accelerator or {"accelerator": "cpu", "runtime": "ai-edge-litert Interpreter"}}

    def with_notes(self, notes) -> "ParityReport":
        return replace(self, notes=self.notes + tuple(notes))

    def with_failures(self, failures) -> "ParityReport":
        failures = self.failures + tuple(failures)
        return replace(self, failures=failures, passed=not failures)

    @property
    def max_abs_error(self) -> float:
        return max((o.max_abs_error for o in self.outputs), default=math.nan)

    @property
    def psnr_db(self) -> float:
        return min((o.psnr_db for o in self.outputs), default=math.nan)


def _rmse(pred: np.ndarray, truth: np.ndarray) -> float:
    return float(np.sqrt(np.mean((pred - truth) ** 2)))


def compare(expected: dict[str, np.ndarray], actual: dict[str, np.ndarray], tol: Tolerances,
            targets: np.ndarray | None = None, task: Task | None = None, source: str = "") -> ParityReport:
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
    return ParityReport(not failures, n, tuple(stats), task_stats, tuple(failures), tol, source, tuple(notes))


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
    return replace(report, streaming=summary).with_failures(f"step signature: {f}" for f in step_report.failures)


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
        return TaskStats(task.metric, int(rows.sum()), ref, conv, delta, agreement, task.units)
    m = lambda v: v[rows] * task.scale + task.offset  # noqa: E731
    ref, conv = _rmse(m(e), m(t)), _rmse(m(a), m(t))
    delta = (conv - ref) / ref if ref > 0 else (0.0 if conv == 0 else math.inf)
    return TaskStats(task.metric, int(rows.sum()), ref, conv, delta, None, task.units)


# ---- checking a bundle -----------------------------------------------------------------------------------------


def bundle_limits(bundle: Bundle, recipe: str | None = None) -> tuple[Tolerances, str, list[str]]:
    """The limits to check ``bundle`` with: the user's recipe's, else the manifest's (with a note when they are
    looser than the shipped recipe of the same name); their source; notes."""
    if recipe:
        r = recipes.load(recipe)
        return r.verify, f"recipe {r.name}, given with --recipe", []
    notes = recipes.looser_than_shipped(bundle.recipe, bundle.tolerances, "the bundle's")
    return bundle.tolerances, f"the bundle's manifest, made with recipe {bundle.recipe}", notes


def check_bundle(bundle_dir: Path, model: Path | None = None, threads: int = 1, accelerator: str = "cpu",
                 recipe: str | None = None, runtime: str = "litert") -> ParityReport:
    """Run the bundle's model (or ``model``) on its inputs with LiteRT and compare with the stored outputs.

    The bundle's own copy must be the model it was made with (its sha256); a model named explicitly may differ,
    and the report says so. ``runtime``: litert, tflite-runtime or tensorflow (gru_edge.runtimes)."""
    from gru_edge.runtime import run_isolated

    b = read_bundle(bundle_dir)
    tol, source, notes = bundle_limits(b, recipe)
    if model is not None and not Path(model).is_file():
        raise ParityError(f"Model file not found: {model}.")
    if model is None and not b.model_path.exists():
        raise ParityError(f"The bundle holds no model file {b.model_path.name}; name the .tflite with --model.")
    model_path = Path(model) if model else bundle_file(b.path, b.model_path.name, "model")
    if model_path.stat().st_size > MAX_BYTES:
        raise ParityError(f"{model_path.name} is {model_path.stat().st_size} bytes; a TFLite flatbuffer is at most "
                          "2 GiB.")
    failures = []
    if sha256_file(model_path) != b.manifest.model.sha256:
        if model:
            notes.append(f"{model_path.name} differs from the model the bundle was made with "
                         f"({b.manifest.model.file}); checking it against the same expected outputs")
        else:
            failures.append(f"{model_path.name} is not the model this bundle was made with (its sha256 differs "
                            "from the manifest's): the bundle was changed. Name the model to check with --model")
    precision = (b.manifest.model.gpu or {}).get("precision", "fp16")
    run = run_isolated(model_path, b.inputs, b.manifest.model.signature, threads=threads,
                       accelerator="gpu" if accelerator == "gpu" else "interpreter", precision=precision,
                       runtime=runtime)
    report = judge(b.expected, run, tol, source, b.targets, b.task, precision)
    return report.with_notes(notes).with_failures(failures)


def judge(expected: dict[str, np.ndarray], run, tol: Tolerances, source: str, targets: np.ndarray | None,
          task: Task | None, precision: str = "fp16") -> ParityReport:
    """The verdict on one isolated run (runtime.IsolatedRun): full sequence, streamed steps, accelerator."""
    report = compare(expected, run.outputs, tol, targets, task, source)
    report = check_streaming(report, run.stepped, expected, run.outputs)
    if run.fully_accelerated is None:
        return replace(report, accelerator={"accelerator": "cpu", "runtime": run.runtime}) if run.runtime else report
    info = {"accelerator": "gpu", "precision": precision, "fully_accelerated": run.fully_accelerated}
    report = replace(report, accelerator=info)
    if not run.fully_accelerated:
        report = report.with_failures(["accelerator gpu: the model was not fully accelerated (some ops ran on the "
                                       "CPU)"])
    return report
