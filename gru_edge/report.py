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
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gru_edge import card as card_, outputs
from gru_edge.outputs import REPORT
from gru_edge.errors import GruEdgeError



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


def _series(windows) -> tuple[np.ndarray, int, np.ndarray]:
    """The target column as the run saw it (raw units), rebuilt from its windows, the index of the first held-out
    target, and which held-out windows it shows. A run on shards keeps every k-th window of each part: its picture is
    the first shard's held-out windows (the training windows kept are not consecutive)."""
    train_x, train_y = windows["train_x"], windows["train_y"]
    test_x, test_y, first = windows["test_x"], windows["test_y"], windows["test_first_target"].astype(int)
    shown = np.arange(len(test_x))
    if "test_shard" in windows:
        shown = np.flatnonzero(windows["test_shard"] == windows["test_shard"][0])
        train_x, train_y = train_x[:0], train_y[:0]
    steps = train_x.shape[1]
    n = int(max(first[shown].max() + test_y.shape[1], len(train_x) + steps + train_y.shape[1]))
    series = np.full(n, np.nan)
    for i, (x, y) in enumerate(zip(train_x, train_y)):
        series[i: i + steps] = x[:, 0]
        series[i + steps: i + steps + len(y)] = y
    for x, y, t in zip(test_x[shown], test_y[shown], first[shown]):
        series[t - steps: t] = x[:, 0]
        series[t: t + len(y)] = y
    return series, int(first[shown].min()), shown


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


@dataclass(frozen=True)
class _Entry:
    """One converted model and the parity bundle it was verified with."""

    recipe: str
    model: Path
    bundle: object  # gru_edge.bundle.Bundle
    psnr_db: float | None
    task_delta: float | None
    passed: bool


def write(folder: Path, log=lambda msg: None, run: Path | None = None, out: Path | None = None) -> Report:
    """Draw the report on ``folder``: a quickstart folder (run/, models/, bundles/, summary.json; the report is
    FOLDER/report.html, no TensorFlow needed), or a folder of models 'gru-edge convert' wrote, each verified here
    against the Keras model it was converted from (its description names it; ``run``: that model's run folder,
    when it has moved) on the run's held-out windows; that report is ``out``, by default FOLDER/report.html."""
    folder = Path(folder)
    if (folder / "summary.json").is_file():
        if run is not None:
            raise ReportError(f"{folder} is a quickstart folder: it holds its run; give no --run.")
        return _quickstart(folder, out or folder / REPORT, log)
    if folder.is_dir() and any(folder.glob("model.*.tflite")) and not outputs.MODELS.foreign(folder):
        return _converted(folder, run, out or folder / REPORT, log)
    raise ReportError(f"{folder} is neither a quickstart folder (summary.json) nor a folder of converted models "
                      f"(model.RECIPE.tflite and their sidecars, nothing else); make one with 'gru-edge quickstart -o "
                      f"{folder}' or 'gru-edge convert MODEL.keras --to RECIPES -o {folder}'.")


def _quickstart(folder: Path, target: Path, log) -> Report:
    from gru_edge.bundle import read_bundle

    summary_path = folder / "summary.json"
    try:
        summary = json.loads(summary_path.read_text())
    except (OSError, ValueError):
        summary = None
    if not isinstance(summary, dict) or summary.get("format") != outputs.SUMMARY_FORMAT:
        raise ReportError(f"{folder} is not a quickstart folder (no {summary_path.name} of format "
                          f"{outputs.SUMMARY_FORMAT}); make one with 'gru-edge quickstart -o {folder}'.")
    entries = [_Entry(e["recipe"], folder / "models" / Path(e["model"]).name,
                      read_bundle(folder / "bundles" / e["recipe"]), e.get("psnr_db"), e.get("task_metric_delta"),
                      bool(e["passed"])) for e in summary["recipes"]]
    if not entries:
        raise ReportError(f"{summary_path} lists no recipes: nothing to report.")
    return _draw(folder / "run" / card_.MODEL, entries, target, str(folder), log)


def _converted(folder: Path, run: Path | None, target: Path, log) -> Report:
    """Each model of a convert folder verified against its Keras original into a temporary bundle, then drawn."""
    import tempfile

    from gru_edge import description, runs
    from gru_edge.bundle import read_bundle
    from gru_edge.verification import verify

    models = sorted(folder.glob("model.*.tflite"))
    sources = set()
    for m in models:
        described = description.load(m)
        if described is None:
            raise ReportError(f"{m} carries no gru-edge description: the report needs the model it was converted "
                              "from. Convert it with 'gru-edge convert'.")
        sources.add(described.source_model["path"])
    # the source as convert was given it (absolute, or relative to where it ran); verify checks its sha256
    keras_path = Path(run) / card_.MODEL if run is not None else Path(sorted(sources)[0])
    if run is None and (len(sources) != 1 or not keras_path.is_file()):
        raise ReportError(f"The models in {folder} name {', '.join(sorted(sources))} as their source, which is not "
                          "one file found from here: give the run folder that trained them with --run DIR.")
    trained = card_.load(keras_path)
    if trained is not None and trained.kind != "regression":
        raise ReportError(f"{keras_path.parent} trained a {trained.kind} model; the report draws forecasts of a "
                          "series. 'gru-edge verify' reports a classifier's accuracy change.")
    if trained is None:
        raise ReportError(f"{keras_path.parent} holds no training card ({card_.CARD}): the report draws the run's "
                          "series and held-out windows. Give the run folder 'gru-edge train' wrote with --run DIR.")
    keras_model = runs.load_model(keras_path)
    with tempfile.TemporaryDirectory(prefix="gru-edge-report-") as scratch:
        entries = []
        for m in models:
            log(f"report: verifying {m.name} against {keras_path}")
            result = verify(keras_path, m, Path(scratch) / m.stem, keras_model=keras_model)
            rep = result.report
            entries.append(_Entry(result.recipe, m, read_bundle(result.bundle),
                                  None if math.isinf(rep.psnr_db) else rep.psnr_db,  # identical: "exact"
                                  rep.task.relative_delta if rep.task else None, rep.passed))
        return _draw(keras_path, entries, target, str(folder), log)


def _draw(model_path: Path, entries: list[_Entry], target: Path, title: str, log) -> Report:
    from gru_edge import tflite_model
    from gru_edge.runtime import Runner

    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ReportError("The report draws with matplotlib: pip install 'gru-edge[train]'.") from None
    card = card_.load(model_path)
    if card is None:
        raise ReportError(f"{model_path.parent} holds no training card ({card_.CARD}); make the folder again with "
                          f"'gru-edge train' or 'gru-edge quickstart'.")
    with np.load(card_.windows_file(model_path, card)) as z:
        windows = {k: z[k] for k in z.files}
    units = card.units
    series, split, shown = _series(windows)
    first = windows["test_first_target"].astype(int)[shown]

    rows, reference, targets, streams = [], None, None, []
    for e in entries:
        log(f"report: running {e.recipe}")
        expected = next(iter(e.bundle.expected.values()))
        reference = expected if reference is None else reference
        targets = e.bundle.targets if targets is None else targets
        runner = Runner(e.model)
        out = next(iter(runner.run(e.bundle.inputs).values()))
        if runner.has_step:  # a streaming model: the same windows fed one time step at a time
            stepped = next(iter(runner.run_steps(e.bundle.inputs).values())).reshape(len(out), -1)
            streams.append((e.recipe, np.abs(out - expected)[shown, 0], np.abs(stepped - expected)[shown, 0]))
        info = tflite_model.read(e.model)
        rows.append(RecipeFigures(e.recipe, info.size_bytes, info.weight_bytes, float(np.max(np.abs(out - expected))),
                                  e.psnr_db, e.task_delta, _latency_us(runner, e.bundle.inputs), e.passed, out))

    figures: list[tuple[str, str, str]] = []  # (title, caption, base64 png)
    metrics = card.metrics
    t = np.arange(len(series))

    # 1. The series, its split and the original model's forecasts
    fig, ax = plt.subplots(figsize=(10, 4))
    ax.plot(t[:split], series[:split], color="#1f77b4", label="training part")
    ax.plot(t[split:], series[split:], color="black", label="held-out part")
    ax.axvline(split - 0.5, color="gray", linestyle="--", linewidth=1)
    ax.plot(first, reference[shown, 0], "o-", color="#ff7f0e", markersize=3, label="forecast (Keras model)")
    ax.set_xlabel("time step")
    ax.set_ylabel(units)
    ax.legend(loc="upper left")
    one = f" (held-out part of shard {int(windows['test_shard'][0]) + 1} of {card.data['shards']})" \
        if card.data.get("shards") else ""
    ax.set_title(f"{card.data.get('column', 'series')}{one}: held-out RMSE {metrics.get('heldout_rmse', float('nan')):.4g}"
                 f" (naive {metrics.get('naive_rmse', float('nan')):.4g})")
    figures.append(("The series and the forecasts", "The target column in the data's units: the training part, "
                    "the held-out part (after the dashed line) and the original model's one-step forecasts of it.",
                    _png(fig)))

    # 2. Every model on the held-out windows
    fig, ax = plt.subplots(figsize=(10, 4.5))
    if targets is not None:
        ax.plot(first, targets[shown, 0], color="black", linewidth=2, label="true value")
    ax.plot(first, reference[shown, 0], color="gray", linewidth=5, alpha=0.5, label="Keras (original)")
    for r in rows:
        ax.plot(first, r.outputs[shown, 0], marker=".", linewidth=1, label=r.recipe)
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

    # 5. Streaming models: the step-by-step path at every held-out time step
    if streams:
        fig, ax = plt.subplots(figsize=(10, 4))
        for name, whole, stepped in streams:
            ax.plot(first, np.maximum(whole, 1e-9), "o-", markersize=3, label=f"{name}: whole window")
            ax.plot(first, np.maximum(stepped, 1e-9), "s--", markersize=3, label=f"{name}: one step at a time")
        ax.set_yscale("log")
        ax.set_xlabel("time step (the forecast's target)")
        ax.set_ylabel(f"|converted - original| ({units})")
        ax.legend(fontsize=8)
        ax.set_title("Streaming: error at each held-out time step")
        figures.append(("Streaming: error per time step", "For each streaming model, its error against the "
                        "original at every held-out time step: fed the whole window at once (the serving "
                        "signature) and one time step at a time from a zero state (the step signature, as the "
                        "Android demo streams). Log scale; exact zeros drawn at 1e-9.", _png(fig)))

    table = "".join(
        f"<tr><td>{html.escape(r.recipe)}</td><td>{r.size_bytes / 1024:.1f}</td><td>{r.weight_bytes / 1024:.1f}</td>"
        f"<td>{r.max_abs_error:.3g}</td><td>{'exact' if r.psnr_db is None else f'{r.psnr_db:.1f}'}</td>"
        f"<td>{'' if r.task_delta is None else f'{r.task_delta:+.2%}'}</td><td>{r.median_us:.1f}</td>"
        f"<td>{'PASS' if r.passed else 'FAIL'}</td></tr>" for r in rows)
    body = "".join(f"<h2>{html.escape(title)}</h2><p>{html.escape(caption)}</p>"
                   f"<img alt=\"{html.escape(title)}\" src=\"data:image/png;base64,{data}\">"
                   for title, caption, data in figures)
    page = (f"{outputs.REPORT_HEAD}: {html.escape(title)}"
            "</title><style>body{font-family:sans-serif;max-width:1150px;margin:2em auto}img{max-width:100%}"
            "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
            "</style></head><body>"
            f"<h1>gru-edge report: {html.escape(card.data.get('source', ''))}</h1>"
            f"<p>Held-out RMSE {metrics.get('heldout_rmse', float('nan')):.4g} {html.escape(units)} (naive "
            f"{metrics.get('naive_rmse', float('nan')):.4g}, seasonal-naive "
            f"{metrics.get('seasonal_naive_rmse', float('nan')):.4g}); {len(rows)} recipes.</p>"
            "<table><tr><th>recipe</th><th>file KiB</th><th>weights KiB</th><th>max abs error</th><th>PSNR dB</th>"
            f"<th>RMSE change</th><th>median µs</th><th>parity</th></tr>{table}</table>{body}</body></html>\n")
    target = Path(target)
    if target.is_dir() or (target.exists() and not outputs.is_report(target)):
        raise ReportError(f"{target} exists and is not a gru-edge report; give another -o.")
    partial = target.parent / f".{target.name}.gru-edge-{os.getpid()}"  # a leftover is removed by the next run
    partial.write_text(page)
    os.replace(partial, target)
    return Report(target, tuple(f[0] for f in figures), tuple(rows))
