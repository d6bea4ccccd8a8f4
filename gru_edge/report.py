"""``gru-edge report DIR``: one self-contained HTML page (pictures embedded) about a quickstart folder.

What it shows: the series with its train / held-out split and the model's forecasts; the original and each converted
model overlaid on the held-out windows; per-recipe error distributions against the original; file size and latency
per recipe; the figures as a table. No TensorFlow: the converted models run in LiteRT, the original's outputs come
from the parity bundles, the series from the run's windows. Needs matplotlib (the train extra), drawn headless.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gru_edge import card as card_
from gru_edge.errors import GruEdgeError

REPORT = "report.html"


class ReportError(GruEdgeError):
    """The folder cannot be reported on."""


@dataclass(frozen=True)
class RecipeFigures:
    recipe: str
    size_bytes: int
    weight_bytes: int
    max_abs_error: float
    psnr_db: float | None
    task_delta: float | None
    median_us: float
    passed: bool
    outputs: np.ndarray  # the converted model's outputs on the bundle's inputs [N, O]

    def to_dict(self) -> dict:
        return {"recipe": self.recipe, "size_bytes": self.size_bytes, "weight_bytes": self.weight_bytes,
                "max_abs_error": self.max_abs_error, "psnr_db": self.psnr_db, "task_metric_delta": self.task_delta,
                "median_us": self.median_us, "passed": self.passed}


@dataclass(frozen=True)
class Report:
    path: Path
    figures: tuple[str, ...]  # the pictures' titles, in order
    recipes: tuple[RecipeFigures, ...]

    def to_dict(self) -> dict:
        return {"report": str(self.path), "figures": list(self.figures), "recipes": [r.to_dict() for r in self.recipes]}


def _series(windows) -> tuple[np.ndarray, int]:
    """The target column as the run saw it (raw units), rebuilt from its windows, and the index of the first
    held-out target."""
    train_x, train_y = windows["train_x"], windows["train_y"]
    test_x, test_y, first = windows["test_x"], windows["test_y"], windows["test_first_target"].astype(int)
    steps = train_x.shape[1]
    n = int(max(first.max() + test_y.shape[1], len(train_x) + steps + train_y.shape[1]))
    series = np.full(n, np.nan)
    for i, (x, y) in enumerate(zip(train_x, train_y)):
        series[i: i + steps] = x[:, 0]
        series[i + steps: i + steps + len(y)] = y
    for x, y, t in zip(test_x, test_y, first):
        series[t - steps: t] = x[:, 0]
        series[t: t + len(y)] = y
    return series, int(first.min())


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _latency_us(runner, x: np.ndarray, runs: int = 200) -> float:
    one = np.ascontiguousarray(x[:1])
    for _ in range(20):
        runner.run(one)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        runner.run(one)
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1e6)


def write(folder: Path, log=lambda msg: None) -> Report:
    """Write ``folder``/report.html for a quickstart folder (run/, models/, bundles/, summary.json)."""
    from gru_edge import outputs, tflite_model
    from gru_edge.bundle import read_bundle
    from gru_edge.runtime import Runner

    folder = Path(folder)
    summary_path = folder / "summary.json"
    try:
        summary = json.loads(summary_path.read_text())
    except (OSError, ValueError):
        summary = None
    if not isinstance(summary, dict) or summary.get("format") != outputs.SUMMARY_FORMAT:
        raise ReportError(f"{folder} is not a quickstart folder (no {summary_path.name} of format "
                          f"{outputs.SUMMARY_FORMAT}); make one with 'gru-edge quickstart -o {folder}'.")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ReportError("The report draws with matplotlib: pip install 'gru-edge[train]'.") from None
    model_path = folder / "run" / card_.MODEL
    card = card_.load(model_path)
    if card is None:
        raise ReportError(f"{folder / 'run'} holds no training card ({card_.CARD}); make the folder again with "
                          f"'gru-edge quickstart -o {folder}'.")
    with np.load(card_.windows_file(model_path, card)) as z:
        windows = {k: z[k] for k in z.files}
    units = card.units
    series, split = _series(windows)
    heldout = len(windows["test_x"])
    first = windows["test_first_target"].astype(int)

    rows, reference, targets = [], None, None
    for entry in summary["recipes"]:
        name = entry["recipe"]
        log(f"report: running {name}")
        model = folder / "models" / Path(entry["model"]).name
        bundle = read_bundle(folder / "bundles" / name)
        expected = next(iter(bundle.expected.values()))
        reference = expected if reference is None else reference
        targets = bundle.targets if targets is None else targets
        runner = Runner(model)
        out = next(iter(runner.run(bundle.inputs).values()))
        info = tflite_model.read(model)
        rows.append(RecipeFigures(name, info.size_bytes, info.weight_bytes, float(np.max(np.abs(out - expected))),
                                  entry.get("psnr_db"), entry.get("task_metric_delta"),
                                  _latency_us(runner, bundle.inputs), bool(entry["passed"]), out))
    if reference is None:
        raise ReportError(f"{summary_path} lists no recipes: nothing to report.")

    figures: list[tuple[str, str, str]] = []  # (title, caption, base64 png)
    metrics = card.metrics
    t = np.arange(len(series))

    # 1. The series, its split and the original model's forecasts
    fig, ax = plt.subplots(figsize=(10, 4))
    ax.plot(t[:split], series[:split], color="#1f77b4", label="training part")
    ax.plot(t[split:], series[split:], color="black", label="held-out part")
    ax.axvline(split - 0.5, color="gray", linestyle="--", linewidth=1)
    ax.plot(first, reference[:heldout, 0], "o-", color="#ff7f0e", markersize=3, label="forecast (Keras model)")
    ax.set_xlabel("time step")
    ax.set_ylabel(units)
    ax.legend(loc="upper left")
    ax.set_title(f"{card.data.get('column', 'series')}: held-out RMSE {metrics.get('heldout_rmse', float('nan')):.4g}"
                 f" (naive {metrics.get('naive_rmse', float('nan')):.4g})")
    figures.append(("The series and the forecasts", "The target column in the data's units: the training part, "
                    "the held-out part (after the dashed line) and the original model's one-step forecasts of it.",
                    _png(fig)))

    # 2. Every model on the held-out windows
    fig, ax = plt.subplots(figsize=(10, 4.5))
    if targets is not None:
        ax.plot(first, targets[:heldout, 0], color="black", linewidth=2, label="true value")
    ax.plot(first, reference[:heldout, 0], color="gray", linewidth=5, alpha=0.5, label="Keras (original)")
    for r in rows:
        ax.plot(first, r.outputs[:heldout, 0], marker=".", linewidth=1, label=r.recipe)
    ax.set_xlabel("time step")
    ax.set_ylabel(units)
    ax.legend(ncol=4, fontsize=8)
    ax.set_title("Held-out windows: the original and each converted model")
    figures.append(("Original and converted models", "Each converted model's forecast over the held-out windows, "
                    "over the original's (the wide gray line) and the true values.", _png(fig)))

    # 3. Error distributions
    fig, ax = plt.subplots(figsize=(10, 4))
    errors = [np.abs(r.outputs - reference).ravel() for r in rows]
    floor = min((e[e > 0].min() for e in errors if np.any(e > 0)), default=1e-9)
    ax.boxplot([np.maximum(e, floor) for e in errors], showfliers=True)
    ax.set_xticks(range(1, len(rows) + 1), [r.recipe for r in rows])
    ax.set_yscale("log")
    ax.set_ylabel(f"|converted - original| ({units})")
    ax.set_title(f"Error against the original over the {len(reference)} bundle samples (held-out + edge cases)")
    figures.append(("Error per recipe", "Distribution of each recipe's absolute error against the original model "
                    "on every bundle sample (box: quartiles; whiskers: 1.5 IQR; points beyond). Log scale; exact "
                    "zeros are drawn at the smallest error seen.", _png(fig)))

    # 4. Size and latency
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    names = [r.recipe for r in rows]
    a1.bar(names, [r.size_bytes / 1024 for r in rows], color="#9ecae1", label="file")
    a1.bar(names, [r.weight_bytes / 1024 for r in rows], color="#3182bd", label="weights")
    a1.set_ylabel("KiB")
    a1.set_title("File size")
    a1.legend()
    a2.bar(names, [r.median_us for r in rows], color="#31a354")
    a2.set_ylabel("µs (median, batch 1, 1 thread)")
    a2.set_title("Latency in LiteRT's Interpreter")
    for a in (a1, a2):
        a.tick_params(axis="x", rotation=30)
    figures.append(("Size and latency", "File size (light) and the weights inside it (dark) per recipe, and the "
                    "median latency of one window on this machine's CPU.", _png(fig)))

    table = "".join(
        f"<tr><td>{html.escape(r.recipe)}</td><td>{r.size_bytes / 1024:.1f}</td><td>{r.weight_bytes / 1024:.1f}</td>"
        f"<td>{r.max_abs_error:.3g}</td><td>{'exact' if r.psnr_db is None else f'{r.psnr_db:.1f}'}</td>"
        f"<td>{'' if r.task_delta is None else f'{r.task_delta:+.2%}'}</td><td>{r.median_us:.1f}</td>"
        f"<td>{'PASS' if r.passed else 'FAIL'}</td></tr>" for r in rows)
    body = "".join(f"<h2>{html.escape(title)}</h2><p>{html.escape(caption)}</p>"
                   f"<img alt=\"{html.escape(title)}\" src=\"data:image/png;base64,{data}\">"
                   for title, caption, data in figures)
    page = (f"<!doctype html><html><head><meta charset=\"utf-8\"><title>gru-edge report: {html.escape(str(folder))}"
            "</title><style>body{font-family:sans-serif;max-width:1150px;margin:2em auto}img{max-width:100%}"
            "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
            "</style></head><body>"
            f"<h1>gru-edge report: {html.escape(card.data.get('source', ''))}</h1>"
            f"<p>Held-out RMSE {metrics.get('heldout_rmse', float('nan')):.4g} {html.escape(units)} (naive "
            f"{metrics.get('naive_rmse', float('nan')):.4g}, seasonal-naive "
            f"{metrics.get('seasonal_naive_rmse', float('nan')):.4g}); {len(rows)} recipes.</p>"
            "<table><tr><th>recipe</th><th>file KiB</th><th>weights KiB</th><th>max abs error</th><th>PSNR dB</th>"
            f"<th>RMSE change</th><th>median µs</th><th>parity</th></tr>{table}</table>{body}</body></html>\n")
    target = folder / REPORT
    partial = folder / f".{REPORT}.gru-edge-{os.getpid()}"  # a leftover is recognised and removed by the next run
    partial.write_text(page)
    os.replace(partial, target)
    return Report(target, tuple(f[0] for f in figures), tuple(rows))
